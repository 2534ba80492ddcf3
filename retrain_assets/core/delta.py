"""Delta Lake tables of a project: their names, the schema a batch is cast to, appending, and reading any
version back (the commit log, time travel, the newest files)."""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable, PostCommitHookProperties

    from retrain_assets.core.config import ColumnType

RAW_TABLE = "raw_data"
FEATURES_TABLE = "validated_features"
VALIDATION_LOG_TABLE = "validation_log"
PREDICTIONS_TABLE = "predictions"  # what `retrain serve` answered (core.ledger)
LABELS_TABLE = "labels"  # the ground truth `retrain label` landed (core.labels)
RAW_VERSION_COLUMN = "_raw_version"
SOURCE_KEY = "retrain.source_file"
SHA_KEY = "retrain.source_sha256"
LANDED_KEY = "retrain.landed_at"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class TableRef:
    """A Delta table pinned at a version; ``raw_version`` is the ``raw_data`` version its content reflects."""

    uri: str
    version: int
    raw_version: int


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


def to_table_schema(
    frame: "pd.DataFrame",
    columns: dict[str, "ColumnType"],
    source: str,
    withheld: Callable[[str], Optional[str]] = lambda column: None,
) -> "pa.Table":
    """Cast a batch to the configured schema, or raise ``ValueError`` naming every offending column, with a
    sample of the values that do not cast unless ``withheld(column)`` says why not (the reason goes into
    ``refusals.jsonl``, the quarantine note and `retrain status`: see ``validation.withheld_because``)."""
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
        cast = cast_column(frame[name], kind)
        broken = cast.isna() & frame[name].notna()
        if broken.any():
            why = withheld(name)
            shown = f"sample withheld ({why})" if why is not None else f"e.g. {frame[name][broken].head(3).tolist()}"
            problems.append(f"column {name!r} cannot be cast to {kind}: {int(broken.sum())} values, {shown}")
            continue
        arrays[name] = pa.array(cast, type=arrow_type(kind), from_pandas=True)
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return pa.table(arrays)


def latest_version(uri: str) -> Optional[int]:
    """Current version of the table at ``uri``, or ``None`` when no table exists there yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    return DeltaTable(uri).version()


def exists(uri: str) -> bool:
    """Whether there is a table at ``uri``, without opening it (which lists its whole log)."""
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(uri)


def is_latest(uri: str, version: Optional[int]) -> bool:
    """Whether ``version`` is the newest version of the table at ``uri`` (``None``: whether there is no table),
    without opening the table where that is costly (see :func:`_is_newest_commit`)."""
    if not exists(uri):
        return version is None
    return version is not None and _is_newest_commit(uri, version)


def _is_newest_commit(uri: str, version: int) -> bool:
    """Whether commit ``version`` is the newest in the table's log. In a local lake, from two commit files
    (:func:`commit_file`; the newest is never cleaned up): opening
    the table lists the whole folder, about 0.1 s at 10,000 versions, checkpoints or not. Elsewhere the table
    is opened: an object store lists from the newest checkpoint on."""
    from urllib.parse import urlparse

    where = urlparse(uri)
    if where.scheme not in ("", "file"):
        from deltalake import DeltaTable

        return DeltaTable(uri).version() == version
    folder = Path(where.path if where.scheme else uri)
    return (folder / commit_file(version)).is_file() and not (folder / commit_file(version + 1)).exists()


def commit_file(version: int) -> str:
    """Where the Delta protocol keeps commit ``version``, relative to the table's folder."""
    return f"_delta_log/{version:020d}.json"


