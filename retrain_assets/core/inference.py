"""A first ``retrain.yaml`` inferred from a data sample: what ``retrain init DATA --target COL`` writes.

Types, roles, task, validation rules, a baseline model, the history start and the volume trigger come from
the sample; the result is a validated :class:`~retrain_assets.core.config.RetrainConfig` that the user reviews
before the first run, with notes saying each choice the column types alone do not explain.

A sample shows what the data looked like, not what it may hold, so the rules written are mostly
``expected`` values, which only warn. The only hard limits inferred are the ones a sample makes evident
and a later clean batch cannot break: no negative counts or amounts, and a target and id always set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd
import yaml

from retrain_assets.core.config import METRICS, ColumnType, RetrainConfig, parse_config

MAX_CLASSIFICATION_INTS = 20
EXPECTED_WIDENING = 0.5
DATETIME_SHARE = 0.95  # text is a datetime column when at least this share of its values are datetimes
NULL_TOLERANCE = 0.05  # expected.max_null_fraction: the sample's null fraction plus this, capped at 1
MIN_ID_ROWS = 20  # fewer rows say too little for an id judged by its values alone (an id-like name suffices)
ID_SPAN_SLACK = 1.1  # unique ints spanning at most this times their count are a sequence, like row numbers
_DATETIME_PROBE = 200  # distinct values tried first: when none is a datetime, the column is not one

_ID_NAME = re.compile(r"^(?i:id|uuid|guid|key)$|[_\W](?i:id|uuid|guid|key)$|[a-z0-9](?:Id|ID|Uuid|UUID|Key)$")
_TIME_OF_DAY = r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*([aApP][mM])?"
# Words in a float column's name that say it measures an amount, which cannot be negative.
_AMOUNT_WORDS = frozenset(
    "age amount area charge charges cost count distance duration fare fee fees "  # noqa: SIM905 (reads as words)
    "height income length mass paid perimeter price quantity qty radius revenue salary size spend spent tenure "
    "total volume wage weight width".split()
)
# Words that say a quantity may go negative even when a sample holds none (they win over the above).
_SIGNED_WORDS = frozenset(
    "balance change delta diff difference gain growth lat latitude lng lon longitude margin net "  # noqa: SIM905
    "offset pnl profit return returns temp temperature".split()
)

_MODEL = {
    "classification": {
        "model": {"estimator": "logistic_regression", "params": {"C": 1.0, "max_iter": 1000}},
        "promotion": {"metric": "roc_auc", "minimum": 0.6, "margin": 0.005},
    },
    "regression": {
        "model": {"estimator": "ridge", "params": {"alpha": 1.0}},
        "promotion": {"metric": "r2", "minimum": 0.0, "margin": 0.005},
    },
}


@dataclass(frozen=True)
class Inference:
    """An inferred config and, for the person reviewing it, one sentence per choice made for them."""

    config: RetrainConfig
    notes: tuple[str, ...]


def infer_config(frame: pd.DataFrame, target: str, **options: Any) -> RetrainConfig:
    """The config of :func:`infer_config_with_notes` (same arguments), for callers that show no notes."""
    return infer_config_with_notes(frame, target, **options).config


def infer_config_with_notes(
    frame: pd.DataFrame,
    target: str,
    task: Optional[str] = None,
    timestamp: Optional[str] = None,
    id_column: Optional[str] = None,
    tolerance: float = EXPECTED_WIDENING,
    max_categories: int = 50,
    project: str = "retrain",
) -> Inference:
    """Infer column types, roles, task, validation rules and a baseline model from a sample.

    Roles not given are inferred, each with a note. Text in which at least ``DATETIME_SHARE`` of the values
    are datetimes is a datetime column; the only datetime column becomes ``data.timestamp``, any other goes
    to ``data.ignore`` (a near-datetime text, which ingest could not cast, too). A row id is a column with
    unique values and no nulls that has an id-like name (``id``, ``*_id``, ``*Id``, ``uuid``, ``key``...),
    or, in a sample of at least ``MIN_ID_ROWS`` rows, unique sequential or monotonic ints, or unique
    fixed-width codes without spaces; floats never are. One such column becomes ``data.id`` (a named one
    wins over the others); the rest go to ``data.ignore``. Text with more than ``max_categories`` distinct
    values is free text and goes to ``data.ignore`` too: one-hot encoded, it would only overfit.

    ``history.start`` is the date of the earliest event time, the first partition holding data.
    ``triggers.min_new_rows`` is the sample's row count: the sample is usually one batch, so batches of the
    usual size retrain each time while trickles add up first; drift, a performance drop and the schedule
    retrain whatever the volume.

    Args:
        frame: The data sample.
        target: Column to predict.
        task: ``classification`` or ``regression``; inferred from the target when omitted.
        timestamp: Event-time column; text is accepted when every value parses as a datetime.
        id_column: Row identifier column; must be unique and never null in the sample.
        tolerance: Expected numeric ranges are the observed range widened by this fraction of it on each side.
            The default, half the span, is wide because a sample of a few hundred rows rarely shows a real
            column's tails: widened by a tenth, breast cancer's first quarter warned on 56 column-batches of
            the next five; by half, on 10.
        max_categories: Text columns with at most this many distinct values are categories, others free text.
        project: Project name, also used as the MLflow experiment and registered model name.

    Returns:
        The validated config and the notes, in the order the choices were made.

    Raises:
        ValueError: A role names a missing column, --timestamp holds values that are not datetimes, --id is
            the target or has repeated or null values, no feature is left, or the task is unknown or does
            not suit the target.
    """
    _check_roles_exist(frame, target, timestamp, id_column)
    notes: list[str] = []
    roles = _infer_roles(frame, target, timestamp, id_column, max_categories, notes)
    task = _resolve_task(frame[target], target, roles.columns[target], task, notes)
    validation = _validation(frame, roles, target, task, tolerance, notes)
    history = _history(frame, roles.timestamp, notes)
    notes.append(f"triggers.min_new_rows {len(frame)}: retrain on new data once about one sample's worth is validated")
    raw = {
        "project": project,
        "mlflow": {"experiment": project, "model_name": project},
        "data": {
            "target": target,
            "task": task,
            "timestamp": roles.timestamp,
            "id": roles.id_column,
            "columns": roles.columns,
            "ignore": list(roles.ignore),
        },
        "validation": validation,
        "triggers": {"min_new_rows": len(frame)},
        "history": history,
        **_MODEL[task],
    }
    return Inference(parse_config(raw, source="inferred config"), tuple(notes))


@dataclass
class _Roles:
    """What each sample column is: its config type, and which ones are the event time, the row id, or kept
    out of the features (with the reason, which becomes a note)."""

    columns: dict[str, ColumnType]
    timestamp: Optional[str]
    id_column: Optional[str]
    ignore: dict[str, str]


def _check_roles_exist(frame: pd.DataFrame, target: str, timestamp: Optional[str], id_column: Optional[str]) -> None:
    """Refuse a role naming a column the sample lacks, before anything is inferred from the others."""
    for flag, name in (("--target", target), ("--timestamp", timestamp), ("--id", id_column)):
        if name is not None and name not in frame.columns:
            known = ", ".join(map(str, frame.columns))
            raise ValueError(f"{flag}: column {name!r} is not in the sample (columns: {known})")


def _infer_roles(
    frame: pd.DataFrame,
    target: str,
    timestamp: Optional[str],
    id_column: Optional[str],
    max_categories: int,
    notes: list[str],
) -> _Roles:
    """Column types, the event time and the row id (given or inferred), and the columns that are no feature.

    Datetimes are settled first, since a text column of them is no category and no id; ids next, since a
    unique code is no free text. A note is added for each ignored column; a sample that leaves no feature
    is refused, as no model could be trained on it.
    """
    ignore: dict[str, str] = {}  # column -> why it is no feature
    columns = {name: _column_type(frame[name], max_categories) for name in frame.columns}
    text_dates = _text_datetimes(frame, columns, target, timestamp, ignore)
    if timestamp is not None and columns[timestamp] != "timestamp":
        raise ValueError(f"--timestamp: column {timestamp!r} does not hold datetimes")
    timestamp = _event_time(columns, timestamp, (target, id_column), text_dates, ignore, notes)
    id_column = _row_id(frame, columns, target, timestamp, id_column, ignore, notes)
    for name, kind in columns.items():
        if kind == "string" and name not in (target, id_column, *ignore):
            values = frame[name].dropna()
            ignore[name] = f"free text ({values.nunique()} distinct of {len(values)} values): ignored, not a feature"
    notes += [f"column {name!r}: {why}" for name, why in ignore.items()]
    if not [name for name in columns if name not in (target, timestamp, id_column, *ignore)]:
        raise ValueError(f"data.columns: no feature columns left besides the target: {'; '.join(notes)}")
    return _Roles(columns, timestamp, id_column, ignore)


def _resolve_task(labels: pd.Series, target: str, kind: ColumnType, task: Optional[str], notes: list[str]) -> str:
    """The given task, else the one the target suggests (with a note); either way refused when the target's
    type cannot serve it, since training would fail on the first run."""
    if task is None:
        task = _infer_task(labels, kind)
        notes.append(f"task {task}: target {target!r} is {kind} with {labels.nunique()} distinct values")
    if task not in METRICS:
        raise ValueError(f"--task: {task!r} is not one of {', '.join(METRICS)}")
    if task == "regression" and kind not in ("int", "float"):
        raise ValueError(f"--task: regression needs a numeric target, column {target!r} is {kind}")
    if task == "classification" and kind == "float":
        raise ValueError(f"--task: classification needs discrete target values, column {target!r} is float")
    return task


def _validation(
    frame: pd.DataFrame, roles: _Roles, target: str, task: str, tolerance: float, notes: list[str]
) -> dict[str, Any]:
    """``validation``: a rule per column, and for classification the classes and their smallest share.

    ``data.timestamp`` gets no column rule (it is judged against the landing time); the id and the target
    must be set; a regression target keeps its value rule, a class label needs none beyond its classes;
    features also get an expected null rate.
    """
    rules: dict[str, dict[str, Any]] = {}
    for name, kind in roles.columns.items():
        if name == roles.timestamp:
            continue
        if name == roles.id_column:
            rules[name] = {"nullable": False}
        elif name == target:
            rules[name] = {
                "nullable": False,
                **(_value_rule(frame[name], name, kind, tolerance) if task == "regression" else {}),
            }
        else:
            rules[name] = _value_rule(frame[name], name, kind, tolerance)
            rules[name].setdefault("expected", {})["max_null_fraction"] = _null_limit(frame[name])
    floored = [name for name, rule in rules.items() if "hard" in rule]
    if floored:
        notes.append(f"hard min 0 (counts and amounts), no hard max, on {floored}")
    validation: dict[str, Any] = {"columns": rules, "min_rows": 1}
    if task == "classification":
        validation.update(_class_rules(frame[target], roles.columns[target]))
    return validation


def _class_rules(target: pd.Series, kind: ColumnType) -> dict[str, Any]:
    """``target_classes`` as the sample shows them, and ``min_class_fraction`` at half the rarest class's
    share (rounded down to a percent, at least 1%): only a class far rarer than in the sample warns."""
    labels = target.dropna()
    smallest = float(labels.value_counts(normalize=True).min())
    return {
        "target_classes": sorted(_plain(value, kind) for value in labels.unique()),
        "min_class_fraction": max(0.01, math.floor(smallest / 2 * 100 + 1e-9) / 100),
    }


def _history(frame: pd.DataFrame, timestamp: Optional[str], notes: list[str]) -> dict[str, Any]:
    """``history``: its start is the date of the earliest event time, the first partition holding data.
    Without an event time in the sample it is left out, and the config's default start applies."""
    history: dict[str, Any] = {}
    first = pd.to_datetime(frame[timestamp], utc=True, format="mixed").min() if timestamp else pd.NaT
    if not pd.isna(first):
        history["start"] = first.date()
        notes.append(f"history.start {history['start']} from the earliest event time in the sample")
    return history


