"""Where one platform retrain cycle spends its time: the profile behind the cycle rows of ``RESULTS.md``.

    .venv/bin/python bench/breakdown.py --rows 1000000

Runs the cycle of :mod:`bench.cycle` once to warm up, then once measured, and prints the run's Dagster step
durations and the wall time of the package functions that matter (wrapped with timers for the measured cycle
only; calls nest, so the lines overlap), then the bare script's cycle for comparison. Not part of ``make
bench``. For a sampling profile of the same cycle, ``pip install pyinstrument`` into the venv and pass
``--pyinstrument``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

from bench import cycle  # noqa: E402
from bench.workload import scratch, timed  # noqa: E402

# module -> functions (``Class.method`` for methods); a name the package no longer has is skipped
WATCHED = {
    "retrain_assets.core.batches": ["validate_new_batches", "ValidationRun.accepted_frame"],
    "retrain_assets.core.validation": ["validate_batch"],
    "retrain_assets.core.monitoring": ["drift", "performance"],
    "retrain_assets.core.delta": ["read_table", "read_batch", "append", "history"],
    "retrain_assets.core.training": ["split", "train", "score"],
    "retrain_assets.core.drift": ["reference_profile"],
    "retrain_assets.core.registry": [
        "Registry.log_candidate",
        "Registry.load",
        "Registry.record_decision",
        "Registry.promote",
    ],
    "retrain_assets.defs.assets.evaluation": ["evaluation_html"],
    "sklearn.pipeline": ["Pipeline.fit", "Pipeline.predict_proba", "Pipeline.predict"],
}


def watch(totals: dict, counts: collections.Counter) -> None:
    """Wrap every WATCHED function with a timer that adds to ``totals``/``counts`` while ``totals["on"]``."""
    for module_name, names in WATCHED.items():
        module = importlib.import_module(module_name)
        for name in names:
            owner_name, _, attribute = name.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, attribute, None)
            if original is None:
                continue
            label = f"{module_name.split('.')[-1]}.{name}"

            def timer(*args, __original=original, __label=label, **kwargs):
                start = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    if totals["on"]:
                        totals[__label] += time.perf_counter() - start
                        counts[__label] += 1

            setattr(owner, attribute, functools.wraps(original)(timer))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument profile of the cycle too")
    args = parser.parse_args(argv)
    from retrain_assets.app.instance import quiet_libraries

    quiet_libraries()
    totals: dict = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()
    totals["on"] = False
    watch(totals, counts)
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="retrain-bench-data-") as data_dir:
        os.chdir(data_dir)
        try:
            accepted, new = cycle.batches(Path(data_dir), args.rows)
            with scratch("warmup") as directory:
                warm = cycle.PlatformCycle(directory / "platform", accepted, new)
                warm.run()
                warm.close()
                cycle.BaselineCycle(directory / "baseline", accepted, new).run()
            with scratch("breakdown") as directory:
                platform = cycle.PlatformCycle(directory / "platform", accepted, new)
                profiler = _profiler() if args.pyinstrument else None
                totals["on"] = True
                seconds, _ = timed(platform.run)
                totals["on"] = False
                if profiler is not None:
                    profiler.stop()
                run = platform.instance.get_runs(limit=1)[0]
                steps = platform.instance.get_run_step_stats(run.run_id)
                platform.close()
                print(f"platform cycle, {args.rows:,} rows: {seconds:.2f} s (tick)")
                for step in steps:
                    print(f"  step {step.step_key:<20} {step.end_time - step.start_time:6.2f} s")
                outside = seconds - sum(step.end_time - step.start_time for step in steps)
                print(f"  outside the steps (tick, run launch, events) {outside:.2f} s")
                _print_totals(totals, counts)
                bare = cycle.BaselineCycle(directory / "baseline", accepted, new)
                totals["on"] = True
                seconds, _ = timed(bare.run)
                totals["on"] = False
                print(f"bare script cycle: {seconds:.2f} s")
                _print_totals(totals, counts)
                if profiler is not None:
                    print(profiler.output_text(unicode=False, color=False))
        finally:
            os.chdir(home)
    return 0


def _profiler():
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.002)
    profiler.start()
    return profiler


def _print_totals(totals: dict, counts: collections.Counter) -> None:
    for label, seconds in sorted(((k, v) for k, v in totals.items() if k != "on"), key=lambda item: -item[1]):
        print(f"  {seconds:6.2f} s  {counts[label]:>2}x  {label}")
    totals.clear()
    totals["on"] = False
    counts.clear()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
