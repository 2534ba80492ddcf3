"""Scoring requests as MLflow's model server reads them, parsed into a typed frame or refused naming the field.

The formats are MLflow's scoring protocol, so clients written for ``mlflow models serve`` work unchanged:
a JSON object with exactly one of ``dataframe_split`` (``{"columns": [...], "data": [[...]]}``),
``dataframe_records`` (``[{column: value}]``), ``instances`` or ``inputs`` (records, or ``{column: [values]}``),
plus an optional ``params`` object (accepted, unused); or a CSV body with a header row. The Open Inference
Protocol v2 body (``{"inputs": [{"name", "shape", "datatype", "data"}]}``, one input per column) is read by
:func:`parse_v2`.

Columns are the project's: every feature in ``data.columns`` is required; the id, the timestamp and the
ignored columns may be sent (the ``model.features`` function may use them, and the id joins late labels);
the target and any other column are refused. Each value is cast to its declared type as ``ingest`` casts it;
one that does not convert is refused naming its column and row. A refusal is a :class:`PayloadError`, which
the server answers with a 4xx; nothing is half-read into the ledger.
"""

from __future__ import annotations

import io
import json
import math
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import pandas as pd

    from retrain_assets.core.config import RetrainConfig

JSON_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_ROWS = 100_000  # rows in one request; a client with more sends several
_SHOWN = 5  # column names quoted in a message before "..."


class PayloadError(ValueError):
    """A request the server refuses: ``status`` (400, 413, 415 or 422) and a message naming the field."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse(body: bytes, content_type: Optional[str], config: "RetrainConfig") -> "pd.DataFrame":
    """The rows of an MLflow scoring request, typed as ``data.columns`` declares (see the module docstring)."""
    if not body.strip():
        raise PayloadError("empty body: send a JSON object with one of " + ", ".join(JSON_FORMATS) + ", or CSV")
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind == "text/csv":
        return typed(_read_csv(body), config)
    if kind != "application/json":
        raise PayloadError(f"content type {kind!r}: send application/json or text/csv", status=415)
    document = _json(body)
    if not isinstance(document, dict):
        raise PayloadError(f"body: a JSON {_json_kind(document)}; expected an object with one of {JSON_FORMATS}")
    given = [key for key in JSON_FORMATS if key in document]
    unknown = sorted(set(document) - {*JSON_FORMATS, "params"})
    if unknown:
        raise PayloadError(f"body: unknown field {_names(unknown)}; expected one of {JSON_FORMATS} (and params)")
    if len(given) != 1:
        raise PayloadError(f"body: {'no' if not given else 'more than one'} of the fields {JSON_FORMATS}; send one")
    if "params" in document and not isinstance(document["params"], dict):
        raise PayloadError("params: must be a JSON object")
    field = given[0]
    value = document[field]
    if field == "dataframe_split":
        frame = _split(value)
    elif field == "dataframe_records" or isinstance(value, list):
        frame = _records(value, field)
    elif isinstance(value, dict):
        frame = _columns(value, field)
    else:
        raise PayloadError(f"{field}: a JSON {_json_kind(value)}; expected a list of records or an object of columns")
    return typed(frame, config)


def parse_v2(body: bytes, config: "RetrainConfig") -> "pd.DataFrame":
    """The rows of an Open Inference Protocol v2 request: one input per column, each a flat ``data`` list."""
    if not body.strip():
        raise PayloadError('empty body: send {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    document = _json(body)
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("inputs: expected a non-empty list of {name, shape, datatype, data}")
    columns: dict[str, Any] = {}
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise PayloadError(f"inputs[{index}]: expected an object with a string name")
        name, data = tensor["name"], tensor.get("data")
        if not isinstance(data, list):
            raise PayloadError(f"inputs[{index}] ({name!r}): data must be a list")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or [s for s in shape if not isinstance(s, int)] or math.prod(shape) != len(data):
            raise PayloadError(f"inputs[{index}] ({name!r}): shape {shape!r} does not match {len(data)} values")
        if name in columns:
            raise PayloadError(f"inputs[{index}]: column {name!r} sent twice")
        columns[name] = data
    return typed(_columns(columns, "inputs"), config)


def typed(frame: "pd.DataFrame", config: "RetrainConfig") -> "pd.DataFrame":
    """``frame`` with the project's columns checked and cast (see the module docstring)."""
    from retrain_assets.core.delta import cast_column

    data = config.data
    if len(frame) == 0:
        raise PayloadError("no rows: the request holds a header but no data")
    if len(frame) > MAX_ROWS:
        raise PayloadError(f"{len(frame):,} rows in one request; at most {MAX_ROWS:,}", status=413)
    names = [str(name) for name in frame.columns]
    if len(set(names)) != len(names):
        raise PayloadError(f"column {_names(sorted({n for n in names if names.count(n) > 1}))} sent twice")
    frame.columns = names
    optional = {data.id, data.timestamp, *data.ignore} - {None}
    features = data.features  # a property that builds its dict: once, not once per column
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise PayloadError(f"missing column {_names(missing)}: every feature of data.columns is required", status=422)
    if data.target in frame.columns:
        raise PayloadError(f"column {data.target!r} is the target: send features, not labels", status=422)
    unknown = [name for name in frame.columns if name not in features and name not in optional]
    if unknown:
        raise PayloadError(f"unknown column {_names(unknown)}: not in data.columns", status=422)
    cast: dict[str, Any] = {}
    sent = dict(zip(frame.columns, frame.to_numpy(dtype=object).T.tolist(), strict=True))
    for name in frame.columns:
        kind = data.columns[name]
        converted = _as_sent(sent[name], kind)
        if converted is None:
            values = frame[name]
            _refuse_nested(values, name)
            converted = cast_column(values, kind)
            lost = converted.isna() & values.notna()
            if kind == "float":
                lost |= values.map(lambda v: isinstance(v, bool))  # True is not a number a client meant
            if lost.any():
                row = int(lost.to_numpy().argmax())
                raise PayloadError(
                    f"column {name!r}, row {row}: {values.iloc[row]!r} is not a {kind} (data.columns declares {kind})",
                    status=422,
                )
        cast[name] = converted
    import pandas as pd

    return pd.DataFrame(cast, index=pd.RangeIndex(len(frame)))


