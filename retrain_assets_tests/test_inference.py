import datetime

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn import datasets

from retrain_assets.app.cli import main
from retrain_assets.core.config import ColumnRule, load_config, parse_config
from retrain_assets.core.inference import infer_config, infer_config_with_notes, render_config
from retrain_assets.core.synthetic import CHURN_TYPES, churn_batch

DAY = datetime.date(2026, 1, 5)
SURNAMES = ["Braund", "Cumings", "Heikkinen", "Futrelle", "Allen", "Moran", "McCarthy", "Palsson", "Johnson", "Nasser"]
FIRST_NAMES = ["Owen", "John", "Laina", "Lily", "William", "James", "Timothy", "Gosta", "Adele", "Hulda", "Mary"]
TITLES = ["Mr.", "Mrs.", "Miss.", "Master."]


def titanic_like(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    """A frame shaped like Kaggle's Titanic train.csv, plus the boarding time stored as text (as a CSV gives it)."""
    rng = np.random.default_rng(seed)
    people = [f"{s}, {t} {f}" for s in SURNAMES for t in TITLES for f in FIRST_NAMES]
    tickets = [str(n) for n in rng.integers(10000, 400000, 90)] + [
        f"{p} {n}"
        for p, n in zip(
            rng.choice(["A/5", "PC", "STON/O2.", "C.A.", "SOTON/OQ", "W./C."], 60),
            rng.integers(1000, 4000000, 60),
            strict=True,
        )
    ]
    cabins = [f"{deck}{number}" for deck in "ABCDEFG" for number in range(1, 120)]
    cabin = np.where(rng.random(rows) < 0.77, None, rng.choice(cabins, rows)).astype(object)
    age = np.round(rng.gamma(4.0, 7.5, rows), 0)
    age[:3] = [0.42, 0.83, 0.92]
    age[rng.random(rows) < 0.2] = np.nan
    boarded = pd.Timestamp("2024-01-01 08:00") + pd.to_timedelta(np.sort(rng.integers(0, 90 * 24 * 60, rows)), "min")
    embarked = rng.choice(["S", "C", "Q"], rows, p=[0.72, 0.19, 0.09]).astype(object)
    embarked[[61, 829 % rows]] = None
    return pd.DataFrame(
        {
            "PassengerId": np.arange(1, rows + 1),
            "Survived": rng.integers(0, 2, rows),
            "Pclass": rng.choice([1, 2, 3], rows, p=[0.24, 0.21, 0.55]),
            "Name": rng.choice(people, rows, replace=False),
            "Sex": rng.choice(["male", "female"], rows, p=[0.65, 0.35]),
            "Age": age,
            "SibSp": rng.choice([0, 1, 2, 3, 4, 5, 8], rows, p=[0.68, 0.23, 0.03, 0.02, 0.02, 0.01, 0.01]),
            "Parch": rng.choice([0, 1, 2, 3], rows, p=[0.76, 0.13, 0.09, 0.02]),
            "Ticket": rng.choice(tickets, rows),
            "Fare": np.round(rng.gamma(1.0, 32.0, rows), 4),
            "Cabin": cabin,
            "Embarked": embarked,
            "Boarded": boarded.strftime("%Y-%m-%d %H:%M"),
        }
    )


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return churn_batch(DAY, 2000, seed=7)


@pytest.fixture(scope="module")
def churn_config(churn):
    return infer_config(churn, "churned", timestamp="event_time", id_column="customer_id", project="churn")


@pytest.fixture(scope="module")
def titanic() -> pd.DataFrame:
    return titanic_like()


@pytest.fixture(scope="module")
def titanic_inference(titanic):
    return infer_config_with_notes(titanic, "Survived")


def hard_bounds(config):
    return {name: (rule.hard_min, rule.hard_max) for name, rule in config.validation.columns.items() if rule.hard}


def test_churn_sample_types_and_task(churn_config):
    assert churn_config.data.columns == CHURN_TYPES
    assert churn_config.data.task == "classification"
    assert (churn_config.data.timestamp, churn_config.data.id, churn_config.data.ignore) == (
        "event_time",
        "customer_id",
        [],
    )
    assert churn_config.model.estimator == "logistic_regression"
    assert churn_config.model.params == {"C": 1.0, "max_iter": 1000}
    assert (churn_config.promotion.metric, churn_config.promotion.minimum) == ("roc_auc", 0.6)
    assert (churn_config.mlflow.experiment, churn_config.mlflow.model_name) == ("churn", "churn")
    assert churn_config.history.start == DAY
    assert churn_config.triggers.min_new_rows == 2000


def test_churn_sample_rules(churn, churn_config):
    rules = churn_config.validation.columns
    assert "event_time" not in rules
    assert rules["customer_id"] == ColumnRule(nullable=False)
    assert rules["churned"] == ColumnRule(nullable=False)
    assert rules["plan"].domain == ["basic", "premium", "standard"]
    assert rules["contract"].domain == ["month-to-month", "one-year", "two-year"]
    assert rules["region"].domain == ["east", "north", "south", "west"]
    assert not any(rule.closed for rule in rules.values())
    assert rules["paperless_billing"].domain is None and rules["paperless_billing"].hard is None
    features = churn_config.data.features
    assert all(rules[name].nullable and rules[name].expected.max_null_fraction == 0.05 for name in features)

    tenure_span = churn["tenure_months"].max() - churn["tenure_months"].min()
    assert (rules["tenure_months"].expected.min, rules["tenure_months"].expected.max) == (
        0,
        np.ceil(churn["tenure_months"].max() + 0.5 * tenure_span),
    )
    low, high = churn["monthly_charges"].min(), churn["monthly_charges"].max()
    charges = rules["monthly_charges"].expected
    assert charges.min == 0, "widened below the sample, but never below zero for data that never was"
    assert high + 0.5 * (high - low) <= charges.max < high + 0.5 * (high - low) + 1
    assert hard_bounds(churn_config) == {
        name: (0, None) for name in ("tenure_months", "monthly_charges", "support_calls")
    }

    assert churn_config.validation.target_classes == [0, 1]
    assert all(type(label) is int for label in churn_config.validation.target_classes)
    smallest = churn["churned"].value_counts(normalize=True).min()
    assert churn_config.validation.min_class_fraction == np.floor(smallest / 2 * 100) / 100
    assert churn_config.validation.min_rows == 1


def test_nulls_in_the_sample_raise_the_expected_null_fraction_and_ints_get_a_floor():
    frame = pd.DataFrame({"visits": [1.0, np.nan, 3.0, 10.0], "ratio": [0.5, 1.5, np.nan, 2.0], "y": [0, 1, 0, 1]})
    config = infer_config(frame, "y")
    assert config.data.columns["visits"] == "int"
    assert config.data.columns["ratio"] == "float"
    visits, ratio = config.validation.columns["visits"], config.validation.columns["ratio"]
    assert (visits.expected.min, visits.expected.max, visits.expected.max_null_fraction) == (0.0, 15.0, 0.3)
    assert (visits.hard_min, visits.hard_max) == (0, None)
    assert ratio.hard is None and ratio.expected.max_null_fraction == 0.3
    assert visits.nullable and ratio.nullable


def test_expected_null_fraction_is_capped_at_one():
    frame = pd.DataFrame({"empty": [np.nan] * 20, "x": np.linspace(0, 1, 20), "y": [0, 1] * 10})
    rule = infer_config(frame, "y").validation.columns["empty"]
    assert rule.expected.max_null_fraction == 1.0 and rule.expected.min is None and rule.hard is None


def test_free_text_is_ignored_and_few_valued_text_is_a_category():
    notes = [f"call back about order {i}" for i in range(60)]
    frame = pd.DataFrame({"note": notes, "tier": ["a", "b"] * 30, "x": np.linspace(0, 1, 60), "y": [0, 1, 1] * 20})
    inferred = infer_config_with_notes(frame, "y")
    assert inferred.config.data.columns["note"] == "string"
    assert inferred.config.data.ignore == ["note"]
    assert "note" not in inferred.config.data.features
    assert "column 'note': free text (60 distinct of 60 values): ignored, not a feature" in inferred.notes
    assert inferred.config.validation.columns["note"].domain is None
    assert inferred.config.data.features["tier"] == "category"
    assert infer_config(frame, "y", max_categories=1).data.ignore == ["note", "tier"]


def test_negative_observed_minimum_is_widened_below_zero_without_a_floor():
    frame = pd.DataFrame({"delta": [-2.0, 0.5, 8.0], "y": [0, 1, 0]})
    rule = infer_config(frame, "y").validation.columns["delta"]
    assert (rule.expected.min, rule.expected.max, rule.hard) == (-7.0, 13.0, None)


def test_floors_only_for_ints_and_amount_names_never_for_signed_names():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "items": rng.integers(0, 9, 50),
            "account_balance": rng.integers(0, 900, 50),
            "price_eur": rng.uniform(1, 90, 50),
            "TotalCharges": rng.uniform(1, 900, 50),
            "temperature_c": rng.uniform(15, 30, 50),
            "ratio": rng.uniform(0, 1, 50),
            "y": rng.integers(0, 2, 50),
        }
    )
    assert hard_bounds(infer_config(frame, "y")) == {name: (0, None) for name in ("items", "price_eur", "TotalCharges")}


