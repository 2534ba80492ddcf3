"""Live performance: the served predictions joined with the labels that came later, per day and model version.

How a label finds its prediction (:func:`join`):

- a label with a ``prediction_id`` labels that prediction;
- a label with only an ``entity_id`` labels the newest champion prediction (not a shadow row) whose request
  carried that ``data.id`` value and that was served at or before the label's ``labeled_at``: the answer
  the truth is about. The entity's earlier predictions stay unlabelled, and a label older than all of them
  labels none;
- a shadow row (the challenger's answer to the same request row) takes the label of its champion row, the
  one with the same ``request_id`` and ``row_index``, so both models are judged on the same rows;
- a prediction labelled more than once takes the label with the newest ``labeled_at``: a correction replaces.

Metrics are training's (:func:`training.classification_metrics` from the probabilities the server logged,
:func:`training.regression_metrics` from the prediction), per ``(model_version, alias)``, and only over at
least ``serving.min_labelled_rows`` labelled rows; one undefined on the rows (a single class) is NaN.

A day's labels are taken as complete ``serving.label_delay_hours`` after the day ends (:func:`due_at`): only
then is the day computed, and again whenever a labels version labels its predictions (:func:`plan_days`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from retrain_assets.core import delta
from retrain_assets.core.delta import PREDICTIONS_TABLE
from retrain_assets.core.labels import ENTITY_ID, LABEL, LABELED_AT, LABELS_TABLE, PREDICTION_ID
from retrain_assets.core.monitoring import Finding, judge_performance
from retrain_assets.core.names import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.compute as pc

    from retrain_assets.core.config import RetrainConfig

KEY = ["request_id", "row_index"]  # one request row: its champion row and its shadow rows
JOIN_COLUMNS = ["prediction_id", "request_id", "row_index", "shadow", "served_at", "features"]
DAY_COLUMNS = [*JOIN_COLUMNS, "model_version", "alias", "prediction", "probabilities"]
DEFAULT_DAYS = 365  # the first day without history.start: a year before today, as the history partitions
_DAY = dt.timedelta(days=1)


def first_day(config: "RetrainConfig", today: Optional[dt.date] = None) -> dt.date:
    """The first day of ``live_performance``: ``history.start``, else a year before today."""
    return config.history.start or (today or dt.date.today()) - dt.timedelta(days=DEFAULT_DAYS)


def read_labels(config: "RetrainConfig", version: Optional[int] = None) -> "pd.DataFrame":
    """The labels table as of ``version`` (latest when ``None``); no rows when it does not exist yet."""
    from retrain_assets.core.labels import LABELS_SCHEMA

    uri = config.table_uri(LABELS_TABLE)
    if delta.latest_version(uri) is None:
        return LABELS_SCHEMA.empty_table().to_pandas()
    return delta.read_table(uri, version)


def read_predictions(config: "RetrainConfig", where: "pc.Expression", columns: list[str]) -> "pd.DataFrame":
    """The rows of the predictions table that ``where`` keeps (filtered in the scan)."""
    from retrain_assets.core.ledger import PREDICTIONS_SCHEMA

    uri = config.table_uri(PREDICTIONS_TABLE)
    if delta.latest_version(uri) is None:
        return PREDICTIONS_SCHEMA.empty_table().select(columns).to_pandas()
    return delta.read_table(uri, columns=columns, where=where)


def join(config: "RetrainConfig", predictions: "pd.DataFrame", labels: "pd.DataFrame") -> "pd.DataFrame":
    """``predictions`` with the ``label`` and ``labeled_at`` of each labelled row (missing where none; see the
    module docstring). ``predictions`` needs :data:`JOIN_COLUMNS`; ``features`` is read only for labels
    that name an entity."""
    import pandas as pd

    keyed = labels[labels[PREDICTION_ID].notna()]
    by_id = keyed.merge(predictions[["prediction_id", *KEY]], on=PREDICTION_ID)[[*KEY, LABEL, LABELED_AT]]
    found = [by_id]
    named = labels[labels[PREDICTION_ID].isna() & labels[ENTITY_ID].notna()]
    if config.data.id is not None and len(named):
        champions = predictions.loc[~predictions["shadow"].astype(bool), [*KEY, "served_at", "features"]]
        champions = champions.assign(entity_id=entity_ids(config, champions["features"])).dropna(subset=[ENTITY_ID])
        matched = pd.merge_asof(
            named[[ENTITY_ID, LABEL, LABELED_AT]].astype({ENTITY_ID: object}).sort_values(LABELED_AT),
            champions[[ENTITY_ID, *KEY, "served_at"]].astype({ENTITY_ID: object}).sort_values("served_at"),
            left_on=LABELED_AT,
            right_on="served_at",
            by=ENTITY_ID,
            direction="backward",
        ).dropna(subset=["request_id"])
        found.append(matched.astype({"row_index": "int64"})[[*KEY, LABEL, LABELED_AT]])
    labelled = pd.concat(found, ignore_index=True).sort_values(LABELED_AT, kind="stable")
    labelled = labelled.drop_duplicates(KEY, keep="last")
    return predictions.merge(labelled, on=KEY, how="left")


def entity_ids(config: "RetrainConfig", features: "pd.Series") -> "pd.Series":
    """The ``data.id`` value each request row carried (its ``features`` JSON), cast to the id's declared type
    and then to text, as :mod:`retrain_assets.core.labels` keeps ``entity_id``; missing where not sent."""
    import pandas as pd

    column = config.data.id
    assert column is not None
    values = pd.Series([json.loads(text).get(column) for text in features], index=features.index, dtype=object)
    return delta.cast_column(values, config.data.columns[column]).astype("string")


def metrics(config: "RetrainConfig", rows: "pd.DataFrame") -> dict[str, float]:
    """The task's metrics on labelled ``rows`` of one model version, from what the server logged."""
    import numpy as np

    from retrain_assets.core import training

    truth = [json.loads(text) for text in rows[LABEL]]
    if config.data.task == "regression":
        predicted = [float(json.loads(text)) for text in rows["prediction"]]
        return training.regression_metrics(np.asarray(truth, dtype=float), np.asarray(predicted))
    probabilities = [json.loads(text) for text in rows["probabilities"]]
    target = np.asarray([str(value) for value in truth], dtype=object)  # the server logs classes as text
    classes = list(probabilities[0])  # the model's classes, in its order
    classes += sorted(set(target) - set(classes))  # a class it never predicts, at probability 0
    proba = np.asarray([[row.get(name, 0.0) for name in classes] for row in probabilities], dtype=float)
    return training.classification_metrics(target, proba, classes)[0]


