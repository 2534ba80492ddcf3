"""Landing files in ``raw_data``: read within the input limits, cast to the schema, or refused and quarantined.

Every ingested file becomes exactly one new version of ``raw_data``. A file that cannot be read or cast to
the schema in ``retrain.yaml`` (or is empty, header only, truncated, not UTF-8) is refused whole: nothing is
written, and the file is copied byte for byte into the quarantine folder with a note of why. Every refusal
(also of a path that does not exist, is outside ``storage.landing_dir`` or repeats a landed file) is appended
to ``refusals.jsonl`` under the storage home, which `retrain status` reads. So is a file replayed with an
``--as-of`` landing time that its own events or the table contradict (see :func:`_check_landing_time`). Bad
*values* (nulls, out of range, unknown categories) do land; catching them is the job of the validation checks.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Optional

from retrain_assets.core import statefiles
from retrain_assets.core.delta import (
    LANDED_KEY,
    RAW_TABLE,
    SHA_KEY,
    SOURCE_KEY,
    _is_batch,
    history,
    keep_logs,
    landed_at,
    to_table_schema,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.config import RetrainConfig


READABLE_SUFFIXES = (".csv", ".parquet", ".pq")

logger = logging.getLogger(__name__)


class BatchRefused(ValueError):
    """A batch file was not written to the table; ``quarantined`` is where its intact copy went."""

    def __init__(self, message: str, quarantined: Optional[Path] = None):
        super().__init__(message + (f" (copied intact to {quarantined})" if quarantined else ""))
        self.quarantined = quarantined


@dataclass(frozen=True)
class IngestResult:
    source: str
    version: int
    rows: int


class BeyondLimit(ValueError):
    """A batch file is past an input limit; the message names the file, the limit and its config key."""


@dataclass(frozen=True)
class InputLimits:
    """How big a batch file may be before it is read whole (``None``: no limit). Without limits a small,
    highly compressed Parquet file can expand to tens of millions of rows in memory."""

    max_file_bytes: Optional[int] = None
    max_rows: Optional[int] = None
    max_columns: Optional[int] = None

    @classmethod
    def of(cls, config: "RetrainConfig") -> "InputLimits":
        storage = config.storage
        return cls(storage.max_file_bytes, storage.max_rows, config.data.max_columns)

    def check_size(self, name: str, size: int) -> None:
        """Refuse a file larger than ``storage.max_file_bytes`` (from its size alone: nothing is read)."""
        if self.max_file_bytes is not None and size > self.max_file_bytes:
            raise BeyondLimit(
                f"{name}: {size:,} bytes, more than storage.max_file_bytes ({self.max_file_bytes:,}); not read"
            )

    def check_columns(self, name: str, count: int) -> None:
        if self.max_columns is not None and count > self.max_columns:
            raise BeyondLimit(
                f"{name}: {count:,} columns, more than data.max_columns ({self.max_columns:,}); its data was not read"
            )

    def check_rows(self, name: str, count: int, exact: bool) -> None:
        if self.max_rows is not None and count > self.max_rows:
            rows = f"{count:,}" if exact else f"more than {self.max_rows:,}"
            raise BeyondLimit(
                f"{name}: {rows} rows, more than storage.max_rows ({self.max_rows:,}); "
                + ("its data was not read" if exact else "read no further")
            )


class Unread(ValueError):
    """A batch file refused before any byte of it was read: missing, not a regular file, or outside
    ``storage.landing_dir`` (also when it became so while being opened)."""


# O_NONBLOCK: opening a FIFO does not wait for a writer (it is then refused as not a regular file)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def open_batch(path: Path, landing: Optional[Path] = None) -> BinaryIO:
    """Open the batch file at ``path`` once, for everything read from it after (size, hash, parse,
    quarantine copy): a name checked and then opened again can by then name another file.

    With ``landing`` (``storage.landing_dir``), ``path`` must resolve inside it; the resolved path is opened
    without following a symlink at its end (``O_NOFOLLOW``), and the opened descriptor's own location
    (:func:`_opened_at`) must be inside too. So a file, or a folder on its way, swapped for a symlink to
    something outside between the check and the open is refused unread. Where the system cannot say where a
    descriptor lives (neither ``/proc/self/fd`` nor ``F_GETPATH``), only the last component is guarded.

    Raises:
        Unread: naming ``path`` and why.
    """
    target, flags = path, _OPEN_FLAGS
    if landing is not None:
        target = path.resolve()
        if not target.is_relative_to(landing):
            raise Unread(f"{path}: outside the landing folder {landing} (it resolves to {target})")
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(target, flags)
    except FileNotFoundError:
        raise Unread(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and landing is not None:
            raise Unread(f"{path}: changed while being opened (now a symlink to {path.resolve()}); not read") from None
        raise Unread(f"{path}: cannot be opened: {exc.strerror or exc}") from None
    handle = os.fdopen(descriptor, "rb")
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise Unread(f"{path}: not a regular file")
        where = _opened_at(descriptor) if landing is not None else None
        if landing is not None and where is not None and not where.is_relative_to(landing):
            raise Unread(
                f"{path}: changed while being opened: the file opened is {where}, outside the landing "
                f"folder {landing}; not read"
            )
    except BaseException:
        handle.close()
        raise
    return handle


def _opened_at(descriptor: int) -> Optional[Path]:
    """Where the file open as ``descriptor`` lives, as the kernel knows it (Linux ``/proc/self/fd``, macOS
    ``F_GETPATH``), whatever names led there; ``None`` where neither exists."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        pass
    getpath = getattr(fcntl, "F_GETPATH", None) if fcntl is not None else None
    if getpath is None:
        return None
    return Path(os.fsdecode(fcntl.fcntl(descriptor, getpath, bytes(1024)).rstrip(b"\0")))


