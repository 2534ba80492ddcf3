import datetime
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core import synthetic
from retrain_assets.core.drift import MAX_CATEGORIES, drift_summary, reference_profile, score_drift

START = datetime.date(2026, 1, 5)
FEATURES = {k: v for k, v in synthetic.CHURN_TYPES.items() if k not in ("customer_id", "event_time", "churned")}
THRESHOLDS = {"psi_threshold": 0.2, "ks_threshold": 0.15, "ks_pvalue": 0.01}  # the project's defaults


def _day(offset: int) -> datetime.date:
    return START + datetime.timedelta(days=offset)


@pytest.fixture(scope="module")
def profile() -> dict:
    """Profile of three clean training days of 2000 rows."""
    training = pd.concat([frame for _, frame in synthetic.churn_days(START, 3, 2000, seed=7)], ignore_index=True)
    return reference_profile(training, FEATURES)


@pytest.fixture(scope="module")
def big_training() -> pd.DataFrame:
    return synthetic.churn_batch(START, 200_000, seed=1)


def test_profile_of_200k_rows_is_plain_json_and_small(big_training):
    profile = reference_profile(big_training, FEATURES)
    text = json.dumps(profile, allow_nan=False)
    assert len(text) < 300_000
    assert profile["rows"] == 200_000
    assert profile["features"] == FEATURES
    restored = json.loads(text)
    batch = synthetic.churn_batch(_day(10), 1500, seed=3)
    assert score_drift(restored, batch, **THRESHOLDS) == score_drift(profile, batch, **THRESHOLDS)


def test_sketch_is_bounded_so_profile_size_does_not_follow_training_size(big_training):
    """Finding 7/16 of the security review: the profile was about 100 KB per numeric feature (5,000 raw
    values); the CDF sketch keeps at most 99 quantiles, whatever the row count."""
    small = reference_profile(big_training.iloc[:10_000], FEATURES)
    big = reference_profile(big_training, FEATURES)
    for name in ("tenure_months", "monthly_charges", "support_calls"):
        assert "sample" not in big["columns"][name]
        assert len(big["columns"][name]["cdf"]["points"]) <= 99
        assert len(json.dumps(big["columns"][name])) < 8_000
    assert len(json.dumps(big)) < 1.5 * len(json.dumps(small))


def test_profile_is_deterministic():
    frame = synthetic.churn_batch(START, 8000, seed=2)
    assert reference_profile(frame, FEATURES, seed=4) == reference_profile(frame, FEATURES, seed=5)


def test_numeric_bins_are_deduplicated_quantiles_and_shares_sum_to_one(profile):
    for name in ("tenure_months", "monthly_charges", "support_calls"):
        column = profile["columns"][name]
        edges = column["edges"]
        assert edges == sorted(set(edges))
        assert len(column["fractions"]) == len(edges) + 1
        assert sum(column["fractions"]) + column["null_fraction"] == pytest.approx(1.0)
    assert len(profile["columns"]["monthly_charges"]["edges"]) == 9  # 10 equal-frequency bins
    assert len(profile["columns"]["support_calls"]["edges"]) < 9  # few distinct counts: duplicate edges dropped
    assert max(profile["columns"]["monthly_charges"]["fractions"]) < 0.12


def test_categorical_shares_keep_keys_as_strings_and_count_nulls():
    frame = pd.DataFrame({"flag": [True, False, None, True], "level": [1.0, 2.0, np.nan, 1.0]})
    profile = reference_profile(frame, {"flag": "bool", "level": "category"})
    assert profile["columns"]["flag"]["fractions"] == {"True": 0.5, "False": 0.25, "__null__": 0.25}
    assert profile["columns"]["level"]["fractions"] == {"1": 0.5, "2": 0.25, "__null__": 0.25}


@pytest.mark.parametrize("offset", [10, 17, 23, 31, 45])
def test_fresh_clean_day_is_not_drifted(profile, offset):
    scores = score_drift(profile, synthetic.churn_batch(_day(offset), 1500, seed=100 + offset), **THRESHOLDS)
    assert set(scores) == set(FEATURES)
    assert not [name for name, score in scores.items() if score["drifted"]]
    drifted, message = drift_summary(scores)
    assert not drifted
    assert message.startswith("no drift: max PSI ")
    assert scores["monthly_charges"]["method"] == "psi+ks" and 0 <= scores["monthly_charges"]["ks"] < 0.15
    assert scores["plan"]["method"] == "psi" and scores["plan"]["ks"] is None