@dataclass(frozen=True)
class ModelDay:
    """One model version's rows of a day under one alias: ``metrics`` is empty below the minimum count."""

    model_version: int
    alias: str
    served: int
    labelled: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class PairedDay:
    """Champion and challenger on the same labelled request rows of a day (the shadow rows and theirs)."""

    champion_version: int
    challenger_version: int
    rows: int
    champion: dict[str, float]
    challenger: dict[str, float]


@dataclass(frozen=True)
class LiveDay:
    """A day of served predictions with their labels: per model, and the paired comparisons."""

    day: dt.date
    served: int
    labelled: int
    labels_version: Optional[int]
    predictions_version: Optional[int]
    models: list[ModelDay] = field(default_factory=list)
    paired: list[PairedDay] = field(default_factory=list)

    def model(self, version: int, alias: str) -> Optional[ModelDay]:
        return next((m for m in self.models if (m.model_version, m.alias) == (version, alias)), None)


def live_day(config: "RetrainConfig", start: dt.datetime, end: dt.datetime) -> LiveDay:
    """The rows served in ``[start, end)`` joined with every label landed so far (:func:`join`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    labels_version = delta.latest_version(config.table_uri(LABELS_TABLE))
    predictions_version = delta.latest_version(config.table_uri(PREDICTIONS_TABLE))
    labels = read_labels(config, labels_version)
    stamp = pa.timestamp("us", tz="UTC")
    served = pc.field("served_at")
    where = (served >= pa.scalar(start, stamp)) & (served < pa.scalar(end, stamp))
    named = labels[labels[PREDICTION_ID].isna()]
    if len(named):  # an entity's label may belong to a later prediction of that entity: read those too
        newest = pa.scalar(named[LABELED_AT].max().to_pydatetime(), stamp)
        where = where | (~pc.field("shadow") & (served >= pa.scalar(end, stamp)) & (served <= newest))
    joined = join(config, read_predictions(config, where, DAY_COLUMNS), labels)
    rows = joined[joined["served_at"] < end]
    return LiveDay(
        day=start.date(),
        served=int((~rows["shadow"].astype(bool)).sum()),
        labelled=int((rows[LABEL].notna() & ~rows["shadow"].astype(bool)).sum()),
        labels_version=labels_version,
        predictions_version=predictions_version,
        models=_models(config, rows),
        paired=_paired(config, rows, config.serving.min_labelled_rows),
    )


def paired_rows(config: "RetrainConfig", champion: int, challenger: int) -> PairedDay:
    """``champion`` and ``challenger`` (in shadow) on every labelled request row both answered, whatever the
    day and whether the day is due yet (both are judged on the same rows, so a label still to come biases
    neither): the evidence of ``promotion.live_check``. Metrics from its ``min_rows`` on; none below. The
    scan keeps only the two versions' rows (file statistics prune the rest: versions grow with time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rule = config.promotion.live_check
    assert rule is not None
    where = pc.field("model_version").isin(pa.array([champion, challenger], type=pa.int64()))
    rows = join(config, read_predictions(config, where, DAY_COLUMNS), read_labels(config))
    pairs = _paired(config, rows, rule.min_rows)
    found = (pair for pair in pairs if (pair.champion_version, pair.challenger_version) == (champion, challenger))
    return next(found, PairedDay(champion, challenger, 0, {}, {}))


