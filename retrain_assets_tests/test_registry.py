"""Every configurable estimator survives the MLflow registry round trip (log, register, load, predict)."""

import pytest

from retrain_assets import training
from retrain_assets.config import ESTIMATORS, parse_config
from retrain_assets.registry import CHALLENGER, LoggedModel, Registry

from .test_training import churn_config, frames

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "task, estimator", [(task, name) for task, names in ESTIMATORS.items() for name in names]
)
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
