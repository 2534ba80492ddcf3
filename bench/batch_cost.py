"""Benchmark 3: validating and drift-scoring one new 100k-row batch costs what the batch costs, not the table.

Three projects share one MLflow store with one champion (trained on 100k rows, logged with its drift reference
profile): a 1M-row and a 5M-row ``raw_data`` table, built from 250k-row versions written with
``deltalake.write_deltalake`` (cast with ``lake.to_table_schema``, as ``retrain ingest`` does) and already
validated by the platform (untimed), and, per repetition, an empty lake.

Each repetition appends a new 100k-row batch as one version to each table (untimed), then times the platform's
per-run path for it: ``batches.validate_new_batches(config, upto)`` (find the unvalidated versions, read only
their rows, Great Expectations suite, append to ``validated_features`` and ``validation_log``) and
``monitoring.watch_champion`` (PSI/KS against the champion's reference profile, the champion scored on the new
rows). The baseline is the same path on a lake holding nothing but that batch. The big tables grow by 100k rows
per repetition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.workload import START, SEED, Measurement, bench_config, scratch, timed

BATCH_GOAL = 1.5
CHUNK = 250_000


def _config(lake_uri: Path, tracking_uri: str):
    """A project on ``lake_uri`` whose MLflow store is the shared one."""
    return bench_config(storage={"lake_uri": str(lake_uri), "home": str(lake_uri.parent / "home")},
                        mlflow={"tracking_uri": tracking_uri})


def _append(config, day_index: int, rows: int) -> int:
    """One synthetic day appended to ``raw_data`` as one version; returns the version."""
    from retrain_assets import lake, synthetic

    frame = synthetic.churn_batch(START + dt.timedelta(days=day_index), rows, SEED)
    return lake.append(config.table_uri(lake.RAW_TABLE), lake.to_table_schema(frame, config.data.columns, "bench"))


def _crown_champion(config) -> None:
    """Train a model on 100k rows and make it the champion, logged as the platform logs its candidates."""
    from retrain_assets import synthetic, training
    from retrain_assets.drift import reference_profile
    from retrain_assets.registry import Registry

    frame = synthetic.churn_batch(START - dt.timedelta(days=1), 100_000, SEED)
    train_rows, holdout = training.split(frame, config)
    pipeline = training.train(train_rows, config)
    metrics = training.evaluate(pipeline, holdout, config)
    features = list(config.data.features)
    profile = reference_profile(train_rows, config.data.features, bins=config.triggers.drift.bins, seed=config.model.seed)
    registry = Registry(config)
    tags = {"delta_version": "0", "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    ref = registry.log_candidate(pipeline, frame[features].head(5), {"estimator": config.model.estimator}, metrics, tags, profile)
    registry.promote(ref.version)


def validate_and_score(config, upto: int) -> int:
    """The platform's per-run path for the new versions up to ``upto``; returns the rows it accepted."""
    from retrain_assets import batches, monitoring
    from retrain_assets.registry import Registry

    run = batches.validate_new_batches(config, upto)
    accepted = run.accepted_frame()
    findings = monitoring.watch_champion(config, Registry(config), accepted)
    if accepted is None or "no champion" in findings[monitoring.DRIFT_CHECK].message:
        raise RuntimeError(f"nothing scored: {[b.checks for b in run.batches]}, {findings}")
    return len(accepted)


def measure(table_rows: list[int], repetitions: int, warmup: int = 1, batch_rows: int = 100_000) -> dict:
    """``{table_rows: Measurement, "batch": Measurement}`` of :func:`validate_and_score` on one new batch."""
    from retrain_assets import batches, lake

    results = {rows: Measurement() for rows in table_rows}
    results["batch"] = Measurement()
    with scratch("batch") as directory:
        tracking = f"sqlite:///{directory / 'mlflow.db'}"
        configs = {rows: _config(directory / f"table-{rows}" / "lake", tracking) for rows in table_rows}
        _crown_champion(next(iter(configs.values())))
        for rows, config in configs.items():
            for chunk in range(-(-rows // CHUNK)):
                version = _append(config, chunk, min(CHUNK, rows - chunk * CHUNK))
            batches.validate_new_batches(config, version)  # the table as the platform leaves it: all validated
        for index in range(warmup + repetitions):
            day = 400 + index  # a day none of the tables holds yet
            for rows, config in configs.items():
                version = _append(config, day, batch_rows)
                seconds, accepted = timed(lambda: validate_and_score(config, version))
                if accepted != batch_rows:
                    raise RuntimeError(f"expected the {batch_rows}-row batch alone, the run accepted {accepted} rows")
                if index >= warmup:
                    results[rows].samples.append(seconds)
            alone = _config(directory / f"alone-{index}" / "lake", tracking)
            version = _append(alone, day, batch_rows)
            seconds, _ = timed(lambda: validate_and_score(alone, version))
            if index >= warmup:
                results["batch"].samples.append(seconds)
        results["versions"] = {rows: lake.latest_version(config.table_uri(lake.RAW_TABLE)) + 1 for rows, config in configs.items()}
    return results
