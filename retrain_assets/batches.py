"""From ``raw_data`` versions to ``validated_features``: each new batch is validated on its own.

A batch is the set of rows one ``raw_data`` version appended. Batches that pass every rule are appended to
the ``validated_features`` table (with the raw version they came from); batches that fail are not, and stay
intact in ``raw_data``. Either way the outcome is appended to the ``validation_log`` table, which is how the
next run knows where to resume, so a rejected batch never blocks the batches after it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from retrain_assets import lake
from retrain_assets.faults import crash_point

if TYPE_CHECKING:
    import pandas as pd

    from retrain_assets.config import RetrainConfig

RAW_VERSION_KEY = "retrain.raw_version"


@dataclass(frozen=True)
class BatchOutcome:
    raw_version: int
    rows: int
    checks: dict[str, tuple[bool, str]]

    @property
    def accepted(self) -> bool:
        return all(passed for passed, _ in self.checks.values())


@dataclass
class ValidationRun:
    """What one materialization of ``validated_features`` did."""

    upto: int
    after: Optional[int]
    batches: list[BatchOutcome] = field(default_factory=list)
    features: Optional[lake.TableRef] = None
    accepted_rows: list = field(default_factory=list, repr=False)  # frames of the accepted batches

    def accepted_frame(self) -> Optional["pd.DataFrame"]:
        """The rows this run accepted, or ``None`` when it accepted none."""
        import pandas as pd

        return pd.concat(self.accepted_rows, ignore_index=True) if self.accepted_rows else None

    def check_results(self, names: list[str]) -> dict[str, tuple[bool, str]]:
        """Per check: passed when every batch passed it; the message names each failing batch."""
        if not self.batches:
            since = f"after v{self.after}" if self.after is not None else "yet"
            return {name: (True, f"no new raw_data batch {since} (pinned v{self.upto}); nothing to validate") for name in names}
        results = {}
        for name in names:
            failures = [b.checks[name][1] for b in self.batches if not b.checks[name][0]]
            if failures:
                results[name] = (False, "; ".join(failures))
            else:
                versions = ", ".join(f"v{b.raw_version}" for b in self.batches)
                results[name] = (True, f"raw_data {versions}: {self.batches[-1].checks[name][1]}")
        return results


def last_processed_version(config: "RetrainConfig") -> Optional[int]:
    """Newest ``raw_data`` version already validated (accepted or rejected), from the validation log."""
    uri = config.table_uri(lake.VALIDATION_LOG_TABLE)
    if lake.latest_version(uri) is None:
        return None
    versions = lake.read_table(uri, columns=["raw_version"])["raw_version"]
    return int(versions.max()) if len(versions) else None


def accepted_rows_after(config: "RetrainConfig", raw_version: Optional[int]) -> int:
    """Validated rows from ``raw_data`` versions after ``raw_version`` (all of them when ``None``)."""
    uri = config.table_uri(lake.VALIDATION_LOG_TABLE)
    if lake.latest_version(uri) is None:
        return 0
    log = lake.read_table(uri, columns=["raw_version", "rows", "accepted"])
    newer = log[log["accepted"] & (log["raw_version"] > (-1 if raw_version is None else raw_version))]
    return int(newer["rows"].sum())


def validate(config: "RetrainConfig", frame: "pd.DataFrame", commit: dict) -> BatchOutcome:
    """One batch (the rows the ``raw_data`` commit ``commit`` appended, an entry of :func:`lake.batch_commits`)
    through the Great Expectations suite, judged against its landing time and the sizes of the accepted
    batches before it."""
    from retrain_assets.validation import BatchContext, check_results, validate_batch

    version = commit["version"]
    context = BatchContext(lake.landed_at(commit), tuple(recent_accepted_rows(config, version)))
    outcomes = validate_batch(frame, config, batch=f"raw_data v{version}", context=context)
    return BatchOutcome(version, len(frame), check_results(outcomes))


def recent_accepted_rows(config: "RetrainConfig", before: int) -> list[int]:
    """Row counts of the newest accepted batches older than ``raw_data`` version ``before`` (up to
    ``validation.RECENT_BATCHES``, newest first), from the validation log's newest files only, so the cost
    does not grow with the log."""
    from retrain_assets.validation import RECENT_BATCHES

    uri = config.table_uri(lake.VALIDATION_LOG_TABLE)
    if lake.latest_version(uri) is None:
        return []
    log = lake.read_newest_files(uri, "raw_version", before, files=4 * RECENT_BATCHES, columns=["raw_version", "rows", "accepted"])
    accepted = log[log["accepted"] & (log["raw_version"] < before)].sort_values("raw_version", ascending=False)
    return [int(rows) for rows in accepted["rows"].head(RECENT_BATCHES)]


def validate_new_batches(config: "RetrainConfig", upto: int) -> ValidationRun:
    """Validate every batch in ``(last processed, upto]``, append the good ones, log all of them."""
    raw_uri = config.table_uri(lake.RAW_TABLE)
    after = last_processed_version(config)
    run = ValidationRun(upto=upto, after=after)
    for commit in lake.batch_commits(raw_uri, after, upto):
        version = commit["version"]
        batch = lake.read_batch(raw_uri, version)
        frame = batch.to_pandas()
        outcome = validate(config, frame, commit)
        if outcome.accepted:
            _append_features(config, batch, version)
            crash_point("features_appended")
            run.accepted_rows.append(frame)
        _log(config, outcome)
        run.batches.append(outcome)
    run.features = current_features(config)
    return run


def current_features(config: "RetrainConfig") -> Optional[lake.TableRef]:
    """The features table at its latest version, with the newest raw version it contains."""
    uri = config.table_uri(lake.FEATURES_TABLE)
    entries = [e for e in lake.history(uri) if RAW_VERSION_KEY in e]
    if not entries:
        return None
    return lake.TableRef(uri, lake.latest_version(uri), int(entries[-1][RAW_VERSION_KEY]))


def _append_features(config: "RetrainConfig", batch, version: int) -> None:
    """Append an accepted batch, unless a previous, interrupted run already did."""
    import pyarrow as pa

    uri = config.table_uri(lake.FEATURES_TABLE)
    if any(e.get(RAW_VERSION_KEY) == str(version) for e in lake.history(uri)):
        return
    rows = batch.append_column(lake.RAW_VERSION_COLUMN, pa.array([version] * batch.num_rows, pa.int64()))
    lake.append(uri, rows, {RAW_VERSION_KEY: str(version)})


def _log(config: "RetrainConfig", outcome: BatchOutcome) -> None:
    import pyarrow as pa

    failed = [name for name, (passed, _) in outcome.checks.items() if not passed]
    row = {
        "raw_version": pa.array([outcome.raw_version], pa.int64()),
        "rows": pa.array([outcome.rows], pa.int64()),
        "accepted": pa.array([outcome.accepted]),
        "failed_checks": pa.array([",".join(failed)]),
        "messages": pa.array([json.dumps({name: message for name, (_, message) in outcome.checks.items()})]),
        "validated_at": pa.array([dt.datetime.now(dt.timezone.utc)], pa.timestamp("us", tz="UTC")),
    }
    lake.append(config.table_uri(lake.VALIDATION_LOG_TABLE), pa.table(row))
