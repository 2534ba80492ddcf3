"""``validated_features``: new raw batches validated by Great Expectations; the good ones, model-ready."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, DataVersion, MetadataValue, Output, asset

from retrain_assets import batches, lake
from retrain_assets.checks import VALIDATION_CHECKS
from retrain_assets.resources import RetrainProject


@asset(group_name="retrain", kinds={"deltalake", "great_expectations"}, code_version="1", check_specs=VALIDATION_CHECKS)
def validated_features(context: AssetExecutionContext, project: RetrainProject, raw_data: lake.TableRef):
    """Validates each raw_data batch not seen before (up to the pinned version) with a Great Expectations
    suite built from ``retrain.yaml``; appends passing batches to the ``validated_features`` Delta table.
    A failing batch is reported by the blocking checks (column, rule, count, sample, version), is not
    appended, and stays intact in raw_data."""
    config = project.load()
    run = batches.validate_new_batches(config, raw_data.version)
    results = run.check_results([spec.name for spec in VALIDATION_CHECKS])
    features = run.features
    yield Output(
        features,
        data_version=DataVersion(f"{features.version}" if features else "empty"),
        metadata={
            "raw_version": raw_data.version,
            "batches_validated": MetadataValue.json([b.raw_version for b in run.batches]),
            "batches_accepted": MetadataValue.json([b.raw_version for b in run.batches if b.accepted]),
            "batches_rejected": MetadataValue.json([b.raw_version for b in run.batches if not b.accepted]),
            "delta_version": features.version if features else -1,
            "rows": lake.table_summary(features.uri)["rows"] if features else 0,
            "uri": MetadataValue.path(config.table_uri(lake.FEATURES_TABLE)),
        },
    )
    for name, (passed, message) in results.items():
        yield AssetCheckResult(
            check_name=name,
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=message,
            metadata={"raw_version": raw_data.version},
        )
