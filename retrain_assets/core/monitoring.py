"""The champion watched on new data: feature drift against its training reference, and its score.

Both are measured on the batches a run accepted and reported as non-blocking checks on
``validated_features``; a failing one is a retrain trigger (see :mod:`retrain_assets.core.triggers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core import training
from retrain_assets.core.names import DRIFT_CHECK, PERFORMANCE_CHECK

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.registry import Registry


@dataclass(frozen=True)
class Finding:
    """One monitoring check's result: ``fired`` is True when it asks for a retrain."""

    fired: bool
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)


def watch_champion(
    config: "RetrainConfig", registry: Optional["Registry"], accepted: Optional["pd.DataFrame"]
) -> dict[str, Finding]:
    """Both findings for the rows a run accepted; neither fires without accepted rows or without a champion."""
    from retrain_assets.core.names import CHAMPION

    names = (DRIFT_CHECK, PERFORMANCE_CHECK)
    if accepted is None or registry is None:
        return {name: Finding(False, "no batch accepted in this run: nothing to compare") for name in names}
    champion = registry.by_alias(CHAMPION)
    if champion is None:
        return {name: Finding(False, "no champion yet: nothing to compare with") for name in names}
    return {
        DRIFT_CHECK: drift(config, registry, champion, accepted),
        PERFORMANCE_CHECK: performance(config, registry, champion, accepted),
    }


def drift(config: "RetrainConfig", registry: "Registry", champion: "ModelVersion", batch: "pd.DataFrame") -> Finding:
    """Per-feature PSI/KS of ``batch`` against the reference profile logged with the champion."""
    from retrain_assets.core.drift import drift_summary, score_drift

    profile = registry.reference_profile(champion)
    if profile is None:
        return Finding(False, f"champion v{champion.version} has no reference profile; drift not measured")
    rules = config.triggers.drift
    scores = score_drift(
        profile,
        batch,
        psi_threshold=rules.psi,
        ks_threshold=rules.ks,
        ks_pvalue=rules.ks_pvalue,
        redact=config.validation.redact_samples,
    )
    drifted, message = drift_summary(scores)
    return Finding(drifted, f"{message} (vs champion v{champion.version}, {len(batch)} new rows)", {"scores": scores})


def performance(
    config: "RetrainConfig", registry: "Registry", champion: "ModelVersion", batch: "pd.DataFrame"
) -> Finding:
    """The champion scored on the new labelled rows (a seeded sample of at most ``training.SAMPLE_ROWS``),
    against the floor and its own recorded holdout score."""
    metric = config.promotion.metric
    batch = training.sample(batch, config)
    value = training.evaluate(registry.load(str(champion.version)), batch, config)[metric]
    recorded = registry.metrics(champion).get(metric, math.nan)
    base = f"champion v{champion.version} {metric} {value:.4f} on {len(batch)} new rows (holdout {recorded:.4f})"
    return judge_performance(config, value, recorded, base, "this batch")


def judge_performance(config: "RetrainConfig", value: float, recorded: float, base: str, rows: str) -> Finding:
    """The performance rule of ``triggers.performance`` for the champion's ``value`` of ``promotion.metric``
    against its ``recorded`` holdout value: past the floor, or more than ``max_drop`` worse. One rule for new
    batches and for live labelled rows (:mod:`retrain_assets.core.live`); ``base`` opens the message and
    ``rows`` names what it was measured on."""
    rules, metric = config.triggers.performance, config.promotion.metric
    higher = config.higher_is_better
    drop = (recorded - value) if higher else (value - recorded)
    metadata = {metric: value, f"holdout_{metric}": recorded, "drop": drop}
    if math.isnan(value):
        return Finding(False, f"{base}: undefined on {rows}", metadata)
    if rules.floor is not None and (value < rules.floor if higher else value > rules.floor):
        return Finding(True, f"{base} is past the floor {rules.floor}", metadata)
    if rules.max_drop is not None and drop > rules.max_drop:
        return Finding(True, f"{base} dropped {drop:.4f} > {rules.max_drop}", metadata)
    return Finding(False, base, metadata)