def history(uri: str, after: Optional[int] = None) -> list[dict]:
    """Commit log entries (oldest first), each with its ``version`` and custom metadata, of the versions after
    ``after`` (all of them when ``None``); empty if no table. Only those commits are read: a checkpoint does not
    spare ``DeltaTable.history()`` a single commit file, so the whole log costs a read per version.

    delta-rs numbers history entries down from the version it loaded, yet also reads commits that land
    while it reads, which shifts every number. So the log is read again until no commit landed meanwhile.
    """
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return []
    while True:
        table = DeltaTable(uri)
        newer = None if after is None else table.version() - after
        if newer is not None and newer <= 0:
            return []
        entries = table.history(newer)
        if _is_newest_commit(uri, table.version()):
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
    """The commit log entries of :func:`batch_versions`, oldest first (only the commits after ``after`` read)."""
    return [entry for entry in history(uri, after) if entry["version"] <= upto and _is_batch(entry)]


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


def column_names(uri: str, version: Optional[int] = None) -> list[str]:
    """The table's columns as of ``version`` (latest when ``None``), from its log."""
    from deltalake import DeltaTable

    return [field.name for field in DeltaTable(uri, version=version).schema().fields]


def newest_value(uri: str, version: Optional[int], column: str) -> "Optional[pa.Scalar]":
    """The largest value of ``column`` as of ``version`` (``None``: no value). The Delta log's file statistics
    narrow the read to the files holding values at or above the newest file maximum (less a millisecond:
    timestamps are kept there to the millisecond), so only ``column`` of the newest files is read; unless a file
    has no statistics for it (or only nulls): then the column of every file."""
    from deltalake import DeltaTable

    return _newest_value(DeltaTable(uri, version=version), column)


def newest_in_latest(uri: str, column: str) -> "tuple[int, Optional[pa.Scalar]]":
    """The table's latest version and :func:`newest_value` of ``column`` in it (the table opened once)."""
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    return table.version(), _newest_value(table, column)


def _newest_value(table: "DeltaTable", column: str) -> "Optional[pa.Scalar]":
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = pa.table(table.get_add_actions(flatten=True))
    high = f"max.{column}"
    if high in actions.column_names and actions.num_rows and actions.column(high).null_count == 0:
        floor = pc.max(actions.column(high)).as_py()
        if isinstance(floor, dt.datetime):
            floor -= dt.timedelta(milliseconds=1)
        actions = actions.filter(pc.greater_equal(actions.column(high), pa.scalar(floor, actions.column(high).type)))
    files = [DataFile(path, size, {}) for path, size in zip(*_paths_and_sizes(actions), strict=True)]
    values = _files_dataset(table, files).to_table(columns=[column])[column]
    newest = pc.max(values) if len(values) else None
    return newest if newest is not None and newest.is_valid else None


def _paths_and_sizes(actions: "pa.Table") -> tuple[list[str], list[int]]:
    return actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist()


@dataclass(frozen=True)
class DataFile:
    """One data file of a table version as its log names it: relative path, size, and per column asked for its
    ``(min, max)`` from the file statistics (``None``: no statistics, or only nulls)."""

    path: str
    size: int
    ranges: dict[str, Optional[tuple]]

    def may_hold(self, column: str, low=None, high=None) -> bool:
        """Whether the file may hold a ``column`` value in ``[low, high]`` (``None``: unbounded); without
        statistics, it may."""
        bounds = self.ranges[column]
        if bounds is None:
            return True
        return (low is None or bounds[1] >= low) and (high is None or bounds[0] <= high)

    def may_hold_any(self, column: str, values: list) -> bool:
        """Whether the file may hold any of ``values`` (sorted) in ``column``; without statistics, it may."""
        bounds = self.ranges[column]
        if bounds is None:
            return True
        first = bisect.bisect_left(values, bounds[0])
        return first < len(values) and values[first] <= bounds[1]


