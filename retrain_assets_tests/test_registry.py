"""Every configurable estimator survives the MLflow registry round trip (log, register, load, predict)."""

from pathlib import Path

import pytest

from retrain_assets.core import decision, training
from retrain_assets.core.config import ESTIMATORS, parse_config
from retrain_assets.core.names import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from retrain_assets.core.registry import LoggedModel, Registry

from .test_training import churn_config, frames

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("task, estimator", [(task, name) for task, names in ESTIMATORS.items() for name in names])
def test_estimator_round_trips_through_the_registry(tmp_path, task, estimator):
    base = churn_config().model_dump()
    if task == "regression":
        base["data"]["target"], base["promotion"]["metric"] = "monthly_charges", "r2"
    base["data"]["task"], base["model"] = task, {"estimator": estimator, "params": {}}
    config = parse_config(base, base_dir=tmp_path)
    frame = frames(1, 300)[0]
    pipeline = training.train(frame, config)
    registry = Registry(config)

    ref = registry.log_candidate(
        LoggedModel(pipeline, frame.head(3), {"estimator": estimator}, {}, {"delta_version": "0"}, {"rows": 0})
    )

    assert str(registry.by_alias(CHALLENGER).version) == ref.version
    loaded = registry.load(ref.version)
    features = frame[list(config.data.features)]
    assert (loaded.predict(features) == pipeline.predict(features)).all()


def test_a_partial_of_anything_but_check_array_is_refused(tmp_path):
    """Boosting with native categories needs ``functools.partial`` trusted; what a partial wraps is still checked."""
    import functools
    import os
    from urllib.parse import unquote, urlparse

    import skops.io
    import yaml
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    base = churn_config().model_dump()
    base["model"] = {"estimator": "hist_gradient_boosting", "params": {}}
    config = parse_config(base, base_dir=tmp_path)
    frame = frames(1, 300)[0]
    registry = Registry(config)
    ref = registry.log_candidate(LoggedModel(training.train(frame, config), frame.head(3), {}, {}, {}, {"rows": 0}))
    folder = Path(unquote(urlparse(registry.client.get_model_version_download_uri(registry.name, ref.version)).path))
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]
    marker = tmp_path / "payload-ran"
    payload = Pipeline([("run", FunctionTransformer(functools.partial(os.system, f"touch {marker}")))])
    (folder / flavor["pickled_model"]).write_bytes(skops.io.dumps(payload))

    with pytest.raises(ValueError, match=r"holds types outside the trusted list: \['posix.system'\]"):
        registry.load(ref.version)
    assert not marker.exists()


def decided_registry(config):
    """v1 promoted, v2 promoted over it, v3 rejected against v2, v4 never decided (its run stopped)."""
    frame = frames(1, 300)[0]
    pipeline = training.train(frame, config)
    registry = Registry(config)
    for auc in (0.80, 0.83, 0.81, 0.70):
        registry.log_candidate(LoggedModel(pipeline, frame.head(3), {}, {"roc_auc": auc}, {}, {"rows": 0}))
    registry.record_decision("1", True, "no champion yet", {"compared_with": "none"})
    registry.promote("1")
    registry.record_decision("2", True, "candidate roc_auc 0.8300 beats champion 0.8000", {"compared_with": "1"})
    registry.promote("2")
    lost = decision.decide({"roc_auc": 0.81}, {"roc_auc": 0.83}, config).reason
    registry.record_decision("3", False, lost, {"compared_with": "2"})
    return registry, lost


