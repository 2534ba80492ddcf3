"""Benchmark 8: a project after ten thousand batches (issue 15, "Ten thousand versions").

Every batch is a ``raw_data`` version, so an hourly feed makes 8,760 a year. :func:`build` makes a project whose
``raw_data`` holds ``versions`` batches of 50 rows, all of them validated: ``validation_log`` holds a verdict per
batch (every 1,000th one a rejection) and ``validated_features`` a version per accepted batch, as that many ingests
and runs leave them. The first and the last batch go through the platform: `retrain ingest` (in process), the first
validated by ``batches.validate_new_batches``, the last by an in-process `retrain tick` whose run also trains the
champion and consumes the version. The batches between are written into the three Delta logs directly, a data file
and a commit file each, with what the platform's commits carry (source file, sha256 and landing time in
``raw_data``; the raw version in each ``validated_features`` commit, whose rows carry ``_raw_version`` and the
holdout bucket; one verdict row per ``validation_log`` commit) and a checkpoint every 100 commits, as delta-rs's
post-commit hook makes them: a delta-rs append costs 45 ms here, and a writer kept open grows slower with every
commit, so 30,000 real commits would take far longer than a benchmark may. The build then checks that the project
sees those tables as it would its own: `retrain status` reports the newest version as processed and lists the
rejections, and a tick with its config touched (so it evaluates the sensors) launches nothing.

Measured on such a project at 10 versions, at ``versions``, and at ``versions`` again after `retrain maintain`:

* no-op tick: a whole ``retrain --config X tick`` process (its quick path), and the same after touching
  ``retrain.yaml`` (the full path: Dagster instance, sensors, schedule);
* validating one new batch: a 50-row batch lands (`retrain ingest` in process, timed on its own), then
  ``batches.validate_new_batches(config, version)`` in process, the work of the run's ``validated_features``;
* `retrain status`: a whole ``retrain --config X status --json`` process, checked against what was built.

Before the measurements after `retrain maintain`, a whole ``retrain tick`` process consumes the batches the
validation repetitions landed (one run), so the project is back at "nothing new". For reference, the build times
one ``delta.history`` of the large ``raw_data`` (every commit read) and the `retrain maintain` process.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from bench.workload import SEED, START, Measurement, scratch, timed, write_project

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.config import RetrainConfig

VERSIONS = 10_000
QUICK_VERSIONS = 2_000
SMALL = 10
BATCH_ROWS = 50
REJECTED_EVERY = 1_000  # every 1,000th prefab batch (v500, v1500, ...) has a rejection as its verdict
CHECKPOINT_EVERY = 100  # delta-rs's post-commit hook checkpoints versions 99, 199, ...
VALIDATE_GOAL = 1.5
STATUS_GOAL = 2.0


@dataclass
class Project:
    """A built project: its config, the newest ``raw_data`` version, and the rejections its log holds."""

    config_path: Path
    config: "RetrainConfig"
    latest: int
    rejected: list[int]
    next_day: int  # the first day index no batch of this project came from
    build_seconds: float = 0.0


@dataclass
class Stage:
    """The measurements of one project state (see the module docstring)."""

    tick: Measurement = field(default_factory=Measurement)
    full_tick: Measurement = field(default_factory=Measurement)
    validate: Measurement = field(default_factory=Measurement)
    ingest: Measurement = field(default_factory=Measurement)
    status: Measurement = field(default_factory=Measurement)
    versions: int = 0


def _retrain(config_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("retrain")), "--config", str(config_path), *arguments]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


def batches_of(config: "RetrainConfig", versions: range) -> Iterator[tuple[int, "pa.Table"]]:
    """``(version, rows)`` of each batch in ``versions``: one hour's share of a synthetic day (24 batches a day,
    from START), cast to the table's schema as `retrain ingest` casts them (a day at a time)."""
    from retrain_assets.core import delta, synthetic

    day, table = None, None
    for version in versions:
        if version // 24 != day:
            day = version // 24
            frame = synthetic.churn_batch(START + dt.timedelta(days=day), 24 * BATCH_ROWS, SEED)
            table = delta.to_table_schema(frame, config.data.columns, f"day {day}")
        assert table is not None
        yield version, table.slice((version % 24) * BATCH_ROWS, BATCH_ROWS)


