"""Where steps run: chosen by ``RETRAIN_EXECUTOR`` (the one place that reads it), same definitions everywhere.

- unset / ``in_process``: every step in the run's own process. The lineage is a chain and the history job one
  step, so steps gain nothing from processes of their own, and each would import the ML stack again (about
  4 s of a run the daemon launches; ``bench/daemon.py`` measures it). `retrain tick`, `materialize` and
  `backfill` run this way too, through ``execute_in_process``;
- ``multiprocess``: Dagster's default elsewhere, one process per step;
- ``k8s``: one Kubernetes Job per step (dagster-k8s); configure namespace, image and env per run or in
  ``dagster.yaml``'s run launcher;
- ``celery``: steps as Celery tasks (dagster-celery); the broker URL comes from ``RETRAIN_CELERY_BROKER``, results
  come back over ``rpc://``; workers run ``celery -A dagster_celery.app -b $RETRAIN_CELERY_BROKER worker`` with
  the same environment and a shared (Postgres) instance, as ``retrain_assets_tests/test_distributed.py`` does.
dagster-k8s and dagster-celery are optional (``pip install 'retrain-assets[k8s]'`` or ``[celery]``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from dagster import ExecutorDefinition

EXECUTOR_ENV = "RETRAIN_EXECUTOR"


def executor_from_env() -> Optional["ExecutorDefinition"]:
    """The executor named by ``$RETRAIN_EXECUTOR``; ``None`` is Dagster's multiprocess executor."""
    name = os.environ.get(EXECUTOR_ENV, "in_process")
    if name == "in_process":
        from dagster import in_process_executor

        return in_process_executor
    if name == "multiprocess":
        return None
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured({"broker": {"env": "RETRAIN_CELERY_BROKER"}})
    raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected multiprocess, in_process, k8s or celery")
