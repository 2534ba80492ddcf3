"""The Delta version sensor on a real instance and real Delta table, and `retrain tick` driving it."""

import datetime as dt
import subprocess
import sys

from dagster import DagsterInstance, build_sensor_context
from deltalake import DeltaTable

from retrain_assets.app.ticking import next_fire_time, tick
from retrain_assets.core import delta, landing, synthetic
from retrain_assets.defs.build import build_defs
from retrain_assets.defs.resources import RetrainProject

from .conftest import START, write_config


def land(project, day: int, rows: int = 200) -> int:
    """Append one small synthetic batch straight to raw_data (as any Delta writer could)."""
    path = project.path.parent / f"batch-{day}.csv"
    synthetic.churn_batch(START + dt.timedelta(days=day), rows, seed=day).to_csv(path, index=False)
    return landing.ingest_file(project.config, path).version


def evaluate(project, cursor=None):
    with (
        DagsterInstance.ephemeral() as instance,
        build_sensor_context(
            instance=instance, cursor=cursor, resources={"project": RetrainProject(config_path=str(project.path))}
        ) as context,
    ):
        return build_defs(str(project.path)).resolve_sensor_def("raw_data_version_sensor").evaluate_tick(context)


def test_sensor_requests_one_coalesced_run_per_new_version_and_skips_when_nothing_is_new(automated):
    assert "no raw_data table" in evaluate(automated).skip_message
    for day in range(3):
        land(automated, day)

    result = evaluate(automated)
    (request,) = result.run_requests
    assert request.run_key == "2"
    assert request.tags.items() >= {"retrain/delta_version": "2", "retrain/trigger": "new_version"}.items()
    assert request.tags["dagster/max_runtime"] == "7200", "the daemon's run monitoring stops it after 120 min"
    assert result.cursor == "2"
    assert "still at version 2" in evaluate(automated, cursor="2").skip_message


def test_sensor_can_request_one_run_per_version_and_ignores_compactions(automated):
    write_config(automated, triggers={"new_version": {"coalesce": False}})
    for day in range(3):
        land(automated, day)

    assert [r.run_key for r in evaluate(automated, cursor="0").run_requests] == ["1", "2"]
    DeltaTable(automated.config.table_uri(delta.RAW_TABLE)).optimize.compact()
    compacted = evaluate(automated, cursor="2")
    assert not compacted.run_requests and compacted.cursor == "3" and "added no rows" in compacted.skip_message


def test_a_lost_cursor_runs_no_version_again_and_a_repeated_run_key_is_skipped(automated, persistent):
    from dagster import RunRequest

    from retrain_assets.app.project import load_project
    from retrain_assets.app.ticking import _launch, save_cursor

    land(automated, 0)
    first = tick(automated.path, persistent)
    assert [launch.run_key for launch in first.launches] == ["0"]

    save_cursor(persistent, "raw_data_version_sensor", "")  # a lost cursor: the run storage still knows
    again = tick(automated.path, persistent)
    assert again.launches == [] and "still at version 0" in again.skips["raw_data_version_sensor"]

    # two evaluators racing on one version: the second request finds the first's run and is skipped
    race = RunRequest(run_key="0", tags={"retrain/delta_version": "0", "retrain/trigger": "new_version"})
    identity = {"dagster/sensor_name": "raw_data_version_sensor", "dagster/run_key": "0"}
    raced = _launch(load_project(automated.path), persistent, "raw_data_version_sensor", race, identity)
    assert raced.outcome is None and raced.skipped == f"run_key 0 already ran as {first.launches[0].outcome.run_id}"


def test_schedule_fires_once_when_due_and_does_not_rebuild_the_same_model(automated, persistent):
    land(automated, 0)
    start = dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)  # a Monday, after 06:00
    first = tick(automated.path, persistent, now=start)
    assert [launch.source for launch in first.launches] == ["raw_data_version_sensor"]
    assert "first run at 2026-11-09T06:00:00" in first.skips["retrain_schedule"]

    later = start + dt.timedelta(days=15)  # two Mondays passed: only the latest one runs
    due = tick(automated.path, persistent, now=later)
    (launch,) = due.launches
    assert launch.source == "retrain_schedule" and launch.run_key == "schedule@2026-11-16T06:00:00+00:00"
    tags = persistent.get_run_by_id(launch.outcome.run_id).tags
    assert tags["dagster/schedule_name"] == "retrain_schedule"
    assert tags[".dagster/scheduled_execution_time"] == "2026-11-16T06:00:00+00:00", "as the daemon tags its runs"
    assert launch.outcome.success and launch.outcome.trigger == "schedule" and "schedule" in launch.outcome.fired
    assert launch.outcome.retrain["retrain"] is False and launch.outcome.decision is None
    assert "the champion v1 was built from this very data" in launch.outcome.reason, "no new data: the run cache"
    assert not tick(automated.path, persistent, now=later).launches


