"""End to end on the real stack: Delta tables, Great Expectations, MLflow registry, Dagster execution."""

import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from retrain_assets import lake
from retrain_assets.lake import ingest_file
from retrain_assets.runner import materialize, project_status
from retrain_assets.validation import CHECKS as VALIDATION

pytestmark = pytest.mark.integration


def registry_client(project) -> MlflowClient:
    uri = project.config.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_clean_batch_gives_a_champion_with_provenance(project, instance):
    ingest_file(project.config, project.batch(0))

    outcome = materialize(project.path, instance)

    assert outcome.success, outcome.error
    assert all(check.passed for check in outcome.checks.values()) and len(outcome.checks) == 12
    client = registry_client(project)
    name = project.config.mlflow.model_name
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    assert champion.tags["delta_version"] == "0"
    assert champion.tags["decision"] == "promoted"
    assert len(champion.tags["params_hash"]) == 12 and champion.tags["code_version"]
    assert champion.tags["data_min"].startswith("2026-01-05")
    run = client.get_run(champion.run_id)
    assert run.data.params["estimator"] == "logistic_regression"
    assert 0.6 < run.data.metrics["roc_auc"] <= 1.0
    assert outcome.decision == {"champion_version": "1", "promoted": True, "reason": outcome.decision["reason"]}


def test_bad_batch_is_stopped_kept_and_later_batches_still_train(project, instance):
    config = project.config
    ingest_file(config, project.batch(0))
    assert materialize(project.path, instance).success
    bad = ingest_file(config, project.batch(2))

    outcome = materialize(project.path, instance)

    assert not outcome.success
    nulls = outcome.checks["required_values_present"]
    assert not nulls.passed and nulls.blocking and "tenure_months" in nulls.message and f"v{bad.version}" in nulls.message
    assert "monthly_charges" in outcome.checks["values_in_range"].message and not outcome.checks["values_in_range"].passed
    assert "atlantis" in outcome.checks["categories_in_domain"].message
    assert set(outcome.blocking_failures) == {"required_values_present", "values_in_range", "categories_in_domain"}
    assert outcome.evaluation is None and outcome.decision is None
    client = registry_client(project)
    name = config.mlflow.model_name
    assert len(client.search_model_versions(f"name = '{name}'")) == 1, "the bad batch must train nothing"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    raw = DeltaTable(config.table_uri(lake.RAW_TABLE))
    assert raw.version() == bad.version and raw.to_pyarrow_table().num_rows == 1200, "bad rows stay in raw_data"
    features = lake.read_table(config.table_uri(lake.FEATURES_TABLE))
    assert set(features[lake.RAW_VERSION_COLUMN]) == {0}

    good = ingest_file(config, project.batch(3))
    after = materialize(project.path, instance)

    assert after.success, after.error
    features = lake.read_table(config.table_uri(lake.FEATURES_TABLE))
    assert set(features[lake.RAW_VERSION_COLUMN]) == {0, good.version}
    assert after.evaluation["champion_version"] == "1" and after.evaluation["champion"] is not None
    assert after.evaluation["holdout_rows"] == pytest.approx(0.2 * 1200, rel=0.25)
    status = project_status(config, project.path, instance)
    assert status["raw_table"]["version"] == good.version and status["last_processed_version"] == good.version
    assert status["last_decision"]["candidate_version"] == "2"
    assert status["last_decision"]["promoted"] == after.decision["promoted"]
    assert status["champion"]["version"] == ("2" if after.decision["promoted"] else "1")
    validation = [c for c in status["latest_checks"] if c["asset"] == "validated_features" and c["blocking"]]
    assert len(validation) == len(VALIDATION) == 7 and all(c["passed"] for c in validation)
    assert status["last_run"]["status"] == "SUCCESS" and status["last_run"]["trigger"] == "manual"


def test_nothing_new_retrains_the_same_data_without_promoting(project, instance):
    ingest_file(project.config, project.batch(0))
    assert materialize(project.path, instance).success

    again = materialize(project.path, instance)

    assert again.success
    validation = [check for name, check in again.checks.items() if check.blocking and name in VALIDATION]
    assert len(validation) == len(VALIDATION) == 7 and all("nothing to validate" in check.message for check in validation)
    assert again.evaluation["candidate"] == again.evaluation["champion"], "same data, same seed, same model"
    assert again.decision["promoted"] is False and again.decision["champion_version"] == "1"
