"""Hundreds of versions: what has to be found across the whole Delta log still is (a file landed before, the
batch that landed latest, the batches after a version, the newest validated version, the standing rejections),
before and after `retrain maintain`, and with the landing index missing, stale, unreadable or of another table."""

import datetime as dt
import shutil
from pathlib import Path

import pytest

from retrain_assets.core import batches, delta, landing, maintenance, synthetic
from retrain_assets.core.config import load_config
from retrain_assets.core.inference import infer_config, render_config
from retrain_assets_tests.conftest import START, Project, write_config
from retrain_assets_tests.test_sensors import evaluate

pytestmark = pytest.mark.integration

VERSIONS = 300
LANDED_BEFORE = 150  # the version whose content file B repeats
LANDS_LATEST = 200  # the version recorded as landing latest, though 99 versions come after it
LATEST_LANDING = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)


def new_project(folder: Path) -> Project:
    folder.mkdir(parents=True)
    sample = synthetic.churn_batch(START, 200, seed=3)
    config = infer_config(sample, "churned", timestamp="event_time", id_column="customer_id", project="many")
    (folder / "retrain.yaml").write_text(render_config(config, "sample"))
    return Project(folder / "retrain.yaml", load_config(folder / "retrain.yaml"), [])


def batch_file(folder: Path, name: str, day: int, rows: int = 100) -> Path:
    path = folder / f"{name}.csv"
    synthetic.churn_batch(START + dt.timedelta(days=day), rows, seed=day).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def long_history(tmp_path_factory) -> Project:
    """raw_data with 300 versions: v0 is file A landed by `retrain ingest`, v1-v298 appended by another writer
    with the same commit metadata (v150 with the sha256 of file B, which was never ingested; v200 with a landing
    time half an hour ahead of the others), v299 landed by `retrain ingest`."""
    project = new_project(tmp_path_factory.mktemp("many") / "project")
    config, folder = project.config, project.path.parent
    landing.ingest_file(config, batch_file(folder, "a", 0))
    with open(batch_file(folder, "b", 1), "rb") as handle:
        sha_b = landing.file_sha256(handle)
    rows = delta.to_table_schema(synthetic.churn_batch(START, 5, seed=4), config.data.columns, "another writer")
    for version in range(1, VERSIONS - 1):
        if version % 20 == 1:  # a writer kept open grows slower with every commit
            appender = delta.TableAppender(config.table_uri(delta.RAW_TABLE))
        metadata = {delta.SHA_KEY: sha_b if version == LANDED_BEFORE else f"{version:064x}"}
        if version == LANDS_LATEST:
            metadata |= {delta.SOURCE_KEY: "late.csv", delta.LANDED_KEY: LATEST_LANDING.isoformat()}
        assert appender.append(rows, metadata) == version
    assert landing.ingest_file(config, batch_file(folder, "c", 2)).version == VERSIONS - 1
    return project


@pytest.fixture
def history_copy(long_history: Project, tmp_path: Path) -> Project:
    """A copy of :func:`long_history` of this test's own (its lake, storage home and files)."""
    folder = tmp_path / "project"
    shutil.copytree(long_history.path.parent, folder)
    return Project(folder / "retrain.yaml", load_config(folder / "retrain.yaml"), [])


def refusal(project: Project, name: str) -> str:
    with pytest.raises(landing.BatchRefused) as refused:
        landing.ingest_file(project.config, project.path.parent / f"{name}.csv")
    return str(refused.value)


def test_a_file_landed_hundreds_of_versions_ago_is_refused_naming_its_version(history_copy):
    config = history_copy.config
    assert "identical content already landed as raw_data version 0" in refusal(history_copy, "a")
    assert "identical content already landed as raw_data version 150" in refusal(history_copy, "b")
    assert landing.ingest_file(config, batch_file(history_copy.path.parent, "d", 3)).version == VERSIONS

    maintenance.maintain(config, maintenance.plan(config))  # a checkpoint, and the property commit v301

    assert "identical content already landed as raw_data version 0" in refusal(history_copy, "a")
    assert "identical content already landed as raw_data version 150" in refusal(history_copy, "b")
    assert f"identical content already landed as raw_data version {VERSIONS}" in refusal(history_copy, "d")
    assert landing.ingest_file(config, batch_file(history_copy.path.parent, "e", 4)).version == VERSIONS + 2


def test_a_landing_cannot_go_back_before_the_batch_that_landed_latest_however_old(history_copy):
    config, index = history_copy.config, history_copy.config.home / landing.INDEX_FILE
    late = batch_file(history_copy.path.parent, "replayed", 5)
    for kept in (True, False):  # the index as ingest keeps it, then rebuilt from the whole log
        if not kept:
            index.unlink()
        with pytest.raises(landing.BatchRefused, match=f"before raw_data version {LANDS_LATEST} \\(late.csv\\)"):
            landing.ingest_file(config, late, landed_at=dt.datetime.now(dt.timezone.utc))
    assert landing.ingest_file(config, late, landed_at=LATEST_LANDING).version == VERSIONS


