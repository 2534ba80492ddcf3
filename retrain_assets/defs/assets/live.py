"""``live_performance``: per day, the served predictions joined with the labels that came later (core.live)."""

import datetime as dt
from typing import Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from retrain_assets.core import live, served_drift
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import CHALLENGER, CHAMPION, LIVE_CHECK_TAG
from retrain_assets.defs.resources import RetrainProject

LIVE_GROUP = "live"
LIVE_PERFORMANCE = "live_performance"
TRIGGER_METADATA = "champion_trigger"  # the performance rule on the champion's rows: what the live sensor reads
DRIFT_METADATA = "champion_drift"  # prediction and served-input drift of the champion's rows: the sensor reads it too
DRIFT_CHECKS = (served_drift.PREDICTION_DRIFT_CHECK, served_drift.SERVED_DRIFT_CHECK)
LIVE_CHECK_METADATA = "challenger_live_check"  # promotion.live_check's evidence so far: the sensor reads it too


def live_partitions(config: Optional[RetrainConfig]) -> DailyPartitionsDefinition:
    """UTC days from ``history.start`` (default: a year before today, as the history partitions); the newest
    is the last day that is over. A day is computed only once its labels are due (``ServingConfig.due_at``)."""
    start = live.first_day(config) if config is not None else dt.date.today() - dt.timedelta(days=live.DEFAULT_DAYS)
    return DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def build_live_assets(partitions: DailyPartitionsDefinition) -> list:
    """``live_performance`` over ``partitions`` (they depend on the config, so it is built per load)."""

    @asset(
        name=LIVE_PERFORMANCE,
        group_name=LIVE_GROUP,
        partitions_def=partitions,
        kinds={"deltalake", "mlflow"},
        code_version="2",
        check_specs=[
            AssetCheckSpec(
                name,
                asset=LIVE_PERFORMANCE,
                description=f"{what} of the champion on the day's served rows against its reference (triggers.drift).",
            )
            for name, what in zip(DRIFT_CHECKS, ("Served scores vs holdout scores", "Served inputs"), strict=True)
        ],
    )
    def live_performance(context: AssetExecutionContext, project: RetrainProject) -> MaterializeResult:
        """The day's served predictions joined with every label landed so far: per model version and alias
        the rows served and labelled and the task's metrics (from ``serving.min_labelled_rows`` labelled rows
        on), the champion and the challenger on the same labelled rows (shadow), and the performance rule of
        ``triggers.performance`` on the current champion's rows against its holdout metric, which the
        ``live_performance_sensor`` acts on, and (``promotion.live_check``) the paired rows so far of the
        challenger awaiting that check, which the sensor acts on too. A day is computed only after its end plus
        ``serving.label_delay_hours``: before that its labels are incomplete, and the run fails saying when."""
        config = project.load()
        window = context.partition_time_window
        ready = config.serving.due_at(window.end)
        if dt.datetime.now(dt.timezone.utc) < ready:
            raise Failure(
                f"live_performance {context.partition_key}: its labels are due only at {ready.isoformat()} (the "
                f"day's end + serving.label_delay_hours {config.serving.label_delay_hours:g}); compute it after that"
            )
        day = live.live_day(config, window.start, window.end)
        registry = project.registry(config)
        champion = registry.by_alias(CHAMPION)
        holdout = registry.metrics(champion) if champion is not None else {}
        version = int(champion.version) if champion is not None else None
        finding = live.champion_finding(config, day, version, holdout)
        context.log.info(finding.message)
        drift = _drift_findings(config, registry, champion, window.start, window.end)
        metric = config.promotion.metric
        return MaterializeResult(
            metadata={
                "served_rows": day.served,
                "labelled_rows": day.labelled,
                "labels_version": -1 if day.labels_version is None else day.labels_version,
                "predictions_version": -1 if day.predictions_version is None else day.predictions_version,
                "by_model": _models_table(day, metric),
                "champion_vs_challenger": _paired_table(day, metric),
                TRIGGER_METADATA: MetadataValue.json(
                    {
                        "fired": finding.fired,
                        "reason": finding.message,
                        "champion_version": version,
                        "labels_version": day.labels_version,
                        **finding.metadata,
                    }
                ),
                DRIFT_METADATA: MetadataValue.json(
                    {
                        "fired": config.triggers.drift.enabled and any(f.fired for f in drift.values()),
                        "reason": "; ".join(f.message for f in drift.values()),
                        "champion_version": version,
                    }
                ),
                LIVE_CHECK_METADATA: MetadataValue.json(
                    {**_live_check(config, registry, version), "labels_version": day.labels_version}
                ),
            },
            check_results=[
                AssetCheckResult(
                    check_name=name,
                    passed=not found.fired,
                    severity=AssetCheckSeverity.WARN,
                    description=found.message,
                    metadata={"scores": MetadataValue.json(found.metadata.get("scores", {}))},
                )
                for name, found in drift.items()
            ],
        )

    return [live_performance]


