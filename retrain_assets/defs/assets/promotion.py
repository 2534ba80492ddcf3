"""``prod_model``: the champion. The candidate takes the ``champion`` alias only when it passes every gate."""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DataVersion,
    Failure,
    JsonMetadataValue,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core.alerts import send_alert
from retrain_assets.core.decision import EvaluationReport, record
from retrain_assets.core.names import CHAMPION, FRESHNESS_CHECK, RECORD_TAGS
from retrain_assets.defs.checks import FRESHNESS_CHECKS
from retrain_assets.defs.resources import RetrainProject


@asset(group_name="retrain", kinds={"mlflow"}, code_version="1", check_specs=FRESHNESS_CHECKS)
def prod_model(project: RetrainProject, evaluation_report: EvaluationReport):
    """Acts on the decision of ``evaluation_report``: the candidate takes the ``champion`` alias when it met
    the minimum and beat the champion by the margin on the same holdout (or there was no champion), and the
    replaced champion keeps the alias ``previous_champion``. Otherwise the champion stays, and so it does
    when the champion's artifact was refused as untrusted. The decision, its reason and the comparison go
    on the candidate's model version (once, :func:`~retrain_assets.core.decision.record`) and on this
    materialization with the full run record (Delta version, data range, rows, params hash, code version,
    trigger reason). Losing is a normal outcome: the run succeeds either way. Re-executed after a crash that
    came after the alias moved, it finds the candidate already champion and completes the same promotion
    (no second move)."""
    config = project.load()
    registry = project.registry(config)
    current = registry.by_alias(CHAMPION)
    report = evaluation_report
    candidate, compared = report.candidate_version, report.champion_version
    current_version = str(current.version) if current is not None else None
    if current_version not in (compared, candidate):
        raise Failure(
            f"prod_model: the champion moved from v{compared} to v{current_version} "
            "since evaluation_report ran; materialize evaluation_report again"
        )
    promote, reason = report.decision.promote, report.decision.reason
    record(registry, report)
    if promote:
        registry.promote(candidate)
    champion = candidate if promote else compared
    send_alert(
        config,
        "promoted" if promote else "rejected",
        f"candidate v{candidate} {'promoted' if promote else 'rejected'}: {reason}",
        {"candidate_version": candidate, "champion_version": champion, "delta_version": report.delta_version},
    )
    candidate_tags = registry.client.get_model_version(registry.name, candidate).tags
    yield Output(
        {"champion_version": champion, "promoted": promote, "reason": reason},
        data_version=DataVersion(f"model-v{champion}" if champion else "no-champion"),
        metadata={
            "champion_version": champion,
            "promoted": promote,
            "reason": reason,
            "candidate_version": candidate,
            "previous_champion": compared,
            "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "candidate_metrics": MetadataValue.json(report.candidate),
            "champion_metrics": JsonMetadataValue(report.champion),  # MetadataValue.json takes no None
            **{key: candidate_tags.get(key) for key in RECORD_TAGS},
        },
    )
    yield _freshness(config, registry)


def _freshness(config, registry) -> AssetCheckResult:
    """Warn when the champion was promoted longer ago than ``promotion.max_age_days``."""
    champion = registry.by_alias(CHAMPION)
    limit = config.promotion.max_age_days
    if champion is None or limit is None:
        return AssetCheckResult(check_name=FRESHNESS_CHECK, passed=True, description="no champion or no age limit")
    since = champion.tags.get("promoted_at") or champion.tags.get("trained_at")
    age = (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(since)).total_seconds() / 86400
    return AssetCheckResult(
        check_name=FRESHNESS_CHECK,
        passed=age <= limit,
        severity=AssetCheckSeverity.WARN,
        description=f"champion v{champion.version} promoted {age:.1f} days ago (limit {limit})",
        metadata={"age_days": age},
    )
