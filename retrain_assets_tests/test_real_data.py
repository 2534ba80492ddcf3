"""Real tabular data through the real CLI: scikit-learn's bundled breast cancer (binary), wine (multiclass) and
diabetes (regression) sets, with their own column names, loaded from the installed package (no network).

Each set is cut into six CSV parts. `retrain init` infers `retrain.yaml` from the first part and the file is
left as init wrote it; then every part lands with `retrain ingest` and goes through `retrain tick`: the first
three parts land together as the history the bootstrap champion trains on, then one part per tick. (Half the
set: the holdout is a hash of each row, not stratified, and on a third of wine, 60 rows, its 11 rows hold two
of the three classes, so the candidate's roc_auc is undefined, `candidate_meets_minimum` fails and so does the
run.) No clean part may be blocked. Breast cancer keeps the file's row order, unshuffled, so its label mix
moves between batches as it does in the file (two thirds malignant in the first part, a quarter in the last),
which may warn but must not block. Wine is sorted by class (unshuffled parts would hold one class each) and
diabetes' order means nothing; both are shuffled with a fixed seed.

The corrupted cases run on a copy of each trained project folder (as in ``reliability/test_bad_batches.py``)
whose `retrain.yaml` first declares the limits a reviewer would declare: a column that must be set, a physical
maximum. Each bad file is a clean part with a few cells broken and lands as its own batch; one tick then judges
each batch alone. Each must be stopped by the one blocking check it breaks, with a message naming the column,
the rule and the version (or be refused at ingest, naming file and column), and the champion and
``validated_features`` must stay as they were.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets.core import delta
from retrain_assets.core.config import load_config

pytestmark = pytest.mark.integration

PARTS = 6
HISTORY = 3  # parts landed before the first tick
SEED = 7
TARGET = "target"


def retrain(config_path: Path, *args: Any):
    return CliRunner().invoke(main, ["--config", str(config_path), *map(str, args)], catch_exceptions=False)


def status(config_path: Path) -> dict:
    result = retrain(config_path, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- the data sets and how they are cut ---------------------------------------------------------------------
def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).frame


def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame


def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame


def cut(frame: pd.DataFrame, shuffle: bool, parts: int = PARTS) -> list[pd.DataFrame]:
    """``parts`` consecutive slices of nearly equal size, after a seeded shuffle when ``shuffle``."""
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=SEED)
    frame = frame.reset_index(drop=True)
    return [frame.iloc[rows].reset_index(drop=True) for rows in np.array_split(np.arange(len(frame)), parts)]


def every(step: int, column: str, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The frame with ``column`` set to ``value`` on every ``step``-th row: spread over the batch, so the
    broken rows are not all of one class (which would also read as a leak through the null indicator)."""

    def make(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object}) if isinstance(value, str) else frame.copy()
        frame.loc[frame.index[::step], column] = value
        return frame

    return make


@dataclass(frozen=True)
class Corruption:
    """A bad copy of a clean part, and where it must be stopped (``check`` None: refused at ingest)."""

    name: str
    make: Callable[[pd.DataFrame], pd.DataFrame]
    check: str | None
    column: str
    rule: str


def nulls_in(column: str, step: int) -> Corruption:
    """Nulls in a column the reviewer declared ``nullable: false``."""
    return Corruption(
        "nulls", every(step, column, None), "required_values_present", column, "expect_column_values_to_not_be_null"
    )


def past_hard_max(column: str, step: int, value: float) -> Corruption:
    """A value past the ``hard`` maximum the reviewer declared."""
    return Corruption(
        "past hard max", every(step, column, value), "values_in_range", column, "expect_column_values_to_be_between"
    )


def new_class(step: int, value: int) -> Corruption:
    """A target class outside ``target_classes``: always a hard failure."""
    return Corruption(
        "new class", every(step, TARGET, value), "categories_in_domain", TARGET, "expect_column_values_to_be_in_set"
    )


@dataclass(frozen=True)
class Dataset:
    name: str
    load: Callable[[], pd.DataFrame]
    shuffle: bool
    task: str
    metric: str
    floor: float  # the champion's holdout metric must be above this
    reviewed: dict[str, dict]  # validation.columns entries a reviewer declares (merged into init's)
    corruptions: tuple[Corruption, ...]


