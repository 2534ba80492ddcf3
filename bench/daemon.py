"""Benchmark 5: the daemon path (`retrain ui`'s ``dagster-daemon``) against the in-process commands.

* latency: the time from a new ``raw_data`` version to its run's start and to its decision (the run's end),
  under ``dagster-daemon run`` with the version sensor every second, against a whole ``retrain --config X
  tick`` process. Each side has its own project (``triggers.sensor_interval_seconds: 1``, ``triggers.schedule:
  null``). The first run of each side trains the champion from one 2,000-row batch and is not timed; on the
  daemon side it also waits out the daemon's start. Then each repetition lands one more 2,000-row batch with
  ``execution.ingest`` in this process and starts the clock when it returns (the ingest is not timed):
  - daemon: the instance is polled every 0.2 s for the run tagged ``retrain/delta_version`` = the new version;
    its run record gives when the sensor created it, when it started and when it ended (wall clock);
  - tick: the wall time of the whole ``retrain --config X tick`` process that runs it.
  The daemon is started as `retrain ui` starts it (``DAGSTER_HOME``, ``RETRAIN_CONFIG``, ``write_workspace``,
  ``webui.daemon``), so it launches each run as its own process (Dagster's default run launcher, through the
  code server) and each step in its own process too (the multiprocess executor), unless ``RETRAIN_EXECUTOR``
  says otherwise. Its logs, and those of its runs, go to a file in the scratch folder. Dagster's sensor loop
  runs at most every 5 s (``MIN_INTERVAL_LOOP_TIME``), whatever the sensor's interval, and the run queue is
  read every 5 s (``dequeue_interval_seconds``).
* backfill: a backfill of ``historical_model`` over the first ``PARTITIONS`` weekly partitions of a project
  whose batches (one a day, 2,000 rows, landed at the end of their day) cover ``PARTITIONS + 1`` weeks, so
  every partition has data to train on and a following week to be scored on. Each side builds its own
  project (the run cache of ``core.backtest`` cannot reuse the other side's models):
  - UI: `retrain --config X ui --port P` as a subprocess (its own session, with the daemon), after an
    in-process tick that trains the champion, so the daemon's version sensor finds the latest version's
    run key used and launches nothing. Once the sensor has ticked (the daemon is up), the clock starts and
    ``launchPartitionBackfill`` is sent over GraphQL with ``partitionNames``; it stops when
    ``partitionBackfillOrError`` reports the backfill finished (polled every second). The first run's start
    and the last run's end, from the run records, are reported too (the backfill daemon runs every 30 s);
  - `retrain backfill`: ``execution.backfill`` in this process over the same partitions (run cache on, as
    on the UI side), including the ``backtest`` summary run it ends with (the UI backfill has none).
  Every partition must succeed on both sides, and no other run may start during the UI backfill
  (a RuntimeError otherwise).

Every process started here is stopped afterwards, also on errors: the daemon and the code servers and runs
below it with ``webui.stop_descendants``, the UI's whole process group with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from bench.workload import START, Measurement, free_port, graphql, scratch, timed, write_batch, write_project

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from retrain_assets.core.config import RetrainConfig

BACKFILL_GOAL = 1.3
LATENCY_ROWS = 2000
PARTITIONS = 20  # weekly partitions backfilled, each with a week of data and the following week to score on
ROWS_PER_DAY = 2000
POLL_SECONDS = 0.2
RUN_TIMEOUT = 300.0  # seconds from a new version to its run's end (the first one includes the daemon's start)
UI_TIMEOUT = 180.0  # seconds for the UI to answer and its daemon's version sensor to tick once
BACKFILL_TIMEOUT = 1800.0

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
UNFINISHED = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
BACKFILL_ID_TAG = "dagster/backfill"

LAUNCH_BACKFILL = """mutation { launchPartitionBackfill(backfillParams: {
  assetSelection: [{path: ["historical_model"]}], partitionNames: %s
}) { __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""
BACKFILL_STATUS = """{ partitionBackfillOrError(backfillId: %s) {
  __typename ... on PartitionBackfill { status numPartitions } ... on Error { message } } }"""
SENSOR_TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "retrain_assets",
  repositoryName: "__repository__", sensorName: "raw_data_version_sensor"}) {
  __typename ... on Sensor { sensorState {
    ticks(limit: 1, statuses: [SUCCESS, SKIPPED, FAILURE]) { status timestamp skipReason runKeys } } }
  ... on Error { message } } }"""


def _retrain(config_path: Path, *arguments: str) -> list[str]:
    return [str(Path(sys.executable).with_name("retrain")), "--config", str(config_path), *arguments]


@contextlib.contextmanager
def _environment() -> Iterator[None]:
    """Give back ``DAGSTER_HOME``, ``RETRAIN_CONFIG``, ``RETRAIN_EXECUTOR`` and the SIGINT disposition as they
    were. SIGINT is set to Python's handler while inside: a shell starts background jobs with SIGINT ignored,
    children inherit that, and Dagster maps SIGTERM onto SIGINT, so a daemon started from such a job would
    ignore SIGTERM."""
    saved = {name: os.environ.get(name) for name in ("DAGSTER_HOME", "RETRAIN_CONFIG", "RETRAIN_EXECUTOR")}
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler if handler is not None else signal.SIG_DFL)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """File descriptors 1 and 2 pointed at ``log`` while inside, so a process started here (the daemon, and the
    code server and runs below it) writes its logs there and not into the table."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def _project(directory: Path, interval: Optional[int] = None, **sections: dict) -> tuple[Path, "RetrainConfig"]:
    """:func:`write_project`, then retrain.yaml rewritten (as the tests' ``write_config`` does) with the
    schedule off and, given ``interval``, the daemon's sensors evaluated every ``interval`` seconds."""
    import yaml

    from retrain_assets.core.config import load_config

    config_path, _ = write_project(directory, **sections)
    raw = yaml.safe_load(config_path.read_text())
    triggers = {**raw.get("triggers", {}), "schedule": None}
    if interval is not None:
        triggers["sensor_interval_seconds"] = interval
    raw["triggers"] = triggers
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config_path, load_config(config_path)


