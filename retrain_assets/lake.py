"""Delta Lake tables of a project: landing batches in ``raw_data`` and reading any version back.

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
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from retrain_assets import statefiles

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from retrain_assets.config import ColumnType, RetrainConfig

RAW_TABLE = "raw_data"
FEATURES_TABLE = "validated_features"
VALIDATION_LOG_TABLE = "validation_log"
RAW_VERSION_COLUMN = "_raw_version"
SOURCE_KEY = "retrain.source_file"
SHA_KEY = "retrain.source_sha256"
LANDED_KEY = "retrain.landed_at"
READABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}

logger = logging.getLogger(__name__)


class BatchRefused(ValueError):
    """A batch file was not written to the table; ``quarantined`` is where its intact copy went."""

    def __init__(self, message: str, quarantined: Optional[Path] = None):
        super().__init__(message + (f" (copied intact to {quarantined})" if quarantined else ""))
        self.quarantined = quarantined


@dataclass(frozen=True)
class TableRef:
    """A Delta table pinned at a version; ``raw_version`` is the ``raw_data`` version its content reflects."""

    uri: str
    version: int
    raw_version: int


@dataclass(frozen=True)
class IngestResult:
    source: str
    version: int
    rows: int


def arrow_type(kind: "ColumnType") -> "pa.DataType":
    import pyarrow as pa

    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "category": pa.string(),
        "string": pa.string(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


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

    def check_size(self, path: Path) -> None:
        """Refuse a file larger than ``storage.max_file_bytes`` (from its size alone: nothing is read)."""
        size = path.stat().st_size
        if self.max_file_bytes is not None and size > self.max_file_bytes:
            raise BeyondLimit(f"{path.name}: {size:,} bytes, more than storage.max_file_bytes "
                              f"({self.max_file_bytes:,}); not read")

    def check_columns(self, path: Path, count: int) -> None:
        if self.max_columns is not None and count > self.max_columns:
            raise BeyondLimit(f"{path.name}: {count:,} columns, more than data.max_columns ({self.max_columns:,}); "
                              "its data was not read")

    def check_rows(self, path: Path, count: int, exact: bool) -> None:
        if self.max_rows is not None and count > self.max_rows:
            rows = f"{count:,}" if exact else f"more than {self.max_rows:,}"
            raise BeyondLimit(f"{path.name}: {rows} rows, more than storage.max_rows ({self.max_rows:,}); "
                              + ("its data was not read" if exact else "read no further"))


def read_batch_file(path: Path, limits: InputLimits = InputLimits()) -> "pd.DataFrame":
    """Read a CSV or Parquet file into pandas; raise ``ValueError`` naming the file when it cannot be read
    or is beyond ``limits``: the size and, for Parquet, the row and column counts of its footer are checked
    before any data is read; a CSV's header is read first and its rows only up to the limit (plus one)."""
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r} (expected CSV or Parquet)")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name}: empty file (0 bytes)")
    limits.check_size(path)
    try:
        frame = _read_csv(path, limits) if suffix == ".csv" else _read_parquet(path, limits)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    except BeyondLimit:
        raise
    except Exception as exc:  # any parser error means the same thing to the user: unreadable
        raise ValueError(f"{path.name}: cannot be read as {suffix[1:].upper()}: {exc}") from exc
    short = _short_last_row(path) if suffix == ".csv" else None
    if short is not None:
        raise ValueError(f"{path.name}: truncated: {short}")
    return frame


