"""Delta Lake tables of a project: landing batches in ``raw_data`` and reading any version back.

Every ingested file becomes exactly one new version of ``raw_data``. A file that cannot be read or cast to
the schema in ``retrain.yaml`` is refused whole: nothing is written, and the file is copied byte for byte into
the quarantine folder with a note of why. Bad *values* (nulls, out of range, unknown categories) do land;
catching them is the job of the validation checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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


def read_batch_file(path: Path) -> "pd.DataFrame":
    """Read a CSV or Parquet file into pandas; raise ``ValueError`` naming the file when it cannot be read."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r} (expected CSV or Parquet)")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # any parser error means the same thing to the user: unreadable
        raise ValueError(f"{path.name}: cannot be read as {suffix[1:].upper()}: {exc}") from exc


def _cast_column(values: "pd.Series", kind: "ColumnType") -> "pd.Series":
    """Cast one column to its declared type; values that do not convert become ``<NA>`` (detected by caller)."""
    import pandas as pd

    if kind in ("int", "float"):
        numbers = pd.to_numeric(values, errors="coerce")
        if kind == "int":
            whole = numbers.isna() | (numbers == numbers.round())
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


def quarantine(path: Path, reason: str, quarantine_dir: Path) -> Path:
    """Copy a refused file byte for byte into quarantine, with a ``.reason.txt`` beside it."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = quarantine_dir / f"{stamp}-{path.name}"
    shutil.copy2(path, target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ingest_file(config: "RetrainConfig", path: Path, landed_at: Optional[dt.datetime] = None) -> IngestResult:
    """Append one file to ``raw_data`` as one new Delta version; refuse (and quarantine) what cannot land.

    ``landed_at`` replays history: it is recorded in the commit as the time the batch became available,
    which is what "the table as of date D" means for backfills (default: the commit time itself)."""
    from deltalake import CommitProperties, write_deltalake

    uri = config.table_uri(RAW_TABLE)
    if not path.is_file():
        raise BatchRefused(f"{path}: no such file")
    sha = _sha256(path)
    landed = next((entry["version"] for entry in history(uri) if entry.get(SHA_KEY) == sha), None)
    if landed is not None:
        raise BatchRefused(f"{path.name}: identical content already landed as raw_data version {landed}")
    try:
        table = to_table_schema(read_batch_file(path), config.data.columns, path.name)
        metadata = {SOURCE_KEY: path.name, SHA_KEY: sha}
        if landed_at is not None:
            metadata[LANDED_KEY] = landed_at.astimezone(dt.timezone.utc).isoformat()
        write_deltalake(uri, table, mode="append", commit_properties=CommitProperties(custom_metadata=metadata))
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{path.name}: write to {uri} failed: {exc}"
        raise BatchRefused(reason, quarantine(path, reason, config.quarantine_dir)) from exc
    return IngestResult(source=path.name, version=latest_version(uri), rows=table.num_rows)


def latest_version(uri: str) -> Optional[int]:
    """Current version of the table at ``uri``, or ``None`` when no table exists there yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    return DeltaTable(uri).version()


def history(uri: str) -> list[dict]:
    """Commit log entries (oldest first), each with its ``version`` and custom metadata; empty if no table."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return []
    return sorted(DeltaTable(uri).history(), key=lambda entry: entry["version"])


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
    start = -1 if after is None else after
    return [
        entry["version"]
        for entry in history(uri)
        if start < entry["version"] <= upto
        and entry.get("operation") == "WRITE"
        and entry.get("operationParameters", {}).get("mode") != "Overwrite"
        and entry.get("operationMetrics", {}).get("num_added_rows", 0) > 0
    ]


def read_table(uri: str, version: Optional[int] = None, columns: Optional[list[str]] = None) -> "pd.DataFrame":
    """The whole table as of ``version`` (latest when ``None``), Delta time travel."""
    from deltalake import DeltaTable

    return DeltaTable(uri, version=version).to_pyarrow_table(columns=columns).to_pandas()


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


def table_summary(uri: str, version: Optional[int] = None) -> Optional[dict]:
    """``{"uri", "version", "rows", "files"}`` of the table as of ``version``; ``None`` if it does not exist."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri):
        return None
    table = DeltaTable(uri, version=version)
    actions = table.get_add_actions(flatten=True)
    rows = int(sum(actions.column("num_records").to_pylist())) if actions.num_rows else 0
    return {"uri": uri, "version": table.version(), "rows": rows, "files": actions.num_rows}


def append(uri: str, table: "pa.Table", metadata: Optional[dict[str, str]] = None) -> int:
    """Append an Arrow table as one new version (``metadata`` goes into the commit) and return the version."""
    from deltalake import CommitProperties, write_deltalake

    write_deltalake(uri, table, mode="append", commit_properties=CommitProperties(custom_metadata=metadata or {}))
    return latest_version(uri)
