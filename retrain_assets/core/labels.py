"""Ground truth for served predictions: `retrain label FILE` lands a file of labels in the ``labels`` Delta table.

A labels file is CSV or Parquet, read within the same limits as a batch (:class:`landing.InputLimits`). Its
columns:

- a key: ``prediction_id`` (the id the server answered with) and/or the ``data.id`` column (the entity;
  :mod:`retrain_assets.core.live` joins it to the entity's newest prediction at the time of the label);
- the label, in the target column (``data.target``) or ``label``, cast to the target's declared type;
- optionally ``labeled_at``, when the truth became known (default: when the file lands).

A file that breaks a rule (no key or label column, another column, a row without a key or a label, a label
that does not cast or, for a classifier with ``validation.target_classes``, is not a listed class, one key
twice, a ``labeled_at`` that does not read or lies in the future) is refused whole as ingest refuses a batch
(:func:`landing.refuse`): nothing is written, the file is copied intact into quarantine with its reason, and
the refusal goes to ``refusals.jsonl``. Messages name the file, the column, the row (counted from 1, the
header not counted) and the rule. One file is one Delta version, its name and SHA-256 in the commit; the same
content twice is refused.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

import pyarrow as pa

from retrain_assets.core import delta, landing
from retrain_assets.core.delta import LABELS_TABLE

if TYPE_CHECKING:
    import pandas as pd

    from retrain_assets.core.config import RetrainConfig

PREDICTION_ID = "prediction_id"
ENTITY_ID = "entity_id"
LABEL = "label"
LABELED_AT = "labeled_at"
LABELS_SCHEMA = pa.schema(
    [
        pa.field(PREDICTION_ID, pa.string()),
        pa.field(ENTITY_ID, pa.string()),  # the data.id value, as text
        pa.field(LABEL, pa.string(), nullable=False),  # JSON of the value, cast to the target's type
        pa.field(LABELED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
FUTURE_TOLERANCE = dt.timedelta(hours=1)  # clock skew allowed between the labeller and this machine


@dataclass(frozen=True)
class LabelsResult:
    source: str
    version: int
    rows: int


def land_labels(config: "RetrainConfig", path: Path) -> LabelsResult:
    """Append one labels file to the ``labels`` table as one new Delta version, or refuse it whole
    (:class:`landing.BatchRefused`; see the module docstring). The file is opened once, inside
    ``storage.landing_dir`` when one is set, as ingest opens a batch."""
    landing.ensure_home(config)
    try:
        handle = landing.open_batch(path, config.landing_dir)
    except landing.Unread as exc:  # not hashed, nor copied into quarantine: left where it is
        raise landing.refuse(config, path, str(exc), keep=False) from None
    with handle:
        return _land(config, path, handle)


def _land(config: "RetrainConfig", path: Path, handle: BinaryIO) -> LabelsResult:
    import os

    uri = config.table_uri(LABELS_TABLE)
    limits = landing.InputLimits.of(config)
    try:
        limits.check_size(path.name, os.fstat(handle.fileno()).st_size)
    except landing.BeyondLimit as exc:
        raise landing.refuse(config, path, str(exc), keep=False) from None
    sha = landing.file_sha256(handle)
    landed = next((entry["version"] for entry in delta.history(uri) if entry.get(delta.SHA_KEY) == sha), None)
    if landed is not None:
        reason = f"{path.name}: identical content already landed as labels version {landed}"
        raise landing.refuse(config, path, reason, keep=False)
    try:
        frame = landing.read_batch_from(path.name, handle, limits)
        table = labels_table(config, path.name, frame, dt.datetime.now(dt.timezone.utc))
        delta.append(uri, table, {delta.SOURCE_KEY: path.name, delta.SHA_KEY: sha})
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{path.name}: write to {uri} failed: {exc}"
        raise landing.refuse(config, path, reason, keep=True, source=handle) from exc
    # not the latest version: another writer may have committed since ours
    version = next(entry["version"] for entry in reversed(delta.history(uri)) if entry.get(delta.SHA_KEY) == sha)
    return LabelsResult(path.name, version, table.num_rows)


def labels_table(config: "RetrainConfig", name: str, frame: "pd.DataFrame", now: dt.datetime) -> pa.Table:
    """The rows of a labels file ``name`` as the table keeps them, or ``ValueError`` naming the file, the
    column, the row and the rule (see the module docstring); ``now`` is the landing time."""
    data = config.data
    columns = [str(column) for column in frame.columns]
    frame = frame.set_axis(columns, axis=1).reset_index(drop=True)
    keys = [column for column in dict.fromkeys([PREDICTION_ID, data.id]) if column and column in columns]
    given = [column for column in dict.fromkeys([data.target, LABEL]) if column in columns]
    known = {column for column in (PREDICTION_ID, data.id, data.target, LABEL, LABELED_AT) if column is not None}
    problems = []
    if not keys:
        entity = f" or the id column {data.id!r} (data.id)" if data.id else " (data.id is not set)"
        problems.append(f"no key column: a labels file needs {PREDICTION_ID!r}{entity}")
    if not given:
        problems.append(f"no label column: give the label in {data.target!r} (data.target) or {LABEL!r}")
    elif len(given) > 1:
        problems.append(f"both {given[0]!r} and {given[1]!r} hold labels: give one")
    unknown = [column for column in columns if column not in known]
    if unknown:
        problems.append(f"columns {unknown} are not part of a labels file (expected {sorted(known)})")
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems))
    if len(frame) == 0:
        raise ValueError(f"{name}: no rows (only a header)")
    predictions = _text(frame, PREDICTION_ID)
    entities = _entities(config, name, frame) if data.id in columns else _text(frame, "")
    unkeyed = predictions.isna() & entities.isna()
    empty = f"{keys[0]!r} is empty" if len(keys) == 1 else f"neither {keys[0]!r} nor {keys[1]!r} is set"
    _refuse_rows(name, unkeyed, f"no key: {empty}")
    labels = _labels(config, name, frame, given[0])
    stamps = _labeled_at(name, frame, now) if LABELED_AT in columns else _constant(now, len(frame))
    _refuse_duplicates(name, predictions, PREDICTION_ID)
    _refuse_duplicates(name, entities.where(predictions.isna()) + "@" + stamps.astype("string"), data.id or "")
    columns_out = [predictions, entities, labels, stamps]
    arrays = [
        pa.array(values, type=field.type, from_pandas=True)
        for values, field in zip(columns_out, LABELS_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=LABELS_SCHEMA)


def _text(frame: "pd.DataFrame", column: str) -> "pd.Series":
    """A key column as text, blank values as missing (an all-missing column when ``column`` is absent)."""
    import pandas as pd

    if column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    text = frame[column].astype("string").str.strip()
    return text.mask(text == "")


def _entities(config: "RetrainConfig", name: str, frame: "pd.DataFrame") -> "pd.Series":
    """The data.id column cast to its declared type, then as text: the form :mod:`live` matches on."""
    column = config.data.id
    assert column is not None
    kind = config.data.columns[column]
    values = frame[column].mask(frame[column].astype("string").str.strip() == "")
    cast = delta.cast_column(values, kind)
    _refuse_rows(
        name, cast.isna() & values.notna(), f"column {column!r}: does not cast to {kind} (data.columns)", values
    )
    return cast.astype("string")


def _labels(config: "RetrainConfig", name: str, frame: "pd.DataFrame", column: str) -> list[str]:
    """Each row's label cast to the target's type, as JSON; refused when missing, not of the type or, for a
    classifier with ``validation.target_classes``, not one of them."""
    data = config.data
    kind = data.columns[data.target]
    values = frame[column]
    _refuse_rows(name, values.isna(), f"column {column!r}: no label (every row needs one)")
    cast = delta.cast_column(values, kind)
    rule = f"column {column!r}: does not cast to {kind}, the type of the target {data.target!r} (data.columns)"
    _refuse_rows(name, cast.isna(), rule, values)
    plain = [_plain(value) for value in cast.astype(object)]
    classes = config.validation.target_classes
    if data.task == "classification" and classes is not None:
        listed = {str(item) for item in classes}
        unknown = [str(value) not in listed for value in plain]
        rule = f"column {column!r}: not a class of validation.target_classes {classes}"
        _refuse_rows(name, _series(unknown, frame.index), rule, values)
    return [json.dumps(value, default=str) for value in plain]


def _labeled_at(name: str, frame: "pd.DataFrame", now: dt.datetime) -> "pd.Series":
    values = frame[LABELED_AT]
    stamps = delta.cast_column(values, "timestamp")
    _refuse_rows(
        name, stamps.isna(), f"column {LABELED_AT!r}: not a date or time (ISO 8601, e.g. 2026-03-01T12:00Z)", values
    )
    late = now + FUTURE_TOLERANCE
    _refuse_rows(name, stamps > late, f"column {LABELED_AT!r}: in the future (after {late:%Y-%m-%dT%H:%MZ})", values)
    return stamps


def _constant(moment: dt.datetime, rows: int) -> "pd.Series":
    import pandas as pd

    return pd.Series([moment] * rows, dtype="datetime64[us, UTC]")


def _refuse_rows(name: str, bad: "pd.Series", rule: str, values: "Optional[pd.Series]" = None) -> None:
    """``ValueError`` naming the first row where ``bad`` holds (and its value), and how many more do."""
    flags = bad.fillna(False).to_numpy(dtype=bool)
    if not flags.any():
        return
    first = int(flags.argmax())
    shown = f" ({_plain(values.iloc[first])!r})" if values is not None else ""
    more = int(flags.sum()) - 1
    raise ValueError(f"{name}: row {first + 1}{shown}: {rule}" + (f"; {more} more rows like it" if more else ""))


def _refuse_duplicates(name: str, keys: "pd.Series", column: str) -> None:
    """``ValueError`` naming the first two rows with the same key: two labels for one prediction in one file
    contradict each other or repeat one, and which one counts would be a guess."""
    present = keys.dropna()
    twice = present[present.duplicated(keep=False)]
    if twice.empty:
        return
    value = twice.iloc[0]
    rows = [int(position) + 1 for position in twice.index[twice == value][:2]]
    key = value.rsplit("@", 1)[0] if column != PREDICTION_ID else value
    also = "" if column == PREDICTION_ID else f" with the same {LABELED_AT!r}"
    raise ValueError(
        f"{name}: rows {rows[0]} and {rows[1]}: column {column!r}: {key!r} twice{also} (one label per key)"
    )


def _series(flags: list[bool], index: Any) -> "pd.Series":
    import pandas as pd

    return pd.Series(flags, index=index, dtype=bool)


def _plain(value: Any) -> Any:
    """A pandas or NumPy scalar as the Python value JSON writes."""
    return value.item() if hasattr(value, "item") else value
