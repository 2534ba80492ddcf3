"""Benchmark 2: a ``retrain tick`` with nothing new to do.

A project with one landed batch (2,000 rows) whose first tick has already trained the champion and consumed the
version. Then:

* process: wall time of a whole ``retrain --config X tick`` subprocess (interpreter start, imports, whatever the
  CLI does to find out there is nothing to do), and the runs it launched (runs in the instance before vs after);
* process, full path: the same after touching ``retrain.yaml`` first, so that no shortcut keyed on an unchanged
  config applies and the tick opens the Dagster instance, evaluates the sensors and the schedule;
* in process: ``retrain_assets.app.ticking.tick(config_path, instance)`` on an open instance (always the full path);
* imports: ``python -X importtime`` of both kinds of process, slowest top-level imports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.workload import Measurement, project_with_champion, scratch, timed

TICK_GOAL = 0.5


def _retrain_command(config_path: Path) -> list[str]:
    script = Path(sys.executable).with_name("retrain")
    return [str(script), "--config", str(config_path), "tick"]


def measure(data: Path, repetitions: int, warmup: int = 1) -> dict:
    """``{"process", "full_path", "in_process"}`` Measurements; ``runs_launched``: runs the no-op ticks (all
    kinds) added to the instance; ``launch_requests``: run requests the in-process ticks returned;
    ``imports`` / ``full_path_imports``: ``[(module, seconds)]`` of the slowest top-level imports."""
    from retrain_assets.app.ticking import tick

    results = {"process": Measurement(), "full_path": Measurement(), "in_process": Measurement()}
    with scratch("tick") as directory:
        with project_with_champion(directory, data) as (config_path, _, instance):
            runs_before = instance.get_runs_count()
            launched = 0
            for index in range(warmup + repetitions):
                seconds, report = timed(lambda: tick(config_path, instance))
                launched += len(report.launches)
                if index >= warmup:
                    results["in_process"].samples.append(seconds)
            for index in range(warmup + repetitions):
                for kind in ("full_path", "process"):
                    if kind == "full_path":
                        config_path.touch()
                    seconds, _ = timed(lambda: _run(_retrain_command(config_path)))
                    if index >= warmup:
                        results[kind].samples.append(seconds)
            results["runs_launched"] = instance.get_runs_count() - runs_before
        results["launch_requests"] = launched
        results["imports"] = import_times(config_path)
        config_path.touch()
        results["full_path_imports"] = import_times(config_path)
    return results


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done


def import_times(config_path: Path, top: int = 6) -> list[tuple[str, float]]:
    """The slowest top-level imports of one no-op ``retrain tick`` (``-X importtime``, cumulative seconds).

    A module first imported inside a function shows up as its own top-level line: e.g.
    ``dagster._core.storage...`` when the instance is opened, after ``import dagster`` itself."""
    command = [sys.executable, "-X", "importtime", *_retrain_command(config_path)]
    done = _run(command)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and name.startswith(" ") and not name.startswith("  "):
            totals[name.strip()] = totals.get(name.strip(), 0.0) + int(cumulative) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])[:top]
