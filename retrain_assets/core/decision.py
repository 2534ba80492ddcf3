"""The promotion decision, made once: the gates, and the :class:`EvaluationReport` that carries their verdict.

``evaluation_report`` builds the report (candidate and champion scored on the same holdout) and the report
decides; ``prod_model`` only acts on ``report.decision`` and records it. A decision is recorded where it
becomes final: by ``evaluation_report`` when the blocking floor stops the run (``prod_model`` never runs),
by ``prod_model`` otherwise, both through :func:`record`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core.names import COMPARISON_CHECK, MINIMUM_CHECK

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
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


def record(registry: "Registry", report: EvaluationReport) -> None:
    """Write the report's decision, its reason and the comparison onto the candidate's model version."""
    decision = report.decision
    registry.record_decision(report.candidate_version, decision.promote, decision.reason, report.comparison_record())