def test_drifted_day_is_flagged_on_the_features_synthetic_drift_moves(profile):
    scores = score_drift(profile, synthetic.churn_batch(_day(20), 1500, seed=5, drift=0.8), **THRESHOLDS)
    drifted, message = drift_summary(scores)
    assert drifted
    assert {name for name, score in scores.items() if score["drifted"]} == {
        "monthly_charges",
        "support_calls",
        "contract",
    }
    for name in ("monthly_charges", "support_calls", "contract"):
        assert name in message
    charges = scores["monthly_charges"]
    assert charges["psi"] > 0.2 and charges["ks"] > 0.15 and charges["p_value"] < 1e-10
    assert charges["detail"].startswith("monthly_charges: PSI ") and "> 0.2" in charges["detail"]
    assert not scores["region"]["drifted"] and not scores["paperless_billing"]["drifted"]


def test_unseen_category_raises_psi(profile):
    batch = synthetic.churn_batch(_day(12), 1500, seed=9)
    batch.loc[batch.sample(frac=0.3, random_state=0).index, "region"] = "atlantis"
    scores = score_drift(profile, batch, **THRESHOLDS)
    assert scores["region"]["drifted"] and scores["region"]["psi"] > 0.2
    assert "unseen: atlantis 30%" in scores["region"]["detail"]
    assert drift_summary(scores) == (True, f"drift in region (PSI {scores['region']['psi']:.2f})")


def test_unseen_category_values_are_not_named_with_redact_samples(profile):
    """Finding 7: the drift detail (Dagster metadata, the check's text, alerts) named up to 3 unseen values,
    and category values are customer data too: with ``validation.redact_samples`` (monitoring and backtests
    pass it as ``redact``) only their count and share stay, and the score is the same."""
    batch = synthetic.churn_batch(_day(12), 1500, seed=9)
    batch.loc[batch.index[:300], "region"] = "atlantis-4242"
    batch.loc[batch.index[300:450], "region"] = "lemuria-4242"

    redacted = score_drift(profile, batch, **THRESHOLDS, redact=True)["region"]

    assert "4242" not in json.dumps(redacted)
    assert "(unseen: 2 values, 30%; withheld: validation.redact_samples)" in redacted["detail"]
    assert redacted == {**score_drift(profile, batch, **THRESHOLDS)["region"], "detail": redacted["detail"]}


def test_missing_and_all_null_columns_are_drifted_with_a_clear_detail(profile):
    batch = synthetic.churn_batch(_day(12), 1000, seed=9).drop(columns=["plan", "tenure_months"])
    batch["monthly_charges"] = np.nan
    batch["region"] = None
    scores = score_drift(profile, batch, **THRESHOLDS)
    assert scores["plan"]["detail"].startswith("plan: missing from the batch")
    assert scores["tenure_months"]["detail"].startswith("tenure_months: missing from the batch")
    assert scores["monthly_charges"]["detail"].startswith("monthly_charges: all 1000 values null in the batch")
    assert scores["region"]["detail"].startswith("region: all 1000 values null in the batch")
    for name in ("plan", "tenure_months", "monthly_charges", "region"):
        assert scores[name]["drifted"] and scores[name]["method"] == "psi" and scores[name]["ks"] is None
        assert np.isfinite(scores[name]["psi"])
    assert not scores["support_calls"]["drifted"]
    _, message = drift_summary(scores)
    assert "plan (missing from the batch)" in message and "region (all 1000 values null in the batch)" in message


def test_numeric_column_without_numbers_or_rows_is_drifted(profile):
    words = synthetic.churn_batch(_day(12), 50, seed=9).assign(support_calls="many")
    assert score_drift(profile, words, **THRESHOLDS)["support_calls"]["detail"].startswith(
        "support_calls: no numbers among 50 values in the batch"
    )
    empty = score_drift(profile, synthetic.churn_batch(_day(12), 0, seed=9), **THRESHOLDS)
    assert all(score["drifted"] and "no rows in the batch" in score["detail"] for score in empty.values())


