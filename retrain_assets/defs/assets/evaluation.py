"""``evaluation_report``: candidate and champion scored on the same holdout, with the promotion gates."""

import datetime as dt
import json
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    JsonMetadataValue,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core import delta, training
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.names import CHAMPION, COMPARISON_CHECK, DRIFT_CHECK, MINIMUM_CHECK
from retrain_assets.core.registry import ModelRef, ModelRefused
from retrain_assets.core.report import evaluation_html
from retrain_assets.defs.checks import EVALUATION_CHECKS, evaluated_in_this_run
from retrain_assets.defs.resources import RetrainProject


@asset(group_name="retrain", kinds={"mlflow"}, code_version="1", check_specs=EVALUATION_CHECKS)
def evaluation_report(
    context: AssetExecutionContext,
    project: RetrainProject,
    validated_features: delta.TableRef,
    candidate_model: ModelRef,
):
    """Loads the candidate and the current champion back from the MLflow registry, scores both on the
    candidate's holdout rows (which the champion never trained on: the split is stable), and writes the
    report under ``reports/``: JSON, and an HTML page a person reads (metrics of both, confusion matrices or
    residuals, per-feature drift, metric history, the decision and why). Gates: ``candidate_meets_minimum``
    (blocking: a candidate below the floor fails the run and is recorded as rejected) and
    ``candidate_beats_champion`` (a warning: losing is a normal outcome that ``prod_model`` records).

    A champion whose artifact the registry refuses (not skops, or untrusted types: tampered) is not "no
    champion": the candidate cannot be compared with it, so it must not be promoted past a margin nobody
    checked. The comparison fails (ERROR severity, naming the version and why), the alert
    ``champion_unloadable`` goes out, and the report's ``champion_refused`` tells ``prod_model`` to keep the
    alias where it is until an operator rolls back to a version that loads. A champion that loads but cannot
    score the holdout (its feature columns changed) still counts as absent, as before."""
    config = project.load()
    registry = project.registry(config)
    frame = training.read_window(validated_features, config)
    _, holdout = training.split(frame, config)
    target = training.features_and_target(holdout, config)[1]
    candidate, candidate_predictions = training.score(registry.load(candidate_model.version), holdout, config)
    champion_version = registry.by_alias(CHAMPION)
    champion, champion_predictions, champion_note = None, None, "no champion yet"
    refused = None  # why the champion's artifact was refused, when it was
    if champion_version is not None:
        try:
            champion_model = registry.load(str(champion_version.version))
        except ModelRefused as exc:
            refused = champion_note = (
                f"champion v{champion_version.version} cannot be loaded, so the candidate was not compared with "
                f"it and is not promoted: {exc}"
            )
        else:
            try:
                champion, champion_predictions = training.score(champion_model, holdout, config)
                champion_note = f"champion v{champion_version.version} scored on the same holdout"
            except (KeyError, ValueError) as exc:  # e.g. the feature columns changed since it was trained
                champion_note = f"champion v{champion_version.version} cannot score this holdout: {exc}"
    if champion is not None:
        for name, value in champion.items():
            if value == value:
                registry.client.log_metric(candidate_model.run_id, f"champion_{name}", value)
    floor = training.meets_minimum(candidate, config)
    comparison = training.beats_champion(candidate, champion, config)
    decision = training.decide(candidate, champion, config)
    if refused is not None:
        comparison = training.Decision(False, refused)
        decision = floor if not floor.promote else comparison
    report: dict[str, Any] = {
        "candidate_version": candidate_model.version,
        "champion_version": str(champion_version.version) if champion_version is not None else None,
        "champion_note": champion_note,
        "champion_refused": refused,
        "delta_version": validated_features.raw_version,
        "features_version": validated_features.version,
        "holdout_rows": len(holdout),
        "metric": config.promotion.metric,
        "higher_is_better": config.higher_is_better,
        "minimum": config.promotion.minimum,
        "margin": config.promotion.margin,
        "candidate": candidate,
        "champion": champion,
        "gates": {
            MINIMUM_CHECK: [floor.promote, floor.reason],
            COMPARISON_CHECK: [comparison.promote, comparison.reason],
        },
        "decision": {"promoted": decision.promote, "reason": decision.reason},
        "trigger_reason": candidate_model.trigger_reason,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    config.reports_dir.mkdir(parents=True, exist_ok=True)
    stem = config.reports_dir / f"evaluation-model-v{candidate_model.version}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    page = evaluation_html(
        report,
        config.data.task,
        target.tolist(),
        candidate_predictions.tolist(),
        champion_predictions.tolist() if champion_predictions is not None else None,
        _this_run_drift_scores(context),
        registry.metric_history(config.promotion.metric),
    )
    html_path = stem.with_suffix(".html")
    html_path.write_text(page)
    metric = config.promotion.metric
    yield Output(
        report,
        metadata={
            f"candidate_{metric}": candidate[metric],
            f"champion_{metric}": champion[metric] if champion else None,
            "candidate_metrics": MetadataValue.json(candidate),
            "champion_metrics": JsonMetadataValue(champion),  # MetadataValue.json takes no None
            "candidate_version": candidate_model.version,
            "champion_version": report["champion_version"],
            "holdout_rows": len(holdout),
            "champion_note": champion_note,
            "decision": decision.reason,
            "report_path": MetadataValue.path(str(html_path)),
        },
    )
    if refused is not None:
        send_alert(config, "champion_unloadable", refused, {
            "champion_version": report["champion_version"], "candidate_version": candidate_model.version,
        })
    if not floor.promote:
        registry.record_decision(
            candidate_model.version, False, floor.reason, {"compared_with": report["champion_version"] or "none"}
        )
        send_alert(
            config, "rejected", f"candidate v{candidate_model.version} rejected: {floor.reason}", report["gates"]
        )
    yield AssetCheckResult(
        check_name=MINIMUM_CHECK, passed=floor.promote, severity=AssetCheckSeverity.ERROR, description=floor.reason
    )
    yield AssetCheckResult(
        check_name=COMPARISON_CHECK,
        passed=comparison.promote,
        severity=AssetCheckSeverity.WARN if refused is None else AssetCheckSeverity.ERROR,  # ERROR: an incident
        description=comparison.reason,
    )


def _this_run_drift_scores(context: AssetExecutionContext):
    """Per-feature drift scores that ``validated_features`` measured in this run, if it measured any."""
    evaluation = evaluated_in_this_run(context, "validated_features", DRIFT_CHECK)
    return evaluation.metadata["scores"].value if evaluation is not None and "scores" in evaluation.metadata else None
