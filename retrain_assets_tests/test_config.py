"""retrain.yaml: typed parsing, errors that name the key, paths resolved beside the file."""

from pathlib import Path

import pytest
import yaml

from retrain_assets.config import CONFIG_ENV, ConfigError, load_config, resolve_config_path

MINIMAL = {
    "data": {"target": "y", "task": "classification", "columns": {"x": "float", "plan": "category", "y": "int"}},
}


def write(tmp_path: Path, raw: dict, name: str = "retrain.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defaults_put_everything_under_home_beside_the_config(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))

    home = tmp_path / ".retrain"
    assert config.home == home
    assert config.table_uri("raw_data") == str(home / "lake" / "raw_data")
    assert config.tracking_uri == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert config.dagster_home == home / "dagster"
    assert config.reports_dir == home / "reports" and config.quarantine_dir == home / "quarantine"
    assert config.data.features == {"x": "float", "plan": "category"}
    assert config.model.estimator == "logistic_regression" and config.promotion.metric == "roc_auc"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"model": {"estimator": "lasso"}}, "model.estimator"),
        ({"model": {"holdout_fraction": 1.5}}, "model.holdout_fraction"),
        ({"promotion": {"metric": "rmse"}}, "promotion.metric"),
        ({"validation": {"columns": {"nope": {"nullable": False}}}}, "validation.columns.nope"),
        ({"validation": {"columns": {"x": {"maximum": 3}}}}, "validation.columns.x.maximum"),
        ({"storage": {"hom": "x"}}, "storage.hom"),
        ({"data": {**MINIMAL["data"], "target": "z"}}, "data.target"),
        ({"data": {**MINIMAL["data"], "task": "ranking"}}, "data.task"),
        ({"data": {**MINIMAL["data"], "columns": {"x": "decimal", "y": "int"}}}, "data.columns.x"),
        ({"data": {**MINIMAL["data"], "timestamp": "x"}}, "data.timestamp"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, change, key):
    path = write(tmp_path, {**MINIMAL, **change})

    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and f"{key}:" in str(error.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_config_path_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert resolve_config_path() == tmp_path / "retrain.yaml"
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "from-env.yaml"))
    assert resolve_config_path() == tmp_path / "from-env.yaml"
    assert resolve_config_path(tmp_path / "explicit.yaml") == tmp_path / "explicit.yaml"
