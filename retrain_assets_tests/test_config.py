"""retrain.yaml: typed parsing, errors that name the key, paths resolved beside the file."""

from pathlib import Path

import pytest
import yaml

from retrain_assets.core.config import CONFIG_ENV, ConfigError, load_config, resolve_config_path

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
        ({"promotion": {"live_check": {"min_rows": 100}}}, "promotion.live_check"),  # needs serving.shadow
        ({"promotion": {"live_check": {"min_rows": 0}}}, "promotion.live_check.min_rows"),
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


@pytest.mark.parametrize(
    "columns, named",
    [
        ({"x": "float", "Plan": "category", "plan": "category", "y": "int"}, "['Plan', 'plan']"),
        ({"x": "float", "": "category", "y": "int"}, "empty column names ['']"),
        ({"x": "float", "  ": "category", "y": "int"}, "empty column names ['  ']"),
    ],
)
def test_column_names_that_differ_only_in_case_or_are_empty_are_refused_at_load(tmp_path, columns, named):
    """Finding 12: `Plan` and `plan` passed the config, then every ingest failed blaming the file (Delta Lake
    refuses case-insensitive duplicates); an empty name crashed validation."""
    path = write(tmp_path, {"data": {**MINIMAL["data"], "columns": columns}})

    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"{path}: data.columns: " in str(error.value) and named in str(error.value)


def test_input_limits_have_defaults_and_bound_the_declared_columns(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.storage.max_file_bytes == 2 * 1024**3 and config.storage.max_rows == 10_000_000
    assert config.data.max_columns == 300 and config.data.max_category_values == 10_000
    unbounded = {
        "storage": {"max_file_bytes": None, "max_rows": None},
        "data": {**MINIMAL["data"], "max_category_values": None},
    }
    assert load_config(write(tmp_path, unbounded)).storage.max_rows is None

    with pytest.raises(ConfigError, match=r"data.columns: 3 columns, more than data.max_columns \(2\)"):
        load_config(write(tmp_path, {"data": {**MINIMAL["data"], "max_columns": 2}}))
    with pytest.raises(ConfigError, match="storage.max_rows"):
        load_config(write(tmp_path, {**MINIMAL, "storage": {"max_rows": 0}}))


@pytest.mark.parametrize(
    "uri",
    ["http://alice:{pw}@mlflow.internal:5000", "https://{pw}@mlflow.internal/", "postgresql://bob:{pw}@db/mlflow"],
)
def test_credentials_in_the_tracking_uri_are_refused_unquoted(tmp_path, uri):
    """`status --json` prints the tracking URI and MLflow quotes it in errors: a password there leaks."""
    password = "pw-canary-7f3a"
    path = write(tmp_path, {**MINIMAL, "mlflow": {"tracking_uri": uri.format(pw=password)}})

    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: mlflow.tracking_uri: credentials (user:password@) before the host")
    assert all(
        name in message for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    )
    assert password not in message and "alice" not in message and "bob" not in message
    accepted = load_config(write(tmp_path, {**MINIMAL, "mlflow": {"tracking_uri": "sqlite:////srv/a@b/mlflow.db"}}))
    assert accepted.tracking_uri == "sqlite:////srv/a@b/mlflow.db"


def billion_laughs(levels: int = 9) -> str:
    """A ~1 KB retrain.yaml whose model.params expand to 10**levels strings through nested aliases."""
    lines = [
        "data: {target: y, task: classification, columns: {x: float, y: int}}",
        "model:",
        "  params:",
        "    l0: &l0 [" + ", ".join(["lol"] * 10) + "]",
    ]
    lines += [f"    l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, line, what",
    [
        (billion_laughs(), 4, "&l0"),
        ("base: &b {x: float, y: int}\ndata: {target: y, task: classification, columns: {<<: *b}}\n", 1, "&b"),
    ],
    ids=["billion_laughs", "merge_key"],
)
def test_yaml_anchors_and_aliases_are_refused(tmp_path, text, line, what):
    """A few KB of nested aliases expand to millions of values in every copy, dump and params hash."""
    path = tmp_path / "retrain.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: line {line}: YAML anchors and aliases ({what}) are not accepted")


def test_a_config_file_over_one_mib_is_refused_unparsed(tmp_path):
    """Every command reads the config first: a huge one would be parsed whole by each of them."""
    path = write(tmp_path, MINIMAL)
    with path.open("a") as handle:
        handle.write("# padding\n" * (1024 * 1024 // 10 + 1))

    with pytest.raises(ConfigError, match=r"larger than 1,048,576 bytes, the most a config file may be"):
        load_config(path)