def read_batch_file(path: Path, limits: InputLimits = InputLimits()) -> "pd.DataFrame":
    """Read a CSV or Parquet file into pandas (one open, :func:`open_batch`); raise ``ValueError`` naming the
    file when it cannot be read or is beyond ``limits`` (see :func:`read_batch_from`)."""
    _suffix(path.name)
    with open_batch(path) as handle:
        return read_batch_from(path.name, handle, limits)


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise ValueError(f"{name}: unsupported file type {suffix!r} (expected CSV or Parquet)")
    return suffix


def read_batch_from(name: str, handle: BinaryIO, limits: InputLimits = InputLimits()) -> "pd.DataFrame":
    """Read the CSV or Parquet file open as ``handle`` (named ``name``) into pandas; raise ``ValueError``
    naming the file when it cannot be read or is beyond ``limits``: the size and, for Parquet, the row and
    column counts of its footer are checked before any data is read; a CSV's header is read first and its
    rows only up to the limit (plus one). Every read is from ``handle``, never by name."""
    suffix = _suffix(name)
    size = os.fstat(handle.fileno()).st_size
    if size == 0:
        raise ValueError(f"{name}: empty file (0 bytes)")
    limits.check_size(name, size)
    try:
        handle.seek(0)
        frame = _read_csv(name, handle, limits) if suffix == ".csv" else _read_parquet(name, handle, limits)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(name, handle)) from None
    except BeyondLimit:
        raise
    except Exception as exc:  # any parser error means the same thing to the user: unreadable
        raise ValueError(f"{name}: cannot be read as {suffix[1:].upper()}: {exc}") from exc
    short = _short_last_row(handle, size) if suffix == ".csv" else None
    if short is not None:
        raise ValueError(f"{name}: truncated: {short}")
    return frame


