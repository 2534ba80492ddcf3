"""`retrain maintain` on a real project's Delta tables: every version the project reads still reads the same
rows after checkpoints, compaction and vacuum; a retention too short for them is refused; appends that land
meanwhile stay there and stay batches."""

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from retrain_assets.app.cli import main
from retrain_assets.core import backtest, delta, landing, maintenance, synthetic
from retrain_assets.core.locking import project_lock
from retrain_assets.core.registry import Registry
from retrain_assets_tests.conftest import START, write_config
from retrain_assets_tests.test_assets import evidence, train
from retrain_assets_tests.test_sensors import evaluate

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)


def retrain(project, *args):
    return CliRunner().invoke(main, ["--config", str(project.path), *args], catch_exceptions=False)


def every_read(config) -> dict[tuple[str, int], pa.Table]:
    """Each version of each table, time-travelled to, and each raw_data batch as ``read_batch`` reads it."""
    reads = {}
    for table in maintenance.TABLES:
        uri = config.table_uri(table)
        latest = delta.latest_version(uri)
        for version in range(latest + 1) if latest is not None else []:
            reads[(table, version)] = DeltaTable(uri, version=version).to_pyarrow_table()
    raw = config.table_uri(delta.RAW_TABLE)
    for version in delta.batch_versions(raw, None, delta.latest_version(raw)):
        reads[("batch", version)] = delta.read_batch(raw, version)
    return reads


def changed(before: dict, after: dict) -> list:
    """The reads of ``before`` that read otherwise (or not at all) in ``after``: rows, their order and schema."""
    return [key for key, table in before.items() if key not in after or not after[key].equals(table)]


def lake_files(config) -> dict[str, int]:
    lake = Path(config.lake_uri)
    return {str(path.relative_to(lake)): path.stat().st_size for path in lake.rglob("*") if path.is_file()}


def land_predictions(config, commits: int, first: int = 0) -> None:
    """Small appends to the predictions table, one commit each, as the ledger's flushes are."""
    for number in range(first, first + commits):
        ids = [f"p{number}-{row}" for row in range(5)]
        delta.append(config.table_uri(delta.PREDICTIONS_TABLE), pa.table({"prediction_id": ids, "score": [0.5] * 5}))


def batch_file(folder: Path, day: int, rows: int = 60) -> Path:
    path = folder / f"late-{day}.csv"
    synthetic.churn_batch(START + dt.timedelta(days=day), rows, seed=day).to_csv(path, index=False)
    return path