def _read_parquet(path: Path, limits: InputLimits) -> "pd.DataFrame":
    """The footer's column and row counts against the limits, then the data."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        limits.check_columns(path, len(parquet.schema_arrow))
        limits.check_rows(path, parquet.metadata.num_rows, exact=True)
        return parquet.read().to_pandas()


def _read_csv(path: Path, limits: InputLimits) -> "pd.DataFrame":
    """The header's width against the column limit, then at most ``max_rows + 1`` rows: one more than the
    limit shows the file is beyond it, without reading the rest."""
    import pandas as pd

    if limits.max_columns is not None:
        try:
            limits.check_columns(path, len(pd.read_csv(path, nrows=0).columns))
        except pd.errors.EmptyDataError:
            pass  # no header: the read below says so
    frame = pd.read_csv(path, nrows=None if limits.max_rows is None else limits.max_rows + 1)
    limits.check_rows(path, len(frame), exact=False)
    return frame


def _not_utf8(path: Path) -> str:
    """Where a CSV stops being UTF-8: the byte, its line and, past the header, its column."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return f"{path.name}: not UTF-8 text"
    except UnicodeDecodeError as exc:
        start = exc.start
    line = data.count(b"\n", 0, start) + 1
    where = f"{path.name}: not UTF-8 text: byte 0x{data[start]:02x} on line {line}"
    if line == 1:
        return where
    header = next(csv.reader([data.split(b"\n", 1)[0].decode("utf-8", "replace")]))
    before = data[data.rfind(b"\n", 0, start) + 1 : start].decode("utf-8", "replace")
    index = len(next(csv.reader([before]))) - 1 if before else 0
    return where + (f", column {header[index]!r}" if index < len(header) else "")


def _short_last_row(path: Path) -> Optional[str]:
    """Why a CSV looks cut off mid-write (no final newline and a last row with fewer fields than the
    header), else ``None``. Reads only the first line and the last 64 KiB."""
    with path.open("rb") as handle:
        header = handle.readline()
        handle.seek(max(0, path.stat().st_size - (1 << 16)))
        tail = handle.read()
    if tail.endswith(b"\n") or b"\n" not in tail:
        return None
    last = tail.rsplit(b"\n", 1)[1]
    width = [len(next(csv.reader([line.decode("utf-8", "replace")]))) for line in (header, last)]
    return f"the last row has {width[1]} of {width[0]} fields" if width[1] < width[0] else None


def _cast_column(values: "pd.Series", kind: "ColumnType") -> "pd.Series":
    """Cast one column to its declared type; values that do not convert become ``<NA>`` (detected by caller)."""
    import pandas as pd

    if kind in ("int", "float"):
        numbers = pd.to_numeric(values, errors="coerce")
        if kind == "int":  # inf and magnitudes beyond int64 do not convert either
            whole = numbers.isna() | ((numbers == numbers.round()) & (numbers.abs() < 2.0**63))
            return numbers.where(whole).astype("Int64")
        return numbers.astype("float64")
    if kind in ("category", "string"):
        return values.astype("string")
    if kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean")
        text = values.astype("string").str.strip().str.lower()
        return text.map(lambda v: True if v in _TRUE else False if v in _FALSE else pd.NA).astype("boolean")
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return stamps.dt.as_unit("us")


def to_table_schema(frame: "pd.DataFrame", columns: dict[str, "ColumnType"], source: str) -> "pa.Table":
    """Cast a batch to the configured schema, or raise ``ValueError`` naming every offending column."""
    import pyarrow as pa

    if len(frame) == 0:
        raise ValueError(f"{source}: no rows (only a header)")
    missing = [name for name in columns if name not in frame.columns]
    unknown = [name for name in frame.columns if name not in columns]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if unknown:
        problems.append(f"columns not in data.columns of retrain.yaml {unknown}")
    arrays = {}
    for name, kind in columns.items():
        if name in missing:
            continue
        cast = _cast_column(frame[name], kind)
        broken = cast.isna() & frame[name].notna()
        if broken.any():
            sample = frame[name][broken].head(3).tolist()
            problems.append(f"column {name!r} cannot be cast to {kind}: {int(broken.sum())} values, e.g. {sample}")
            continue
        arrays[name] = pa.array(cast, type=arrow_type(kind), from_pandas=True)
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return pa.table(arrays)


def refuse(config: "RetrainConfig", path: Path, reason: str, keep: bool) -> BatchRefused:
    """Record a refusal in ``refusals.jsonl`` (and, when ``keep``, quarantine the file); the error to raise."""
    kept = None
    if keep:
        try:
            kept = quarantine(path, reason, config.quarantine_dir)
        except OSError as exc:  # a full disk or an unwritable folder must not lose the refusal itself
            reason += f" (not quarantined: {type(exc).__name__}: {exc.strerror or exc})"
    entry = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "file": str(path.absolute()),
             "reason": reason, "quarantined": str(kept) if kept else None}
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