@pytest.mark.parametrize("role", ["target", "timestamp", "id_column"])
def test_role_that_is_not_a_column_is_named(churn, role):
    kwargs = {"target": "churned", role: "no_such_column"}
    with pytest.raises(ValueError, match="no_such_column"):
        infer_config(churn, **kwargs)


def test_timestamp_must_hold_datetimes(churn):
    with pytest.raises(ValueError, match="--timestamp: column 'plan' does not hold datetimes"):
        infer_config(churn, "churned", timestamp="plan")
    with pytest.raises(ValueError, match="'tenure_months' does not hold datetimes"):
        infer_config(churn, "churned", timestamp="tenure_months")


def test_the_only_datetime_column_becomes_the_timestamp(churn):
    inferred = infer_config_with_notes(churn, "churned")
    assert inferred.config.data.timestamp == "event_time"
    assert "column 'event_time': the only datetime column: data.timestamp" in inferred.notes


def test_datetime_columns_besides_the_timestamp_are_ignored(churn):
    frame = churn.assign(signup_time=churn["event_time"] - pd.Timedelta(days=30))
    inferred = infer_config_with_notes(frame, "churned", timestamp="event_time")
    assert inferred.config.data.ignore == ["signup_time"]
    assert inferred.config.data.columns["signup_time"] == "timestamp"
    assert (
        "column 'signup_time': datetimes besides data.timestamp 'event_time': ignored, not a feature" in inferred.notes
    )