def _read_parquet(name: str, handle: BinaryIO, limits: InputLimits) -> "pd.DataFrame":
    """The footer's column and row counts against the limits, then the data."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(handle) as parquet:  # does not close ``handle``
        limits.check_columns(name, len(parquet.schema_arrow))
        limits.check_rows(name, parquet.metadata.num_rows, exact=True)
        return parquet.read().to_pandas()


def _read_csv(name: str, handle: BinaryIO, limits: InputLimits) -> "pd.DataFrame":
    """The header's width against the column limit, then at most ``max_rows + 1`` rows: one more than the
    limit shows the file is beyond it, without reading the rest."""
    import pandas as pd

    if limits.max_columns is not None:
        try:
            limits.check_columns(name, len(pd.read_csv(handle, nrows=0).columns))
        except pd.errors.EmptyDataError:
            pass  # no header: the read below says so
        handle.seek(0)
    frame = pd.read_csv(handle, nrows=None if limits.max_rows is None else limits.max_rows + 1)
    limits.check_rows(name, len(frame), exact=False)
    return frame


def _not_utf8(name: str, handle: BinaryIO) -> str:
    """Where a CSV stops being UTF-8: the byte, its line and, past the header, its column."""
    handle.seek(0)
    data = handle.read()
    try:
        data.decode("utf-8")
        return f"{name}: not UTF-8 text"
    except UnicodeDecodeError as exc:
        start = exc.start
    line = data.count(b"\n", 0, start) + 1
    where = f"{name}: not UTF-8 text: byte 0x{data[start]:02x} on line {line}"
    if line == 1:
        return where
    header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]))
    before = data[data.rfind(b"\n", 0, start) + 1 : start].decode("utf-8", "replace")
    index = len(next(csv.reader([before]))) - 1 if before else 0
    return where + (f", column {header[index]!r}" if index < len(header) else "")


def _short_last_row(handle: BinaryIO, size: int) -> Optional[str]:
    """Why a CSV looks cut off mid-write (no final newline and a last row with fewer fields than the
    header), else ``None``. Reads only the first line and the last 64 KiB."""
    handle.seek(0)
    header = handle.readline()
    handle.seek(max(0, size - (1 << 16)))
    tail = handle.read()
    if tail.endswith(b"\n") or b"\n" not in tail:
        return None
    last = tail.rsplit(b"\n", 1)[1]
    width = [len(next(csv.reader([line.decode("utf-8", "replace")]))) for line in (header, last)]
    return f"the last row has {width[1]} of {width[0]} fields" if width[1] < width[0] else None


def refuse(
    config: "RetrainConfig", path: Path, reason: str, keep: bool, source: Optional[BinaryIO] = None
) -> BatchRefused:
    """Record a refusal in ``refusals.jsonl`` (and, when ``keep``, quarantine the file, copied from
    ``source`` when it is open already); the error to raise."""
    ensure_home(config)
    kept = None
    if keep:
        try:
            kept = quarantine(path, reason, config.quarantine_dir, source)
        except OSError as exc:  # a full disk or an unwritable folder must not lose the refusal itself
            reason += f" (not quarantined: {type(exc).__name__}: {exc.strerror or exc})"
    entry = {
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "file": str(path.absolute()),
        "reason": reason,
        "quarantined": str(kept) if kept else None,
    }
    statefiles.append_line(config.refusals_log, entry)
    return BatchRefused(reason, kept)


def read_refusals(config: "RetrainConfig", limit: int = 10) -> statefiles.JsonLines:
    """The newest ``limit`` refusals, oldest first, and how many lines were skipped as torn or corrupt (the
    log is append-only: a crash mid-write can leave a partial last line); `retrain status` says so."""
    return statefiles.read_jsonl(config.refusals_log, limit)


def recent_refusals(config: "RetrainConfig", limit: int = 10) -> list[dict]:
    """:func:`read_refusals`' records; skipped lines are logged as a warning."""
    read = read_refusals(config, limit)
    warning = read.warning(config.refusals_log)
    if warning:
        logger.warning(warning)
    return read.records


_MAX_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, APFS and NTFS (in bytes or UTF-16 units: bytes is stricter)
_REASON_SUFFIX = ".reason.txt"


