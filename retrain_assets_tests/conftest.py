"""Shared fixtures: a real project on tmp_path (synthetic churn CSVs, retrain.yaml) and a Dagster instance."""

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrain_assets import synthetic
from retrain_assets.config import RetrainConfig, load_config
from retrain_assets.inference import infer_config, render_config

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

START = dt.date(2026, 1, 5)


@dataclass
class Project:
    """A project folder: its config file, the parsed config and one CSV per synthetic day."""

    path: Path
    config: RetrainConfig
    days: list[Path]

    def batch(self, day: int) -> Path:
        return self.days[day]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """Four daily churn batches of 600 rows; day 2 is corrupted (nulls, out-of-range, unknown region)."""
    data = tmp_path / "data"
    data.mkdir()
    days = []
    for day, frame in synthetic.churn_days(START, 4, 600, seed=11, bad_day=2):
        path = data / f"churn-{day.isoformat()}.csv"
        frame.to_csv(path, index=False)
        days.append(path)
    first = synthetic.churn_batch(START, 600, seed=11)
    config = infer_config(first, "churned", timestamp="event_time", id_column="customer_id", project="churn")
    config_path = tmp_path / "retrain.yaml"
    config_path.write_text(render_config(config, days[0].name))
    return Project(config_path, load_config(config_path), days)


@pytest.fixture
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral
