"""``prod_model``: the champion. The candidate takes the ``champion`` alias only when it passes every gate."""

import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core import training
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.names import CHAMPION, FRESHNESS_CHECK, RECORD_TAGS
from retrain_assets.defs.checks import FRESHNESS_CHECKS
from retrain_assets.defs.resources import RetrainProject


@asset(group_name="retrain", kinds={"mlflow"}, code_version="1", check_specs=FRESHNESS_CHECKS)
def prod_model(context: AssetExecutionContext, project: RetrainProject, evaluation_report: dict):
    """Promotes the candidate when it meets the minimum and beats the champion by the margin on the same
    holdout (or there is no champion); the replaced champion keeps the alias ``previous_champion``.
    Otherwise the champion stays, and so it does when the champion's artifact was refused as untrusted
    (``champion_refused``: there was no honest comparison to promote on). The decision, its reason and the
    full run record (metrics of both, Delta version, data range, rows, params hash, code version, trigger
    reason) go on the candidate's model version and on this materialization. Losing is a normal outcome: the
    run succeeds either way. Re-executed after a crash that came after the alias moved, it finds the
    candidate already champion and completes the same promotion (no second move)."""
    config = project.load()
    registry = project.registry(config)
    current = registry.by_alias(CHAMPION)
    candidate, compared = evaluation_report["candidate_version"], evaluation_report["champion_version"]
    current_version = str(current.version) if current is not None else None
    if current_version not in (compared, candidate):
        raise Failure(
            f"prod_model: the champion moved from v{compared} to v{current_version} "
            "since evaluation_report ran; materialize evaluation_report again"
        )
    refused = evaluation_report.get("champion_refused")  # a champion that would not load: never promote past it
    if refused:
        decision = training.Decision(False, refused)
    else:
        decision = training.decide(evaluation_report["candidate"], evaluation_report["champion"], config)
    record = {
        "compared_with": compared or "none",
        **{f"candidate_{k}": v for k, v in evaluation_report["candidate"].items()},
        **{f"champion_{k}": v for k, v in (evaluation_report["champion"] or {}).items()},
    }
    registry.record_decision(candidate, decision.promote, decision.reason, record)
    if decision.promote:
        registry.promote(candidate)
    champion = candidate if decision.promote else compared
    send_alert(
        config,
        "promoted" if decision.promote else "rejected",
        f"candidate v{candidate} {'promoted' if decision.promote else 'rejected'}: {decision.reason}",
        {
            "candidate_version": candidate,
            "champion_version": champion,
            "delta_version": evaluation_report["delta_version"],
        },
    )
    candidate_tags = registry.client.get_model_version(registry.name, candidate).tags
    yield Output(
        {"champion_version": champion, "promoted": decision.promote, "reason": decision.reason},
        data_version=DataVersion(f"model-v{champion}" if champion else "no-champion"),
        metadata={
            "champion_version": champion,
            "promoted": decision.promote,
            "reason": decision.reason,
            "candidate_version": candidate,
            "previous_champion": compared,
            "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "candidate_metrics": MetadataValue.json(evaluation_report["candidate"]),
            "champion_metrics": MetadataValue.json(evaluation_report["champion"]),
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
