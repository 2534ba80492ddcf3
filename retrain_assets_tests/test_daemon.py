"""Real ``dagster-daemon run`` processes on a project: the daemon and `retrain tick` keep one record of what ran
(the run storage), so taking turns runs each version and each scheduled time once; and a run whose worker is
killed under the daemon is retried once, its MLflow run closed, its promotion whole.

A daemon is started as `retrain ui` starts it (``DAGSTER_HOME`` the project's, ``RETRAIN_CONFIG``,
:func:`webui.write_workspace`, :func:`compat.daemon_command`), in a process group of its own, with its logs in
a file beside the project. It is stopped, with its code server and any run worker, as soon as a test no
longer needs it. Batches are small and the sensors' interval is 1 s, but Dagster's sensor loop and its run
queue each wake only every 5 s and each run worker imports the ML stack, so a daemon-launched run costs about
20 s. The schedule test drives the daemon's scheduler in process (:func:`compat.launch_scheduled_runs`)
rather than waiting for the cron."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from mlflow.exceptions import MlflowException

from retrain_assets.app import compat
from retrain_assets.app.ticking import tick
from retrain_assets.app.webui import descendants, write_workspace
from retrain_assets.core import delta
from retrain_assets.core.names import CHAMPION, DECISION_TAG, DELTA_VERSION_TAG, LAUNCHER_TAG
from retrain_assets.core.registry import Registry

from .conftest import Project, write_config
from .test_sensors import land

pytestmark = [pytest.mark.daemon, pytest.mark.integration]

T = TypeVar("T")
ROWS = 60  # per batch: enough to validate and train on, small enough to cost nothing
TIMEOUT = 150.0  # seconds for one thing the daemon does (a run launched and finished, a retry, a sensor tick)
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@dataclass
class Daemon:
    process: subprocess.Popen
    log: Path

    def wait_for(
        self, condition: Callable[[], Optional[T]], what: str, timeout: float = TIMEOUT, poll: float = 0.5
    ) -> T:
        """Poll ``condition`` until it returns something true; fail naming ``what``, with the daemon's log. Polls
        are spaced so that they leave the two cores to the daemon and its run worker."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if self.process.poll() is not None:
                pytest.fail(f"dagster-daemon exited ({self.process.returncode}) waiting for {what}\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout:.0f} s\n{self.tail()}")
            time.sleep(poll)
        return value

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextlib.contextmanager
def running_daemon(project: Project) -> Iterator[Daemon]:
    """``dagster-daemon run`` on the project until the block ends; then its process group (the daemon, its code
    server, any run worker) is SIGKILLed, which costs nothing and is safe here: each test stops it only when
    the runs it waited for have finished and no new version has landed, so no tick of its is launching a run.
    Steps run in the run worker (the default executor), so killing the worker kills the step."""
    home = project.config.dagster_home
    env = {key: value for key, value in os.environ.items() if key != "RETRAIN_EXECUTOR"}
    env.update(DAGSTER_HOME=str(home), RETRAIN_CONFIG=str(project.path.resolve()))
    log = project.path.parent / "daemon.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            compat.daemon_command(write_workspace(home)),
            cwd=project.path.parent,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Daemon(process, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _version_runs(instance, version: int) -> list:
    return instance.get_runs(RunsFilter(job_name="retrain", tags={DELTA_VERSION_TAG: str(version)}))


def _finished(instance, versions: list[int]) -> Optional[list]:
    """The runs of ``versions``, once each has one and all have finished (else ``None``)."""
    runs = [run for version in versions for run in _version_runs(instance, version)]
    return runs if len(runs) >= len(versions) and all(run.status in FINISHED for run in runs) else None


# Who evaluates, after how many new versions. A daemon run costs three times a tick's (a worker process that
# imports the ML stack, a 5 s queue), so the daemon gets fewer; its first turn starts from the tick's runs with
# no cursor of its own, its second from a cursor the tick has overtaken, and it must run both versions of its
# first turn when not coalescing.
TURNS = (("tick", 4), ("daemon", 2), ("tick", 3), ("daemon", 1))


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesce", "each-version"])
def test_daemon_and_tick_taking_turns_run_each_version_once(automated, persistent, coalesce):
    """Ten versions, landed in four turns; after each turn either `retrain tick` or the daemon (running until
    the runs it should launch have finished) evaluates the version sensor. Each starts from what the other
    ran, read from the run storage: every expected version runs exactly once, by whoever's turn it was."""
    write_config(
        automated,
        triggers={
            "new_version": {"coalesce": coalesce},
            "min_new_rows": 10**9,  # after the first model, runs only validate
            "drift": {"enabled": False},  # small batches drift by chance: no retraining on that either
            "performance": {"enabled": False},
            "sensor_interval_seconds": 1,
            "schedule": None,
        },
    )
    expected: dict[int, str] = {}
    landed = 0
    for who, count in TURNS:
        versions = [land(automated, day, ROWS) for day in range(landed, landed + count)]
        landed += count
        wanted = versions[-1:] if coalesce else versions
        expected.update(dict.fromkeys(wanted, who))
        if who == "tick":
            report = tick(automated.path, persistent)
            assert [launch.run_key for launch in report.launches] == [str(version) for version in wanted]
        else:
            with running_daemon(automated) as daemon:
                daemon.wait_for(partial(_finished, persistent, wanted), f"the daemon's runs of versions {wanted}")

    runs = persistent.get_runs(RunsFilter(job_name="retrain"))
    ran = sorted(int(run.tags[DELTA_VERSION_TAG]) for run in runs)
    assert ran == sorted(expected), "each expected version once: none twice, none skipped"
    by = {int(run.tags[DELTA_VERSION_TAG]): "tick" if LAUNCHER_TAG in run.tags else "daemon" for run in runs}
    assert by == expected
    assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}


