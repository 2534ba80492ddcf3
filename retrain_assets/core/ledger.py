"""The prediction ledger: every row the server answers is journaled on local disk before the answer, then
appended to the ``predictions`` Delta table in micro-batches.

Choices, and why:

- **One fixed schema** (:data:`PREDICTIONS_SCHEMA`). A row's features, prediction and probabilities are JSON
  strings, as Databricks inference tables keep request and response, so a model with other columns changes
  no table schema. ``score`` is what prediction drift is computed on: the positive-class probability of a
  binary classifier, the predicted value of a regression, else null.
- **Journal before the answer.** :meth:`PredictionLedger.record` appends one frame per call (``<crc32>
  <length>`` in hex, a newline, then the rows as an Arrow IPC stream of the table's schema) to the current
  segment file and fsyncs before it returns; callers that arrive during an fsync share the next one. Arrow,
  not a JSON line per row: the rows are columns already (:func:`retrain_assets.core.serving.ledger_rows`), so
  journaling costs a copy, not an encoding per row. Rows the table would refuse are refused before anything
  is written, so the journal only ever holds whole rows that can be appended.
- **Micro-batches.** A flusher thread closes the segment once ``flush_rows`` rows wait or its first row has
  waited ``flush_seconds``, and appends each closed segment as one commit naming it (:data:`SEGMENT_KEY`),
  then deletes the file. It appends the rows as journaled, kept in memory (the newest :data:`KEPT_SEGMENTS`
  segments), through one open table (:class:`delta.TableAppender`): the journal is read back only after a
  restart or a long outage. While the lake fails it keeps the segments, retries with backoff and closes
  segments by size only, so an outage drains in about rows / ``flush_rows`` commits, not one per interval.
- **Exactly once, by segment.** Before a segment's first append, the newest table version the ledger has
  seen (never newer than the table) is written beside it (``<segment>.intent``). A later attempt (a retry
  after an error, a replay after a crash between the commit and the file's removal) looks for the segment's
  id in the commits after that version only: exact, costs as many commits as landed since (usually one),
  and a first attempt reads no history. So segment order does not matter either. Rows repeating a
  prediction id within a segment are appended once.
- **Crashes tear only a last frame.** A process appends only to segments it created (the folder is held with
  ``flock``, which the kernel drops when the process dies) and never reopens one, so only a segment's last
  frame can be torn: a crash mid-write, of rows never acknowledged, skipped with a warning. A bad frame
  anywhere else is damage: :meth:`PredictionLedger.start` raises naming file and line and deletes nothing.
  The promise is for acknowledged rows: those of a call that never returned (killed, or a disk error after
  the write) may be appended too.
- **The lake never blocks serving.** :meth:`PredictionLedger.start` checks the journal and returns; the
  flusher appends what an earlier process left, so a slow or unreachable lake delays nothing, and
  :meth:`PredictionLedger.health` says what waits and why. The lake's credentials come from the
  environment, as for every table of the project.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import numbers
import os
import threading
import time
import uuid
import zlib
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc

from retrain_assets.core import delta
from retrain_assets.core.faults import crash_point
from retrain_assets.core.statefiles import _fsync_dir, read_json, write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one process per journal folder is then on you
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SEGMENT_KEY = "retrain.ledger_segment"
PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("prediction_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),  # the row's place in its request: joins shadow to champion
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.int64(), nullable=False),
        pa.field("alias", pa.string(), nullable=False),
        pa.field("shadow", pa.bool_(), nullable=False),
        pa.field("served_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("features", pa.string(), nullable=False),
        pa.field("prediction", pa.string(), nullable=False),
        pa.field("probabilities", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("latency_ms", pa.float64(), nullable=False),
    ]
)
COLUMNS = tuple(PREDICTIONS_SCHEMA.names)
MAX_BACKOFF_SECONDS = 30.0
KEPT_SEGMENTS = 8  # closed segments whose rows stay in memory; later ones are read back from the journal

_TEXT = ("prediction_id", "request_id", "model_name", "alias")
_SEGMENT = ".journal"
_INTENT = ".intent"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class JournalCorrupt(ValueError):
    """A journal line before a segment's last is damaged; the message names file and line."""