def quarantine(path: Path, reason: str, quarantine_dir: Path) -> Path:
    """Copy a refused file byte for byte into quarantine, with a ``.reason.txt`` beside it. The copy is
    named ``<UTC time>-<file name>``; a name too long for the file system with the reason's suffix has its
    stem cut and a hash of the whole name added (:func:`_quarantine_name`). The note is written first, so
    a copy never lies there without its reason."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = quarantine_dir / _quarantine_name(stamp, path.name)
    note = target.with_name(target.name + _REASON_SUFFIX)
    renamed = target.name != f"{stamp}-{path.name}"
    note.write_text((f"original name: {path.name}\n" if renamed else "") + reason + "\n", errors="backslashreplace")
    try:
        shutil.copy2(path, target)
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cast_batch_file(config: "RetrainConfig", path: Path) -> "pa.Table":
    """A file read within the input limits and cast to ``data.columns``, as it would land (what `retrain
    ingest` and `retrain validate` share); raises ``ValueError`` naming the file for what cannot land."""
    table = to_table_schema(read_batch_file(path, InputLimits.of(config)), config.data.columns, path.name)
    check_cardinality(table, config, path.name)
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
        raise ValueError(f"{source}: too many distinct values in category columns: {listed}, more than "
                         f"data.max_category_values ({limit:,}); declare such a column string or list it in "
                         "data.ignore, or raise the limit")


def ingest_file(config: "RetrainConfig", path: Path, landed_at: Optional[dt.datetime] = None) -> IngestResult:
    """Append one file to ``raw_data`` as one new Delta version; refuse (and quarantine) what cannot land.

    ``landed_at`` replays history: it is recorded in the commit as the time the batch became available,
    which is what "the table as of date D" means for backfills (default: the commit time itself)."""
    from deltalake import CommitProperties, write_deltalake

    uri = config.table_uri(RAW_TABLE)
    landing = config.landing_dir
    if landing is not None and not path.resolve().is_relative_to(landing):
        reason = f"{path}: outside the landing folder {landing} (it resolves to {path.resolve()})"
        raise refuse(config, path, reason, keep=False)
    if not path.is_file():
        raise refuse(config, path, f"{path}: no such file", keep=False)
    try:
        InputLimits.of(config).check_size(path)
    except BeyondLimit as exc:  # not hashed, nor copied into quarantine: left where it is
        raise refuse(config, path, str(exc), keep=False) from None
    sha = _sha256(path)
    entries = history(uri)
    landed = next((entry["version"] for entry in entries if entry.get(SHA_KEY) == sha), None)
    if landed is not None:
        reason = f"{path.name}: identical content already landed as raw_data version {landed}"
        raise refuse(config, path, reason + _revalidate_hint(config, landed), keep=False)
    try:
        table = cast_batch_file(config, path)
        if landed_at is not None:
            _check_landing_time(config, path.name, table, landed_at.astimezone(dt.timezone.utc), entries)
        metadata = {SOURCE_KEY: path.name, SHA_KEY: sha}
        if landed_at is not None:
            metadata[LANDED_KEY] = landed_at.astimezone(dt.timezone.utc).isoformat()
        write_deltalake(uri, table, mode="append", commit_properties=CommitProperties(custom_metadata=metadata))
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{path.name}: write to {uri} failed: {exc}"
        raise refuse(config, path, reason, keep=True) from exc
    # not latest_version(): another writer may have committed since ours
    version = next(entry["version"] for entry in reversed(history(uri)) if entry.get(SHA_KEY) == sha)
    return IngestResult(source=path.name, version=version, rows=table.num_rows)


def _check_landing_time(
    config: "RetrainConfig", source: str, table: "pa.Table", as_of: dt.datetime, entries: list[dict]
) -> None:
    """Raise ``ValueError`` for an ``--as-of`` the batch or the table contradicts: in the future (beyond the
    clock-skew tolerance), which would make every later landing go backwards; before the batch's own newest
    event (beyond validation's clock-skew tolerance), which validation would reject for good at the next run;
    or before the newest batch in ``raw_data`` landed, which would make "the table as of a time" go back."""
    import pyarrow.compute as pc

    from retrain_assets.validation import FUTURE_TOLERANCE

    now = dt.datetime.now(dt.timezone.utc)
    if as_of > now + FUTURE_TOLERANCE:
        raise ValueError(f"{source}: --as-of {_utc(as_of)} is in the future (now {_utc(now)}): a batch lands when it "
                         "arrives; replaying history takes past times only")
    column = config.data.timestamp
    newest = pc.max(table[column]).as_py() if column is not None else None
    if newest is not None and as_of + FUTURE_TOLERANCE < newest:
        raise ValueError(
            f"{source}: --as-of {_utc(as_of)} is {_hours(newest - as_of)} before the batch's own newest {column!r} "
            f"value {_utc(newest)}, more than the {_hours(FUTURE_TOLERANCE)} of clock skew allowed: a batch cannot "
            "land before its events; give the time it really landed"
        )
    batches = [entry for entry in entries if _is_batch(entry)]
    latest = max(batches, key=landed_at, default=None)
    if latest is not None and as_of < landed_at(latest):
        raise ValueError(
            f"{source}: --as-of {_utc(as_of)} is before raw_data version {latest['version']} "
            f"({latest.get(SOURCE_KEY, 'not written by retrain ingest')}) landed, at {_utc(landed_at(latest))}: "
            "landing times must not go backwards, or the table as of a time would change after the fact"
        )


def _revalidate_hint(config: "RetrainConfig", version: int) -> str:
    """For a file that repeats a rejected batch: how to bring that batch back without landing it twice."""
    from retrain_assets.batches import verdicts

    if verdicts(config).get(version) is False:
        return f" and rejected; after fixing the rules, `retrain revalidate {version}` judges it again"
    return ""


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(span: dt.timedelta) -> str:
    return f"{span / dt.timedelta(hours=1):.4g} h"


def latest_version(uri: str) -> Optional[int]:
    """Current version of the table at ``uri``, or ``None`` when no table exists there yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    return DeltaTable(uri).version()


def history(uri: str) -> list[dict]:
    """Commit log entries (oldest first), each with its ``version`` and custom metadata; empty if no table.

    delta-rs numbers history entries down from the version it loaded, yet also reads commits that land
    while it reads, which shifts every number. So the log is read again until no commit landed meanwhile.
    """
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return []
    while True:
        table = DeltaTable(uri)
        entries = table.history()
        if DeltaTable(uri).version() == table.version():
            return sorted(entries, key=lambda entry: entry["version"])


def landed_at(entry: dict) -> dt.datetime:
    """When a version's batch became available: the recorded landing time, else the commit time."""
    if LANDED_KEY in entry:
        return dt.datetime.fromisoformat(entry[LANDED_KEY])
    return dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc)


