"""Sensors: one run per new ``raw_data`` Delta version, and for every failed run an alert and the MLflow runs it
left open closed.

The version sensor's tick reads only the Delta log and the run storage (no mlflow, scikit-learn or Great
Expectations), so a tick with nothing new costs milliseconds. What it has handled is the newest version a run
was requested for, or its cursor if that is newer (:func:`newest_handled_version`): the daemon and `retrain
tick` share the run storage, not a cursor, so they can take turns; ``run_key`` is the version, so no version
can start two runs.
"""

from typing import Optional

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from retrain_assets.core import delta
from retrain_assets.core.names import BACKFILL_TAG, DELTA_VERSION_TAG, TRIGGER_TAG
from retrain_assets.defs.assets.model import latest_decision, retrain_decision
from retrain_assets.defs.jobs import RETRAIN_JOB, max_runtime_tag, retrain_job
from retrain_assets.defs.resources import RetrainProject

ALERTED_RUN_TAGS = (
    TRIGGER_TAG,
    DELTA_VERSION_TAG,
    "dagster/run_key",
    "dagster/sensor_name",
    "dagster/schedule_name",
    "dagster/partition",
    BACKFILL_TAG,
)


def raw_data_version_sensor(context: SensorEvaluationContext, project: RetrainProject):
    """Requests the retraining job for each new raw_data version (coalesced into one run on the newest
    version unless ``triggers.new_version.coalesce`` is false), tagged with the version and trigger."""
    config = project.load()
    uri = config.table_uri(delta.RAW_TABLE)
    latest = delta.latest_version(uri)
    seen = newest_handled_version(context)
    if latest is None:
        return SkipReason(f"no raw_data table at {uri} yet")
    if seen is not None and latest <= seen:
        return SkipReason(f"raw_data is still at version {latest}")
    versions = delta.batch_versions(uri, seen, latest)
    if not versions:
        return SensorResult(skip_reason=f"raw_data versions up to {latest} added no rows", cursor=str(latest))
    targets = versions[-1:] if config.triggers.new_version.coalesce else versions
    requests = [
        RunRequest(
            run_key=str(version),
            tags={DELTA_VERSION_TAG: str(version), TRIGGER_TAG: "new_version", **max_runtime_tag(config)},
        )
        for version in targets
    ]
    return SensorResult(run_requests=requests, cursor=str(latest))


def newest_handled_version(context: SensorEvaluationContext) -> Optional[int]:
    """The newest raw_data version already handled: the larger of this evaluator's cursor and the newest version
    a run was requested for. The daemon keeps its cursor in its instigator state and `retrain tick` keeps its own,
    but both write their runs to the one run storage, so whichever evaluates next starts where the other
    stopped: a version is never run twice, and a version a coalesced run covered is never run later."""
    from dagster import RunsFilter

    runs = context.instance.get_runs(RunsFilter(job_name=RETRAIN_JOB, tags={TRIGGER_TAG: "new_version"}), limit=20)
    requested = [int(run.tags[DELTA_VERSION_TAG]) for run in runs if DELTA_VERSION_TAG in run.tags]
    cursor = [int(context.cursor)] if context.cursor else []
    return max([*requested, *cursor], default=None)


def model_code_sensor(context: SensorEvaluationContext, project: RetrainProject):
    """GitOps: requests the retraining job when the model's code or params (:func:`training.model_code`)
    differ from those ``candidate_model`` last decided with, so a commit retrains without new data. The run
    key names the code hash and the features version, so each change is tried once per data version;
    ``candidate_model`` then retrains only when the champion was built from other code or params and nothing
    was built from the current ones on this data yet (it lost: no retrain loop)."""
    from retrain_assets.core.training import model_code

    config = project.load()
    last = latest_decision(context.instance)
    if last is None or "code_hash" not in last:
        return SkipReason("candidate_model has not decided with a code hash yet; the first data run does")
    code = model_code(config)
    if last["code_hash"] == code.code_hash:
        return SkipReason(f"model code and params unchanged since the last decision (code {code.code_hash})")
    trigger = "params_changed" if last.get("params_hash") != code.params_hash else "code_changed"
    features = delta.latest_version(config.table_uri(delta.FEATURES_TABLE))
    return RunRequest(
        run_key=f"{trigger}-{code.code_hash}-features-v{features}",
        tags={TRIGGER_TAG: trigger, **max_runtime_tag(config)},
    )