def render_config(config: RetrainConfig, source: str) -> str:
    """The config as ``retrain.yaml`` text, headed by a comment saying where it came from and what to review.

    Column rules are written without their default keys, so each one shows only what was inferred.

    Args:
        config: The config to write, usually from :func:`infer_config`.
        source: The sample it was inferred from, as the user named it.

    Returns:
        YAML that :func:`~retrain_assets.core.config.parse_config` reads back into an equal config.
    """
    header = (
        f"# Inferred by `retrain init` from {source}. Review it before the first run.\n"
        "#\n"
        "# validation.columns has two kinds of rule. `expected: {min, max, max_null_fraction}` and a `domain`\n"
        "# are what the sample showed (ranges widened a little): values outside them only warn, like drift.\n"
        "# `hard: {min, max}`, `nullable: false` and a domain with `closed: true` are limits you declare: a\n"
        "# batch that breaks one is rejected (`severity: warn` makes it warn, `mostly: 0.99` lets 1% through).\n"
        "# A sample proves no limit, so init writes only `hard: {min: 0}` on counts and amounts and\n"
        "# `nullable: false` on the target and id. Declare what your source guarantees, e.g.\n"
        "# `hard: {min: 0, max: 120}` for an age, or `closed: true` under a domain listing every allowed value.\n"
        "# data.ignore: columns kept and validated but never model features (ids, free text, extra datetimes).\n"
        "# A batch is also rejected when its target holds a class outside validation.target_classes, when it is\n"
        "# over validation.max_batch_growth x the usual size, or has data.timestamp values older than\n"
        "# validation.max_event_age_days (or after the time it lands): set them to what your source can send.\n"
    )
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["validation"]["columns"] = {
        name: rule.model_dump(mode="json", exclude_defaults=True) for name, rule in config.validation.columns.items()
    }
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    return header + "\n" + re.sub(r"\n(?=\w)", "\n\n", text)