def test_a_scheduled_time_is_launched_once_whether_the_daemon_or_tick_comes_first(automated, persistent, monkeypatch):
    """The daemon's scheduler (one iteration at a time, at a chosen clock) launches the first Monday; `retrain
    tick` after it does not. The tick launches the second Monday; the scheduler after it does not. Its run
    queue holds the daemon's run (no daemon dequeues it): what counts is the run record."""
    write_config(automated, triggers={"min_new_rows": 10**9})
    land(automated, 0, ROWS)
    monkeypatch.setenv("RETRAIN_CONFIG", str(automated.path))  # for the code server the workspace starts
    start = dt.datetime.now(dt.timezone.utc)
    times = compat.cron_fire_times("0 6 * * 1", "UTC", start + dt.timedelta(seconds=1))
    first, second = next(times), next(times)
    minute = dt.timedelta(minutes=1)
    workspace = write_workspace(automated.config.dagster_home)
    with compat.workspace_process_context(persistent, workspace, read_only=False) as context:
        compat.launch_scheduled_runs(context, start)  # its clock starts
        assert "started" in tick(automated.path, persistent, now=start).skips["retrain_schedule"]

        compat.launch_scheduled_runs(context, first + minute)
        after_daemon = tick(automated.path, persistent, now=first + 2 * minute)
        assert after_daemon.launches == [] and "not due" in after_daemon.skips["retrain_schedule"]

        (launch,) = tick(automated.path, persistent, now=second + minute).launches
        assert launch.source == "retrain_schedule" and launch.outcome.success
        compat.launch_scheduled_runs(context, second + 2 * minute)

    runs = persistent.get_runs(RunsFilter(tags={"dagster/schedule_name": "retrain_schedule"}))
    launched = sorted(
        (run.tags.get(compat.scheduled_execution_time_tag(), "?"), "tick" if LAUNCHER_TAG in run.tags else "daemon")
        for run in runs
    )
    assert launched == [(first.isoformat(), "daemon"), (second.isoformat(), "tick")]


def _finished_retry(instance, run):
    """The finished retry of ``run``, if there is one yet."""
    retries = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
    return next((retry for retry in retries if retry.status in FINISHED), None)


