"""``evaluation_report``: candidate and champion scored on the same holdout, with the promotion gates."""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    Failure,
    JsonMetadataValue,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core import batches, decision, training
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import CHAMPION, COMPARISON_CHECK, MINIMUM_CHECK
from retrain_assets.core.registry import ModelRef, ModelRefused, Registry
from retrain_assets.core.report import evaluation_html
from retrain_assets.defs.checks import EVALUATION_CHECKS
from retrain_assets.defs.resources import RetrainProject

if TYPE_CHECKING:
    import pandas as pd


@asset(group_name="retrain", kinds={"mlflow"}, code_version="1", check_specs=EVALUATION_CHECKS)
def evaluation_report(
    project: RetrainProject,
    validated_features: batches.ValidatedBatches,
    candidate_model: ModelRef,
):
    """Scores the candidate and the current champion (both loaded back from the registry) on the
    candidate's holdout rows, which the champion never trained on (the split is stable), and writes the
    report under ``reports/``: JSON, and an HTML page a person reads. The
    :class:`~retrain_assets.core.decision.EvaluationReport` decides; ``prod_model`` acts on it. Gates:
    ``candidate_meets_minimum`` (blocking: a candidate below the floor fails the run and is recorded as
    rejected here) and ``candidate_beats_champion`` (a warning: losing is a normal outcome).

    A champion whose artifact the registry refuses (not skops, or untrusted types: tampered) is not "no
    champion": the comparison fails with ERROR severity, the alert ``champion_unloadable`` goes out, and
    nothing is promoted until an operator rolls back to a version that loads. A champion that loads but
    cannot score the holdout (its feature columns changed) counts as absent."""
    config = project.load()
    registry = project.registry(config)
    features = validated_features.features
    if features is None:
        raise Failure("evaluation_report: validated_features is empty; there is nothing to score on")
    holdout = training.holdout_rows(training.read_window(features, config, holdout_only=True), config)
    target = training.features_and_target(holdout, config)[1]
    candidate, candidate_predictions = training.score(registry.load(candidate_model.version), holdout, config)
    champion = _score_champion(registry, holdout, config)
    for name, value in (champion.scores or {}).items():
        if value == value:  # NaN (undefined) is not logged
            registry.client.log_metric(candidate_model.run_id, f"champion_{name}", value)
    report = decision.EvaluationReport.judge(
        config,
        candidate_version=candidate_model.version,
        champion_version=champion.version,
        champion_note=champion.note,
        champion_refused=champion.refused,
        delta_version=features.raw_version,
        features_version=features.version,
        holdout_rows=len(holdout),
        candidate=candidate,
        champion=champion.scores,
        trigger_reason=candidate_model.trigger_reason,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    drift_scores = validated_features.drift.metadata.get("scores")
    html_path = _write_report(config, registry, report, target, candidate_predictions, champion, drift_scores)
    metric = config.promotion.metric
    yield Output(
        report,
        metadata={
            f"candidate_{metric}": candidate[metric],
            f"champion_{metric}": champion.scores[metric] if champion.scores else None,
            "candidate_metrics": MetadataValue.json(candidate),
            "champion_metrics": JsonMetadataValue(champion.scores),  # MetadataValue.json takes no None
            "candidate_version": candidate_model.version,
            "champion_version": report.champion_version,
            "holdout_rows": len(holdout),
            "champion_note": champion.note,
            "decision": report.decision.reason,
            "report_path": MetadataValue.path(str(html_path)),
        },
    )
    _act_on_gates(config, registry, report)
    yield AssetCheckResult(
        check_name=MINIMUM_CHECK,
        passed=report.floor.promote,
        severity=AssetCheckSeverity.ERROR,
        description=report.floor.reason,
    )
    yield AssetCheckResult(
        check_name=COMPARISON_CHECK,
        passed=report.comparison.promote,
        severity=AssetCheckSeverity.WARN if champion.refused is None else AssetCheckSeverity.ERROR,  # an incident
        description=report.comparison.reason,
    )


def _act_on_gates(config: RetrainConfig, registry: Registry, report: decision.EvaluationReport) -> None:
    """Alert on a champion that would not load; record and alert a candidate below the floor, whose run the
    blocking check stops before ``prod_model``."""
    if report.champion_refused is not None:
        details = {"champion_version": report.champion_version, "candidate_version": report.candidate_version}
        send_alert(config, "champion_unloadable", report.champion_refused, details)
    if not report.floor.promote:
        decision.record(registry, report)
        reason = f"candidate v{report.candidate_version} rejected: {report.floor.reason}"
        send_alert(config, "rejected", reason, report.gates)


def _write_report(
    config: RetrainConfig,
    registry: Registry,
    report: decision.EvaluationReport,
    target: "pd.Series",
    candidate_predictions: Any,
    champion: "_ScoredChampion",
    drift_scores: Optional[dict],
) -> Path:
    """``reports/evaluation-model-v<N>.json`` and the HTML page beside it; returns the page's path."""
    config.reports_dir.mkdir(parents=True, exist_ok=True)
    stem = config.reports_dir / f"evaluation-model-v{report.candidate_version}"
    stem.with_suffix(".json").write_text(json.dumps(report.as_dict(), indent=2))
    page = evaluation_html(
        report.as_dict(),
        config.data.task,
        target.to_numpy(),
        candidate_predictions,
        champion.predictions,
        drift_scores,
        registry.metric_history(config.promotion.metric),
    )
    html_path = stem.with_suffix(".html")
    html_path.write_text(page)
    return html_path


@dataclass(frozen=True)
class _ScoredChampion:
    """The champion on the candidate's holdout: its version, scores and predictions when it scored, a note
    saying how it went, and ``refused`` when the registry would not load its artifact."""

    version: Optional[str]
    note: str
    refused: Optional[str] = None
    scores: Optional[dict[str, float]] = None
    predictions: Any = None


def _score_champion(registry: Registry, holdout: "pd.DataFrame", config: RetrainConfig) -> _ScoredChampion:
    current = registry.by_alias(CHAMPION)
    if current is None:
        return _ScoredChampion(None, "no champion yet")
    version = str(current.version)
    try:
        model = registry.load(version)
    except ModelRefused as exc:
        refused = (
            f"champion v{version} cannot be loaded, so the candidate was not compared with it and is not "
            f"promoted: {exc}"
        )
        return _ScoredChampion(version, refused, refused=refused)
    try:
        scores, predictions = training.score(model, holdout, config)
    except (KeyError, ValueError) as exc:  # e.g. the feature columns changed since it was trained
        return _ScoredChampion(version, f"champion v{version} cannot score this holdout: {exc}")
    return _ScoredChampion(
        version, f"champion v{version} scored on the same holdout", scores=scores, predictions=predictions
    )
