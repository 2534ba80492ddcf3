"""From ``raw_data`` versions to ``validated_features``: each new batch is validated on its own.

A batch is the set of rows one ``raw_data`` version appended. Batches that pass every rule are appended to
the ``validated_features`` table (with the raw version they came from); batches that fail are not, and stay
intact in ``raw_data``. Either way the outcome is appended to the ``validation_log`` table, which is how the
next run knows where to resume, so a rejected batch never blocks the batches after it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from retrain_assets.core import delta, landing
from retrain_assets.core.faults import crash_point
from retrain_assets.core.locking import RunTimedOut
from retrain_assets.core.monitoring import Finding

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.validation import CheckVerdict, RuleOutcome

RAW_VERSION_KEY = "retrain.raw_version"


@dataclass(frozen=True)
class BatchOutcome:
    raw_version: int
    rows: int
    checks: dict[str, "CheckVerdict"]

    @property
    def accepted(self) -> bool:
        """No check failed with ``error`` severity (warnings, such as unexpected values, do not reject)."""
        return not any(verdict.rejects for verdict in self.checks.values())


@dataclass
class ValidationRun:
    """What one materialization of ``validated_features`` did."""

    upto: int
    after: Optional[int]
    batches: list[BatchOutcome] = field(default_factory=list)
    features: Optional[delta.TableRef] = None
    accepted_rows: list = field(default_factory=list, repr=False)  # frames of the accepted batches

    @property
    def accepted(self) -> list[int]:
        return [b.raw_version for b in self.batches if b.accepted]

    @property
    def rejected(self) -> list[int]:
        return [b.raw_version for b in self.batches if not b.accepted]

    def accepted_frame(self) -> Optional["pd.DataFrame"]:
        """The rows this run accepted, or ``None`` when it accepted none."""
        import pandas as pd

        return pd.concat(self.accepted_rows, ignore_index=True) if self.accepted_rows else None

    def check_results(self, names: list[str]) -> dict[str, "CheckVerdict"]:
        """Per check over the run's batches: the message names each failing batch.

        A check that rejected a batch fails with ``error`` severity, which stops the run, only when the run
        accepted no batch at all. When other batches of the run passed, it fails with ``warn`` severity: the
        run goes on and trains on the accepted batches, and the rejected one stays in ``raw_data``, out of
        ``validated_features``, listed in the check's message, its metadata and `retrain status`.
        """
        from retrain_assets.core.validation import CheckVerdict

        if not self.batches:
            since = f"after v{self.after}" if self.after is not None else "yet"
            message = f"no new raw_data batch {since} (pinned v{self.upto}); nothing to validate"
            return {name: CheckVerdict(True, message) for name in names}
        accepted = self.accepted
        results = {}
        for name in names:
            failing = [b.checks[name] for b in self.batches if not b.checks[name].passed]
            if not failing:
                versions = ", ".join(f"v{b.raw_version}" for b in self.batches)
                results[name] = CheckVerdict(True, f"raw_data {versions}: {self.batches[-1].checks[name].message}")
                continue
            message = "; ".join(verdict.message for verdict in failing)
            rejects = any(verdict.rejects for verdict in failing)
            if rejects and accepted:
                kept = ", ".join(f"v{version}" for version in accepted)
                message += f" (rejected, kept in raw_data; this run trains on the accepted {kept})"
            results[name] = CheckVerdict(False, message, "error" if rejects and not accepted else "warn")
        return results


@dataclass(frozen=True)
class ValidatedBatches:
    """What ``validated_features`` found in one run, handed to ``candidate_model`` and ``evaluation_report``
    as their input: the features table (``None`` while no batch was ever accepted), the batches it accepted
    and rejected, and how the champion looks on the accepted rows (the drift and performance findings, as
    the checks report them)."""

    features: Optional[delta.TableRef]
    raw_version: int
    accepted: list[int]
    rejected: list[int]
    accepted_rows: int
    drift: Finding
    performance: Finding


def last_processed_version(config: "RetrainConfig") -> Optional[int]:
    """Newest ``raw_data`` version already validated (accepted or rejected), from the validation log (its file
    statistics, and the newest files only)."""
    uri = config.table_uri(delta.VALIDATION_LOG_TABLE)
    if not delta.exists(uri):
        return None
    newest = delta.newest_value(uri, None, "raw_version")
    return None if newest is None else int(newest.as_py())


def accepted_rows_after(config: "RetrainConfig", raw_version: Optional[int]) -> int:
    """Validated rows from ``raw_data`` versions after ``raw_version`` (all of them when ``None``), read from the
    validation log's files that hold such versions."""
    after = -1 if raw_version is None else raw_version
    log = _read_log(config, ["raw_version", "rows", "accepted"], lambda file: file.may_hold("raw_version", after + 1))
    if log is None:
        return 0
    newer = log[log["accepted"] & (log["raw_version"] > after)]
    return int(newer["rows"].sum())


