"""Benchmark 1: one retrain cycle through the platform vs the bare pandas + scikit-learn script.

Workload at ``rows`` N: the table already holds one accepted batch of N/2 rows with a champion trained on it;
a new batch of N/2 rows lands; the cycle validates the new batch, trains a candidate on all N rows (80 % train
split), scores candidate and champion on the same holdout and decides. Every repetition starts from a fresh
project, so all repetitions do the same work.

Platform: ``retrain_assets.ticking.tick`` (what ``retrain tick`` runs: the version sensor sees the new Delta
version and requests one run, executed in process against the project's persistent sqlite Dagster instance,
MLflow sqlite store, Delta tables, Great Expectations). Timed from after ``retrain ingest`` landed the batch as a
Delta version to the tick's return with the promotion decision; the ingest itself is not timed (the baseline's
counterpart, the Parquet file appearing, costs nothing either).

Baseline: :func:`bench.baseline.cycle` on the same Parquet files, timed from reading them to writing the winner.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import baseline
from bench.workload import Measurement, memory_status, reset_peak_rss, scratch, timed, write_batch, write_project

CYCLE_GOAL = 1.25


def batches(data: Path, rows: int) -> tuple[Path, Path]:
    """The accepted batch (day 0) and the new batch (day 1), N/2 rows each."""
    return write_batch(data, 0, rows // 2), write_batch(data, 1, rows // 2)


class PlatformCycle:
    """A fresh project with day 0 landed and its champion trained (untimed), then day 1 landed (untimed)."""

    def __init__(self, directory: Path, accepted: Path, new: Path):
        from retrain_assets.runner import ingest, project_instance
        from retrain_assets.ticking import tick

        self.config_path, self.config = write_project(directory)
        self._context = project_instance(self.config)
        self.instance = self._context.__enter__()
        ingest(self.config, self.instance, accepted)
        bootstrap = tick(self.config_path, self.instance)
        _decision(bootstrap)  # raises unless a champion was promoted
        ingest(self.config, self.instance, new)

    def run(self) -> dict:
        """The timed part: one tick that runs the new version through to the promotion decision."""
        from retrain_assets.ticking import tick

        return _decision(tick(self.config_path, self.instance))

    def close(self) -> None:
        self._context.__exit__(None, None, None)


class BaselineCycle:
    """The previous model trained on day 0 and saved with joblib (untimed)."""

    def __init__(self, directory: Path, accepted: Path, new: Path):
        import joblib
        import pandas as pd

        _, self.config = write_project(directory)
        self.accepted, self.new, self.store = accepted, new, directory
        self.champion = directory / "previous.joblib"
        joblib.dump(baseline.train(pd.read_parquet(accepted), self.config), self.champion)

    def run(self) -> dict:
        decision = baseline.cycle([self.accepted], self.new, self.champion, self.store, self.config)
        if "candidate" not in decision:
            raise RuntimeError(f"baseline rejected the batch: {decision['reason']}")
        return decision


def _decision(report) -> dict:
    """The one run's decision from a tick report; raises when the tick did not end in a decision."""
    outcomes = [launch.outcome for launch in report.launches if launch.outcome is not None]
    if len(outcomes) != 1 or not outcomes[0].success or outcomes[0].decision is None:
        described = [o.describe("roc_auc") for o in outcomes] or report.skips
        raise RuntimeError(f"expected one run ending in a promotion decision, got {described}")
    return outcomes[0].decision


def measure(data: Path, rows: int, repetitions: int, warmup: int = 1) -> tuple[Measurement, Measurement]:
    """Platform and baseline cycles side by side, alternating, ``warmup`` + ``repetitions`` times each."""
    accepted, new = batches(data, rows)
    platform, bare = Measurement(), Measurement()
    for index in range(warmup + repetitions):
        with scratch(f"cycle-{rows}") as directory:
            cycle = PlatformCycle(directory / "platform", accepted, new)
            try:
                seconds, _ = timed(cycle.run)
            finally:
                cycle.close()
            if index >= warmup:
                platform.samples.append(seconds)
            reference = BaselineCycle(directory / "baseline", accepted, new)
            seconds, _ = timed(reference.run)
            if index >= warmup:
                bare.samples.append(seconds)
    return platform, bare


def rss_child(side: str, data: Path, rows: int) -> None:
    """Entry point of the peak-RSS subprocess: set up one ``side`` (untimed), reset the peak RSS, run one
    cycle, print ``{"before", "peak", "frame"}`` in bytes as JSON. ``frame`` is ``memory_usage(deep=True)`` of
    the N-row frame the cycle trains on, as pandas reads it back from the Parquet files."""
    import pandas as pd

    accepted, new = batches(data, rows)
    frame = pd.concat([pd.read_parquet(accepted), pd.read_parquet(new)], ignore_index=True)
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    del frame
    with scratch(f"rss-{side}") as directory:
        cycle = (PlatformCycle if side == "platform" else BaselineCycle)(directory / side, accepted, new)
        import gc

        gc.collect()
        reset_peak_rss()
        before = memory_status()["VmRSS"]
        cycle.run()
        peak = memory_status()["VmHWM"]
        if isinstance(cycle, PlatformCycle):
            cycle.close()
    json.dump({"before": before, "peak": peak, "frame": frame_bytes}, sys.stdout)


def measure_rss(data: Path, rows: int) -> dict[str, dict]:
    """Peak RSS of one cycle per side, each in its own process (``run.py --child rss SIDE``)."""
    import subprocess

    results = {}
    run_py = Path(__file__).with_name("run.py")
    for side in ("platform", "baseline"):
        command = [sys.executable, str(run_py), "--child", "rss", side, "--data", str(data), "--rows", str(rows)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"peak-RSS child ({side}) failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    return results
