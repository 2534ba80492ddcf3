"""`retrain maintain`: Delta's own maintenance on the project's tables, done so that no version the project
still reads changes or goes away, and without holding ingest or runs out.

**Checkpoints.** Each table gets a checkpoint at its newest version (``create_checkpoint``), so opening it reads
one Parquet file instead of replaying its commits (delta-rs writers also write one every 100th commit).

**Commit logs stay.** Maintain never calls ``cleanup_metadata``, and its own commits skip the clean-up hook: the
project reads old commits (raw_data's batches, landing times and file hashes from v0; the labels versions fed
and their batches; validated_features time-travelled to by `retrain reproduce`), and a version whose commit
file is gone cannot be opened. delta-rs writers otherwise delete the commits before a checkpoint older than
``delta.logRetentionDuration`` (30 days) whenever they write the next one: the project's own writes never do
(``delta.keep_logs``), and for every other writer maintain sets ``delta.enableExpiredLogCleanup=false`` on those
three tables, once, under the project lock: a metadata commit
makes an append that races it fail, so runs are kept out for that moment; an ``ingest`` or ``label`` racing it
is refused and quarantined, and lands when retried. Not on validation_log and predictions: they are read at
their newest version only, and `retrain serve` keeps the predictions table open, whose appends would all fail
after a metadata change until the server restarts.

**Compaction** (``optimize.compact``) of validation_log and predictions only. A compaction changes no version's
rows (the files it replaces stay until vacuum) and its OPTIMIZE commit is no batch (``delta.batch_versions``).
Still, three tables are kept whole:

- raw_data: a batch is the files its version added (``delta.read_batch``), and the history partitions read
  every batch from v0, so the files a compaction replaced could never be vacuumed: it would double the table
  and speed up no read the project makes.
- labels: the same; the live sensor and `retrain label --feed` read its versions as batches.
- validated_features: its newest version number stands for the data (the run cache, `status --check`, the
  code sensor's run key), and an OPTIMIZE commit would give the same rows a new number: a lost code change
  would look untried again, and the run cache would miss.

The live sensor finds served days from the predictions files' ``served_at`` spans, which merged files widen:
after a compaction it may compute a day that served nothing (an empty day, no trigger).

**Vacuum** (lite: only files that a commit removed; files no commit names yet, such as those of an append in
flight, are never touched) deletes the files removed more than ``retention_hours`` ago. A version reads no
file removed at or before it, so a needed version stays readable as long as the retention reaches back to the
first commit after it that removed files. Per table, the oldest version the project still reads is the oldest
of these:

- raw_data, labels: the first (see above);
- validated_features: the oldest features version a registered model version was trained on (reproduce);
- every table: the version that was the newest ``runs.max_runtime_minutes`` ago (a run may still read it).

The shortest retention is the age of that first later removing commit, in hours rounded up, plus one hour (an
operation stamps its removals when it plans, before it commits, and clocks differ); with no such commit, one
hour. That is the default; a shorter ``--retention-hours`` is refused before anything is written, naming the
table, the version, its commit time and the retention asked. It goes below Delta's own minimum
(``delta.deletedFileRetentionDuration``, 7 days) on purpose: checkpoints drop removals older than that, and lite
vacuum leaves the files of dropped removals in place for good. Time travel by other tools needs a retention
as long as it reaches back.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from retrain_assets.core import delta
from retrain_assets.core.locking import ProjectBusy, project_lock

if TYPE_CHECKING:
    from deltalake import PostCommitHookProperties

    from retrain_assets.core.config import RetrainConfig

TABLES = (
    delta.RAW_TABLE,
    delta.FEATURES_TABLE,
    delta.VALIDATION_LOG_TABLE,
    delta.PREDICTIONS_TABLE,
    delta.LABELS_TABLE,
)
COMPACTED = (delta.VALIDATION_LOG_TABLE, delta.PREDICTIONS_TABLE)
KEPT_WHOLE = {
    delta.RAW_TABLE: "its batches are read by version",
    delta.FEATURES_TABLE: "its version stands for the data",
    delta.LABELS_TABLE: "its batches are read by version",
}
READ_FROM_FIRST = {
    delta.RAW_TABLE: "the history partitions read every batch from the first",
    delta.LABELS_TABLE: "the live sensor and `retrain label --feed` read its versions as batches",
}
KEEP_LOGS = {"delta.enableExpiredLogCleanup": "false"}  # on the tables whose old versions are read
LOGS_KEPT_ON = (delta.RAW_TABLE, delta.FEATURES_TABLE, delta.LABELS_TABLE)
MARGIN_HOURS = 1
_REMOVE_NOTHING = ("CREATE TABLE", "SET TBLPROPERTIES", "VACUUM START", "VACUUM END")  # besides appends


class RetentionRefused(ValueError):
    """``--retention-hours`` would delete files a version the project still reads needs; nothing was written."""


@dataclass(frozen=True)
class Need:
    """The oldest version of a table the project may still read, and why."""

    version: int
    committed_at: dt.datetime
    why: str


@dataclass(frozen=True)
class VacuumPlan:
    """What vacuum may do on one table: the retention it uses, the shortest that keeps ``need`` readable (set
    by ``removal``, the first commit after it that removed files, if any) and how many files it would delete."""

    retention_hours: int
    shortest_hours: int
    need: Need
    removal: Optional[dict[str, Any]]
    files: int


@dataclass
class TableMaintenance:
    """One table before and after `retrain maintain`; ``done`` says what it did, in words."""

    table: str
    uri: str
    version: Optional[int] = None  # None: no table yet
    files: int = 0
    vacuum: Optional[VacuumPlan] = None
    done: list[str] = field(default_factory=list)
    version_after: Optional[int] = None
    files_after: int = 0

    def describe(self) -> str:
        if self.version is None:
            return f"{self.table}: no table yet"
        head = f"{self.table}: v{self.version} -> v{self.version_after}, {self.files} -> {self.files_after} files"
        return "; ".join([head, *self.done])


def committed_at(entry: dict[str, Any]) -> dt.datetime:
    """When a commit was written (not the landing time ``--as-of`` records: vacuum goes by the clock)."""
    return dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc)


def plan(config: "RetrainConfig", vacuum: bool = True, retention_hours: Optional[int] = None) -> list[TableMaintenance]:
    """Each table as it stands and, with ``vacuum``, what vacuum may delete there; writes nothing.

    Raises:
        RetentionRefused: ``retention_hours`` is shorter than a table needs (every table is checked first).
    """
    now = dt.datetime.now(dt.timezone.utc)
    tables, refused = [], []
    trained_on = _registered_features_versions(config)
    for name in TABLES:
        uri = config.table_uri(name)
        summary = delta.table_summary(uri)
        table = TableMaintenance(name, uri)
        if summary is not None:
            table.version, table.files = summary["version"], summary["files"]
            if vacuum:
                table.vacuum = _plan_vacuum(config, name, uri, retention_hours, now, trained_on)
        if table.vacuum is not None and table.vacuum.retention_hours < table.vacuum.shortest_hours:
            refused.append(_refusal(name, table.vacuum, now))
        tables.append(table)
    if refused:
        raise RetentionRefused(
            f"--retention-hours {retention_hours} is too short; nothing was changed:\n" + "\n".join(refused)
        )
    return tables


def maintain(config: "RetrainConfig", tables: list[TableMaintenance]) -> list[TableMaintenance]:
    """Carry out ``tables`` (from :func:`plan`): keep the commit logs, compact, vacuum, then checkpoint each
    table at its newest version. Only keeping the logs takes the project lock, and only the first time."""
    from deltalake import DeltaTable
    from deltalake.exceptions import CommitFailedError

    hooks = delta.keep_logs()
    present = [table for table in tables if table.version is not None]
    _keep_logs(config, [table for table in present if table.table in LOGS_KEPT_ON], hooks)
    for table in present:
        if table.table in COMPACTED:
            try:
                metrics = DeltaTable(table.uri).optimize.compact(post_commithook_properties=hooks)
                merged, into = metrics["numFilesRemoved"], metrics["numFilesAdded"]
                table.done.append(f"compacted {merged} files into {into}" if merged else "nothing to compact")
            except CommitFailedError as exc:  # a metadata change won the race; the files it wrote stay unnamed
                table.done.append(f"not compacted ({exc}); the next maintain compacts it")
        else:
            table.done.append(f"kept whole ({KEPT_WHOLE[table.table]})")
        table.done.append(_vacuum(table, hooks))
        newest = DeltaTable(table.uri)
        newest.create_checkpoint()
        table.done.append(f"checkpoint v{newest.version()}")
        summary = delta.table_summary(table.uri)
        assert summary is not None
        table.version_after, table.files_after = summary["version"], summary["files"]
    return tables


def oldest_needed(
    config: "RetrainConfig", table: str, commits: list[dict[str, Any]], now: dt.datetime, trained_on: dict[int, str]
) -> Need:
    """The oldest version of ``table`` the project may still read (see the module docstring). ``commits`` run
    oldest first from at least that version; ``trained_on`` maps a features version to a model trained on it."""
    started = now - dt.timedelta(minutes=config.runs.max_runtime_minutes)
    opened = [commit for commit in commits if committed_at(commit) <= started]
    needs = [(commits[0]["version"], READ_FROM_FIRST[table])] if table in READ_FROM_FIRST else []
    if table == delta.FEATURES_TABLE:
        needs += [
            (version, f"model v{model} was trained on it (`retrain reproduce {model}` reads it)")
            for version, model in trained_on.items()
        ]
    minutes = f"{config.runs.max_runtime_minutes:g}"
    running = f"a run started in the last {minutes} min (runs.max_runtime_minutes) may still read it"
    needs.append(((opened[-1] if opened else commits[0])["version"], running))
    version, why = min(needs, key=lambda need: need[0])  # on a tie, the table's own reason
    commit = next((commit for commit in commits if commit["version"] >= version), commits[0])
    return Need(version, committed_at(commit), why)


def shortest_retention(commits: list[dict[str, Any]], need: Need, now: dt.datetime) -> tuple[int, Optional[dict]]:
    """The shortest retention, in hours, that keeps ``need`` readable, and the commit that sets it: the first
    after ``need`` that may have removed files (``None``: no such commit, one hour)."""
    removal = next((commit for commit in commits if commit["version"] > need.version and removes_files(commit)), None)
    if removal is None:
        return MARGIN_HOURS, None
    age = max(0.0, (now - committed_at(removal)).total_seconds() / 3600)
    return math.ceil(age) + MARGIN_HOURS, removal


def removes_files(entry: dict[str, Any]) -> bool:
    """Whether a commit may have removed data files: any commit but an append, a table property change and a
    vacuum (an operation this project does not know counts as removing)."""
    if entry.get("operation") == "WRITE":
        return entry.get("operationMetrics", {}).get("num_removed_files", 0) > 0
    return entry.get("operation") not in _REMOVE_NOTHING


def _plan_vacuum(
    config: "RetrainConfig",
    table: str,
    uri: str,
    retention_hours: Optional[int],
    now: dt.datetime,
    trained_on: Callable[[], dict[int, str]],
) -> Optional[VacuumPlan]:
    """What vacuum may delete from ``table``; ``None`` when no commit removed a file that is still there."""
    from deltalake import DeltaTable

    if not DeltaTable(uri).vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False):
        return None
    every = table in READ_FROM_FIRST or table == delta.FEATURES_TABLE
    since = None if every else now - dt.timedelta(minutes=config.runs.max_runtime_minutes)
    commits = _commits(uri, since)
    need = oldest_needed(config, table, commits, now, trained_on() if table == delta.FEATURES_TABLE else {})
    shortest, removal = shortest_retention(commits, need, now)
    retention = shortest if retention_hours is None else retention_hours
    files = 0
    if retention >= shortest:
        files = len(DeltaTable(uri).vacuum(retention_hours=retention, dry_run=True, enforce_retention_duration=False))
    return VacuumPlan(retention, shortest, need, removal, files)


def _refusal(table: str, plan: VacuumPlan, now: dt.datetime) -> str:
    need, removal = plan.need, plan.removal
    line = f"  {table}: v{need.version} (committed {_utc(need.committed_at)}) is still read: {need.why}"
    if removal is not None:
        age = (now - committed_at(removal)).total_seconds() / 3600
        line += (
            f"; v{removal['version']} ({removal.get('operation')}, committed {_utc(committed_at(removal))}, "
            f"{age:.1f} h ago) replaced files it reads"
        )
    return line + f"; keep at least {plan.shortest_hours} h, or leave --retention-hours out"


def _keep_logs(config: "RetrainConfig", tables: list[TableMaintenance], hooks: "PostCommitHookProperties") -> None:
    """Set :data:`KEEP_LOGS` where it is not set yet, under the project lock (see the module docstring); a busy
    project leaves it to the next maintain."""
    from deltalake import DeltaTable

    missing = [t for t in tables if not KEEP_LOGS.items() <= DeltaTable(t.uri).metadata().configuration.items()]
    for table in tables:
        if table not in missing:
            table.done.append("commit logs kept")
    if not missing:
        return
    try:
        with project_lock(config.dagster_home, command="retrain maintain"):
            for table in missing:
                DeltaTable(table.uri).alter.set_table_properties(KEEP_LOGS, post_commithook_properties=hooks)
                table.done.append("commit logs kept from now on (delta.enableExpiredLogCleanup=false)")
    except ProjectBusy as exc:
        for table in missing:
            table.done.append(f"commit logs not protected yet ({exc}); the next maintain does it")


def _vacuum(table: TableMaintenance, hooks: "PostCommitHookProperties") -> str:
    """Vacuum as planned: lite, with the planned retention (Delta's own minimum is this module's rule instead)."""
    from deltalake import DeltaTable

    plan = table.vacuum
    if plan is None:
        return "vacuum: nothing to delete"
    if not plan.files:
        return f"vacuum: nothing older than {plan.retention_hours} h to delete"
    deleted = DeltaTable(table.uri).vacuum(
        retention_hours=plan.retention_hours,
        dry_run=False,
        enforce_retention_duration=False,
        post_commithook_properties=hooks,
    )
    return f"vacuum: {len(deleted)} files deleted (retention {plan.retention_hours} h)"


def _commits(uri: str, since: Optional[dt.datetime]) -> list[dict[str, Any]]:
    """Commit log entries, oldest first: all of them, or from the newest one committed by ``since`` on (read
    newest first in growing pages, so that a table with a commit per flush is not read whole)."""
    from deltalake import DeltaTable

    if since is None:
        return delta.history(uri)
    limit = 100
    while True:
        table = DeltaTable(uri)
        entries = sorted(table.history(limit), key=lambda entry: entry["version"])
        if DeltaTable(uri).version() != table.version():  # a commit landed while reading (see delta.history)
            continue
        older = [entry for entry in entries if committed_at(entry) <= since]
        if older or len(entries) < limit:
            start = older[-1]["version"] if older else entries[0]["version"]
            return [entry for entry in entries if entry["version"] >= start]
        limit *= 4


def _registered_features_versions(config: "RetrainConfig") -> Callable[[], dict[int, str]]:
    """Reads, when called, each validated_features version a registered model version was trained on, with the
    oldest such model version (MLflow is imported only then: most tables have nothing to vacuum)."""

    def read() -> dict[int, str]:
        from retrain_assets.core.registry import Registry

        registry = Registry(config)
        found: dict[int, str] = {}
        for version in registry.client.search_model_versions(f"name = '{registry.name}'"):
            tag = version.tags.get("features_version")
            if tag is not None and (int(tag) not in found or int(version.version) < int(found[int(tag)])):
                found[int(tag)] = str(version.version)
        return found

    return read


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
