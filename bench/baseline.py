"""The bare script the platform is compared with: pandas and scikit-learn only, no Dagster, Delta, GE or MLflow.

It does what a retrain cycle does for one new batch, with the same rules and the same model:

read    the previously accepted data and the new batch from their Parquet files;
validate the new batch with pandas checks equivalent to the five blocking checks built from ``retrain.yaml``
        (schema and dtypes, required values, numeric ranges, category domains and target classes, class balance
        and row count);
train   ``retrain_assets.core.training.build_pipeline(config)`` (plain scikit-learn: impute, scale, one-hot, logistic
        regression) on the train split, with the same id-hash holdout rule;
evaluate candidate and previous model (a joblib file) on the same holdout with the same four metrics;
decide  promote when the candidate meets the minimum and beats the previous model by the margin, and write the
        winner with joblib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics

from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.training import build_pipeline

HASH_BUCKETS = 10_000


def validate(frame: pd.DataFrame, config: RetrainConfig) -> tuple[list[str], list[str]]:
    """The hard rules and the expected values as plain pandas: the failures (empty when the batch passes)
    and the warnings."""
    data, rules = config.data, config.validation
    failures: list[str] = []
    warnings: list[str] = []
    if set(frame.columns) != set(data.columns):
        return [f"schema: columns {sorted(frame.columns)} != {sorted(data.columns)}"]
    for name, kind in data.columns.items():
        series = frame[name]
        ok = {
            "int": pd.api.types.is_integer_dtype(series) or pd.api.types.is_float_dtype(series),
            "float": pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series),
            "bool": pd.api.types.is_bool_dtype(series),
            "timestamp": pd.api.types.is_datetime64_any_dtype(series),
        }.get(kind)
        if ok is None:  # category, string: every non-null value is a str
            ok = pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
        if not ok:
            failures.append(f"schema: {name} is not {kind}")
    for name in data.columns:
        rule = rules.columns.get(name)
        if (name == data.target or (rule is not None and not rule.nullable)) and frame[name].isna().any():
            failures.append(f"required: {name} has nulls")
    for name, rule in rules.columns.items():
        values = frame[name].dropna()
        expected = (rule.expected.min, rule.expected.max) if rule.expected else (None, None)
        for kind, low, high in (("range", rule.hard_min, rule.hard_max), ("expected", *expected)):
            if low is not None and (values < low).any() or high is not None and (values > high).any():
                (failures if kind == "range" else warnings).append(f"{kind}: {name} outside [{low}, {high}]")
        if rule.domain is not None and not values.isin(rule.domain).all():
            (failures if rule.closed else warnings).append(f"domain: {name} outside {rule.domain}")
    target = frame[data.target].dropna()
    if rules.target_classes is not None:
        if not target.isin(rules.target_classes).all():
            failures.append("domain: target outside target_classes")
        shares = target.value_counts(normalize=True)
        for value in rules.target_classes:
            if shares.get(value, 0.0) < rules.min_class_fraction:
                warnings.append(f"balance: class {value!r} below {rules.min_class_fraction}")
    if len(frame) < rules.min_rows:
        failures.append(f"balance: {len(frame)} rows < {rules.min_rows}")
    return failures, warnings


def split(frame: pd.DataFrame, config: RetrainConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and holdout by the hash of the id column (the same rule as the platform's, written out again)."""
    hashes = pd.util.hash_pandas_object(frame[[config.data.id]], index=False).to_numpy()
    holdout = (hashes % HASH_BUCKETS) < round(config.model.holdout_fraction * HASH_BUCKETS)
    return frame[~holdout], frame[holdout]


def evaluate(model, frame: pd.DataFrame, config: RetrainConfig) -> dict[str, float]:
    """accuracy, f1, log_loss and roc_auc of a binary classifier on ``frame``."""
    features, target = frame[list(config.data.features)], frame[config.data.target]
    proba = model.predict_proba(features)
    predicted = model.classes_[proba.argmax(axis=1)]
    return {
        "accuracy": metrics.accuracy_score(target, predicted),
        "f1": metrics.f1_score(target, predicted, pos_label=model.classes_[-1]),
        "log_loss": metrics.log_loss(target, proba, labels=model.classes_),
        "roc_auc": metrics.roc_auc_score(target, proba[:, 1]),
    }


def train(frame: pd.DataFrame, config: RetrainConfig):
    train_rows, _ = split(frame, config)
    model = build_pipeline(config)
    model.fit(train_rows[list(config.data.features)], train_rows[config.data.target])
    return model


def cycle(accepted: list[Path], batch: Path, champion: Optional[Path], store: Path, config: RetrainConfig) -> dict:
    """One retrain cycle: read, validate the new batch, train on everything accepted, compare, decide."""
    new = pd.read_parquet(batch)
    failures, _ = validate(new, config)
    if failures:
        return {"promoted": False, "reason": "; ".join(failures)}
    frame = pd.concat([pd.read_parquet(path) for path in accepted] + [new], ignore_index=True)
    train_rows, holdout = split(frame, config)
    candidate = build_pipeline(config)
    candidate.fit(train_rows[list(config.data.features)], train_rows[config.data.target])
    scores = evaluate(candidate, holdout, config)
    previous = evaluate(joblib.load(champion), holdout, config) if champion is not None else None
    metric, rule = config.promotion.metric, config.promotion
    value = scores[metric]
    promoted = (rule.minimum is None or value >= rule.minimum) and (
        previous is None or value - previous[metric] >= max(rule.margin, np.nextafter(0, 1))
    )
    if promoted:
        joblib.dump(candidate, store / "champion.joblib")
    return {"promoted": promoted, "candidate": scores, "champion": previous}


if __name__ == "__main__":  # the bare script as a process (bench.cycle.measure_process): DIR ACCEPTED NEW
    import sys

    from retrain_assets.core.config import load_config

    directory, accepted, new = (Path(arg) for arg in sys.argv[1:4])
    decision = cycle([accepted], new, directory / "previous.joblib", directory, load_config(directory / "retrain.yaml"))
    print(decision)
