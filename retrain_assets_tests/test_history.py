"""Historical retrains as partitions: Delta time travel to the version landed by each window's end."""

import datetime as dt

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterRunStatus, RunsFilter
from mlflow import MlflowClient

from retrain_assets.app.execution import backfill, ingest
from retrain_assets.core import delta, synthetic
from retrain_assets.core.backtest import HISTORY_SUFFIX
from retrain_assets.defs.assets.history import WINDOW_CHECK
from retrain_assets.defs.jobs import HISTORY_JOB, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

from .conftest import START, write_config

pytestmark = pytest.mark.integration


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59), dt.timezone.utc)


@pytest.fixture
def three_weeks(automated, persistent):
    """Three weeks of 200-row days landed with their historical times; day 9 (week 2) is corrupted."""
    write_config(automated, history={"partitions": "weekly", "start": START.isoformat()})
    folder = automated.path.parent / "history"
    folder.mkdir()
    for day, frame in synthetic.churn_days(START, 21, 200, seed=3, bad_day=9):
        path = folder / f"{day}.csv"
        frame.to_csv(path, index=False)
        ingest(automated.config, persistent, path, end_of(day))
    return automated


def test_version_as_of_follows_landing_times(three_weeks):
    uri = three_weeks.config.table_uri(delta.RAW_TABLE)
    assert delta.version_as_of(uri, end_of(START) - dt.timedelta(minutes=1)) is None
    assert delta.version_as_of(uri, end_of(START)) == 0
    assert delta.version_as_of(uri, end_of(START + dt.timedelta(days=6))) == 6
    assert delta.version_as_of(uri, dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)) == 20


def test_backfill_trains_as_of_each_week_and_scores_the_next(three_weeks, persistent):
    config = three_weeks.config
    seen = []

    outcomes, rows = backfill(
        three_weeks.path,
        persistent,
        START,
        START + dt.timedelta(days=20),
        progress=lambda i, n, o: seen.append((i, n, o.partition)),
    )

    assert [o.partition for o in outcomes] == ["2026-01-05", "2026-01-12", "2026-01-19"]
    assert all(o.success for o in outcomes)
    assert seen == [(1, 3, "2026-01-05"), (2, 3, "2026-01-12"), (3, 3, "2026-01-19")]
    first, second, third = (o.row for o in outcomes)
    assert (first["delta_version"], second["delta_version"], third["delta_version"]) == (6, 13, 20)
    assert first["train_rows"] < second["train_rows"] < third["train_rows"]
    assert second["rejected_versions"] == [9] and third["rejected_versions"] == [9], "the bad batch is left out"
    assert first["eval_rows"] == 6 * 200, "week 2 without its rejected batch"
    assert second["eval_rows"] == 7 * 200
    assert third["eval_rows"] == 0 and third["oot_metrics"] == {}, "no week after the last one yet"
    assert 0.6 < first["oot_metrics"]["roc_auc"] <= 1
    assert [row["partition"] for row in rows] == ["2026-01-05", "2026-01-12", "2026-01-19"]
    page = (config.reports_dir / "backtest.html").read_text()
    assert '<svg role="img"' in page and all(row["partition"] in page for row in rows), "the figure and each week"

    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name(config.mlflow.experiment + HISTORY_SUFFIX)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["partition"] for run in runs) == ["2026-01-05", "2026-01-12", "2026-01-19"]
    assert {run.data.tags["delta_version"] for run in runs} == {"6", "13", "20"}
    name = config.mlflow.model_name
    registered = client.search_registered_models(f"name = '{name}'")
    assert registered == [], "history never registers a model, let alone a champion"

    again, _ = backfill(three_weeks.path, persistent, START + dt.timedelta(days=7), START + dt.timedelta(days=7))
    assert again[0].row["metrics"] == second["metrics"] and again[0].row["oot_metrics"] == second["oot_metrics"]
    assert second["reused_from"] is None and again[0].row["reused_from"] == second["run_id"], "the run cache"