def _check_alive(process: subprocess.Popen, what: str, log: Optional[Path] = None) -> None:
    if process.poll() is not None:
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} exited with status {process.returncode}\n{tail}")


def _wait_for_run(
    instance: "DagsterInstance",
    version: int,
    since: float,
    process: Optional[subprocess.Popen] = None,
    log: Optional[Path] = None,
) -> dict:
    """Poll the instance every 0.2 s until the run of raw_data ``version`` has finished; its run id, status and
    the seconds from ``since`` (a ``time.time()``) to its creation, start and end."""
    from dagster import RunsFilter

    from retrain_assets.core.names import DELTA_VERSION_TAG

    deadline = time.monotonic() + RUN_TIMEOUT
    seen_started = None
    while True:
        runs = instance.get_runs(RunsFilter(tags={DELTA_VERSION_TAG: str(version)}))
        if runs:
            run = runs[0]
            if run.status.value == "STARTED" and seen_started is None:
                seen_started = time.time()
            if run.status.value in FINISHED:
                record = instance.get_run_record_by_id(run.run_id)
                start = record.start_time or seen_started
                created = record.create_timestamp
                if created.tzinfo is None:  # sqlite run storage keeps UTC without a zone
                    created = created.replace(tzinfo=dt.timezone.utc)
                return {
                    "run_id": run.run_id,
                    "status": run.status.value,
                    "runs": len(runs),
                    "created": created.timestamp() - since,
                    "start": (start - since) if start is not None else None,
                    "end": (record.end_time or time.time()) - since,
                }
        if process is not None:
            _check_alive(process, "dagster-daemon", log)
        if time.monotonic() > deadline:
            found = [(r.run_id[:8], r.status.value) for r in runs]
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise RuntimeError(
                f"no finished run of raw_data version {version} {RUN_TIMEOUT:.0f} s after it landed (runs: {found})"
                f"\n{tail}"
            )
        time.sleep(POLL_SECONDS)