def _column_type(series: pd.Series, max_categories: int) -> ColumnType:
    """The config type of one sample column, datetimes stored as text aside (see :func:`_datetime_misses`)."""
    values = series.dropna()
    if pd.api.types.is_bool_dtype(series) or (
        series.dtype == object and len(values) and values.map(lambda value: isinstance(value, bool)).all()
    ):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        upcast_int = len(values) > 0 and series.isna().any() and (values % 1 == 0).all()
        return "int" if upcast_int else "float"
    return "category" if values.nunique() <= max_categories else "string"


def _text_datetimes(
    frame: pd.DataFrame, columns: dict[str, ColumnType], target: str, timestamp: Optional[str], ignore: dict[str, str]
) -> set[str]:
    """Retype text columns of datetimes as ``timestamp`` and return their names. Text that is nearly all
    datetimes goes to ``ignore`` as a string, since ingest would refuse a batch whose values it cannot cast;
    as --timestamp it is an error naming those values."""
    text_dates: set[str] = set()
    for name, kind in columns.items():
        misses = _datetime_misses(frame[name]) if kind in ("category", "string") and name != target else None
        if misses is None:
            continue
        if misses.empty:
            columns[name] = "timestamp"
            text_dates.add(name)
        elif name == timestamp:
            raise ValueError(
                f"--timestamp: column {timestamp!r} does not hold only datetimes: {len(misses)} values do not "
                f"parse, e.g. {misses.unique()[:3].tolist()}"
            )
        else:
            columns[name] = "string"
            ignore[name] = (
                f"text of datetimes but {len(misses)} of {frame[name].count()} values do not parse "
                f"(e.g. {misses.unique()[:3].tolist()}): ignored, not a feature; fix them to use it as data.timestamp"
            )
    return text_dates


