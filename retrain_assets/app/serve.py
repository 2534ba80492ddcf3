"""`retrain serve`: the champion over HTTP, with a prediction ledger and a hot swap when the alias moves.

Endpoints, MLflow's scoring protocol first, so a client written for ``mlflow models serve`` works unchanged:

- ``POST /invocations``: a body of :mod:`retrain_assets.core.payloads` → ``{"predictions": [...],
  "probabilities": [{class: p}, ...] (classifiers), "prediction_ids": [...], "model": ..., "model_version": ...}``;
- ``POST /v2/models/{name}/infer``: the Open Inference Protocol v2, one input tensor per column;
- ``GET /ping`` (200 once a champion is loaded), ``GET /health`` (model, ledger, lake, watcher), ``GET /version``.

Choices, and why:

- **Batching.** Requests that queue while a batch is being scored are scored together in the next one
  ``predict`` and journaled with one fsync: under concurrency that is most of the cost of a request. The
  batcher waits up to ``serving.batch_wait_ms`` for more only while other requests are still being read or
  parsed, so a lone request never waits for company that is not coming.
- **Hot swap.** A watcher thread asks the registry every ``serving.poll_seconds`` where the champion (and, with
  ``serving.shadow``, the challenger) alias points. A new version is loaded and smoke-tested beside the one
  serving, then put in place by one reference assignment; a batch takes its model when it starts, so requests
  in flight finish on the model they started with. A version that does not load or score is refused: the old one
  goes on serving, the refusal is logged and alerted (``champion_unloadable``), and that version is not tried
  again until the alias moves.
- **Ledger.** Every answered row is in the journal before the answer (:mod:`retrain_assets.core.ledger`); the
  Delta table gets them in micro-batches, and an unreachable lake only shows in ``/health``. With
  ``serving.ledger: false`` (only to measure what it costs) nothing is recorded and answers carry no ids.
- **Shadow.** With ``serving.shadow: true`` the challenger scores each batch after the answer has gone; its
  rows go to the ledger marked ``shadow`` and are never returned.
- **A frozen heap.** `retrain serve` moves what is alive after each swap out of the collector's sight
  (:func:`freeze_heap`). Without it, a full collection of the libraries' and models' objects paused the event
  loop for 100-200 ms under load: at 1-row, 8 connections the p99 was 115-156 ms in most runs, and 35-40 ms
  with the freeze (p50 27 ms either way).
- **Refusals.** A bad request gets a 4xx in MLflow's error shape (``{"error_code", "message"}``) naming the field;
  a body over ``serving.max_body_bytes`` is refused before it is read whole. Nothing of a refused request reaches
  the ledger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from fastapi import FastAPI, Request  # module level: FastAPI resolves the endpoints' annotations here

if TYPE_CHECKING:
    import pandas as pd

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.ledger import PredictionLedger
    from retrain_assets.core.registry import Registry
    from retrain_assets.core.serving import Scored, ServedModel

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MAX_BATCH_ROWS = 10_000  # rows scored in one predict; a larger single request is scored alone


@dataclass
class Slots:
    """The versions being served, by alias, and what the watcher last saw or refused."""

    models: dict[str, "ServedModel"] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # alias -> "version: why", until the alias moves
    watcher_error: Optional[str] = None
    last_poll: Optional[float] = None
    swaps: int = 0


class Watcher:
    """Polls the registry and swaps in the version each alias points at (see the module docstring)."""

    def __init__(
        self,
        config: "RetrainConfig",
        registry: "Registry",
        slots: Slots,
        aliases: tuple[str, ...],
        freeze: bool = False,
    ):
        self.config, self.registry, self.slots, self.aliases = config, registry, slots, aliases
        self.freeze = freeze  # freeze_heap() after a swap
        self._stop = threading.Event()
        self._poll_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retrain-serve-watcher", daemon=True)

    def start(self) -> None:
        self.poll()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poll_now.set()
        self._thread.join(timeout=30)

    def wake(self) -> None:
        """Poll now, not at the next interval (a registry webhook says an alias moved)."""
        self._poll_now.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll_now.wait(self.config.serving.poll_seconds)
            self._poll_now.clear()
            if not self._stop.is_set():
                self.poll()

    def poll(self) -> None:
        """Load and swap in every alias that moved; a failure leaves what serves as it was."""
        from retrain_assets.core import serving

        swapped = False
        for alias in self.aliases:
            try:
                target = self.registry.by_alias(alias)
            except Exception as exc:  # the registry is down: go on serving what is loaded
                self.slots.watcher_error = f"registry: {type(exc).__name__}: {exc}"
                logger.warning("retrain serve: cannot read the %s alias: %s", alias, exc)
                return
            current = self.slots.models.get(alias)
            wanted = None if target is None else str(target.version)
            if wanted is None or (current is not None and str(current.version) == wanted):
                self.slots.refused.pop(alias, None)
                continue
            if self.slots.refused.get(alias, "").startswith(f"{wanted}:"):
                continue
            try:
                loaded = serving.load(self.config, self.registry, alias)
            except serving.ModelUnservable as exc:
                self._refuse(alias, wanted, str(exc), current)
                continue
            if loaded is not None:
                self.slots.models[alias] = loaded  # the swap: one reference assignment
                self.slots.refused.pop(alias, None)
                self.slots.swaps += 1
                swapped = True
                was = "nothing" if current is None else f"v{current.version}"
                logger.warning("retrain serve: %s is now v%s (was %s)", alias, loaded.version, was)
        if swapped and self.freeze:
            freeze_heap()
        self.slots.watcher_error = None
        self.slots.last_poll = time.time()

    def _refuse(self, alias: str, version: str, why: str, current: Optional["ServedModel"]) -> None:
        from retrain_assets.core.alerts import send_alert

        self.slots.refused[alias] = f"{version}: {why}"
        keeps = "nothing is served yet" if current is None else f"v{current.version} goes on serving"
        logger.error("retrain serve: refused %s; %s", why, keeps)
        if alias == CHAMPION:
            send_alert(
                self.config, "champion_unloadable", f"retrain serve refused {why}; {keeps}", {"version": version}
            )


def freeze_heap() -> None:
    """Collect, then put every object alive in the collector's permanent generation (``gc.freeze``), so the
    libraries and models loaded are not scanned again. Otherwise a full collection of that heap stops the
    event loop for 100-200 ms under load. It is unfrozen first, so a replaced model's cycles are still
    collected."""
    import gc

    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class _Pending:
    frame: "pd.DataFrame"
    request_id: str
    arrived: float
    future: "asyncio.Future[tuple[ServedModel, Scored, Optional[list[str]]]]"


class Batcher:
    """Scores the requests that arrive within ``wait`` seconds of each other in one ``predict``, journals
    their rows in one ledger call, then answers each (see the module docstring)."""

    def __init__(
        self,
        config: "RetrainConfig",
        slots: Slots,
        ledger: Optional["PredictionLedger"],
        wait: float,
        clock: Callable[[], dt.datetime],
    ):
        self.config, self.slots, self.ledger, self.wait, self.clock = config, slots, ledger, wait, clock
        self._queue: "asyncio.Queue[_Pending]" = asyncio.Queue()
        self.arriving = 0  # requests being read or parsed: worth waiting for (see the module docstring)
        self._task: Optional[asyncio.Task] = None
        self._shadow_tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)

    async def score(
        self, frame: "pd.DataFrame", request_id: str
    ) -> tuple["ServedModel", "Scored", Optional[list[str]]]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(frame, request_id, time.perf_counter(), future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0].frame)
            deadline = time.perf_counter() + self.wait
            while rows < MAX_BATCH_ROWS:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.perf_counter()
                    if not self.arriving or left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                batch.append(item)
                rows += len(item.frame)
            model = self.slots.models.get(CHAMPION)  # taken once: the whole batch is answered by this version
            if model is None:
                for item in batch:
                    item.future.set_exception(NoChampion())
                continue
            try:
                scored, ids = await asyncio.to_thread(self._score_and_journal, model, batch)
            except Exception as exc:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, answer, prediction_ids in zip(batch, scored, ids, strict=True):
                if not item.future.done():
                    item.future.set_result((model, answer, prediction_ids))
            challenger = self.slots.models.get(CHALLENGER)
            if self.config.serving.shadow and challenger is not None and challenger.version != model.version:
                task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._shadow, challenger, batch))
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)

    def _score_and_journal(
        self, model: "ServedModel", batch: list[_Pending]
    ) -> tuple[list["Scored"], list[Optional[list[str]]]]:
        """Score the batch as one frame, split the answer per request and journal every row (one fsync); without
        a ledger there is nothing to journal and no prediction ids."""
        import pyarrow as pa

        from retrain_assets.core.serving import ledger_rows

        scored = self._score_split(model, batch)
        if self.ledger is None:
            return scored, [None] * len(batch)
        served_at = self.clock()
        done = time.perf_counter()
        tables = [
            ledger_rows(model, item.frame, answer, item.request_id, served_at, (done - item.arrived) * 1000)
            for item, answer in zip(batch, scored, strict=True)
        ]
        self.ledger.record(pa.concat_tables(tables))
        return scored, [table.column("prediction_id").to_pylist() for table in tables]

    def _score_split(self, model: "ServedModel", batch: list[_Pending]) -> list["Scored"]:
        import pandas as pd

        from retrain_assets.core.serving import Scored, score

        frames = [item.frame for item in batch]
        whole = score(model, frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True), self.config)
        answers, start = [], 0
        for frame in frames:
            end = start + len(frame)
            probabilities = None if whole.probabilities is None else whole.probabilities[start:end]
            answers.append(Scored(whole.predictions[start:end], probabilities, whole.scores[start:end]))
            start = end
        return answers

    def _shadow(self, challenger: "ServedModel", batch: list[_Pending]) -> None:
        """The challenger's answers for a batch already answered, journaled as shadow rows; a failure is logged
        and costs the champion's answers nothing."""
        import pyarrow as pa

        from retrain_assets.core.serving import ledger_rows

        assert self.ledger is not None  # serving.shadow needs serving.ledger (ServingConfig)
        started = time.perf_counter()
        try:
            scored = self._score_split(challenger, batch)
            served_at = self.clock()
            latency = (time.perf_counter() - started) * 1000
            tables = [
                ledger_rows(challenger, item.frame, answer, item.request_id, served_at, latency, shadow=True)
                for item, answer in zip(batch, scored, strict=True)
            ]
            self.ledger.record(pa.concat_tables(tables))
        except Exception as exc:
            logger.warning("retrain serve: shadow scoring by v%s failed: %s", challenger.version, exc)


