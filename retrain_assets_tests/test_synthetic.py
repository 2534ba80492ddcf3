import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from retrain_assets.core.synthetic import CHURN_COLUMNS, churn_batch, churn_days, corrupt_batch

DAY = datetime.date(2026, 1, 5)
NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["plan", "contract", "region", "paperless_billing"]


def _fit(frame: pd.DataFrame):
    encode = make_column_transformer((StandardScaler(), NUMERIC), (OneHotEncoder(handle_unknown="ignore"), CATEGORICAL))
    return make_pipeline(encode, LogisticRegression(max_iter=1000)).fit(frame[NUMERIC + CATEGORICAL], frame["churned"])


def _auc(model, frame: pd.DataFrame) -> float:
    return roc_auc_score(frame["churned"], model.predict_proba(frame[NUMERIC + CATEGORICAL])[:, 1])


def test_same_day_rows_and_seed_give_the_same_frame():
    pd.testing.assert_frame_equal(churn_batch(DAY, 300, seed=3), churn_batch(DAY, 300, seed=3))
    assert not churn_batch(DAY, 300, seed=3).equals(churn_batch(DAY, 300, seed=4))
    assert not churn_batch(DAY, 300, seed=3).equals(churn_batch(DAY + datetime.timedelta(days=1), 300, seed=3))


def test_columns_dtypes_and_value_ranges():
    frame = churn_batch(DAY, 1000, seed=7)
    assert list(frame.columns) == CHURN_COLUMNS
    assert frame.dtypes.astype(str).to_dict() == {
        "customer_id": "object",
        "event_time": "datetime64[us, UTC]",
        "tenure_months": "int64",
        "plan": "object",
        "contract": "object",
        "monthly_charges": "float64",
        "region": "object",
        "support_calls": "int64",
        "paperless_billing": "bool",
        "churned": "int64",
    }
    assert frame["customer_id"].iloc[42] == "C20260105-00042"
    assert (frame["event_time"].dt.date == DAY).all()
    assert frame["event_time"].is_monotonic_increasing
    assert frame["tenure_months"].between(0, 72).all()
    assert frame["monthly_charges"].between(15, 130).all()
    assert (frame["monthly_charges"].round(2) == frame["monthly_charges"]).all()
    assert frame["support_calls"].between(0, 12).all()
    assert set(frame["plan"]) == {"basic", "standard", "premium"}
    assert set(frame["contract"]) == {"month-to-month", "one-year", "two-year"}
    assert set(frame["region"]) == {"north", "south", "east", "west"}
    assert set(frame["churned"]) == {0, 1}
    premium = frame.loc[frame["plan"] == "premium", "monthly_charges"].mean()
    assert premium > frame.loc[frame["plan"] == "basic", "monthly_charges"].mean() + 40


def test_days_have_unique_ids_and_a_realistic_churn_rate():
    batches = churn_days(DAY, days=5, rows_per_day=800)
    assert [day for day, _ in batches] == [DAY + datetime.timedelta(days=i) for i in range(5)]
    frames = pd.concat([frame for _, frame in batches])
    assert frames["customer_id"].is_unique
    for _, frame in batches:
        assert 0.15 <= frame["churned"].mean() <= 0.35


def test_churn_is_learnable_and_drift_hurts_an_old_model():
    batches = churn_days(DAY, days=6, rows_per_day=1000, drift_from_day=4, drift=0.8)
    model = _fit(pd.concat([frame for _, frame in batches[:3]]))
    before = _auc(model, batches[3][1])
    after = _auc(model, pd.concat([frame for _, frame in batches[4:]]))
    assert before > 0.75
    assert after < before - 0.05


def test_drift_shifts_feature_distributions():
    calm, drifted = churn_batch(DAY, 4000, seed=7), churn_batch(DAY, 4000, seed=7, drift=1.0)
    assert drifted["monthly_charges"].mean() > calm["monthly_charges"].mean() + 10
    assert drifted["support_calls"].mean() > calm["support_calls"].mean() + 0.5
    assert drifted["tenure_months"].mean() < calm["tenure_months"].mean()
    month_to_month = (drifted["contract"] == "month-to-month").mean()
    assert month_to_month > (calm["contract"] == "month-to-month").mean() + 0.1


@pytest.mark.parametrize("drift", [-0.1, 2.5])
def test_drift_outside_zero_to_two_is_rejected(drift):
    with pytest.raises(ValueError, match=r"drift: .* is not within \[0, 2\]"):
        churn_batch(DAY, 10, seed=7, drift=drift)


def test_drift_past_one_turns_what_predicts_churn_around():
    """The demo's served day: a model fit on the reference days ranks these customers clearly worse than its
    own."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    columns = ["tenure_months", "monthly_charges", "support_calls"]
    calm, turned = churn_batch(DAY, 4000, seed=7), churn_batch(DAY, 4000, seed=8, drift=1.6)
    model = LogisticRegression(max_iter=1000).fit(calm[columns], calm["churned"])
    same = roc_auc_score(calm["churned"], model.predict_proba(calm[columns])[:, 1])
    assert roc_auc_score(turned["churned"], model.predict_proba(turned[columns])[:, 1]) < same - 0.1


def test_corrupt_batch_breaks_a_copy():
    frame = churn_batch(DAY, 500, seed=7)
    original = frame.copy()
    bad = corrupt_batch(frame, seed=1)
    pd.testing.assert_frame_equal(frame, original)
    assert bad["tenure_months"].dtype == np.float64
    assert bad["tenure_months"].isna().mean() == pytest.approx(0.1)
    assert {-50.0, 10000.0} <= set(bad["monthly_charges"])
    assert "atlantis" in set(bad["region"])
    assert list(bad.columns) == CHURN_COLUMNS


def test_churn_days_corrupts_only_the_bad_day_and_drifts_from_the_given_day():
    batches = churn_days(DAY, days=4, rows_per_day=200, seed=7, bad_day=1, drift_from_day=2, drift=0.5)
    frames = [frame for _, frame in batches]
    assert [frame["tenure_months"].isna().any() for frame in frames] == [False, True, False, False]
    pd.testing.assert_frame_equal(frames[0], churn_batch(DAY, 200, seed=7))
    pd.testing.assert_frame_equal(frames[3], churn_batch(batches[3][0], 200, seed=7, drift=0.5))
