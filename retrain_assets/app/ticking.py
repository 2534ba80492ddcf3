"""`retrain tick`: what the Dagster daemon does, once, in process — for cron, CI or a laptop.

Every sensor is evaluated with its cursor, every schedule whose time has come is evaluated, and each
requested run is executed to completion against the project's persistent instance.

The daemon and the tick keep one record of what was launched: the run storage they share, so they can take
turns. A request is skipped when a run tagged as the daemon tags it exists already, whoever launched it: for a
sensor its name and ``run_key`` (so a version never runs twice), for a schedule its name and the scheduled
time, under the daemon's own tag ``.dagster/scheduled_execution_time`` (with the leading dot: a hidden tag;
:func:`scheduled_time_tag`), which the tick writes on its runs too. A schedule is due from the newest run
launched for it (:func:`_due_time`); the version sensor starts from the newest version a run was requested for
(``defs.sensors.newest_handled_version``). The tick's own cursors, in the instance's cursor storage, hold
only what a sensor keeps for itself and, for a schedule that has no run yet, when the tick's clock started.

A tick holds the project lock (:func:`instance.project_lock`): a second tick at the same time launches
nothing. Holding it, a tick knows that any run this package started and that is still marked as running
lost its process (killed, machine lost): it marks that run failed, closes the MLflow runs it left open and
re-executes it from the failed step, so the interrupted work completes exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from retrain_assets.app.execution import RunOutcome, materialize, resume
from retrain_assets.app.instance import MAX_ATTEMPTS, project_lock
from retrain_assets.app.project import LoadedProject, ProjectSource, as_loaded
from retrain_assets.core import statefiles
from retrain_assets.core.delta import LABELS_TABLE, PREDICTIONS_TABLE
from retrain_assets.core.names import INTERRUPTED_TAG, LAUNCHER_TAG, TRIGGER_TAG

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions, RunRequest

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.locking import LockHolder

_CURSOR_PREFIX = "retrain_tick"
STATE_FILE = "tick_state.json"

logger = logging.getLogger(__name__)

# The tags by which the daemon knows what launched a run, and which request it was.
SENSOR_NAME_TAG = "dagster/sensor_name"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
RUN_KEY_TAG = "dagster/run_key"


def load_cursor(instance: "DagsterInstance", name: str) -> Optional[str]:
    """The stored cursor of a sensor or schedule (the one place that touches Dagster's cursor storage)."""
    key = f"{_CURSOR_PREFIX}/{name}"
    return instance.daemon_cursor_storage.get_cursor_values({key}).get(key)


def save_cursor(instance: "DagsterInstance", name: str, cursor: Optional[str]) -> None:
    if cursor is not None:
        instance.daemon_cursor_storage.set_cursor_values({f"{_CURSOR_PREFIX}/{name}": cursor})


def quiet_since_last_tick(
    config: "RetrainConfig", config_path: Path, now: dt.datetime, say: Optional[Callable[[str], None]] = None
) -> bool:
    """True when a tick could not do anything: ``raw_data`` is at the version the last tick's sensor saw,
    the schedule's next time has not come, no labels landed and no served day came due for ``live_performance``,
    the config and the model's code are unchanged, and no run has been recorded since
    (a failed run elsewhere still reaches the failure alert). Reads the Delta log and one small
    file, so `retrain tick` answers without importing Dagster; anything else takes the full path. An empty or
    corrupt state file (written from outside: ours are replaced atomically) is no state: ``say`` (default: a
    logged warning) is told so, and the full tick rewrites it."""
    from retrain_assets.core import delta

    state_path = config.dagster_home / STATE_FILE
    if not state_path.is_file():
        return False
    state, problem = statefiles.read_json(state_path)
    due = state.get("next_schedule") if state is not None else None
    try:
        due_at = dt.datetime.fromisoformat(due) if due is not None else None
    except (TypeError, ValueError):
        problem = f"{state_path}: next_schedule {due!r} is not an ISO time"
    if state is None or problem is not None:  # a full tick rewrites it; the file is only a shortcut
        (say or logger.warning)(f"ignoring {problem} and running a full tick")
        return False
    from retrain_assets.core.training import model_code

    return (
        state.get("config_mtime") == config_path.stat().st_mtime
        and state.get("code_hash") == model_code(config).code_hash
        and state.get("runs_mtime") == _runs_mtime(config)
        and _still_at(config.table_uri(delta.RAW_TABLE), state.get("raw_version"))
        and _still_at(config.table_uri(LABELS_TABLE), state.get("labels_version"))
        and state.get("live_due_day") == _live_due_day(config, now)
        and (due_at is None or now < due_at)
    )


def _still_at(uri: str, recorded: Any) -> bool:
    """Whether the table at ``uri`` is at the version the last tick recorded (``None``: still no table), told
    from its log's commit files (:func:`delta.is_latest`: opening a table of 10,000 versions takes 0.1 s); a
    recorded value that is no version is not."""
    from retrain_assets.core import delta

    return (recorded is None or type(recorded) is int) and delta.is_latest(uri, recorded)


def _live_due_day(config: "RetrainConfig", now: dt.datetime) -> Optional[str]:
    """The newest day ``live_performance`` may compute, once anything was served (else ``None``): a new one
    is due work for the live sensor, as a new labels version is."""
    from retrain_assets.core import delta

    if not delta.exists(config.table_uri(PREDICTIONS_TABLE)):
        return None
    return config.serving.last_due_day(now).isoformat()


def _remember(project: LoadedProject, instance: "DagsterInstance", now: dt.datetime) -> None:
    """After a full tick: what the next one needs to know to answer quickly (see quiet_since_last_tick)."""
    from retrain_assets.core import delta
    from retrain_assets.core.training import model_code

    cursor = load_cursor(instance, "raw_data_version_sensor")
    schedules = [_next(schedule_def, now) for schedule_def in project.defs.schedules or []]
    state = {
        "config_mtime": project.path.stat().st_mtime,
        "runs_mtime": _runs_mtime(project.config),
        "raw_version": int(cursor) if cursor else None,
        "code_hash": model_code(project.config).code_hash,
        "next_schedule": min(schedules) if schedules else None,
        "labels_version": delta.latest_version(project.config.table_uri(LABELS_TABLE)),
        "live_due_day": _live_due_day(project.config, now),
    }
    statefiles.write_atomic(project.config.dagster_home / STATE_FILE, json.dumps(state))


def _runs_mtime(config: "RetrainConfig") -> Optional[float]:
    """When the local instance's run storage last changed (``None`` without one, e.g. on Postgres)."""
    runs = config.dagster_home / "history" / "runs.db"
    return runs.stat().st_mtime if runs.exists() else None


def next_fire_time(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` at which the cron schedule fires."""
    from retrain_assets.app.compat import cron_fire_times

    for moment in cron_fire_times(cron, timezone, after):
        if moment.timestamp() > after.timestamp():
            return moment
    raise ValueError(f"cron {cron!r} never fires")  # pragma: no cover - the iterator is infinite


@dataclass
class Launch:
    """One run request of this tick and what became of it."""

    source: str
    run_key: Optional[str]
    tags: dict[str, str]
    outcome: Optional[RunOutcome] = None
    skipped: Optional[str] = None


@dataclass
class TickReport:
    launches: list[Launch] = field(default_factory=list)
    skips: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Per launch: how it started and, if it ran, its checks, the evaluation's metrics of both models, the
        decision and the drift scores. Undefined metrics (NaN) are null, so the output is strict JSON."""
        return _strict(
            {
                "launched": [
                    {
                        "source": launch.source,
                        "run_key": launch.run_key,
                        "skipped": launch.skipped,
                        "run_id": launch.outcome.run_id if launch.outcome else None,
                        "success": launch.outcome.success if launch.outcome else None,
                        "trigger": launch.outcome.trigger if launch.outcome else launch.tags.get(TRIGGER_TAG),
                        "fired": launch.outcome.fired if launch.outcome else None,
                        "reason": launch.outcome.reason if launch.outcome else None,
                        "error": launch.outcome.error if launch.outcome else None,
                        "checks": _checks(launch.outcome) if launch.outcome else [],
                        "metrics": _metrics(launch.outcome.evaluation) if launch.outcome else None,
                        "decision": launch.outcome.decision if launch.outcome else None,
                        "drift_scores": launch.outcome.drift_scores if launch.outcome else None,
                    }
                    for launch in self.launches
                ],
                "skipped": self.skips,
            }
        )


def _checks(outcome: RunOutcome) -> list[dict]:
    return [
        {
            "name": name,
            "passed": check.passed,
            "blocking": check.blocking,
            "severity": check.severity,
            "message": check.message,
        }
        for name, check in outcome.checks.items()
    ]


def _metrics(evaluation: Optional[dict]) -> Optional[dict]:
    """Both models' holdout metrics from the run's evaluation report (``None`` when it did not evaluate)."""
    if evaluation is None:
        return None
    keys = ("metric", "candidate_version", "candidate", "champion_version", "champion", "holdout_rows")
    return {key: evaluation[key] for key in keys}


def _strict(value):
    """``value`` with every NaN or infinite float as ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


STUCK_FILE = "stuck_alert.json"


def report_stuck(config: "RetrainConfig", holder: Optional["LockHolder"]) -> Optional[str]:
    """Why the project looks stuck, when its lock has been held longer than ``runs.lock_alert_minutes``
    (else ``None``); the first tick to see a holder stuck sends a ``stuck`` alert, later ones do not."""
    from retrain_assets.core.alerts import send_alert

    if holder is None or holder.age_seconds() <= config.runs.lock_alert_seconds:
        return None
    message = (
        f"the project lock has been held longer than runs.lock_alert_minutes "
        f"({config.runs.lock_alert_seconds / 60:g} min): the holder may be hung; stop pid {holder.pid} "
        f"on {holder.host} if it is"
    )
    marker = config.dagster_home / STUCK_FILE
    seen = f"{holder.pid}@{holder.host}@{holder.since.isoformat()}"
    if (statefiles.read_json(marker)[0] or {}).get("holder") != seen:
        send_alert(
            config,
            "stuck",
            f"retraining is blocked: {holder.describe()}; {message}",
            {
                "pid": holder.pid,
                "host": holder.host,
                "command": holder.command,
                "since": holder.since.isoformat(),
                "minutes": round(holder.age_seconds() / 60),
            },
        )
        statefiles.write_atomic(marker, json.dumps({"holder": seen}))
    return message


def tick(project: ProjectSource, instance: "DagsterInstance", now: Optional[dt.datetime] = None) -> TickReport:
    """Resume interrupted runs, evaluate every sensor and due schedule once, execute what they request;
    return what happened. Holds the project lock throughout; raises :class:`locking.ProjectBusy` when
    another process holds it."""
    project = as_loaded(project)
    with project_lock(project.config, "retrain tick"):
        recovered = [recover_interrupted(project, instance, run) for run in interrupted_runs(instance)]
        report = TickReport(launches=recovered)
        _tick(project, instance, now or dt.datetime.now(dt.timezone.utc), report)
    return report


def interrupted_runs(instance: "DagsterInstance") -> list:
    """Retraining runs this package started that are still marked queued or running. Only meaningful while
    holding the project lock: then no process of ours is running them."""
    from dagster import DagsterRunStatus, RunsFilter

    from retrain_assets.defs.jobs import RETRAIN_JOB

    unfinished = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    records = instance.get_run_records(
        RunsFilter(job_name=RETRAIN_JOB, statuses=unfinished, tags={LAUNCHER_TAG: "retrain"})
    )
    return [record.dagster_run for record in sorted(records, key=lambda record: record.create_timestamp)]


def recover_interrupted(project: LoadedProject, instance: "DagsterInstance", run) -> Launch:
    """Mark an interrupted run failed, close the MLflow runs it left open, and re-execute it from failure."""
    from dagster import RunsFilter

    from retrain_assets.core.registry import Registry

    message = f"interrupted: the process running {run.run_id} stopped before the run finished"
    instance.report_run_failed(run, message=message)
    instance.add_run_tags(run.run_id, {INTERRUPTED_TAG: "true"})
    Registry(project.config).close_interrupted(run.run_id)
    launch = Launch(source="recovery", run_key=run.tags.get(RUN_KEY_TAG), tags=dict(run.tags))
    if run.root_run_id:
        attempts = len(instance.get_runs(RunsFilter(tags={"dagster/root_run_id": run.root_run_id}))) + 1
    else:
        attempts = 1
    if attempts >= MAX_ATTEMPTS:
        launch.skipped = f"{message}; not resumed again after {attempts} attempts"
        return launch
    launch.outcome = resume(project, instance, run.run_id)
    return launch


def _tick(project: LoadedProject, instance: "DagsterInstance", now: dt.datetime, report: TickReport) -> None:
    from dagster import RunStatusSensorDefinition

    defs = project.defs
    sensors = list(defs.sensors or [])
    status_sensors = [s for s in sensors if isinstance(s, RunStatusSensorDefinition)]
    for status_sensor in status_sensors:  # first evaluation starts their cursor before this tick's runs
        _evaluate_sensor(defs, status_sensor, instance, report)
    for sensor_def in sorted(sensors, key=lambda each: each.name not in LIVE_SENSORS):
        if sensor_def not in status_sensors:
            for request in _evaluate_sensor(defs, sensor_def, instance, report):
                source = {SENSOR_NAME_TAG: sensor_def.name}
                identity = {**source, RUN_KEY_TAG: request.run_key} if request.run_key is not None else {}
                job = request.job_name or sensor_def.job_name  # the live sensor targets the `live` job
                report.launches.append(_launch(project, instance, sensor_def.name, request, identity, source, job))
    for schedule_def in defs.schedules or []:
        for request, identity in _schedule_requests(schedule_def, instance, now, report):
            report.launches.append(_launch(project, instance, schedule_def.name, request, identity))
    for status_sensor in status_sensors:
        _evaluate_sensor(defs, status_sensor, instance, report)
    _remember(project, instance, now)


# Evaluated first: a served day's verdict on the champion that served it is read (and acted on) before a run
# on a new batch can replace that champion, which would leave the verdict about a champion no longer serving.
LIVE_SENSORS = ("live_labels_sensor", "live_performance_sensor")


def _evaluate_sensor(
    defs: "Definitions", sensor_def, instance: "DagsterInstance", report: TickReport
) -> list["RunRequest"]:
    from dagster import RunStatusSensorDefinition, build_sensor_context

    with build_sensor_context(
        instance=instance,
        cursor=load_cursor(instance, sensor_def.name),
        definitions=defs,
        sensor_name=sensor_def.name,
        resources=defs.resources,
    ) as context:
        result = sensor_def.evaluate_tick(context)
    save_cursor(instance, sensor_def.name, result.cursor)
    if not result.run_requests and result.skip_message and not isinstance(sensor_def, RunStatusSensorDefinition):
        report.skips[sensor_def.name] = result.skip_message
    return list(result.run_requests or [])


def scheduled_time_tag(moment: dt.datetime) -> dict[str, str]:
    """The tag of a run scheduled for ``moment``, as the scheduler daemon writes it and looks it up: its hidden
    tag (:func:`compat.scheduled_execution_time_tag`), the time in UTC, ISO format."""
    from retrain_assets.app.compat import scheduled_execution_time_tag

    return {scheduled_execution_time_tag(): moment.astimezone(dt.timezone.utc).isoformat()}


def last_scheduled_time(instance: "DagsterInstance", schedule_name: str) -> Optional[dt.datetime]:
    """The newest scheduled time a run was launched for by the schedule, by this tick or by the daemon
    (``None`` before the first): the run storage is the one record of what ran."""
    from dagster import RunsFilter

    from retrain_assets.app.compat import scheduled_execution_time_tag

    tag = scheduled_execution_time_tag()
    runs = instance.get_runs(RunsFilter(tags={SCHEDULE_NAME_TAG: schedule_name}), limit=20)
    return max((dt.datetime.fromisoformat(run.tags[tag]) for run in runs if tag in run.tags), default=None)


def _due_time(schedule_def, instance: "DagsterInstance", now: dt.datetime, report: TickReport) -> Optional[dt.datetime]:
    """The latest fire time after the schedule's last scheduled run and not after ``now``; ``None`` when none is
    (why goes to ``report.skips``). Only a launched run moves the schedule on, so a tick that died before
    launching leaves the time due. Before any run of the schedule, the time its clock started is the start:
    the first tick only starts the clock (kept as the tick's cursor), as the daemon's first iteration does."""
    last = last_scheduled_time(instance, schedule_def.name)
    if last is None:
        started = load_cursor(instance, schedule_def.name)
        if started is None:
            save_cursor(instance, schedule_def.name, now.isoformat())
            report.skips[schedule_def.name] = f"started; first run at {_next(schedule_def, now)}"
            return None
        last = dt.datetime.fromisoformat(started)
    due, moment = None, last
    timezone = schedule_def.execution_timezone or "UTC"
    while (moment := next_fire_time(schedule_def.cron_schedule, timezone, moment)) <= now:
        due = moment
    if due is None:
        report.skips[schedule_def.name] = f"not due; next run at {_next(schedule_def, now)}"
    return due


def _schedule_requests(
    schedule_def, instance: "DagsterInstance", now: dt.datetime, report: TickReport
) -> list[tuple["RunRequest", dict[str, str]]]:
    """The schedule's requests for its due time (:func:`_due_time`), each with its identity as the daemon
    dedupes on it: the schedule's name, the scheduled time and, if the schedule set one, the run key. A request
    without a run key is given ``schedule@<time>``, for the tick's report."""
    from dagster import build_schedule_context

    due = _due_time(schedule_def, instance, now, report)
    if due is None:
        return []
    result = schedule_def.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=due))
    identity = {SCHEDULE_NAME_TAG: schedule_def.name, **scheduled_time_tag(due)}
    return [
        (
            request.with_replaced_attrs(run_key=request.run_key or f"schedule@{due.isoformat()}"),
            {**identity, RUN_KEY_TAG: request.run_key} if request.run_key else identity,
        )
        for request in result.run_requests or []
    ]


def _next(schedule_def, now: dt.datetime) -> str:
    return next_fire_time(schedule_def.cron_schedule, schedule_def.execution_timezone or "UTC", now).isoformat()


def _launch(
    project: LoadedProject,
    instance: "DagsterInstance",
    source: str,
    request: "RunRequest",
    identity: dict[str, str],
    tags: Optional[dict[str, str]] = None,
    job_name: Optional[str] = None,
) -> Launch:
    """Execute ``request`` unless a run carrying every tag of ``identity`` exists, launched by a tick or by the
    daemon; the run is tagged with ``identity`` (and ``tags``), so the daemon finds it in turn. An empty
    ``identity`` (a sensor request without a run key) always runs, as under the daemon. ``job_name`` is the
    job the request targets (the retraining job when ``None``), run for the request's partition."""
    from dagster import RunsFilter

    run_tags = {**request.tags, **(tags or {}), **identity}
    if request.run_key is not None:
        run_tags[RUN_KEY_TAG] = request.run_key
    launch = Launch(source=source, run_key=request.run_key, tags=run_tags)
    earlier = instance.get_runs(RunsFilter(tags=identity), limit=1) if identity else []
    if earlier:
        launch.skipped = f"run_key {request.run_key} already ran as {earlier[0].run_id}"
        return launch
    launch.outcome = materialize(
        project, instance, tags=run_tags, job_name=job_name, partition_key=request.partition_key
    )
    return launch