class _LakeFailed(RuntimeError):
    """The predictions table could not be read or appended to."""


@dataclass
class _Segment:
    path: Path
    rows: int
    journaled: Optional[list[pa.Table]] = None  # its frames as written, kept so a flush need not read them

    @property
    def id(self) -> str:
        return self.path.name.removesuffix(_SEGMENT)

    @property
    def intent(self) -> Path:
        return self.path.with_suffix(_INTENT)


class PredictionLedger:
    """Journal served rows durably and append them to the Delta table at ``table_uri`` in micro-batches.

    ``start()`` before the first ``record()``; ``close()`` at shutdown. One ledger per journal folder."""

    def __init__(self, table_uri: str, journal_dir: os.PathLike[str] | str, flush_rows: int, flush_seconds: float):
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError(f"flush_rows must be >= 1 and flush_seconds > 0, got {flush_rows}, {flush_seconds}")
        self.table_uri = table_uri
        self._appender = delta.TableAppender(table_uri)
        self.journal_dir = Path(journal_dir)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()  # the current segment and every counter
        self._sync_lock = threading.Lock()  # one fsync at a time; closing a segment holds it too
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._folder: Optional[int] = None
        self._accepting = False
        self._closed: deque[_Segment] = deque()  # closed segments not yet in the table, oldest first
        self._current: Optional[_Segment] = None
        self._descriptor: Optional[int] = None
        self._size = 0
        self._opened_at = 0.0
        self._writes = 0  # record() writes so far, and how many of them an fsync covers
        self._synced = 0
        self._backlog = 0
        self._lake = "unknown"
        self._error: Optional[str] = None
        self._last_flush: Optional[dt.datetime] = None

    def start(self) -> "PredictionLedger":
        """Hold the journal folder, check the segments an earlier process left (:class:`JournalCorrupt` on
        damage) and start the flusher, which appends them first."""
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self._hold_folder()
        try:
            for intent in self.journal_dir.glob(f"*{_INTENT}"):
                if not intent.with_suffix(_SEGMENT).exists():  # removed after its segment: nothing left to do
                    intent.unlink()
            for path in sorted(self.journal_dir.glob(f"*{_SEGMENT}")):
                frames, torn = read_segment(path)
                if torn is not None:
                    logger.warning("%s: skipped frame %d, torn by a crash mid-write (never acknowledged)", path, torn)
                rows = sum(frame.num_rows for frame in frames)
                self._closed.append(_Segment(path, rows))
                self._backlog += rows
        except BaseException:
            self._release_folder()
            raise
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="prediction-ledger", daemon=True)
        self._thread.start()
        return self

    def record(self, rows: "pa.Table | list[dict[str, Any]]") -> None:
        """Journal ``rows`` (written and fsynced) before returning, so the caller may answer: a table of
        :data:`PREDICTIONS_SCHEMA`, or dicts (:func:`_journal_row` says what each field takes).

        Raises ``ValueError`` for a row the table would refuse (nothing of the call is written) and
        ``OSError`` when the journal's disk fails; never because of the lake."""
        table = _checked(rows) if isinstance(rows, pa.Table) else _rows_table(rows)
        if not table.num_rows:
            return
        data = _frame(table)
        with self._lock:
            if not self._accepting:
                raise RuntimeError(f"prediction ledger of {self.journal_dir} is not started, or closed")
            if self._current is None or self._descriptor is None:
                self._open_segment()
            assert self._current is not None and self._descriptor is not None
            try:
                _write_all(self._descriptor, data)
            except OSError:
                os.ftruncate(self._descriptor, self._size)  # no half row stays behind
                raise
            self._size += len(data)
            if self._current.journaled is not None:
                self._current.journaled.append(table)
            waiting = self._current.rows
            self._current.rows += table.num_rows
            self._backlog += table.num_rows
            self._writes += 1
            ticket = self._writes
            if waiting < self.flush_rows <= self._current.rows:
                self._wake.set()
        self._sync(ticket)

    def health(self) -> dict[str, Any]:
        """``lake`` ("ok", "unreachable" or "unknown": nothing appended yet), the last flush ``error``,
        ``backlog_rows`` journaled but not yet in the table, ``pending_segments`` and ``last_flush_at``."""
        with self._lock:
            return {
                "lake": self._lake,
                "error": self._error,
                "backlog_rows": self._backlog,
                "pending_segments": len(self._closed) + (self._current is not None),
                "last_flush_at": self._last_flush.isoformat() if self._last_flush else None,
            }

    def close(self) -> None:
        """Stop taking rows, stop the flusher and append what is journaled; what the lake does not take now
        stays in the journal for the next start."""
        with self._lock:
            self._accepting = False
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        try:
            if not self._flush(rotate=True):
                logger.warning("%s: %d rows stay journaled for the next start", self.journal_dir, self._backlog)
        finally:
            self._release_folder()

    def _hold_folder(self) -> None:
        """Make this the one process journaling in the folder: another one's replay would take our segments."""
        descriptor = os.open(self.journal_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise RuntimeError(f"{self.journal_dir}: another prediction ledger journals here") from None
        self._folder = descriptor

    def _release_folder(self) -> None:
        if self._folder is not None:
            os.close(self._folder)
            self._folder = None

    def _open_segment(self) -> None:
        """Start a new segment file (under ``_lock``); its name is made durable before any row is."""
        path = self.journal_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{_SEGMENT}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _fsync_dir(self.journal_dir)
        self._current, self._descriptor = _Segment(path, 0, []), descriptor
        self._size = 0
        self._opened_at = time.monotonic()
        self._wake.set()  # the flusher learns when this segment is due

    def _sync(self, ticket: int) -> None:
        """fsync the current segment up to write ``ticket``; writes made while one fsync runs share the next."""
        with self._sync_lock:
            if self._synced >= ticket:
                return
            with self._lock:
                descriptor, upto = self._descriptor, self._writes
            assert descriptor is not None  # closing a segment fsyncs it and needs _sync_lock
            os.fsync(descriptor)
            self._synced = upto

    def _rotate(self) -> None:
        """Close the current segment, fsynced, into the queue of segments to append."""
        with self._sync_lock, self._lock:
            if self._current is None or self._descriptor is None:
                return
            os.fsync(self._descriptor)
            os.close(self._descriptor)
            if len(self._closed) >= KEPT_SEGMENTS:  # an outage: the backlog waits on disk, not in memory
                self._current.journaled = None
            self._closed.append(self._current)
            self._current, self._descriptor = None, None
            self._synced = self._writes

    def _due(self) -> bool:
        """Whether the current segment should close: full, or old enough while nothing else waits."""
        with self._lock:
            if self._current is None:
                return False
            if self._current.rows >= self.flush_rows:
                return True
            return not self._closed and time.monotonic() - self._opened_at >= self.flush_seconds

    def _run(self) -> None:
        """The flusher: append segments as they come due; after a failure, retry with doubling waits."""
        failures = 0
        retry_at = 0.0
        while True:
            self._wake.wait(self._seconds_to_wait(retry_at))
            self._wake.clear()
            if self._stop.is_set():
                return
            if time.monotonic() < retry_at or not (self._closed or self._due()):
                continue
            if self._flush(rotate=False):
                failures, retry_at = 0, 0.0
            else:
                failures += 1
                retry_at = time.monotonic() + min(self.flush_seconds * 2**failures, MAX_BACKOFF_SECONDS)

    def _seconds_to_wait(self, retry_at: float) -> Optional[float]:
        """Until the retry, or the current segment is due; ``None``: until woken (a new segment, a full one)."""
        now = time.monotonic()
        if retry_at > now:
            return retry_at - now
        with self._lock:
            if self._closed:
                return 0.0
            if self._current is None:
                return None
            return max(0.0, self._opened_at + self.flush_seconds - now)

    def _flush(self, rotate: bool) -> bool:
        """Close the current segment (always with ``rotate``, else when due) and append every closed one;
        ``False`` when something failed (kept for :meth:`health`, the segments kept for a retry)."""
        try:
            if rotate or self._due():
                self._rotate()
            while True:
                with self._lock:
                    if not self._closed:
                        return True
                    segment = self._closed[0]
                self._append(segment)
                with self._lock:
                    self._closed.popleft()
                    self._backlog -= segment.rows
                    if segment.rows:  # the lake answered
                        self._lake, self._error = "ok", None
                        self._last_flush = dt.datetime.now(dt.timezone.utc)
        except _LakeFailed as exc:
            logger.warning("prediction ledger: %s; rows stay journaled, retrying", exc)
            with self._lock:
                self._lake, self._error = "unreachable", str(exc)
        except Exception as exc:  # the journal itself (damage, disk): reported, and retried like the lake
            logger.exception("prediction ledger: flushing %s failed", self.journal_dir)
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        return False

    def _append(self, segment: _Segment) -> None:
        """Append one closed segment as one commit, unless an earlier attempt did, then delete its files."""
        frames = segment.journaled if segment.journaled is not None else read_segment(segment.path)[0]
        if frames:
            if segment.intent.exists():
                intent, _ = read_json(segment.intent)
                after = int(intent["after_version"]) if intent else -1  # damaged: search the whole log
                with self._lake_call():
                    committed = _committed(self.table_uri, segment.id, after)
            else:
                with self._lake_call():
                    version = self._appender.known_version  # never newer than the table: a safe lower bound
                write_atomic(segment.intent, json.dumps({"after_version": -1 if version is None else version}))
                committed = False
            if not committed:
                with self._lake_call():
                    self._appender.append(_unique(pa.concat_tables(frames)), {SEGMENT_KEY: segment.id})
                crash_point("ledger_committed")
        segment.path.unlink()
        _fsync_dir(self.journal_dir)  # the segment is gone for good before its intent goes
        segment.intent.unlink(missing_ok=True)

    @contextmanager
    def _lake_call(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            raise _LakeFailed(f"{self.table_uri}: {type(exc).__name__}: {exc}") from exc


def read_segment(path: Path) -> tuple[list[pa.Table], Optional[int]]:
    """The frames of a journal segment and the number of its last frame when that frame was torn (skipped).

    Raises :class:`JournalCorrupt` for a bad frame before the last: only damage makes one."""
    data = path.read_bytes()
    frames: list[pa.Table] = []
    position, number = 0, 0
    while position < len(data):
        number += 1
        header = data[position : position + _HEADER]
        start = position + _HEADER
        checksum, length = _header(header)
        end = start + (length if length is not None else 0)
        table = _unframe(data[start:end], checksum) if length is not None and end <= len(data) else None
        if table is None:
            if len(header) < _HEADER or (length is not None and end >= len(data)):
                return frames, number  # the last frame, cut short or damaged at the end: torn
            raise JournalCorrupt(
                f"{path}: frame {number} (byte {position}) is damaged (header, checksum or Arrow data); no row of "
                "this segment was appended. Keep the file, and move it out of the journal folder to let the "
                "ledger start"
            )
        frames.append(table)
        position = end
    return frames, None


def _committed(uri: str, segment_id: str, after: int) -> bool:
    """Whether a commit after version ``after`` names ``segment_id``; only those commits are read."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    while True:
        try:
            table = DeltaTable(uri)
        except TableNotFoundError:  # not a lake that failed to answer: no table, so no commit
            return False
        newer = table.version() - after
        if newer <= 0:
            return False
        entries = table.history(limit=newer)
        if DeltaTable(uri).version() == table.version():  # no commit landed while reading (see delta.history)
            return any(entry.get(SEGMENT_KEY) == segment_id for entry in entries)


def _unique(table: pa.Table) -> pa.Table:
    """``table`` with each prediction id once (its first row)."""
    ids = table.column("prediction_id")
    if pc.count_distinct(ids).as_py() == len(ids):
        return table
    seen: set[str] = set()
    first = [not (value in seen or seen.add(value)) for value in ids.to_pylist()]  # type: ignore[func-returns-value]
    return table.filter(pa.array(first))


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Dict rows as a table of the schema, each checked first (:func:`_journal_row`)."""
    return pa.Table.from_pylist([_journal_row(row, index) for index, row in enumerate(rows)], schema=PREDICTIONS_SCHEMA)


def _checked(table: pa.Table) -> pa.Table:
    """``table`` in the schema's column order and types, or ``ValueError`` naming the column: missing, of a type
    that does not cast safely, or with nulls where the schema takes none."""
    missing = [name for name in COLUMNS if name not in table.column_names]
    unknown = [name for name in table.column_names if name not in COLUMNS]
    if missing or unknown:
        raise ValueError(f"prediction rows: missing columns {missing}, unknown columns {unknown}")
    columns = []
    for field in PREDICTIONS_SCHEMA:
        column = table.column(field.name)
        try:
            column = column if column.type == field.type else column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"prediction rows: {field.name} is {column.type}, not {field.type}: {exc}") from None
        if not field.nullable and column.null_count:
            raise ValueError(f"prediction rows: {field.name} has {column.null_count} nulls")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=PREDICTIONS_SCHEMA)