DATASETS = {
    data.name: data
    for data in (
        Dataset(
            "breast_cancer",
            breast_cancer,
            shuffle=False,
            task="classification",
            metric="roc_auc",
            floor=0.9,
            # a nucleus is always measured; an area in the images' units never reaches 10,000 (max 4254)
            reviewed={"mean radius": {"nullable": False}, "worst area": {"hard": {"min": 0, "max": 10_000}}},
            corruptions=(nulls_in("mean radius", 10), past_hard_max("worst area", 40, 42_540.0), new_class(15, 2)),
        ),
        Dataset(
            "wine",
            wine,
            shuffle=True,
            task="classification",
            metric="roc_auc",
            floor=0.9,
            # every analysis reports flavanoids; no wine holds 25 % alcohol (max 14.83)
            reviewed={"flavanoids": {"nullable": False}, "alcohol": {"hard": {"min": 0, "max": 25}}},
            corruptions=(nulls_in("flavanoids", 6), past_hard_max("alcohol", 12, 135.0), new_class(10, 3)),
        ),
        Dataset(
            "diabetes",
            diabetes,
            shuffle=True,
            task="regression",
            metric="r2",
            floor=0.2,
            # every patient has a BMI; nobody is 120 (max 79)
            reviewed={"bmi": {"nullable": False}, "age": {"hard": {"min": 0, "max": 120}}},
            corruptions=(
                nulls_in("bmi", 10),
                past_hard_max("age", 30, 590.0),
                Corruption("text in a number", every(25, "bp", "101 mmHg"), None, "bp", "cannot be cast to float"),
            ),
        ),
    )
}
CASES = [(data.name, case) for data in DATASETS.values() for case in data.corruptions]


# --- the clean sequence, once per data set ------------------------------------------------------------------
@dataclass
class Trained:
    data: Dataset
    folder: Path
    parts: list[Path]
    ticks: list[dict]  # `retrain tick --json` of each tick
    failed_ticks: list[str]  # for each tick that exited 1: what landed and the checks that failed
    status: dict
    log: pd.DataFrame  # the validation_log table
    features_version: int
    features_rows: int
    seconds: float

    @property
    def champion(self) -> dict:
        return self.status["champion"]


def run_clean_sequence(data: Dataset, folder: Path) -> Trained:
    started = time.monotonic()
    parts = []
    for index, frame in enumerate(cut(data.load(), data.shuffle)):
        parts.append(folder / "data" / f"{data.name}-part{index}.csv")
        parts[-1].parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(parts[-1], index=False)
    config_path = folder / "retrain.yaml"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DAGSTER_HOME", raising=False)
        init = retrain(config_path, "init", parts[0], "--target", TARGET)
        assert init.exit_code == 0 and f"task {data.task}" in init.output, init.output
        ticks, failed_ticks = [], []
        for landing in [parts[:HISTORY], *([part] for part in parts[HISTORY:])]:
            ingested = retrain(config_path, "ingest", *landing)
            assert ingested.exit_code == 0, ingested.output
            ticked = retrain(config_path, "tick", "--json")
            ticks.append(json.loads(ticked.stdout))
            if ticked.exit_code != 0:  # asserted in the test, after the validation log has been looked at
                latest = status(config_path)["latest_checks"]
                checks = [c for c in latest if not c["passed"] and c["severity"] == "ERROR"]
                failed_ticks.append(
                    f"tick after {[p.name for p in landing]}: "
                    + "; ".join(f"{c['name']}: {c['message']}" for c in checks)
                )
        report = status(config_path)
    config = load_config(config_path)
    features_uri = config.table_uri(delta.FEATURES_TABLE)
    return Trained(
        data,
        folder,
        parts,
        ticks,
        failed_ticks,
        report,
        log=delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE)),
        features_version=delta.latest_version(features_uri),
        features_rows=len(delta.read_table(features_uri)),
        seconds=time.monotonic() - started,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Callable[[str], Trained]:
    """The trained project of a data set by name, its clean sequence run on first use only."""
    done: dict[str, Trained] = {}

    def get(name: str) -> Trained:
        if name not in done:
            done[name] = run_clean_sequence(DATASETS[name], tmp_path_factory.mktemp(name))
        return done[name]

    return get


def reviewed_copy(project: Trained, folder: Path) -> Path:
    """A copy of the trained project whose retrain.yaml declares the data set's reviewed limits."""
    shutil.copytree(project.folder, folder)
    config_path = folder / "retrain.yaml"
    raw = yaml.safe_load(config_path.read_text())
    columns = raw["validation"]["columns"]
    for name, rule in project.data.reviewed.items():
        columns[name] = {**columns.get(name, {}), **rule}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    load_config(config_path)  # the reviewed file is still valid
    return config_path