def _file_ranges(table: "DeltaTable", columns: list[str]) -> list[DataFile]:
    """Every data file of ``table`` with the statistics of ``columns`` (from the log: no data file is read)."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))

    def stat(name: str) -> list:
        return actions.column(name).to_pylist() if name in actions.column_names else [None] * actions.num_rows

    lows, highs = {c: stat(f"min.{c}") for c in columns}, {c: stat(f"max.{c}") for c in columns}
    files = []
    for row, (path, size) in enumerate(zip(*_paths_and_sizes(actions), strict=True)):
        ranges = {c: (lows[c][row], highs[c][row]) for c in columns}
        files.append(DataFile(path, size, {c: None if None in bounds else bounds for c, bounds in ranges.items()}))
    return files


_UNREAD_FEATURES = {"columnMapping", "deletionVectors"}  # what reading the Parquet files alone would get wrong


def _files_dataset(table: "DeltaTable", files: list[DataFile]) -> "ds.FileSystemDataset":
    """A dataset of only ``files`` of ``table``. ``to_pyarrow_dataset`` first sets up every file of the table with
    its statistics: about a second per 1,000 files, for reading one of them."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pa_fs
    from deltalake.exceptions import DeltaProtocolError
    from deltalake.fs import DeltaStorageHandler

    unread = _UNREAD_FEATURES & set(table.protocol().reader_features or [])
    if unread:
        raise DeltaProtocolError(f"{table.table_uri}: the table uses {sorted(unread)}, which this reader does not")
    sizes = {file.path: file.size for file in files}
    filesystem = pa_fs.PyFileSystem(DeltaStorageHandler(table.table_uri, known_sizes=sizes))
    parquet = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
    fragments = [parquet.make_fragment(file.path, filesystem=filesystem) for file in files]
    return ds.FileSystemDataset(fragments, pa.schema(table.schema().to_arrow()), parquet, filesystem)


def read_files(
    uri: str, columns: list[str], may_hold: Callable[[DataFile], bool], version: Optional[int] = None
) -> "pd.DataFrame":
    """``columns`` of the data files (as of ``version``, latest when ``None``) for which ``may_hold`` is true,
    given each file with the statistics of ``columns``: the files the statistics rule out are not read."""
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version)
    chosen = [file for file in _file_ranges(table, columns) if may_hold(file)]
    return _files_dataset(table, chosen).to_table(columns=columns).to_pandas()