def validate(config: "RetrainConfig", frame: "pd.DataFrame", commit: dict) -> BatchOutcome:
    """One batch (the rows the ``raw_data`` commit ``commit`` appended, an entry of :func:`delta.batch_commits`)
    through the Great Expectations suite, judged against its landing time and the sizes of the accepted
    batches before it."""
    from retrain_assets.core.validation import BatchContext, check_results, validate_batch

    version = commit["version"]
    context = BatchContext(delta.landed_at(commit), tuple(recent_accepted_rows(config, version)))
    outcomes = validate_batch(frame, config, batch=f"raw_data v{version}", context=context)
    return BatchOutcome(version, len(frame), check_results(outcomes))


def recent_accepted_rows(config: "RetrainConfig", before: int) -> list[int]:
    """Row counts of the newest accepted batches older than ``raw_data`` version ``before`` (up to
    ``validation.RECENT_BATCHES``, newest first), from the validation log's newest files only, so the cost
    does not grow with the log."""
    from retrain_assets.core.validation import RECENT_BATCHES

    uri = config.table_uri(delta.VALIDATION_LOG_TABLE)
    if not delta.exists(uri):
        return []
    log = delta.read_newest_files(
        uri, "raw_version", before, files=4 * RECENT_BATCHES, columns=["raw_version", "rows", "accepted"]
    )
    accepted = log[log["accepted"] & (log["raw_version"] < before)].drop_duplicates("raw_version")
    accepted = accepted.sort_values("raw_version", ascending=False)
    return [int(rows) for rows in accepted["rows"].head(RECENT_BATCHES)]


def validate_new_batches(config: "RetrainConfig", upto: int) -> ValidationRun:
    """Validate every batch in ``(last processed, upto]``, append the good ones, log all of them."""
    raw_uri = config.table_uri(delta.RAW_TABLE)
    after = last_processed_version(config)
    run = ValidationRun(upto=upto, after=after)
    appended = None
    for commit in delta.batch_commits(raw_uri, after, upto):
        version = commit["version"]
        outcome, batch, frame = judge(config, raw_uri, commit)
        if outcome.accepted and batch is not None and frame is not None:
            appended = _append_features(config, batch, frame, version)
            crash_point("features_appended")
            run.accepted_rows.append(frame)
        _log(config, outcome)
        run.batches.append(outcome)
    run.features = appended or current_features(config)
    return run


def judge(
    config: "RetrainConfig", raw_uri: str, commit: dict
) -> tuple[BatchOutcome, Optional["pa.Table"], Optional["pd.DataFrame"]]:
    """Read and validate one batch. An unexpected exception while doing so (a bug, a value the rules cannot
    handle, ``MemoryError``) rejects the batch, naming the exception, rather than failing the run: an
    unrecorded batch would be read again by every later run and block every batch after it. Storage and
    installation errors (``OSError``, ``ImportError``) and the run's own deadline (``RunTimedOut``) say nothing
    about the batch and still fail the run."""
    version = commit["version"]
    frame: Optional["pd.DataFrame"] = None
    try:
        batch = delta.read_batch(raw_uri, version)
        frame = batch.to_pandas()
        return validate(config, frame, commit), batch, frame
    except (OSError, ImportError, RunTimedOut):
        raise
    except Exception as exc:
        rows = int(commit.get("operationMetrics", {}).get("num_added_rows", 0))
        return crashed(config, version, rows, exc, frame), None, None


def crashed(
    config: "RetrainConfig", version: int, rows: int, exc: BaseException, frame: Optional["pd.DataFrame"] = None
) -> BatchOutcome:
    """A rejection for a batch whose validation raised: ``batch_integrity`` fails naming the exception
    (:func:`crash_text`, given the batch's rows ``frame`` when they were read); the other checks did not
    judge it."""
    from retrain_assets.core.validation import CHECKS, CheckVerdict

    error = crash_text(config, exc, frame)
    message = (
        f"raw_data v{version}: validation crashed with {error}; the batch is rejected so the batches "
        f"after it go on; after a fix, `retrain revalidate {version}` judges it again"
    )
    checks = {name: CheckVerdict(True, f"not judged for v{version}: its validation crashed") for name in CHECKS}
    checks["batch_integrity"] = CheckVerdict(False, message)
    return BatchOutcome(version, rows, checks)