def _landed(version: int) -> dt.datetime:
    """When prefab batch ``version`` landed: an hour after the one before, after the end of its day."""
    return dt.datetime.combine(START, dt.time(), dt.timezone.utc) + dt.timedelta(days=1, hours=version)


def _land(config: "RetrainConfig", instance, directory: Path, version: int) -> int:
    """Batch ``version`` written as a Parquet file and landed by `retrain ingest`; returns its version."""
    import pyarrow.parquet as pq

    from retrain_assets.app.execution import ingest

    path = directory / f"batch-{version}.parquet"
    pq.write_table(next(batches_of(config, range(version, version + 1)))[1], path)
    return ingest(config, instance, path).version


def new_batch(project: Project) -> Path:
    """A 50-row file of a day no batch of ``project`` came from (so its content is new), written beside it."""
    from retrain_assets.core import synthetic

    day = START + dt.timedelta(days=project.next_day)
    project.next_day += 1
    path = project.config_path.parent / "incoming" / f"churn-{day.isoformat()}.parquet"
    path.parent.mkdir(exist_ok=True)
    synthetic.churn_batch(day, BATCH_ROWS, SEED).to_parquet(path, index=False)
    return path


def build(directory: Path, versions: int) -> Project:
    """See the module docstring: ``versions`` batches, the newest consumed by a tick that trained the champion."""
    from retrain_assets.app.instance import project_instance
    from retrain_assets.app.ticking import tick
    from retrain_assets.core import batches

    started = time.perf_counter()
    config_path, config = write_project(directory)
    files = directory / "landed"
    files.mkdir()
    with project_instance(config) as instance:
        _land(config, instance, files, 0)
        if batches.validate_new_batches(config, 0).rejected:
            raise RuntimeError("the first batch was rejected")
        rejected = _prefab(config, range(1, versions - 1))
        latest = _land(config, instance, files, versions - 1)
        first = tick(config_path, instance)
    if latest != versions - 1 or not [launch for launch in first.launches if launch.outcome and launch.outcome.success]:
        raise RuntimeError(f"v{latest}: the tick did not train a champion: {first.to_json()}")
    project = Project(config_path, config, latest, rejected, next_day=versions // 24 + 2)
    check_as_built(project)
    project.build_seconds = time.perf_counter() - started
    return project


def check_as_built(project: Project) -> None:
    """The project sees the built tables as its own: status has the newest version processed and lists the newest
    rejections; a full tick (config touched, so the sensors are evaluated) launches nothing."""
    status = json.loads(_retrain(project.config_path, "status", "--json").stdout)
    listed = [batch["raw_version"] for batch in status["rejected_batches"]]
    if status["last_processed_version"] != project.latest or listed != project.rejected[-10:]:
        raise RuntimeError(
            f"status after the build: last processed {status['last_processed_version']} (expected {project.latest}), "
            f"rejected {listed} (expected {project.rejected[-10:]})"
        )
    project.config_path.touch()
    ticked = json.loads(_retrain(project.config_path, "tick", "--json").stdout)
    if ticked["launched"]:
        raise RuntimeError(f"a tick after the build launched runs: {ticked}")


def _prefab(config: "RetrainConfig", versions: range) -> list[int]:
    """Batches ``versions`` (with their verdicts and accepted features) written into the Delta logs directly;
    returns the rejected versions."""
    import pyarrow as pa

    from retrain_assets.core import batches, delta, training

    log_uri = config.table_uri(delta.VALIDATION_LOG_TABLE)
    accepted_row = delta.read_table(log_uri).iloc[0]
    features_version = delta.latest_version(config.table_uri(delta.FEATURES_TABLE))
    assert features_version is not None
    raw, verdicts, features, rejected = [], [], [], []
    for version, table in batches_of(config, versions):
        landed = _landed(version)
        sha = f"{uuid.uuid5(uuid.NAMESPACE_URL, f'bench/{version}').hex}" * 2
        raw.append((version, table, {delta.SOURCE_KEY: f"hour-{version}.parquet", delta.SHA_KEY: sha}, landed))
        ok = version % REJECTED_EVERY != REJECTED_EVERY // 2
        verdicts.append((version, _verdict(accepted_row, version, table.num_rows, ok, landed), {}, landed))
        if not ok:
            rejected.append(version)
            continue
        features_version += 1
        buckets = training.holdout_buckets(table.select(training.holdout_key_columns(config)).to_pandas(), config)
        rows = table.append_column(delta.RAW_VERSION_COLUMN, pa.array([version] * table.num_rows, pa.int64()))
        rows = rows.append_column(training.bucket_column(config), pa.array(buckets, pa.int16()))
        features.append((features_version, rows, {batches.RAW_VERSION_KEY: str(version)}, landed))
    write_commits(config.table_uri(delta.RAW_TABLE), raw)
    write_commits(log_uri, verdicts)
    write_commits(config.table_uri(delta.FEATURES_TABLE), features)
    return rejected


def _verdict(accepted: "pd.Series", version: int, rows: int, ok: bool, landed: dt.datetime) -> "pa.Table":
    """The ``validation_log`` row of a prefab batch: the first real verdict's, for this version (a
    ``values_in_range`` rejection unless ``ok``)."""
    import pyarrow as pa

    messages = json.loads(accepted["messages"])
    if not ok:
        messages["values_in_range"] = f"raw_data v{version}: 'monthly_charges' has 3 values above 130"
    return pa.table(
        {
            "raw_version": pa.array([version], pa.int64()),
            "rows": pa.array([rows], pa.int64()),
            "accepted": pa.array([ok]),
            "failed_checks": pa.array(["" if ok else "values_in_range"]),
            "messages": pa.array([json.dumps(messages)]),
            "validated_at": pa.array([landed + dt.timedelta(minutes=5)], pa.timestamp("us", tz="UTC")),
            "warned_checks": pa.array([accepted["warned_checks"]]),
            "revalidated": pa.array([False]),
        }
    )


def write_commits(uri: str, commits: list[tuple[int, "pa.Table", dict[str, str], dt.datetime]]) -> None:
    """Each ``(version, rows, metadata, committed_at)`` appended to the local Delta table at ``uri`` as one commit:
    a Parquet file and the commit file delta-rs writes for an append (its commitInfo, with ``metadata`` in it, and
    one add action with the file's statistics), then a checkpoint where delta-rs's post-commit hook makes one."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from retrain_assets.core.delta import commit_file

    first = json.loads((Path(uri) / commit_file(0)).read_text().splitlines()[0])["commitInfo"]
    for version, rows, metadata, committed_at in commits:
        name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        pq.write_table(rows, Path(uri) / name, compression="snappy")
        millis = int(committed_at.timestamp() * 1000)
        info = {
            "timestamp": millis,
            "operation": "WRITE",
            "operationParameters": {"mode": "Append"},
            "engineInfo": first["engineInfo"],
            "operationMetrics": {
                "num_added_files": 1,
                "num_removed_files": 0,
                "num_partitions": 0,
                "num_added_rows": rows.num_rows,
                "execution_time_ms": 1,
                "num_retries": 0,
            },
            "clientVersion": first["clientVersion"],
            **metadata,
        }
        add = {
            "path": name,
            "partitionValues": {},
            "size": (Path(uri) / name).stat().st_size,
            "modificationTime": millis,
            "dataChange": True,
            "stats": json.dumps(file_statistics(rows)),
            "tags": None,
            "baseRowId": None,
            "defaultRowCommitVersion": None,
            "clusteringProvider": None,
        }
        with open(Path(uri) / commit_file(version), "x") as commit:
            commit.write(json.dumps({"commitInfo": info}) + "\n" + json.dumps({"add": add}) + "\n")
        if (version + 1) % CHECKPOINT_EVERY == 0:
            DeltaTable(uri, version=version).create_checkpoint()


def file_statistics(rows: "pa.Table") -> dict:
    """A data file's statistics as delta-rs writes them: row count, per column minimum, maximum (timestamps to
    the millisecond, strings cut to 64 characters, the maximum's last one raised) and null count."""
    import pyarrow.compute as pc

    low, high = {}, {}
    for name in rows.column_names:
        bounds = pc.min_max(rows[name]).as_py()
        if bounds["min"] is not None:
            low[name], high[name] = _bound(bounds["min"], False), _bound(bounds["max"], True)
    nulls = {name: rows[name].null_count for name in rows.column_names}
    return {"numRecords": rows.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls}


def _bound(value, upper: bool):
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, str) and len(value) > 64:
        return value[:63] + chr(ord(value[63]) + 1) if upper else value[:64]
    return value