def quarantine(path: Path, reason: str, quarantine_dir: Path, source: Optional[BinaryIO] = None) -> Path:
    """Copy a refused file byte for byte into quarantine, with a ``.reason.txt`` beside it; from ``source``
    (the descriptor everything else was read from, keeping its times) when given, else from ``path``. The
    copy is named ``<UTC time>-<file name>``; a name too long for the file system with the reason's suffix
    has its stem cut and a hash of the whole name added (:func:`_quarantine_name`). The note is written
    first, so a copy never lies there without its reason."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = quarantine_dir / _quarantine_name(stamp, path.name)
    note = target.with_name(target.name + _REASON_SUFFIX)
    renamed = target.name != f"{stamp}-{path.name}"
    note.write_text((f"original name: {path.name}\n" if renamed else "") + reason + "\n", errors="backslashreplace")
    try:
        if source is None:
            shutil.copy2(path, target)
        else:
            source.seek(0)
            with open(target, "xb") as out:
                shutil.copyfileobj(source, out)
            times = os.fstat(source.fileno())
            os.utime(target, ns=(times.st_atime_ns, times.st_mtime_ns))
    except BaseException:
        note.unlink(missing_ok=True)
        raise
    return target


def _quarantine_name(stamp: str, name: str) -> str:
    """``<stamp>-<name>``, or, when that plus ``.reason.txt`` exceeds 255 bytes, the stamp, the start of the
    stem cut at a character boundary, 12 hex digits of the name's SHA-256 and the suffix (cut too if long)."""
    whole = f"{stamp}-{name}"
    budget = _MAX_NAME_BYTES - len(_REASON_SUFFIX)
    if len(os.fsencode(whole)) <= budget:
        return whole
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    stem, dot, suffix = name.rpartition(".")
    suffix = ("." + suffix if dot and stem else "")[:16]
    stem = stem if dot and stem else name
    room = budget - len(os.fsencode(f"{stamp}--{digest}{suffix}"))
    cut = os.fsencode(stem)[:room].decode("utf-8", "ignore")  # at a character boundary (non-UTF-8 bytes dropped)
    return f"{stamp}-{cut}-{digest}{suffix}"


def file_sha256(handle: BinaryIO) -> str:
    """The SHA-256 of the whole file open as ``handle``: what tells a file landed before."""
    digest = hashlib.sha256()
    handle.seek(0)
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def cast_batch_file(config: "RetrainConfig", path: Path) -> "pa.Table":
    """A file read within the input limits and cast to ``data.columns``, as it would land (what `retrain
    ingest` and `retrain validate` share); raises ``ValueError`` naming the file for what cannot land."""
    _suffix(path.name)
    with open_batch(path) as handle:
        return cast_batch(config, path.name, handle)


def cast_batch(config: "RetrainConfig", name: str, handle: BinaryIO) -> "pa.Table":
    """:func:`cast_batch_file` of a file already open as ``handle``; values that do not cast are quoted in
    the error only where validation would show them (``validation.withheld_because``)."""
    from retrain_assets.core.validation import withheld_because

    frame = read_batch_from(name, handle, InputLimits.of(config))
    table = to_table_schema(frame, config.data.columns, name, lambda column: withheld_because(config, column))
    check_cardinality(table, config, name)
    return table


def check_cardinality(table: "pa.Table", config: "RetrainConfig", source: str) -> None:
    """Raise ``ValueError`` when a category column holds more distinct values than
    ``data.max_category_values``: most likely an id or free text declared a category, which one-hot
    encoding and the drift profile would turn into one column or bucket per value."""
    import pyarrow.compute as pc

    limit = config.data.max_category_values
    if limit is None:
        return
    wide = {}
    for name, kind in config.data.columns.items():
        if kind == "category":
            count = pc.count_distinct(table[name], mode="only_valid").as_py()
            if count > limit:
                wide[name] = count
    if wide:
        listed = ", ".join(f"{name!r} has {count:,}" for name, count in wide.items())
        raise ValueError(
            f"{source}: too many distinct values in category columns: {listed}, more than "
            f"data.max_category_values ({limit:,}); declare such a column string or list it in "
            "data.ignore, or raise the limit"
        )


