"""The team's own model code named in retrain.yaml: a features function and a pipeline factory, trained,
evaluated and loaded back through the real stack; code that cannot serve gets a clear error and registers
nothing."""

import textwrap

import pytest
from mlflow import MlflowClient

from retrain_assets.app.demo import OWN_MODEL
from retrain_assets.app.execution import materialize
from retrain_assets.core.landing import ingest_file
from retrain_assets.core.registry import Registry
from retrain_assets_tests.conftest import write_config

pytestmark = pytest.mark.integration

# the README's and the demo's worked example, and a factory that returns no estimator
CHURN_MODEL = (
    OWN_MODEL
    + """

def not_a_model(params, roles):
    return {"params": params}
"""
)


def registry_versions(project) -> list:
    client = MlflowClient(tracking_uri=project.config.tracking_uri, registry_uri=project.config.tracking_uri)
    return client.search_model_versions(f"name = '{project.config.mlflow.model_name}'")


@pytest.fixture
def own_code(project):
    (project.path.parent / "churn_model.py").write_text(textwrap.dedent(CHURN_MODEL))
    return project


def test_a_features_function_and_a_pipeline_factory_train_and_serve(own_code, instance):
    write_config(
        own_code,
        model={
            "pipeline": "churn_model.py:make_pipeline",
            "features": "churn_model.py:add_ratios",
            "params": {"max_iter": 50},
        },
    )
    ingest_file(own_code.config, own_code.batch(0))

    outcome = materialize(own_code.path, instance)

    assert outcome.success, outcome.error
    assert outcome.decision["promoted"] is True
    registry = Registry(own_code.config)
    champion = registry.by_alias("champion")
    model = registry.load(str(champion.version))
    assert type(model.named_steps["booster"]).__name__ == "HistGradientBoostingClassifier"
    assert "charges_per_tenure_month" in list(model.feature_names_in_), "the features function fed the model"
    run = registry.client.get_run(champion.run_id)
    assert run.data.params["max_iter"] == "50" and 0.6 < run.data.metrics["roc_auc"] <= 1.0
    assert outcome.evaluation["candidate"]["roc_auc"] == pytest.approx(run.data.metrics["roc_auc"])


@pytest.mark.parametrize(
    "pipeline, words",
    [
        ("churn_model.py:not_a_model", ["model.pipeline", "churn_model.py:not_a_model", "not a scikit-learn"]),
        ("churn_model.py:missing", ["model.pipeline", "missing"]),
        ("no_such_module:make", ["model.pipeline", "no_such_module"]),
    ],
)
def test_user_code_that_cannot_give_a_model_fails_the_run_by_name_and_registers_nothing(
    own_code, instance, pipeline, words
):
    write_config(own_code, model={"pipeline": pipeline})
    ingest_file(own_code.config, own_code.batch(0))

    outcome = materialize(own_code.path, instance)

    assert not outcome.success
    assert all(word in outcome.error for word in words), outcome.error
    assert registry_versions(own_code) == []


def code_versions(project) -> dict[str, str]:
    from retrain_assets.defs.build import build_defs

    specs = build_defs(str(project.path)).resolve_all_asset_specs()
    return {spec.key.to_user_string(): spec.code_version for spec in specs}


def test_code_versions_follow_the_code_params_and_rules_and_nothing_else(own_code):
    write_config(own_code, model={"pipeline": "churn_model.py:make_pipeline", "params": {"max_iter": 50}})
    before = code_versions(own_code)
    (own_code.path.parent / "notes.md").write_text("an unrelated file")
    assert code_versions(own_code) == before, "an unrelated file changes no code version"

    module = own_code.path.parent / "churn_model.py"
    module.write_text(module.read_text() + "\n# a comment is a change to the code\n")
    edited = code_versions(own_code)
    assert edited["candidate_model"] != before["candidate_model"]
    assert edited["validated_features"] == before["validated_features"]

    write_config(own_code, model={"params": {"max_iter": 60}})
    assert code_versions(own_code)["candidate_model"] not in (before["candidate_model"], edited["candidate_model"])
    write_config(own_code, validation={"max_batch_growth": 7})
    assert code_versions(own_code)["validated_features"] != before["validated_features"]


def test_every_model_records_the_code_that_built_it_and_the_git_commit(own_code, instance):
    import subprocess

    folder = own_code.path.parent
    git = ["git", "-C", str(folder), "-c", "user.email=ci@example.org", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q"], check=True)
    write_config(own_code, model={"pipeline": "churn_model.py:make_pipeline", "params": {"max_iter": 50}})
    subprocess.run([*git, "add", "retrain.yaml", "churn_model.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "model"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    ingest_file(own_code.config, own_code.batch(0))

    outcome = materialize(own_code.path, instance)

    assert outcome.success, outcome.error
    tags = Registry(own_code.config).by_alias("champion").tags
    assert tags["code_files"] == "churn_model.py" and tags["git_commit"] == head and tags["git_dirty"] == "false"
    assert len(tags["code_hash"]) == 16 and tags["code_hash"] in code_versions(own_code)["candidate_model"]
