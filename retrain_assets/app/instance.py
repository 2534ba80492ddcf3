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


# A run's lineage (the run and its retries) has at most this many runs, whoever retries it: `retrain tick`'s
# recovery of a run whose process died (ticking.recover_interrupted), the daemon's run_retries for its own runs.
MAX_ATTEMPTS = 3


def _instance_yaml() -> str:
    """The generated instance settings:

    - run monitoring: the daemon fails a run past its ``dagster/max_runtime`` tag (``runs.max_runtime_minutes``).
      It does not resume a run whose worker died (``max_resume_run_attempts`` stays 0): Dagster's default run
      launcher cannot tell whether a worker is alive, so a resumed run could run twice;
    - run retries: a daemon-launched run whose worker died (killed, out of memory; the code server marks it
      failed with no failed step) is re-executed from its failed step, as `retrain tick` re-executes its own
      (``MAX_ATTEMPTS`` runs in all). A run failed by a step (a bad batch, a failing check) is not retried:
      running it again would fail the same way. The sensor ``close_mlflow_runs_of_failed_run`` closes the MLflow
      runs a killed worker left open;
    - a run queue: retraining runs (tagged ``retrain/trigger``) one at a time, as they write the same tables and
      move the same alias, and at most as many runs at once as the machine has cores (up to 4), so a UI backfill
      does not start 8 processes on 2 cores."""
    limit = max(1, min(4, os.cpu_count() or 1))
    return (
        "telemetry:\n  enabled: false\n"
        "run_monitoring:\n  enabled: true\n"
        "run_retries:\n  enabled: true\n"
        f"  max_retries: {MAX_ATTEMPTS - 1}\n"
        "  retry_on_asset_or_op_failure: false\n"
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