def _journal_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    """``row`` as its columns hold it (JSON text, ``served_at`` in microseconds since the epoch), or
    ``ValueError`` naming the field: a row the table refuses must not reach the journal, where it would stop
    every later flush. ``probabilities`` and ``score`` may be left out. Values are never quoted."""
    where = f"prediction row {index}"
    missing = [name for name in COLUMNS if name not in row and name not in ("probabilities", "score")]
    unknown = [str(name) for name in row if name not in COLUMNS]
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")

    def refuse(name: str, expected: str) -> ValueError:
        return ValueError(f"{where}: {name} must be {expected}, got {type(row[name]).__name__}")

    out: dict[str, Any] = {}
    for name in _TEXT:
        if not isinstance(row[name], str) or not row[name]:
            raise refuse(name, "a non-empty string")
        out[name] = row[name]
    for name in ("row_index", "model_version"):
        value = row[name]
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise refuse(name, "an integer")
        out[name] = int(value)
    if not isinstance(row["shadow"], bool):
        raise refuse("shadow", "a bool")
    out["shadow"] = row["shadow"]
    served = row["served_at"]
    if not isinstance(served, dt.datetime) or served.utcoffset() is None:
        raise refuse("served_at", "a timezone-aware datetime")
    out["served_at"] = (served - _EPOCH) // dt.timedelta(microseconds=1)
    if not isinstance(row["features"], dict):
        raise refuse("features", "a mapping of column to value")
    out["features"] = _json(row["features"], where, "features")
    out["prediction"] = _json(row["prediction"], where, "prediction")
    probabilities = row.get("probabilities")
    if probabilities is not None and not isinstance(probabilities, dict):
        raise refuse("probabilities", "a mapping of class to probability, or None")
    out["probabilities"] = (
        None
        if probabilities is None
        else _json({str(label): p for label, p in probabilities.items()}, where, "probabilities")
    )
    for name in ("score", "latency_ms"):
        value = row.get(name)
        if value is None and name == "score":
            out[name] = None
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
        else:
            raise refuse(name, "a number" if name == "latency_ms" else "a number or None")
    return out


