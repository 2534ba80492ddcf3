"""``live_performance``: per day, the served predictions joined with the labels that came later (core.live)."""

import datetime as dt
from typing import Optional

from dagster import (
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

from retrain_assets.core import live
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import CHAMPION
from retrain_assets.defs.resources import RetrainProject

LIVE_GROUP = "live"
LIVE_PERFORMANCE = "live_performance"
TRIGGER_METADATA = "champion_trigger"  # the performance rule on the champion's rows: what the live sensor reads


def live_partitions(config: Optional[RetrainConfig]) -> DailyPartitionsDefinition:
    """UTC days from ``history.start`` (default: a year before today, as the history partitions); the newest
    is the last day that is over. A day is computed only once its labels are due (:func:`live.due_at`)."""
    start = live.first_day(config) if config is not None else dt.date.today() - dt.timedelta(days=live.DEFAULT_DAYS)
    return DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def build_live_assets(partitions: DailyPartitionsDefinition) -> list:
    """``live_performance`` over ``partitions`` (they depend on the config, so it is built per load)."""

    @asset(
        name=LIVE_PERFORMANCE,
        group_name=LIVE_GROUP,
        partitions_def=partitions,
        kinds={"deltalake", "mlflow"},
        code_version="1",
    )
    def live_performance(context: AssetExecutionContext, project: RetrainProject) -> MaterializeResult:
        """The day's served predictions joined with every label landed so far: per model version and alias
        the rows served and labelled and the task's metrics (from ``serving.min_labelled_rows`` labelled rows
        on), the champion and the challenger on the same labelled rows (shadow), and the performance rule of
        ``triggers.performance`` on the current champion's rows against its holdout metric, which the
        ``live_performance_sensor`` acts on. A day is computed only after its end plus
        ``serving.label_delay_hours``: before that its labels are incomplete, and the run fails saying when."""
        config = project.load()
        window = context.partition_time_window
        ready = live.due_at(config, window.end)
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
            }
        )

    return [live_performance]


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
