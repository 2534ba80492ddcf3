"""The retrain schedule: retrains on the calendar even when no trigger fires."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from retrain_assets.core.names import TRIGGER_TAG
from retrain_assets.defs.jobs import retrain_job


def retrain_schedule(cron: str, tags: dict[str, str]) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="retrain_schedule",
        job=retrain_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        tags={TRIGGER_TAG: "schedule", **tags},
        default_status=DefaultScheduleStatus.RUNNING,
        description="Retrain on the latest raw_data version even without a trigger (triggers.schedule).",
    )