def test_partitions_with_the_same_inputs_share_one_model(three_weeks, persistent):
    """Weeks after the data stopped landing time-travel to the same version: one model, trained once."""
    config = three_weeks.config
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)

    outcomes, _ = backfill(three_weeks.path, persistent, START + dt.timedelta(days=14), START + dt.timedelta(days=28))

    trained, *later = (outcome.row for outcome in outcomes)
    assert [row["partition"] for row in (trained, *later)] == ["2026-01-19", "2026-01-26", "2026-02-02"]
    assert {row["delta_version"] for row in (trained, *later)} == {20}
    assert trained["reused_from"] is None and all(row["reused_from"] == trained["run_id"] for row in later)
    assert all(row["metrics"] == trained["metrics"] and row["train_rows"] == trained["train_rows"] for row in later)
    for row in later:
        run = client.get_run(row["run_id"])
        assert run.data.tags["reused_model_run"] == trained["run_id"] and run.data.tags["partition"] == row["partition"]
        assert "model" not in {artifact.path for artifact in client.list_artifacts(row["run_id"])}, "not stored again"

    uncached, _ = backfill(
        three_weeks.path, persistent, START + dt.timedelta(days=21), START + dt.timedelta(days=21), run_cache=False
    )
    assert uncached[0].row["reused_from"] is None and uncached[0].row["metrics"] == trained["metrics"], "same seed"

    write_config(three_weeks, model={"seed": 11})
    changed, _ = backfill(three_weeks.path, persistent, START + dt.timedelta(days=21), START + dt.timedelta(days=21))
    assert changed[0].row["reused_from"] is None, "other params, another model"


def test_backfill_before_any_data_fails_that_partition_clearly(three_weeks, persistent):
    """One run over the range; the window with nothing to train on fails its own check, the others are done."""
    write_config(three_weeks, history={"start": "2025-12-29"})
    outcomes, _ = backfill(three_weeks.path, persistent, dt.date(2025, 12, 29), dt.date(2026, 1, 12))
    early, first, second = outcomes
    assert not early.success and "no raw_data version had landed by 2026-01-05" in early.error
    assert first.success and second.success

    (run,) = persistent.get_runs(RunsFilter(job_name=HISTORY_JOB))
    assert run.status == DagsterRunStatus.FAILURE, "a failed window fails the run, naming it"
    assert run.tags[PARTITION_RANGE_START_TAG] == "2025-12-29" and run.tags[PARTITION_RANGE_END_TAG] == "2026-01-12"
    model = AssetKey("historical_model")
    assert persistent.get_materialized_partitions(model) == {"2026-01-05", "2026-01-12"}
    checks = persistent.event_log_storage.get_asset_check_execution_history(AssetCheckKey(model, WINDOW_CHECK), 10)
    verdicts = {record.partition: record.evaluation.passed for record in checks}
    assert verdicts == {"2025-12-29": False, "2026-01-05": True, "2026-01-12": True}
    failed = next(record.evaluation for record in checks if not record.evaluation.passed)
    assert "no raw_data version had landed" in failed.description


def test_a_window_whose_batches_all_fail_validation_is_gated(automated, persistent, tmp_path):
    """Time travel to a version whose only batch is bad: the check fails with the version; nothing is trained."""
    write_config(automated, history={"partitions": "daily", "start": START.isoformat()})
    for day, frame in synthetic.churn_days(START, 2, 200, seed=3, bad_day=0):
        path = tmp_path / f"{day}.csv"
        frame.to_csv(path, index=False)
        ingest(automated.config, persistent, path, end_of(day))

    bad, good = backfill(automated.path, persistent, START, START + dt.timedelta(days=1))[0]

    assert not bad.success and "every batch up to raw_data v0 fails validation (rejected v0" in bad.error
    assert good.success and good.row["rejected_versions"] == [0] and good.row["delta_version"] == 1
    assert persistent.get_materialized_partitions(AssetKey("historical_model")) == {good.partition}