def measure_daemon_latency(data: Path, repetitions: int, executor: Optional[str] = None) -> dict:
    """``{"created", "start", "decision"}`` Measurements (seconds from the end of the ingest) and ``run`` (its
    start to its end), ``statuses`` of the timed runs, ``warmup``: the first run (daemon start included).
    ``executor`` sets ``RETRAIN_EXECUTOR`` for the daemon and the runs it launches."""
    from retrain_assets.app.execution import ingest
    from retrain_assets.app.instance import prepare_dagster_home, project_instance
    from retrain_assets.app.webui import daemon, descendants, stop_descendants, write_workspace

    results = {
        "created": Measurement(),
        "start": Measurement(),
        "decision": Measurement(),
        "run": Measurement(),
        "statuses": [],
    }
    with scratch("daemon") as directory, _environment():
        if executor is not None:
            os.environ["RETRAIN_EXECUTOR"] = executor
        config_path, config = _project(directory, interval=1)
        prepare_dagster_home(config)  # DAGSTER_HOME, as `retrain ui` sets it
        os.environ["RETRAIN_CONFIG"] = str(config_path.resolve())
        with project_instance(config) as instance:
            first = ingest(config, instance, write_batch(data, 0, LATENCY_ROWS))
            landed = time.time()
            workspace, log = write_workspace(config.dagster_home), directory / "daemon.log"
            with contextlib.ExitStack() as stack:
                with _output_to(log):
                    process = stack.enter_context(daemon(workspace))
                try:
                    results["warmup"] = _wait_for_run(instance, first.version, landed, process, log)
                    for index in range(repetitions):
                        batch = write_batch(data, index + 1, LATENCY_ROWS)
                        version = ingest(config, instance, batch).version
                        landed = time.time()
                        run = _wait_for_run(instance, version, landed, process, log)
                        for kind, key in (("created", "created"), ("start", "start"), ("decision", "end")):
                            if run[key] is not None:
                                results[kind].samples.append(run[key])
                        if run["start"] is not None:
                            results["run"].samples.append(run["end"] - run["start"])
                        results["statuses"].append(run["status"])
                        if run["runs"] != 1:
                            raise RuntimeError(f"raw_data version {version} has {run['runs']} runs, expected 1")
                finally:
                    stop_descendants()  # the daemon, its code server and any run below it, at once
            leftovers = descendants(os.getpid())
            if leftovers:
                raise RuntimeError(f"processes left after stopping the daemon: {leftovers}")
    return results


def measure_tick_latency(data: Path, repetitions: int) -> dict:
    """``{"decision"}``: seconds of each whole ``retrain tick`` process after an ingest; ``statuses`` of its runs."""
    from dagster import RunsFilter

    from retrain_assets.app.execution import ingest
    from retrain_assets.app.instance import project_instance
    from retrain_assets.core.names import DELTA_VERSION_TAG

    results = {"decision": Measurement(), "statuses": []}
    with scratch("tick-latency") as directory, _environment():
        config_path, config = _project(directory, interval=1)
        command = _retrain(config_path, "tick")
        with project_instance(config) as instance:
            for index in range(1 + repetitions):  # the first tick trains the champion: not timed
                version = ingest(config, instance, write_batch(data, index, LATENCY_ROWS)).version
                seconds, done = timed(lambda: subprocess.run(command, capture_output=True, text=True))
                runs = instance.get_runs(RunsFilter(tags={DELTA_VERSION_TAG: str(version)}))
                if done.returncode not in (0, 1) or len(runs) != 1:
                    raise RuntimeError(
                        f"{' '.join(command)} exited {done.returncode} with {len(runs)} runs of version {version}:\n"
                        f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
                    )
                if index >= 1:
                    results["decision"].samples.append(seconds)
                    results["statuses"].append(runs[0].status.value)
    return results


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59), dt.timezone.utc)


@contextlib.contextmanager
def _history_project(directory: Path, data: Path) -> Iterator[tuple[Path, "RetrainConfig", "DagsterInstance"]]:
    """A project with weekly history partitions from START (a Monday), the schedule off, and a batch a day for
    PARTITIONS + 1 weeks, each landed at the end of its day: its config path, config and open instance."""
    from retrain_assets.app.execution import ingest
    from retrain_assets.app.instance import project_instance

    config_path, config = _project(directory, history={"partitions": "weekly", "start": START})
    with project_instance(config) as instance:
        for index in range(7 * (PARTITIONS + 1)):
            landed_at = _end_of(START + dt.timedelta(days=index))
            ingest(config, instance, write_batch(data, index, ROWS_PER_DAY), landed_at)
        yield config_path, config, instance


