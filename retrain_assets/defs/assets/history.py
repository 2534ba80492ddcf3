"""The history path: ``historical_model`` per time window (backfillable) and the ``backtest_summary``."""

import datetime as dt
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    BackfillPolicy,
    BetaWarning,
    Config,
    DailyPartitionsDefinition,
    Failure,
    MetadataValue,
    Output,
    PreviewWarning,
    TableColumn,
    TableMetadataValue,
    TableRecord,
    TableSchema,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
    asset,
)

from retrain_assets.core import backtest
from retrain_assets.core.config import HistoryConfig, RetrainConfig
from retrain_assets.defs.resources import RetrainProject

HISTORY_GROUP = "history"
ROW_METADATA = "backtest_row"
WINDOW_CHECK = "window_validated"  # the per-partition gate: the window's time-travelled batches validated


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

    with warnings.catch_warnings():  # backfill_policy is beta and partitioned checks a preview in Dagster 1.13
        warnings.simplefilter("ignore", BetaWarning)
        warnings.simplefilter("ignore", PreviewWarning)

        @asset(
            group_name=HISTORY_GROUP,
            partitions_def=partitions,
            deps=["raw_data"],
            kinds={"scikitlearn", "mlflow"},
            code_version="2",
            backfill_policy=BackfillPolicy.single_run(),
            output_required=False,
            check_specs=[_window_check_spec(partitions)],
        )
        def historical_model(
            context: AssetExecutionContext, project: RetrainProject, config: HistoricalModelConfig
        ) -> Iterator[Any]:
            """The model as it would have been trained at the end of each window: raw_data time-travelled to
            the version that had landed by then, validated, trained with the current params and seed, and
            scored on the following window (out-of-time). Logged to the MLflow experiment ``<name>-history``
            with its partition and Delta version; never registered, never the champion. A window whose training
            inputs an earlier partition already had reuses that model (the run cache in ``core.backtest``; run config
            ``run_cache: false`` trains every partition).

            One run does a whole range (``BackfillPolicy.single_run()``: a UI backfill is one process importing the
            ML stack once, as `retrain backfill` is), partition by partition: each gets its ``window_validated`` check
            and, when that passed, its own materialization, so a window with nothing to train on fails alone and
            the UI shows which one and why. The run then fails, naming them; the other partitions stay done."""
            from retrain_assets.core.training import model_code

            settings = project.load()
            registry = project.registry(settings)
            code = model_code(settings)
            check = AssetCheckKey(context.asset_key, WINDOW_CHECK)
            failed, reads = {}, backtest.BatchReads()
            for key in context.partition_keys:
                window = partitions.time_window_for_partition_key(key)
                eval_end = window.end + (window.end - window.start) * settings.history.evaluation_windows
                try:
                    inputs = backtest.training_window(settings, key, window.end, reads)
                except ValueError as exc:
                    failed[key] = str(exc)
                    yield _window_check(check, key, passed=False, description=str(exc), metadata={})
                    continue
                gate = {"delta_version": inputs.version, "rejected_versions": MetadataValue.json(inputs.rejected)}
                yield _window_check(check, key, passed=True, description=None, metadata=gate)
                result = backtest.backtest(settings, registry, inputs, eval_end, code, config.run_cache, reads)
                yield AssetMaterialization(
                    context.asset_key, partition=key, metadata=materialization_metadata(result, window.end, settings)
                )
            if failed:
                listed, total = "; ".join(failed.values()), len(context.partition_keys)
                raise Failure(
                    f"{len(failed)} of {total} history partitions have nothing to train on: {listed}",
                    metadata={"failed_partitions": MetadataValue.json(failed)},
                )
            yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check))

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


def _window_check_spec(partitions: TimeWindowPartitionsDefinition) -> AssetCheckSpec:
    """``window_validated``, one result per partition (a Dagster preview in 1.13: made where its warning is
    silenced, in :func:`build_history_assets`)."""
    return AssetCheckSpec(
        WINDOW_CHECK,
        asset="historical_model",
        blocking=True,
        partitions_def=partitions,
        description="The window's raw_data version, time-travelled to, has accepted batches to train on.",
    )


def _window_check(
    check: AssetCheckKey, partition: str, passed: bool, description: Optional[str], metadata: dict
) -> AssetCheckEvaluation:
    """The ``window_validated`` result of one partition (a ranged run has no single partition for Dagster to
    fill in, so the evaluation names it)."""
    return AssetCheckEvaluation(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=passed,
        partition=partition,
        blocking=True,
        description=description,
        metadata=metadata,
    )


def materialization_metadata(result: backtest.Backtest, as_of: dt.datetime, settings: RetrainConfig) -> dict:
    """One partition's materialization: what the UI plots across partitions, and its backtest row whole."""
    metric = settings.promotion.metric
    return {
        "delta_version": result.delta_version,
        "as_of": as_of.isoformat(),
        "train_rows": result.train_rows,
        "eval_rows": result.eval_rows,
        f"holdout_{metric}": result.metrics.get(metric),
        f"out_of_time_{metric}": result.oot_metrics.get(metric),
        "max_psi": result.max_psi,
        "drifted": MetadataValue.json(result.drifted),
        "rejected_versions": MetadataValue.json(result.rejected_versions),
        "mlflow_run_id": result.run_id,
        "reused_model_run": result.reused_from or "none (trained)",
        ROW_METADATA: MetadataValue.json(result.row()),
    }


def backtest_row(metadata: Mapping[str, Any]) -> dict:
    """The backtest row a partition's materialization carries (see :func:`materialization_metadata`)."""
    return dict(metadata[ROW_METADATA].value)


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
