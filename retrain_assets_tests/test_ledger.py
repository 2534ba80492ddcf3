"""The prediction ledger on real Delta tables: micro-batched appends, rows that survive SIGKILL of a real
process exactly once, serving through an unreachable lake, and torn or damaged journal frames."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from retrain_assets.core import delta
from retrain_assets.core.config import ConfigError, parse_config
from retrain_assets.core.delta import PREDICTIONS_TABLE
from retrain_assets.core.faults import CRASH_ENV
from retrain_assets.core.ledger import (
    COLUMNS,
    PREDICTIONS_SCHEMA,
    SEGMENT_KEY,
    JournalCorrupt,
    PredictionLedger,
)

ROOT = Path(__file__).resolve().parents[1]
SERVED = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
# A serving process: records rows one call at a time, printing each id once record() has returned.
CHILD = """
import itertools, sys
from retrain_assets.core.ledger import PredictionLedger
from retrain_assets_tests.test_ledger import prediction_row
uri, journal, flush_rows, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ledger = PredictionLedger(uri, journal, flush_rows=flush_rows, flush_seconds=60).start()
for n in itertools.count() if count == 0 else range(count):
    row = prediction_row(n)
    ledger.record([row])
    print(row["prediction_id"], flush=True)
ledger.close()
"""


def prediction_row(n: int) -> dict:
    return {
        "prediction_id": f"{n:032x}",
        "request_id": f"request-{n // 4}",
        "row_index": n % 4,
        "model_name": "churn",
        "model_version": 3,
        "alias": "champion",
        "shadow": False,
        "served_at": SERVED + dt.timedelta(milliseconds=n),
        "features": {"tenure_months": n % 72, "plan": "basic", "monthly_charges": 20.5 + n % 7},
        "prediction": n % 2,
        "probabilities": {0: 0.25, 1: 0.75},
        "score": 0.75,
        "latency_ms": 1.5,
    }


def _ids(uri: str) -> list[str]:
    return delta.read_table(uri, columns=["prediction_id"])["prediction_id"].tolist() if delta.history(uri) else []


def _segments(journal: Path) -> list[Path]:
    return sorted(journal.glob("*.journal"))


def _wait_for(condition, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.02)


def _serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_rows_are_appended_in_micro_batches_each_once_with_the_documented_schema(tmp_path):
    uri = str(tmp_path / "lake" / PREDICTIONS_TABLE)
    ledger = PredictionLedger(uri, tmp_path / "journal", flush_rows=1000, flush_seconds=60).start()
    for call in range(100):
        ledger.record([prediction_row(n) for n in range(call * 25, call * 25 + 25)])
    ledger.record([prediction_row(2500), prediction_row(2500)])  # one id twice in one flush
    ledger.close()

    commits = delta.history(uri)
    assert 2 <= len(commits) <= 3, "100 calls make a few size-bound commits, not one each"
    assert len({commit[SEGMENT_KEY] for commit in commits}) == len(commits)
    ids = _ids(uri)
    assert len(ids) == len(set(ids)) == 2501
    table = delta.read_table(uri)
    assert tuple(table.columns) == COLUMNS
    assert pa.schema(DeltaTable(uri).schema().to_arrow()) == PREDICTIONS_SCHEMA
    row = table[table["prediction_id"] == f"{9:032x}"].iloc[0]
    assert row["served_at"] == SERVED + dt.timedelta(milliseconds=9)
    assert json.loads(row["features"]) == {"tenure_months": 9, "plan": "basic", "monthly_charges": 22.5}
    assert json.loads(row["prediction"]) == 1 and json.loads(row["probabilities"]) == {"0": 0.25, "1": 0.75}
    assert (row["model_version"], row["alias"], row["shadow"], row["score"]) == (3, "champion", False, 0.75)
    assert _segments(tmp_path / "journal") == []


def test_every_acknowledged_row_survives_sigkill_exactly_once(tmp_path):
    uri, journal = str(tmp_path / PREDICTIONS_TABLE), tmp_path / "journal"
    child = _serve(uri, str(journal), "100", "0")
    guard = threading.Timer(60, child.kill)
    guard.start()
    acked = []
    assert child.stdout is not None
    for line in child.stdout:
        acked.append(line.strip())
        if len(acked) >= 300:
            break
    os.kill(child.pid, signal.SIGKILL)
    rest, errors = child.communicate(timeout=30)
    guard.cancel()
    assert child.returncode == -signal.SIGKILL and len(acked) >= 300, errors[-2000:]
    acked += rest.split()  # printed before the kill landed: acknowledged too

    assert set(acked) - set(_ids(uri)), "some acknowledged rows were only in the journal when it died"
    PredictionLedger(uri, journal, flush_rows=100, flush_seconds=60).start().close()
    ids = _ids(uri)
    assert set(acked) <= set(ids) and len(ids) == len(set(ids))
    assert _segments(journal) == []


def test_a_crash_between_commit_and_journal_removal_is_replayed_without_duplicates(tmp_path):
    uri, journal = str(tmp_path / PREDICTIONS_TABLE), tmp_path / "journal"
    child = _serve(uri, str(journal), "1000", "30", env={CRASH_ENV: "ledger_committed"})
    out, errors = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, errors[-2000:]
    assert len(out.split()) == 30 and len(_ids(uri)) == 30  # committed by close(), then killed
    [segment] = _segments(journal)

    ledger = PredictionLedger(uri, journal, flush_rows=1000, flush_seconds=60).start()
    ledger.record([prediction_row(n) for n in range(30, 35)])
    ledger.close()

    ids = _ids(uri)
    assert sorted(ids) == [f"{n:032x}" for n in range(35)]
    assert [commit[SEGMENT_KEY] for commit in delta.history(uri)].count(segment.stem) == 1
    assert list(journal.iterdir()) == [journal / ".lock"]


def test_serving_goes_on_while_the_lake_is_unreachable_and_the_backlog_drains_after(tmp_path):
    blocker = tmp_path / "lake"
    blocker.write_text("a file where the lake's folder should be")
    uri = str(blocker / PREDICTIONS_TABLE)
    ledger = PredictionLedger(uri, tmp_path / "journal", flush_rows=10, flush_seconds=0.05).start()
    slowest = 0.0
    for n in range(50):
        started = time.perf_counter()
        ledger.record([prediction_row(n)])
        slowest = max(slowest, time.perf_counter() - started)
    _wait_for(lambda: ledger.health()["lake"] == "unreachable")

    health = ledger.health()
    assert slowest < 0.5
    assert uri in health["error"] and "Not a directory" in health["error"]
    assert health["backlog_rows"] == 50 and health["pending_segments"] >= 1 and health["last_flush_at"] is None
    blocker.unlink()
    _wait_for(lambda: ledger.health()["backlog_rows"] == 0)
    health = ledger.health()
    assert (health["lake"], health["error"], health["pending_segments"]) == ("ok", None, 0)
    assert health["last_flush_at"] is not None
    ledger.close()
    assert sorted(_ids(uri)) == [f"{n:032x}" for n in range(50)]


def _journal_left_by_an_outage(tmp_path: Path, rows: int) -> Path:
    """A journal holding one segment of ``rows`` rows that the lake never took."""
    blocker = tmp_path / "blocked"
    blocker.write_text("not a folder")
    journal = tmp_path / "journal"
    ledger = PredictionLedger(str(blocker / PREDICTIONS_TABLE), journal, flush_rows=1000, flush_seconds=60).start()
    for n in range(rows):  # one frame each
        ledger.record([prediction_row(n)])
    ledger.close()
    [segment] = _segments(journal)
    return segment


def _frames(segment: Path) -> list[bytes]:
    """A segment's frames as written: an 18-byte header (checksum, body length), then the body."""
    data, frames = segment.read_bytes(), []
    while data:
        end = 18 + int(data[9:17], 16)
        frames.append(data[:end])
        data = data[end:]
    return frames


