"""The retraining job: the whole lineage, validated first, trained only when a trigger fires."""

from dagster import AssetSelection, define_asset_job

RETRAIN_JOB = "retrain"
LINEAGE_KEYS = ["raw_data", "validated_features", "candidate_model", "evaluation_report", "prod_model"]

retrain_job = define_asset_job(
    RETRAIN_JOB,
    selection=AssetSelection.assets(*LINEAGE_KEYS),
    description="Validate new raw_data batches; if a trigger fires, train a candidate, compare, promote if better.",
)