def test_rollback_to_a_version_that_was_never_champion_is_refused_unless_forced(tmp_path):
    registry, lost = decided_registry(parse_config(churn_config().model_dump(), base_dir=tmp_path))

    with pytest.raises(ValueError) as refused:
        registry.rollback("3", reason="try the new one", who="tester")

    expected = f"v3 was never champion: it lost to v2 ({lost}); pass --force to make it champion anyway"
    assert str(refused.value) == expected
    assert "0.8100" in lost and "0.8300" in lost
    with pytest.raises(ValueError, match="v4 was never champion: no promotion decision was recorded"):
        registry.rollback("4", reason="untested", who="tester")
    assert str(registry.by_alias(CHAMPION).version) == "2"

    forced = registry.rollback("3", reason="try the new one", who="tester", force=True)

    assert forced["override"].startswith("v3 was never champion: it lost to v2")
    assert str(registry.by_alias(CHAMPION).version) == "3"
    assert registry.client.get_model_version(registry.name, "3").tags["rollback_override"] == forced["override"]


def test_rollback_to_an_earlier_champion_needs_no_force(tmp_path):
    registry, _ = decided_registry(parse_config(churn_config().model_dump(), base_dir=tmp_path))

    event = registry.rollback("1", reason="v2 misbehaves", who="tester")

    assert event["from_version"] == "2" and event["to_version"] == "1" and "override" not in event
    assert str(registry.by_alias(CHAMPION).version) == "1"
    assert str(registry.by_alias(PREVIOUS_CHAMPION).version) == "2"
    registry.rollback("3", reason="forced once", who="tester", force=True)
    assert registry.rollback("1", reason="back", who="tester")["to_version"] == "1"
    assert "override" not in registry.rollback("3", reason="it was champion once", who="tester")


def test_a_logged_model_keeps_a_schema_and_no_customer_rows(tmp_path):
    """MLflow would store the rows handed to it as the input example: customer data outside the lake."""
    from urllib.parse import unquote, urlparse

    import mlflow

    config = parse_config(churn_config().model_dump(), base_dir=tmp_path)
    frame = frames(1, 300)[0]
    frame.loc[:4, "monthly_charges"] = [98765.4321, 87654.3219, 76543.2198, 65432.1987, 54321.9876]
    pipeline = training.train(frame, config)
    features = list(config.data.features)
    registry = Registry(config)

    ref = registry.log_candidate(
        LoggedModel(pipeline, frame[features].head(5), {}, {"roc_auc": 0.7}, {"delta_version": "0"}, {"rows": 0})
    )

    run_files = Path(registry.client.download_artifacts(ref.run_id, "", str(tmp_path / "run")))
    model_dir = Path(unquote(urlparse(registry.client.get_model_version_download_uri(registry.name, ref.version)).path))
    files = [path for folder in (run_files, model_dir) for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "MLmodel" for path in files)
    assert [path.name for path in files if "example" in path.name] == []
    for path in files:
        content = path.read_bytes()
        assert not any(value.encode() in content for value in ("98765.4321", "65432.1987", "54321.9876")), path
    signature = mlflow.models.get_model_info(ref.uri).signature
    assert signature is not None and signature.inputs.input_names() == features
    loaded = registry.load(ref.version)
    assert (loaded.predict(frame[features]) == pipeline.predict(frame[features])).all()


def test_only_a_missing_model_or_alias_is_no_champion(tmp_path, monkeypatch):
    """Read as "no champion", a store that cannot be reached would let a candidate skip the comparison."""
    import socket

    from mlflow.exceptions import MlflowException

    config = parse_config(churn_config().model_dump(), base_dir=tmp_path)
    registry = Registry(config)
    assert registry.by_alias(CHAMPION) is None  # no registered model yet
    frame = frames(1, 300)[0]
    registry.log_candidate(LoggedModel(training.train(frame, config), frame.head(0), {}, {}, {}, {"rows": 0}))
    assert registry.by_alias(CHAMPION) is None and str(registry.by_alias(CHALLENGER).version) == "1"

    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    base = churn_config().model_dump()
    base["mlflow"]["tracking_uri"] = f"http://127.0.0.1:{port}"
    try:
        unreachable = Registry(parse_config(base, base_dir=tmp_path / "elsewhere"))
        with pytest.raises(MlflowException, match="failed"):
            unreachable.by_alias(CHAMPION)
    finally:
        Registry(config)  # puts mlflow's process-wide URIs back on a store that exists