def _worker_pid(instance, run_id: str) -> Optional[int]:
    """The pid of the run's worker, from the engine event the worker itself logs when it starts."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        found = WORKER_PID.search(entry.dagster_event.message or "") if entry.dagster_event else None
        if found:
            return int(found.group(1))
    return None


def _open_mlflow_run(registry: Registry, run_id: str):
    experiment = registry.client.get_experiment_by_name(registry.config.mlflow.experiment)
    if experiment is None:
        return None
    query = f"tags.dagster_run_id = '{run_id}' and attributes.status = 'RUNNING'"
    found = registry.client.search_runs([experiment.experiment_id], filter_string=query)
    return found[0] if found else None


def _freeze_inside_open_run(pid: int, registry: Registry, run_id: str, attempts: int = 20) -> None:
    """SIGSTOP the worker and confirm its MLflow run is still open, so what is open now is what a kill leaves
    open. A worker frozen inside a write holds the sqlite store's lock and the confirming read fails with
    "database is locked" (CI hit this): let it finish that write and freeze it again."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        try:
            still_open = _open_mlflow_run(registry, run_id)
        except MlflowException as error:
            if "database is locked" not in str(error):
                raise
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
            continue
        if still_open is None:
            os.kill(pid, signal.SIGCONT)
            pytest.fail("the MLflow run closed before the worker could be stopped")
        return
    os.kill(pid, signal.SIGCONT)
    pytest.fail(f"the worker was inside a write to the MLflow store at each of {attempts} freezes")


def test_a_killed_run_worker_is_retried_once_and_leaves_nothing_half_done(automated, persistent):
    """While a daemon-launched run is inside its MLflow run (the candidate being logged), its worker is
    SIGKILLed. The code server fails the run; run_retries re-executes it from the failed step, once; the
    failure sensor closes the MLflow run the worker left RUNNING; one model is registered and decided, and the
    champion points at it."""
    write_config(automated, triggers={"sensor_interval_seconds": 1, "schedule": None})
    version = land(automated, 0, ROWS)
    registry = Registry(automated.config)
    with running_daemon(automated) as daemon:
        (run,) = daemon.wait_for(lambda: _version_runs(persistent, version), "the daemon's run of the version")
        left_open = daemon.wait_for(lambda: _open_mlflow_run(registry, run.run_id), "the run's MLflow run", poll=0.1)
        pid = daemon.wait_for(lambda: _worker_pid(persistent, run.run_id), "the run worker's pid")
        assert pid in descendants(daemon.process.pid), "the worker is a process of this daemon's code server"
        _freeze_inside_open_run(pid, registry, run.run_id)
        os.kill(pid, signal.SIGKILL)

        retry = daemon.wait_for(lambda: _finished_retry(persistent, run), "the retry of the killed run")
        closed = daemon.wait_for(
            lambda: registry.client.get_run(left_open.info.run_id).info.status == "KILLED" or None,
            "the failure sensor closing the MLflow run the worker left open",
        )
    assert closed

    killed = persistent.get_run_by_id(run.run_id)
    assert killed.status == DagsterRunStatus.FAILURE
    assert persistent.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE) == [], "no step failed: it died"
    engine = persistent.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
    assert any("was terminated by signal 9" in (entry.dagster_event.message or "") for entry in engine)
    assert retry.status == DagsterRunStatus.SUCCESS and retry.tags["dagster/retry_number"] == "1"
    assert sorted(r.run_id for r in _version_runs(persistent, version)) == sorted([run.run_id, retry.run_id])

    config = automated.config
    assert delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE))["raw_version"].tolist() == [version]
    versions = registry.client.search_model_versions(f"name = '{config.mlflow.model_name}'")
    assert [v.tags.get(DECISION_TAG) for v in versions] == ["promoted"], "one model registered, decided once"
    model = registry.client.get_registered_model(config.mlflow.model_name)
    assert {str(v) for v in model.aliases.values()} <= {str(v.version) for v in versions}, "no dangling alias"
    assert str(registry.by_alias(CHAMPION).version) == str(versions[0].version)
    experiment = registry.client.get_experiment_by_name(config.mlflow.experiment)
    statuses = sorted(r.info.status for r in registry.client.search_runs([experiment.experiment_id]))
    assert statuses == ["FINISHED", "KILLED"]