def build_sensors(interval_seconds: int) -> list[SensorDefinition]:
    """The project's sensors. The daemon evaluates the two that request runs, and the one that closes a failed
    run's MLflow runs, every ``interval_seconds`` (``triggers.sensor_interval_seconds``, Dagster's
    ``minimum_interval_seconds``); `retrain tick` evaluates them whenever it runs."""
    requesting = [
        sensor(
            name=evaluation.__name__,
            job=retrain_job,
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=interval_seconds,
        )(evaluation)
        for evaluation in (raw_data_version_sensor, model_code_sensor)
    ]
    closing = run_failure_sensor(
        name=close_mlflow_runs_of_failed_run.__name__,
        monitored_jobs=[retrain_job],
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
    )(close_mlflow_runs_of_failed_run)
    return [*requesting, alert_on_run_failure, closing]


def close_mlflow_runs_of_failed_run(context: RunFailureSensorContext, project: RetrainProject):
    """Marks ``KILLED`` the MLflow runs a failed retraining run left ``RUNNING``. A run whose worker was killed
    under the daemon never closes its MLflow run itself; the daemon's run retries re-execute the Dagster run (see
    ``instance._instance_yaml``) and this sensor closes what the dead worker left, as `retrain tick` does for its
    own runs (:meth:`Registry.close_interrupted`)."""
    config = project.load()
    closed = project.registry(config).close_interrupted(context.dagster_run.run_id)
    if closed:
        context.log.info(f"run {context.dagster_run.run_id[:8]} left MLflow runs open, now KILLED: {closed}")


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING, monitored_jobs=[retrain_job])
def alert_on_run_failure(context: RunFailureSensorContext, project: RetrainProject):
    """Sends a ``run_failed`` alert (webhook and alerts.jsonl) for every failed retraining run, naming the
    failed step and its exception, with URLs cut to their host (they can carry credentials), and what the
    run had decided about retraining, if it got that far."""
    from retrain_assets.core.alerts import send_alert, step_error, without_urls

    run = context.dagster_run
    error = step_error(context.get_step_failure_events())
    message = without_urls(error or context.failure_event.message or "run failed")
    # only the tags this project sets: a run's tags can hold anything its launcher put there (tokens included)
    tags = {key: run.tags[key] for key in ALERTED_RUN_TAGS if key in run.tags}
    send_alert(
        project.load(),
        "run_failed",
        f"run {run.run_id[:8]} of {run.job_name} failed: {message}",
        {"run_id": run.run_id, "error": message, "tags": tags, "retrain": retrain_decision(context.instance, run)},
    )


# ---- live performance (issue 13): labels -> live_performance days -> the live_performance trigger ----------


def live_labels_sensor(context: SensorEvaluationContext, project: RetrainProject):
    """Requests a ``live`` run for each day of ``live_performance`` that became due (its end plus
    ``serving.label_delay_hours``) and for each due day whose predictions a new labels version labelled, so
    late labels reach the day they belong to. A tick reads the labels table's version and the predictions
    table's file statistics (Delta logs only); the new labels and the predictions they name only when the
    version moved. The run key is the day and the labels version: a day is computed once per labels version."""
    import datetime as dt
    import json

    from retrain_assets.core.live import plan_days

    config = project.load()
    state = json.loads(context.cursor) if context.cursor else {}
    due = state.get("due_through")
    plan = plan_days(
        config,
        dt.datetime.now(dt.timezone.utc),
        state.get("labels_version"),
        dt.date.fromisoformat(due) if due else None,
    )
    cursor = json.dumps(
        {
            "labels_version": plan.labels_version,
            "due_through": plan.due_through.isoformat() if plan.due_through else None,
        }
    )
    labels = "no-labels" if plan.labels_version is None else f"labels-v{plan.labels_version}"
    if not plan.days:
        return SensorResult(skip_reason=f"no day became due and no new labels ({labels})", cursor=cursor)
    tags = {TRIGGER_TAG: "live_labels", **max_runtime_tag(config)}
    requests = [RunRequest(run_key=f"{day}@{labels}", partition_key=day.isoformat(), tags=tags) for day in plan.days]
    return SensorResult(run_requests=requests, cursor=cursor)


