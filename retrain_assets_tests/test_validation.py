import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from retrain_assets.core.config import parse_config
from retrain_assets.core.validation import CHECKS, CheckVerdict, build_suite, check_results, validate_batch

ROOT = Path(__file__).resolve().parents[1]
ROWS = 300


def churn_config(task="classification", **validation):
    """Churn-style config; ``validation`` overrides the default rules."""
    rules = {
        "columns": {
            "tenure_months": {"nullable": False, "hard": {"min": 0, "max": 120}},
            "monthly_charges": {"hard": {"min": 0}},
            "plan": {"nullable": False, "domain": ["basic", "standard", "premium"], "closed": True},
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
    assert all(verdict.passed for verdict in results.values()), results
    assert results["values_in_range"] == CheckVerdict(True, "ok: 2 rules passed")
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
    passed, message, severity = check_results(outcomes)["required_values_present"]
    assert not passed and severity == "error"
    assert message == (
        "raw_data v3: column 'plan': expect_column_values_to_not_be_null failed for 37 of 300 rows (12.3%), "
        "sample [None, None, None, None, None]"
    )


def test_out_of_range_value_fails_values_in_range():
    frame = churn_frame()
    frame.loc[5, "tenure_months"] = 999

    passed, message, severity = check_results(validate_batch(frame, churn_config()))["values_in_range"]

    assert not passed and severity == "error"
    assert "column 'tenure_months'" in message and "within hard [0, 120]" in message
    assert "failed for 1 of 300" in message and "sample [999]" in message


def test_unknown_category_fails_a_closed_domain():
    frame = churn_frame()
    frame.loc[[3, 4], "plan"] = "enterprise"

    outcomes = validate_batch(frame, churn_config())

    [failure] = failures(outcomes, "categories_in_domain")
    assert (failure.column, failure.failing_count, failure.sample) == ("plan", 2, ["enterprise", "enterprise"])
    assert "'enterprise'" in check_results(outcomes)["categories_in_domain"][1]


def test_unlabeled_target_class_blocks_and_a_rare_class_only_warns():
    frame = churn_frame()
    frame["churned"] = 0
    frame.loc[:2, "churned"] = 1  # 1% of rows, floor is 5%
    frame.loc[3, "churned"] = 2  # not in target_classes

    results = check_results(validate_batch(frame, churn_config(), "raw_data v4"))

    domain = results["categories_in_domain"]
    assert domain.rejects and "column 'churned'" in domain.message and "sample [2]" in domain.message
    assert results["target_balanced"].passed
    balance = results["values_as_expected"]
    assert not balance.passed and not balance.rejects
    assert balance.message == (
        "raw_data v4: column 'churned': expect_column_values_to_be_in_set (class 1 >= 5.0% of the batch) failed: "
        "the class makes up 1.0% of 300 labelled rows"
    )


def test_a_shifted_label_mix_warns_and_does_not_reject():
    frame = churn_frame()
    frame["churned"] = (np.arange(ROWS) % 100 < 87).astype("int64")  # 87 % positives, as in a real shift

    results = check_results(validate_batch(frame, churn_config(min_class_fraction=0.2)))

    assert not any(verdict.rejects for verdict in results.values()), results
    assert "class 0 >= 20.0%" in results["values_as_expected"].message


def test_balance_uses_observed_classes_without_target_classes():
    frame = churn_frame()
    frame["churned"] = 0
    frame.loc[:2, "churned"] = 1

    outcomes = validate_batch(frame, churn_config(target_classes=None))

    [failure] = failures(outcomes, "values_as_expected")
    assert failure.sample == [1] and failure.severity == "warn"
    assert check_results(outcomes)["categories_in_domain"].passed


def test_too_few_rows_fail_target_balanced():
    passed, message, _ = check_results(validate_batch(churn_frame(rows=50), churn_config()))["target_balanced"]

    assert not passed
    assert "expect_table_row_count_to_be_between (at least 100 rows) failed: observed 50" in message


def test_missing_column_fails_schema_and_its_rules_without_crashing():
    frame = churn_frame().drop(columns=["tenure_months"])

    outcomes = validate_batch(frame, churn_config(), "raw_data v5")

    results = check_results(outcomes)
    passed, message, _ = results["schema_matches"]
    assert not passed
    assert "missing columns ['tenure_months']" in message
    for check in ("required_values_present", "values_in_range"):
        passed, message, _ = results[check]
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

    passed, message, _ = check_results(validate_batch(frame, config))["schema_matches"]

    assert not passed
    assert f"column 'x': column_type_is_declared_type (declared {kind}, stored as " in message
    assert observed in message


def test_regression_with_constant_target_fails_target_balanced():
    frame = churn_frame()
    frame["churned"] = 4.2

    results = check_results(validate_batch(frame, churn_config("regression"), "raw_data v6"))
    passed, message, _ = results["target_balanced"]

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
    assert checks.count("target_balanced") == 2  # two classes, row count
    assert checks.count("values_as_expected") == 2  # the share of each class in target_classes


def test_check_results_reports_checks_without_rules():
    assert check_results([]) == {check: CheckVerdict(True, "ok: no rules configured") for check in CHECKS}


def test_import_does_not_load_great_expectations():
    code = "import retrain_assets.core.validation, sys; assert 'great_expectations' not in sys.modules"

    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_ge_does_not_fingerprint_the_frame():
    """GE hashes every row of a frame to label the batch unless its HASH_THRESHOLD is lowered (validation does)."""
    from retrain_assets.core.validation import _batch_definition

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": churn_frame()})

    assert "pandas_data_fingerprint" not in batch.batch_markers


def expected_config(**column_rules):
    """churn_config with extra rules for some columns."""
    config = churn_config()
    for name, rule in column_rules.items():
        config.validation.columns[name] = type(config.validation.columns["plan"]).model_validate(rule)
    return config


def test_a_value_past_the_expected_range_warns_with_count_and_sample():
    frame = churn_frame()
    frame.loc[[5, 6], "monthly_charges"] = 3432.0
    config = expected_config(monthly_charges={"hard": {"min": 0}, "expected": {"min": 0, "max": 150}})

    outcomes = validate_batch(frame, config, "raw_data v2")

    results = check_results(outcomes)
    assert not any(verdict.rejects for verdict in results.values()), results
    [warning] = failures(outcomes, "values_as_expected")
    assert (warning.column, warning.failing_count, warning.sample, warning.kind) == (
        "monthly_charges",
        2,
        [3432.0, 3432.0],
        "expected",
    )
    assert results["values_as_expected"].message == (
        "raw_data v2: column 'monthly_charges': expect_column_values_to_be_between (within expected [0, 150]) "
        "failed for 2 of 300 non-null values (0.7%), sample [3432.0, 3432.0]"
    )


def test_mostly_lets_a_few_values_past_a_hard_limit():
    frame = churn_frame()
    frame.loc[[1], "tenure_months"] = 999
    lenient = expected_config(tenure_months={"hard": {"min": 0, "max": 120}, "mostly": 0.99})

    assert check_results(validate_batch(frame, lenient))["values_in_range"].passed

    frame.loc[:9, "tenure_months"] = 999  # 10 of 300 is past the 1 % allowance
    verdict = check_results(validate_batch(frame, lenient))["values_in_range"]
    assert verdict.rejects and "mostly 99.00%" in verdict.message


def test_severity_warn_turns_a_hard_rule_into_a_warning():
    frame = churn_frame()
    frame.loc[3, "tenure_months"] = 999
    config = expected_config(tenure_months={"hard": {"min": 0, "max": 120}, "severity": "warn"})

    verdict = check_results(validate_batch(frame, config))["values_in_range"]

    assert not verdict.passed and verdict.severity == "warn" and not verdict.rejects


def test_an_open_domain_warns_on_a_new_value():
    frame = churn_frame()
    frame.loc[[3, 4], "plan"] = "enterprise"
    config = expected_config(plan={"domain": ["basic", "standard", "premium"]})

    results = check_results(validate_batch(frame, config))

    assert results["categories_in_domain"].passed
    assert not results["values_as_expected"].passed and "'enterprise'" in results["values_as_expected"].message


def test_null_rate_above_the_expected_one_warns_and_nullable_false_blocks():
    frame = churn_frame()
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[:29, "plan"] = None  # 10 %
    inferred = expected_config(plan={"expected": {"max_null_fraction": 0.05}})

    results = check_results(validate_batch(frame, inferred))
    assert results["required_values_present"].passed
    assert "at most 5.0% null" in results["values_as_expected"].message and not results["values_as_expected"].rejects

    declared = expected_config(plan={"nullable": False})
    assert check_results(validate_batch(frame, declared))["required_values_present"].rejects


def test_old_min_max_keys_are_read_as_hard_limits():
    config = churn_config(columns={"tenure_months": {"min": 0, "max": 120}})
    frame = churn_frame()
    frame.loc[5, "tenure_months"] = 999

    assert config.validation.columns["tenure_months"].hard.max == 120
    assert check_results(validate_batch(frame, config))["values_in_range"].rejects
    with pytest.raises(ValueError, match="under hard"):
        churn_config(columns={"tenure_months": {"min": 0, "hard": {"max": 120}}})


def test_a_column_filled_in_for_one_outcome_only_is_a_leak():
    frame = churn_frame()
    rng = np.random.default_rng(1)
    churned = frame["churned"] == 1
    # filled in for 93 % of the churned customers and almost none of the others: AUC ~0.96
    filled = np.where(churned, rng.random(ROWS) < 0.93, rng.random(ROWS) < 0.01)
    frame["monthly_charges"] = frame["monthly_charges"].where(filled)

    verdict = check_results(validate_batch(frame, churn_config(), "raw_data v9"))["no_target_leakage"]

    assert verdict.rejects
    assert "column 'monthly_charges'" in verdict.message and "null indicator alone has ROC AUC 0.9" in verdict.message


def test_a_noisy_copy_of_the_label_is_a_leak_and_a_strong_real_feature_is_not():
    from sklearn.datasets import load_breast_cancer

    cancer = load_breast_cancer(as_frame=True).frame
    columns = {name: "float" for name in cancer.columns if name != "target"} | {"target": "int"}
    config = parse_config({"data": {"target": "target", "task": "classification", "columns": columns}})
    for part in np.array_split(cancer, 6):  # batches of ~95 rows; 'worst perimeter' reaches AUC 0.99
        assert check_results(validate_batch(part.reset_index(drop=True), config))["no_target_leakage"].passed

    noise = np.random.default_rng(0).random(len(cancer)) * 4.9  # |corr| < 0.999, yet it separates the classes
    leaked = cancer.assign(**{"mean area": cancer["target"] * 5 + noise})
    verdict = check_results(validate_batch(leaked, config))["no_target_leakage"]
    assert verdict.rejects and "column 'mean area'" in verdict.message and "ROC AUC 1.0000" in verdict.message
    assert "|corr|" not in verdict.message.split("failed:")[1]


def test_multiclass_leak_must_separate_every_pair_of_classes():
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    columns = {name: "float" for name in wine.columns if name != "target"} | {"target": "int"}
    config = parse_config({"data": {"target": "target", "task": "classification", "columns": columns}})
    assert check_results(validate_batch(wine, config))["no_target_leakage"].passed

    noise = np.random.default_rng(0).random(len(wine)) * 0.9
    leaked = wine.assign(proline=wine["target"].map({0: 2, 1: 0, 2: 1}) + noise)  # intervals, not a linear copy
    verdict = check_results(validate_batch(leaked, config))["no_target_leakage"]
    assert verdict.rejects and "column 'proline'" in verdict.message and "every pair of classes" in verdict.message


def test_event_times_after_the_landing_time_are_rejected():
    """Ingest refuses an --as-of before a batch's own events; a batch landing without one is judged here."""
    import datetime as dt

    from retrain_assets.core.validation import BatchContext

    frame = churn_frame()
    landed = frame["signup_at"].max().to_pydatetime() - dt.timedelta(days=3)

    results = check_results(validate_batch(frame, churn_config(), "raw_data v2", BatchContext(landed)))

    verdict = results["values_in_range"]
    assert verdict.rejects and "column 'signup_at'" in verdict.message and "not after landing" in verdict.message
    later = BatchContext(landed + dt.timedelta(days=4))
    assert check_results(validate_batch(frame, churn_config(), context=later))["values_in_range"].passed


def test_a_duplicate_id_is_counted_but_its_value_is_withheld_by_default():
    """Samples reach webhooks, alerts.jsonl, Dagster events and the validation_log: ids stay out of them."""
    frame = churn_frame()
    frame.loc[[0, 1], "customer_id"] = 4242
    frame.loc[5, "tenure_months"] = 999

    outcomes = validate_batch(frame, churn_config(), "raw_data v3")

    [duplicate] = failures(outcomes, "batch_integrity")
    assert (duplicate.column, duplicate.failing_count, duplicate.sample) == ("customer_id", 2, [])
    assert duplicate.detail.endswith(
        "failed for 2 of 300 non-null values (0.7%), sample withheld (data.id values; "
        "validation.show_id_samples shows them)"
    )
    messages = json.dumps({name: verdict.message for name, verdict in check_results(outcomes).items()})
    assert "4242" not in messages and "sample [999]" in messages
    shown = validate_batch(frame, churn_config(show_id_samples=True), "raw_data v3")
    assert failures(shown, "batch_integrity")[0].sample == [4242, 4242]


def test_redact_samples_keeps_every_failing_value_out_and_counts_in():
    frame = churn_frame()
    frame.loc[[0, 1], "customer_id"] = 4242
    frame.loc[5, "tenure_months"] = 999
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[7, "plan"] = "platinum-secret"
    frame["note"] = frame["note"].astype(object)
    frame.loc[9, "note"] = 31337  # a mixed column: the type rule quotes values too

    outcomes = validate_batch(frame, churn_config(redact_samples=True, show_id_samples=True), "raw_data v3")

    failed = [outcome for outcome in outcomes if not outcome.passed]
    assert {outcome.check for outcome in failed} >= {
        "batch_integrity",
        "values_in_range",
        "categories_in_domain",
        "schema_matches",
    }
    text = json.dumps([[outcome.sample, outcome.detail] for outcome in outcomes])
    for value in ("4242", "9876", "platinum-secret", "31337"):
        assert value not in text
    assert "sample [" not in text and text.count("sample withheld (validation.redact_samples)") >= 4
    assert "failed for 1 of 300 non-null values (0.3%)" in text and "expect_column_values_to_be_in_set" in text


def test_the_validation_log_never_holds_a_failing_id(project, tmp_path):
    from retrain_assets.core import batches, delta, landing
    from retrain_assets_tests.conftest import write_config

    frame = pd.read_csv(project.batch(0))
    duplicate = frame.loc[1, "customer_id"]
    frame.loc[0, "customer_id"] = duplicate
    frame.loc[3, "monthly_charges"] = -123.456
    path = tmp_path / "duplicated.csv"
    frame.to_csv(path, index=False)
    landing.ingest_file(project.config, path)

    batches.validate_new_batches(project.config, 0)
    write_config(project, validation={"redact_samples": True})
    batches.revalidate(project.config, [0])

    log = delta.read_table(project.config.table_uri(delta.VALIDATION_LOG_TABLE))
    default, redacted = (log.loc[log["revalidated"] == again, "messages"].item() for again in (False, True))
    assert duplicate not in default and "-123.456" in default and "failed for 2 of 600 non-null values" in default
    assert duplicate not in redacted and "-123.456" not in redacted and "failed for 2 of 600 non-null" in redacted
