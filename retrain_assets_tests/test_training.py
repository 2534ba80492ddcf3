"""The model logic: stable holdout, pipeline, metrics, promotion decision."""

import math

import pytest

from retrain_assets import synthetic, training
from retrain_assets.config import parse_config

from .conftest import START


def churn_config(**overrides):
    raw = {
        "data": {
            "target": "churned",
            "task": "classification",
            "timestamp": "event_time",
            "id": "customer_id",
            "columns": synthetic.CHURN_TYPES,
        },
        "promotion": {"metric": "roc_auc", "minimum": 0.6, "margin": 0.01},
    }
    for key, value in overrides.items():
        section, field = key.split("__")
        raw.setdefault(section, {})[field] = value
    return parse_config(raw)


def frames(days=3, rows=500):
    return [frame for _, frame in synthetic.churn_days(START, days, rows, seed=3)]


def test_holdout_rows_stay_holdout_as_the_table_grows():
    import pandas as pd

    config = churn_config()
    first = frames(1)[0]
    grown = pd.concat(frames(3), ignore_index=True)

    early = training.holdout_mask(first, config)
    late = training.holdout_mask(grown, config)[: len(first)]
    assert (early == late).all()
    assert 0.15 < late.mean() < 0.25


def test_split_refuses_too_little_data():
    with pytest.raises(ValueError, match="cannot split 1 rows"):
        training.split(frames(1)[0].head(1), churn_config())


def test_trained_pipeline_scores_with_all_metrics_and_handles_unseen_categories():
    import pandas as pd

    config = churn_config()
    train, holdout = training.split(pd.concat(frames(), ignore_index=True), config)
    pipeline = training.train(train, config)
    metrics = training.evaluate(pipeline, holdout, config)
    assert set(metrics) == {"accuracy", "f1", "log_loss", "roc_auc"}
    assert metrics["roc_auc"] > 0.7
    odd = holdout.head(3).copy()
    odd["region"] = ["atlantis", None, "north"]
    assert pipeline.predict_proba(odd[list(config.data.features)]).shape == (3, 2)


def test_same_seed_same_model():
    import pandas as pd

    config = churn_config(model__estimator="random_forest", model__params={"n_estimators": 20})
    train, holdout = training.split(pd.concat(frames(2), ignore_index=True), config)
    first = training.evaluate(training.train(train, config), holdout, config)
    second = training.evaluate(training.train(train, config), holdout, config)
    assert first == second


def test_bad_hyper_parameter_names_the_key():
    config = churn_config(model__params={"not_a_param": 1})
    with pytest.raises(ValueError, match="model.params"):
        training.build_pipeline(config)


def test_params_hash_follows_params_only():
    assert training.params_hash(churn_config()) == training.params_hash(churn_config())
    assert training.params_hash(churn_config()) != training.params_hash(churn_config(model__params={"C": 0.5}))


@pytest.mark.parametrize(
    "candidate, champion, promote, words",
    [
        (0.80, None, True, "no champion yet"),
        (0.55, None, False, "misses the minimum"),
        (0.55, 0.50, False, "misses the minimum"),
        (0.82, 0.80, True, "beats champion"),
        (0.805, 0.80, False, "does not beat"),
        (0.80, 0.80, False, "does not beat"),
        (math.nan, None, False, "undefined"),
    ],
)
def test_decision(candidate, champion, promote, words):
    config = churn_config()
    decision = training.decide({"roc_auc": candidate}, None if champion is None else {"roc_auc": champion}, config)
    assert decision.promote is promote and words in decision.reason


def test_error_metrics_decide_in_the_other_direction():
    config = parse_config(
        {
            "data": {"target": "y", "task": "regression", "columns": {"x": "float", "y": "float"}},
            "model": {"estimator": "ridge"},
            "promotion": {"metric": "rmse", "minimum": 2.0, "margin": 0.1},
        }
    )
    assert training.decide({"rmse": 1.0}, {"rmse": 1.2}, config).promote
    assert not training.decide({"rmse": 1.15}, {"rmse": 1.2}, config).promote
    assert "maximum" in training.decide({"rmse": 2.5}, None, config).reason


def test_regression_pipeline_metrics():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame({"x": x, "y": 3 * x + rng.normal(scale=0.1, size=400)})
    config = parse_config(
        {"data": {"target": "y", "task": "regression", "columns": {"x": "float", "y": "float"}},
         "model": {"estimator": "ridge"}, "promotion": {"metric": "r2"}}
    )
    train, holdout = training.split(frame, config)
    metrics = training.evaluate(training.train(train, config), holdout, config)
    assert metrics["r2"] > 0.99 and metrics["rmse"] < 0.2


def test_window_keeps_the_newest_days_only():
    import pandas as pd

    frame = pd.concat(frames(5, 100), ignore_index=True)
    config = churn_config(model__window_days=2)
    recent = training.window(frame, config)
    assert recent["event_time"].min() > frame["event_time"].max() - pd.Timedelta(days=2)
    assert 150 < len(recent) <= 200 and len(training.window(frame, churn_config())) == len(frame)


def test_sample_caps_rows_reproducibly():
    frame = frames(1, 500)[0]
    config = churn_config()
    assert training.sample(frame, config, rows=1000) is frame
    first, second = training.sample(frame, config, rows=100), training.sample(frame, config, rows=100)
    assert len(first) == 100 and first.index.equals(second.index)
