"""The version sensor is exactly-once across restarts: 100 ticks over 20 versions, the instance reopened
every few ticks and some ticks taken by a new `retrain tick` process (with its no-Dagster fast path)."""

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path

from dagster import RunsFilter

from retrain_assets.app.instance import project_instance
from retrain_assets.app.ticking import tick
from retrain_assets.core import landing, synthetic

from ..conftest import START, write_config

RETRAIN = str(Path(sys.executable).parent / "retrain")
CLI_TICKS = {8, 55, 90}  # taken by a separate process over the same storage home


def test_hundred_ticks_over_twenty_versions_with_restarts_run_each_new_version_once(automated, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_config(automated, triggers={"min_new_rows": 10**9})  # after the bootstrap model, runs only validate
    config = automated.config
    rng = random.Random(6)
    doubled = [3, 40, 77]  # ticks that find two new versions at once
    landing_ticks = sorted(rng.sample([i for i in range(100) if i not in doubled], 14) + doubled * 2)
    assert len(landing_ticks) == 20
    expected, launched, versions = [], [], 0
    instance_cm = project_instance(config)
    instance = instance_cm.__enter__()
    try:
        for index in range(100):
            if index % 4 == 0:  # a restart: a fresh instance object over the same storage
                instance_cm.__exit__(None, None, None)
                instance_cm = project_instance(config)
                instance = instance_cm.__enter__()
            for _ in range(landing_ticks.count(index)):
                path = automated.path.parent / f"v{versions}.csv"
                synthetic.churn_batch(START + dt.timedelta(days=versions), 60, seed=versions).to_csv(path, index=False)
                landing.ingest_file(config, path)
                versions += 1
            if landing_ticks.count(index):
                expected.append(str(versions - 1))  # coalesced: one run on the newest version
            if index in CLI_TICKS:
                done = subprocess.run(
                    [RETRAIN, "--config", str(automated.path), "tick", "--json"],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == 0, done.stderr[-2000:]
                launched += [launch["run_key"] for launch in json.loads(done.stdout)["launched"]]
            else:
                launched += [launch.run_key for launch in tick(automated.path, instance).launches]
        runs = instance.get_runs(RunsFilter(job_name="retrain"))
    finally:
        instance_cm.__exit__(None, None, None)

    assert versions == 20
    assert launched == expected
    assert sorted(run.tags["dagster/run_key"] for run in runs) == sorted(expected)
    assert all(run.status.value == "SUCCESS" for run in runs)