def test_nulls_in_a_numeric_feature_count_towards_psi(profile):
    batch = synthetic.churn_batch(_day(12), 1500, seed=9)
    batch.loc[batch.index[::2], "tenure_months"] = np.nan
    score = score_drift(profile, batch, **THRESHOLDS)["tenure_months"]
    assert score["drifted"] and score["psi"] > 0.2
    assert score["ks"] < 0.15  # the values present are still from the training distribution


def test_ks_alone_flags_a_shift_that_psi_misses():
    rng = np.random.default_rng(0)
    profile = reference_profile(pd.DataFrame({"x": rng.normal(0, 1, 20_000)}), {"x": "float"}, bins=2)
    score = score_drift(profile, pd.DataFrame({"x": rng.uniform(-0.2, 0.2, 2000)}), **THRESHOLDS)["x"]
    assert score["psi"] < 0.2 and score["ks"] > 0.15 and score["drifted"]
    assert drift_summary({"x": score}) == (True, f"drift in x (KS {score['ks']:.2f})")


def test_many_categories_are_capped_and_overflow_scores_as_other():
    rng = np.random.default_rng(1)
    training = pd.DataFrame({"city": [f"c{value}" for value in rng.integers(0, 1000, 20_000)]})
    profile = reference_profile(training, {"city": "string"})
    fractions = profile["columns"]["city"]["fractions"]
    assert len(fractions) == MAX_CATEGORIES + 1 and "__other__" in fractions
    batch = pd.DataFrame({"city": [f"c{value}" for value in rng.integers(0, 1000, 2000)]})
    assert not score_drift(profile, batch, **THRESHOLDS)["city"]["drifted"]


def test_reference_profile_rejects_what_it_cannot_profile():
    frame = synthetic.churn_batch(START, 100, seed=1)
    with pytest.raises(ValueError, match="no rows"):
        reference_profile(frame.iloc[:0], FEATURES)
    with pytest.raises(ValueError, match="'nope'"):
        reference_profile(frame, {**FEATURES, "nope": "int"})
    with pytest.raises(ValueError, match="event_time.*'timestamp'"):
        reference_profile(frame, {"event_time": "timestamp"})
    with pytest.raises(ValueError, match="'plan' is declared int"):
        reference_profile(frame, {"plan": "int"})


def test_summary_without_drift_names_the_largest_psi():
    scores = {
        "plan": {"psi": 0.03, "drifted": False, "reason": ""},
        "region": {"psi": 0.01, "drifted": False, "reason": ""},
    }
    assert drift_summary(scores) == (False, "no drift: max PSI 0.03 (plan)")


def test_import_stays_light():
    heavy = "{'scipy', 'sklearn', 'mlflow', 'great_expectations', 'dagster'}"
    code = f"import sys, retrain_assets.core.drift; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_numeric_feature_null_throughout_training_is_scored_by_psi_alone():
    profile = reference_profile(pd.DataFrame({"x": [np.nan, np.nan, np.inf]}), {"x": "float"})
    assert profile["columns"]["x"] == {
        "edges": [],
        "fractions": [0.0],
        "null_fraction": 1.0,
        "count": 0,
        "cdf": {"points": [], "at": [], "below": []},
    }
    score = score_drift(profile, pd.DataFrame({"x": np.arange(50.0)}), **THRESHOLDS)["x"]
    assert score["method"] == "psi" and score["ks"] is None and score["drifted"]
    too_few = score_drift(profile, pd.DataFrame({"x": [1.0, 2.0]}), **THRESHOLDS)["x"]
    assert not too_few["drifted"], "two values cannot show a change beyond chance"
    assert score["detail"].endswith("(no training values for KS)")