def version_as_of(uri: str, moment: dt.datetime) -> Optional[int]:
    """The newest version whose batch had landed by ``moment`` (``None`` if none had)."""
    landed = [entry["version"] for entry in history(uri) if landed_at(entry) <= moment]
    return max(landed) if landed else None


def batch_versions(uri: str, after: Optional[int], upto: int) -> list[int]:
    """Versions in ``(after, upto]`` that appended rows (a batch); compactions and other rewrites are not."""
    return [entry["version"] for entry in batch_commits(uri, after, upto)]


def batch_commits(uri: str, after: Optional[int], upto: int) -> list[dict]:
    """The commit log entries of :func:`batch_versions`, oldest first (one read of the log)."""
    start = -1 if after is None else after
    return [entry for entry in history(uri) if start < entry["version"] <= upto and _is_batch(entry)]


def _is_batch(entry: dict) -> bool:
    """Whether a commit appended rows: a batch (a compaction or another rewrite is not)."""
    return (
        entry.get("operation") == "WRITE"
        and entry.get("operationParameters", {}).get("mode") != "Overwrite"
        and entry.get("operationMetrics", {}).get("num_added_rows", 0) > 0
    )


def read_table(
    uri: str,
    version: Optional[int] = None,
    columns: Optional[list[str]] = None,
    where: "Optional[pc.Expression]" = None,
) -> "pd.DataFrame":
    """The whole table as of ``version`` (latest when ``None``), Delta time travel; with ``where`` only the rows
    it keeps, filtered in the scan (files and row groups whose statistics rule them out are not read)."""
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version)
    if where is None:
        return table.to_pyarrow_table(columns=columns).to_pandas()
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=where).to_pandas()


