"""Labelled predictions back into ``raw_data``: `retrain label --feed` makes them one batch.

The batch holds the champion rows (never shadow rows: they repeat the request) that labels landed since the
last feed labelled and that no earlier labels version had labelled (so a correction is not fed twice): each
row's features as the client sent them, its label as ``data.target``, ``data.timestamp`` from ``served_at``
where the client sent none, and ``data.id`` from the features. It is written as a Parquet file into
``storage.landing_dir`` (else ``<home>/feedback``) and landed with :func:`landing.ingest_file`, so it is
refused, quarantined and validated as any batch. Its commit records the newest labels version it covers
(:data:`FED_KEY`): the next feed starts after it, which makes each labels version fed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from retrain_assets.core import delta, live
from retrain_assets.core.labels import LABEL, LABELS_TABLE, PREDICTION_ID

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.config import RetrainConfig

FED_KEY = "retrain.fed_labels_through"  # raw_data commit metadata: the newest labels version the batch covers


class FeedRefused(ValueError):
    """The labelled predictions cannot make a batch; the message says why and names a prediction."""


@dataclass(frozen=True)
class Feedback:
    """The labels versions ``(after, through]`` and the batch they make; ``table`` is ``None`` when there is
    nothing to feed, and ``reason`` says why."""

    after: int
    through: Optional[int]
    table: "Optional[pa.Table]"
    reason: str

    @property
    def metadata(self) -> dict[str, str]:
        return {FED_KEY: str(self.through)}

    @property
    def file_name(self) -> str:
        return f"feedback-labels-v{self.after + 1}-to-v{self.through}.parquet"


def fed_through(config: "RetrainConfig") -> int:
    """The newest labels version a landed batch covers (-1 before the first feed)."""
    entries = delta.history(config.table_uri(delta.RAW_TABLE))
    return max((int(entry[FED_KEY]) for entry in entries if FED_KEY in entry), default=-1)


def collect(config: "RetrainConfig") -> Feedback:
    """The batch of labelled predictions not fed yet (see the module docstring).

    Raises:
        FeedRefused: ``data.id`` is declared and a row to feed was served without it.
    """
    import pandas as pd
    import pyarrow.compute as pc

    uri = config.table_uri(LABELS_TABLE)
    through = delta.latest_version(uri)
    after = fed_through(config)
    if through is None:
        return Feedback(after, None, None, "no labels landed yet (`retrain label FILE` lands them)")
    if through <= after:
        return Feedback(after, through, None, f"every labels version up to {through} was fed already")
    versions = delta.batch_versions(uri, after, through)
    new = pd.concat([delta.read_batch(uri, version).to_pandas() for version in versions], ignore_index=True)
    champions = live.read_predictions(config, ~pc.field("shadow"), live.JOIN_COLUMNS)
    rows = _labelled(config, champions, new)
    if after >= 0 and len(rows):
        earlier = _labelled(config, champions, live.read_labels(config, after))
        rows = rows[~rows[PREDICTION_ID].isin(earlier[PREDICTION_ID])]
    if rows.empty:
        return Feedback(after, through, None, f"labels versions {after + 1} to {through} label no prediction to feed")
    return Feedback(after, through, _batch(config, rows.sort_values(["served_at", PREDICTION_ID])), "")


def write(config: "RetrainConfig", feedback: Feedback) -> Path:
    """The batch as a Parquet file in ``storage.landing_dir`` (else ``<home>/feedback``), ready to ingest."""
    import os

    import pyarrow.parquet as pq

    if feedback.table is None:
        raise ValueError(f"nothing to feed: {feedback.reason}")
    folder = config.landing_dir or config.home / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / feedback.file_name
    partial = path.with_name(path.name + ".partial")
    pq.write_table(feedback.table, partial)
    os.replace(partial, path)  # a half-written file never carries the batch's name
    return path


def _labelled(config: "RetrainConfig", champions: "pd.DataFrame", labels: "pd.DataFrame") -> "pd.DataFrame":
    joined = live.join(config, champions, labels)
    return joined[joined[LABEL].notna()]


def _batch(config: "RetrainConfig", rows: "pd.DataFrame") -> "pa.Table":
    """The rows as a batch of ``data.columns``: features, the label as the target, the served time where the
    client sent no timestamp; :class:`FeedRefused` when ``data.id`` is declared and a row lacks it."""
    import json

    import pandas as pd

    data = config.data
    sent = pd.DataFrame([json.loads(text) for text in rows["features"]], index=rows.index)
    frame = sent.reindex(columns=list(data.columns)).astype(object)
    frame[data.target] = [json.loads(text) for text in rows[LABEL]]
    if data.timestamp is not None:
        stamps = delta.cast_column(frame[data.timestamp], "timestamp")
        frame[data.timestamp] = stamps.where(stamps.notna(), rows["served_at"])
    if data.id is not None:
        missing = rows.loc[frame[data.id].isna(), PREDICTION_ID]
        if len(missing):
            raise FeedRefused(
                f"{len(missing)} of {len(rows)} labelled predictions to feed carry no {data.id!r} (data.id) in "
                f"their features, e.g. prediction {missing.iloc[0]!r}: raw_data needs it (unique ids, a stable "
                f"holdout); clients should send {data.id!r} with each request. Nothing was fed"
            )
    return delta.to_table_schema(frame.reset_index(drop=True), data.columns, "the labelled predictions")