def partition_keys(config: "RetrainConfig") -> list[str]:
    """The first PARTITIONS keys of the project's history partitions, as Dagster names them."""
    from retrain_assets.defs.assets.history import history_partitions

    keys = history_partitions(config.history).get_partition_keys()[:PARTITIONS]
    if len(keys) != PARTITIONS:
        raise RuntimeError(f"the history partitions have only {len(keys)} keys: {keys}")
    return keys


def measure_cli_backfill(data: Path) -> dict:
    """``seconds`` of ``execution.backfill`` in process over the first PARTITIONS partitions of a fresh project
    (building it is not timed), ``keys``, and how many partitions ``trained`` or ``reused`` a model."""
    from retrain_assets.app.execution import backfill

    with (
        scratch("cli-backfill") as directory,
        _environment(),
        _history_project(directory, data) as (path, config, inst),
    ):
        keys = partition_keys(config)
        start, end = dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
        seconds, (outcomes, _) = timed(lambda: backfill(path, inst, start, end))
    failed = [(o.partition, o.error) for o in outcomes if not o.success]
    if [o.partition for o in outcomes] != keys or failed:
        raise RuntimeError(f"backfill of {keys}: ran {[o.partition for o in outcomes]}, failed: {failed}")
    reused = sum(1 for o in outcomes if o.row.get("reused_from"))
    return {"seconds": seconds, "keys": keys, "trained": len(outcomes) - reused, "reused": reused}


def _wait_until_up(port: int, server: subprocess.Popen, log: Path) -> dict:
    """Poll until the UI answers GraphQL and its daemon's version sensor has ticked once: that tick."""
    deadline = time.monotonic() + UI_TIMEOUT
    while True:
        with contextlib.suppress(OSError, RuntimeError):
            sensor = graphql(port, SENSOR_TICKS)["sensorOrError"]
            ticks = (sensor.get("sensorState") or {}).get("ticks") or []
            if ticks:
                return ticks[0]
        _check_alive(server, "retrain ui", log)
        if time.monotonic() > deadline:
            raise RuntimeError(f"retrain ui did not answer with a sensor tick within {UI_TIMEOUT:.0f} s")
        time.sleep(0.5)