def live_performance_sensor(context: SensorEvaluationContext, project: RetrainProject):
    """Requests the retraining job, with the reason in ``retrain/trigger_reason``, when a ``live_performance``
    materialization found the champion's served scores or inputs drifted (trigger ``prediction_drift``, once
    per champion), or its live metric past the rule of ``triggers.performance`` (more than ``max_drop`` below
    its holdout metric, or past the floor) on at least ``serving.min_labelled_rows`` labelled rows (trigger
    ``live_performance``; the run key names the champion and labels versions, so a champion is retrained at
    most once per labels version, however many days found it behind). Both found for one champion make one
    run, tagged with both triggers and both reasons, keyed as the live-performance run.

    With ``promotion.live_check`` it also requests the ``live_check`` job once a materialization counts enough
    paired rows for the challenger awaiting it (trigger ``live_check``; keyed by the challenger and the labels
    version). It reads only the materializations after its cursor (the last one's storage id)."""
    from dagster import AssetKey, AssetRecordsFilter

    from retrain_assets.core.names import TRIGGER_REASON_TAG
    from retrain_assets.defs.assets.live import DRIFT_METADATA, LIVE_CHECK_METADATA, LIVE_PERFORMANCE, TRIGGER_METADATA
    from retrain_assets.defs.jobs import LIVE_CHECK_JOB

    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(LIVE_PERFORMANCE), after_storage_id=after), limit=100, ascending=True
    ).records
    if not records:
        return SkipReason("no live_performance materialization since the last tick")
    config = project.load()
    found: dict[int, dict[str, tuple[str, str]]] = {}  # champion version -> trigger -> (run key, reason)
    checks: dict[str, str] = {}  # live_check run key -> reason
    for record in records:
        materialization = record.asset_materialization
        metadata = materialization.metadata if materialization is not None else {}
        entry = metadata.get(LIVE_CHECK_METADATA)
        check = entry.value if entry is not None else None
        if isinstance(check, dict) and check.get("ready"):
            checks[f"live_check-challenger-v{check['challenger_version']}-labels-v{check['labels_version']}"] = check[
                "reason"
            ]
        for trigger, name in (("live_performance", TRIGGER_METADATA), ("prediction_drift", DRIFT_METADATA)):
            entry = metadata.get(name)
            value = entry.value if entry is not None else None
            if isinstance(value, dict) and value.get("fired"):
                key = f"{trigger}-champion-v{value['champion_version']}"  # drift: once per champion, until replaced
                if trigger == "live_performance":
                    key += f"-labels-v{value['labels_version']}"
                found.setdefault(value["champion_version"], {}).setdefault(trigger, (key, value["reason"]))
    cursor = str(records[-1].storage_id)
    if not found and not checks:
        why = "the champion is neither behind its holdout on live labelled rows nor drifting in what it is served"
        return SensorResult(skip_reason=why, cursor=cursor)
    runtime = max_runtime_tag(config)
    requests = [  # first: the challenger's decision, before a retrain replaces it
        RunRequest(
            run_key=key,
            job_name=LIVE_CHECK_JOB,
            tags={TRIGGER_TAG: "live_check", TRIGGER_REASON_TAG: reason, **runtime},
        )
        for key, reason in checks.items()
    ]
    for fired in found.values():  # one run per champion: a second would retrain on the same data again
        keys, reasons = zip(*fired.values(), strict=True)
        tags = {TRIGGER_TAG: ",".join(fired), TRIGGER_REASON_TAG: "; ".join(reasons), **runtime}
        requests.append(RunRequest(run_key=keys[0], job_name=RETRAIN_JOB, tags=tags))
    return SensorResult(run_requests=requests, cursor=cursor)


def build_live_sensors(interval_seconds: int) -> list[SensorDefinition]:
    """The two live-performance sensors, evaluated as often as the others (``triggers.sensor_interval_seconds``)
    and on by default: days of the ``live`` job, and the retraining job when the champion fell behind."""
    from retrain_assets.defs.jobs import LIVE_JOB, live_check_job

    labels = sensor(
        name=live_labels_sensor.__name__,
        job_name=LIVE_JOB,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
    )(live_labels_sensor)
    trigger = sensor(
        name=live_performance_sensor.__name__,
        jobs=[retrain_job, live_check_job],
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
    )(live_performance_sensor)
    return [labels, trigger]


# ---- end of live performance ---------------------------------------------------------------------------------
