"""End to end on the real stack: Delta tables, Great Expectations, MLflow registry, Dagster execution."""

import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from retrain_assets.app.execution import materialize
from retrain_assets.app.status import project_status
from retrain_assets.core import delta, landing
from retrain_assets.core.landing import ingest_file
from retrain_assets.core.registry import Registry
from retrain_assets.core.validation import HARD_CHECKS as VALIDATION

pytestmark = pytest.mark.integration


def registry_client(project) -> MlflowClient:
    uri = project.config.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_clean_batch_gives_a_champion_with_provenance(project, instance):
    ingest_file(project.config, project.batch(0))

    outcome = materialize(project.path, instance)

    assert outcome.success, outcome.error
    assert all(check.passed for check in outcome.checks.values()) and len(outcome.checks) == 13
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
    assert set(outcome.blocking_failures) == {"values_in_range"}, "the inferred hard limit: charges are never negative"
    in_range = outcome.checks["values_in_range"].message
    assert f"raw_data v{bad.version}: column 'monthly_charges'" in in_range and "-50.0" in in_range
    expected = outcome.checks["values_as_expected"]  # what the sample showed: nulls and a new region only warn
    assert not expected.passed and not expected.blocking
    assert "column 'tenure_months'" in expected.message and "'atlantis'" in expected.message
    assert outcome.evaluation is None and outcome.decision is None
    client = registry_client(project)
    name = config.mlflow.model_name
    assert len(client.search_model_versions(f"name = '{name}'")) == 1, "the bad batch must train nothing"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    raw = DeltaTable(config.table_uri(delta.RAW_TABLE))
    assert raw.version() == bad.version and raw.to_pyarrow_table().num_rows == 1200, "bad rows stay in raw_data"
    features = delta.read_table(config.table_uri(delta.FEATURES_TABLE))
    assert set(features[delta.RAW_VERSION_COLUMN]) == {0}

    good = ingest_file(config, project.batch(3))
    after = materialize(project.path, instance)

    assert after.success, after.error
    features = delta.read_table(config.table_uri(delta.FEATURES_TABLE))
    assert set(features[delta.RAW_VERSION_COLUMN]) == {0, good.version}
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


def test_nothing_new_does_not_rebuild_the_champion(project, instance):
    ingest_file(project.config, project.batch(0))
    assert materialize(project.path, instance).success

    again = materialize(project.path, instance)

    assert again.success
    validation = [check for name, check in again.checks.items() if check.blocking and name in VALIDATION]
    assert len(validation) == len(VALIDATION) == 7
    assert all("nothing to validate" in check.message for check in validation)
    assert again.retrain["retrain"] is False and "manual" in again.fired, "a manual run fires, yet"
    assert "the champion v1 was built from this very data" in again.reason, "the run cache: same inputs, same model"
    assert again.evaluation is None and again.decision is None
    assert str(Registry(project.config).by_alias("champion").version) == "1"


def declare(project, **rules) -> None:
    """Rewrite the project's retrain.yaml with some validation.columns rules replaced (what a reviewer edits)."""
    from retrain_assets.core.config import ColumnRule, load_config
    from retrain_assets.core.inference import render_config

    config = load_config(project.path)
    for name, rule in rules.items():
        config.validation.columns[name] = ColumnRule.model_validate(rule)
    project.path.write_text(render_config(config, "reviewed"))
    project.config = load_config(project.path)