def test_maintain_keeps_every_version_the_history_and_reproduce_read(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = project.config
    for day in (0, 1):
        landing.ingest_file(config, project.batch(day))
    registry = Registry(config)
    registry.promote(train(project, evidence(project)).version)  # v1, on validated_features v1
    for day in (2, 3):  # day 2 is rejected, and stays in raw_data
        landing.ingest_file(config, project.batch(day))
    assert train(project, evidence(project), trigger="manual").version == "2"  # on validated_features v2
    features = config.table_uri(delta.FEATURES_TABLE)
    DeltaTable(features).optimize.compact()  # an operator's OPTIMIZE: v3 replaces the files v1 and v2 read
    land_predictions(config, 3)
    write_config(project, runs={"max_runtime_minutes": 0.001})  # runs of 60 ms: none still reads v1 or older
    history_rows, rejected = backtest.accepted_rows(config, None, 3)
    before, files = every_read(config), lake_files(config)

    refused = retrain(project, "maintain", "--retention-hours", "0")

    assert refused.exit_code == 1
    assert "--retention-hours 0 is too short; nothing was changed" in refused.output
    assert "validated_features: v1 (committed 20" in refused.output, refused.output
    assert "model v1 was trained on it (`retrain reproduce 1` reads it)" in refused.output
    assert "v3 (OPTIMIZE, committed 20" in refused.output and "keep at least 2 h" in refused.output
    assert lake_files(config) == files, "nothing deleted, nothing written"

    done = retrain(project, "maintain")

    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert [line.split(":")[0] for line in lines] == list(maintenance.TABLES)
    assert lines[0].startswith("raw_data: v3 -> v4, 4 -> 4 files; commit logs kept from now on")
    assert "kept whole (its batches are read by version); vacuum: nothing to delete; checkpoint v4" in lines[0]
    assert "validated_features: v3 -> v4, 1 -> 1 files" in lines[1] and "nothing older than 2 h to delete" in lines[1]
    assert lines[2].startswith("validation_log: v3 -> v4, 4 -> 1 files; compacted 4 files into 1;")
    assert lines[3].startswith("predictions: v2 -> v3, 3 -> 1 files; compacted 3 files into 1;")
    assert lines[4] == "labels: no table yet"
    assert not changed(before, every_read(config)), "every version and batch reads the same rows, in order"
    accepted, still_rejected = backtest.accepted_rows(config, None, 3)
    assert accepted.equals(history_rows) and still_rejected == rejected == [2]
    for table in maintenance.TABLES[:4]:
        uri = config.table_uri(table)
        newest = DeltaTable(uri)
        assert Path(uri, "_delta_log", f"{newest.version():020d}.checkpoint.parquet").is_file()
        kept = maintenance.KEEP_LOGS.items() <= newest.metadata().configuration.items()
        assert kept == (table in maintenance.LOGS_KEPT_ON), table
    reproduced = retrain(project, "reproduce", "champion")
    assert reproduced.exit_code == 0, reproduced.output  # v1 retrained from validated_features v1, bit for bit
    assert not evaluate(project, cursor="3").run_requests, "no maintenance commit is taken for a batch"


def test_a_compaction_changes_no_version_or_batch_and_starts_no_run(project):
    config = project.config
    raw = config.table_uri(delta.RAW_TABLE)
    for day in (0, 1, 3):
        landing.ingest_file(config, project.batch(day))
    DeltaTable(raw).optimize.compact()  # raw_data is never compacted by maintain; an OPTIMIZE still breaks nothing
    land_predictions(config, 4)
    before = every_read(config)
    code = (
        "import sys\n"
        "from retrain_assets.app.cli import main\n"
        f"main(['--config', {str(project.path)!r}, 'maintain'], standalone_mode=False)\n"
        "print(sorted(m for m in ('dagster', 'mlflow', 'sklearn', 'great_expectations') if m in sys.modules))\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "predictions: v3 -> v4, 4 -> 1 files; compacted 4 files into 1" in result.stdout
    assert "raw_data: v3 -> v4, 1 -> 1 files" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]", "nothing heavy imported"
    assert not changed(before, every_read(config))
    assert delta.batch_versions(raw, None, delta.latest_version(raw)) == [0, 1, 2]
    skipped = evaluate(project, cursor="2")
    assert not skipped.run_requests and "added no rows" in skipped.skip_message
    late = batch_file(project.path.parent, 9)
    version = landing.ingest_file(config, late).version
    assert delta.batch_versions(raw, 2, version) == [version]
    assert delta.read_batch(raw, version).to_pylist() == landing.cast_batch_file(config, late).to_pylist()
    assert [request.run_key for request in evaluate(project, cursor="2").run_requests] == [str(version)]


def test_appends_landing_during_maintenance_stay_there_and_stay_batches(project):
    config = project.config
    raw = config.table_uri(delta.RAW_TABLE)
    folder = project.path.parent
    landing.ingest_file(config, project.batch(0))
    land_predictions(config, 3)
    with project_lock(config.dagster_home):  # a tick running: the logs wait, the rest goes on
        busy = maintenance.maintain(config, maintenance.plan(config))
    assert "commit logs not protected yet" in busy[0].describe() and "checkpoint v0" in busy[0].describe()
    assert "compacted 3 files into 1" in busy[3].describe()
    maintenance.maintain(config, maintenance.plan(config))  # now it keeps them: a metadata commit, v1
    tables = maintenance.plan(config)
    landed = [landing.ingest_file(config, batch_file(folder, 10))]  # between planning and doing
    land_predictions(config, 1, first=3)
    start, failures = threading.Event(), []

    def append_meanwhile() -> None:
        start.wait()
        try:
            for day in range(11, 15):
                landed.append(landing.ingest_file(config, batch_file(folder, day)))
                land_predictions(config, 1, first=day)
        except Exception as exc:  # asserted below
            failures.append(exc)

    appender = threading.Thread(target=append_meanwhile)
    appender.start()
    start.set()
    maintenance.maintain(config, tables)
    maintenance.maintain(config, maintenance.plan(config))
    appender.join()

    assert not failures
    versions = delta.batch_versions(raw, 0, delta.latest_version(raw))
    assert versions == [result.version for result in landed]
    for day, version in zip(range(10, 15), versions, strict=True):
        expected = landing.cast_batch_file(config, batch_file(folder, day)).to_pylist()
        assert delta.read_batch(raw, version).to_pylist() == expected, f"raw_data v{version}"
    ids = delta.read_table(config.table_uri(delta.PREDICTIONS_TABLE), columns=["prediction_id"])["prediction_id"]
    assert sorted(ids) == sorted(f"p{n}-{row}" for n in [0, 1, 2, 3, 11, 12, 13, 14] for row in range(5))


def backdate(uri: str, hours: float) -> None:
    """Move every commit of the table ``hours`` into the past (commit times, removals, file times in its log),
    as if it had been written and compacted then: vacuum and the retention rule go by these times."""
    shift = int(hours * 3600 * 1000)
    stamps = {"commitInfo": "timestamp", "remove": "deletionTimestamp", "add": "modificationTime"}
    for path in Path(uri, "_delta_log").glob("*.json"):
        actions = [json.loads(line) for line in path.read_text().splitlines() if line]
        for action in actions:
            for kind, key in stamps.items():
                if kind in action and key in action[kind]:
                    action[kind][key] -= shift
        path.write_text("".join(json.dumps(action) + "\n" for action in actions))


def test_vacuum_deletes_what_no_needed_version_reads_and_refuses_what_one_reads(project):
    uri = project.config.table_uri(delta.PREDICTIONS_TABLE)
    land_predictions(project.config, 3)
    DeltaTable(uri).optimize.compact()  # v3 replaces the files of v0-v2...
    backdate(uri, hours=5)  # ...five hours ago
    land_predictions(project.config, 1, first=3)  # v4, now
    write_config(project, runs={"max_runtime_minutes": 600})  # a run may read what was newest 10 h ago: v0

    refused = retrain(project, "maintain", "--retention-hours", "6")

    assert refused.exit_code == 1
    assert "predictions: v0 (committed " in refused.output and "a run started in the last 600 min" in refused.output
    assert "v3 (OPTIMIZE, committed " in refused.output and "5.0 h ago) replaced files it reads" in refused.output
    assert "keep at least 7 h" in refused.output
    kept = retrain(project, "maintain")
    assert "compacted 2 files into 1; vacuum: nothing older than 7 h to delete" in kept.output, kept.output
    write_config(project, runs={"max_runtime_minutes": 120})  # what was newest 2 h ago is v3: it reads none of them
    before = {version: DeltaTable(uri, version=version).to_pyarrow_table() for version in range(3, 6)}

    done = retrain(project, "maintain")

    assert "vacuum: 3 files deleted (retention 2 h)" in done.output, done.output
    assert all(DeltaTable(uri, version=version).to_pyarrow_table().equals(before[version]) for version in before)
    with pytest.raises(OSError):  # v0 is no longer needed, and its file is gone
        DeltaTable(uri, version=0).to_pyarrow_table()


def commit(version: int, hours_ago: float, operation: str = "WRITE", removed: int = 0) -> dict:
    stamp = (NOW - dt.timedelta(hours=hours_ago)).timestamp() * 1000
    return {
        "version": version,
        "timestamp": stamp,
        "operation": operation,
        "operationMetrics": {"num_removed_files": removed},
    }


def test_the_shortest_retention_reaches_past_the_first_removal_after_the_oldest_needed_version(project):
    commits = [
        commit(0, 50),
        commit(1, 40, "OPTIMIZE"),
        commit(2, 30),
        commit(3, 29, "SET TBLPROPERTIES"),
        commit(4, 5.5, "WRITE", removed=2),  # an overwrite
        commit(5, 3, "VACUUM END"),
        commit(6, 0.5),
    ]
    by_model = {2: "1", 6: "3"}

    features = maintenance.oldest_needed(project.config, delta.FEATURES_TABLE, commits, NOW, by_model)
    log = maintenance.oldest_needed(project.config, delta.VALIDATION_LOG_TABLE, commits, NOW, {})
    raw = maintenance.oldest_needed(project.config, delta.RAW_TABLE, commits, NOW, {})

    assert (features.version, features.why) == (2, "model v1 was trained on it (`retrain reproduce 1` reads it)")
    assert maintenance.shortest_retention(commits, features, NOW) == (7, commits[4]), "ceil(5.5 h) + 1 h"
    assert log.version == 5 and "a run started in the last 120 min" in log.why, "the newest 2 h ago"
    assert maintenance.shortest_retention(commits, log, NOW) == (1, None), "a vacuum removes no file a version reads"
    assert raw.version == 0 and maintenance.shortest_retention(commits, raw, NOW) == (41, commits[1])
    assert maintenance.removes_files(commit(7, 0, "MERGE")) and maintenance.removes_files(commit(7, 0, "UNKNOWN"))
    assert not maintenance.removes_files(commit(7, 0)), "an append"


def test_commits_older_than_the_log_retention_outlive_the_checkpoints_writers_make(tmp_path):
    """delta-rs checkpoints every ``delta.checkpointInterval`` commits (100 by default) and, by default, then
    deletes the commits before the newest checkpoint older than ``delta.logRetentionDuration`` (30 days):
    raw_data's v0 would no longer open, and the history with it. The project's writes keep every commit."""
    import os

    from deltalake import write_deltalake

    rows = pa.table({"x": pa.array([1], pa.int64())})
    month_ago = (dt.datetime.now() - dt.timedelta(days=40)).timestamp()
    survived = {}
    for name, write in (
        ("project", lambda uri: delta.append(uri, rows)),
        ("default", lambda uri: write_deltalake(uri, rows, mode="append")),
    ):
        uri = str(tmp_path / name)
        write_deltalake(
            uri, rows, configuration={"delta.checkpointInterval": "5"}, post_commithook_properties=delta.keep_logs()
        )
        while delta.latest_version(uri) < 5:
            write(uri)
        for entry in (Path(uri) / "_delta_log").iterdir():  # these commits and their checkpoint: a month old
            os.utime(entry, (month_ago, month_ago))
        while delta.latest_version(uri) < 10:  # the next checkpoint, and the log clean-up that follows it
            write(uri)
        survived[name] = (Path(uri) / "_delta_log" / f"{0:020d}.json").exists()
        if survived[name]:
            assert DeltaTable(uri, version=0).to_pyarrow_table().num_rows == 1
    assert survived == {"project": True, "default": False}
