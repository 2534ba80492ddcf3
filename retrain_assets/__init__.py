"""retrain_assets: a Dagster code location that keeps scikit-learn models fresh on Delta Lake data."""