def test_a_missing_stale_unreadable_or_foreign_landing_index_is_rebuilt_from_the_log(history_copy):
    config, folder = history_copy.config, history_copy.path.parent
    index = config.home / landing.INDEX_FILE
    stale = index.read_text()  # covers v0-v299
    assert landing.ingest_file(config, batch_file(folder, "d", 3)).version == VERSIONS

    index.write_text(stale)  # behind the log: v300 is read from the log
    assert f"already landed as raw_data version {VERSIONS}" in refusal(history_copy, "d")
    assert landing.LandedFiles.read(config).version == VERSIONS, "brought up to date and kept"

    index.unlink()
    assert "already landed as raw_data version 150" in refusal(history_copy, "b")
    rebuilt = landing.LandedFiles.read(config)
    assert rebuilt.version == VERSIONS and len(rebuilt.sha256) == VERSIONS + 1

    index.write_text('{"version": "many", "sha')  # torn, or not ours
    assert "already landed as raw_data version 0" in refusal(history_copy, "a")

    shutil.rmtree(config.table_uri(delta.RAW_TABLE))  # the lake made anew; the index is of the old table
    assert landing.ingest_file(config, folder / "b.csv").version == 0
    assert landing.ingest_file(config, folder / "a.csv").version == 1
    assert "already landed as raw_data version 0" in refusal(history_copy, "b")


def test_the_sensor_requests_exactly_the_batches_after_its_cursor(history_copy):
    write_config(history_copy, triggers={"new_version": {"coalesce": False}})
    result = evaluate(history_copy, cursor="295")
    assert [request.run_key for request in result.run_requests] == ["296", "297", "298", "299"]

    config = history_copy.config
    maintenance.maintain(config, maintenance.plan(config))  # v300: a table property change, no batch
    landing.ingest_file(config, batch_file(history_copy.path.parent, "d", 3))  # v301

    assert [request.run_key for request in evaluate(history_copy, cursor="299").run_requests] == ["301"]
    assert evaluate(history_copy, cursor="301").skip_message == "raw_data is still at version 301"
    assert delta.batch_versions(config.table_uri(delta.RAW_TABLE), 297, 300) == [298, 299]


def test_each_batch_is_validated_once_and_the_log_answers_the_same_after_maintain(tmp_path):
    project = new_project(tmp_path / "project")
    write_config(project, validation={"min_rows": 50, "max_batch_growth": None})
    config, folder = project.config, project.path.parent
    for day in range(12):  # v4 and v8 are too small for validation.min_rows: rejected
        landing.ingest_file(config, batch_file(folder, f"day-{day}", day, rows=30 if day in (4, 8) else 100))

    first = batches.validate_new_batches(config, 5)
    second = batches.validate_new_batches(config, 11)

    assert [b.raw_version for b in first.batches] == list(range(6)) and first.rejected == [4]
    assert [b.raw_version for b in second.batches] == list(range(6, 12)) and second.rejected == [8]
    logged = delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE))["raw_version"]
    assert sorted(logged) == list(range(12)), "one verdict per batch"

    def answers() -> tuple:
        return (
            batches.last_processed_version(config),
            batches.current_features(config).raw_version,
            [rejected["raw_version"] for rejected in batches.rejected_batches(config)],
            batches.accepted_rows_after(config, 5),
        )

    assert answers() == (11, 11, [4, 8], 5 * 100)
    maintenance.maintain(config, maintenance.plan(config))  # the validation log compacted into one file
    assert answers() == (11, 11, [4, 8], 5 * 100)
    assert batches.validate_new_batches(config, 11).batches == []

    write_config(project, validation={"min_rows": 1})
    config = project.config
    assert batches.revalidate(config, [4])[0].accepted
    assert answers() == (11, 11, [8], 5 * 100), "v4 appended to the features last; v8 still rejected"
    features = delta.read_table(config.table_uri(delta.FEATURES_TABLE), columns=[delta.RAW_VERSION_COLUMN])
    assert (features[delta.RAW_VERSION_COLUMN] == 4).sum() == 30
    with pytest.raises(batches.RevalidationRefused, match="accepted already"):
        batches.revalidate(config, [4])

    newest = landing.ingest_file(config, batch_file(folder, "day-12", 12)).version
    assert newest == 13, "v12 is maintain's table property change"
    assert [b.raw_version for b in batches.validate_new_batches(config, newest).batches] == [13]
    assert answers()[:2] == (13, 13)