def bad_file(project: Trained, case: Corruption, folder: Path) -> Path:
    """The last clean part with the corruption applied (a new file: ingest refuses repeated content)."""
    path = folder / f"{project.data.name}-{case.name.replace(' ', '-')}.csv"
    case.make(pd.read_csv(project.parts[-1])).to_csv(path, index=False)
    return path


# --- the tests ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATASETS)
def test_no_clean_batch_is_blocked_and_a_champion_is_trained(name, trained):
    project = trained(name)
    data, log = project.data, project.log

    raw_versions = list(range(PARTS))
    assert sorted(log["raw_version"]) == raw_versions, "every landed part validated exactly once"
    blocked = log[~log["accepted"]]
    assert blocked.empty, "clean batches blocked:\n" + "\n".join(
        f"raw_data v{row.raw_version}: {row.failed_checks}: "
        + "; ".join(json.loads(row.messages)[check] for check in row.failed_checks.split(","))
        for row in blocked.itertuples()
    )
    assert project.features_rows == len(data.load()), "every clean row reached validated_features"
    assert not project.failed_ticks, project.failed_ticks
    launched = [launch for tick in project.ticks for launch in tick["launched"]]
    assert launched and all(launch["success"] for launch in launched), launched
    assert project.status["last_processed_version"] == PARTS - 1
    hard = [c for c in project.status["latest_checks"] if c["blocking"] and c["asset"] == "validated_features"]
    assert hard and all(c["passed"] for c in hard), hard

    champion = project.champion
    assert champion is not None, "no champion after the clean sequence"
    value = champion["metrics"][data.metric]
    assert value > data.floor, f"{name}: champion v{champion['version']} {data.metric} {value:.4f}"
    if data.task == "classification":
        assert champion["metrics"]["accuracy"] > 0.85, champion["metrics"]

    warned = log[log["warned_checks"] != ""]
    kinds = sorted({check for checks in warned["warned_checks"] for check in checks.split(",")})
    drifted = sum("drift" in (launch["fired"] or "").split(",") for launch in launched)
    promoted = sum(bool(launch["decision"] and launch["decision"]["promoted"]) for launch in launched)
    print(
        f"\n{name}: {len(log)} batches ({len(data.load())} rows), {len(blocked)} blocked, {len(warned)} warned "
        f"({', '.join(kinds) or 'none'}); {len(launched)} ticks, drift fired in {drifted}, {promoted} promoted; "
        f"champion v{champion['version']} {data.metric} {value:.4f} (trained on raw_data up to "
        f"v{champion['delta_version']}); clean sequence {project.seconds:.0f} s"
    )


@dataclass
class Stopped:
    """A reviewed copy of a trained project after its bad batches landed and one `retrain tick` ran."""

    config_path: Path
    files: dict[str, Path]  # case name -> bad file
    ingested: dict[str, Any]  # case name -> the `retrain ingest` result
    versions: dict[str, int]  # blocked case name -> the raw_data version it landed as
    tick: Any
    status: dict
    log: pd.DataFrame


@pytest.fixture(scope="module")
def stopped(trained, tmp_path_factory) -> Callable[[str], Stopped]:
    """Per data set, once: a reviewed copy where every bad file is ingested on its own (the blocked ones land
    as consecutive raw_data versions) and then one tick validates each of them as its own batch. One run
    instead of one per case keeps the module fast; each batch is still judged alone, and a run whose batches
    are all rejected must fail."""
    done: dict[str, Stopped] = {}

    def get(name: str) -> Stopped:
        if name in done:
            return done[name]
        project = trained(name)
        folder = tmp_path_factory.mktemp(f"{name}-stopped")
        with pytest.MonkeyPatch.context() as env:
            env.delenv("DAGSTER_HOME", raising=False)
            config_path = reviewed_copy(project, folder / "project")
            files, ingested, versions = {}, {}, {}
            for case in project.data.corruptions:
                files[case.name] = bad_file(project, case, folder)
                ingested[case.name] = retrain(config_path, "ingest", files[case.name])
                if case.check is not None:
                    versions[case.name] = PARTS + len(versions)
            tick = retrain(config_path, "tick", "--json")
            report = status(config_path)
        config = load_config(config_path)
        log = delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE))
        done[name] = Stopped(config_path, files, ingested, versions, tick, report, log)
        return done[name]

    return get


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{name}-{case.name}" for name, case in CASES])
def test_corrupted_batch_is_stopped_and_the_champion_stays(name, case, trained, stopped):
    project, after = trained(name), stopped(name)
    config = load_config(after.config_path)
    raw_uri, features_uri = config.table_uri(delta.RAW_TABLE), config.table_uri(delta.FEATURES_TABLE)
    path, ingested = after.files[case.name], after.ingested[case.name]

    if case.check is None:
        assert ingested.exit_code == 1, ingested.output
        refusal = ingested.output.split("refused ", 1)[1]
        assert path.name in refusal and repr(case.column) in refusal and case.rule in refusal, refusal
        assert [r for r in after.status["refused_files"] if r["file"] == str(path)], after.status["refused_files"]
        assert delta.latest_version(raw_uri) == PARTS - 1 + len(after.versions), "a refused file writes no version"
    else:
        version = after.versions[case.name]
        assert ingested.exit_code == 0 and f"raw_data version {version}" in ingested.output, ingested.output
        [verdict] = after.log[after.log["raw_version"] == version].itertuples()
        assert not verdict.accepted and verdict.failed_checks == case.check, verdict
        message = json.loads(verdict.messages)[case.check]
        named = [f"raw_data v{version}", f"column {case.column!r}", case.rule]
        assert all(text in message for text in named), message
        [check] = [c for c in after.status["latest_checks"] if c["name"] == case.check]
        assert not check["passed"] and check["blocking"] and check["severity"] == "ERROR", check
        assert check["asset"] == "validated_features" and all(text in check["message"] for text in named), check
        assert len(delta.read_batch(raw_uri, version)) == len(pd.read_csv(path)), "the batch stays intact in raw_data"

    assert after.status["champion"]["version"] == project.champion["version"]
    assert after.status["champion"]["delta_version"] == project.champion["delta_version"]
    assert delta.latest_version(features_uri) == project.features_version, "validated_features gained nothing"
    assert len(delta.read_table(features_uri)) == project.features_rows


