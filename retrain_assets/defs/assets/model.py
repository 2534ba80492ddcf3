"""``candidate_model``: a scikit-learn Pipeline trained on the validated features, registered in MLflow."""

import datetime as dt

from dagster import AssetExecutionContext, Failure, JsonMetadataValue, MetadataValue, Output, asset

from retrain_assets.core import batches, delta, training
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.names import CHAMPION, DRIFT_CHECK, FIRED_TAG, PERFORMANCE_CHECK, RUN_REASON_TAG, TRIGGER_TAG
from retrain_assets.core.registry import LoggedModel, code_version
from retrain_assets.core.triggers import decide_retrain
from retrain_assets.defs.checks import evaluated_in_this_run
from retrain_assets.defs.resources import RetrainProject


@asset(group_name="retrain", kinds={"scikitlearn", "mlflow"}, code_version="1", output_required=False)
def candidate_model(context: AssetExecutionContext, project: RetrainProject, validated_features: delta.TableRef):
    """Decides whether this run retrains (see ``triggers:`` in retrain.yaml; the reasons become the run tag
    ``retrain/reason`` and the model's ``trigger_reason``, which its ModelRef carries to the report). If so,
    trains the configured Pipeline (preprocessing inside) with a fixed seed on the stable train split, logs
    params, metrics, provenance tags and a drift reference profile to MLflow and registers it with the alias
    ``challenger``. If not, it yields nothing and the run ends here."""
    if validated_features is None:
        raise Failure("candidate_model: validated_features is empty; no batch has passed validation yet")
    config = project.load()
    registry = project.registry(config)
    champion = registry.by_alias(CHAMPION)
    champion_data = int(champion.tags["delta_version"]) if champion is not None else None
    trigger = context.run.tags.get(TRIGGER_TAG, "manual")
    decision = decide_retrain(
        config,
        trigger,
        has_champion=champion is not None,
        new_rows=batches.accepted_rows_after(config, champion_data),
        drift=_this_run_check(context, DRIFT_CHECK),
        performance=_this_run_check(context, PERFORMANCE_CHECK),
    )
    run_tags = {RUN_REASON_TAG: decision.summary[:4000], FIRED_TAG: ",".join(decision.fired) or "none"}
    context.instance.add_run_tags(context.run_id, run_tags)
    context.log.info(("retraining: " if decision.retrain else "not retraining: ") + decision.summary)
    if not decision.retrain:
        return
    send_alert(
        config,
        "retrain_triggered",
        f"retraining on raw_data v{validated_features.raw_version}: {decision.summary}",
        {"trigger": trigger, "delta_version": validated_features.raw_version},
    )

    frame = training.read_window(validated_features, config)
    train_rows, holdout = training.split(frame, config)
    pipeline = training.train(train_rows, config)
    metrics = training.evaluate(pipeline, holdout, config)
    fit = training.evaluate(pipeline, training.sample(train_rows, config), config)  # overfitting, not decisions
    metrics.update({f"train_{k}": v for k, v in fit.items()})
    span = training.data_range(frame, config)
    tags = {
        "delta_version": str(validated_features.raw_version),
        "features_version": str(validated_features.version),
        "code_version": code_version(),
        "params_hash": training.params_hash(config),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": str(len(frame)),
        "rows_train": str(len(train_rows)),
        "rows_holdout": str(len(holdout)),
        "trigger": trigger,
        "trigger_reason": decision.summary[:4000],
        "dagster_run_id": context.run_id,
        **({"data_min": span["min"], "data_max": span["max"]} if span else {}),
    }
    params = {"estimator": config.model.estimator, "seed": config.model.seed,
              "holdout_fraction": config.model.holdout_fraction, **config.model.params}
    from retrain_assets.core.drift import reference_profile

    features = config.data.features
    profile = reference_profile(train_rows, features, bins=config.triggers.drift.bins, seed=config.model.seed)
    ref = registry.log_candidate(LoggedModel(pipeline, frame[list(features)].head(0), params, metrics, tags, profile))
    primary = config.promotion.metric
    yield Output(
        ref,
        metadata={
            "model_version": ref.version,
            "mlflow_run_id": ref.run_id,
            "model_uri": ref.uri,
            f"holdout_{primary}": metrics[primary],
            "metrics": MetadataValue.json(metrics),
            "delta_version": validated_features.raw_version,
            "params_hash": tags["params_hash"],
            "code_version": tags["code_version"],
            "rows_train": len(train_rows),
            "rows_holdout": len(holdout),
            "data_range": JsonMetadataValue(span),  # MetadataValue.json takes no None
            "trigger_reason": decision.summary,
        },
    )


def _this_run_check(context: AssetExecutionContext, name: str):
    """``(failed, message)`` of a ``validated_features`` check evaluated in this run, else ``None``."""
    evaluation = evaluated_in_this_run(context, "validated_features", name)
    return None if evaluation is None else (not evaluation.passed, evaluation.description or "")
