"""``candidate_model``: a scikit-learn Pipeline trained on the validated features, registered in MLflow."""

import datetime as dt

from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from retrain_assets import lake, training
from retrain_assets.registry import ModelRef, code_version
from retrain_assets.resources import RetrainProject


@asset(group_name="retrain", kinds={"scikitlearn", "mlflow"}, code_version="1")
def candidate_model(context: AssetExecutionContext, project: RetrainProject, validated_features: lake.TableRef) -> Output[ModelRef]:
    """Trains the configured Pipeline (preprocessing inside) with a fixed seed on the stable train split,
    logs params, metrics and provenance tags to MLflow, and registers it with the alias ``challenger``."""
    if validated_features is None:
        raise Failure("candidate_model: validated_features is empty; no batch has passed validation yet")
    config = project.load()
    frame = lake.read_table(validated_features.uri, validated_features.version, columns=list(config.data.columns))
    train_rows, holdout = training.split(frame, config)
    pipeline = training.train(train_rows, config)
    metrics = training.evaluate(pipeline, holdout, config)
    metrics.update({f"train_{k}": v for k, v in training.evaluate(pipeline, train_rows, config).items()})
    span = training.data_range(frame, config)
    tags = {
        "delta_version": str(validated_features.raw_version),
        "features_version": str(validated_features.version),
        "code_version": code_version(),
        "params_hash": training.params_hash(config),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows_train": str(len(train_rows)),
        "rows_holdout": str(len(holdout)),
        "dagster_run_id": context.run_id,
        **({"data_min": span["min"], "data_max": span["max"]} if span else {}),
    }
    params = {"estimator": config.model.estimator, "seed": config.model.seed,
              "holdout_fraction": config.model.holdout_fraction, **config.model.params}
    example = frame[list(config.data.features)].head(5)
    ref = project.registry(config).log_candidate(pipeline, example, params, metrics, tags)
    primary = config.promotion.metric
    return Output(
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
            "data_range": MetadataValue.json(span),
        },
    )