@pytest.mark.parametrize("cut", [10, 18, 300, -1], ids=["in the header", "after it", "in the body", "one byte short"])
def test_a_torn_last_frame_is_skipped_with_a_warning(tmp_path, caplog, cut):
    segment = _journal_left_by_an_outage(tmp_path, 5)
    first = _frames(segment)[0]
    with segment.open("ab") as out:
        out.write(first[:cut])  # a crash mid-write: never acknowledged

    uri = str(tmp_path / PREDICTIONS_TABLE)
    PredictionLedger(uri, segment.parent, flush_rows=1000, flush_seconds=60).start().close()
    assert sorted(_ids(uri)) == [f"{n:032x}" for n in range(5)]
    assert any(str(segment) in message and "frame 6, torn" in message for message in caplog.messages)


def test_a_damaged_frame_before_the_last_stops_the_replay_naming_file_and_frame(tmp_path):
    segment = _journal_left_by_an_outage(tmp_path, 5)
    frames = _frames(segment)
    assert frames[1].count(b"churn") == 1
    frames[1] = frames[1].replace(b"churn", b"chury")
    segment.write_bytes(b"".join(frames))
    damaged = segment.read_bytes()

    uri = str(tmp_path / PREDICTIONS_TABLE)
    with pytest.raises(JournalCorrupt, match=r"frame 2 \(byte \d+\) is damaged") as error:
        PredictionLedger(uri, segment.parent, flush_rows=1000, flush_seconds=60).start()
    assert str(segment) in str(error.value)
    assert segment.read_bytes() == damaged and _ids(uri) == []
    with pytest.raises(JournalCorrupt):  # not "another ledger journals here": the failed start let the folder go
        PredictionLedger(uri, segment.parent, flush_rows=1000, flush_seconds=60).start()