def test_several_datetime_columns_without_a_flag_name_none_the_timestamp(churn):
    frame = churn.assign(signup_time=churn["event_time"] - pd.Timedelta(days=30))
    config = infer_config(frame, "churned")
    assert config.data.timestamp is None
    assert config.data.ignore == ["event_time", "signup_time"]
    assert config.history.start is None


def test_string_timestamp_that_parses_is_a_timestamp():
    frame = pd.DataFrame({"at": ["2026-01-05 10:00", "2026-01-06 11:30"], "x": [1.0, 2.0], "y": [0, 1]})
    config = infer_config(frame, "y", timestamp="at")
    assert config.data.columns["at"] == "timestamp"
    assert "at" not in config.validation.columns
    assert config.history.start == DAY


def test_text_that_is_not_datetimes_stays_text():
    """Weekdays, times of day and years parse as datetimes too; a column only half of dates is text."""
    rng = np.random.default_rng(1)
    text = {
        "weekday": ["Monday", "Tuesday", "Friday"],
        "departs": ["09:30", "12:15", "18:45"],
        "code": ["2024", "2025", "A7"],
        "when": ["2024-01-05", "2024-02-01", "soon", "later"],
    }
    frame = pd.DataFrame({name: rng.choice(values, 40) for name, values in text.items()})
    frame = frame.assign(x=rng.uniform(0, 1, 40), y=rng.integers(0, 2, 40))
    config = infer_config(frame, "y")
    assert {name: config.data.columns[name] for name in text} == dict.fromkeys(text, "category")
    assert config.data.timestamp is None and config.data.ignore == []


