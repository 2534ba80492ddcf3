"""A registered model version loaded for serving, and what it answers for a frame of requests.

The version is read from the registry as every other path reads it (:meth:`Registry.load`: skops, trusted
types only), and scored through :func:`training.model_inputs`, the one ``features`` step of training,
evaluation and backtests, so serving cannot drift from them. Before it serves, a loaded version must
score the reference rows it was trained with (:func:`smoke_rows`): a version that loads but cannot
predict is refused like one that does not load.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.registry import Registry


class ModelUnservable(RuntimeError):
    """A version that could not be loaded or could not score; the message names it and why."""


@dataclass
class ServedModel:
    """One registered version in memory: ``alias`` is the alias it was loaded for (champion or challenger)."""

    name: str
    version: int
    alias: str
    delta_version: Optional[int]
    code_version: Optional[str]
    pipeline: Any = field(repr=False)
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "version": str(self.version),
            "alias": self.alias,
            "delta_version": self.delta_version,
            "code_version": self.code_version,
        }


@dataclass
class Scored:
    """What a model answered for a frame: one prediction per row, and for a classifier the class
    probabilities; ``scores`` is what prediction drift reads (see :mod:`retrain_assets.core.ledger`)."""

    predictions: list[Any]
    probabilities: Optional[list[dict[str, float]]]
    scores: list[Optional[float]]


def load(config: "RetrainConfig", registry: "Registry", alias: str) -> Optional[ServedModel]:
    """The version ``alias`` points at, loaded and smoke-tested; ``None`` when the alias points nowhere.

    Raises:
        ModelUnservable: it points at a version that does not load or does not score.
    """
    version = registry.by_alias(alias)
    if version is None:
        return None
    what = f"model {registry.name!r} version {version.version} ({alias})"
    try:
        pipeline = registry.load(str(version.version))
    except Exception as exc:
        raise ModelUnservable(f"{what}: does not load: {type(exc).__name__}: {exc}") from exc
    served = ServedModel(
        name=registry.name,
        version=int(version.version),
        alias=alias,
        delta_version=_int(version.tags.get("delta_version")),
        code_version=version.tags.get("code_version"),
        pipeline=pipeline,
    )
    rows = smoke_rows(config, registry.reference_profile(version))
    if rows is not None:
        try:
            score(served, rows, config)
        except Exception as exc:
            raise ModelUnservable(f"{what}: loads but does not score: {type(exc).__name__}: {exc}") from exc
    return served


def smoke_rows(config: "RetrainConfig", profile: Optional[dict[str, Any]]) -> "Optional[pd.DataFrame]":
    """One row of typical feature values from the version's drift reference (a numeric column's median, a
    category's most frequent value), typed as a request is; ``None`` for a version logged without one."""
    import pandas as pd

    from retrain_assets.core.drift import NULL_KEY, OTHER_KEY
    from retrain_assets.core.payloads import typed

    columns = (profile or {}).get("columns") or {}
    row: dict[str, Any] = {}
    for name in config.data.features:
        summary = columns.get(name) or {}
        shares = summary.get("fractions")
        if isinstance(shares, dict):
            seen = {value: share for value, share in shares.items() if value not in (NULL_KEY, OTHER_KEY)}
            row[name] = max(seen, key=seen.__getitem__) if seen else None
        else:
            cdf = summary.get("cdf") or {}
            row[name] = next(
                (p for p, at in zip(cdf.get("points", []), cdf.get("at", []), strict=True) if at >= 0.5), None
            )
        if row[name] is None:
            return None
        if config.data.columns[name] == "int":
            row[name] = round(row[name])
    return typed(pd.DataFrame([row], dtype=object), config)


def score(model: ServedModel, frame: "pd.DataFrame", config: "RetrainConfig") -> Scored:
    """``model``'s answer for ``frame``, through the project's ``features`` step."""
    from retrain_assets.core.training import model_inputs

    inputs = model_inputs(frame, config)
    pipeline = model.pipeline
    if config.data.task == "regression":
        values = pipeline.predict(inputs)
        return Scored([_plain(v) for v in values], None, [float(v) for v in values])
    proba = pipeline.predict_proba(inputs)
    classes = [_plain(c) for c in pipeline.classes_]
    predicted = [classes[i] for i in proba.argmax(axis=1)]
    probabilities = [dict(zip(map(str, classes), map(float, row), strict=True)) for row in proba]
    scores: list[Optional[float]] = [float(row[-1]) if len(classes) == 2 else None for row in proba]
    return Scored(predicted, probabilities, scores)


def ledger_rows(
    model: ServedModel,
    frame: "pd.DataFrame",
    scored: Scored,
    request_id: str,
    served_at: Any,
    latency_ms: float,
    shadow: bool = False,
) -> "pa.Table":
    """The ledger's rows for one request, a table of :data:`retrain_assets.core.ledger.PREDICTIONS_SCHEMA`, each
    with a new prediction id. Built as columns, and the JSON columns encoded for the whole request at once
    (pandas' encoder: 15 significant digits, missing values as null): row by row, this took longer than the
    scoring."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.ledger import PREDICTIONS_SCHEMA

    rows = len(frame)
    ids = os.urandom(16 * rows).hex()  # 128 random bits per row, one system call for the request
    probabilities: list[Optional[str]] = [None] * rows
    if scored.probabilities:
        keys = [json.dumps(label) + ":" for label in scored.probabilities[0]]  # every row has the same classes
        probabilities = [
            "{" + ",".join(key + repr(p) for key, p in zip(keys, row.values(), strict=True)) + "}"
            for row in scored.probabilities
        ]
    columns = {
        "prediction_id": [ids[32 * index : 32 * index + 32] for index in range(rows)],
        "request_id": [request_id] * rows,
        "row_index": np.arange(rows, dtype=np.int64),
        "model_name": [model.name] * rows,
        "model_version": [model.version] * rows,
        "alias": [model.alias] * rows,
        "shadow": [shadow] * rows,
        "served_at": [served_at] * rows,
        "features": frame.to_json(orient="records", lines=True, date_format="iso", double_precision=15).splitlines(),
        "prediction": pd.Series(scored.predictions, dtype=object).to_json(orient="records", lines=True).splitlines(),
        "probabilities": probabilities,
        "score": scored.scores,
        "latency_ms": [float(latency_ms)] * rows,
    }
    return pa.table(columns, schema=PREDICTIONS_SCHEMA)


def _plain(value: "np.generic | Any") -> Any:
    """A NumPy scalar as the Python value JSON writes."""
    return value.item() if hasattr(value, "item") else value


def _int(value: Optional[str]) -> Optional[int]:
    return int(value) if value not in (None, "") else None
