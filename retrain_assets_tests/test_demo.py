"""`retrain demo`, small: the whole walkthrough runs, and its last act closes the loop with a real uvicorn
server on 127.0.0.1 — a served day journaled into the predictions table, labels landed a day late and fed
back, the live-performance trigger retraining, and the server swapping to the new champion."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from retrain_assets.app.demo import run_demo
from retrain_assets.core import delta
from retrain_assets.core.config import load_config


def test_the_demo_serves_a_day_and_the_live_trigger_retrains_and_the_server_swaps(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    printed: list[str] = []
    rows = run_demo(tmp_path / "demo", fresh=False, days=6, rows_per_day=400, history_weeks=2, echo=printed.append)

    by_day = {}
    for row in rows:
        by_day.setdefault(row["day"], []).append(row)
    ((served,),) = [found for day, found in by_day.items() if day.startswith("served ")]
    day = dt.date.fromisoformat(served["day"].removeprefix("served "))
    was = served["champion_version"]
    assert served["decision"] == f"answered by {was}" and served["rows"] == 1200
    judged, retrained, *_ = by_day[f"live {day}"]
    assert judged["decision"] == f"{was} behind live" and "live_performance" in judged["trigger"].split(",")
    assert judged["checks"] == "1200 labelled" and judged["champion"] is not None
    assert retrained["trigger"].startswith("live_performance") and retrained["decision"].startswith("promoted v")
    now = retrained["decision"].removeprefix("promoted ")
    ((swap,),) = [found for label, found in by_day.items() if label == "hot swap"]
    assert swap["decision"] == f"serving {now} (was {was})", "the server swapped to the new champion"
    assert f"retrain serve: serving {now} (was {was})" in printed

    config = load_config(tmp_path / "demo" / "retrain.yaml")
    predictions = delta.read_table(config.table_uri(delta.PREDICTIONS_TABLE))
    answered = predictions[~predictions["shadow"]]
    assert len(answered) == 1200 and answered["prediction_id"].is_unique
    assert (answered["model_version"] == int(was.removeprefix("v"))).all()
    start = pd.Timestamp(day, tz="UTC")
    assert answered["served_at"].between(start, start + pd.Timedelta(days=1), inclusive="left").all()
    fed = next(
        entry for entry in delta.history(config.table_uri(delta.RAW_TABLE)) if "retrain.fed_labels_through" in entry
    )
    assert fed["retrain.fed_labels_through"] == "0"