def _models(config: "RetrainConfig", rows: "pd.DataFrame") -> list[ModelDay]:
    least = config.serving.min_labelled_rows
    found = []
    for (version, alias), group in rows.groupby(["model_version", "alias"], sort=True):
        labelled = group[group[LABEL].notna()]
        scored = metrics(config, labelled) if len(labelled) >= least else {}
        found.append(ModelDay(int(version), str(alias), len(group), len(labelled), scored))
    return found


def _paired(config: "RetrainConfig", rows: "pd.DataFrame", least: int) -> list[PairedDay]:
    """Per (champion, challenger) version pair, both scored on the labelled rows both answered (from ``least``
    rows on)."""
    labelled = rows[rows[LABEL].notna()]
    champion = labelled[(labelled["alias"] == CHAMPION) & ~labelled["shadow"].astype(bool)]
    challenger = labelled[(labelled["alias"] == CHALLENGER) & labelled["shadow"].astype(bool)]
    both = champion.merge(challenger, on=KEY, suffixes=("", "_shadow"))
    found = []
    for (mine, theirs), group in both.groupby(["model_version", "model_version_shadow"], sort=True):
        shadow = group[[f"{name}_shadow" for name in ("prediction", "probabilities")] + [LABEL]]
        shadow = shadow.set_axis(["prediction", "probabilities", LABEL], axis=1)
        enough = len(group) >= least
        found.append(
            PairedDay(
                int(mine),
                int(theirs),
                len(group),
                metrics(config, group) if enough else {},
                metrics(config, shadow) if enough else {},
            )
        )
    return found


def champion_finding(
    config: "RetrainConfig", day: LiveDay, champion: Optional[int], holdout: dict[str, float]
) -> Finding:
    """The performance rule of ``triggers.performance`` (:func:`monitoring.judge_performance`) for the champion
    version's live metric on ``day`` against its ``holdout`` metrics, over at least
    ``serving.min_labelled_rows`` labelled rows."""
    metric, least = config.promotion.metric, config.serving.min_labelled_rows
    if not config.triggers.performance.enabled:
        return Finding(False, "triggers.performance is off")
    if champion is None:
        return Finding(False, "no champion yet: nothing to judge")
    mine = day.model(champion, CHAMPION)
    labelled = mine.labelled if mine is not None else 0
    if mine is None or not mine.metrics:
        return Finding(
            False,
            f"champion v{champion}: {labelled} labelled rows served on {day.day}; at least {least} are judged "
            "(serving.min_labelled_rows)",
        )
    value, recorded = mine.metrics.get(metric, math.nan), holdout.get(metric, math.nan)
    base = (
        f"champion v{champion} live {metric} {value:.4f} on {labelled} labelled rows served on {day.day} "
        f"(holdout {recorded:.4f})"
    )
    return judge_performance(config, value, recorded, base, "these labelled rows")


