"""The only module that reaches into Dagster's private modules (``dagster._...``).

Each use is one small function, checked against Dagster 1.13.27 and exercised for real in
``retrain_assets_tests/test_compat.py``, so an upgrade that moves or changes one breaks here and in its test.
Dagster is imported inside the functions: the CLI's quiet tick imports this module without loading Dagster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from dagster import AssetKey, DagsterInstance
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.workspace.context import WorkspaceProcessContext


def stale_causes(instance: "DagsterInstance", graph: "AssetGraph") -> dict["AssetKey", set[str]]:
    """Each asset Dagster itself calls stale, with the reasons of its stale causes (a new upstream data
    version, a changed code version). Public only through GraphQL; checked against Dagster 1.13.27."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._time import get_current_datetime

    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return {
        key: {cause.reason for cause in resolver.get_stale_causes(key)}
        for key in graph.toposorted_asset_keys
        if resolver.get_status(key) == StaleStatus.STALE
    }


def cron_fire_times(cron: str, timezone: str, start: dt.datetime) -> Iterator[dt.datetime]:
    """The times at or after ``start`` at which ``cron`` fires in ``timezone``, ascending, as Dagster's
    scheduler computes them (so `retrain tick` and the daemon agree). Checked against Dagster 1.13.27."""
    from dagster._utils.schedules import cron_string_iterator

    return cron_string_iterator(start.timestamp(), cron, timezone)


def scheduled_execution_time_tag() -> str:
    """The run tag under which the scheduler daemon records a run's scheduled time, and by which it looks for a
    run of that time before launching it (with the schedule's name and any run key). It is a hidden tag, with
    a leading dot: ``.dagster/scheduled_execution_time``; a run tagged ``dagster/scheduled_execution_time``
    is not found, and the daemon launches that time again. Checked against Dagster 1.13.27."""
    from dagster._core.storage.tags import SCHEDULED_EXECUTION_TIME_TAG

    return SCHEDULED_EXECUTION_TIME_TAG


def launch_scheduled_runs(context: "WorkspaceProcessContext", at: dt.datetime) -> None:
    """One iteration of the scheduler daemon as if the clock read ``at``: every running schedule of the
    workspace launches the times that came since its last iteration, as ``dagster-daemon run`` would, without
    waiting for the cron. A schedule seen for the first time only starts its clock at ``at``. Raises what the
    daemon would only log. Checked against Dagster 1.13.27."""
    from dagster._scheduler.scheduler import launch_scheduled_runs as iterate
    from dagster._utils.error import SerializableErrorInfo

    logger = logging.getLogger("dagster.daemon.SchedulerDaemon")
    yielded = iterate(context, logger, at, iteration_times={})  # errors, span markers and heartbeats (None)
    errors = [value for value in yielded if isinstance(value, SerializableErrorInfo)]
    if errors:
        raise RuntimeError(f"the scheduler failed at {at.isoformat()}: {errors[0].to_string()}")


def missing_check_result_logger() -> logging.Logger:
    """The logger on which Dagster warns that a blocking check "emitted no result" before a downstream step
    (its execution plan's module logger). Checked against Dagster 1.13.27."""
    return logging.getLogger("dagster._core.execution.plan.active")


def daemon_command(workspace: Path) -> list[str]:
    """``dagster-daemon run`` on ``workspace`` with this interpreter (the console script may belong to another
    environment on the PATH). Checked against Dagster 1.13.27."""
    return [sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)]


@contextlib.contextmanager
def workspace_process_context(
    instance: "DagsterInstance", workspace: Path, read_only: bool
) -> Iterator["WorkspaceProcessContext"]:
    """The workspace context the webserver's app factory takes (``dagster_webserver.app`` is public, this
    context is not), with the code locations of the workspace file loaded. Checked against Dagster 1.13.27."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_webserver.version import __version__

    target = WorkspaceFileTarget([str(workspace)])
    with WorkspaceProcessContext(
        instance, version=__version__, read_only=read_only, workspace_load_target=target
    ) as context:
        yield context
