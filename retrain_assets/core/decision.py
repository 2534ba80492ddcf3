"""The promotion decision, made once: the gates, and the :class:`EvaluationReport` that carries their verdict.

``evaluation_report`` builds the report (candidate and champion scored on the same holdout) and the report
decides; ``prod_model`` only acts on ``report.decision`` and records it. A decision is recorded where it
becomes final: by ``evaluation_report`` when the blocking floor stops the run (``prod_model`` never runs),
by ``prod_model`` otherwise, both through :func:`record`.

With ``promotion.live_check`` a holdout winner must also hold up on live traffic (:func:`judge_live`). That
evidence accrues after the evaluation, while the challenger is scored in shadow, so ``prod_model`` completes
the report's decision with it (:meth:`EvaluationReport.with_live`): when it applies it first the winner stays
the challenger, awaiting; the ``live_check`` run applies it again once the rows are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core.names import COMPARISON_CHECK, LIVE_CHECK_TAG, MINIMUM_CHECK

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.live import PairedDay
    from retrain_assets.core.registry import Registry


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def meets_minimum(candidate: dict[str, float], config: "RetrainConfig") -> Decision:
    """The floor (a ceiling for error metrics) of ``promotion.minimum``; passes when none is set."""
    rule, name = config.promotion, config.promotion.metric
    value = candidate.get(name, math.nan)
    if math.isnan(value):
        return Decision(False, f"candidate {name} is undefined on the holdout")
    if rule.minimum is not None and (value < rule.minimum if config.higher_is_better else value > rule.minimum):
        bound = "minimum" if config.higher_is_better else "maximum"
        return Decision(False, f"candidate {name} {value:.4f} misses the {bound} {rule.minimum:.4f}")
    return Decision(True, f"candidate {name} {value:.4f} meets the minimum {rule.minimum}")


def beats_champion(
    candidate: dict[str, float], champion: Optional[dict[str, float]], config: "RetrainConfig"
) -> Decision:
    """Better than the champion by at least ``promotion.margin`` on the same holdout; a tie never is."""
    rule, name = config.promotion, config.promotion.metric
    value = candidate.get(name, math.nan)
    if champion is None:
        return Decision(True, f"no champion yet; candidate {name} {value:.4f}")
    best = champion.get(name, math.nan)
    gain = (value - best) if config.higher_is_better else (best - value)
    if math.isnan(best) or (gain > 0 and gain >= rule.margin):
        return Decision(
            True, f"candidate {name} {value:.4f} beats champion {best:.4f} by {gain:+.4f} (margin {rule.margin})"
        )
    return Decision(
        False,
        f"candidate {name} {value:.4f} does not beat champion {best:.4f} by the margin {rule.margin} ({gain:+.4f})",
    )


def decide(candidate: dict[str, float], champion: Optional[dict[str, float]], config: "RetrainConfig") -> Decision:
    """Promote when the candidate meets the minimum and (if there is a champion) beats it by the margin."""
    floor = meets_minimum(candidate, config)
    if not floor.promote:
        return floor
    comparison = beats_champion(candidate, champion, config)
    if comparison.promote and champion is None:
        return Decision(True, f"no champion yet; {floor.reason}")
    return comparison


AWAITING, PASSED, FAILED = "awaiting", "passed", "failed"  # the states of a live check


@dataclass(frozen=True)
class LiveVerdict:
    """``promotion.live_check`` on the champion and the challenger's paired live rows: ``awaiting`` (too few
    rows, or the metric undefined on them), ``passed`` or ``failed``."""

    status: str
    reason: str
    rows: int
    champion: dict[str, float]
    challenger: dict[str, float]


def judge_live(pair: "PairedDay", config: "RetrainConfig") -> LiveVerdict:
    """Passes when the challenger's live metric falls at most ``max_drop`` short of the champion's, over at
    least ``min_rows`` labelled request rows both answered."""
    rule, name = config.promotion.live_check, config.promotion.metric
    assert rule is not None
    who = f"challenger v{pair.challenger_version} against champion v{pair.champion_version}"
    if pair.rows < rule.min_rows:
        reason = (
            f"awaiting the live check: {who} on {pair.rows} paired labelled rows, {rule.min_rows} needed "
            "(promotion.live_check.min_rows)"
        )
        return LiveVerdict(AWAITING, reason, pair.rows, pair.champion, pair.challenger)
    mine, theirs = pair.challenger.get(name, math.nan), pair.champion.get(name, math.nan)
    if math.isnan(mine) or math.isnan(theirs):
        reason = f"awaiting the live check: live {name} is undefined on the {pair.rows} paired rows of {who}"
        return LiveVerdict(AWAITING, reason, pair.rows, pair.champion, pair.challenger)
    drop = (theirs - mine) if config.higher_is_better else (mine - theirs)
    said = f"live {name} {mine:.4f} against {theirs:.4f} on {pair.rows} paired rows ({who})"
    if drop > rule.max_drop:
        reason = f"fails the live check: {said}, {drop:.4f} worse, more than max_drop {rule.max_drop}"
        return LiveVerdict(FAILED, reason, pair.rows, pair.champion, pair.challenger)
    return LiveVerdict(PASSED, f"passes the live check: {said}", pair.rows, pair.champion, pair.challenger)


@dataclass(frozen=True)
class EvaluationReport:
    """Candidate and champion scored on the same holdout, the two gates and the one decision they make.

    A champion whose artifact the registry refused (``champion_refused``) fails the comparison: nobody
    checked the margin, so nothing is promoted past it."""

    candidate_version: str
    champion_version: Optional[str]
    champion_note: str
    champion_refused: Optional[str]
    delta_version: int
    features_version: int
    holdout_rows: int
    metric: str
    higher_is_better: bool
    minimum: Optional[float]
    margin: float
    candidate: dict[str, float]
    champion: Optional[dict[str, float]]
    floor: Decision
    comparison: Decision
    decision: Decision
    trigger_reason: str
    created_at: str

    @classmethod
    def judge(cls, config: "RetrainConfig", **scored: Any) -> "EvaluationReport":
        """Apply the gates of ``promotion:`` to the scores; ``scored`` holds every field but the verdicts and
        the promotion settings."""
        candidate, champion, refused = scored["candidate"], scored["champion"], scored["champion_refused"]
        floor = meets_minimum(candidate, config)
        if refused is not None:
            comparison = Decision(False, refused)
            decision = floor if not floor.promote else comparison
        else:
            comparison = beats_champion(candidate, champion, config)
            decision = decide(candidate, champion, config)
        rule = config.promotion
        return cls(
            **scored,
            metric=rule.metric,
            higher_is_better=config.higher_is_better,
            minimum=rule.minimum,
            margin=rule.margin,
            floor=floor,
            comparison=comparison,
            decision=decision,
        )

    def with_live(self, live: Optional[LiveVerdict]) -> Decision:
        """The decision once the live check (when it applies) has spoken: a holdout winner is promoted only
        when it passed; awaiting or failed, the champion stays."""
        if live is None or not self.decision.promote:
            return self.decision
        return Decision(live.status == PASSED, f"{self.decision.reason}; {live.reason}")

    @property
    def gates(self) -> dict[str, list[Any]]:
        """Each gate's ``[passed, reason]`` by its check name."""
        return {
            MINIMUM_CHECK: [self.floor.promote, self.floor.reason],
            COMPARISON_CHECK: [self.comparison.promote, self.comparison.reason],
        }

    def as_dict(self) -> dict[str, Any]:
        """The report as ``evaluation-model-v<N>.json`` stores it and the HTML page and the CLI read it."""
        fields = (
            "candidate_version",
            "champion_version",
            "champion_note",
            "champion_refused",
            "delta_version",
            "features_version",
            "holdout_rows",
            "metric",
            "higher_is_better",
            "minimum",
            "margin",
            "candidate",
            "champion",
        )
        return {
            **{name: getattr(self, name) for name in fields},
            "gates": self.gates,
            "decision": {"promoted": self.decision.promote, "reason": self.decision.reason},
            "trigger_reason": self.trigger_reason,
            "created_at": self.created_at,
        }

    def comparison_record(self) -> dict[str, Any]:
        """What goes on the candidate's model version beside the decision: whom it was compared with, and how."""
        return {
            "compared_with": self.champion_version or "none",
            **{f"candidate_{k}": v for k, v in self.candidate.items()},
            **{f"champion_{k}": v for k, v in (self.champion or {}).items()},
        }


def record(registry: "Registry", report: EvaluationReport, live: Optional[LiveVerdict] = None) -> Decision:
    """Write the decision (:meth:`EvaluationReport.with_live`), its reason and the comparison onto the
    candidate's model version, with the live check's state when it applied; returns that decision."""
    decision = report.with_live(live)
    extra = report.comparison_record()
    if live is not None and report.decision.promote:
        extra.update({LIVE_CHECK_TAG: live.status, "live_rows": live.rows})
        extra.update({f"live_champion_{name}": value for name, value in live.champion.items()})
        extra.update({f"live_challenger_{name}": value for name, value in live.challenger.items()})
    registry.record_decision(report.candidate_version, decision.promote, decision.reason, extra)
    return decision
