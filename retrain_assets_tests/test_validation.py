import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain_assets.config import parse_config
from retrain_assets.validation import CHECKS, build_suite, check_results, validate_batch

ROOT = Path(__file__).resolve().parents[1]
ROWS = 300


def churn_config(task="classification", **validation):
    """Churn-style config; ``validation`` overrides the default rules."""
    rules = {
        "columns": {
            "tenure_months": {"nullable": False, "min": 0, "max": 120},
            "monthly_charges": {"min": 0},
            "plan": {"nullable": False, "domain": ["basic", "standard", "premium"]},
        },
        "min_rows": 100,
    }
    if task == "classification":
        rules.update(target_classes=[0, 1], min_class_fraction=0.05)
    rules.update(validation)
    columns = {
        "customer_id": "int",
        "signup_at": "timestamp",
        "tenure_months": "int",
        "monthly_charges": "float",
        "plan": "category",
        "autopay": "bool",
        "note": "string",
        "churned": "int" if task == "classification" else "float",
    }
    data = {"target": "churned", "task": task, "timestamp": "signup_at", "id": "customer_id", "columns": columns}
    estimator = "logistic_regression" if task == "classification" else "ridge"
    metric = "roc_auc" if task == "classification" else "rmse"
    return parse_config(
        {"data": data, "validation": rules, "model": {"estimator": estimator}, "promotion": {"metric": metric}}
    )


def from_delta(frame):
    """The frame as a Delta read gives it: through Arrow, timestamps in microseconds."""
    return pa.Table.from_pandas(frame, preserve_index=False).to_pandas()


def churn_frame(seed=0, rows=ROWS):
    rng = np.random.default_rng(seed)
    return from_delta(
        pd.DataFrame(
            {
                "customer_id": np.arange(rows),
                "signup_at": pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC", unit="us"),
                "tenure_months": rng.integers(0, 100, rows),
                "monthly_charges": rng.normal(60, 15, rows).clip(0),
                "plan": rng.choice(["basic", "standard", "premium"], rows),
                "autopay": rng.random(rows) < 0.5,
                "note": rng.choice(["a", "b", None], rows),
                "churned": (rng.random(rows) < 0.3).astype("int64"),
            }
        )
    )


def one_column_config(kind):
    """Regression config whose column ``x`` has type ``kind``, next to a feature and the target ``y``."""
    data = {"target": "y", "task": "regression", "columns": {"x": kind, "z": "float", "y": "float"}}
    if kind == "timestamp":
        data["timestamp"] = "x"
    return parse_config({"data": data, "model": {"estimator": "ridge"}, "promotion": {"metric": "rmse"}})


def failures(outcomes, check):
    return [outcome for outcome in outcomes if outcome.check == check and not outcome.passed]


def test_clean_frame_passes_every_check():
    frame = churn_frame()
    assert str(frame["signup_at"].dtype) == "datetime64[us, UTC]"

    outcomes = validate_batch(frame, churn_config(), "raw_data v1")

    results = check_results(outcomes)
    assert list(results) == list(CHECKS)
    assert all(passed for passed, _ in results.values()), results
    assert results["values_in_range"] == (True, "ok: 2 rules passed")
    assert all(outcome.check in CHECKS for outcome in outcomes)
    json.dumps([outcome.sample for outcome in outcomes])


def test_nulls_in_required_column_fail_with_column_rule_count_and_sample():
    frame = churn_frame()
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[:36, "plan"] = None

    outcomes = validate_batch(frame, churn_config(), "raw_data v3")

    [failure] = failures(outcomes, "required_values_present")
    assert (failure.column, failure.rule, failure.failing_count) == ("plan", "expect_column_values_to_not_be_null", 37)
    assert failure.failing_percent == pytest.approx(37 / ROWS * 100)
    assert failure.sample == [None] * 5
    passed, message = check_results(outcomes)["required_values_present"]
    assert not passed
    assert message == (
        "raw_data v3: column 'plan': expect_column_values_to_not_be_null failed for 37 of 300 rows (12.3%), "
        "sample [None, None, None, None, None]"
    )


def test_out_of_range_value_fails_values_in_range():
    frame = churn_frame()
    frame.loc[5, "tenure_months"] = 999

    passed, message = check_results(validate_batch(frame, churn_config()))["values_in_range"]

    assert not passed
    assert "column 'tenure_months'" in message and "within [0, 120]" in message
    assert "failed for 1 of 300" in message and "sample [999]" in message


def test_unknown_category_fails_categories_in_domain():
    frame = churn_frame()
    frame.loc[[3, 4], "plan"] = "enterprise"

    outcomes = validate_batch(frame, churn_config())

    [failure] = failures(outcomes, "categories_in_domain")
    assert (failure.column, failure.failing_count, failure.sample) == ("plan", 2, ["enterprise", "enterprise"])
    assert "'enterprise'" in check_results(outcomes)["categories_in_domain"][1]


def test_unlabeled_target_class_fails_domain_and_rare_class_fails_balance():
    frame = churn_frame()
    frame["churned"] = 0
    frame.loc[:2, "churned"] = 1  # 1% of rows, floor is 5%
    frame.loc[3, "churned"] = 2  # not in target_classes

    results = check_results(validate_batch(frame, churn_config(), "raw_data v4"))

    domain_ok, domain_message = results["categories_in_domain"]
    assert not domain_ok and "column 'churned'" in domain_message and "sample [2]" in domain_message
    balanced, message = results["target_balanced"]
    assert not balanced
    assert message == (
        "raw_data v4: column 'churned': expect_column_values_to_be_in_set (class 1 >= 5.0%) failed: "
        "the class makes up 1.0% of 300 labelled rows"
    )