def test_text_of_datetimes_with_unparsable_values_is_ignored_and_refused_as_the_timestamp(titanic):
    broken = titanic.copy()
    broken.loc[[5, 50, 150], "Boarded"] = "unknown"
    inferred = infer_config_with_notes(broken, "Survived")
    assert inferred.config.data.timestamp is None
    assert inferred.config.data.columns["Boarded"] == "string" and "Boarded" in inferred.config.data.ignore
    assert any(
        note.startswith("column 'Boarded': text of datetimes but 3 of 400 values do not parse (e.g. ['unknown'])")
        for note in inferred.notes
    )
    with pytest.raises(
        ValueError, match=r"--timestamp: column 'Boarded' .*3 values do not parse, e\.g\. \['unknown'\]"
    ):
        infer_config(broken, "Survived", timestamp="Boarded")


def test_float_target_is_regression_with_an_expected_range_and_no_hard_max(churn):
    config = infer_config(churn, "monthly_charges", timestamp="event_time", id_column="customer_id")
    assert config.data.task == "regression"
    assert (config.model.estimator, config.model.params) == ("ridge", {"alpha": 1.0})
    assert (config.promotion.metric, config.promotion.minimum, config.promotion.margin) == ("r2", 0.0, 0.005)
    assert config.validation.target_classes is None
    target_rule = config.validation.columns["monthly_charges"]
    assert not target_rule.nullable and target_rule.expected.max_null_fraction is None
    assert (
        target_rule.expected.min
        < churn["monthly_charges"].min()
        < churn["monthly_charges"].max()
        < target_rule.expected.max
    )
    assert (target_rule.hard_min, target_rule.hard_max) == (0, None)
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
    frame = pd.DataFrame({"x": np.random.default_rng(2).normal(size=100), "label": ["rare"] * 3 + ["common"] * 97})
    validation = infer_config(frame, "label").validation
    assert validation.target_classes == ["common", "rare"]
    assert validation.min_class_fraction == 0.01


def test_titanic_like_roles_and_ignored_columns(titanic, titanic_inference):
    config = titanic_inference.config
    assert (config.data.target, config.data.task) == ("Survived", "classification")
    assert (config.data.id, config.data.timestamp) == ("PassengerId", "Boarded")
    assert config.data.columns["Boarded"] == "timestamp"
    assert config.data.ignore == ["Name", "Ticket", "Cabin"]
    assert config.data.features == {
        "Pclass": "int",
        "Sex": "category",
        "Age": "float",
        "SibSp": "int",
        "Parch": "int",
        "Fare": "float",
        "Embarked": "category",
    }
    assert hard_bounds(config) == {name: (0, None) for name in ("Pclass", "Age", "SibSp", "Parch", "Fare")}
    assert config.validation.columns["Embarked"].domain == ["C", "Q", "S"]
    assert not config.validation.columns["Embarked"].closed
    cabin_nulls = titanic["Cabin"].isna().mean()
    assert cabin_nulls + 0.05 <= config.validation.columns["Cabin"].expected.max_null_fraction < cabin_nulls + 0.06
    assert config.history.start == datetime.date(2024, 1, 1)
    assert config.triggers.min_new_rows == 400