def _wait_idle(instance: "DagsterInstance") -> None:
    """Until no run is queued or in progress (a run the daemon's sensors might have started)."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus(status) for status in UNFINISHED]
    deadline = time.monotonic() + RUN_TIMEOUT
    while instance.get_runs_count(RunsFilter(statuses=statuses)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs still unfinished after {RUN_TIMEOUT:.0f} s before the backfill")
        time.sleep(1)


def _stop(server: subprocess.Popen) -> list[str]:
    """SIGTERM (`retrain ui` then stops its daemon and code servers), then SIGKILL to whatever is left of its
    process group; the processes of the group still running before the SIGKILL (``pgid stat args``)."""
    with contextlib.suppress(ProcessLookupError):
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    listing = subprocess.run(["ps", "-o", "pgid=,stat=,args=", "-e"], capture_output=True, text=True).stdout
    leftovers = [  # zombies (stat Z) have exited already: only their parent has not reaped them yet
        line
        for line in listing.splitlines()
        if line.split(maxsplit=2)[0] == str(server.pid) and not line.split(maxsplit=2)[1].startswith("Z")
    ]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    return leftovers


def measure_ui_backfill(data: Path) -> dict:
    """``seconds`` from the launch of the UI backfill to its finished status, ``last_run_end`` and
    ``first_run_start`` (seconds from the launch, from the run records), ``statuses`` of its runs,
    ``concurrency`` (most runs in progress at once), ``trained``/``reused``, ``leftovers`` after the stop."""
    from dagster import AssetKey, RunsFilter

    from retrain_assets.app.ticking import tick

    with scratch("ui-backfill") as directory, _environment(), _history_project(directory, data) as (path, config, inst):
        keys = partition_keys(config)
        # the champion, trained in process: the daemon's version sensor then finds the newest version's run key
        # used and launches nothing beside the backfill
        tick(path, inst)
        port, log = free_port(), directory / "ui.log"
        env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "RETRAIN_CONFIG")}
        with open(log, "w") as output:
            server = subprocess.Popen(
                _retrain(path, "ui", "--port", str(port)),
                cwd=directory,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            first_tick = _wait_until_up(port, server, log)
            _wait_idle(inst)
            before = {run.run_id for run in inst.get_runs()}
            launched = time.time()
            answer = graphql(port, LAUNCH_BACKFILL % json.dumps(keys))["launchPartitionBackfill"]
            if answer["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"launchPartitionBackfill: {answer}")
            backfill_id = answer["backfillId"]
            deadline = time.monotonic() + BACKFILL_TIMEOUT
            while True:
                status = graphql(port, BACKFILL_STATUS % json.dumps(backfill_id))["partitionBackfillOrError"]
                if status.get("status") in BACKFILL_DONE:
                    seconds = time.time() - launched
                    break
                if status["__typename"] != "PartitionBackfill":
                    raise RuntimeError(f"partitionBackfillOrError: {status}")
                _check_alive(server, "retrain ui", log)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"backfill {backfill_id} not finished after {BACKFILL_TIMEOUT:.0f} s: {status}")
                time.sleep(1)
            runs = inst.get_runs(RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
            others = [run.run_id[:8] for run in inst.get_runs() if run.run_id not in before | {r.run_id for r in runs}]
            records = [inst.get_run_record_by_id(run.run_id) for run in runs]
            materializations = [
                record.asset_materialization
                for record in inst.fetch_materializations(AssetKey("historical_model"), limit=1000).records
                if record.asset_materialization is not None and record.run_id in {run.run_id for run in runs}
            ]
            materialized = {str(m.partition) for m in materializations}
            reused = sum(1 for m in materializations if str(m.metadata["reused_model_run"].value) != "none (trained)")
        finally:
            leftovers = _stop(server)
    statuses = [run.status.value for run in runs]
    if status["status"] != "COMPLETED_SUCCESS" or materialized != set(keys) or set(statuses) != {"SUCCESS"} or others:
        raise RuntimeError(
            f"UI backfill {backfill_id}: {status}, materialized partitions {sorted(materialized)} (expected {keys}), "
            f"run statuses {statuses}, other runs started meanwhile: {others}"
        )
    spans = [(record.start_time, record.end_time) for record in records]
    concurrency = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    return {
        "seconds": seconds,
        "last_run_end": max(end for _, end in spans) - launched,
        "first_run_start": min(start for start, _ in spans) - launched,
        "run_seconds": [end - start for start, end in spans],
        "statuses": statuses,
        "concurrency": concurrency,
        "runs": len(runs),
        "trained": len(materialized) - reused,
        "reused": reused,
        "sensor_tick": first_tick,
        "leftovers": leftovers,
    }


def measure(data: Path, repetitions: int, backfill_repetitions: int = 1) -> dict:
    """``{"daemon", "multiprocess", "tick"}`` (latency, ``repetitions`` new versions each; the daemon with the
    default in-process executor and with the multiprocess one) and ``{"ui", "cli"}`` Measurements
    of the backfill (``backfill_repetitions`` each, UI first: its in-process tick has imported what the
    in-process backfill needs), with the details of the last repetition of each under ``ui_details`` and
    ``cli_details``."""
    results = {
        "daemon": measure_daemon_latency(data, repetitions),
        "multiprocess": measure_daemon_latency(data, repetitions, executor="multiprocess"),
        "tick": measure_tick_latency(data, repetitions),
        "ui": Measurement(),
        "cli": Measurement(),
    }
    for _ in range(backfill_repetitions):
        ui = measure_ui_backfill(data)
        results["ui"].samples.append(ui["seconds"])
        results["ui_details"] = ui
        cli = measure_cli_backfill(data)
        results["cli"].samples.append(cli["seconds"])
        results["cli_details"] = cli
    return results
