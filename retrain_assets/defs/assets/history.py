"""The history path: ``historical_model`` per time window (backfillable) and the ``backtest_summary``."""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    Config,
    DailyPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
    asset,
)

from retrain_assets.core import backtest
from retrain_assets.core.config import HistoryConfig
from retrain_assets.defs.resources import RetrainProject

HISTORY_GROUP = "history"


class HistoricalModelConfig(Config):
    """Run config of ``historical_model`` (in the UI's launchpad, or ``retrain backfill --no-run-cache``)."""

    run_cache: bool = True  # reuse the model of a partition with the same training inputs; false trains each


def history_partitions(rules: HistoryConfig) -> TimeWindowPartitionsDefinition:
    """Daily or weekly (Monday) windows from ``history.start``, in UTC."""
    start = rules.first_partition().isoformat()
    if rules.partitions == "daily":
        return DailyPartitionsDefinition(start_date=start, timezone="UTC")
    return WeeklyPartitionsDefinition(start_date=start, day_offset=1, timezone="UTC")


def build_history_assets(partitions: TimeWindowPartitionsDefinition) -> list:
    """The two history assets over ``partitions`` (they depend on the config, so they are built per load)."""

    @asset(
        group_name=HISTORY_GROUP,
        partitions_def=partitions,
        deps=["raw_data"],
        kinds={"scikitlearn", "mlflow"},
        code_version="1",
    )
    def historical_model(
        context: AssetExecutionContext, project: RetrainProject, config: HistoricalModelConfig
    ) -> Output[dict]:
        """The model as it would have been trained at the end of this window: raw_data time-travelled to
        the version that had landed by then, validated, trained with the current params and seed, and
        scored on the following window (out-of-time). Logged to the MLflow experiment ``<name>-history``
        with its partition and Delta version; never registered, never the champion. A window whose training
        inputs an earlier partition already had reuses that model (the run cache in ``core.backtest``; run config
        ``run_cache: false`` trains every partition)."""
        settings = project.load()
        window = context.partition_time_window
        eval_end = window.end + (window.end - window.start) * settings.history.evaluation_windows
        registry = project.registry(settings)
        try:
            result = backtest.backtest(
                settings, registry, context.partition_key, window.end, eval_end, run_cache=config.run_cache
            )
        except ValueError as exc:
            raise Failure(str(exc)) from exc
        metric = settings.promotion.metric
        return Output(
            result.row(),
            metadata={
                "delta_version": result.delta_version,
                "as_of": window.end.isoformat(),
                "train_rows": result.train_rows,
                "eval_rows": result.eval_rows,
                f"holdout_{metric}": result.metrics.get(metric),
                f"out_of_time_{metric}": result.oot_metrics.get(metric),
                "max_psi": result.max_psi,
                "drifted": MetadataValue.json(result.drifted),
                "rejected_versions": MetadataValue.json(result.rejected_versions),
                "mlflow_run_id": result.run_id,
                "reused_model_run": result.reused_from or "none (trained)",
            },
        )

    @asset(group_name=HISTORY_GROUP, deps=[historical_model], kinds={"mlflow"}, code_version="1")
    def backtest_summary(context: AssetExecutionContext, project: RetrainProject) -> Output[list]:
        """One row per historical partition (the newest run of each in MLflow): Delta version, rows,
        in-time and out-of-time metrics, drift; as a table here and as plots in ``reports/backtest.html``."""
        from retrain_assets.core.report import backtest_html

        config = project.load()
        rows = backtest.backtest_rows(config, project.registry(config))
        metric = config.promotion.metric
        config.reports_dir.mkdir(parents=True, exist_ok=True)
        path = config.reports_dir / "backtest.html"
        path.write_text(backtest_html(rows, metric, title=f"Backtest of {config.project}"))
        return Output(
            rows,
            metadata={
                "partitions": len(rows),
                "backtest": _backtest_table(rows, metric),
                "report_path": MetadataValue.path(str(path)),
                "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )

    return [historical_model, backtest_summary]


def _backtest_table(rows: list[dict], metric: str) -> TableMetadataValue:
    """The backtest as a table on the ``backtest_summary`` materialization: one row per partition."""
    columns = ["partition", "delta_version", "train_rows", "eval_rows", metric, f"oot_{metric}", "max_psi", "drifted"]
    records = [
        TableRecord(
            {
                "partition": row["partition"],
                "delta_version": row["delta_version"],
                "train_rows": row["train_rows"],
                "eval_rows": row["eval_rows"],
                metric: row["metrics"].get(metric),
                f"oot_{metric}": row["oot_metrics"].get(metric),
                "max_psi": row["max_psi"],
                "drifted": ", ".join(row["drifted"]),
            }
        )
        for row in rows
    ]
    kinds = ["string", "int", "int", "int", "float", "float", "float", "string"]
    schema = TableSchema([TableColumn(name, kind) for name, kind in zip(columns, kinds, strict=True)])
    return MetadataValue.table(records, schema=schema)