def test_titanic_like_notes_say_each_choice(titanic_inference):
    notes = titanic_inference.notes
    for expected in (
        "column 'Boarded': text that parses as datetimes: data.timestamp",
        "column 'PassengerId': unique sequential ints with an id-like name: data.id",
        "column 'Name': free text (400 distinct of 400 values): ignored, not a feature",
        "task classification: target 'Survived' is int with 2 distinct values",
        "hard min 0 (counts and amounts), no hard max, on ['Pclass', 'Age', 'SibSp', 'Parch', 'Fare']",
        "history.start 2024-01-01 from the earliest event time in the sample",
        "triggers.min_new_rows 400: retrain on new data once about one sample's worth is validated",
    ):
        assert expected in notes
    assert any(note.startswith("column 'Ticket': free text (") for note in notes)
    assert any(note.startswith("column 'Cabin': free text (") for note in notes)


def test_a_named_id_wins_and_other_row_numbers_are_ignored(titanic):
    frame = titanic.assign(**{"Unnamed: 0": np.arange(len(titanic))})
    inferred = infer_config_with_notes(frame, "Survived")
    assert inferred.config.data.id == "PassengerId"
    assert "Unnamed: 0" in inferred.config.data.ignore
    assert "column 'Unnamed: 0': unique sequential ints, like a row id: ignored, not a feature" in inferred.notes


def test_unnamed_ids_by_their_values(titanic):
    renamed = titanic.rename(columns={"PassengerId": "n"})
    inferred = infer_config_with_notes(renamed, "Survived")
    assert inferred.config.data.id == "n"
    assert "column 'n': unique sequential ints: data.id" in inferred.notes
    codes = titanic.assign(ref=[f"TK-{i:06d}" for i in range(len(titanic))]).drop(columns="PassengerId")
    assert infer_config(codes, "Survived").data.id == "ref"


def test_two_unnamed_id_like_columns_are_both_ignored(titanic):
    frame = titanic.rename(columns={"PassengerId": "n"}).assign(row=np.arange(len(titanic)) * 2 + 7)
    inferred = infer_config_with_notes(frame, "Survived")
    assert inferred.config.data.id is None
    assert {"n", "row"} <= set(inferred.config.data.ignore)
    assert "columns ['n', 'row'] all look like row ids: none is data.id (pass --id to name it)" in inferred.notes


def test_unique_floats_emails_and_repeated_id_names_are_not_ids():
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "reading": rng.uniform(0, 1, 60),
            "email": [f"user{i}@example.com" for i in range(60)],
            "store_id": rng.integers(1, 6, 60),
            "y": rng.integers(0, 2, 60),
        }
    )
    inferred = infer_config_with_notes(frame, "y")
    assert inferred.config.data.id is None
    assert inferred.config.data.features == {"reading": "float", "store_id": "int"}
    assert inferred.config.data.ignore == ["email"]
    assert "column 'store_id': id-like name but 5 distinct of 60 values: a feature" in inferred.notes


def test_a_given_id_must_be_unique_set_and_not_the_target(titanic):
    with pytest.raises(ValueError, match=r"--id: column 'Pclass' is not unique in the sample: 3 values repeat"):
        infer_config(titanic, "Survived", id_column="Pclass")
    with pytest.raises(ValueError, match=r"--id: column 'Cabin' has \d+ null values"):
        infer_config(titanic, "Survived", id_column="Cabin")
    with pytest.raises(ValueError, match="--id: column 'Survived' is the target"):
        infer_config(titanic, "Survived", id_column="Survived")


def test_no_feature_left_says_why():
    frame = pd.DataFrame({"row": np.arange(30), "y": [0, 1, 1] * 10})
    with pytest.raises(ValueError, match="no feature columns left.*'row': unique sequential ints: data.id"):
        infer_config(frame, "y")