def test_balance_uses_observed_classes_without_target_classes():
    frame = churn_frame()
    frame["churned"] = 0
    frame.loc[:2, "churned"] = 1

    outcomes = validate_batch(frame, churn_config(target_classes=None))

    [failure] = failures(outcomes, "target_balanced")
    assert failure.sample == [1]
    assert check_results(outcomes)["categories_in_domain"][0]


def test_too_few_rows_fail_target_balanced():
    passed, message = check_results(validate_batch(churn_frame(rows=50), churn_config()))["target_balanced"]

    assert not passed
    assert "expect_table_row_count_to_be_between (at least 100 rows) failed: observed 50" in message


def test_missing_column_fails_schema_and_its_rules_without_crashing():
    frame = churn_frame().drop(columns=["tenure_months"])

    outcomes = validate_batch(frame, churn_config(), "raw_data v5")

    results = check_results(outcomes)
    passed, message = results["schema_matches"]
    assert not passed
    assert "missing columns ['tenure_months']" in message
    for check in ("required_values_present", "values_in_range"):
        passed, message = results[check]
        assert not passed
        assert "column 'tenure_months' is missing from the batch" in message
    assert results["categories_in_domain"][0] and results["target_balanced"][0]


def test_int_column_with_nulls_keeps_schema_but_fails_required_values():
    frame = churn_frame()
    frame.loc[[10, 20], "tenure_months"] = None
    frame = from_delta(frame)
    assert frame["tenure_months"].dtype == "float64"

    outcomes = validate_batch(frame, churn_config())

    results = check_results(outcomes)
    assert results["schema_matches"][0], results["schema_matches"]
    assert results["values_in_range"][0]
    [failure] = failures(outcomes, "required_values_present")
    assert (failure.column, failure.failing_count, failure.sample) == ("tenure_months", 2, [None, None])


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("int", pd.array([1, None, 3], dtype="Int64")),
        ("float", np.array([1, 2, 3], dtype="int32")),
        ("category", pd.Categorical(["a", "b", None])),
        ("string", pd.array(["a", None, "c"], dtype="string")),
        ("bool", np.array([True, None, False], dtype=object)),
        ("timestamp", pd.to_datetime(["2024-01-01", None, "2024-01-03"])),
        ("timestamp", pd.to_datetime(["2024-01-01", None, "2024-01-03"]).tz_localize("Europe/Berlin")),
    ],
)
def test_schema_accepts_each_type_family(kind, values):
    config = one_column_config(kind)
    frame = pd.DataFrame({"x": values, "z": [0.5, 0.1, 0.2], "y": [1.0, 2.0, 3.0]})

    assert check_results(validate_batch(frame, config))["schema_matches"][0]


@pytest.mark.parametrize(
    ("kind", "values", "observed"),
    [
        ("int", ["1", "2", "3"], "sample ['1', '2', '3']"),
        ("timestamp", ["2024-01-01", "2024-01-02", "2024-01-03"], "sample ['2024-01-01', '2024-01-02', "),
        ("category", [1, 2, 3], "observed int64"),
        ("bool", [1, 0, 1], "observed int64"),
    ],
)
def test_schema_rejects_a_dtype_outside_the_declared_family(kind, values, observed):
    config = one_column_config(kind)
    frame = pd.DataFrame({"x": values, "z": [0.5, 0.1, 0.2], "y": [1.0, 2.0, 3.0]})

    passed, message = check_results(validate_batch(frame, config))["schema_matches"]

    assert not passed
    assert f"column 'x': column_type_is_declared_type (declared {kind}, stored as " in message
    assert observed in message


def test_regression_with_constant_target_fails_target_balanced():
    frame = churn_frame()
    frame["churned"] = 4.2

    passed, message = check_results(validate_batch(frame, churn_config("regression"), "raw_data v6"))["target_balanced"]

    assert not passed
    assert message == (
        "raw_data v6: column 'churned': expect_column_stdev_to_be_between (stdev > 0) failed: observed 0.0"
    )


def test_repeated_validation_reuses_context_and_leaves_frame_untouched(capfd):
    frame = churn_frame()
    frame.loc[0, "tenure_months"] = -1
    before = frame.copy()

    first = validate_batch(frame, churn_config(), "raw_data v7")
    second = validate_batch(frame, churn_config(), "raw_data v8")

    pd.testing.assert_frame_equal(frame, before)
    assert [o.passed for o in first] == [o.passed for o in second]
    assert check_results(second)["values_in_range"][1].startswith("raw_data v8: column 'tenure_months'")
    assert capfd.readouterr().err == ""  # no progress bars, warnings or log lines


def test_build_suite_tags_every_expectation_with_its_check():
    suite = build_suite(churn_config())

    checks = [expectation.meta["check"] for expectation in suite.expectations]
    assert set(checks) == set(CHECKS) - {"no_target_leakage"}  # the leakage rule is plain pandas, not GE
    assert checks.count("target_balanced") == 4  # one per class in target_classes, two classes, row count


def test_check_results_reports_checks_without_rules():
    assert check_results([]) == {check: (True, "ok: no rules configured") for check in CHECKS}


def test_import_does_not_load_great_expectations():
    code = "import retrain_assets.validation, sys; assert 'great_expectations' not in sys.modules"

    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_ge_does_not_fingerprint_the_frame():
    """GE hashes every row of a frame to label the batch unless its HASH_THRESHOLD is lowered (validation does)."""
    from retrain_assets.validation import _batch_definition

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": churn_frame()})

    assert "pandas_data_fingerprint" not in batch.batch_markers