def _datetime_misses(series: pd.Series) -> Optional[pd.Series]:
    """The values of a text column that are not datetimes, or ``None`` when fewer than ``DATETIME_SHARE`` are.

    A value is a datetime when ingest parses it as one (``pd.to_datetime(..., format="mixed")``) and it is
    not a number or a bare time of day, which that parser also takes (as a year, or today at that time).
    """
    text = series.dropna().astype(str).str.strip()
    distinct = pd.Series(text.unique())
    if distinct.empty or not _are_datetimes(distinct.head(_DATETIME_PROBE)).any():
        return None
    hits = text.isin(distinct[_are_datetimes(distinct)])
    return text[~hits] if hits.mean() >= DATETIME_SHARE else None


def _are_datetimes(text: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed").notna()
    number = pd.to_numeric(text, errors="coerce").notna()
    return parsed & ~number & ~text.str.fullmatch(_TIME_OF_DAY)


def _event_time(
    columns: dict[str, ColumnType],
    timestamp: Optional[str],
    roles: tuple[Optional[str], ...],
    text_dates: set[str],
    ignore: dict[str, str],
    notes: list[str],
) -> Optional[str]:
    """``data.timestamp``: the given one, else the only datetime column; other datetimes go to ``ignore``.

    Only ``data.timestamp`` may hold datetimes besides ignored columns (models take no raw datetimes).
    """
    stamps = [name for name, kind in columns.items() if kind == "timestamp" and name not in (timestamp, *roles)]
    if timestamp is None and len(stamps) == 1:
        timestamp = stamps.pop()
        what = "text that parses as datetimes" if timestamp in text_dates else "the only datetime column"
        notes.append(f"column {timestamp!r}: {what}: data.timestamp")
    for name in stamps:
        if timestamp is None:
            ignore[name] = f"one of the datetime columns {stamps} (pass --timestamp to name the event time): ignored"
        else:
            ignore[name] = f"datetimes besides data.timestamp {timestamp!r}: ignored, not a feature"
    return timestamp


def _row_id(
    frame: pd.DataFrame,
    columns: dict[str, ColumnType],
    target: str,
    timestamp: Optional[str],
    id_column: Optional[str],
    ignore: dict[str, str],
    notes: list[str],
) -> Optional[str]:
    """``data.id``: the given one (checked), else the one column that looks like a row id; other such columns
    go to ``ignore``, since a row id as a feature only memorises rows. Ids are typed ``string``, not category."""
    if id_column is not None:
        _check_id(frame[id_column], id_column, target)
    candidates: dict[str, str] = {}
    for name, kind in columns.items():
        if name in (target, timestamp, id_column) or name in ignore:
            continue
        evidence = _id_evidence(frame[name], name, kind)
        if evidence:
            candidates[name] = evidence
        elif _ID_NAME.search(str(name)) and kind in ("int", "category"):
            distinct = frame[name].nunique()
            notes.append(
                f"column {name!r}: id-like name but {distinct} distinct of {frame[name].count()} values: a feature"
            )
    if id_column is None and candidates:
        named = [name for name in candidates if _ID_NAME.search(str(name))]
        pool = named if len(named) == 1 else list(candidates)
        if len(pool) == 1:
            id_column = pool[0]
            notes.append(f"column {id_column!r}: {candidates[id_column]}: data.id")
            del candidates[id_column]
        else:
            notes.append(f"columns {pool} all look like row ids: none is data.id (pass --id to name it)")
    for name, evidence in candidates.items():
        ignore[name] = f"{evidence}, like a row id: ignored, not a feature"
    if id_column is not None and columns[id_column] == "category":
        columns[id_column] = "string"
    return id_column


def _check_id(series: pd.Series, name: str, target: str) -> None:
    """Refuse an --id the first batch would already fail: validation requires ids set and unique per batch."""
    if name == target:
        raise ValueError(f"--id: column {name!r} is the target; a row id is not predicted")
    nulls = int(series.isna().sum())
    if nulls:
        raise ValueError(f"--id: column {name!r} has {nulls} null values in the sample; a row id is always set")
    repeated = series[series.duplicated()].unique()
    if len(repeated):
        raise ValueError(
            f"--id: column {name!r} is not unique in the sample: {len(repeated)} values repeat, "
            f"e.g. {repeated[:3].tolist()}"
        )


def _id_evidence(series: pd.Series, name: str, kind: ColumnType) -> Optional[str]:
    """Why a column looks like a row id, or ``None``. Unique floats are measurements, never ids."""
    if kind not in ("int", "category", "string") or series.isna().any() or not series.is_unique:
        return None
    if kind == "int":
        shape = _int_sequence(series)
        what, by_values = f"unique {shape + ' ' if shape else ''}ints", shape is not None
    else:
        text = series.astype(str)
        fixed = text.str.len().nunique() == 1 and not text.str.contains(r"\s").any() and text.str.contains(r"\d").all()
        what, by_values = ("unique fixed-width codes" if fixed else "unique text"), fixed
    if _ID_NAME.search(str(name)):
        return f"{what} with an id-like name"
    return what if by_values and len(series) >= MIN_ID_ROWS else None


def _int_sequence(series: pd.Series) -> Optional[str]:
    """``sequential`` for unique ints close to a run of consecutive numbers, ``increasing``/``decreasing``
    for unique ints in row order (an id sample taken from a longer table), else ``None``."""
    if int(series.max()) - int(series.min()) + 1 <= ID_SPAN_SLACK * len(series):
        return "sequential"
    if series.is_monotonic_increasing:
        return "increasing"
    if series.is_monotonic_decreasing:
        return "decreasing"
    return None


def _infer_task(target: pd.Series, kind: ColumnType) -> str:
    """Classification for labels and few-valued ints, else regression."""
    if kind in ("bool", "category", "string"):
        return "classification"
    if kind == "int" and target.nunique() <= MAX_CLASSIFICATION_INTS:
        return "classification"
    return "regression"


def _value_rule(series: pd.Series, name: str, kind: ColumnType, tolerance: float) -> dict[str, Any]:
    """Expected range (and a hard floor of 0 when evident) for numbers, an open domain for categories."""
    if kind in ("int", "float"):
        expected = _range(series, kind, tolerance)
        rule: dict[str, Any] = {"expected": expected} if expected else {}
        if _never_negative(series, name, kind):
            rule["hard"] = {"min": 0}
        return rule
    if kind == "category":
        return {"domain": sorted(_plain(value, kind) for value in series.dropna().unique())}
    return {}


def _never_negative(series: pd.Series, name: str, kind: ColumnType) -> bool:
    """Whether a negative value would be an error, not news: the sample holds none, and the column is an int
    (counts, ages, quantities) or a float whose name says it is an amount (``fare``, ``monthly_charges``,
    ``mean area``). A name that says it may be signed (``balance``, ``temperature``, ``delta``) rules it out.
    Non-negative floats without such a name get no floor: a sample of ratios or readings cannot tell."""
    values = series.dropna()
    if values.empty or values.min() < 0:
        return False
    words = {word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", str(name))}
    if words & _SIGNED_WORDS:
        return False
    return kind == "int" or bool(words & _AMOUNT_WORDS)


def _null_limit(series: pd.Series) -> float:
    """The sample's null fraction plus ``NULL_TOLERANCE``, rounded up to hundredths and capped at 1."""
    return min(1.0, math.ceil((float(series.isna().mean()) + NULL_TOLERANCE) * 100 - 1e-9) / 100)


def _range(series: pd.Series, kind: ColumnType, tolerance: float) -> dict[str, float]:
    """Observed min/max widened by ``tolerance`` of the span, kept >= 0 for non-negative data, rounded outward."""
    values = series.dropna()
    if values.empty:
        return {}
    low, high = float(values.min()), float(values.max())
    span = (high - low) or abs(high) or 1.0
    lower, upper = low - tolerance * span, high + tolerance * span
    if low >= 0:
        lower = max(lower, 0.0)
    digits = 0 if kind == "int" else max(0, 2 - math.floor(math.log10(span)))
    scale = 10**digits
    return {
        "min": round(math.floor(lower * scale) / scale, digits),
        "max": round(math.ceil(upper * scale) / scale, digits),
    }


def _plain(value: Any, kind: ColumnType) -> Any:
    """A sample value as the plain Python type YAML and the config expect."""
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return str(value)
