"""Benchmark 6: `retrain serve` against `mlflow models serve` on the same registered model, under the same `wrk`.

* set-up: one project (synthetic churn, ``TRAIN_ROWS`` rows a batch) whose first tick trains the champion and
  whose second, on a second batch, registers a second version (the other side of the swap). Everything lives in
  a scratch folder, removed afterwards.
* servers, each one process on 127.0.0.1 with its own process group, all up during the comparison and idle while
  another is measured:
  - ``retrain --config X serve``: the project's serving defaults (ledger on, batches within
    ``serving.batch_wait_ms``), one uvicorn process;
  - the same with ``serving.ledger: false``: what the journal and the predictions table cost;
  - ``mlflow models serve -m models:/<name>@champion --env-manager local`` with MLflow's defaults (``--workers``
    unset: one uvicorn worker; 60 s request timeout), ``MLFLOW_TRACKING_URI`` and ``MLFLOW_REGISTRY_URI`` set to
    the project's store. Our artifact is the sklearn flavor's skops file: MLflow loads it with the trusted types
    its MLmodel lists, and only with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true``, MLflow 3's switch for
    deserializing any model (skops included), which is set for it here.
* load: ``wrk`` (the Debian package ``wrk``; not installed from here), ``-t2`` (``-t1`` at one connection), a
  Lua script posting one ``dataframe_split`` body (``ROWS`` rows of a batch the model was not trained on) and
  printing wrk's summary as JSON from ``done()``. Each server gets a short warm-up run per body first; then, per
  configuration (rows x connections), one ``SECONDS`` run per server, in an order that rotates with the
  configuration. ``non_2xx`` is wrk's count of answers with a status above 399; socket errors are its connect,
  read, write and timeout errors (timeout: ``WRK_TIMEOUT``).
* swap: a fourth server (ledger on, ``serving.poll_seconds`` = ``SWAP_POLL_SECONDS``), started once the others
  have stopped: one ``SWAP_SECONDS`` run at ``SWAP_CONNECTIONS`` connections without a swap, then one during
  which the champion alias moves after ``SWAP_AT`` seconds with ``retrain rollback --to <other> --force`` (the
  CLI, invoked in this process as the tests invoke it), while ``/version`` is polled until it names the new
  version. Failed requests: non-2xx + socket errors of that run; the longest pause: its max latency against the
  max latency of the run without a swap.

Self-checks (a RuntimeError): ``wrk`` missing; a server that does not come up; the servers answering one body
with different predictions (checked once per body before any timing); answers with the ledger off that carry
prediction ids, or with it on that carry none; any non-2xx answer in a run where none is expected (every run but
the swap run, on either side: a baseline that answers errors fast is no baseline); a run that completed no
request; a ledger-on server whose predictions table holds fewer rows, after it stopped (and so flushed), than
it answered; a swap not seen before its run ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from bench.workload import free_port, project_with_champion, scratch, write_batch

GOAL = 2.0  # at least this many times MLflow's throughput, at no more than its p99
TRAIN_ROWS = 5000
ROWS = (1, 100)
CONNECTIONS = (1, 8, 32)
THREADS = 2
SECONDS = 8
QUICK_SECONDS = 3
WARMUP_SECONDS = 2
WRK_TIMEOUT = "10s"
SWAP_CONNECTIONS = 8
SWAP_ROWS = 1
SWAP_SECONDS = 10
QUICK_SWAP_SECONDS = 6
SWAP_AT = 3.0
SWAP_POLL_SECONDS = 0.5
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
SERVERS = ("retrain", "retrain, ledger off", "mlflow")

_MARK = "WRK_JSON "
_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open([==[%(body)s]==], "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "connect": %%d, "read": %%d, "write": %%d, '
    .. '"timeout": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass
class WrkRun:
    """wrk's summary of one run; latencies in milliseconds."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_seconds: float = 0.0  # user + system time of the server's processes during the run

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        """Server CPU per answered request: steadier than throughput on a machine that is not quiet."""
        return self.cpu_seconds * 1000 / self.requests

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors

    def describe(self) -> str:
        return f"{self.throughput:,.0f} req/s, p99 {self.p99_ms:.1f} ms"


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    log: Path
    answered_rows: int = 0  # rows of every answer wrk counted or the checks received (ledger bookkeeping)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError(
            "the serving benchmark needs wrk, the HTTP load generator: install the Debian package `wrk` "
            "(apt-get install wrk) and run it again"
        )
    return found


