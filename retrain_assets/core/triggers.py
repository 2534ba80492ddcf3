"""Whether a run retrains, and why: the trigger rules of ``retrain.yaml`` as pure functions.

A run is started by the Delta version sensor (``new_version``), the model-code sensor (``code_changed``,
``params_changed``), the live sensor (``live_performance``: the champion fell behind its holdout on labelled
production rows; ``prediction_drift``: its served scores or inputs drifted), the schedule (``schedule``), a
person (``manual``) or a backfill. It always validates the new batches; it trains a candidate only when a
trigger fires. Drift and a performance drop are measured on the batches the run accepted (non-blocking checks
on ``validated_features``) and fire whatever the volume rule says; a change of the model's code or params
fires once per data version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.monitoring import Finding

ALWAYS_RETRAIN = ("schedule", "manual", "backfill", "live_performance", "prediction_drift")


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

    def declined(self, why: str) -> "TriggerDecision":
        """The same triggers, not acted on, for ``why``."""
        return TriggerDecision(False, self.fired, (*self.reasons, why))


def decide_retrain(
    config: "RetrainConfig",
    trigger: str,
    has_champion: bool,
    new_rows: int,
    drift: Optional["Finding"] = None,
    performance: Optional["Finding"] = None,
    code_changes: Sequence[tuple[str, str]] = (),
    trigger_reason: Optional[str] = None,
) -> TriggerDecision:
    """Collect every trigger that fires; retrain when at least one does.

    Args:
        trigger: How the run started (run tag ``retrain/trigger``).
        has_champion: Whether a champion exists (without one, any validated data trains).
        new_rows: Validated rows that landed after the champion's data.
        drift: This run's drift finding, if it measured one.
        performance: This run's champion-performance finding, if it measured one.
        code_changes: ``(kind, message)`` of each way the champion was built from other code or params
            (:func:`code_change`), when nothing was built from the current ones on this data yet.
        trigger_reason: Why the run was started, when its starter said (run tag ``retrain/trigger_reason``).
    """
    rules = config.triggers
    fired: list[tuple[str, str]] = []
    if any(kind in ALWAYS_RETRAIN for kind in trigger.split(",")):  # a live run may name two triggers
        fired.append((trigger, f"{trigger} run" + (f": {trigger_reason}" if trigger_reason else "")))
    if not has_champion:
        fired.append(("bootstrap", "no champion yet"))
    if rules.drift.enabled and drift and drift.fired:
        fired.append(("drift", f"drift: {drift.message}"))
    if rules.performance.enabled and performance and performance.fired:
        fired.append(("performance", f"performance: {performance.message}"))
    fired.extend(code_changes)
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


def code_change(champion_tags: dict[str, str], params: str, source: str, tried: Optional[str]) -> list[tuple[str, str]]:
    """``(kind, message)`` for each way the champion was built differently from what the project holds now:
    other params (``params_changed``), other code (``code_changed``, by the hash of the code's files alone).
    None when ``tried`` names a version already built from the current code and params on this data (it lost:
    no retrain loop). A champion that recorded no hash (trained before code hashes) is not compared on it."""
    if tried is not None:
        return []
    changes = []
    recorded_params, recorded_source = champion_tags.get("params_hash"), champion_tags.get("source_hash")
    if recorded_params and recorded_params != params:
        changes.append(
            ("params_changed", f"params changed: the champion was trained with {recorded_params}, now {params}")
        )
    if recorded_source and recorded_source != source:
        changes.append(("code_changed", f"code changed: the champion was built from {recorded_source}, now {source}"))
    return changes
