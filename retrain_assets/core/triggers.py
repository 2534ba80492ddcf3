"""Whether a run retrains, and why: the trigger rules of ``retrain.yaml`` as one pure function.

A run is started by the Delta version sensor (``new_version``), the schedule (``schedule``), a person
(``manual``) or a backfill. It always validates the new batches; it trains a candidate only when a trigger
fires. Drift and a performance drop are measured on the batches the run accepted (non-blocking checks on
``validated_features``) and fire whatever the volume rule says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.monitoring import Finding

ALWAYS_RETRAIN = ("schedule", "manual", "backfill")


@dataclass(frozen=True)
class TriggerDecision:
    """``fired`` holds the kinds that fired (``bootstrap``, ``drift``, ``performance``, ``new_data`` or the
    trigger of an always-retrain run); ``reasons`` the sentences a person reads."""

    retrain: bool
    fired: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def decide_retrain(
    config: "RetrainConfig",
    trigger: str,
    has_champion: bool,
    new_rows: int,
    drift: Optional["Finding"] = None,
    performance: Optional["Finding"] = None,
) -> TriggerDecision:
    """Collect every trigger that fires; retrain when at least one does.

    Args:
        trigger: How the run started (run tag ``retrain/trigger``).
        has_champion: Whether a champion exists (without one, any validated data trains).
        new_rows: Validated rows that landed after the champion's data.
        drift: This run's drift finding, if it measured one.
        performance: This run's champion-performance finding, if it measured one.
    """
    rules = config.triggers
    fired: list[tuple[str, str]] = []
    if trigger in ALWAYS_RETRAIN:
        fired.append((trigger, f"{trigger} run"))
    if not has_champion:
        fired.append(("bootstrap", "no champion yet"))
    if rules.drift.enabled and drift and drift.fired:
        fired.append(("drift", f"drift: {drift.message}"))
    if rules.performance.enabled and performance and performance.fired:
        fired.append(("performance", f"performance: {performance.message}"))
    if rules.new_version.enabled and new_rows > 0 and new_rows >= rules.min_new_rows:
        fired.append(("new_data", f"new data: {new_rows} validated rows since the champion's data"))
    if fired:
        kinds, reasons = zip(*fired, strict=True)
        return TriggerDecision(True, kinds, reasons)
    if new_rows and rules.new_version.enabled:
        held = f"{new_rows} new rows since the champion's data, {rules.min_new_rows} needed"
    else:
        held = "no new validated rows since the champion's data"
    return TriggerDecision(False, (), (f"no trigger fired: {held}; no drift or performance drop",))
