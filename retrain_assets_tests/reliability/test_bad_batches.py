"""Bad batches, one kind per case, through the real CLI on a project whose champion is already established.

Each kind has one expected outcome: **refused** at `retrain ingest` (the file is copied byte for byte into
quarantine, ``raw_data`` gets no version) or **blocked**: it lands as a ``raw_data`` version and a named
blocking check fails the run, so it never reaches ``validated_features``. Either way the champion and every
earlier table version stay as they were, and `retrain status` reports what happened.

The champion is trained once per module; each case runs on a copy of that project folder. Everything in
``retrain.yaml`` is relative to the folder, Delta logs hold relative paths and the Dagster instance follows
``DAGSTER_HOME``; only MLflow stores absolute artifact locations, which in a copy point to the module's
original (never written to by these cases: a rejected batch trains and loads no model).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets.app.render import describe_status
from retrain_assets.core import delta, landing, synthetic
from retrain_assets.core.config import Bounds, ColumnRule
from retrain_assets.core.inference import infer_config, render_config

START = dt.date(2026, 1, 5)
GOOD_DAYS = 3
ROWS = 200
SEED = 3
BAD_DAY = START + dt.timedelta(days=GOOD_DAYS)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def end_of(day: dt.date) -> str:
    """``--as-of`` for a day's batch: it lands at the end of that day (UTC)."""
    return f"{day.isoformat()}T23:59:00"


def retrain(config_path: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config_path), *map(str, args)], catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Baseline:
    folder: Path
    raw: list[pd.DataFrame]  # raw_data content at each version
    features: list[pd.DataFrame]  # validated_features content at each version
    champion: str


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    """Three good days landed and validated, a champion trained on them. The reviewer declared what the
    business knows, as hard rules: ``tenure_months`` is never null and lies in [0, 120], and ``plan`` has
    exactly its three values (``closed``); what ``init`` inferred from the sample only warns. The config
    leaves ``monthly_charges`` without a range, ``region`` nullable and ``target_classes`` unset, so the
    rules that need no configuration (finite numbers, a column not entirely null, two classes) are what
    stop those cases."""
    folder = tmp_path_factory.mktemp("baseline")
    config = infer_config(
        synthetic.churn_batch(START, ROWS, SEED),
        "churned",
        timestamp="event_time",
        id_column="customer_id",
        project="churn",
    )
    rules = config.validation.columns
    rules["tenure_months"] = ColumnRule(nullable=False, hard=Bounds(min=0, max=120))
    rules["plan"] = ColumnRule(domain=rules["plan"].domain, closed=True)
    rules["monthly_charges"] = ColumnRule()
    rules["region"].nullable = True
    config.validation.target_classes = None
    config_path = folder / "retrain.yaml"
    config_path.write_text(render_config(config, "synthetic churn"))
    (folder / "data").mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DAGSTER_HOME", raising=False)
        for day, frame in synthetic.churn_days(START, GOOD_DAYS, ROWS, seed=SEED):
            path = folder / "data" / f"churn-{day}.csv"
            frame.to_csv(path, index=False)
            assert retrain(config_path, "ingest", path, "--as-of", end_of(day)).exit_code == 0
        trained = retrain(config_path, "materialize")
        assert trained.exit_code == 0 and "promoted" in trained.output, trained.output
        status = json.loads(retrain(config_path, "status", "--json").output)
    config = lake_config(config_path)
    return Baseline(
        folder,
        raw=[delta.read_table(config.table_uri(delta.RAW_TABLE), v) for v in range(GOOD_DAYS)],
        features=[delta.read_table(config.table_uri(delta.FEATURES_TABLE), v) for v in range(GOOD_DAYS)],
        champion=status["champion"]["version"],
    )


def lake_config(config_path: Path):
    from retrain_assets.core.config import load_config

    return load_config(config_path)


# --- how each bad file is made from a good day's frame -----------------------------------------------------
def csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def assign(**columns) -> Callable[[pd.DataFrame, Path], Path]:
    """A CSV of the good frame with some columns replaced (values, or functions of the frame)."""

    def make(frame: pd.DataFrame, path: Path) -> Path:
        return csv(frame.assign(**{k: v(frame) if callable(v) else v for k, v in columns.items()}), path)

    return make


def rows_set(column: str, rows: slice, value) -> Callable[[pd.DataFrame, Path], Path]:
    def make(frame: pd.DataFrame, path: Path) -> Path:
        frame = frame.astype({column: object})
        frame.loc[rows, column] = value
        return csv(frame, path)

    return make


def raw_bytes(content: bytes) -> Callable[[pd.DataFrame, Path], Path]:
    def make(frame: pd.DataFrame, path: Path) -> Path:
        path.write_bytes(content)
        return path

    return make