def test_a_scheduled_time_the_daemon_launched_is_not_due_for_tick(automated, persistent):
    """The daemon's scheduler tags its run with the schedule's name and the hidden ``.dagster/`` time tag; the
    tick reads the schedule's last time from there, not from its own cursor."""
    start = dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)  # a Monday, after 06:00
    started = tick(automated.path, persistent, now=start)
    assert "started; first run at 2026-11-09T06:00" in started.skips["retrain_schedule"]
    daemon_tags = {
        "dagster/schedule_name": "retrain_schedule",
        ".dagster/scheduled_execution_time": "2026-11-09T06:00:00+00:00",
        "retrain/trigger": "schedule",
    }
    persistent.create_run_for_job(build_defs(str(automated.path)).resolve_job_def("retrain"), tags=daemon_tags)

    after = tick(automated.path, persistent, now=start + dt.timedelta(days=8))  # past 11-09 06:00
    assert after.launches == [] and "next run at 2026-11-16T06:00" in after.skips["retrain_schedule"]


def test_next_fire_time_follows_the_cron():
    monday_noon = dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)
    assert next_fire_time("0 6 * * 1", "UTC", monday_noon) == dt.datetime(2026, 11, 9, 6, tzinfo=dt.timezone.utc)
    assert next_fire_time("*/15 * * * *", "UTC", monday_noon).minute == 15


def test_a_tick_with_nothing_new_launches_nothing_and_imports_nothing_heavy(automated, persistent):
    land(automated, 0)
    tick(automated.path, persistent)
    code = f"""
import sys, time
from retrain_assets.core.config import load_config
from retrain_assets.app.instance import project_instance
from retrain_assets.app.ticking import tick
config = load_config({str(automated.path)!r})
with project_instance(config) as instance:
    report = tick(config.home.parent / "retrain.yaml", instance)
assert not report.launches, report.launches
heavy = [m for m in ("mlflow", "sklearn", "great_expectations") if m in sys.modules]
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_cli_answers_a_quiet_tick_without_loading_dagster(automated, persistent):
    from retrain_assets.app.ticking import quiet_since_last_tick

    land(automated, 0)
    tick(automated.path, persistent)
    now = dt.datetime.now(dt.timezone.utc)
    assert quiet_since_last_tick(automated.config, automated.path, now)
    assert not quiet_since_last_tick(automated.config, automated.path, now + dt.timedelta(days=8)), "schedule due"
    code = f"""
import sys
from retrain_assets.app.cli import main
main(["--config", {str(automated.path)!r}, "tick"], standalone_mode=False)
assert "dagster" not in sys.modules and "mlflow" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing triggered" in result.stdout

    land(automated, 1)
    assert not quiet_since_last_tick(automated.config, automated.path, now), "a new version needs the full tick"
    write_config(automated, triggers={"min_new_rows": 5})
    tick(automated.path, persistent)
    assert quiet_since_last_tick(automated.config, automated.path, now)
    write_config(automated, triggers={"min_new_rows": 6})
    assert not quiet_since_last_tick(automated.config, automated.path, now), "a config change needs the full tick"


def test_a_run_recorded_since_the_last_tick_needs_the_full_tick(automated, persistent):
    from retrain_assets.app.execution import materialize
    from retrain_assets.app.ticking import quiet_since_last_tick

    land(automated, 0)
    tick(automated.path, persistent)
    now = dt.datetime.now(dt.timezone.utc)
    assert quiet_since_last_tick(automated.config, automated.path, now)
    materialize(automated.path, persistent)  # e.g. `retrain materialize`: its failure must reach the alert sensor
    assert not quiet_since_last_tick(automated.config, automated.path, now)


def alert_sensor(project, instance, name: str = "alert_on_run_failure"):
    """Evaluates a run-failure sensor (default: the alert) like a daemon tick, keeping its cursor between calls."""
    from retrain_assets.definitions import build_defs

    defs = build_defs(str(project.path))
    status_sensor = defs.resolve_sensor_def(name)
    cursor = None

    def evaluate() -> None:
        nonlocal cursor
        with build_sensor_context(
            instance=instance,
            cursor=cursor,
            definitions=defs,
            sensor_name=status_sensor.name,
            resources=defs.resources,
        ) as context:
            cursor = status_sensor.evaluate_tick(context).cursor

    evaluate()  # the first tick starts the cursor, as the daemon's does
    return evaluate