def test_one_bad_batch_among_good_ones_still_trains_on_the_good_ones(project, instance):
    declare(project, monthly_charges={"hard": {"min": 0, "max": 500}})
    versions = [ingest_file(project.config, project.batch(day)).version for day in range(4)]  # day 2 is corrupt

    outcome = materialize(project.path, instance)

    assert outcome.success, outcome.error
    assert outcome.blocking_failures == {}
    failed = {name: check for name, check in outcome.checks.items() if not check.passed and check.blocking}
    assert "values_in_range" in failed
    for check in failed.values():
        assert check.severity == "WARN"
        assert f"raw_data v{versions[2]}" in check.message
        assert f"this run trains on the accepted v{versions[0]}, v{versions[1]}, v{versions[3]}" in check.message
    features = delta.read_table(project.config.table_uri(delta.FEATURES_TABLE))
    assert set(features[delta.RAW_VERSION_COLUMN]) == {versions[0], versions[1], versions[3]}
    assert outcome.evaluation is not None and outcome.decision["promoted"] is True
    champion = registry_client(project).get_model_version_by_alias(project.config.mlflow.model_name, "champion")
    assert champion.tags["rows"] == "1800", "trained on the three accepted batches only"
    status = project_status(project.config, project.path, instance)
    [rejected] = status["rejected_batches"]
    assert rejected["raw_version"] == versions[2] and "values_in_range" in rejected["failed_checks"]
    assert DeltaTable(project.config.table_uri(delta.RAW_TABLE)).to_pyarrow_table().num_rows == 2400, "nothing lost"


def test_revalidate_takes_back_a_batch_a_too_tight_rule_rejected(project, instance, monkeypatch):
    from click.testing import CliRunner

    from retrain_assets.app.cli import main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    ingest_file(project.config, project.batch(0))
    assert materialize(project.path, instance).success
    declare(project, tenure_months={"hard": {"min": 0, "max": 5}})  # a reviewer's typo: 5 for 50 years
    second = ingest_file(project.config, project.batch(1))
    blocked = materialize(project.path, instance)
    assert not blocked.success and "values_in_range" in blocked.blocking_failures
    raw_before = delta.read_table(project.config.table_uri(delta.RAW_TABLE))
    refusal = f"rejected; after fixing the rules, `retrain revalidate {second.version}`"
    with pytest.raises(landing.BatchRefused, match=refusal):
        ingest_file(project.config, project.batch(1))  # landing it again would count it twice

    declare(project, tenure_months={"hard": {"min": 0, "max": 600}})
    result = CliRunner().invoke(main, ["--config", str(project.path), "revalidate", str(second.version)])

    assert result.exit_code == 0, result.output
    assert f"raw_data v{second.version}: accepted now (600 rows" in result.output
    log = delta.read_table(project.config.table_uri(delta.VALIDATION_LOG_TABLE))
    verdicts = log[log["raw_version"] == second.version].sort_values("validated_at")
    assert verdicts["accepted"].tolist() == [False, True] and verdicts["revalidated"].tolist() == [False, True]
    assert "values_in_range" in verdicts["failed_checks"].iloc[0], "the first verdict stays as an audit trail"
    features = delta.read_table(project.config.table_uri(delta.FEATURES_TABLE))
    assert set(features[delta.RAW_VERSION_COLUMN]) == {0, second.version}
    import pandas as pd

    pd.testing.assert_frame_equal(delta.read_table(project.config.table_uri(delta.RAW_TABLE)), raw_before)

    again = CliRunner().invoke(main, ["--config", str(project.path), "revalidate", str(second.version)])
    assert again.exit_code == 1 and "accepted already" in again.output
    missing = CliRunner().invoke(main, ["--config", str(project.path), "revalidate", "7"])
    assert missing.exit_code == 1 and "raw_data v7: no batch landed as this version" in missing.output

    retrained = materialize(project.path, instance)
    assert retrained.success and retrained.evaluation["holdout_rows"] == pytest.approx(0.2 * 1200, rel=0.25)


def test_evaluation_report_says_what_triggered_the_candidate(project, instance):
    import html
    import json

    ingest_file(project.config, project.batch(0))

    outcome = materialize(project.path, instance)

    assert outcome.success, outcome.error
    reason = outcome.reason
    assert "no champion yet" in reason and "600 validated rows" in reason
    stem = project.config.reports_dir / "evaluation-model-v1"
    assert json.loads(stem.with_suffix(".json").read_text())["trigger_reason"] == reason
    assert f"Triggered by: {html.escape(reason)}" in stem.with_suffix(".html").read_text()
