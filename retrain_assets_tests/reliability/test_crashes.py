"""A process killed (SIGKILL) in the middle of the work loses nothing, half-promotes nothing, and the next
`retrain tick` completes the work exactly once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrain_assets.app.instance import project_instance
from retrain_assets.app.ticking import tick
from retrain_assets.core import delta, landing
from retrain_assets.core.faults import CRASH_ENV
from retrain_assets.core.names import CHAMPION, INTERRUPTED_TAG
from retrain_assets.core.registry import Registry

RETRAIN = [str(Path(sys.executable).parent / "retrain")]


def _cli(project, *args, crash_at=None, **kwargs):
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [*RETRAIN, "--config", str(project.path), *args], env=env, capture_output=True, text=True, **kwargs
    )


def _runs(instance, run_key):
    from dagster import RunsFilter

    return instance.get_runs(RunsFilter(tags={"dagster/run_key": run_key}))


def _mlflow_runs(registry):
    experiment = registry.client.get_experiment_by_name(registry.config.mlflow.experiment)
    return registry.client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.parametrize("point", ["features_appended", "model_logging"])
def test_killed_tick_is_completed_exactly_once_by_the_next_tick(automated, point, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    with project_instance(config) as instance:
        version = landing.ingest_file(config, automated.batch(0)).version

    killed = _cli(automated, "tick", crash_at=point, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # after the crash: every table reads whole at its last committed version; no champion is unevaluated
    raw = delta.read_table(config.table_uri(delta.RAW_TABLE))
    assert len(raw) == 600
    features_uri = config.table_uri(delta.FEATURES_TABLE)
    assert len(delta.read_table(features_uri)) == 600  # every crash point comes after the batch was appended
    registry = Registry(config)
    assert registry.by_alias(CHAMPION) is None, "the only candidate never finished evaluation and promotion"
    with project_instance(config) as instance:
        (interrupted,) = _runs(instance, str(version))
        assert interrupted.status.value == "STARTED"

        report = tick(automated.path, instance)

        (recovery,) = report.launches  # the sensor's cursor already covers the version: no second request
        assert recovery.source == "recovery" and recovery.outcome.success, recovery.outcome.describe("roc_auc")
        runs = _runs(instance, str(version))
        assert sorted(run.status.value for run in runs) == ["FAILURE", "SUCCESS"]
        assert instance.get_run_by_id(interrupted.run_id).tags[INTERRUPTED_TAG] == "true"
        assert tick(automated.path, instance).launches == []  # done: nothing more to do

    # exactly once: one log entry and one copy of the batch; one registered model, the champion
    log = delta.read_table(config.table_uri(delta.VALIDATION_LOG_TABLE))
    assert log["raw_version"].tolist() == [version]
    assert len(delta.read_table(features_uri)) == 600
    versions = registry.client.search_model_versions(f"name = '{config.mlflow.model_name}'")
    assert len(versions) == 1 and versions[0].tags["delta_version"] == str(version)
    champion = registry.by_alias(CHAMPION)
    assert champion.version == versions[0].version and champion.tags["decision"] == "promoted"
    statuses = sorted(run.info.status for run in _mlflow_runs(registry))
    assert statuses == (["FINISHED", "KILLED"] if point == "model_logging" else ["FINISHED"])


def test_killed_between_the_two_alias_moves_the_champion_stays_evaluated_and_the_promotion_completes(
    automated, monkeypatch
):
    """A champion trained on drifted days only, then normal days: the candidate wins. The process dies after
    ``previous_champion`` moved and before ``champion`` did; the champion is still the old, evaluated model;
    the next tick finishes this promotion, once."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    landing.ingest_file(config, automated.batch(7))
    with project_instance(config) as instance:
        assert tick(automated.path, instance).launches[0].outcome.decision["promoted"]
    for day in range(3):
        landing.ingest_file(config, automated.batch(day))

    killed = _cli(automated, "tick", crash_at="alias_promotion", timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    registry = Registry(config)
    assert str(registry.by_alias(CHAMPION).version) == "1"
    assert str(registry.by_alias("previous_champion").version) == "1"
    with project_instance(config) as instance:
        (recovery,) = tick(automated.path, instance).launches
    assert recovery.source == "recovery" and recovery.outcome.decision["promoted"]
    assert str(registry.by_alias(CHAMPION).version) == "2"
    assert str(registry.by_alias("previous_champion").version) == "1"
    versions = registry.client.search_model_versions(f"name = '{config.mlflow.model_name}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert registry.client.get_model_version(config.mlflow.model_name, "2").tags["decision"] == "promoted"


def test_second_crash_of_the_same_run_is_resumed_from_the_first_retry(automated, monkeypatch):
    """A run killed twice: the second retry starts from the first retry's failed step."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    landing.ingest_file(config, automated.batch(0))
    assert _cli(automated, "tick", crash_at="features_appended", timeout=300).returncode == -signal.SIGKILL
    assert _cli(automated, "tick", crash_at="model_logging", timeout=300).returncode == -signal.SIGKILL
    finished = _cli(automated, "tick", timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "recovery" in finished.stdout and "promoted" in finished.stdout
    with project_instance(config) as instance:
        statuses = sorted(run.status.value for run in _runs(instance, "0"))
    assert statuses == ["FAILURE", "FAILURE", "SUCCESS"]
    assert len(Registry(config).client.search_model_versions(f"name = '{config.mlflow.model_name}'")) == 1


def test_ingest_killed_during_the_delta_commit_leaves_the_table_at_its_last_version(automated, tmp_path):
    """SIGKILL while delta-rs writes the batch's data file (it streams into ``<file>.parquet#1`` and renames
    it just before the commit): the table stays at the previous version, the half-written file is part of
    no version, and ingesting the file again lands it exactly once."""
    import pandas as pd

    from retrain_assets.core import synthetic

    config = automated.config
    landing.ingest_file(config, automated.batch(0))
    # 1.6M rows as Parquet: quick to make and to read, so the run is mostly delta-rs writing its data file,
    # a window wide enough to be hit even when the machine is busy
    day = synthetic.churn_batch(pd.Timestamp("2026-01-06").date(), 400_000, seed=3)
    frame = pd.concat([day] * 4, ignore_index=True)
    frame["customer_id"] = [f"big-{row}" for row in range(len(frame))]
    big = tmp_path / "big.parquet"
    frame.to_parquet(big, index=False)
    table_dir = Path(config.table_uri(delta.RAW_TABLE))

    process = subprocess.Popen(
        [*RETRAIN, "--config", str(automated.path), "ingest", str(big)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not set(table_dir.glob("*.parquet#*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert set(table_dir.glob("*.parquet#*")), "the kill did not come while the data file was being written"
    assert delta.latest_version(config.table_uri(delta.RAW_TABLE)) == 0
    assert len(delta.read_table(config.table_uri(delta.RAW_TABLE))) == 600
    landed = landing.ingest_file(config, big)
    assert landed.version == 1
    assert len(delta.read_table(config.table_uri(delta.RAW_TABLE))) == 600 + len(frame)


class _Payload:
    """Unpickling this creates ``marker``: stands in for any code an attacker's pickle would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_in_the_step_storage_runs_nothing_when_the_run_is_resumed(automated, tmp_path, monkeypatch):
    """Review finding 1: the values between steps were pickles, and re-execution loaded them. An attacker
    who can write the storage plants a pickle where ``validated_features``' value is kept (at the JSON
    file's path and at the path Dagster's pickling IO manager used); the recovery of the killed run refuses
    the stored value, naming it, and no code runs."""
    import pickle

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    landing.ingest_file(config, automated.batch(0))
    assert _cli(automated, "tick", crash_at="model_logging", timeout=300).returncode == -signal.SIGKILL
    storage = config.dagster_home / "storage"
    stored = storage / "validated_features.json"
    assert stored.is_file() and b'"__retrain_type__": "TableRef"' in stored.read_bytes()
    marker = tmp_path / "code-ran"
    for path in (stored, storage / "validated_features"):
        path.write_bytes(pickle.dumps(_Payload(marker)))

    with project_instance(config) as instance:
        (recovery,) = tick(automated.path, instance).launches

    assert not marker.exists(), "the planted pickle ran"
    assert recovery.source == "recovery" and not recovery.outcome.success
    assert "validated_features is not a JSON value the IO manager wrote" in recovery.outcome.error
    assert Registry(config).by_alias(CHAMPION) is None