def _json(value: Any, where: str, name: str) -> str:
    """``value`` as JSON text; numpy scalars and arrays (what a model returns) as plain values."""
    try:
        return _PLAIN_JSON.encode(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {name} is not JSON: {exc}") from None


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_PLAIN_JSON = json.JSONEncoder(default=_plain)  # made once: json.dumps with a keyword makes one per call
_HEADER = 18  # b"<crc32 hex8> <length hex8>\n"


def _frame(table: pa.Table) -> bytes:
    """One journal frame: a header with the body's checksum and length, then the rows as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    return b"%08x %08x\n" % (zlib.crc32(body), len(body)) + body


def _header(header: bytes) -> tuple[int, Optional[int]]:
    """A frame header's checksum and body length; length ``None`` when the header is not whole."""
    try:
        if len(header) == _HEADER and header[8:9] == b" " and header[17:18] == b"\n":
            return int(header[:8], 16), int(header[9:17], 16)
    except ValueError:  # not hex
        pass
    return 0, None


def _unframe(body: bytes, checksum: int) -> Optional[pa.Table]:
    """The rows of one frame's body, or ``None`` when it is not whole (checksum, Arrow, schema)."""
    if zlib.crc32(body) != checksum:
        return None
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, OSError):
        return None
    return table if table.schema.equals(PREDICTIONS_SCHEMA) else None


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write; the loop is for a short write
        view = view[os.write(descriptor, view) :]
