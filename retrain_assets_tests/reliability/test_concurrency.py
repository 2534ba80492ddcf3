"""Two writers at once: no row lost, no version reported twice; two ticks at once: at most one run per version."""

import json
import subprocess
import sys
from pathlib import Path

from dagster import RunsFilter

from retrain_assets.app.instance import project_instance
from retrain_assets.core import delta, landing, synthetic

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
    landing.ingest_file(automated.config, automated.batch(0))  # the table exists before the race
    files = {writer: _batches(tmp_path / f"w{writer}", writer, 50, 20) for writer in (1, 2)}
    writers = [
        subprocess.Popen(
            [RETRAIN, "--config", str(automated.path), "ingest", *map(str, paths)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for paths in files.values()
    ]
    outputs = [writer.communicate(timeout=600) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err[-2000:] for _, err in outputs]

    uri = automated.config.table_uri(delta.RAW_TABLE)
    table = delta.read_table(uri)
    expected = {f"w{w}-b{b}-r{r}" for w in (1, 2) for b in range(50) for r in range(20)}
    landed = set(table["customer_id"]) - set(delta.read_table(uri, version=0)["customer_id"])
    assert len(table) == 600 + 100 * 20 and landed == expected
    reported = [int(line.split("raw_data version ")[1].split()[0]) for out, _ in outputs for line in out.splitlines()]
    assert sorted(reported) == list(range(1, 101)), "each writer reports the version its own commit made"
    history = {entry["version"]: entry.get(delta.SOURCE_KEY) for entry in delta.history(uri)}
    for out, _ in outputs:
        for line in out.splitlines():
            source, rest = line.split(": raw_data version ")
            assert history[int(rest.split()[0])] == source


def test_two_ticks_at_once_start_at_most_one_run_per_version(automated, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = automated.config
    for day in range(3):
        landing.ingest_file(config, automated.batch(day))
    ticks = [
        subprocess.Popen(
            [RETRAIN, "--config", str(automated.path), "tick", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
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


def _hold_lock(project, seconds: float, released: Path) -> subprocess.Popen:
    """Another process holding the project lock for ``seconds``; it touches ``released`` as it lets go."""
    script = (
        "import sys, time; from pathlib import Path; from retrain_assets.core.locking import project_lock\n"
        "with project_lock(Path(sys.argv[1]), command='a hung run'):\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
        "Path(sys.argv[3]).touch()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(project.config.dagster_home), str(seconds), str(released)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_held_too_long_makes_tick_fail_loudly_and_alert_once(automated, tmp_path):
    """Review finding 5: a hung run held the lock and every `tick` exited 0 with "busy", silently. A holder
    younger than ``runs.lock_alert_minutes`` is still plain busy; an older one makes `tick` exit 2 naming
    it, with one ``stuck`` alert however many ticks see it."""
    from retrain_assets.core.alerts import recent_alerts

    from ..conftest import write_config

    holder = _hold_lock(automated, 60, tmp_path / "released")
    try:
        busy = subprocess.run([RETRAIN, "--config", str(automated.path), "tick"], capture_output=True, text=True)
        status = subprocess.run([RETRAIN, "--config", str(automated.path), "status"], capture_output=True, text=True)
        write_config(automated, runs={"lock_alert_minutes": 0.001})
        stuck = [
            subprocess.run([RETRAIN, "--config", str(automated.path), "tick"], capture_output=True, text=True)
            for _ in range(2)
        ]
    finally:
        holder.kill()

    assert busy.returncode == 0 and f"pid {holder.pid}" in busy.stdout and "a hung run" in busy.stdout
    assert f"busy: the project lock is held by pid {holder.pid}" in status.stdout, status.stdout + status.stderr
    for tick in stuck:
        assert tick.returncode == 2, tick.stdout + tick.stderr
        assert f"stop pid {holder.pid}" in tick.stdout and "runs.lock_alert_minutes" in tick.stdout
    alerts = [alert for alert in recent_alerts(automated.config) if alert["kind"] == "stuck"]
    assert len(alerts) == 1 and alerts[0]["details"]["pid"] == holder.pid


def test_a_run_past_its_maximum_runtime_is_stopped_and_frees_the_project(automated):
    """Runs get a maximum runtime: a retraining run that goes past ``runs.max_runtime_minutes`` fails with
    that reason instead of holding the project forever, and the lock is free afterwards."""
    from retrain_assets.app.execution import materialize
    from retrain_assets.core.batches import rejected_batches
    from retrain_assets.core.locking import current_holder

    from ..conftest import write_config

    # a features step that takes 30 s: past the 1.2 s limit however warm this process's imports already are
    (automated.path.parent / "slow_features.py").write_text(
        "import time\n\n\ndef features(frame):\n    time.sleep(30)\n    return frame\n"
    )
    write_config(automated, runs={"max_runtime_minutes": 0.02}, model={"features": "slow_features.py:features"})
    landing.ingest_file(automated.config, automated.batch(0))
    with project_instance(automated.config) as instance:
        outcome = materialize(automated.path, instance)
        status = instance.get_run_by_id(outcome.run_id).status.value

    assert not outcome.success and status == "FAILURE"
    assert "ran longer than runs.max_runtime_minutes (0.02 min) and was stopped" in outcome.error
    assert current_holder(automated.config.dagster_home) is None
    assert rejected_batches(automated.config) == [], "running out of time says nothing against the batch"


def test_a_run_outside_retrain_waits_for_the_project_lock(automated, tmp_path):
    """Review finding 15: runs the daemon launches took no project lock, so they could write beside a cron
    `tick`. Their steps now take it through the project resource: a run started while another process holds
    the lock begins its first step only after the lock is released."""
    from dagster import DagsterEventType

    from retrain_assets.definitions import build_defs
    from retrain_assets.defs.jobs import RETRAIN_JOB

    landing.ingest_file(automated.config, automated.batch(0))
    released = tmp_path / "released"
    holder = _hold_lock(automated, 3, released)
    with project_instance(automated.config) as instance:  # as the daemon's run worker: no lock of its own
        result = build_defs(str(automated.path)).resolve_job_def(RETRAIN_JOB).execute_in_process(instance=instance)
        starts = instance.all_logs(result.run_id, of_type=DagsterEventType.STEP_START)
    holder.wait(timeout=30)

    assert result.success
    first_step = min(entry.timestamp for entry in starts)
    assert first_step >= released.stat().st_mtime - 0.5, "the run's steps started while the lock was held"


def test_the_project_lock_is_not_re_entrant_and_a_second_take_in_one_process_fails_at_once(automated):
    """The lock is taken in one place per run (the project resource or the in-process command); asking for it
    again in the process that holds it would wait on itself, so it is refused at once, naming the holder."""
    import time

    import pytest

    from retrain_assets.core.locking import ProjectBusy, project_lock

    home = automated.config.dagster_home
    with project_lock(home, command="retrain tick"):
        started = time.monotonic()
        with pytest.raises(ProjectBusy, match=r"this process already holds the project lock \(retrain tick\)"):
            with project_lock(home, wait_seconds=60):
                pass
        assert time.monotonic() - started < 5
    with project_lock(home):  # released: free again
        pass


def test_rollback_takes_the_project_lock_and_records_the_caller_from_the_kernel(automated, tmp_path, monkeypatch):
    """Review finding 15: `rollback` took no lock and recorded "by" from ``$USER``. It now refuses while
    another process holds the lock, and names the caller by uid, whatever the environment says."""
    import os

    from retrain_assets.app.instance import caller

    holder = _hold_lock(automated, 60, tmp_path / "released")
    try:
        refused = subprocess.run([RETRAIN, "--config", str(automated.path), "rollback"], capture_output=True, text=True)
    finally:
        holder.kill()
    assert refused.returncode == 1 and f"pid {holder.pid}" in refused.stderr

    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert "mallory" not in caller() and f"(uid {os.getuid()})" in caller()
