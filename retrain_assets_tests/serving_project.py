"""A project trained on real data (scikit-learn's bundled breast cancer set) with real Delta and MLflow, through
the CLI: what the serving and labels tests serve and label."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets.core.config import RetrainConfig, load_config

TARGET = "target"
ID = "patient_id"
TIMESTAMP = "event_time"


def retrain(config_path: Path, *args) -> str:
    result = CliRunner().invoke(main, ["--config", str(config_path), *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class Served:
    """A trained project: its config, the rows the model sees (no target) and two registered versions."""

    path: Path
    config: RetrainConfig
    features: pd.DataFrame
    versions: list[str]


def trained_project(folder: Path, keys: bool = False) -> Served:
    """Breast cancer cut in three parts: two land for the first champion, the third makes a second version.
    With ``keys``, each row also has an id (``data.id``) and an event time (``data.timestamp``)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    options: list[str] = []
    if keys:
        start = pd.Timestamp(dt.datetime.now(dt.timezone.utc).date(), tz="UTC") - pd.Timedelta(days=40)
        frame.insert(0, ID, [f"p{index:04d}" for index in range(len(frame))])
        frame.insert(1, TIMESTAMP, pd.date_range(start, periods=len(frame), freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"))
        options = ["--id", ID, "--timestamp", TIMESTAMP]
    parts = []
    for index, part in enumerate([frame.iloc[:200], frame.iloc[200:380], frame.iloc[380:]]):
        parts.append(folder / f"part{index}.csv")
        part.to_csv(parts[-1], index=False)
    config_path = folder / "retrain.yaml"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DAGSTER_HOME", raising=False)
        retrain(config_path, "init", parts[0], "--target", TARGET, *options)
        raw = config_path.read_text() + "serving:\n  flush_rows: 200\n  flush_seconds: 0.5\n"
        config_path.write_text(raw)
        retrain(config_path, "ingest", parts[0], parts[1])
        retrain(config_path, "tick")
        retrain(config_path, "ingest", parts[2])
        retrain(config_path, "materialize", "--force")  # a second version, promoted or not
    config = load_config(config_path)
    from retrain_assets.core.registry import Registry

    registry = Registry(config)
    versions = sorted(str(v.version) for v in registry.client.search_model_versions(f"name='{registry.name}'"))
    assert len(versions) >= 2, versions
    return Served(config_path, config, frame.drop(columns=[TARGET]), versions)