def crash_text(config: "RetrainConfig", exc: BaseException, frame: Optional["pd.DataFrame"] = None) -> str:
    """``"<type>: <message>"`` of a validation crash, at most 500 characters, for the ``validation_log``
    (and so the check, alerts and Dagster events). An exception's message can quote values: with
    ``validation.redact_samples`` only its type stays; else, unless ``validation.show_id_samples``, every
    ``data.id`` value of the batch (``frame``) is cut out of it, and without the batch's rows to look them up
    in, the message is withheld."""
    from retrain_assets.core.validation import withheld_because

    name, message = type(exc).__name__, str(exc)[:10_000]  # cut after the ids are: no id is left half-cut
    if config.validation.redact_samples:
        return f"{name} (message withheld: validation.redact_samples)"
    column = config.data.id
    why = withheld_because(config, column) if column is not None else None
    if why is not None and frame is None:
        return f"{name} (message withheld: the batch was not read, so {why} could not be cut out of it)"
    if why is not None and frame is not None and column in frame.columns:
        quoted = {value for value in frame[column].dropna().astype(str).unique() if value and value in message}
        for value in sorted(quoted, key=len, reverse=True):  # "12" before "1", so no part of an id is left
            message = message.replace(value, "[withheld]")
    return f"{name}: {message}"[:500]


def validate_file(config: "RetrainConfig", path: "Path") -> list["RuleOutcome"]:
    """`retrain validate`: one file through the same cast as `retrain ingest` and the same suite as a batch
    landing now, without writing anything. A file ingest would refuse raises ``ValueError`` with the
    refusal's message."""
    from retrain_assets.core.validation import BatchContext, validate_batch

    frame = landing.cast_batch_file(config, path).to_pandas()
    context = BatchContext(dt.datetime.now(dt.timezone.utc), tuple(recent_accepted_rows(config, sys.maxsize)))
    return validate_batch(frame, config, batch=path.name, context=context)


def verdicts(config: "RetrainConfig") -> dict[int, bool]:
    """``raw_data`` version -> accepted, for every batch the live path has judged. A batch rejected and then
    accepted by `retrain revalidate` counts as accepted; its rejection stays in the log."""
    log = _read_log(config, ["raw_version", "accepted"])
    if log is None:
        return {}
    return {int(version): bool(accepted) for version, accepted in _accepted_ever(log).items()}


def rejected_batches(config: "RetrainConfig", limit: int = 10) -> list[dict]:
    """The newest ``limit`` batches whose standing verdict is a rejection: version, rows, failed checks, when
    and the first message (what `retrain status` lists, and what `retrain revalidate` takes). Only the log's
    files that may hold a rejection are read, then those that may hold another verdict on a rejected version."""
    rejections = _read_log(config, ["raw_version", "accepted"], lambda file: file.may_hold("accepted", False, False))
    if rejections is None or rejections["accepted"].all():
        return []
    judged = sorted(int(version) for version in rejections.loc[~rejections["accepted"], "raw_version"].unique())
    columns = ["raw_version", "rows", "accepted", "failed_checks", "messages", "validated_at"]
    log = _read_log(config, columns, lambda file: file.may_hold_any("raw_version", judged))
    assert log is not None
    newest = log.sort_values("validated_at").groupby("raw_version").tail(1)
    rejected = newest[~newest["raw_version"].map(_accepted_ever(log))]
    rows = []
    for entry in rejected.sort_values("raw_version").tail(limit).itertuples():
        failed = [name for name in entry.failed_checks.split(",") if name]
        messages = json.loads(entry.messages)
        rows.append(
            {
                "raw_version": int(entry.raw_version),
                "rows": int(entry.rows),
                "failed_checks": failed,
                "validated_at": entry.validated_at.isoformat(timespec="seconds"),
                "message": messages.get(failed[0], "") if failed else "",
            }
        )
    return rows


def _read_log(
    config: "RetrainConfig", columns: list[str], may_hold: Optional[Callable[["delta.DataFile"], bool]] = None
) -> Optional["pd.DataFrame"]:
    """The ``validation_log`` (those columns; with ``may_hold``, only the files it keeps, see
    :func:`delta.read_files`), or ``None`` before the first verdict."""
    uri = config.table_uri(delta.VALIDATION_LOG_TABLE)
    if not delta.exists(uri):
        return None
    return delta.read_table(uri, columns=columns) if may_hold is None else delta.read_files(uri, columns, may_hold)