def _live_check(config: RetrainConfig, registry, champion: Optional[int]) -> dict:
    """Where the challenger awaiting ``promotion.live_check`` stands: its labelled rows paired with the
    champion's, and ``ready`` once they are enough to judge it (the ``live_check`` run then decides)."""
    from retrain_assets.core.decision import AWAITING

    rule, challenger = config.promotion.live_check, registry.by_alias(CHALLENGER)
    if rule is None or champion is None or challenger is None or challenger.tags.get(LIVE_CHECK_TAG) != AWAITING:
        return {"ready": False, "reason": "no challenger awaits promotion.live_check"}
    pair = live.paired_rows(config, champion, int(challenger.version))
    return {
        "ready": pair.rows >= rule.min_rows,
        "reason": f"challenger v{pair.challenger_version} paired with champion v{champion} on {pair.rows} labelled "
        f"rows ({rule.min_rows} needed)",
        "challenger_version": pair.challenger_version,
        "champion_version": champion,
        "rows": pair.rows,
    }


def _drift_findings(config: RetrainConfig, registry, champion, start: dt.datetime, end: dt.datetime) -> dict:
    """The champion's prediction drift and served-input drift over the day's rows it answered (no labels
    needed: measured when the day is computed)."""
    from retrain_assets.core.delta import PREDICTIONS_TABLE
    from retrain_assets.core.monitoring import Finding

    if champion is None:
        return {name: Finding(False, "no champion: nothing served to compare") for name in DRIFT_CHECKS}
    version = int(champion.version)
    profile = registry.reference_profile(champion)
    rows = served_drift.served(config.table_uri(PREDICTIONS_TABLE), version, start, end)
    return {
        served_drift.PREDICTION_DRIFT_CHECK: served_drift.prediction_drift(config, profile, rows, version),
        served_drift.SERVED_DRIFT_CHECK: served_drift.served_feature_drift(config, profile, rows, version),
    }


def _models_table(day: live.LiveDay, metric: str) -> MetadataValue:
    columns = ["model_version", "alias", "served", "labelled", metric, "metrics"]
    kinds = ["int", "string", "int", "int", "float", "string"]
    records = [
        TableRecord(
            {
                "model_version": row.model_version,
                "alias": row.alias,
                "served": row.served,
                "labelled": row.labelled,
                metric: row.metrics.get(metric),
                "metrics": ", ".join(f"{name} {value:.4f}" for name, value in row.metrics.items()),
            }
        )
        for row in day.models
    ]
    return MetadataValue.table(records, schema=_schema(columns, kinds))


def _paired_table(day: live.LiveDay, metric: str) -> MetadataValue:
    columns = ["champion_version", "challenger_version", "rows", f"champion_{metric}", f"challenger_{metric}"]
    records = [
        TableRecord(
            {
                "champion_version": pair.champion_version,
                "challenger_version": pair.challenger_version,
                "rows": pair.rows,
                f"champion_{metric}": pair.champion.get(metric),
                f"challenger_{metric}": pair.challenger.get(metric),
            }
        )
        for pair in day.paired
    ]
    return MetadataValue.table(records, schema=_schema(columns, ["int", "int", "int", "float", "float"]))


def _schema(columns: list[str], kinds: list[str]) -> TableSchema:
    return TableSchema([TableColumn(name, kind) for name, kind in zip(columns, kinds, strict=True)])
