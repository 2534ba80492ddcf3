import datetime

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain_assets.config import parse_config
from retrain_assets.inference import infer_config, render_config
from retrain_assets.synthetic import CHURN_TYPES, churn_batch

DAY = datetime.date(2026, 1, 5)


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return churn_batch(DAY, 2000, seed=7)


@pytest.fixture(scope="module")
def churn_config(churn):
    return infer_config(churn, "churned", timestamp="event_time", id_column="customer_id", project="churn")


def test_churn_sample_types_and_task(churn_config):
    assert churn_config.data.columns == CHURN_TYPES
    assert churn_config.data.task == "classification"
    assert (churn_config.data.timestamp, churn_config.data.id) == ("event_time", "customer_id")
    assert churn_config.model.estimator == "logistic_regression"
    assert churn_config.model.params == {"C": 1.0, "max_iter": 1000}
    assert (churn_config.promotion.metric, churn_config.promotion.minimum) == ("roc_auc", 0.6)
    assert (churn_config.mlflow.experiment, churn_config.mlflow.model_name) == ("churn", "churn")


def test_churn_sample_rules(churn, churn_config):
    rules = churn_config.validation.columns
    assert "event_time" not in rules
    assert rules["customer_id"].model_dump() == {"nullable": False, "min": None, "max": None, "domain": None}
    assert rules["plan"].domain == ["basic", "premium", "standard"]
    assert rules["contract"].domain == ["month-to-month", "one-year", "two-year"]
    assert rules["region"].domain == ["east", "north", "south", "west"]
    assert rules["paperless_billing"].domain is None and rules["paperless_billing"].min is None
    assert not any(rule.nullable for rule in rules.values())

    tenure_span = churn["tenure_months"].max() - churn["tenure_months"].min()
    assert rules["tenure_months"].min == 0
    assert rules["tenure_months"].max == np.ceil(churn["tenure_months"].max() + 0.1 * tenure_span)
    low, high = churn["monthly_charges"].min(), churn["monthly_charges"].max()
    assert low - 0.1 * (high - low) - 1 < rules["monthly_charges"].min <= low - 0.1 * (high - low)
    assert high + 0.1 * (high - low) <= rules["monthly_charges"].max < high + 0.1 * (high - low) + 1
    assert rules["support_calls"].min == 0

    assert churn_config.validation.target_classes == [0, 1]
    assert all(type(label) is int for label in churn_config.validation.target_classes)
    smallest = churn["churned"].value_counts(normalize=True).min()
    assert churn_config.validation.min_class_fraction == np.floor(smallest / 2 * 100) / 100
    assert rules["churned"].model_dump() == {"nullable": False, "min": None, "max": None, "domain": None}
    assert churn_config.validation.min_rows == 1


def test_int_column_with_nulls_is_a_nullable_int():
    frame = pd.DataFrame({"visits": [1.0, np.nan, 3.0, 10.0], "ratio": [0.5, 1.5, np.nan, 2.0], "y": [0, 1, 0, 1]})
    config = infer_config(frame, "y")
    assert config.data.columns["visits"] == "int"
    assert config.data.columns["ratio"] == "float"
    visits = config.validation.columns["visits"]
    assert (visits.nullable, visits.min, visits.max, visits.domain) == (True, 0.0, 11.0, None)
    assert config.validation.columns["ratio"].nullable


def test_high_cardinality_text_is_a_string_without_domain():
    frame = pd.DataFrame({"note": [f"n{i}" for i in range(60)], "tier": ["a", "b"] * 30, "y": [0, 1, 1] * 20})
    config = infer_config(frame, "y")
    assert config.data.columns["note"] == "string"
    assert config.validation.columns["note"].domain is None
    assert config.data.columns["tier"] == "category"
    assert infer_config(frame, "y", max_categories=1).data.columns["tier"] == "string"


def test_negative_observed_minimum_is_widened_below_zero():
    frame = pd.DataFrame({"delta": [-2.0, 0.5, 8.0], "y": [0, 1, 0]})
    rule = infer_config(frame, "y").validation.columns["delta"]
    assert (rule.min, rule.max) == (-3.0, 9.0)


@pytest.mark.parametrize("role", ["target", "timestamp", "id_column"])
def test_role_that_is_not_a_column_is_named(churn, role):
    kwargs = {"target": "churned", role: "no_such_column"}
    with pytest.raises(ValueError, match="no_such_column"):
        infer_config(churn, **kwargs)


def test_timestamp_must_hold_datetimes(churn):
    with pytest.raises(ValueError, match="plan"):
        infer_config(churn, "churned", timestamp="plan")


def test_the_only_datetime_column_becomes_the_timestamp(churn):
    assert infer_config(churn, "churned").data.timestamp == "event_time"


def test_datetime_columns_left_as_features_are_named(churn):
    frame = churn.assign(signup_time=churn["event_time"])
    with pytest.raises(ValueError, match="signup_time"):
        infer_config(frame, "churned", timestamp="event_time")


def test_string_timestamp_that_parses_is_a_timestamp():
    frame = pd.DataFrame({"at": ["2026-01-05 10:00", "2026-01-06 11:30"], "x": [1.0, 2.0], "y": [0, 1]})
    config = infer_config(frame, "y", timestamp="at")
    assert config.data.columns["at"] == "timestamp"
    assert "at" not in config.validation.columns


def test_float_target_is_regression_with_a_range(churn):
    config = infer_config(churn, "monthly_charges", timestamp="event_time", id_column="customer_id")
    assert config.data.task == "regression"
    assert (config.model.estimator, config.model.params) == ("ridge", {"alpha": 1.0})
    assert (config.promotion.metric, config.promotion.minimum, config.promotion.margin) == ("r2", 0.0, 0.005)
    assert config.validation.target_classes is None
    target_rule = config.validation.columns["monthly_charges"]
    assert not target_rule.nullable and target_rule.min is not None and target_rule.max is not None
    assert config.data.features["churned"] == "int"


def test_explicit_task_wins_and_bad_tasks_fail(churn):
    assert infer_config(churn, "tenure_months", task="regression").data.task == "regression"
    assert infer_config(churn, "tenure_months").data.task == "regression"
    assert infer_config(churn, "support_calls").data.task == "classification"
    with pytest.raises(ValueError, match="forecasting"):
        infer_config(churn, "churned", task="forecasting")
    with pytest.raises(ValueError, match="plan"):
        infer_config(churn, "plan", task="regression")


def test_string_target_classes_and_min_class_fraction():
    frame = pd.DataFrame({"x": range(100), "label": ["rare"] * 3 + ["common"] * 97})
    validation = infer_config(frame, "label").validation
    assert validation.target_classes == ["common", "rare"]
    assert validation.min_class_fraction == 0.01


def test_render_round_trips_through_yaml(churn_config):
    text = render_config(churn_config, "data/churn.parquet")
    assert text.startswith("#") and "data/churn.parquet" in text.splitlines()[0]
    assert parse_config(yaml.safe_load(text)).model_dump() == churn_config.model_dump()


def test_render_round_trips_a_regression_config(churn):
    config = infer_config(churn, "monthly_charges", id_column="customer_id")
    assert parse_config(yaml.safe_load(render_config(config, "s.csv"))).model_dump() == config.model_dump()