def test_a_row_the_table_would_refuse_is_refused_whole_before_the_journal(tmp_path):
    journal = tmp_path / "journal"
    ledger = PredictionLedger(str(tmp_path / PREDICTIONS_TABLE), journal, flush_rows=10, flush_seconds=60).start()
    bad = [
        ({**prediction_row(1), "model_version": "3"}, "model_version must be an integer, got str"),
        ({**prediction_row(1), "served_at": dt.datetime(2026, 1, 1)}, "served_at must be a timezone-aware"),
        ({**prediction_row(1), "features": {"when": object()}}, "features is not JSON"),
        ({key: value for key, value in prediction_row(1).items() if key != "request_id"}, "['request_id']"),
    ]
    for row, message in bad:
        with pytest.raises(ValueError, match="prediction row 1: ") as error:
            ledger.record([prediction_row(0), row])
        assert message in str(error.value)
    assert ledger.health()["backlog_rows"] == 0 and _segments(journal) == []
    ledger.close()
    with pytest.raises(RuntimeError, match="not started, or closed"):
        ledger.record([prediction_row(0)])


def test_one_ledger_per_journal_folder(tmp_path):
    first = PredictionLedger(str(tmp_path / PREDICTIONS_TABLE), tmp_path / "journal", 10, 60).start()
    with pytest.raises(RuntimeError, match="another prediction ledger journals here"):
        PredictionLedger(str(tmp_path / PREDICTIONS_TABLE), tmp_path / "journal", 10, 60).start()
    first.close()


def test_serving_config_defaults_and_refusals(tmp_path):
    data = {"target": "y", "task": "classification", "columns": {"x": "float", "y": "int"}}
    config = parse_config({"data": data}, base_dir=tmp_path)
    assert config.journal_dir == tmp_path.resolve() / ".retrain" / "journal"
    assert (config.serving.port, config.serving.flush_rows, config.serving.shadow) == (5005, 10_000, False)
    moved = parse_config({"data": data, "serving": {"journal_dir": "spool"}}, base_dir=tmp_path)
    assert moved.journal_dir == tmp_path.resolve() / "spool"
    for key, value in [("flush_rows", 0), ("flush_seconds", 0), ("port", 70000), ("batch_wait_ms", -1)]:
        with pytest.raises(ConfigError, match=f"serving.{key}: "):
            parse_config({"data": data, "serving": {key: value}}, base_dir=tmp_path)
