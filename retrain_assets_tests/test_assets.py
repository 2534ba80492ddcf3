"""The assets called as plain functions: what one asset needs from another arrives in its inputs.

Each test builds the upstream value by hand (a ``ValidatedBatches``, an ``EvaluationReport``) and calls the
asset with it, on a real project: Delta tables on tmp_path, the MLflow store, no Dagster run or instance.
"""

import dataclasses

import pytest
from dagster import AssetCheckResult, Output, build_asset_context

from retrain_assets.core import batches
from retrain_assets.core.decision import Decision
from retrain_assets.core.landing import ingest_file
from retrain_assets.core.monitoring import Finding
from retrain_assets.core.names import CHAMPION, TRIGGER_TAG
from retrain_assets.core.registry import Registry
from retrain_assets.defs.assets import candidate_model, evaluation_report, prod_model
from retrain_assets.defs.resources import RetrainProject
from retrain_assets_tests.conftest import write_config

pytestmark = pytest.mark.integration

QUIET = Finding(False, "nothing to compare")


def evidence(project, **findings) -> batches.ValidatedBatches:
    """What ``validated_features`` hands on after validating every landed batch of ``project``."""
    run = batches.validate_new_batches(project.config, 10**6)
    accepted = run.accepted_frame()
    return batches.ValidatedBatches(
        features=run.features,
        raw_version=run.upto,
        accepted=run.accepted,
        rejected=run.rejected,
        accepted_rows=0 if accepted is None else len(accepted),
        drift=findings.get("drift", QUIET),
        performance=findings.get("performance", QUIET),
    )


def train(project, validated, trigger="new_version"):
    """Call ``candidate_model``; its ModelRef, or ``None`` when it decided not to retrain."""
    project_resource = RetrainProject(config_path=str(project.path))
    with build_asset_context(resources={"project": project_resource}, run_tags={TRIGGER_TAG: trigger}) as context:
        events = list(candidate_model(context, validated_features=validated))
    outputs = [event for event in events if isinstance(event, Output)]
    return outputs[0].value if outputs else None


def run_asset(asset_def, project, **inputs):
    """Call an asset that takes no context: its output value and its check results by name."""
    events = list(asset_def(project=RetrainProject(config_path=str(project.path)), **inputs))
    [value] = [event.value for event in events if isinstance(event, Output)]
    return value, {event.check_name: event for event in events if isinstance(event, AssetCheckResult)}


def test_the_drift_finding_in_the_input_decides_the_retrain(project):
    ingest_file(project.config, project.batch(0))
    registry = Registry(project.config)
    first = train(project, evidence(project))
    assert first is not None and "no champion yet" in first.trigger_reason
    registry.promote(first.version)
    ingest_file(project.config, project.batch(1))
    calm = evidence(project)
    write_config(project, triggers={"min_new_rows": 10**9})

    assert train(project, calm) is None, "new rows below min_new_rows and no drift: no retrain"
    drifted = dataclasses.replace(calm, drift=Finding(True, "tenure_months PSI 0.41"))
    retrained = train(project, drifted)

    assert retrained is not None and "drift: tenure_months PSI 0.41" in retrained.trigger_reason
    assert registry.client.get_model_version(registry.name, retrained.version).tags["delta_version"] == "1"


def test_prod_model_acts_on_the_report_it_is_given_and_records_it(project):
    ingest_file(project.config, project.batch(0))
    registry = Registry(project.config)
    validated = evidence(project)
    first = train(project, validated)
    report, checks = run_asset(evaluation_report, project, validated_features=validated, candidate_model=first)
    assert report.decision.promote and checks["candidate_meets_minimum"].passed
    assert report.champion_version is None and report.holdout_rows > 0

    result, _ = run_asset(prod_model, project, evaluation_report=report)
    assert result == {"champion_version": first.version, "promoted": True, "reason": report.decision.reason}
    assert str(registry.by_alias(CHAMPION).version) == first.version

    write_config(project, model={"seed": 7})  # another model of the same data
    second = train(project, validated, trigger="manual")
    judged, _ = run_asset(evaluation_report, project, validated_features=validated, candidate_model=second)
    assert judged.champion_version == first.version and judged.holdout_rows == report.holdout_rows
    overruled = dataclasses.replace(judged, decision=Decision(not judged.decision.promote, "promoted by the report"))
    result, _ = run_asset(prod_model, project, evaluation_report=overruled)

    assert result == {"champion_version": second.version, "promoted": True, "reason": "promoted by the report"}
    assert str(registry.by_alias(CHAMPION).version) == second.version, "prod_model does not decide again"
    tags = registry.client.get_model_version(registry.name, second.version).tags
    assert tags["decision"] == "promoted" and tags["decision_reason"] == "promoted by the report"
    assert tags["compared_with"] == first.version


def test_the_run_cache_reuses_the_version_built_from_the_same_features_code_and_params(project):
    ingest_file(project.config, project.batch(0))
    registry = Registry(project.config)
    validated = evidence(project)
    first = train(project, validated)
    registry.promote(first.version)
    write_config(project, model={"seed": 7})
    second = train(project, validated, trigger="manual")
    assert second is not None and second.version != first.version
    versions = lambda: registered_versions(registry)  # noqa: E731
    before = versions()

    assert train(project, validated, trigger="manual") == dataclasses.replace(second, trigger_reason="manual run")
    assert versions() == before, "reused, not trained again"
    reused = registry.client.get_model_version(registry.name, second.version)
    assert reused.tags["reused_by_run"] and str(registry.by_alias("challenger").version) == second.version

    write_config(project, model={"seed": first_seed(registry, first)})
    assert train(project, validated, trigger="manual") is None, "the champion itself is not rebuilt or re-judged"
    assert versions() == before and str(registry.by_alias(CHAMPION).version) == first.version


def registered_versions(registry) -> list[int]:
    return sorted(int(v.version) for v in registry.client.search_model_versions(f"name = '{registry.name}'"))


def first_seed(registry, ref) -> int:
    return int(registry.client.get_run(ref.run_id).data.params["seed"])