def header_only(frame: pd.DataFrame, path: Path) -> Path:
    return csv(frame.head(0), path)


def truncated(frame: pd.DataFrame, path: Path) -> Path:
    """Cut off mid-row, as a copy taken while the file was still being written."""
    text = frame.to_csv(index=False)
    cut = text.index(",", text.index("\n", len(text) // 2) + 1)  # after the first field of a row
    path.write_text(text[:cut])
    return path


def corrupt_parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path.with_suffix(".tmp"), index=False)
    data = path.with_suffix(".tmp").read_bytes()
    path.with_suffix(".tmp").unlink()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[-8:])
    return path


def latin1(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.copy()
    frame.loc[7, "region"] = "nörth"
    path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    return path


def duplicated_ids(frame: pd.DataFrame, path: Path) -> Path:
    frame = frame.copy()
    frame.loc[1:10, "customer_id"] = frame.loc[0, "customer_id"]
    return csv(frame, path)


def ten_times(frame: pd.DataFrame, path: Path) -> Path:
    return csv(synthetic.churn_batch(BAD_DAY, 10 * ROWS, SEED), path)


def shifted(delta: dt.timedelta) -> Callable[[pd.DataFrame, Path], Path]:
    return assign(event_time=lambda f: f["event_time"] + delta)


def nowhere(frame: pd.DataFrame, path: Path) -> Path:
    return path.with_name("not-there.csv")


@dataclass(frozen=True)
class Case:
    """A kind of bad batch, its file name, and where and how it must be stopped."""

    name: str
    file: str
    make: Callable[[pd.DataFrame, Path], Path]
    check: Optional[str]  # None: refused at ingest; else the blocking check that stops it
    column: Optional[str]
    rule: str

    @property
    def refused(self) -> bool:
        return self.check is None


CASES = [
    Case(
        "missing column",
        "missing.csv",
        lambda f, p: csv(f.drop(columns=["region"]), p),
        None,
        "region",
        "missing columns",
    ),
    Case("extra column", "extra.csv", assign(coupon_code="X1"), None, "coupon_code", "not in data.columns"),
    Case(
        "renamed column",
        "renamed.csv",
        lambda f, p: csv(f.rename(columns={"plan": "plan_name"}), p),
        None,
        "plan_name",
        "missing columns ['plan']",
    ),
    Case(
        "strings in a numeric column",
        "wrong-type.csv",
        rows_set("tenure_months", slice(5, 6), "twelve"),
        None,
        "tenure_months",
        "cannot be cast to int",
    ),
    Case(
        "nulls in a non-nullable column",
        "nulls.csv",
        rows_set("tenure_months", slice(0, 19), None),
        "required_values_present",
        "tenure_months",
        "expect_column_values_to_not_be_null",
    ),
    Case(
        "all-null column",
        "all-null.csv",
        assign(region=None),
        "required_values_present",
        "region",
        "expect_column_proportion_of_non_null_values_to_be_between",
    ),
    Case(
        "out-of-range values",
        "range.csv",
        rows_set("tenure_months", slice(3, 5), 999),
        "values_in_range",
        "tenure_months",
        "expect_column_values_to_be_between",
    ),
    Case(
        "unknown categories",
        "category.csv",
        rows_set("plan", slice(2, 4), "enterprise"),
        "categories_in_domain",
        "plan",
        "expect_column_values_to_be_in_set",
    ),
    Case("empty file", "empty.csv", raw_bytes(b""), None, None, "empty file (0 bytes)"),
    Case("header only", "header.csv", header_only, None, None, "no rows"),
    Case("truncated CSV", "truncated.csv", truncated, None, None, "truncated"),
    Case("corrupt Parquet", "corrupt.parquet", corrupt_parquet, None, None, "cannot be read as PARQUET"),
    Case("non-UTF-8 bytes", "latin1.csv", latin1, None, "region", "not UTF-8"),
    Case(
        "duplicated ids",
        "dup-ids.csv",
        duplicated_ids,
        "batch_integrity",
        "customer_id",
        "expect_column_values_to_be_unique",
    ),
    Case(
        "single class in the target",
        "one-class.csv",
        assign(churned=0),
        "target_balanced",
        "churned",
        "expect_column_unique_value_count_to_be_between",
    ),
    Case(
        "target copied into a feature",
        "leak.csv",
        assign(support_calls=lambda f: f["churned"]),
        "no_target_leakage",
        "support_calls",
        "feature_is_not_a_copy_of_the_target",
    ),
    Case(
        "10x the usual row count",
        "huge.csv",
        ten_times,
        "batch_integrity",
        None,
        "expect_table_row_count_to_be_between",
    ),
    Case(
        "inf in a float column",
        "inf.csv",
        rows_set("monthly_charges", slice(4, 6), np.inf),
        "values_in_range",
        "monthly_charges",
        "finite",
    ),
    Case(
        "1e308 in an int column",
        "1e308.csv",
        rows_set("tenure_months", slice(4, 5), 1e308),
        None,
        "tenure_months",
        "cannot be cast to int",
    ),
    Case(
        "timestamps after the --as-of landing time",
        "future.csv",
        shifted(dt.timedelta(days=3)),
        None,
        "event_time",
        "before the batch's own newest",
    ),
    Case(
        "timestamps far in the past",
        "ancient.csv",
        shifted(-dt.timedelta(days=365 * 40)),
        "values_in_range",
        "event_time",
        "not older than 3650 days",
    ),
    Case("PNG bytes named .csv", "image.csv", raw_bytes(PNG), None, None, "not UTF-8"),
    Case(
        "random bytes named .csv",
        "random.csv",
        raw_bytes(np.random.default_rng(1).bytes(2048)),
        None,
        None,
        "not UTF-8",
    ),
    Case("a .png file", "image.png", raw_bytes(PNG), None, None, "unsupported file type '.png'"),
    Case("a path that does not exist", "not-there.csv", nowhere, None, None, "no such file"),
]


@pytest.fixture
def copy(baseline, tmp_path, monkeypatch) -> Path:
    """The baseline project folder copied for one case; returns its config path."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    folder = tmp_path / "project"
    shutil.copytree(baseline.folder, folder)
    return folder / "retrain.yaml"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_batch_is_refused_or_blocked_and_nothing_else_changes(case, baseline, copy, tmp_path):
    config = lake_config(copy)
    raw_uri, features_uri = config.table_uri(delta.RAW_TABLE), config.table_uri(delta.FEATURES_TABLE)
    good = synthetic.churn_batch(BAD_DAY, ROWS, SEED)
    path = case.make(good, tmp_path / case.file)
    named = [text for text in (case.column, case.rule) if text]

    ingested = retrain(copy, "ingest", path, "--as-of", end_of(BAD_DAY))

    if case.refused:
        assert ingested.exit_code == 1, ingested.output
        assert "1 of 1 files refused" in ingested.output
        refusal = ingested.output.split("refused ", 1)[1]
        assert case.file in refusal and all(text in refusal for text in named), refusal
        assert delta.latest_version(raw_uri) == GOOD_DAYS - 1
    else:
        assert ingested.exit_code == 0, ingested.output
        assert f"raw_data version {GOOD_DAYS}" in ingested.output
        materialized = retrain(copy, "materialize")
        assert materialized.exit_code == 1, materialized.output
        failed = [line.strip() for line in materialized.output.splitlines() if line.strip().startswith("FAILED ")]
        assert [line.split(":")[0] for line in failed] == [f"FAILED {case.check}"], materialized.output
        assert f"raw_data v{GOOD_DAYS}" in failed[0] and all(text in failed[0] for text in named), failed[0]
        landed = delta.read_batch(raw_uri, GOOD_DAYS).to_pandas()
        source = pd.read_csv(path)
        assert landed["customer_id"].tolist() == source["customer_id"].tolist(), "the batch stays intact in raw_data"

    for version, content in enumerate(baseline.raw):
        pd.testing.assert_frame_equal(delta.read_table(raw_uri, version), content)
    assert delta.latest_version(features_uri) == GOOD_DAYS - 1, "nothing appended to validated_features"
    for version, content in enumerate(baseline.features):
        pd.testing.assert_frame_equal(delta.read_table(features_uri, version), content)

    report = json.loads(retrain(copy, "status", "--json").output)
    assert report["champion"]["version"] == baseline.champion
    text = describe_status(report)
    if case.refused:
        newest = report["refused_files"][-1]
        assert newest["file"] == str(path) and all(t in newest["reason"] for t in named), newest
        assert f"refused {path.name}" in text
        if path.exists():
            assert sha256(Path(newest["quarantined"])) == sha256(path), "quarantined byte for byte"
            assert Path(newest["quarantined"]).parent == config.quarantine_dir
        else:
            assert newest["quarantined"] is None and not config.quarantine_dir.exists()
    else:
        assert report["last_processed_version"] == GOOD_DAYS
        [check] = [c for c in report["latest_checks"] if c["name"] == case.check]
        assert not check["passed"] and check["blocking"]
        assert f"raw_data v{GOOD_DAYS}" in check["message"] and all(t in check["message"] for t in named)
        assert f"FAILED - raw_data v{GOOD_DAYS}" in text.replace(f"check validated_features/{case.check}: ", "")


def test_the_finite_rule_needs_no_configured_range(baseline):
    """``monthly_charges`` has no range in the baseline config: 1e308 passes, -inf does not."""
    from retrain_assets.core.validation import check_results, validate_batch

    config = lake_config(baseline.folder / "retrain.yaml")
    frame = delta.read_table(config.table_uri(delta.RAW_TABLE), 0)
    frame.loc[0, "monthly_charges"] = 1e308
    assert check_results(validate_batch(frame, config, "raw_data v0"))["values_in_range"].passed
    frame.loc[0, "monthly_charges"] = -np.inf
    passed, message, _ = check_results(validate_batch(frame, config, "raw_data v0"))["values_in_range"]
    assert not passed and "column 'monthly_charges'" in message and "finite" in message


def test_a_batch_that_crashes_validation_is_rejected_and_blocks_nothing_after_it(project, tmp_path):
    """Finding 3: a batch whose validation raised was never logged, so every later run read it again and
    failed, and no batch after it was ever validated. The crash here is real, not patched in: a sentinel
    event time of 9999-12-31 (how warehouse exports often write "open-ended") is a valid Parquet
    timestamp[us], so the batch lands, and validation's conversion of timestamps for Great Expectations
    overflows (OutOfBoundsDatetime: pandas' nanoseconds end in 2262). If that conversion is ever fixed,
    this test needs another input that crashes validation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrain_assets.core import batches
    from retrain_assets.core.landing import ingest_file

    config = project.config
    ingest_file(config, project.batch(0))
    table = delta.to_table_schema(pd.read_csv(project.batch(1)), config.data.columns, "day 1")
    stamps = table["event_time"].to_pylist()
    stamps[5] = dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc)
    column = table.schema.get_field_index("event_time")
    path = tmp_path / "sentinel.parquet"
    pq.write_table(table.set_column(column, "event_time", pa.array(stamps, pa.timestamp("us", tz="UTC"))), path)
    assert ingest_file(config, path).version == 1
    ingest_file(config, project.batch(3))

    run = batches.validate_new_batches(config, 2)

    assert run.accepted == [0, 2] and run.rejected == [1]
    verdict = run.batches[1].checks["batch_integrity"]
    assert verdict.rejects and "raw_data v1: validation crashed with OutOfBoundsDatetime" in verdict.message
    assert "`retrain revalidate 1`" in verdict.message
    [rejected] = batches.rejected_batches(config)
    assert rejected["raw_version"] == 1 and rejected["failed_checks"] == ["batch_integrity"]
    assert rejected["rows"] == 600 and "OutOfBoundsDatetime" in rejected["message"]
    assert delta.latest_version(config.table_uri(delta.FEATURES_TABLE)) == 1, "v0 and v2 appended, v1 not"
    assert batches.validate_new_batches(config, 2).batches == [], "the next run does not read it again"


@pytest.mark.parametrize(
    "validation, quoting, read, shown, expected",
    [
        ({}, "customer_id", True, False, "ValueError: invalid literal for int() with base 10: '[withheld]'"),
        ({}, "customer_id", False, False, "ValueError (message withheld: the batch was not read, so data.id"),
        ({"show_id_samples": True}, "customer_id", True, True, "ValueError: invalid literal for int()"),
        ({"redact_samples": True}, "region", True, False, "ValueError (message withheld: validation.redact_samples)"),
        ({}, "region", True, True, "ValueError: invalid literal for int() with base 10: "),
    ],
)
def test_a_validation_crash_logs_its_exception_without_withheld_values(
    project, validation, quoting, read, shown, expected
):
    """Finding 7: a crashed validation put the exception's text in the validation_log (and so the check,
    alerts and Dagster events), and exception texts quote values: ``int('C20260105-00003')`` names an id.
    The exception here is real, raised by the batch's own value; its type always stays, its values follow
    the sample rules: ids cut out unless ``show_id_samples``, every value withheld with ``redact_samples``,
    and the whole message withheld when the batch's rows (to find its ids in) were never read."""
    from retrain_assets.core import batches
    from retrain_assets_tests.conftest import write_config

    write_config(project, validation=validation)
    config = project.config
    landing.ingest_file(config, project.batch(0))
    frame = delta.read_batch(config.table_uri(delta.RAW_TABLE), 0).to_pandas()
    value = frame[quoting].iloc[3]
    with pytest.raises(ValueError) as raised:
        int(value)

    batches._log(config, batches.crashed(config, 0, len(frame), raised.value, frame if read else None))

    [rejected] = batches.rejected_batches(config)
    assert rejected["failed_checks"] == ["batch_integrity"] and expected in rejected["message"], rejected["message"]
    logged = delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE))["messages"].str.cat()
    assert (repr(value) in logged) == shown and (value in rejected["message"]) == shown