_SENT_AS = {"int": (int,), "float": (int, float), "category": (str,), "string": (str,), "bool": (bool,)}
_DTYPES = {"int": "Int64", "category": "string", "string": "string", "bool": "boolean"}
_EXACT_INT = 2**53  # below it a float holds every int exactly, so cast_column's range check cannot differ


def _as_sent(items: list[Any], kind: str) -> Any:
    """A column's values as :func:`~retrain_assets.core.delta.cast_column` casts them, built in one step when every
    value is already what JSON sends for ``kind`` (an int for int, a number for float, a string for category and
    string, a bool for bool): the usual request, for which the general cast's pandas passes cost more than the
    model's ``predict``. ``None`` for anything else (a null, a string of digits, a timestamp...): that takes the
    general cast and its checks."""
    import numpy as np
    import pandas as pd

    accepted = _SENT_AS.get(kind)
    if accepted is None or not all(type(value) in accepted for value in items):  # type(): a bool is no int here
        return None
    if kind in ("int", "float") and not all(
        type(value) is float or -_EXACT_INT < value < _EXACT_INT for value in items
    ):
        return None
    return np.array(items, dtype="float64") if kind == "float" else pd.array(items, dtype=_DTYPES[kind])


def _refuse_nested(values: "pd.Series", name: str) -> None:
    nested = values.map(lambda v: isinstance(v, (dict, list)))
    if nested.any():
        row = int(nested.to_numpy().argmax())
        raise PayloadError(f"column {name!r}, row {row}: a nested {type(values.iloc[row]).__name__}", status=422)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body: not valid JSON ({exc})") from None
    except RecursionError:
        raise PayloadError("body: JSON nested too deeply") from None


def _read_csv(body: bytes) -> "pd.DataFrame":
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise PayloadError(f"CSV body: cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def _split(value: Any) -> "pd.DataFrame":
    import pandas as pd

    if not isinstance(value, dict):
        raise PayloadError(f"dataframe_split: a JSON {_json_kind(value)}; expected {{columns, data}}")
    extra = sorted(set(value) - {"columns", "data", "index"})
    if extra:
        raise PayloadError(f"dataframe_split: unknown field {_names(extra)}; expected columns, data (and index)")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or [c for c in columns if not isinstance(c, str)]:
        raise PayloadError("dataframe_split.columns: expected a list of column names")
    if not isinstance(data, list):
        raise PayloadError("dataframe_split.data: expected a list of rows")
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise PayloadError(f"dataframe_split.data[{index}]: expected a list of {len(columns)} values")
    return pd.DataFrame(data, columns=columns, dtype=object)


def _records(value: Any, field: str) -> "pd.DataFrame":
    import pandas as pd

    if not isinstance(value, list):
        raise PayloadError(f"{field}: a JSON {_json_kind(value)}; expected a list of records")
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise PayloadError(f"{field}[{index}]: a JSON {_json_kind(record)}; expected an object of column values")
    columns = list(dict.fromkeys(name for record in value for name in record))
    return pd.DataFrame.from_records(value, columns=columns).astype(object)


def _columns(value: dict, field: str) -> "pd.DataFrame":
    import pandas as pd

    lengths = {name: len(values) if isinstance(values, list) else None for name, values in value.items()}
    scalar = [name for name, length in lengths.items() if length is None]
    if scalar:
        raise PayloadError(f"{field}: column {_names(scalar)} is not a list of values")
    if len(set(lengths.values())) > 1:
        raise PayloadError(f"{field}: columns of different lengths {lengths}")
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in value.items()})


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