@dataclass(frozen=True)
class DayPlan:
    """Which days to compute now, and what the next plan starts from: the labels version seen and the
    newest day already requested because it became due."""

    days: list[dt.date]
    labels_version: Optional[int]
    due_through: Optional[dt.date]


def plan_days(
    config: "RetrainConfig", now: dt.datetime, seen_labels: Optional[int], due_through: Optional[dt.date]
) -> DayPlan:
    """The days to compute at ``now``: those with served rows that became due after ``due_through``, and the
    due days whose predictions a labels version after ``seen_labels`` labelled. Reads the Delta logs of the
    two tables; the labels and predictions themselves only when a labels version landed."""
    labels_version = delta.latest_version(config.table_uri(LABELS_TABLE))
    first, last_due = first_day(config, now.date()), config.serving.last_due_day(now)
    begin = max(first, due_through + _DAY) if due_through is not None else first
    days = set(served_days(config, begin, last_due)) if begin <= last_due else set()
    newest_due = max(days, default=due_through)
    if labels_version is not None and (seen_labels is None or labels_version > seen_labels):
        days.update(day for day in labelled_days(config, seen_labels, labels_version) if first <= day <= last_due)
    return DayPlan(sorted(days), labels_version, newest_due)


def served_days(config: "RetrainConfig", begin: dt.date, end: dt.date) -> list[dt.date]:
    """The days in ``[begin, end]`` some predictions file holds rows of, from the file statistics of the
    predictions table (its Delta log only: the ledger appends small files, so the spans are tight)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    uri = config.table_uri(PREDICTIONS_TABLE)
    if delta.latest_version(uri) is None:
        return []
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    days: set[dt.date] = set()
    for low, high in zip(actions["min.served_at"].to_pylist(), actions["max.served_at"].to_pylist(), strict=True):
        start = begin if low is None else max(begin, _utc_date(low))  # no statistics: any day may hold rows
        stop = end if high is None else min(end, _utc_date(high))
        days.update(start + _DAY * offset for offset in range((stop - start).days + 1))
    return sorted(days)


def _utc_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(dt.timezone.utc).date() if moment.tzinfo else moment.date()


def labelled_days(config: "RetrainConfig", after: Optional[int], upto: int) -> set[dt.date]:
    """The days of the predictions that the labels versions in ``(after, upto]`` label (their rows only)."""
    import pandas as pd

    uri = config.table_uri(LABELS_TABLE)
    batches = [delta.read_batch(uri, version) for version in delta.batch_versions(uri, after, upto)]
    if not batches:
        return set()
    labels = pd.concat([batch.to_pandas() for batch in batches], ignore_index=True)
    labelled = join(config, read_predictions(config, _candidates(labels), JOIN_COLUMNS), labels)
    stamps = labelled.loc[labelled[LABEL].notna(), "served_at"]
    return {stamp.date() for stamp in stamps.dt.tz_convert("UTC")}


def _candidates(labels: "pd.DataFrame") -> "pc.Expression":
    """The predictions ``labels`` can join: those they name, and the champion rows served up to the newest
    ``labeled_at`` of a label that names an entity."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = labels[PREDICTION_ID].dropna().tolist()
    where = pc.field("prediction_id").isin(pa.array(ids, type=pa.string()))
    named = labels[labels[PREDICTION_ID].isna() & labels[ENTITY_ID].notna()]
    if len(named):
        newest = pa.scalar(named[LABELED_AT].max().to_pydatetime(), pa.timestamp("us", tz="UTC"))
        where = where | (~pc.field("shadow") & (pc.field("served_at") <= newest))
    return where