def measure_stage(project: Project, repetitions: int, warmup: int) -> Stage:
    """No-op ticks (quick and full path), status, then validating new batches: see the module docstring."""
    from retrain_assets.core import batches, delta, landing

    stage = Stage(versions=project.latest + 1)
    for index in range(warmup + repetitions):
        for kind in ("full_tick", "tick"):
            if kind == "full_tick":
                project.config_path.touch()
            seconds, done = timed(lambda: _retrain(project.config_path, "tick", "--json"))
            if json.loads(done.stdout)["launched"]:
                raise RuntimeError(f"a no-op tick launched runs: {done.stdout}")
            if index >= warmup:
                getattr(stage, kind).samples.append(seconds)
        seconds, done = timed(lambda: _retrain(project.config_path, "status", "--json"))
        if json.loads(done.stdout)["last_processed_version"] != project.latest:
            raise RuntimeError(f"status: last processed version is not v{project.latest}: {done.stdout[:2000]}")
        if index >= warmup:
            stage.status.samples.append(seconds)
    for index in range(warmup + repetitions):
        path = new_batch(project)
        seconds, landed = timed(lambda path=path: landing.ingest_file(project.config, path))
        run_seconds, run = timed(lambda landed=landed: batches.validate_new_batches(project.config, landed.version))
        if run.accepted != [landed.version]:
            raise RuntimeError(f"v{landed.version}: expected it validated and accepted alone, got {run.batches}")
        if index >= warmup:
            stage.ingest.samples.append(seconds)
            stage.validate.samples.append(run_seconds)
        project.latest = landed.version
    if delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) != project.latest:
        raise RuntimeError("raw_data moved while measuring")
    return stage


def measure(versions: int, repetitions: int, warmup: int = 1) -> dict:
    """``{"small", "large", "maintained"}``: a :class:`Stage` each; ``"build"``: seconds to build each project;
    ``"history"``: one ``delta.history`` of the large ``raw_data``; ``"maintain"``: the `retrain maintain`
    process; ``"maintain_output"``: what it printed."""
    from retrain_assets.core import delta

    results: dict = {}
    with scratch("versions") as directory:
        small = build(directory / "small", SMALL)
        results["small"] = measure_stage(small, repetitions, warmup)
        large = build(directory / "large", versions)
        results["build"] = {"small": small.build_seconds, "large": large.build_seconds}
        results["history"], _ = timed(lambda: delta.history(large.config.table_uri(delta.RAW_TABLE)))
        results["large"] = measure_stage(large, repetitions, warmup)
        results["maintain"], done = timed(lambda: _retrain(large.config_path, "maintain"))
        results["maintain_output"] = done.stdout.strip()
        _retrain(large.config_path, "tick")  # consumes the batches the validation repetitions landed
        results["maintained"] = measure_stage(large, repetitions, warmup)
    return results