def append_unless_held(
    uri: str, rows: "pa.Table", column: str, value: int, metadata: dict[str, str]
) -> tuple[int, int]:
    """Append ``rows``, each holding ``value`` in ``column``, unless the table holds that value already (an
    interrupted run appended them), adding columns the table lacks; returns the table's version after it and the
    largest ``column`` value in it. The table is opened once: the largest value comes from the file statistics,
    and only a ``value`` at or below it (a batch revalidated after newer ones, a run re-executed) has the files
    that may hold it read."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    table = DeltaTable(uri) if DeltaTable.is_deltatable(uri) else None
    largest = None if table is None else _newest_value(table, column)
    newest = None if largest is None else int(largest.as_py())
    if table is not None and newest is not None and value <= newest:
        chosen = [file for file in _file_ranges(table, [column]) if file.may_hold(column, value, value)]
        if pc.any(pc.equal(_files_dataset(table, chosen).to_table(columns=[column])[column], value)).as_py():
            return table.version(), newest
    version = append(uri, rows, metadata, merge_schema=True, opened=table)
    return version, value if newest is None else max(newest, value)


def read_batch(uri: str, version: int) -> "pa.Table":
    """Only the rows that ``version`` appended: the data files its commit adds, so cost follows the batch size
    and not the table's (one snapshot opened). Should the commit file be gone (logs cleaned up by a release
    before :func:`keep_logs`), the files of that version that the one before lacks."""
    from deltalake import DeltaTable

    current = DeltaTable(uri, version=version)
    added = _added_files(current, version)
    if added is None:
        before = {file.path for file in _file_ranges(DeltaTable(uri, version=version - 1), [])} if version else set()
        added = [file for file in _file_ranges(current, []) if file.path not in before]
    return _files_dataset(current, added).to_table()


def _added_files(table: "DeltaTable", version: int) -> Optional[list[DataFile]]:
    """The data files commit ``version`` of ``table`` adds, from its commit file (:func:`commit_file`, one
    action per line; ``None`` if it is gone)."""
    import json
    from urllib.parse import unquote

    import pyarrow.fs as pa_fs
    from deltalake.fs import DeltaStorageHandler

    filesystem = pa_fs.PyFileSystem(DeltaStorageHandler(table.table_uri))
    try:
        with filesystem.open_input_stream(commit_file(version)) as commit:
            lines = commit.read().decode().splitlines()
    except FileNotFoundError:
        return None
    actions = [json.loads(line) for line in lines if line.strip()]
    return [DataFile(unquote(a["add"]["path"]), a["add"]["size"], {}) for a in actions if "add" in a]


def read_newest_files(uri: str, key: str, below: int, files: int, columns: list[str]) -> "pd.DataFrame":
    """Rows of the ``files`` data files with the highest ``max(key)`` among those holding a ``key`` below
    ``below``: chosen from the file statistics in the Delta log, so only those files are read."""
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    known = [file for file in _file_ranges(table, [key]) if file.ranges[key] is not None]
    holding = [file for file in known if file.ranges[key][0] < below]  # type: ignore[index]
    newest = sorted(holding, key=lambda file: file.ranges[key][1], reverse=True)[:files]  # type: ignore[index]
    return _files_dataset(table, newest).to_table(columns=columns).to_pandas()


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


def keep_logs() -> "PostCommitHookProperties":
    """The post-commit hooks of every write: checkpoints as delta-rs makes them (every 100th commit), without
    the clean-up that comes with each, which deletes the commits older than ``delta.logRetentionDuration``
    (30 days). The history partitions read raw_data from v0 and ``retrain reproduce`` opens old features
    versions: a version whose commit is gone cannot be opened."""
    from deltalake import PostCommitHookProperties

    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


def append(
    uri: str,
    table: "pa.Table",
    metadata: Optional[dict[str, str]] = None,
    merge_schema: bool = False,
    opened: "Optional[DeltaTable]" = None,
) -> int:
    """Append an Arrow table as one new version (``metadata`` goes into the commit) and return the version.
    ``merge_schema`` adds columns the table does not have yet (tables written by an older release). ``opened``:
    the table at ``uri`` as the caller already opened it (opening one of 10,000 versions costs about 50 ms)."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    if opened is None and DeltaTable.is_deltatable(uri):
        opened = DeltaTable(uri)  # written through, the table object knows the version it wrote
    write_deltalake(
        uri if opened is None else opened,
        table,
        mode="append",
        commit_properties=CommitProperties(custom_metadata=metadata or {}),
        schema_mode="merge" if merge_schema else None,
        post_commithook_properties=keep_logs(),
    )
    version = latest_version(uri) if opened is None else opened.version()
    if version is None:
        raise RuntimeError(f"{uri}: no Delta table after appending to it")
    return version


class TableAppender:
    """Appends to one table through a ``DeltaTable`` it keeps open, for a writer that appends often (the
    prediction ledger): delta-rs then reads only the commits since its last one, about a third of
    :func:`append`'s cost, and :attr:`known_version` is never newer than the table (other writers may be
    ahead of it; appends do not conflict)."""

    def __init__(self, uri: str):
        self.uri = uri
        self._table: Optional["DeltaTable"] = None

    @property
    def known_version(self) -> Optional[int]:
        """The newest version this appender has seen (``None``: it has seen no table yet); opens it once."""
        from deltalake import DeltaTable

        if self._table is None and DeltaTable.is_deltatable(self.uri):
            self._table = DeltaTable(self.uri)
        return None if self._table is None else self._table.version()

    def append(self, table: "pa.Table", metadata: dict[str, str]) -> int:
        """Append ``table`` as one version with ``metadata`` in its commit; returns that version."""
        from deltalake import CommitProperties, DeltaTable, write_deltalake

        if self.known_version is None:
            version = append(self.uri, table, metadata)
            self._table = DeltaTable(self.uri, version=version)
            return version
        assert self._table is not None
        write_deltalake(
            self._table,
            table,
            mode="append",
            commit_properties=CommitProperties(custom_metadata=metadata),
            post_commithook_properties=keep_logs(),
        )
        return self._table.version()


def cast_column(values: "pd.Series", kind: "ColumnType") -> "pd.Series":
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