def newest_value(uri: str, version: Optional[int], column: str) -> "Optional[pa.Scalar]":
    """The largest value of ``column`` as of ``version`` (``None``: no value). The Delta log's file statistics
    narrow the scan to the rows at or above the newest file maximum (less a millisecond: timestamps are kept
    there to the millisecond), so only ``column`` of the newest rows is read; without statistics, the column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version)
    actions = pa.table(table.get_add_actions(flatten=True))
    where = None
    high, nulls = f"max.{column}", f"null_count.{column}"
    if {high, nulls} <= set(actions.column_names):
        stats = actions.select(["num_records", nulls, high]).to_pylist()
        if all(row[high] is not None or row[nulls] == row["num_records"] for row in stats):  # every file has stats
            known = [row[high] for row in stats if row[high] is not None]
            if not known:
                return None  # every value null, or no rows
            floor = max(known)
            if isinstance(floor, dt.datetime):
                floor -= dt.timedelta(milliseconds=1)
            where = ds.field(column) >= floor
    newest = pc.max(table.to_pyarrow_dataset().to_table(columns=[column], filter=where)[column])
    return newest if newest.is_valid else None


def read_batch(uri: str, version: int) -> "pa.Table":
    """Only the rows that ``version`` appended (the data files it added), so cost follows the batch size."""
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    current = DeltaTable(uri, version=version)
    before = {Path(path).name for path in DeltaTable(uri, version=version - 1).file_uris()} if version > 0 else set()
    added = {Path(path).name for path in current.file_uris()} - before
    dataset = current.to_pyarrow_dataset()
    fragments = [fragment for fragment in dataset.get_fragments() if Path(fragment.path).name in added]
    return ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table()


def read_newest_files(uri: str, key: str, below: int, files: int, columns: list[str]) -> "pd.DataFrame":
    """Rows of the ``files`` data files with the highest ``max(key)`` among those holding a ``key`` below
    ``below``: chosen from the file statistics in the Delta log, so only those files are read."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    stats = pa.table(table.get_add_actions(flatten=True)).select(["path", f"min.{key}", f"max.{key}"]).to_pandas()
    newest = stats[stats[f"min.{key}"] < below].nlargest(files, f"max.{key}")
    chosen = {Path(path).name for path in newest["path"]}
    dataset = table.to_pyarrow_dataset()
    fragments = [fragment for fragment in dataset.get_fragments() if Path(fragment.path).name in chosen]
    chosen_files = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return chosen_files.to_table(columns=columns).to_pandas()


def table_summary(uri: str, version: Optional[int] = None) -> Optional[dict]:
    """``{"uri", "version", "rows", "files"}`` of the table as of ``version``; ``None`` if it does not exist."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    table = DeltaTable(uri, version=version)
    actions = table.get_add_actions(flatten=True)
    rows = int(sum(actions.column("num_records").to_pylist())) if actions.num_rows else 0
    return {"uri": uri, "version": table.version(), "rows": rows, "files": actions.num_rows}


def table_rows(uri: str, version: Optional[int] = None) -> int:
    """Rows of the table at ``uri`` as of ``version`` (see :func:`table_summary`); raises if there is none."""
    summary = table_summary(uri, version)
    if summary is None:
        raise FileNotFoundError(f"no Delta table at {uri}")
    return summary["rows"]


def append(uri: str, table: "pa.Table", metadata: Optional[dict[str, str]] = None, merge_schema: bool = False) -> int:
    """Append an Arrow table as one new version (``metadata`` goes into the commit) and return the version.
    ``merge_schema`` adds columns the table does not have yet (tables written by an older release)."""
    from deltalake import CommitProperties, write_deltalake

    write_deltalake(uri, table, mode="append", commit_properties=CommitProperties(custom_metadata=metadata or {}),
                    schema_mode="merge" if merge_schema else None)
    version = latest_version(uri)
    if version is None:
        raise RuntimeError(f"{uri}: no Delta table after appending to it")
    return version
