"""``prod_model``: the champion. The candidate takes the ``champion`` alias only when it passes every gate."""

import datetime as dt
from typing import Optional

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
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.decision import AWAITING, EvaluationReport, LiveVerdict, judge_live, record
from retrain_assets.core.names import CHAMPION, FRESHNESS_CHECK, LIVE_CHECK_TAG, RECORD_TAGS
from retrain_assets.core.registry import Registry
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
    (no second move).

    With ``promotion.live_check`` a holdout winner is promoted only once it also held up on live traffic
    (:func:`~retrain_assets.core.decision.judge_live`): at first it has served nothing, so it stays the
    ``challenger``, scored in shadow and tagged ``live_check=awaiting``; the ``live_check`` job runs this
    asset alone on the stored report once ``live_performance`` counts enough paired rows, and the same rule
    promotes it or rejects it."""
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
    live = _live_check(config, registry, report, current_version)
    decided = record(registry, report, live)
    promote, reason = decided.promote, decided.reason
    if promote:
        registry.promote(candidate)
    champion = candidate if promote else compared
    verdict = "promoted" if promote else "held as challenger" if live and live.status == AWAITING else "rejected"
    send_alert(
        config,
        "promoted" if promote else "rejected",
        f"candidate v{candidate} {verdict}: {reason}",
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
            LIVE_CHECK_TAG: live.status if live is not None else "not applied",
            **{key: candidate_tags.get(key) for key in RECORD_TAGS},
        },
    )
    yield _freshness(config, registry)


def _live_check(
    config: RetrainConfig, registry: Registry, report: EvaluationReport, current: Optional[str]
) -> Optional[LiveVerdict]:
    """``promotion.live_check`` on the holdout winner's shadow rows paired with the champion's; ``None`` where
    it does not apply: off, no holdout win, no champion to pair with, or the candidate already champion (a
    re-execution after the alias moved)."""
    if config.promotion.live_check is None or not report.decision.promote or report.champion_version is None:
        return None
    if current == report.candidate_version:
        return None
    from retrain_assets.core.live import paired_rows

    return judge_live(paired_rows(config, int(report.champion_version), int(report.candidate_version)), config)


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