def ingest_file(
    config: "RetrainConfig",
    path: Path,
    landed_at: Optional[dt.datetime] = None,
    metadata: Optional[dict[str, str]] = None,
) -> IngestResult:
    """Append one file to ``raw_data`` as one new Delta version; refuse (and quarantine) what cannot land.

    ``landed_at`` replays history: it is recorded in the commit as the time the batch became available,
    which is what "the table as of date D" means for backfills (default: the commit time itself).
    ``metadata`` goes into the commit too: what a batch made from labelled predictions covered. The file
    is opened once (:func:`open_batch`, which also enforces ``storage.landing_dir``): its size, hash, rows
    and quarantine copy all come from that one descriptor."""
    ensure_home(config)
    try:
        handle = open_batch(path, config.landing_dir)
    except Unread as exc:  # not hashed, nor copied into quarantine: left where it is
        raise refuse(config, path, str(exc), keep=False) from None
    with handle:
        return _land(config, path, handle, landed_at, metadata or {})


def _land(
    config: "RetrainConfig", path: Path, handle: BinaryIO, landed_at: Optional[dt.datetime], extra: dict[str, str]
) -> IngestResult:
    """:func:`ingest_file` of the file open as ``handle``."""
    from deltalake import CommitProperties, write_deltalake

    uri = config.table_uri(RAW_TABLE)
    try:
        InputLimits.of(config).check_size(path.name, os.fstat(handle.fileno()).st_size)
    except BeyondLimit as exc:  # not hashed, nor copied into quarantine: left where it is
        raise refuse(config, path, str(exc), keep=False) from None
    sha = file_sha256(handle)
    known = LandedFiles.read(config)
    known.refresh(config)
    landed = known.sha256.get(sha)
    if landed is not None:
        reason = f"{path.name}: identical content already landed as raw_data version {landed}"
        raise refuse(config, path, reason + _revalidate_hint(config, landed), keep=False)
    try:
        table = cast_batch(config, path.name, handle)
        if landed_at is not None:
            _check_landing_time(config, path.name, table, landed_at.astimezone(dt.timezone.utc), known.latest)
        metadata = {**extra, SOURCE_KEY: path.name, SHA_KEY: sha}
        if landed_at is not None:
            metadata[LANDED_KEY] = landed_at.astimezone(dt.timezone.utc).isoformat()
        write_deltalake(
            uri,
            table,
            mode="append",
            commit_properties=CommitProperties(custom_metadata=metadata),
            post_commithook_properties=keep_logs(),
        )
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{path.name}: write to {uri} failed: {exc}"
        raise refuse(config, path, reason, keep=True, source=handle) from exc
    # not latest_version(): another writer may have committed since ours
    version = next(entry["version"] for entry in reversed(known.refresh(config)) if entry.get(SHA_KEY) == sha)
    return IngestResult(source=path.name, version=version, rows=table.num_rows)


INDEX_FILE = "landed_files.json"


@dataclass
class LandedFiles:
    """What the ``raw_data`` commits up to ``version`` say about the files landed: the version each sha256
    first landed as (a file landed again is refused), and the batch that landed latest (an ``--as-of`` must not
    go back before it). Kept in ``<home>/landed_files.json`` so that a landing reads only the commits from
    ``version`` on, not the whole log (every commit is a file read, and a checkpoint spares none of them). The
    Delta log stays the record: the index is rebuilt from the whole log when it is missing or unreadable, or
    when commit ``version`` is not the one it took in (``committed_at``: a lake made anew)."""

    version: int = -1
    committed_at: Optional[int] = None  # commit ``version``'s timestamp (ms)
    sha256: dict[str, int] = field(default_factory=dict)
    latest: Optional[dict] = None  # {"version", "landed_at" (ISO), "source"}

    @classmethod
    def read(cls, config: "RetrainConfig") -> "LandedFiles":
        """The kept index, or an empty one when there is none or it cannot be read."""
        state, _ = statefiles.read_json(config.home / INDEX_FILE)
        try:
            index = cls(**state) if state is not None else cls()
        except TypeError:  # not an index this release wrote
            return cls()
        return index if isinstance(index.version, int) and isinstance(index.sha256, dict) else cls()

    def refresh(self, config: "RetrainConfig") -> list[dict]:
        """Take in the commits after ``version`` (all of them when commit ``version`` is not the one taken in)
        and keep the index; returns those commits, oldest first."""
        uri = config.table_uri(RAW_TABLE)
        entries = history(uri, after=self.version - 1)  # from commit ``version`` itself, to tell it is the same
        if self.version >= 0:
            if entries[:1] and (entries[0]["version"], entries[0]["timestamp"]) == (self.version, self.committed_at):
                entries = entries[1:]
            else:  # another table at that place, or none
                self.version, self.committed_at, self.sha256, self.latest = -1, None, {}, None
                entries = history(uri)
        for entry in entries:
            if SHA_KEY in entry:
                self.sha256.setdefault(entry[SHA_KEY], entry["version"])
            if _is_batch(entry) and (self.latest is None or landed_at(entry) > _landed(self.latest)):
                source = entry.get(SOURCE_KEY, "not written by retrain ingest")
                self.latest = {"version": entry["version"], "landed_at": landed_at(entry).isoformat(), "source": source}
            self.version, self.committed_at = entry["version"], entry["timestamp"]
        if entries:
            ensure_home(config)
            statefiles.write_atomic(config.home / INDEX_FILE, json.dumps(asdict(self)))
        return entries