def test_run_failure_alert_names_the_failed_step_and_its_exception(project, instance):
    from retrain_assets.app.execution import materialize
    from retrain_assets.core.alerts import recent_alerts

    evaluate = alert_sensor(project, instance)
    failed = materialize(project.path, instance)  # no batch landed: raw_data has no table to read
    assert not failed.success

    evaluate()

    (alert,) = recent_alerts(project.config)
    error = f"raw_data: no Delta table at {project.config.table_uri(delta.RAW_TABLE)}; land a batch first"
    assert alert["kind"] == "run_failed"
    assert alert["text"].startswith(f"[churn] run {failed.run_id[:8]} of retrain failed")
    assert f"failed: raw_data: {error}" in alert["text"] and error in alert["details"]["error"]


def test_run_failure_alert_cuts_urls_to_their_host(project, instance, monkeypatch):
    """A user-code exception quoting the MLflow URL with a token in its query (userinfo is refused at config
    load, a query is not): the alert keeps the host only."""
    import socket

    from retrain_assets.app.execution import materialize
    from retrain_assets.core.alerts import recent_alerts

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    write_config(project, mlflow={"tracking_uri": f"http://127.0.0.1:{port}/?token=canary-password"})
    landing.ingest_file(project.config, project.batch(0))
    evaluate = alert_sensor(project, instance)
    failed = materialize(project.path, instance)
    assert not failed.success and "canary-password" in failed.error, "the exception itself quotes the URL"

    evaluate()

    alert = next(alert for alert in recent_alerts(project.config) if alert["kind"] == "run_failed")
    assert "of retrain failed: validated_features: " in alert["text"] and "http://127.0.0.1/…" in alert["text"]
    assert "canary-password" not in project.config.alerts_log.read_text()


def test_a_failed_run_has_the_mlflow_runs_it_left_open_killed(project, instance):
    """A worker killed under the daemon leaves its MLflow run RUNNING; the failure sensor closes it, and only it."""
    from retrain_assets.app.execution import materialize
    from retrain_assets.core.registry import Registry

    evaluate = alert_sensor(project, instance, "close_mlflow_runs_of_failed_run")
    failed = materialize(project.path, instance)  # no batch landed: the run fails
    assert not failed.success
    registry = Registry(project.config)
    experiment = registry.experiment_id()
    left_open = registry.client.create_run(experiment, tags={"dagster_run_id": failed.run_id})
    other = registry.client.create_run(experiment, tags={"dagster_run_id": "another-run"})

    evaluate()

    assert registry.client.get_run(left_open.info.run_id).info.status == "KILLED"
    assert registry.client.get_run(other.info.run_id).info.status == "RUNNING"


def test_the_daemon_evaluates_the_sensors_as_often_as_retrain_yaml_says(automated):
    write_config(automated, triggers={"sensor_interval_seconds": 5})
    defs = build_defs(str(automated.path))

    names = ("raw_data_version_sensor", "model_code_sensor", "close_mlflow_runs_of_failed_run")
    intervals = {name: defs.resolve_sensor_def(name).minimum_interval_seconds for name in names}
    assert intervals == dict.fromkeys(names, 5)


def evaluate_on(project, instance, cursor):
    """The version sensor evaluated as the daemon evaluates it: on the project's instance, with the daemon's own
    cursor (its instigator state), not the one `retrain tick` keeps."""
    resources = {"project": RetrainProject(config_path=str(project.path))}
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return build_defs(str(project.path)).resolve_sensor_def("raw_data_version_sensor").evaluate_tick(context)


def test_the_daemon_and_tick_start_where_the_other_stopped_with_coalesce_on_then_off(automated, persistent):
    for day in range(3):
        land(automated, day)
    coalesced = tick(automated.path, persistent)
    assert [launch.run_key for launch in coalesced.launches] == ["2"], "v0 and v1 are covered by the run on v2"

    write_config(automated, triggers={"new_version": {"coalesce": False}})
    stale = evaluate_on(automated, persistent, cursor=None)  # a daemon that has never ticked: no cursor at all
    assert not stale.run_requests and "still at version 2" in stale.skip_message, "no re-run of skipped v0, v1"

    for day in range(3, 5):
        land(automated, day)
    daemon = evaluate_on(automated, persistent, cursor="0")  # a daemon whose cursor is far behind
    assert [request.run_key for request in daemon.run_requests] == ["3", "4"]
    for request in daemon.run_requests:  # what the daemon does with them: runs tagged as the request says
        tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": "raw_data_version_sensor"}
        persistent.create_run_for_job(build_defs(str(automated.path)).resolve_job_def("retrain"), tags=tags)

    land(automated, 5)
    after = tick(automated.path, persistent)
    assert [launch.run_key for launch in after.launches if launch.outcome] == ["5"], "only what the daemon left"
