"""Two writers at once: no row lost, no version reported twice; two ticks at once: at most one run per version."""

import json
import subprocess
import sys
from pathlib import Path

from dagster import RunsFilter

from retrain_assets import lake, synthetic
from retrain_assets.runner import project_instance

from ..conftest import START

RETRAIN = str(Path(sys.executable).parent / "retrain")


def _batches(folder: Path, writer: int, count: int, rows: int) -> list[Path]:
    """``count`` small CSV batches whose ids are unique across writers."""
    folder.mkdir()
    paths = []
    for index in range(count):
        frame = synthetic.churn_batch(START, rows, seed=writer * 1000 + index)
        frame["customer_id"] = [f"w{writer}-b{index}-r{row}" for row in range(rows)]
        path = folder / f"writer{writer}-{index:02d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def test_two_processes_appending_fifty_batches_each_lose_no_row(automated, tmp_path):
    lake.ingest_file(automated.config, automated.batch(0))  # the table exists before the race
    files = {writer: _batches(tmp_path / f"w{writer}", writer, 50, 20) for writer in (1, 2)}
    writers = [
        subprocess.Popen([RETRAIN, "--config", str(automated.path), "ingest", *map(str, paths)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for paths in files.values()
    ]
    outputs = [writer.communicate(timeout=600) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err[-2000:] for _, err in outputs]

    uri = automated.config.table_uri(lake.RAW_TABLE)
    table = lake.read_table(uri)
    expected = {f"w{w}-b{b}-r{r}" for w in (1, 2) for b in range(50) for r in range(20)}
    landed = set(table["customer_id"]) - set(lake.read_table(uri, version=0)["customer_id"])
    assert len(table) == 600 + 100 * 20 and landed == expected
    reported = [int(line.split("raw_data version ")[1].split()[0]) for out, _ in outputs for line in out.splitlines()]
    assert sorted(reported) == list(range(1, 101)), "each writer reports the version its own commit made"
    history = {entry["version"]: entry.get(lake.SOURCE_KEY) for entry in lake.history(uri)}
    for out, _ in outputs:
        for line in out.splitlines():
            source, rest = line.split(": raw_data version ")
            assert history[int(rest.split()[0])] == source


def test_two_ticks_at_once_start_at_most_one_run_per_version(automated, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    for day in range(3):
        lake.ingest_file(config, automated.batch(day))
    ticks = [
        subprocess.Popen([RETRAIN, "--config", str(automated.path), "tick", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in ticks]
    assert [process.returncode for process in ticks] == [0, 0], [err[-2000:] for _, err in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    launched = [launch for report in reports for launch in report["launched"] if not launch["skipped"]]
    assert [launch["run_key"] for launch in launched] == ["2"], reports

    with project_instance(config) as instance:
        runs = instance.get_runs(RunsFilter(job_name="retrain"))
    assert [run.tags["dagster/run_key"] for run in runs] == ["2"]
    again = subprocess.run([RETRAIN, "--config", str(automated.path), "tick", "--json"], capture_output=True, text=True)
    assert json.loads(again.stdout)["launched"] == []
