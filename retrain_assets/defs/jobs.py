"""The retraining job: the whole lineage, validated first, trained only when a trigger fires."""

from typing import TYPE_CHECKING, Any

from dagster import AssetSelection, DailyPartitionsDefinition, define_asset_job

from retrain_assets.core.names import MAX_RUNTIME_TAG

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig

RETRAIN_JOB = "retrain"
LINEAGE_KEYS = ["raw_data", "validated_features", "candidate_model", "evaluation_report", "prod_model"]

retrain_job = define_asset_job(
    RETRAIN_JOB,
    selection=AssetSelection.assets(*LINEAGE_KEYS),
    description="Validate new raw_data batches; if a trigger fires, train a candidate, compare, promote if better.",
)

LIVE_CHECK_JOB = "live_check"
live_check_job = define_asset_job(
    LIVE_CHECK_JOB,
    selection=AssetSelection.assets("prod_model"),
    description=(
        "Decide again on the challenger awaiting promotion.live_check, from its stored evaluation report and "
        "its live rows: promote or reject it, without retraining."
    ),
)


def max_runtime_tag(config: "RetrainConfig") -> dict[str, str]:
    """``runs.max_runtime_minutes`` as the tag Dagster's run monitoring enforces on daemon-launched runs."""
    return {MAX_RUNTIME_TAG: str(int(config.runs.max_runtime_seconds))}


HISTORY_JOB = "history"
# the tags of a run over a partition range, as the daemon sets them for a single-run backfill
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKTEST_JOB = "backtest"


def history_jobs(partitions) -> list:
    """The backfillable ``history`` job (a range of partitions in one run) and the ``backtest`` summary job."""
    return [
        define_asset_job(
            HISTORY_JOB,
            selection=AssetSelection.assets("historical_model"),
            partitions_def=partitions,
            description=(
                "Retrain as of one past window (Delta time travel) and score on the next; backfill it over a range."
            ),
        ),
        define_asset_job(
            BACKTEST_JOB,
            selection=AssetSelection.assets("backtest_summary"),
            description="Gather the backtest table and plots.",
        ),
    ]


LIVE_JOB = "live"


def live_job(partitions: DailyPartitionsDefinition) -> Any:
    """The ``live`` job: one day of ``live_performance`` per run, as the labels sensor requests it."""
    return define_asset_job(
        LIVE_JOB,
        selection=AssetSelection.assets("live_performance"),
        partitions_def=partitions,
        description="Join one day's served predictions with their labels: live metrics per model version.",
    )
