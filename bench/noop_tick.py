"""Benchmark 2: a ``retrain tick`` with nothing new to do.

A project with one landed batch (2,000 rows) whose first tick has already trained the champion and consumed the
version. Then:

* process: wall time of a whole ``retrain --config X tick`` subprocess (interpreter start, imports, instance,
  sensors, schedule), and the runs it launched (runs in the Dagster instance before vs after);
* in process: ``retrain_assets.ticking.tick(config_path, instance)`` on an open instance, and its launches;
* floor: a process that only imports the CLI, reads ``retrain.yaml`` and the Delta table's version (what a fast
  path in the CLI would need before deciding there is nothing to do), to show what the goal allows;
* imports: ``python -X importtime`` of the same tick, summed per top-level package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.workload import Measurement, scratch, timed, write_batch, write_project

TICK_GOAL = 0.5
FLOOR_SCRIPT = (
    "import sys\n"
    "from retrain_assets.config import load_config\n"
    "from retrain_assets import lake\n"
    "config = load_config(sys.argv[1])\n"
    "print(lake.latest_version(config.table_uri(lake.RAW_TABLE)))\n"
)


def _retrain_command(config_path: Path) -> list[str]:
    script = Path(sys.executable).with_name("retrain")
    return [str(script), "--config", str(config_path), "tick"]


def measure(data: Path, repetitions: int, warmup: int = 1) -> dict:
    """``{"process", "in_process", "floor"}`` Measurements; ``runs_launched``: runs the no-op ticks (process and
    in process) added to the instance; ``launch_requests``: run requests the in-process ticks returned;
    ``imports``: ``[(package, seconds)]`` of the slowest top-level imports."""
    from retrain_assets.runner import ingest, project_instance
    from retrain_assets.ticking import tick

    results = {"process": Measurement(), "in_process": Measurement(), "floor": Measurement()}
    with scratch("tick") as directory:
        config_path, config = write_project(directory)
        with project_instance(config) as instance:
            ingest(config, instance, write_batch(data, 0, 2000))
            first = tick(config_path, instance)
            if not any(launch.outcome and launch.outcome.success for launch in first.launches):
                raise RuntimeError(f"the first tick did not train a champion: {first.to_json()}")
            runs_before = instance.get_runs_count()
            launched = 0
            for index in range(warmup + repetitions):
                seconds, report = timed(lambda: tick(config_path, instance))
                launched += len(report.launches)
                if index >= warmup:
                    results["in_process"].samples.append(seconds)
            for index in range(warmup + repetitions):
                seconds, done = timed(lambda: subprocess.run(_retrain_command(config_path), capture_output=True, text=True))
                if done.returncode != 0:
                    raise RuntimeError(f"retrain tick failed:\n{done.stderr[-3000:]}")
                if index >= warmup:
                    results["process"].samples.append(seconds)
                floor = [sys.executable, "-c", FLOOR_SCRIPT, str(config_path)]
                seconds, done = timed(lambda: subprocess.run(floor, capture_output=True, text=True, check=True))
                if index >= warmup:
                    results["floor"].samples.append(seconds)
            results["runs_launched"] = instance.get_runs_count() - runs_before
        results["launch_requests"] = launched
        results["imports"] = import_times(config_path)
    return results


def import_times(config_path: Path, top: int = 6) -> list[tuple[str, float]]:
    """The slowest top-level imports of one no-op ``retrain tick`` (``-X importtime``, cumulative seconds).

    A module first imported inside a function shows up as its own top-level line: e.g.
    ``dagster._core.storage...`` when the instance is opened, after ``import dagster`` itself."""
    command = [sys.executable, "-X", "importtime", *_retrain_command(config_path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and name.startswith(" ") and not name.startswith("  "):
            totals[name.strip()] = totals.get(name.strip(), 0.0) + int(cumulative) / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])[:top]