def _lua_script(directory: Path, rows: int, body: bytes) -> Path:
    """The wrk script posting ``body`` (kept in a file beside it: a JSON body holds ``]]``, which ends a Lua string)."""
    body_path = directory / f"body-{rows}.json"
    body_path.write_bytes(body)
    script = directory / f"post-{rows}.lua"
    script.write_text(_SCRIPT % {"body": body_path, "mark": _MARK})
    return script


def _wrk_command(url: str, script: Path, connections: int, seconds: float) -> list[str]:
    threads = min(THREADS, connections)
    return [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(script),
        f"{url}/invocations",
    ]


def _wrk_result(command: list[str], returncode: int, stdout: str, stderr: str) -> WrkRun:
    line = next((line for line in stdout.splitlines() if line.startswith(_MARK)), None)
    if returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(command)} exited {returncode} without its summary:\n{stdout}\n{stderr}")
    summary = json.loads(line[len(_MARK) :])
    run = WrkRun(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        non_2xx=summary["non_2xx"],
        socket_errors=sum(summary[kind] for kind in ("connect", "read", "write", "timeout")),
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
    )
    if run.requests == 0:
        raise RuntimeError(f"{' '.join(command)} completed no request:\n{stdout}")
    return run


def wrk(server: Server, script: Path, rows: int, connections: int, seconds: float) -> WrkRun:
    """One wrk run against ``server``; any non-2xx answer is an error (none is expected outside the swap)."""
    command = _wrk_command(server.url, script, connections, seconds)
    before = cpu_seconds(server.process.pid)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    run = _wrk_result(command, done.returncode, done.stdout, done.stderr)
    run.cpu_seconds = cpu_seconds(server.process.pid) - before
    server.answered_rows += run.requests * rows
    if run.non_2xx:
        raise RuntimeError(
            f"{server.name}: {run.non_2xx} of {run.requests} answers were not 2xx ({rows} rows, {connections} "
            f"connections); its log:\n{_tail(server.log)}"
        )
    return run


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the live processes of process group ``group`` (a server and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()  # after the command name, which may hold spaces
            if int(fields[2]) == group:  # fields: state, ppid, pgrp, ...; utime and stime are the 12th and 13th
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def post(server: Server, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{server.name} answered {exc.code}: {exc.read()[:2000]!r}") from None


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def start_server(name: str, command: list[str], env: dict[str, str], log: Path, port: int) -> Server:
    """``command`` in a process group of its own, its output in ``log``; not waited for (see :func:`wait_up`)."""
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def wait_up(server: Server) -> None:
    """Until ``GET /ping`` answers 200 (both servers answer it once the model is loaded)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} did not come up (exit status {server.process.poll()}):\n{_tail(server.log)}"
            )
        time.sleep(0.2)


def stop_server(server: Server) -> None:
    """SIGTERM to its process group (`retrain serve` flushes its ledger on the way out), SIGKILL to what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


@contextlib.contextmanager
def servers(*started: Server) -> Iterator[tuple[Server, ...]]:
    """The servers, each up, stopped afterwards (also on errors)."""
    try:
        for server in started:
            wait_up(server)
        yield started
    finally:
        for server in started:
            stop_server(server)


def _environment(**extra: str) -> dict[str, str]:
    """This environment without the variables that would point a process at another project, the venv's
    scripts first on PATH (MLflow starts ``uvicorn`` by name), plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DAGSTER_HOME", "RETRAIN_CONFIG", "RETRAIN_CRASH_AT") and not key.startswith("MLFLOW_")
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return {**env, **extra}


def _variant(config_path: Path, name: str, **serving: Any) -> Path:
    """A copy of ``config_path`` beside it (same storage home) with ``serving`` keys changed."""
    import yaml

    raw = yaml.safe_load(config_path.read_text())
    raw["serving"] = {**(raw.get("serving") or {}), **serving}
    path = config_path.with_name(f"retrain-{name}.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _retrain_serve(name: str, config_path: Path, directory: Path) -> Server:
    port = free_port()
    command = [str(Path(sys.executable).with_name("retrain")), "--config", str(config_path), "serve"]
    return start_server(name, [*command, "--port", str(port)], _environment(), directory / f"{name}.log", port)


def _mlflow_serve(config: Any, directory: Path) -> Server:
    port = free_port()
    uri = f"models:/{config.mlflow.model_name}@champion"
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri, "--env-manager", "local"]
    env = _environment(
        MLFLOW_TRACKING_URI=config.tracking_uri,
        MLFLOW_REGISTRY_URI=config.tracking_uri,
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true",
    )
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return start_server("mlflow", command, env, directory / "mlflow.log", port)


def _bodies(config: Any, data: Path) -> dict[int, bytes]:
    """``dataframe_split`` bodies of the first ``ROWS`` rows of a batch no version was trained on."""
    import pandas as pd

    frame = pd.read_parquet(write_batch(data, 2, max(ROWS)))[list(config.data.features)]
    return {
        rows: json.dumps(
            {"dataframe_split": json.loads(frame.head(rows).to_json(orient="split", index=False))}
        ).encode()
        for rows in ROWS
    }


def check_answers(ours: Server, unrecorded: Server, mlflow: Server, bodies: dict[int, bytes]) -> None:
    """Every server predicts the same for each body; ids only where the ledger is on (see the module docstring)."""
    for rows, body in bodies.items():
        answers = {server.name: post(server, body) for server in (ours, unrecorded, mlflow)}
        for server in (ours, unrecorded, mlflow):
            server.answered_rows += rows
        predictions = {name: answer.get("predictions") for name, answer in answers.items()}
        if len({json.dumps(p) for p in predictions.values()}) != 1 or len(predictions[ours.name]) != rows:
            raise RuntimeError(f"the servers predict differently for the same {rows}-row body: {predictions}")
        if len(answers[ours.name].get("prediction_ids") or []) != rows or "prediction_ids" in answers[unrecorded.name]:
            raise RuntimeError(
                f"prediction ids with the ledger on / off: {answers[ours.name]} / {answers[unrecorded.name]}"
            )
    health = get(f"{unrecorded.url}/health")
    if health.get("ledger") != "off":
        raise RuntimeError(f"{unrecorded.name}: /health says the ledger is {health.get('ledger')!r}, not 'off'")


def check_ledger(config: Any, expected: int) -> int:
    """The predictions table's rows, once every ledger-on server stopped; at least ``expected``."""
    from retrain_assets.core import delta
    from retrain_assets.core.delta import PREDICTIONS_TABLE

    rows = delta.table_rows(config.table_uri(PREDICTIONS_TABLE))
    if rows < expected:
        raise RuntimeError(f"the predictions table holds {rows:,} rows; the ledger-on servers answered {expected:,}")
    return rows


def compare(
    servers_: dict[str, Server], scripts: dict[int, Path], seconds: float
) -> dict[tuple[int, int], dict[str, WrkRun]]:
    """A warm-up per server and body, then one run per server and configuration, the order rotating."""
    for server in servers_.values():
        for rows, script in scripts.items():
            wrk(server, script, rows, SWAP_CONNECTIONS, WARMUP_SECONDS)
    runs: dict[tuple[int, int], dict[str, WrkRun]] = {}
    names = list(servers_)
    for index, (rows, connections) in enumerate((r, c) for r in ROWS for c in CONNECTIONS):
        order = names[index % len(names) :] + names[: index % len(names)]
        runs[(rows, connections)] = {
            name: wrk(servers_[name], scripts[rows], rows, connections, seconds) for name in order
        }
    return runs


def measure_swap(config_path: Path, directory: Path, script: Path, other: str, seconds: float) -> dict[str, Any]:
    """``steady`` (no swap) and ``swap`` runs, ``seen_after`` (s from the rollback's return to ``/version`` naming
    ``other``), ``rollback_at`` (s into the run) and ``answered_rows``; see the module docstring."""
    from click.testing import CliRunner

    from retrain_assets.app.cli import main

    path = _variant(config_path, "swap", poll_seconds=SWAP_POLL_SECONDS)
    server = _retrain_serve("retrain, swap", path, directory)
    with servers(server):
        wrk(server, script, SWAP_ROWS, SWAP_CONNECTIONS, WARMUP_SECONDS)
        steady = wrk(server, script, SWAP_ROWS, SWAP_CONNECTIONS, seconds)
        command = _wrk_command(server.url, script, SWAP_CONNECTIONS, seconds)
        # wrk prints its few lines only at the end: nothing needs reading while the alias moves
        before = cpu_seconds(server.process.pid)
        load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            started = time.monotonic()
            time.sleep(SWAP_AT)
            arguments = ["--config", str(config_path), "rollback", "--to", other, "--force", "--reason", "bench swap"]
            moved = CliRunner().invoke(main, arguments, catch_exceptions=False)
            if moved.exit_code != 0:
                raise RuntimeError(f"retrain rollback --to {other} exited {moved.exit_code}: {moved.output}")
            rolled = time.monotonic()
            seen: Optional[float] = None
            while seen is None and time.monotonic() - started < seconds:
                champion = get(f"{server.url}/version")["champion"] or {}
                if champion.get("version") == other:
                    seen = time.monotonic() - rolled
                else:
                    time.sleep(0.05)
            out, err = load.communicate(timeout=seconds + 120)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        swap = _wrk_result(command, load.returncode, out, err)
        swap.cpu_seconds = cpu_seconds(server.process.pid) - before
        server.answered_rows += swap.requests * SWAP_ROWS
        if seen is None:
            raise RuntimeError(
                f"{server.name}: still not serving v{other} at the end of the swap run:\n{_tail(server.log)}"
            )
    return {
        "steady": steady,
        "swap": swap,
        "seen_after": seen,
        "rollback_at": rolled - started,
        "answered_rows": server.answered_rows,
    }


def _registered(config: Any) -> tuple[str, str]:
    """The champion's version and another registered one."""
    from retrain_assets.core.registry import Registry

    registry = Registry(config)
    champion = registry.by_alias("champion")
    versions = sorted(str(v.version) for v in registry.client.search_model_versions(f"name='{registry.name}'"))
    others = [version for version in versions if champion is None or version != str(champion.version)]
    if champion is None or not others:
        raise RuntimeError(f"the set-up registered versions {versions} with champion {champion}: need two")
    return str(champion.version), others[-1]


def measure(data: Path, quick: bool = False) -> dict[str, Any]:
    """``runs``: ``{(rows, connections): {server name: WrkRun}}`` for :data:`SERVERS`; ``swap``: see
    :func:`measure_swap`; ``setup_seconds``, ``versions`` (champion, other), ``ledger_rows`` and ``seconds``
    (the wrk run length)."""
    from retrain_assets.app.execution import ingest
    from retrain_assets.app.ticking import tick

    wrk_binary()
    seconds = QUICK_SECONDS if quick else SECONDS
    with scratch("serving") as directory:
        began = time.perf_counter()
        with project_with_champion(directory / "project", data, rows=TRAIN_ROWS) as (config_path, config, instance):
            ingest(config, instance, write_batch(data, 1, TRAIN_ROWS))
            second = tick(config_path, instance)
            if not any(launch.outcome and launch.outcome.success for launch in second.launches):
                raise RuntimeError(f"the second tick did not register a second version: {second.to_json()}")
        setup = time.perf_counter() - began
        champion, other = _registered(config)
        bodies = _bodies(config, data)
        scripts = {rows: _lua_script(directory, rows, body) for rows, body in bodies.items()}
        unrecorded_path = _variant(config_path, "ledger-off", ledger=False)
        started = [
            _retrain_serve(SERVERS[0], config_path, directory),
            _retrain_serve(SERVERS[1], unrecorded_path, directory),
            _mlflow_serve(config, directory),
        ]
        with servers(*started) as (ours, unrecorded, mlflow):
            check_answers(ours, unrecorded, mlflow, bodies)
            runs = compare({server.name: server for server in (ours, unrecorded, mlflow)}, scripts, seconds)
        swap = measure_swap(
            config_path, directory, scripts[SWAP_ROWS], other, QUICK_SWAP_SECONDS if quick else SWAP_SECONDS
        )
        ledger_rows = check_ledger(config, ours.answered_rows + swap["answered_rows"])
    return {
        "runs": runs,
        "swap": swap,
        "setup_seconds": setup,
        "versions": (champion, other),
        "ledger_rows": ledger_rows,
        "seconds": seconds,
    }
