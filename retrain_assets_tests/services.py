"""Real servers for the distributed test, each started on 127.0.0.1 on a free port and stopped afterwards:
Debian's ``redis-server`` (the Celery broker), a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` in a
temporary folder, password authentication) and Celery workers running dagster-celery's app.

Nothing is skipped: a missing binary fails the test, naming the command that installs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bench.workload import free_port

from .test_remote import stop

INSTALL = "apt-get install -y redis-server postgresql  (or, as root: make services)"
HOST = "127.0.0.1"


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    """Poll ``ready`` until it is true; fail, quoting the log, if ``process`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"{what} did not start within {timeout:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """``redis-server`` on a free port, nothing persisted; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(f"redis-server is not on PATH; install it: {INSTALL}")
    import redis

    port = free_port()
    log = directory / "redis.log"
    command = [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, process, "redis-server", log, timeout=30)
    try:
        yield f"redis://{HOST}:{port}/0"
    finally:
        client.close()
        stop(process)


@dataclass(frozen=True)
class Postgres:
    """A running cluster: one superuser with a password, reached over TCP only."""

    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for psycopg2 (SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3), with no
        credentials in it: the driver takes them from ``PGUSER``/``PGPASSWORD`` (:meth:`environment`)."""
        return f"postgresql+psycopg2://{HOST}:{self.port}/{database}"

    def environment(self, dagster_db: str) -> dict[str, str]:
        """What docs/dagster-postgres.yaml reads (``DAGSTER_PG_*``) and what libpq reads for MLflow's store."""
        return {
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_HOST": HOST,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": dagster_db,
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
        }

    def create_database(self, name: str) -> None:
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host=HOST, port=self.port, user=self.user, password=self.password, dbname="postgres")
        ) as connection:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')


def postgres_binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: Debian keeps them under its versioned library folder, off PATH
    (the newest major version when several are installed); else wherever PATH has them."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    if found:
        return Path(max(found, key=lambda path: int(Path(path).parts[-3]))).parent
    on_path = shutil.which("pg_ctl")
    if on_path is None or shutil.which("initdb") is None:
        pytest.fail(f"PostgreSQL's initdb and pg_ctl are not installed; install them: {INSTALL}")
    return Path(on_path).parent


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A new cluster in a temporary folder, on a free port; removed afterwards.

    PostgreSQL refuses to run as root, so under root (as the tests run in CI) the cluster belongs to the
    ``postgres`` account the Debian package creates, and ``initdb``/``pg_ctl`` run as it (``runuser``). The
    folder is not under pytest's temporary folder, which only root may enter.
    """
    binaries = postgres_binaries()
    as_owner: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                f"running as root, PostgreSQL needs the 'postgres' account its Debian package creates: {INSTALL}"
            )
        as_owner = ["runuser", "-u", "postgres", "--"]
    directory = Path(tempfile.mkdtemp(prefix="retrain-pg-"))
    user, password, port = "retrain", secrets.token_urlsafe(16), free_port()
    (directory / "password").write_text(password)
    if owner is not None:
        for path in (directory, directory / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, log = directory / "data", directory / "postgres.log"

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], cwd=directory, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}"
            )

    initdb, pg_ctl = str(binaries / "initdb"), str(binaries / "pg_ctl")
    run(initdb, "-D", str(data), "-U", user, f"--pwfile={directory / 'password'}", "-A", "scram-sha-256", "--no-sync")
    # TCP on 127.0.0.1 only; the socket in the cluster's folder (the packaged default may not exist); no fsync
    options = f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories={directory} -c fsync=off"
    run(pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    try:
        yield Postgres(port, user, password)
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Workers:
    processes: list[subprocess.Popen]
    logs: list[Path]

    @property
    def pids(self) -> frozenset[int]:
        """The workers' main processes (the parents of the pool processes that run the tasks)."""
        return frozenset(process.pid for process in self.processes)

    def wait_ready(self, timeout: float = 90) -> None:
        for index, (process, log) in enumerate(zip(self.processes, self.logs, strict=True)):
            wait_until(lambda log=log: " ready." in log.read_text(), process, f"celery worker {index}", log, timeout)


@contextlib.contextmanager
def celery_workers(broker: str, environment: dict[str, str], count: int, directory: Path) -> Iterator[Workers]:
    """``count`` Celery workers of dagster-celery's app, each a process of its own taking one task at a time
    (``--concurrency 1 --prefetch-multiplier 1``), named ``retrain<i>@<host>``; each runs its tasks in one child
    process (Celery's prefork pool), and results go back over ``rpc://`` (dagster-celery's default).

    Yields as soon as they are started: a job can be submitted while they boot (its tasks wait in the broker);
    :meth:`Workers.wait_ready` fails, quoting the log, if one does not come up."""
    celery = str(Path(sys.executable).parent / "celery")
    workers = Workers([], [])
    try:
        for index in range(count):
            log = directory / f"worker{index}.log"
            command = [celery, "-A", "dagster_celery.app", "-b", broker, "worker", "--concurrency", "1"]
            command += ["--prefetch-multiplier", "1", "--loglevel", "INFO", "-n", f"retrain{index}@%h"]
            workers.processes.append(
                subprocess.Popen(
                    command, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            workers.logs.append(log)
        yield workers
    finally:
        for process in workers.processes:
            process.terminate()  # all at once: each warm shutdown takes a second or two
        for process in workers.processes:
            stop(process)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # a pool child the warm shutdown left behind