def test_small_clean_batches_of_real_data_are_not_drifted_and_a_real_shift_is():
    """Wine's shuffled rows in batches of 30: PSI over ten bins moves by chance alone (to 2.8 here), so a
    PSI counts only when a chi-square test of the bucket counts is significant, Bonferroni over features."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.sample(frac=1, random_state=7)
    parts = np.array_split(wine, 6)
    features = {name: "float" for name in wine.columns if name != "target"}
    profile = reference_profile(pd.concat(parts[:3]), features)
    for part in parts[3:]:
        scores = score_drift(profile, part, **THRESHOLDS)
        assert not any(score["drifted"] for score in scores.values()), drift_summary(scores)[1]

    shifted = score_drift(profile, parts[5].assign(alcohol=parts[5]["alcohol"] * 1.5), **THRESHOLDS)
    assert shifted["alcohol"]["drifted"] and not shifted["ash"]["drifted"]


def test_profile_holds_no_raw_values_and_drift_still_scores_from_the_sketch():
    """Finding 7: the profile logged to MLflow held up to 5,000 raw values per numeric feature. Distinctive
    values in the training rows must not appear in it; a shift is still found and a clean day is not."""
    training = synthetic.churn_batch(START, 3000, seed=7)
    training.loc[17, "monthly_charges"] = 12345.678
    training.loc[18, "monthly_charges"] = 54.321987
    text = json.dumps(reference_profile(training, FEATURES))

    assert "12345.678" not in text and "54.321987" not in text
    profile = json.loads(text)
    clean = score_drift(profile, synthetic.churn_batch(_day(10), 1500, seed=8), **THRESHOLDS)
    assert not any(score["drifted"] for score in clean.values()), drift_summary(clean)[1]
    shifted = score_drift(profile, synthetic.churn_batch(_day(20), 1500, seed=5, drift=0.8), **THRESHOLDS)
    charges = shifted["monthly_charges"]
    assert charges["drifted"] and charges["method"] == "psi+ks" and charges["ks"] > 0.15
    assert charges["p_value"] < 1e-10


def test_a_profile_logged_with_a_raw_sample_still_scores():
    """Champions registered before the sketch carry ``sample`` instead of ``cdf``; they keep being scored."""
    rng = np.random.default_rng(3)
    profile = reference_profile(pd.DataFrame({"x": rng.normal(0, 1, 5000)}), {"x": "float"})
    legacy = {**profile["columns"]["x"], "sample": rng.normal(0, 1, 2000).tolist()}
    del legacy["cdf"], legacy["count"]
    profile["columns"]["x"] = legacy
    assert score_drift(profile, pd.DataFrame({"x": rng.normal(1, 1, 500)}), **THRESHOLDS)["x"]["drifted"]
    assert not score_drift(profile, pd.DataFrame({"x": rng.normal(0, 1, 500)}), **THRESHOLDS)["x"]["drifted"]


def test_entirely_new_categories_are_counted_apart_from_the_other_bucket():
    """Finding 16: beyond MAX_CATEGORIES values, new values fell into the "other" bucket of rare training
    values, so a batch of entirely new values scored PSI 0.00. The profile now tells a rare training value
    (a hashed membership sketch) from a new one; a clean batch of a long-tailed column, whose share of new
    values the profile expects (Good-Turing), stays undrifted."""
    rng = np.random.default_rng(1)
    training = pd.DataFrame({"city": [f"c{value}" for value in rng.integers(0, 1000, 20_000)]})
    profile = json.loads(json.dumps(reference_profile(training, {"city": "string"})))
    new = pd.DataFrame({"city": [f"new-{value}" for value in rng.integers(0, 1000, 2000)]})

    score = score_drift(profile, new, **THRESHOLDS)["city"]
    assert score["drifted"] and score["psi"] > 1, score["detail"]
    assert "unseen: new-" in score["detail"]

    tail = rng.zipf(1.3, 40_000)
    long_tailed = reference_profile(pd.DataFrame({"id": [f"v{value}" for value in tail[:30_000]]}), {"id": "string"})
    assert long_tailed["columns"]["id"]["unseen_fraction"] > 0.02
    clean = score_drift(long_tailed, pd.DataFrame({"id": [f"v{value}" for value in tail[30_000:]]}), **THRESHOLDS)
    assert not clean["id"]["drifted"], clean["id"]["detail"]
