"""Shared fixtures: a real project on tmp_path (synthetic churn CSVs, retrain.yaml) and a Dagster instance."""

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrain_assets.app.demo import declare_business_limits
from retrain_assets.core import synthetic
from retrain_assets.core.config import RetrainConfig, load_config
from retrain_assets.core.inference import infer_config, render_config

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


def write_config(project: Project, **sections) -> None:
    """Rewrite the project's retrain.yaml with some sections replaced (e.g. ``triggers={...}``)."""
    import yaml

    raw = yaml.safe_load(project.path.read_text())
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    project.path.write_text(yaml.safe_dump(raw, sort_keys=False))
    project.config = load_config(project.path)


@pytest.fixture
def automated(tmp_path: Path) -> Project:
    """A project for the automation path: 600-row days 0-5 clean, day 6 corrupted, days 7-8 drifted;
    validation ranges at business limits (drift is a trigger, not a validation failure)."""
    data = tmp_path / "data"
    data.mkdir()
    days = []
    for day, frame in synthetic.churn_days(START, 9, 600, seed=5, bad_day=6, drift_from_day=7, drift=0.9):
        path = data / f"churn-{day.isoformat()}.csv"
        frame.to_csv(path, index=False)
        days.append(path)
    config = infer_config(
        synthetic.churn_batch(START, 600, seed=5),
        "churned",
        timestamp="event_time",
        id_column="customer_id",
        project="churn",
    )
    declare_business_limits(config)
    config_path = tmp_path / "retrain.yaml"
    config_path.write_text(render_config(config, days[0].name))
    return Project(config_path, load_config(config_path), days)


@pytest.fixture
def persistent(automated, monkeypatch):
    """The project's own sqlite Dagster instance under its storage home (DAGSTER_HOME restored after)."""
    from retrain_assets.app.instance import project_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with project_instance(automated.config) as instance:
        yield instance