def _landed(batch: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(batch["landed_at"])


def ensure_home(config: "RetrainConfig") -> Path:
    """Create the storage home (``storage.home``) readable by its owner only (0700) if it does not exist
    yet, and return it. It holds customer data (the lake, quarantined files, refusals), models and logs, and
    under the usual umask 022 a folder made by ``mkdir -p`` is world-readable. A home that exists already
    keeps its mode: an operator may have opened it up on purpose (tighten it with ``chmod 700``)."""
    home = config.home
    if home.is_dir():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        home.mkdir(mode=0o700)
    except FileExistsError:
        return home
    os.chmod(home, 0o700)  # mkdir's mode is masked by the umask (an odd one could take the owner's bits)
    return home


def _check_landing_time(
    config: "RetrainConfig", source: str, table: "pa.Table", as_of: dt.datetime, latest: Optional[dict]
) -> None:
    """Raise ``ValueError`` for an ``--as-of`` the batch or the table contradicts: in the future (beyond the
    clock-skew tolerance), which would make every later landing go backwards; before the batch's own newest
    event (beyond validation's clock-skew tolerance), which validation would reject for good at the next run;
    or before the batch in ``raw_data`` that landed latest (``latest``, see :class:`LandedFiles`), which would
    make "the table as of a time" go back."""
    import pyarrow.compute as pc

    from retrain_assets.core.validation import FUTURE_TOLERANCE

    now = dt.datetime.now(dt.timezone.utc)
    if as_of > now + FUTURE_TOLERANCE:
        raise ValueError(
            f"{source}: --as-of {_utc(as_of)} is in the future (now {_utc(now)}): a batch lands when it "
            "arrives; replaying history takes past times only"
        )
    column = config.data.timestamp
    newest = pc.max(table[column]).as_py() if column is not None else None
    if newest is not None and as_of + FUTURE_TOLERANCE < newest:
        raise ValueError(
            f"{source}: --as-of {_utc(as_of)} is {_hours(newest - as_of)} before the batch's own newest {column!r} "
            f"value {_utc(newest)}, more than the {_hours(FUTURE_TOLERANCE)} of clock skew allowed: a batch cannot "
            "land before its events; give the time it really landed"
        )
    if latest is not None and as_of < _landed(latest):
        raise ValueError(
            f"{source}: --as-of {_utc(as_of)} is before raw_data version {latest['version']} "
            f"({latest['source']}) landed, at {_utc(_landed(latest))}: "
            "landing times must not go backwards, or the table as of a time would change after the fact"
        )


def _revalidate_hint(config: "RetrainConfig", version: int) -> str:
    """For a file that repeats a rejected batch: how to bring that batch back without landing it twice."""
    from retrain_assets.core.batches import verdicts

    if verdicts(config).get(version) is False:
        return f" and rejected; after fixing the rules, `retrain revalidate {version}` judges it again"
    return ""


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(span: dt.timedelta) -> str:
    return f"{span / dt.timedelta(hours=1):.4g} h"
