"""One retrain as it runs in production, every piece a real server on 127.0.0.1: `dagster job execute` with
``RETRAIN_EXECUTOR=celery`` hands each step to two Celery workers (separate processes) through a Redis broker;
the Dagster instance is on PostgreSQL (loaded from docs/dagster-postgres.yaml as it is), and so is MLflow's
tracking and registry store (a second database). A worker killed between the two alias moves fails the run
and promotes nothing half."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from retrain_assets.core import landing
from retrain_assets.core.faults import CRASH_ENV
from retrain_assets.core.names import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from retrain_assets.core.registry import Registry
from retrain_assets.defs.executors import EXECUTOR_ENV
from retrain_assets.defs.jobs import LINEAGE_KEYS, RETRAIN_JOB

from . import conftest
from .conftest import Project, write_config
from .services import Postgres, celery_workers, postgres_server, redis_server

pytestmark = [pytest.mark.integration, pytest.mark.services]

REPO = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).parent / "dagster")
WORKERS = 2


@dataclass
class Cluster:
    project: Project
    postgres: Postgres
    broker: str
    dagster_home: Path
    environment: dict[str, str]  # of `dagster job execute` and of the workers
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """Redis, PostgreSQL (databases ``dagster`` and ``mlflow``), a project whose MLflow store is on it, and a
    DAGSTER_HOME whose dagster.yaml is docs/dagster-postgres.yaml. This process gets the same database
    credentials, to read the instance and the registry."""
    base = tmp_path_factory.mktemp("distributed")
    with redis_server(base) as broker, postgres_server() as postgres, pytest.MonkeyPatch.context() as patch:
        for database in ("dagster", "mlflow"):
            postgres.create_database(database)
        for name, value in postgres.environment(dagster_db="dagster").items():
            patch.setenv(name, value)
        project = conftest.automated.__wrapped__(base)
        write_config(project, mlflow={"tracking_uri": postgres.url("mlflow")})
        home = base / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text((REPO / "docs" / "dagster-postgres.yaml").read_text())
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=postgres.url("mlflow")).search_experiments()  # MLflow's schema, made once
        environment = {key: value for key, value in os.environ.items() if key != CRASH_ENV}
        environment |= {
            "DAGSTER_HOME": str(home),
            "RETRAIN_CONFIG": str(project.path),
            EXECUTOR_ENV: "celery",
            "RETRAIN_CELERY_BROKER": broker,
        }
        yield Cluster(project, postgres, broker, home, environment, base)


def open_instance(cluster: Cluster):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(str(cluster.dagster_home))


@dataclass(frozen=True)
class Retrain:
    run_id: str
    returncode: int
    output: str
    executor_pid: int  # the `dagster job execute` process
    worker_pids: frozenset[int]  # the workers' main processes
    step_parents: dict[str, int]  # step key -> parent of the process its STEP_START came from


def execute_retrain(cluster: Cluster, crash_at: str | None = None) -> Retrain:
    """`dagster job execute` of the retrain job while ``WORKERS`` workers run (with ``RETRAIN_CRASH_AT`` in
    their environment when ``crash_at`` is given), the run's step processes traced while the workers live."""
    from dagster import DagsterEventType

    logs = cluster.logs / (crash_at or "clean")
    logs.mkdir()
    command = [DAGSTER, "job", "execute", "-m", "retrain_assets.definitions", "-j", RETRAIN_JOB]
    workers_environment = cluster.environment | ({CRASH_ENV: crash_at} if crash_at else {})
    with celery_workers(cluster.broker, workers_environment, WORKERS, logs) as workers:
        with (logs / "execute.log").open("w") as output:
            job = subprocess.Popen(
                command,
                env=cluster.environment,
                cwd=cluster.project.path.parent,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                workers.wait_ready()  # while the job starts up
                returncode = job.wait(timeout=600)
            finally:
                if job.poll() is None:
                    job.kill()
        with open_instance(cluster) as instance:
            run_id = instance.get_runs(limit=1)[0].run_id
            starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
            step_pids = {record.step_key: record.dagster_event.pid for record in starts}
        step_parents = {key: parent_pid(pid) for key, pid in step_pids.items()}
    output_text = (logs / "execute.log").read_text()
    return Retrain(run_id, returncode, output_text, job.pid, workers.pids, step_parents)


def parent_pid(pid: int) -> int:
    """The parent of a live process (field 4 of ``/proc/<pid>/stat``; -1 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return -1
    return int(stat.rpartition(")")[2].split()[1])


def celery_engine_events(instance, run_id: str) -> dict[str, str]:
    """Step key -> the worker that says it executed it (dagster-celery's engine event, sent from the worker)."""
    from dagster import DagsterEventType

    events = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        if record.message.endswith("in celery worker"):
            events[record.step_key] = record.dagster_event.engine_event_data.metadata["Celery worker"].value
    return events


@pytest.fixture(scope="module")
def first_retrain(cluster) -> Retrain:
    """A champion to beat later: version 1, trained on a drifted day only."""
    landing.ingest_file(cluster.project.config, cluster.project.batch(7))
    return execute_retrain(cluster)


def test_every_step_runs_on_a_celery_worker_and_the_champion_is_on_postgres(cluster, first_retrain):
    from dagster import DagsterRunStatus
    from dagster_postgres import PostgresRunStorage

    assert first_retrain.returncode == 0, first_retrain.output[-4000:]
    with open_instance(cluster) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_run_by_id(first_retrain.run_id).status == DagsterRunStatus.SUCCESS
        by_worker = celery_engine_events(instance, first_retrain.run_id)
    assert set(by_worker) == set(first_retrain.step_parents) == set(LINEAGE_KEYS)
    assert {name.partition("@")[0] for name in by_worker.values()} <= {f"retrain{i}" for i in range(WORKERS)}
    assert set(first_retrain.step_parents.values()) <= first_retrain.worker_pids, (
        "each step ran in a worker's pool process, none in `dagster job execute` "
        f"(pid {first_retrain.executor_pid}): {first_retrain.step_parents}"
    )
    registry = Registry(cluster.project.config)
    assert registry.client.tracking_uri == cluster.postgres.url("mlflow")
    champion = registry.by_alias(CHAMPION)
    assert str(champion.version) == "1" and champion.tags["decision"] == "promoted"
    assert str(registry.by_alias(CHALLENGER).version) == "1" and registry.by_alias(PREVIOUS_CHAMPION) is None


def test_a_worker_killed_between_the_alias_moves_fails_the_run_and_promotes_nothing_half(cluster, first_retrain):
    """Three normal days beat the drifted champion; the worker running ``prod_model`` is SIGKILLed after
    ``previous_champion`` moved and before ``champion`` did (``RETRAIN_CRASH_AT=alias_promotion``)."""
    from dagster import AssetKey, DagsterEventType, DagsterRunStatus

    assert first_retrain.returncode == 0, first_retrain.output[-4000:]
    for day in range(3):
        landing.ingest_file(cluster.project.config, cluster.project.batch(day))

    killed = execute_retrain(cluster, crash_at="alias_promotion")

    assert killed.returncode != 0 and killed.run_id != first_retrain.run_id
    with open_instance(cluster) as instance:
        assert instance.get_run_by_id(killed.run_id).status == DagsterRunStatus.FAILURE
        (failure,) = instance.all_logs(killed.run_id, of_type=DagsterEventType.RUN_FAILURE)
        error = failure.dagster_event.event_specific_data.error.to_string()
        assert "[prod_model]: billiard.exceptions.WorkerLostError: Worker exited prematurely: signal 9" in error
        successes = instance.all_logs(killed.run_id, of_type=DagsterEventType.STEP_SUCCESS)
        assert [record.step_key for record in successes] == LINEAGE_KEYS[:-1], "all but prod_model succeeded"
        latest = instance.get_latest_materialization_event(AssetKey("prod_model"))
        assert latest.run_id == first_retrain.run_id, "prod_model is still the first run's"
    registry = Registry(cluster.project.config)
    assert str(registry.by_alias(CHAMPION).version) == "1", "the champion stays the old, evaluated model"
    assert str(registry.by_alias(PREVIOUS_CHAMPION).version) == "1", "moved first: it is the champion it replaces"
    assert str(registry.by_alias(CHALLENGER).version) == "2"
    versions = registry.client.search_model_versions(f"name = '{cluster.project.config.mlflow.model_name}'")
    assert sorted(str(version.version) for version in versions) == ["1", "2"]
