"""``make bench``: the platform's overhead measured against bare pandas + scikit-learn, in one process.

    .venv/bin/python bench/run.py            # full run: 100k and 1M rows, median of 3 after a warm-up
    .venv/bin/python bench/run.py --quick    # smoke run: 20k and 100k rows, 1 repetition after a warm-up
    .venv/bin/python bench/run.py --only daemon   # only the daemon path (`bench/daemon.py`)
    .venv/bin/python bench/run.py --only serving  # only `retrain serve` vs `mlflow models serve` under wrk
                                                  # (`bench/serving.py`; `make bench` installs wrk)
    .venv/bin/python bench/run.py --only versions # tick, validation, status at 10,000 versions (`bench/versions.py`;
                                                  # --quick: 2,000)
    .venv/bin/python bench/run.py --only dvc      # `retrain tick` vs a DVC 3 pipeline doing the same work, time and
                                                  # peak RSS (`bench/peer_dvc.py`; `make bench` installs DVC)
    --only process: the cycle as whole processes (imports included); --only large: one 5M-row cycle and its RSS

Prints the machine, one table (benchmark, platform, baseline, ratio, goal, met?, notes) and the import and
load details the table refers to. See ``bench/RESULTS.md`` for the numbers of a full run and their reading.
Everything happens in temporary folders that are removed afterwards; nothing touches the network (``daemon``
serves the UI on a free port of 127.0.0.1, ``serving`` its prediction servers, and each stops every process it
started).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable, so `bench` is a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
warnings.filterwarnings("ignore")

from bench import batch_cost, cycle, daemon, gitops, noop_tick, peer_dvc, serving, versions  # noqa: E402
from bench.workload import Row, machine  # noqa: E402

MB = 2**20


EVERY = ["cycle", "process", "large", "dvc", "tick", "batch", "rss", "gitops", "daemon", "serving", "versions"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k/100k rows, 1 repetition: a smoke run")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions after the warm-up (default 3)")
    parser.add_argument(
        "--only",
        choices=EVERY,
        action="append",
        help="run only these (default: all)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # internal: peak-RSS subprocess
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def ratio_row(name: str, platform, baseline, goal: float, notes: str = "") -> Row:
    ratio = platform.median / baseline.median
    return Row(
        name,
        f"{platform.median:.2f} s",
        f"{baseline.median:.2f} s",
        ratio,
        f"<= {goal:g}x",
        ratio <= goal,
        notes or f"spread {platform.spread()} / {baseline.spread()} s",
    )


def run_cycle(data: Path, sizes: list[int], repetitions: int) -> list[Row]:
    rows = []
    for size in sizes:
        platform, bare, landing = cycle.measure(data, size, repetitions)
        notes = (
            f"spread {platform.spread()} / {bare.spread()} s; "
            f"not in the cycle: ingest of the batch {landing.median:.2f} s"
        )
        rows.append(
            ratio_row(
                f"retrain cycle, {size:,} rows (tick vs bare script)", platform, bare, cycle.cycle_goal(size), notes
            )
        )
        log(f"cycle {size:,}: platform {platform.samples}, baseline {bare.samples}, ingest {landing.samples}")
    floor = cycle.orchestration_floor(repetitions)
    rows.append(
        Row(
            "orchestration floor: 5 trivial assets, sqlite instance",
            f"{floor.median:.2f} s",
            "-",
            None,
            "(reference)",
            None,
            "fixed cost of any Dagster run on a persistent instance",
        )
    )
    log(f"orchestration floor: {floor.samples}")
    return rows


def run_process(data: Path, sizes: list[int], repetitions: int) -> list[Row]:
    rows = []
    for size in sizes:
        platform, bare = cycle.measure_process(data, size, repetitions)
        goal = cycle.cycle_goal(size, process=True)
        rows.append(
            ratio_row(
                f"retrain cycle, {size:,} rows, whole processes (`retrain tick` vs `python bench/baseline.py`)",
                platform,
                bare,
                goal,
                f"imports included (cold start); spread {platform.spread()} / {bare.spread()} s",
            )
        )
        log(f"process cycle {size:,}: platform {platform.samples}, baseline {bare.samples}")
    return rows


def run_large_cycle(data: Path, size: int) -> list[Row]:
    """One run of the largest cycle each side (no warm-up: minutes per run), then its peak RSS."""
    platform, bare, landing = cycle.measure(data, size, repetitions=1, warmup=0)
    rows = [
        ratio_row(
            f"retrain cycle, {size:,} rows (tick vs bare script)",
            platform,
            bare,
            cycle.cycle_goal(size),
            f"one run each, no warm-up; not in the cycle: ingest of the batch {landing.median:.2f} s",
        )
    ]
    log(f"large cycle {size:,}: platform {platform.samples}, baseline {bare.samples}")
    return rows + run_rss(data, size)


def run_dvc(data: Path, sizes: list[int], repetitions: int) -> list[Row]:
    rows = []
    for size in sizes:
        result = peer_dvc.measure(data, size, repetitions)
        ours, theirs = result["retrain"], result["dvc"]
        peak, peer_peak = result["retrain_rss"], result["dvc_rss"]
        rows += [
            ratio_row(
                f"retrain cycle, {size:,} rows, whole processes: `retrain tick` vs `dvc repro` (DVC 3 pipeline)",
                ours,
                theirs,
                1.0,
                f"prepare, validate (GE), train, evaluate + MLflow as four DVC stages; spread {ours.spread()} / "
                f"{theirs.spread()} s",
            ),
            Row(
                f"peak RSS of that cycle, {size:,} rows: `retrain tick` vs `dvc repro`",
                f"{peak.median / MB:,.0f} MB",
                f"{peer_peak.median / MB:,.0f} MB",
                peak.median / peer_peak.median,
                "<= 1x",
                peak.median <= peer_peak.median,
                "largest single process of each command's tree (DVC's stages run one after another)",
            ),
        ]
        log(f"dvc {size:,}: {ours.samples} / {theirs.samples} s, {peak.samples} / {peer_peak.samples} bytes")
    return rows


def run_tick(data: Path, repetitions: int) -> tuple[list[Row], dict[str, list[tuple[str, float]]]]:
    result = noop_tick.measure(data, repetitions)
    runs = result["runs_launched"]
    process, full, in_process = result["process"], result["full_path"], result["in_process"]
    goal = f"< {noop_tick.TICK_GOAL:g} s, 0 runs"
    rows = [
        Row(
            "no-op `retrain tick`, whole process",
            f"{process.median:.2f} s",
            "-",
            None,
            goal,
            process.median < noop_tick.TICK_GOAL and runs == 0,
            f"runs launched: {runs}; spread {process.spread()} s",
        ),
        Row(
            "no-op `retrain tick` process, full path",
            f"{full.median:.2f} s",
            "-",
            None,
            "(reference)",
            None,
            f"retrain.yaml touched first, so the tick opens the instance; spread {full.spread()} s",
        ),
        Row(
            "no-op tick(), in process",
            f"{in_process.median:.3f} s",
            "-",
            None,
            goal,
            in_process.median < noop_tick.TICK_GOAL and result["launch_requests"] == 0,
            f"run requests: {result['launch_requests']}",
        ),
    ]
    log(f"tick: process {process.samples}, full path {full.samples}, in process {in_process.samples}")
    return rows, {"no-op `retrain tick`": result["imports"], "full path": result["full_path_imports"]}


def run_batch(table_rows: list[int], repetitions: int) -> list[Row]:
    result = batch_cost.measure(table_rows, repetitions)
    alone = result["batch"]
    rows = []
    for size in table_rows:
        notes = (
            f"{result['versions'][size]} versions at the end; "
            f"spread {result[size].spread()} / {alone.spread()} s; "
            f"in memory, no Delta: {result['memory'].median:.2f} s"
        )
        rows.append(
            ratio_row(
                f"validate + drift 100k batch on {size:,}-row table vs batch alone",
                result[size],
                alone,
                batch_cost.BATCH_GOAL,
                notes,
            )
        )
        log(f"batch on {size:,}: {result[size].samples}, alone {alone.samples}, in memory {result['memory'].samples}")
    return rows


def run_rss(data: Path, size: int) -> list[Row]:
    result = cycle.measure_rss(data, size)
    frame = result["frame"]
    rows = []
    for side, label in (("platform", "`retrain tick` process"), ("baseline", "bare script process")):
        peak, imports = result[side]["peak"], result[side]["imports"]
        rows.append(
            Row(
                f"peak RSS of the {size:,}-row cycle, {label} vs frame",
                f"{peak / MB:,.0f} MB",
                f"{frame / MB:,.0f} MB",
                peak / frame,
                "(report)",
                None,
                f"RSS after imports {imports / MB:,.0f} MB; peak - imports = {(peak - imports) / frame:.1f}x frame",
            )
        )
    log(f"rss: {result}")
    return rows


def run_gitops(data: Path, repetitions: int) -> list[Row]:
    result = gitops.measure(data, repetitions)
    check, status = result["check"]["check"], result["check"]["status"]
    cached, uncached = result["backfill"]["cached"], result["backfill"]["uncached"]
    trained, reused = result["backfill"]["trained"], result["backfill"]["reused"]
    rows = [
        Row(
            "no-op `retrain status --check`, whole process",
            f"{check.median:.2f} s",
            "-",
            None,
            f"<= {gitops.CHECK_GOAL:g} s",
            check.median <= gitops.CHECK_GOAL,
            f"exit 0, imports neither dagster nor mlflow; full `retrain status` process {status.median:.2f} s, "
            f"check/status {check.median / status.median:.2f}x; spread {check.spread()} / {status.spread()} s",
        ),
        Row(
            f"backfill of {gitops.WEEKS} weekly partitions, run cache vs --no-run-cache",
            f"{cached.median:.2f} s",
            f"{uncached.median:.2f} s",
            cached.median / uncached.median,
            "(report)",
            None,
            f"with the cache {trained} trained, {reused} reused (data stopped after week {gitops.DATA_WEEKS}); "
            f"without, {gitops.WEEKS} trained; spread {cached.spread()} / {uncached.spread()} s",
        ),
    ]
    log(
        f"gitops: check {check.samples}, status {status.samples}, backfill cached {cached.samples}, "
        f"uncached {uncached.samples}"
    )
    return rows


def run_daemon(data: Path, repetitions: int, backfill_repetitions: int) -> list[Row]:
    result = daemon.measure(data, repetitions, backfill_repetitions)
    under, tick = result["daemon"], result["tick"]
    ui, cli, details, cli_details = result["ui"], result["cli"], result["ui_details"], result["cli_details"]
    executor = os.environ.get("RETRAIN_EXECUTOR", "in_process")
    decision, cron = under["decision"], tick["decision"]
    multi, inproc = result["multiprocess"]["run"], under["run"]
    runs = f"runs {min(details['run_seconds']):.0f}-{max(details['run_seconds']):.0f} s"
    rows = [
        Row(
            "new version → decision, daemon (sensor every 1 s) vs `retrain tick`",
            f"{decision.median:.2f} s",
            f"{cron.median:.2f} s",
            decision.median / cron.median,
            "(report)",
            None,
            f"run status daemon {', '.join(under['statuses'])} / tick {', '.join(tick['statuses'])}; the daemon "
            f"launches each run as its own process (default run launcher), steps with the {executor} executor; "
            f"tick: whole process, run in process; spread {decision.spread()} / {cron.spread()} s",
        ),
        Row(
            "daemon-launched run, start → end: multiprocess vs in-process executor",
            f"{multi.median:.2f} s",
            f"{inproc.median:.2f} s",
            multi.median / inproc.median,
            "(report)",
            None,
            "the five lineage steps each in a process of their own (each importing the ML stack) against all of "
            f"them in the run's process, the default; same daemon, same batches; spread {multi.spread()} / "
            f"{inproc.spread()} s",
        ),
        Row(
            "new version → run start, daemon (sensor every 1 s)",
            f"{under['start'].median:.2f} s",
            "-",
            None,
            "(reference)",
            None,
            f"run created by the sensor after {under['created'].median:.2f} s (Dagster's sensor loop: every 5 s at "
            f"most); spread {under['start'].spread()} s; "
            f"first run (daemon start included) started after {under['warmup']['start']:.1f} s",
        ),
        ratio_row(
            f"UI backfill of {daemon.PARTITIONS} partitions vs `retrain backfill`",
            ui,
            cli,
            daemon.BACKFILL_GOAL,
            f"UI: launch → backfill COMPLETED_SUCCESS, {details['runs']} run process(es) (single-run backfill "
            f"policy), {runs}, first start after {details['first_run_start']:.1f} s, "
            f"last end after {details['last_run_end']:.1f} s; `retrain backfill` in process (+ backtest summary); "
            f"trained/reused {details['trained']}/{details['reused']} vs {cli_details['trained']}/"
            f"{cli_details['reused']}; UI processes left after SIGTERM: {len(details['leftovers'])}",
        ),
    ]
    log(
        f"daemon: decision {decision.samples}, start {under['start'].samples}, created {under['created'].samples}, "
        f"warm-up {under['warmup']}; tick {cron.samples}; backfill ui {ui.samples}, cli {cli.samples}; "
        f"ui details {details}; cli details {cli_details}"
    )
    return rows


def run_serving(data: Path, quick: bool) -> list[Row]:
    result = serving.measure(data, quick)
    runs, swap = result["runs"], result["swap"]
    ours, unrecorded, mlflow = serving.SERVERS
    processes = "1 uvicorn process each (mlflow: its default, --workers unset)"
    rows = []
    for (size, connections), by_server in runs.items():
        mine, theirs = by_server[ours], by_server[mlflow]
        ratio = mine.throughput / theirs.throughput
        rows.append(
            Row(
                f"serving {size}-row requests, {connections} connection(s): retrain serve vs mlflow models serve",
                mine.describe(),
                theirs.describe(),
                ratio,
                f">= {serving.GOAL:g}x at <= its p99",
                ratio >= serving.GOAL and mine.p99_ms <= theirs.p99_ms and mine.socket_errors == 0,
                f"p50 {mine.p50_ms:.1f} / {theirs.p50_ms:.1f} ms; server CPU per request {mine.cpu_ms:.1f} / "
                f"{theirs.cpu_ms:.1f} ms; ledger on; socket errors {mine.socket_errors} / {theirs.socket_errors}; "
                f"{processes}",
            )
        )
    top = max(serving.CONNECTIONS)
    for size in serving.ROWS:
        on, off = runs[(size, top)][ours], runs[(size, top)][unrecorded]
        others = ", ".join(
            f"{c}: {runs[(size, c)][ours].throughput / runs[(size, c)][unrecorded].throughput:.2f}x "
            f"(p99 {runs[(size, c)][ours].p99_ms:.1f} / {runs[(size, c)][unrecorded].p99_ms:.1f} ms)"
            for c in serving.CONNECTIONS
            if c != top
        )
        cpu = f"server CPU per request {on.cpu_ms:.1f} / {off.cpu_ms:.1f} ms"

        rows.append(
            Row(
                f"ledger cost, {size}-row requests, {top} connections: retrain serve with the ledger vs without",
                on.describe(),
                off.describe(),
                on.throughput / off.throughput,
                "(report)",
                None,
                f"{cpu}; throughput on/off at other connection counts {others}; on: each row journaled and fsynced "
                "before the answer, appended to Delta per serving.flush_rows/flush_seconds (defaults)",
            )
        )
    steady, during = swap["steady"], swap["swap"]
    champion, other = result["versions"]
    load = f"{serving.SWAP_ROWS}-row requests, {serving.SWAP_CONNECTIONS} connections"
    rows += [
        Row(
            f"hot swap under load: failed requests ({load}, poll_seconds {serving.SWAP_POLL_SECONDS:g})",
            f"{during.failed} of {during.requests:,}",
            "-",
            None,
            "0",
            during.failed == 0,
            f"non-2xx {during.non_2xx}, socket errors {during.socket_errors}; `retrain rollback --to {other} "
            f"--force` (from v{champion}) {swap['rollback_at']:.1f} s into the {during.seconds:.0f} s run, "
            f"v{other} answering {swap['seen_after']:.2f} s after it returned",
        ),
        Row(
            "hot swap under load: longest pause (max latency, swap run vs run without)",
            f"{during.max_ms:,.0f} ms",
            f"{steady.max_ms:,.0f} ms",
            during.max_ms / steady.max_ms,
            "(report)",
            None,
            f"p99 {during.p99_ms:.1f} / {steady.p99_ms:.1f} ms; {during.describe()} / {steady.describe()}",
        ),
    ]
    log(
        f"serving: set-up {result['setup_seconds']:.0f} s, wrk runs of {result['seconds']} s; predictions table "
        f"{result['ledger_rows']:,} rows; runs {runs}; swap {swap}"
    )
    return rows


def run_versions(count: int, repetitions: int) -> list[Row]:
    result = versions.measure(count, repetitions)
    small = result["small"]
    rows = []
    for key, when in (("large", "before"), ("maintained", "after")):
        large = result[key]
        at = f"{large.versions:,} versions {when} `retrain maintain`"
        tick, full = large.tick, large.full_tick
        rows += [
            Row(
                f"no-op `retrain tick` process, {at} vs {small.versions}",
                f"{tick.median:.2f} s",
                f"{small.tick.median:.2f} s",
                tick.median / small.tick.median,
                f"< {noop_tick.TICK_GOAL:g} s",
                tick.median < noop_tick.TICK_GOAL,
                f"full path (config touched: instance, sensors) {full.median:.2f} / {small.full_tick.median:.2f} s; "
                f"spread {tick.spread()} / {small.tick.spread()} s; 0 runs launched",
            ),
            ratio_row(
                f"validate one new batch (`validate_new_batches`), {at} vs {small.versions}",
                large.validate,
                small.validate,
                versions.VALIDATE_GOAL,
                f"in process; the ingest before it (not timed in) {large.ingest.median:.2f} / "
                f"{small.ingest.median:.2f} s; spread {large.validate.spread()} / {small.validate.spread()} s",
            ),
            Row(
                f"`retrain status` process, {at} vs {small.versions}",
                f"{large.status.median:.2f} s",
                f"{small.status.median:.2f} s",
                large.status.median / small.status.median,
                f"< {versions.STATUS_GOAL:g} s",
                large.status.median < versions.STATUS_GOAL,
                f"spread {large.status.spread()} / {small.status.spread()} s",
            ),
        ]
    build = result["build"]
    rows.append(
        Row(
            f"{result['large'].versions:,}-version project: build, `delta.history`, `retrain maintain`",
            f"{result['maintain']:.2f} s",
            "-",
            None,
            "(reference)",
            None,
            f"`retrain maintain` process {result['maintain']:.2f} s; one `delta.history` of raw_data (every commit) "
            f"{result['history']:.2f} s; built in {build['large']:.0f} s ({small.versions} versions: "
            f"{build['small']:.0f} s)" + ("; --quick: fewer versions" if count != versions.VERSIONS else ""),
        )
    )
    log(
        f"versions: {count:,}; "
        + "; ".join(
            f"{key} tick {stage.tick.samples} full {stage.full_tick.samples} validate {stage.validate.samples} "
            f"ingest {stage.ingest.samples} status {stage.status.samples}"
            for key, stage in (("small", small), ("large", result["large"]), ("maintained", result["maintained"]))
        )
        + f"; maintain: {result['maintain_output']}"
    )
    return rows


def format_table(rows: list[Row]) -> str:
    header = ["benchmark", "platform", "baseline", "ratio", "goal", "met?", "notes"]
    body = [
        [
            r.benchmark,
            r.platform,
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.goal,
            "-" if r.met is None else ("yes" if r.met else "NO"),
            r.notes,
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    render = lambda line: "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, body)])


def git_revision() -> str:
    """The checkout's commit, marked ``+changes`` when the work tree differs from it (``-`` outside git)."""
    import subprocess

    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], capture_output=True, text=True, cwd=Path(__file__).parent)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    return (commit + (" +changes" if git("status", "--porcelain") else "")) if commit else "-"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet() -> None:
    """Keep library chatter (MLflow, alembic, Dagster notices) out of the table's way."""
    from retrain_assets.app.instance import quiet_libraries

    quiet_libraries()
    for name in ("mlflow", "alembic", "great_expectations", "py.warnings"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    quiet()
    if args.child:
        kind, side, directory = args.child
        assert kind == "rss"
        cycle.rss_child(side, Path(directory), args.data, args.rows)
        return 0
    sizes = [20_000, 100_000] if args.quick else [100_000, 1_000_000]
    tables = [200_000, 500_000] if args.quick else [1_000_000, 5_000_000]
    repetitions = args.repetitions or (1 if args.quick else 3)
    large = 1_000_000 if args.quick else 5_000_000
    selected = set(args.only or EVERY)
    info = machine()
    print(f"machine: {info['cores']} cores, {info['ram']} RAM, {info['cpu']}; Python {info['python']}")
    print(f"packages: {info['packages']}")
    print(f"measured: {info['package']}, git {git_revision()}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(
        f"mode: {'quick' if args.quick else 'full'}; median of {repetitions} after 1 warm-up; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.perf_counter()
    rows, imports = [], {}
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="retrain-bench-data-") as data_dir:
        data = Path(data_dir)
        os.chdir(data)  # whatever a library writes relative to the working directory lands here, not in the checkout
        try:
            if "cycle" in selected:
                rows += run_cycle(data, sizes, repetitions)
            if "process" in selected:
                rows += run_process(data, sizes, repetitions)
            if "large" in selected:
                rows += run_large_cycle(data, large)
            if "dvc" in selected:
                rows += run_dvc(data, sizes, repetitions)
            if "tick" in selected:
                tick_rows, imports = run_tick(data, repetitions)
                rows += tick_rows
            if "batch" in selected:
                rows += run_batch(tables, repetitions)
            if "rss" in selected:
                rows += run_rss(data, sizes[-1])
            if "gitops" in selected:
                rows += run_gitops(data, repetitions)
            if "daemon" in selected:
                rows += run_daemon(data, repetitions, args.repetitions or 1)
            if "serving" in selected:
                rows += run_serving(data, args.quick)
            if "versions" in selected:
                rows += run_versions(versions.QUICK_VERSIONS if args.quick else versions.VERSIONS, repetitions)
        finally:
            os.chdir(home)
    print()
    print(format_table(rows))
    for kind, slowest in imports.items():
        print(
            f"\nslowest top-level imports, {kind} (-X importtime, cumulative): "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in slowest)
        )
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
