"""Benchmark 3: validating and drift-scoring one new 100k-row batch costs what the batch costs, not the table.

Three projects share one MLflow store with one champion (trained by the platform on 100k rows, logged with its
drift reference profile): a 1M-row and a 5M-row ``raw_data`` table, built from 250k-row versions written with
``deltalake.write_deltalake`` (cast with ``delta.to_table_schema``, as ``retrain ingest`` does) and already
validated by the platform (untimed), and, per repetition, a fresh lake.

Each repetition appends a new 100k-row batch as one version to each table (untimed), then times, in an order
that flips every repetition, the platform's per-run path for it: ``batches.validate_new_batches(config, upto)``
(find the unvalidated versions, read only their rows, Great Expectations suite, append to ``validated_features``
and ``validation_log``) and ``monitoring.watch_champion`` (PSI/KS against the champion's reference profile, the
champion scored on the new rows). The baseline is the same path on a fresh lake holding nothing but that batch (plus
one validated 1,000-row version appended first, untimed, so that its Delta tables exist and the timed run does not pay
for creating them). The big tables grow by 100k rows per repetition. For reference, ``memory`` times the same
validation and scoring on the batch as an in-memory frame (``validation.validate_batch`` + ``watch_champion``): no
Delta at all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.workload import SEED, START, Measurement, bench_config, scratch, timed, write_batch, write_project

BATCH_GOAL = 1.5
CHUNK = 250_000


def _config(lake_uri: Path, tracking_uri: str):
    """A project on ``lake_uri`` whose MLflow store is the shared one. The batch-growth rule is off: the
    lone-batch baseline lands a 100k batch after a 1,000-row one, which that rule would rightly refuse."""
    return bench_config(
        storage={"lake_uri": str(lake_uri), "home": str(lake_uri.parent / "home")},
        mlflow={"tracking_uri": tracking_uri},
        validation={"max_batch_growth": None},
    )


def _append(config, day_index: int, rows: int) -> int:
    """One synthetic day appended to ``raw_data`` as one version; returns the version."""
    from retrain_assets.core import delta, synthetic

    frame = synthetic.churn_batch(START + dt.timedelta(days=day_index), rows, SEED)
    return delta.append(config.table_uri(delta.RAW_TABLE), delta.to_table_schema(frame, config.data.columns, "bench"))


def _crown_champion(directory: Path, tracking_uri: str) -> None:
    """A champion in the shared MLflow store, trained on 100k rows by the platform itself (one in-process run
    of the job on a project of its own), so it carries the drift reference profile the platform logs."""
    from dagster import DagsterInstance

    from retrain_assets.app.execution import ingest, materialize

    config_path, config = write_project(directory, mlflow={"tracking_uri": tracking_uri})
    with DagsterInstance.ephemeral() as instance:
        ingest(config, instance, write_batch(directory, -1, 100_000))
        outcome = materialize(config_path, instance)
    if not (outcome.decision or {}).get("promoted"):
        raise RuntimeError(f"no champion: {outcome.describe(config.promotion.metric)}")


def validate_and_score(config, upto: int) -> int:
    """The platform's per-run path for the new versions up to ``upto``; returns the rows it accepted."""
    from retrain_assets.core import batches, monitoring
    from retrain_assets.core.registry import Registry

    run = batches.validate_new_batches(config, upto)
    accepted = run.accepted_frame()
    findings = monitoring.watch_champion(config, Registry(config), accepted)
    if accepted is None or "no champion" in findings[monitoring.DRIFT_CHECK].message:
        raise RuntimeError(f"nothing scored: {[b.checks for b in run.batches]}, {findings}")
    return len(accepted)


def in_memory(config, frame) -> None:
    """The same checks and scores on an in-memory frame: the floor of what validating a batch can cost here."""
    from retrain_assets.core import monitoring, validation
    from retrain_assets.core.registry import Registry

    validation.check_results(validation.validate_batch(frame, config, batch="in memory"))
    monitoring.watch_champion(config, Registry(config), frame)


def measure(table_rows: list[int], repetitions: int, warmup: int = 1, batch_rows: int = 100_000) -> dict:
    """``{table_rows: Measurement, "batch": Measurement, "memory": Measurement}``: :func:`validate_and_score` of
    one new batch on each table and on the batch alone, and :func:`in_memory` on the same batch."""
    from retrain_assets.core import batches, delta

    results = {rows: Measurement() for rows in table_rows}
    results["batch"], results["memory"] = Measurement(), Measurement()
    with scratch("batch") as directory:
        tracking = f"sqlite:///{directory / 'mlflow.db'}"
        configs = {rows: _config(directory / f"table-{rows}" / "lake", tracking) for rows in table_rows}
        _crown_champion(directory / "champion", tracking)
        for rows, config in configs.items():
            for chunk in range(-(-rows // CHUNK)):
                version = _append(config, chunk, min(CHUNK, rows - chunk * CHUNK))
            batches.validate_new_batches(config, version)  # the table as the platform leaves it: all validated
        for index in range(warmup + repetitions):
            day = 400 + index  # a day none of the tables holds yet
            alone = _config(directory / f"alone-{index}" / "lake", tracking)
            batches.validate_new_batches(alone, _append(alone, day - 100, 1000))
            work = {rows: (config, _append(config, day, batch_rows)) for rows, config in configs.items()}
            work["batch"] = (alone, _append(alone, day, batch_rows))
            frame = delta.read_batch(alone.table_uri(delta.RAW_TABLE), work["batch"][1]).to_pandas()
            order = list(work) if index % 2 == 0 else list(reversed(work))  # no side always goes first
            for key in order:
                config, version = work[key]
                seconds, accepted = timed(lambda config=config, version=version: validate_and_score(config, version))
                if accepted != batch_rows:
                    raise RuntimeError(f"expected the {batch_rows}-row batch alone, the run accepted {accepted} rows")
                if index >= warmup:
                    results[key].samples.append(seconds)
            seconds, _ = timed(lambda alone=alone, frame=frame: in_memory(alone, frame))
            if index >= warmup:
                results["memory"].samples.append(seconds)
        results["versions"] = {
            rows: delta.latest_version(config.table_uri(delta.RAW_TABLE)) + 1 for rows, config in configs.items()
        }
    return results