class NoChampion(RuntimeError):
    """No champion is loaded yet (none registered, or the one registered was refused)."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def build_app(
    config: "RetrainConfig",
    registry: "Registry",
    ledger: Optional["PredictionLedger"],
    clock: Callable[[], dt.datetime] = utc_now,
    freeze: bool = False,
) -> "FastAPI":
    """The FastAPI app; starting it (its lifespan) starts the watcher, the ledger (``None``: serving.ledger is
    off) and the batcher. ``clock`` stamps the ledger's ``served_at``: the wall clock, except where recorded
    traffic is replayed as of its own day (``retrain demo``, as ``retrain ingest --as-of`` replays batches).
    ``freeze``: :func:`freeze_heap` after each swap, for a process that only serves (`retrain serve`)."""
    import contextlib

    from fastapi.responses import JSONResponse, PlainTextResponse

    from retrain_assets.core.payloads import PayloadError, parse, parse_v2

    slots = Slots()
    aliases = (CHAMPION, CHALLENGER) if config.serving.shadow else (CHAMPION,)
    watcher = Watcher(config, registry, slots, aliases, freeze)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if ledger is not None:
            ledger.start()
        await asyncio.to_thread(watcher.start)
        batcher = Batcher(config, slots, ledger, config.serving.batch_wait_ms / 1000, clock)
        batcher.start()
        state["batcher"] = batcher
        try:
            yield
        finally:
            await batcher.stop()
            await asyncio.to_thread(watcher.stop)
            if ledger is not None:
                await asyncio.to_thread(ledger.close)

    app = FastAPI(title=f"retrain serve: {registry.name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.slots, app.state.watcher = slots, watcher

    def refusal(status: int, message: str, code: str = "BAD_REQUEST") -> JSONResponse:
        return JSONResponse({"error_code": code, "message": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        limit = config.serving.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadError(f"body of {int(declared):,} bytes; serving.max_body_bytes is {limit:,}", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadError(f"body over serving.max_body_bytes ({limit:,} bytes)", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def answer(request: Request, v2: bool):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        batcher: Batcher = state["batcher"]
        try:
            batcher.arriving += 1
            try:
                body = await read_body(request)
                frame = parse_v2(body, config) if v2 else parse(body, request.headers.get("content-type"), config)
            finally:
                batcher.arriving -= 1
            model, scored, ids = await batcher.score(frame, request_id)
        except PayloadError as exc:
            return refusal(exc.status, str(exc))
        except NoChampion:
            return refusal(503, _no_champion(slots), "TEMPORARILY_UNAVAILABLE")
        except Exception as exc:  # the user's features code or the model raised on these rows
            logger.warning("retrain serve: request %s failed: %s", request_id, exc)
            return refusal(422, f"the model could not score these rows: {type(exc).__name__}: {exc}")
        if v2:
            return _v2_response(model, scored, ids, request_id)
        content: dict[str, Any] = {"predictions": scored.predictions}
        if scored.probabilities is not None:
            content["probabilities"] = scored.probabilities
        if ids is not None:
            content["prediction_ids"] = ids
        content.update({"request_id": request_id, "model": model.name, "model_version": str(model.version)})
        return JSONResponse(content)

    @app.post("/invocations")
    async def invocations(request: Request):
        return await answer(request, v2=False)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if name != registry.name:
            return refusal(404, f"model {name!r}: this server serves {registry.name!r}", "RESOURCE_DOES_NOT_EXIST")
        return await answer(request, v2=True)

    @app.get("/v2/models/{name}")
    async def v2_metadata(name: str):
        model = slots.models.get(CHAMPION)
        if name != registry.name or model is None:
            return refusal(404, f"model {name!r} is not served here", "RESOURCE_DOES_NOT_EXIST")
        inputs = [{"name": column, "datatype": _V2_TYPES[kind]} for column, kind in config.data.features.items()]
        return {"name": model.name, "versions": [str(model.version)], "platform": "sklearn", "inputs": inputs}

    @app.get("/ping")
    async def ping():
        if CHAMPION not in slots.models:
            return PlainTextResponse(_no_champion(slots), status_code=503)
        return PlainTextResponse("\n")

    @app.get("/version")
    async def version():
        model = slots.models.get(CHAMPION)
        return {"champion": None if model is None else model.describe()}

    @app.get("/health")
    async def health():
        model = slots.models.get(CHAMPION)
        ledger_health = None if ledger is None else ledger.health()
        served = {alias: served.describe() for alias, served in slots.models.items()}
        unreachable = ledger_health is not None and ledger_health["lake"] == "unreachable"
        status = "degraded" if unreachable else "ok"  # serving, journaling either way
        if model is None:
            status = "no_champion"
        return {
            "status": status,
            "models": served,
            "refused": slots.refused,
            "registry": slots.watcher_error or "ok",
            "last_poll": None
            if slots.last_poll is None
            else dt.datetime.fromtimestamp(slots.last_poll, dt.timezone.utc),
            "swaps": slots.swaps,
            "ledger": "off" if ledger_health is None else ledger_health,
        }

    @app.post("/webhooks/registry")
    async def registry_webhook():
        """An MLflow registry webhook (an alias moved): poll now instead of at the next interval. The body is not
        trusted: the poll reads the registry itself."""
        watcher.wake()
        return {"polling": True}

    return app


_V2_TYPES = {
    "int": "INT64",
    "float": "FP64",
    "bool": "BOOL",
    "category": "BYTES",
    "string": "BYTES",
    "timestamp": "BYTES",
}


def _v2_response(model: "ServedModel", scored: "Scored", ids: Optional[list[str]], request_id: str) -> dict[str, Any]:
    rows = len(scored.predictions)
    kind = "FP64" if all(isinstance(p, float) for p in scored.predictions) else "BYTES"
    outputs: list[dict[str, Any]] = [
        {"name": "predictions", "shape": [rows], "datatype": kind, "data": scored.predictions}
    ]
    if ids is not None:
        outputs.append({"name": "prediction_ids", "shape": [rows], "datatype": "BYTES", "data": ids})
    if scored.probabilities is not None:
        classes = list(scored.probabilities[0]) if scored.probabilities else []
        flat = [row[label] for row in scored.probabilities for label in classes]
        outputs.append({"name": "probabilities", "shape": [rows, len(classes)], "datatype": "FP64", "data": flat})
        outputs.append({"name": "classes", "shape": [len(classes)], "datatype": "BYTES", "data": classes})
    return {"model_name": model.name, "model_version": str(model.version), "id": request_id, "outputs": outputs}


def _no_champion(slots: Slots) -> str:
    refused = slots.refused.get(CHAMPION)
    return f"no champion is served: refused v{refused}" if refused else "no champion is served yet: none is registered"


def ledger_for(config: "RetrainConfig") -> Optional["PredictionLedger"]:
    """The prediction ledger ``serving`` asks for, or ``None`` with ``serving.ledger: false``."""
    from retrain_assets.core.delta import PREDICTIONS_TABLE
    from retrain_assets.core.ledger import PredictionLedger

    serving = config.serving
    if not serving.ledger:
        return None
    return PredictionLedger(
        config.table_uri(PREDICTIONS_TABLE), config.journal_dir, serving.flush_rows, serving.flush_seconds
    )


def serve(config: "RetrainConfig", host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; the ledger is flushed on the way out."""
    import uvicorn

    from retrain_assets.app.instance import quiet_mlflow
    from retrain_assets.core.registry import Registry

    quiet_mlflow()
    app = build_app(config, Registry(config), ledger_for(config), freeze=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class BackgroundServer:
    """`retrain serve` in a thread of this process, on a free port of 127.0.0.1, for as long as the ``with``
    block: what ``retrain demo`` sends its day of traffic to (with its own ``clock``). Leaving the block stops
    uvicorn as SIGTERM would: the batcher, the watcher and the ledger's last flush."""

    def __init__(self, config: "RetrainConfig", clock: Callable[[], dt.datetime] = utc_now):
        import socket

        import uvicorn

        from retrain_assets.core.registry import Registry

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        app = build_app(config, Registry(config), ledger_for(config), clock)
        settings = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(settings)
        self._thread = threading.Thread(target=self._server.run, name="retrain-serve", daemon=True)

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"retrain serve did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
