"""Prediction drift and feature drift on served rows, on a model trained on real data (scikit-learn's breast
cancer set), its served rows written through the real ledger into a real Delta predictions table."""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd
import pytest

from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.delta import PREDICTIONS_TABLE
from retrain_assets.core.inference import infer_config
from retrain_assets.core.ledger import PredictionLedger
from retrain_assets.core.served_drift import (
    SCORES_KEY,
    prediction_drift,
    served,
    served_feature_drift,
)
from retrain_assets.core.serving import ServedModel, ledger_rows, score
from retrain_assets.core.training import fit_and_record, model_code

DAY = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def trained() -> tuple[RetrainConfig, object, dict, pd.DataFrame]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=5).reset_index(drop=True)
    config = infer_config(frame.iloc[:300], "target", project="cancer")
    fitted = fit_and_record(lambda: frame.iloc[:300], config, 0, model_code(config))
    return config, fitted.logged.pipeline, fitted.logged.profile, frame.iloc[300:].reset_index(drop=True)


def serve_rows(config: RetrainConfig, pipeline, rows: pd.DataFrame, folder) -> str:
    """Score ``rows`` as the server does and write them through the ledger into a predictions table of its
    own under ``folder``; the table's URI."""
    model = ServedModel("cancer", 1, "champion", 0, None, pipeline)
    inputs = rows.drop(columns=["target"])
    made = ledger_rows(model, inputs, score(model, inputs, config), uuid.uuid4().hex, DAY, 1.0)
    uri = str(folder / PREDICTIONS_TABLE)
    ledger = PredictionLedger(uri, folder / "journal", flush_rows=10_000, flush_seconds=60).start()
    ledger.record(made)
    ledger.close()
    return uri


def test_the_score_reference_is_logged_with_the_drift_profile(trained):
    config, _, profile, _ = trained
    reference = profile[SCORES_KEY]
    assert reference["features"] == {"score": "float"}
    assert reference["columns"]["score"]["count"] > 0  # the holdout's scores, as quantiles: no row kept


def test_served_rows_like_the_training_data_do_not_drift(trained, tmp_path):
    config, pipeline, profile, rest = trained
    uri = serve_rows(config, pipeline, rest, tmp_path)
    rows = served(uri, 1, DAY, DAY + dt.timedelta(days=1))
    assert len(rows) == len(rest)
    found = prediction_drift(config, profile, rows, 1)
    assert not found.fired, found.message
    assert not served_feature_drift(config, profile, rows, 1).fired
    assert served(uri, 2, DAY, DAY + dt.timedelta(days=1)).empty  # another version served none of them


def test_served_rows_of_one_kind_drift_in_scores_and_inputs(trained, tmp_path):
    config, pipeline, profile, rest = trained
    benign = rest[rest["target"] == 1]  # only one class reaches the model: its scores pile up near 1
    big = benign.assign(**{"mean radius": benign["mean radius"] * 1.6})
    uri = serve_rows(config, pipeline, big, tmp_path)
    rows = served(uri, 1, DAY, DAY + dt.timedelta(days=1))
    found = prediction_drift(config, profile, rows, 1)
    assert found.fired and "prediction drift" in found.message, found.message
    inputs = served_feature_drift(config, profile, rows, 1)
    assert inputs.fired and "mean radius" in inputs.message, inputs.message


def test_too_few_served_rows_are_not_judged(trained, tmp_path):
    config, pipeline, profile, rest = trained
    uri = serve_rows(config, pipeline, rest.iloc[:5], tmp_path)
    rows = served(uri, 1, DAY, DAY + dt.timedelta(days=1))
    found = prediction_drift(config, profile, rows, 1)
    assert not found.fired and "at least" in found.message