@pytest.mark.parametrize("name", DATASETS)
def test_the_stored_holdout_buckets_pick_the_rows_hashing_would(name, trained):
    """Each accepted batch stores its rows' holdout buckets, so no run hashes the table again; the buckets
    must be the hashes of the rows as they are read back, or the champion's holdout would move."""
    from retrain_assets.core import training

    project = trained(name)
    config = load_config(project.folder / "retrain.yaml")
    uri = config.table_uri(delta.FEATURES_TABLE)
    frame = delta.read_table(uri)
    column = training.bucket_column(config)
    hashed = frame.drop(columns=[column])
    assert (frame[column].to_numpy() == training.holdout_buckets(hashed, config)).all()

    train, holdout = training.split(frame, config)
    train_hashed, holdout_hashed = training.split(hashed, config)  # a table from before the stored buckets
    pd.testing.assert_frame_equal(holdout, holdout_hashed)
    pd.testing.assert_frame_equal(train, train_hashed)
    ref = delta.TableRef(uri, delta.latest_version(uri), PARTS - 1)
    read = training.holdout_rows(training.read_window(ref, config, holdout_only=True), config)
    expected = holdout[list(config.data.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(read.reset_index(drop=True), expected)  # only the holdout was read


@pytest.mark.parametrize("name", DATASETS)
def test_a_tick_over_only_bad_batches_fails_on_exactly_their_checks(name, stopped):
    after = stopped(name)
    data = DATASETS[name]

    assert after.tick.exit_code == 1, after.tick.output
    [launch] = [run for run in json.loads(after.tick.stdout)["launched"] if run["source"] == "raw_data_version_sensor"]
    assert launch["success"] is False and launch["decision"] is None, launch
    assert after.status["last_processed_version"] == PARTS - 1 + len(after.versions)
    failed = {c["name"] for c in after.status["latest_checks"] if not c["passed"] and c["severity"] == "ERROR"}
    assert failed == {case.check for case in data.corruptions if case.check}, after.status["latest_checks"]


@pytest.mark.parametrize("name", DATASETS)
def test_validate_accepts_a_clean_part_and_rejects_each_corruption(name, trained, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = trained(name)
    config_path = reviewed_copy(project, tmp_path / "project")

    clean = retrain(config_path, "validate", project.parts[-1])

    assert clean.exit_code == 0, clean.output
    assert clean.output.startswith(f"{project.parts[-1].name}: accepted: "), clean.output
    assert "FAILED" not in clean.output, clean.output
    for case in project.data.corruptions:
        path = bad_file(project, case, tmp_path)
        judged = retrain(config_path, "validate", path)
        assert judged.exit_code == 1, judged.output
        failed = [line for line in judged.output.splitlines() if "FAILED" in line or "REFUSED" in line]
        assert len(failed) == 1, judged.output
        assert repr(case.column) in failed[0] and case.rule in failed[0], failed[0]
        assert case.check is None or case.check in failed[0], failed[0]