def _accepted_ever(log: "pd.DataFrame") -> "pd.Series":
    """Per raw version, whether any verdict accepted it: the standing verdict (revalidate never rejects an
    accepted batch, so a later rejection cannot follow an acceptance)."""
    return log.groupby("raw_version")["accepted"].any()


class RevalidationRefused(ValueError):
    """`retrain revalidate` was asked for a version it cannot take; the message says why."""


def revalidate(config: "RetrainConfig", versions: list[int]) -> list[BatchOutcome]:
    """Validate rejected ``raw_data`` versions again with the current rules. Each verdict is appended to
    the validation log beside the first one (an audit trail); a batch that passes now is appended to
    ``validated_features``, so the next training run uses it. ``raw_data`` is never rewritten.

    Raises:
        RevalidationRefused: A version is not a batch, has not been validated yet, or was accepted already
            (checked for every version before anything is written).
    """
    raw_uri = config.table_uri(delta.RAW_TABLE)
    latest = delta.latest_version(raw_uri)
    first = min(versions, default=0) - 1  # the commits from the oldest version asked for on
    commits = {c["version"]: c for c in delta.batch_commits(raw_uri, first, latest)} if latest is not None else {}
    standing = verdicts(config)
    for version in versions:
        if version not in commits:
            known = f"v0-v{latest}" if latest is not None else "none yet"
            raise RevalidationRefused(f"raw_data v{version}: no batch landed as this version (versions: {known})")
        if version not in standing:
            raise RevalidationRefused(f"raw_data v{version}: not validated yet; the next run validates it")
        if standing[version]:
            raise RevalidationRefused(f"raw_data v{version}: accepted already; it is in validated_features")
    outcomes = []
    for version in versions:
        outcome, batch, frame = judge(config, raw_uri, commits[version])
        if outcome.accepted and batch is not None and frame is not None:
            _append_features(config, batch, frame, version)
        _log(config, outcome, revalidated=True)
        outcomes.append(outcome)
    return outcomes


def current_features(config: "RetrainConfig") -> Optional[delta.TableRef]:
    """The features table at its latest version, with the newest raw version it contains (a revalidated
    batch is appended after newer ones): the largest ``_raw_version``, found from the file statistics."""
    uri = config.table_uri(delta.FEATURES_TABLE)
    if not delta.exists(uri):
        return None
    version, newest = delta.newest_in_latest(uri, delta.RAW_VERSION_COLUMN)
    return None if newest is None else delta.TableRef(uri, version, int(newest.as_py()))


def _append_features(config: "RetrainConfig", batch: "pa.Table", frame: "pd.DataFrame", version: int) -> delta.TableRef:
    """Append an accepted batch (``frame``: its rows as validated, whose key columns give the holdout buckets
    without converting them again), unless a previous, interrupted run already did (its rows are there); returns
    the features table after it, as :func:`current_features` would."""
    import pyarrow as pa

    from retrain_assets.core import training

    uri = config.table_uri(delta.FEATURES_TABLE)
    rows = batch.append_column(delta.RAW_VERSION_COLUMN, pa.array([version] * batch.num_rows, pa.int64()))
    buckets = training.holdout_buckets(frame, config)
    rows = rows.append_column(training.bucket_column(config), pa.array(buckets, pa.int16()))
    # merge: tables from before the buckets
    latest, newest = delta.append_unless_held(
        uri, rows, delta.RAW_VERSION_COLUMN, version, {RAW_VERSION_KEY: str(version)}
    )
    return delta.TableRef(uri, latest, newest)


def _log(config: "RetrainConfig", outcome: BatchOutcome, revalidated: bool = False) -> None:
    """One verdict row; ``failed_checks`` rejected the batch, ``warned_checks`` only warned."""
    import pyarrow as pa

    failed = [name for name, verdict in outcome.checks.items() if verdict.rejects]
    warned = [name for name, verdict in outcome.checks.items() if not verdict.passed and not verdict.rejects]
    row = {
        "raw_version": pa.array([outcome.raw_version], pa.int64()),
        "rows": pa.array([outcome.rows], pa.int64()),
        "accepted": pa.array([outcome.accepted]),
        "failed_checks": pa.array([",".join(failed)]),
        "messages": pa.array([json.dumps({name: verdict.message for name, verdict in outcome.checks.items()})]),
        "validated_at": pa.array([dt.datetime.now(dt.timezone.utc)], pa.timestamp("us", tz="UTC")),
        "warned_checks": pa.array([",".join(warned)]),
        "revalidated": pa.array([revalidated]),
    }
    delta.append(config.table_uri(delta.VALIDATION_LOG_TABLE), pa.table(row), merge_schema=True)
