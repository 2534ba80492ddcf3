"""The project's persistent Dagster instance under ``<home>/dagster`` and the project lock.

The CLI points ``DAGSTER_HOME`` there, so ``retrain ui``, ``retrain materialize`` and ``retrain status`` all
see the same runs, materializations and checks."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from retrain_assets.core import landing
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import TRIGGER_TAG

if TYPE_CHECKING:
    from dagster import DagsterInstance


# Run monitoring makes the daemon fail a run past its dagster/max_runtime tag (runs.max_runtime_minutes).
def _instance_yaml() -> str:
    """The generated instance settings: run monitoring (a run past its max runtime, or whose worker died, is
    failed), and a run queue for the daemon: retraining runs (tagged ``retrain/trigger``) one at a time, as
    they write the same tables and move the same alias, and at most as many runs at once as the machine has
    cores (up to 4), so a UI backfill does not start 8 processes on 2 cores."""
    limit = max(1, min(4, os.cpu_count() or 1))
    return (
        "telemetry:\n  enabled: false\n"
        "run_monitoring:\n  enabled: true\n"
        "concurrency:\n  runs:\n"
        f"    max_concurrent_runs: {limit}\n"
        f"    tag_concurrency_limits:\n      - key: {TRIGGER_TAG}\n        limit: 1\n"
    )


def prepare_dagster_home(config: RetrainConfig) -> Path:
    """Create ``<home>/dagster`` with a ``dagster.yaml`` (if missing) and point ``DAGSTER_HOME`` at it. The
    storage home itself is created readable by its owner only (:func:`landing.ensure_home`)."""
    landing.ensure_home(config)
    home = config.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(_instance_yaml())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextlib.contextmanager
def project_instance(config: RetrainConfig) -> Iterator["DagsterInstance"]:
    """The project's Dagster instance. Opening it creates its sqlite storage the first time, which two
    processes must not do at once: the opening is serialised by a blocking ``flock``."""
    import fcntl

    from dagster import DagsterInstance

    home = prepare_dagster_home(config)
    with open(home / "instance.lock", "a") as opening:
        fcntl.flock(opening, fcntl.LOCK_EX)
        instance = DagsterInstance.get()
        fcntl.flock(opening, fcntl.LOCK_UN)
    with instance:
        yield instance


@contextlib.contextmanager
def project_lock(config: RetrainConfig, command: Optional[str] = None) -> Iterator[None]:
    """Hold the project lock (see :mod:`retrain_assets.core.locking`) on the project's storage home, not waiting:
    a busy project raises :class:`~retrain_assets.core.locking.ProjectBusy` naming the holder and its age.
    The lock is not re-entrant: runs executed while holding it are built not to take it again
    (:class:`~retrain_assets.app.project.LoadedProject`)."""
    from retrain_assets.core.locking import project_lock as lock

    with lock(prepare_dagster_home(config), command=command):
        yield


def quiet_mlflow() -> None:
    """Keep MLflow's chatter and download progress bars out of the CLI's output."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_libraries() -> None:
    """Keep MLflow's registration chatter and Dagster's beta notices out of the CLI's output."""
    from dagster import BetaWarning

    from retrain_assets.app.compat import missing_check_result_logger

    warnings.filterwarnings("ignore", category=BetaWarning)  # Output(data_version=...) is marked beta
    quiet_mlflow()
    # When a run decides not to retrain, evaluation_report is skipped and Dagster warns that its blocking
    # check "emitted no result" before skipping prod_model as well: expected, so not worth printing.
    missing_check_result_logger().setLevel(logging.ERROR)


def caller() -> str:
    """Who runs this process, from the kernel's uid and not from ``$USER``/``$LOGNAME``, which anyone can set
    (as ``getpass.getuser`` reads them): the account name, uid and host."""
    import pwd
    import socket

    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no passwd entry (some containers)
        name = "?"
    return f"{name} (uid {uid}) on {socket.gethostname()}"
