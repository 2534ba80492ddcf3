"""A first ``retrain.yaml`` inferred from a data sample: what ``retrain init DATA --target COL`` writes.

Types, task, validation rules and a baseline model come from the sample; the result is a validated
:class:`~retrain_assets.config.RetrainConfig` that the user reviews before the first run.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import pandas as pd

from retrain_assets.config import METRICS, ColumnType, RetrainConfig, parse_config

MAX_CLASSIFICATION_INTS = 20

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


def infer_config(
    frame: pd.DataFrame,
    target: str,
    task: Optional[str] = None,
    timestamp: Optional[str] = None,
    id_column: Optional[str] = None,
    tolerance: float = 0.1,
    max_categories: int = 50,
    project: str = "retrain",
) -> RetrainConfig:
    """Infer column types, task, validation rules and a baseline model from a sample.

    Args:
        frame: The data sample.
        target: Column to predict.
        task: ``classification`` or ``regression``; inferred from the target when omitted.
        timestamp: Event-time column; a string column is accepted when it parses as datetimes. When omitted,
            the sample's only datetime column, if any.
        id_column: Row identifier column, if any.
        tolerance: Numeric ranges are the observed range widened by this fraction of it on each side.
        max_categories: Text columns with at most this many distinct values are categories, others strings.
        project: Project name, also used as the MLflow experiment and registered model name.

    Returns:
        The validated config.

    Raises:
        ValueError: A role names a missing column, datetime columns are left as features, or the task is
            unknown or does not suit the target.
    """
    for flag, name in (("--target", target), ("--timestamp", timestamp), ("--id", id_column)):
        if name is not None and name not in frame.columns:
            known = ", ".join(map(str, frame.columns))
            raise ValueError(f"{flag}: column {name!r} is not in the sample (columns: {known})")
    columns = {name: _column_type(frame[name], name == timestamp, max_categories) for name in frame.columns}
    if timestamp is not None and columns[timestamp] != "timestamp":
        raise ValueError(f"--timestamp: column {timestamp!r} does not hold datetimes")
    roles = (timestamp, target, id_column)
    stamps = [name for name, kind in columns.items() if kind == "timestamp" and name not in roles]
    if timestamp is None and len(stamps) == 1:
        timestamp = stamps.pop()
    if stamps:
        raise ValueError(f"--timestamp: datetime columns {stamps} cannot be features; name the event-time column")
    task = task or _infer_task(frame[target], columns[target])
    if task not in METRICS:
        raise ValueError(f"--task: {task!r} is not one of {', '.join(METRICS)}")
    if task == "regression" and columns[target] not in ("int", "float"):
        raise ValueError(f"--task: regression needs a numeric target, column {target!r} is {columns[target]}")
    if task == "classification" and columns[target] == "float":
        raise ValueError(f"--task: classification needs discrete target values, column {target!r} is float")

    rules: dict[str, dict[str, Any]] = {}
    for name, kind in columns.items():
        if name == timestamp:
            continue
        if name == id_column:
            rules[name] = {"nullable": False}
        elif name == target:
            rules[name] = {"nullable": False, **(_range(frame[name], kind, tolerance) if task == "regression" else {})}
        else:
            rules[name] = {"nullable": bool(frame[name].isna().any()), **_value_rule(frame[name], kind, tolerance)}
    validation: dict[str, Any] = {"columns": rules, "min_rows": 1}
    if task == "classification":
        labels = frame[target].dropna()
        smallest = float(labels.value_counts(normalize=True).min())
        validation["target_classes"] = sorted(_plain(value, columns[target]) for value in labels.unique())
        validation["min_class_fraction"] = max(0.01, math.floor(smallest / 2 * 100 + 1e-9) / 100)

    raw = {
        "project": project,
        "mlflow": {"experiment": project, "model_name": project},
        "data": {"target": target, "task": task, "timestamp": timestamp, "id": id_column, "columns": columns},
        "validation": validation,
        **_MODEL[task],
    }
    return parse_config(raw, source="inferred config")


def render_config(config: RetrainConfig, source: str) -> str:
    """The config as ``retrain.yaml`` text, headed by a comment saying where it came from.

    Args:
        config: The config to write, usually from :func:`infer_config`.
        source: The sample it was inferred from, as the user named it.

    Returns:
        YAML that :func:`~retrain_assets.config.parse_config` reads back into an equal config.
    """
    header = (
        f"# Inferred by `retrain init` from {source}.\n"
        "# Review it before the first run: the numeric ranges (min/max) and category domains under\n"
        "# validation.columns only reflect the sample, and a batch outside them is rejected. So is a batch\n"
        "# over validation.max_batch_growth x the usual size, or with data.timestamp values older than\n"
        "# validation.max_event_age_days (or after the time it lands): set them to what your source can send.\n"
    )
    return header + "\n" + re.sub(r"\n(?=\w)", "\n\n", config.to_yaml())


def _column_type(series: pd.Series, is_timestamp: bool, max_categories: int) -> ColumnType:
    """The config type of one sample column."""
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
    if is_timestamp:
        try:
            pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError):
            return "string"
        return "timestamp"
    return "category" if values.nunique() <= max_categories else "string"


def _infer_task(target: pd.Series, kind: ColumnType) -> str:
    """Classification for labels and few-valued ints, else regression."""
    if kind in ("bool", "category", "string"):
        return "classification"
    if kind == "int" and target.nunique() <= MAX_CLASSIFICATION_INTS:
        return "classification"
    return "regression"


def _value_rule(series: pd.Series, kind: ColumnType, tolerance: float) -> dict[str, Any]:
    """Range for numeric columns, domain for categories, nothing for the rest."""
    if kind in ("int", "float"):
        return _range(series, kind, tolerance)
    if kind == "category":
        return {"domain": sorted(_plain(value, kind) for value in series.dropna().unique())}
    return {}


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
