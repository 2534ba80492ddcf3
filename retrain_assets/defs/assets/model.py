"""``candidate_model``: a scikit-learn Pipeline trained on the validated features, registered in MLflow."""

import datetime as dt
from typing import Any, Optional

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    Failure,
    JsonMetadataValue,
    MetadataValue,
    Output,
    asset,
)

from retrain_assets.core import batches, training
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import CHAMPION, TRIGGER_REASON_TAG, TRIGGER_TAG
from retrain_assets.core.registry import ModelRef
from retrain_assets.core.triggers import TriggerDecision, code_change, decide_retrain
from retrain_assets.defs.resources import RetrainProject

CANDIDATE_MODEL = "candidate_model"


@asset(group_name="retrain", kinds={"scikitlearn", "mlflow"}, code_version="1", output_required=False)
def candidate_model(
    context: AssetExecutionContext, project: RetrainProject, validated_features: batches.ValidatedBatches
):
    """Decides whether this run retrains (see ``triggers:`` in retrain.yaml), from how the run started (its
    ``retrain/trigger`` tag, with ``retrain/trigger_reason`` when its starter gave one) and what
    ``validated_features`` found; the decision is recorded as an observation of this asset
    (:func:`retrain_decision` reads it back) and becomes the model's ``trigger_reason``, which its ModelRef
    carries to the report. If it retrains, it trains the configured
    Pipeline (preprocessing inside) with a fixed seed on the stable train split, logs params, metrics,
    provenance tags and a drift reference profile to MLflow and registers it with the alias ``challenger``.
    If not, it yields nothing and the run ends here.

    The run cache (as DVC's): when a registered version was already built from this features version with
    this code hash (which holds the params and seed), it is reused: ``challenger`` points at it, it is
    recorded as reused, and nothing is trained. When that version is the champion itself, nothing runs."""
    features = validated_features.features
    if features is None:
        raise Failure("candidate_model: validated_features is empty; no batch has passed validation yet")
    config = project.load()
    registry = project.registry(config)
    champion = registry.by_alias(CHAMPION)
    champion_data = int(champion.tags["delta_version"]) if champion is not None else None
    trigger = context.run_tags.get(TRIGGER_TAG, "manual")
    code = training.model_code(config)
    # the run cache: a model built from this features version with this code, params and seed
    cached = registry.trained_with(code.code_hash, features.version)
    changed = []
    if champion is not None:
        tried = str(cached.version) if cached else None
        changed = code_change(champion.tags, code.params_hash, code.source_hash, tried)
    decision = decide_retrain(
        config,
        trigger,
        has_champion=champion is not None,
        new_rows=batches.accepted_rows_after(config, champion_data),
        drift=validated_features.drift,
        performance=validated_features.performance,
        code_changes=changed,
        trigger_reason=context.run_tags.get(TRIGGER_REASON_TAG),
    )
    rebuilt = str(cached.version) if cached is not None else None
    if decision.retrain and champion is not None and rebuilt == str(champion.version):
        decision = decision.declined(
            f"but the champion v{rebuilt} was built from this very data (validated_features "
            f"v{features.version}) with this code and params, so a retrain would rebuild it: nothing to do"
        )
    reuse = cached if decision.retrain else None
    recorded = {
        **_decision_metadata(decision),
        "code_hash": code.code_hash,
        "params_hash": code.params_hash,
        "run_cache": f"reused v{reuse.version}" if reuse is not None else "miss",
    }
    context.log_event(AssetObservation(asset_key=CANDIDATE_MODEL, metadata=recorded))
    doing = "not retraining" if not decision.retrain else (f"reusing v{reuse.version}" if reuse else "retraining")
    context.log.info(f"{doing}: {decision.summary}")
    if not decision.retrain:
        return
    if reuse is not None:
        ref = registry.reuse_candidate(reuse, context.run_id, decision.summary)
        yield _model_output(ref, registry.metrics(reuse), reuse.tags, config, reused=True)
        return
    send_alert(
        config,
        "retrain_triggered",
        f"retraining on raw_data v{features.raw_version}: {decision.summary}",
        {"trigger": trigger, "delta_version": features.raw_version},
    )
    fitted = training.fit_and_record(lambda: training.read_window(features, config), config, features.raw_version, code)
    logged = fitted.logged
    fit = training.evaluate(logged.pipeline, fitted.train_sample, config)  # overfitting
    logged.metrics.update({f"train_{k}": v for k, v in fit.items()})
    logged.tags.update(
        {
            "features_version": str(features.version),
            "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rows_train": str(fitted.train_count),
            "rows_holdout": str(len(fitted.holdout)),
            "trigger": trigger,
            "trigger_reason": decision.summary[:4000],
            "dagster_run_id": context.run_id,
        }
    )
    ref = registry.log_candidate(logged)
    trained = {
        "code_version": logged.tags["code_version"],
        "rows_train": fitted.train_count,
        "rows_holdout": len(fitted.holdout),
        "data_range": JsonMetadataValue(fitted.span),  # .json takes no None
    }
    yield _model_output(ref, logged.metrics, logged.tags, config, reused=False, **trained)


def _model_output(
    ref: ModelRef, metrics: dict[str, float], tags: dict[str, str], config: RetrainConfig, reused: bool, **more: Any
) -> Output:
    """The asset's output: the registered version with its record; ``reused`` when the run cache supplied it."""
    primary = config.promotion.metric
    return Output(
        ref,
        metadata={
            "model_version": ref.version,
            "mlflow_run_id": ref.run_id,
            "model_uri": ref.uri,
            "reused": reused,
            f"holdout_{primary}": metrics.get(primary, float("nan")),
            "metrics": MetadataValue.json(metrics),
            "delta_version": int(tags["delta_version"]),
            "params_hash": tags.get("params_hash", ""),
            "code_hash": tags.get("code_hash", ""),
            "trigger_reason": ref.trigger_reason,
            **more,
        },
    )


def _decision_metadata(decision: TriggerDecision) -> dict[str, Any]:
    return {"retrain": decision.retrain, "fired": ",".join(decision.fired) or "none", "reason": decision.summary}


def latest_decision(instance: DagsterInstance) -> Optional[dict[str, Any]]:
    """The newest decision ``candidate_model`` recorded in any run, or ``None`` before the first."""
    records = instance.fetch_observations(AssetKey(CANDIDATE_MODEL), limit=1).records
    observation = records[0].asset_observation if records else None
    return {key: value.value for key, value in observation.metadata.items()} if observation else None


def retrain_decision(instance: DagsterInstance, run: DagsterRun) -> Optional[dict[str, Any]]:
    """What ``candidate_model`` decided in ``run`` or, for a run re-executed from a later step, in the run it
    re-executes: ``{"retrain", "fired", "reason", "code_hash", "params_hash"}``, or ``None`` when no run of
    the lineage got that far."""
    for run_id in dict.fromkeys(r for r in (run.run_id, run.parent_run_id, run.root_run_id) if r):
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION):
            observation = entry.asset_observation
            if observation is not None and observation.asset_key == AssetKey(CANDIDATE_MODEL):
                return {key: value.value for key, value in observation.metadata.items()}
    return None