def test_breast_cancer_first_quarter_gives_no_hard_max_and_the_rest_passes_the_hard_rules():
    frame = datasets.load_breast_cancer(as_frame=True).frame
    quarter = len(frame) // 4
    config = infer_config(frame.iloc[:quarter], "target")
    bounds = hard_bounds(config)
    assert all(high is None for _, high in bounds.values())
    assert set(bounds) == {
        f"{stat} {size}" for stat in ("mean", "worst") for size in ("radius", "perimeter", "area")
    } | {f"{size} error" for size in ("radius", "perimeter", "area")}
    rest = frame.iloc[quarter:]
    assert all((rest[name] >= low).all() for name, (low, _) in bounds.items())
    assert set(rest["target"]) <= set(config.validation.target_classes)
    assert all(rule.nullable for name, rule in config.validation.columns.items() if name != "target")
    worst_area = config.validation.columns["worst area"].expected
    assert rest["worst area"].max() > worst_area.max  # the later batches do exceed the sample: a warning, not a block


def test_wine_half_gives_open_domains_classes_and_passes_the_other_half():
    frame = datasets.load_wine(as_frame=True).frame.sample(frac=1.0, random_state=0)
    half = len(frame) // 2
    config = infer_config(frame.iloc[:half], "target")
    assert (config.data.task, config.validation.target_classes) == ("classification", [0, 1, 2])
    bounds = hard_bounds(config)
    assert bounds == {"total_phenols": (0, None)}
    assert all((frame.iloc[half:][name] >= low).all() for name, (low, _) in bounds.items())
    assert config.data.ignore == [] and config.data.id is None and config.data.timestamp is None


def test_diabetes_scaled_features_get_no_hard_bounds_and_raw_ages_a_floor():
    scaled = datasets.load_diabetes(as_frame=True).frame
    config = infer_config(scaled, "target")
    assert config.data.task == "regression"
    assert hard_bounds(config) == {}
    for name in config.data.features:
        expected = config.validation.columns[name].expected
        assert expected.min < scaled[name].min() and scaled[name].max() < expected.max
    raw = datasets.load_diabetes(as_frame=True, scaled=False).frame
    assert hard_bounds(infer_config(raw, "target")) == {"age": (0, None)}


def test_render_round_trips_through_yaml(churn_config):
    text = render_config(churn_config, "data/churn.parquet")
    assert text.startswith("#") and "data/churn.parquet" in text.splitlines()[0]
    assert parse_config(yaml.safe_load(text)).model_dump() == churn_config.model_dump()


def test_render_round_trips_a_regression_config_with_ignored_columns(titanic):
    config = infer_config(titanic, "Fare")
    assert config.data.ignore and config.data.task == "regression"
    assert parse_config(yaml.safe_load(render_config(config, "s.csv"))).model_dump() == config.model_dump()


def test_render_explains_hard_and_expected_and_writes_only_inferred_rule_keys(churn_config):
    text = render_config(churn_config, "s.csv")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for phrase in (
        "expected: {min, max, max_null_fraction}",
        "only warn",
        "hard: {min: 0, max: 120}",
        "closed: true",
        "rejected",
        "data.ignore",
    ):
        assert phrase in header
    body = yaml.safe_load(text)
    assert body["validation"]["columns"]["customer_id"] == {"nullable": False}
    assert body["validation"]["columns"]["region"] == {
        "expected": {"max_null_fraction": 0.05},
        "domain": ["east", "north", "south", "west"],
    }
    assert body["validation"]["columns"]["support_calls"]["hard"] == {"min": 0}


def test_init_prints_its_choices(titanic, tmp_path):
    sample = tmp_path / "titanic.csv"
    titanic.to_csv(sample, index=False)
    config_path = tmp_path / "retrain.yaml"
    result = CliRunner().invoke(main, ["--config", str(config_path), "init", str(sample), "--target", "Survived"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"wrote {config_path}: 13 columns, task classification")
    assert "  column 'Boarded': text that parses as datetimes: data.timestamp" in lines
    assert "  column 'PassengerId': unique sequential ints with an id-like name: data.id" in lines
    written = load_config(config_path).data
    assert (written.id, written.timestamp, written.ignore) == ("PassengerId", "Boarded", ["Name", "Ticket", "Cabin"])
