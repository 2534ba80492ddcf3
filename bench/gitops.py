"""Benchmark 4: the GitOps paths, ``retrain status --check`` and the run cache of a backfill.

* check: wall time of a whole ``retrain --config X status --check`` subprocess on a project whose first tick
  trained the champion (one 2,000-row batch), so the check answers "up to date" (exit 0). A warm-up call comes
  first: the first check may read MLflow and write the snapshot (``model_state.json``) the others answer from.
  For reference, the same run times a whole ``retrain --config X status`` process (Dagster instance, MLflow
  registry). One more check process, run through ``python -c``, reports whether ``dagster`` or ``mlflow`` were
  imported: neither may be (a RuntimeError otherwise).
* backfill: ``execution.backfill`` in process over 12 weekly partitions of a project whose batches (one a day,
  landed with their historical times) stopped after the first 3 weeks, so the 10 partitions from the third on
  all time-travel to the same ``raw_data`` version. Once with ``run_cache=False`` (every partition trains) and
  once with the run cache (the third partition trains, the 9 after it reuse its model), each on a fresh project
  and Dagster instance, so the cached run finds no model of the uncached one. The time includes the
  ``backtest`` summary run at the end. Every partition must succeed, and with the cache the 9 partitions after
  the data stopped must report ``reused_from`` (a RuntimeError otherwise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from bench.workload import START, Measurement, project_with_champion, scratch, timed, write_batch, write_project

if TYPE_CHECKING:
    from dagster import DagsterInstance

CHECK_GOAL = 0.5
DATA_WEEKS = 3  # weeks with a batch a day
WEEKS = 12  # weekly partitions backfilled: DATA_WEEKS with data, then weeks with nothing new
ROWS_PER_DAY = 2000

# `retrain status --check` in this interpreter, then whether it imported the heavy libraries (last line, JSON)
IMPORTS_SCRIPT = """
import json, sys
from retrain_assets.app.cli import main
try:
    main(["--config", sys.argv[1], "status", "--check"])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "dagster": "dagster" in sys.modules, "mlflow": "mlflow" in sys.modules}))
"""


def _retrain(config_path: Path, *arguments: str) -> list[str]:
    return [str(Path(sys.executable).with_name("retrain")), "--config", str(config_path), *arguments]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


def measure_check(data: Path, repetitions: int, warmup: int = 1) -> dict:
    """``{"check", "status"}`` Measurements of whole processes; ``imports``: ``{"dagster", "mlflow"}`` booleans of
    a check process (both False, or this raises)."""
    results = {"check": Measurement(), "status": Measurement()}
    with scratch("check") as directory:
        with project_with_champion(directory, data) as (config_path, _, _):
            pass
        _run(_retrain(config_path, "status", "--check"))  # may read MLflow and write model_state.json
        for index in range(warmup + repetitions):
            for kind, arguments in (("check", ("status", "--check")), ("status", ("status",))):
                command = _retrain(config_path, *arguments)
                seconds, _ = timed(lambda command=command: _run(command))
                if index >= warmup:
                    results[kind].samples.append(seconds)
        done = _run([sys.executable, "-c", IMPORTS_SCRIPT, str(config_path)])
        imports = json.loads(done.stdout.strip().splitlines()[-1])
        if imports["exit"] not in (0, None) or imports["dagster"] or imports["mlflow"]:
            raise RuntimeError(
                f"`retrain status --check` exited {imports['exit']} or imported heavy libraries: {imports}"
            )
        results["imports"] = imports
    return results


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59), dt.timezone.utc)


@contextlib.contextmanager
def _history_project(directory: Path, data: Path) -> Iterator[tuple[Path, "DagsterInstance"]]:
    """A project with weekly history partitions from START (a Monday) and a batch a day, landed at the end of
    its day, for the first DATA_WEEKS weeks only: its config path and its open Dagster instance."""
    from retrain_assets.app.execution import ingest
    from retrain_assets.app.instance import project_instance

    config_path, config = write_project(directory, history={"partitions": "weekly", "start": START})
    with project_instance(config) as instance:
        for index in range(7 * DATA_WEEKS):
            landed_at = _end_of(START + dt.timedelta(days=index))
            ingest(config, instance, write_batch(data, index, ROWS_PER_DAY), landed_at)
        yield config_path, instance


def _backfill(data: Path, run_cache: bool, weeks: int = WEEKS) -> tuple[float, list]:
    """Seconds of one backfill of ``weeks`` partitions on a fresh project (building it is not timed), and its
    outcomes, checked."""
    from retrain_assets.app.execution import backfill

    end = START + dt.timedelta(weeks=weeks - 1)
    with scratch("backfill") as directory, _history_project(directory, data) as (config_path, instance):
        seconds, (outcomes, _) = timed(lambda: backfill(config_path, instance, START, end, run_cache=run_cache))
    failed = [(o.partition, o.error) for o in outcomes if not o.success]
    if len(outcomes) != weeks or failed:
        raise RuntimeError(f"backfill of {weeks} partitions: {len(outcomes)} ran, failed: {failed}")
    reused = [o.partition for o in outcomes if o.row.get("reused_from")]
    expected = [o.partition for o in outcomes[DATA_WEEKS:]] if run_cache else []
    if reused != expected:
        raise RuntimeError(f"run_cache={run_cache}: partitions reused {reused}, expected {expected}")
    return seconds, outcomes


def measure_backfill(data: Path, repetitions: int, warmup: int = 1) -> dict:
    """``{"cached", "uncached"}`` Measurements of the backfill; ``trained`` / ``reused``: partitions of the cached
    backfill that trained a model or reused one. The warm-up is a one-partition backfill (imports, first loads)."""
    results = {"cached": Measurement(), "uncached": Measurement()}
    for _ in range(warmup):
        _backfill(data, run_cache=False, weeks=1)
    for index in range(repetitions):
        order = (False, True) if index % 2 == 0 else (True, False)
        for run_cache in order:
            seconds, outcomes = _backfill(data, run_cache)
            results["cached" if run_cache else "uncached"].samples.append(seconds)
            if run_cache:
                results["reused"] = sum(1 for o in outcomes if o.row.get("reused_from"))
                results["trained"] = len(outcomes) - results["reused"]
    return results


def measure(data: Path, repetitions: int, warmup: int = 1) -> dict:
    """Both measurements: ``{"check": measure_check(...), "backfill": measure_backfill(...)}``."""
    return {"check": measure_check(data, repetitions, warmup), "backfill": measure_backfill(data, repetitions, warmup)}
