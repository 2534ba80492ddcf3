"""``validated_features``: new raw batches validated by Great Expectations; the good ones, model-ready."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DataVersion,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core import batches, delta, monitoring
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.names import DRIFT_CHECK, PERFORMANCE_CHECK
from retrain_assets.defs.checks import MONITORING_CHECKS, VALIDATION_CHECKS
from retrain_assets.defs.resources import RetrainProject


@asset(
    group_name="retrain",
    kinds={"deltalake", "great_expectations"},
    code_version="1",
    check_specs=VALIDATION_CHECKS + MONITORING_CHECKS,
)
def validated_features(context: AssetExecutionContext, project: RetrainProject, raw_data: delta.TableRef):
    """Validates each raw_data batch not seen before (up to the pinned version) with a Great Expectations
    suite built from ``retrain.yaml``; appends passing batches to the ``validated_features`` Delta table.
    A batch that breaks a hard rule is reported by the blocking checks (column, rule, count, sample,
    version), is not appended, and stays intact in raw_data; the run stops only when it accepted no batch.
    Values outside what the sample showed warn (``values_as_expected``). The accepted rows are then compared
    with the champion: feature drift and the champion's score, as warning checks. The output,
    :class:`~retrain_assets.core.batches.ValidatedBatches`, carries all of it to the assets downstream."""
    config = project.load()
    run = batches.validate_new_batches(config, raw_data.version)
    results = run.check_results([spec.name for spec in VALIDATION_CHECKS])
    accepted = run.accepted_frame()
    registry = project.registry(config) if accepted is not None else None
    findings = monitoring.watch_champion(config, registry, accepted)
    features = run.features
    evidence = batches.ValidatedBatches(
        features=features,
        raw_version=raw_data.version,
        accepted=run.accepted,
        rejected=run.rejected,
        accepted_rows=0 if accepted is None else len(accepted),
        drift=findings[DRIFT_CHECK],
        performance=findings[PERFORMANCE_CHECK],
    )
    yield Output(
        evidence,
        data_version=DataVersion(f"{features.version}" if features else "empty"),
        metadata={
            "raw_version": raw_data.version,
            "batches_validated": MetadataValue.json([b.raw_version for b in run.batches]),
            "batches_accepted": MetadataValue.json(run.accepted),
            "batches_rejected": MetadataValue.json(run.rejected),
            "delta_version": features.version if features else -1,
            "rows": delta.table_rows(features.uri) if features else 0,
            "uri": MetadataValue.path(config.table_uri(delta.FEATURES_TABLE)),
        },
    )
    for name, verdict in results.items():
        yield AssetCheckResult(
            check_name=name,
            passed=verdict.passed,
            description=verdict.message,
            severity=AssetCheckSeverity.ERROR if verdict.severity == "error" else AssetCheckSeverity.WARN,
            metadata={"raw_version": raw_data.version, "batches_rejected": MetadataValue.json(run.rejected)},
        )
    if run.rejected:
        failed = {name: verdict.message for name, verdict in results.items() if not verdict.passed}
        rejected = ", ".join(f"v{version}" for version in run.rejected)
        send_alert(config, "check_failed", f"raw_data {rejected} rejected by {', '.join(failed)}", failed)
    for name, finding in findings.items():
        yield AssetCheckResult(
            check_name=name,
            passed=not finding.fired,
            severity=AssetCheckSeverity.WARN,
            description=finding.message,
            metadata={
                k: MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in finding.metadata.items()
            },
        )
