"""What `retrain status` and `retrain dag` read: the latest checks, stale assets, the last run, the project
summary and the asset lineage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from retrain_assets.app.project import ProjectSource, as_loaded
from retrain_assets.core import batches, delta, landing
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import TRIGGER_TAG

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

    from retrain_assets.core.modelstate import CodeState
    from retrain_assets.core.registry import Registry


class CheckMark(NamedTuple):
    """An asset check as the lineage shows it: a blocking one stops the run when it fails."""

    name: str
    blocking: bool


class LineageAsset(NamedTuple):
    """One asset of the lineage in plain data, so :mod:`render` draws it without knowing Dagster."""

    name: str
    group: str
    upstream: tuple[str, ...]
    checks: tuple[CheckMark, ...]


def asset_lineage(defs: "Definitions") -> list[LineageAsset]:
    """Every asset in ``defs`` with its upstream assets and checks, upstream first (ties: the group met first,
    then the name, so a group's chain reads unbroken).

    It lives here, beside the other readers of the definitions, rather than in the CLI, so it is a plain
    function a test can call; and it reads only public Dagster API: the resolved asset specs for keys,
    groups and dependencies, and ``AssetsDefinition.check_specs`` for the checks (the resolved asset graph's
    check specs are not public in Dagster 1.13).
    """
    from dagster import AssetsDefinition

    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    checks: dict[str, list[CheckMark]] = {name: [] for name in specs}
    for definition in [*(defs.assets or []), *(defs.asset_checks or [])]:
        if isinstance(definition, AssetsDefinition):
            for check in definition.check_specs:
                target = check.asset_key.to_user_string()
                if target in checks:
                    checks[target].append(CheckMark(check.name, check.blocking))
    upstream = {
        name: tuple(sorted({dep.asset_key.to_user_string() for dep in spec.deps} & specs.keys()))
        for name, spec in specs.items()
    }
    groups = {name: spec.group_name or "default" for name, spec in specs.items()}
    return [
        LineageAsset(name, groups[name], upstream[name], tuple(checks[name]))
        for name in _upstream_first(upstream, groups)
    ]


def _upstream_first(upstream: dict[str, tuple[str, ...]], groups: dict[str, str]) -> list[str]:
    """A topological order of ``upstream`` (Kahn's), taking among the ready assets the one whose group came up
    first, then by name; Dagster forbids cycles, so every asset is placed."""
    group_rank: dict[str, int] = {}
    placed: list[str] = []
    waiting = {name: set(parents) for name, parents in upstream.items()}
    while waiting:
        ready = [name for name, parents in waiting.items() if not parents]
        for name in sorted(ready):
            group_rank.setdefault(groups[name], len(group_rank))
        chosen = min(ready, key=lambda name: (group_rank[groups[name]], name))
        placed.append(chosen)
        del waiting[chosen]
        for parents in waiting.values():
            parents.discard(chosen)
    return placed


def latest_checks(instance: "DagsterInstance", defs: "Definitions") -> list[dict[str, Any]]:
    """The newest evaluation of every asset check in ``defs`` (a check the latest run planned but did not
    reach is left out)."""
    from dagster import AssetCheckEvaluation

    checks = []
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=lambda k: k.to_user_string()):
        record = instance.get_latest_asset_check_evaluation_record(key)
        # no record, or planned in the latest run and not evaluated
        if record is None or not isinstance(record.evaluation, AssetCheckEvaluation):
            continue
        evaluation = record.evaluation
        checks.append(
            {
                "name": key.name,
                "asset": key.asset_key.to_user_string(),
                "passed": evaluation.passed,
                "blocking": bool(evaluation.blocking),
                "severity": evaluation.severity.value,
                "message": evaluation.description,
                "run_id": record.run_id,
            }
        )
    return checks


def stale_assets(instance: "DagsterInstance", defs: "Definitions") -> dict[str, list[str]]:
    """Assets that are stale, with why: Dagster's own causes (a new upstream data version, a changed code
    version, which includes the params hash; read through :func:`compat.stale_causes`), passed on
    downstream, since a stale model also makes the report and the production decision built on it stale
    (Dagster 1.13 reports only the first asset)."""
    from retrain_assets.app.compat import stale_causes

    graph = defs.resolve_asset_graph()
    own = stale_causes(instance, graph)
    stale: dict[str, list[str]] = {}
    for key in graph.toposorted_asset_keys:
        causes = set(own.get(key, ()))
        causes |= {
            f"upstream {p.to_user_string()} is stale" for p in graph.get(key).parent_keys if p.to_user_string() in stale
        }
        if causes:
            stale[key.to_user_string()] = sorted(causes)
    return stale


def _latest_report(instance: "DagsterInstance") -> Optional[str]:
    """Path of the newest evaluation report page (from the latest ``evaluation_report`` materialization)."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey("evaluation_report"))
    materialization = event.asset_materialization if event is not None else None
    metadata = materialization.metadata if materialization is not None else {}
    return str(metadata["report_path"].value) if "report_path" in metadata else None  # a MetadataValue.path


def last_run(instance: "DagsterInstance") -> Optional[dict[str, Any]]:
    """The newest run of the retraining job: status, how it started, the raw_data version it read, what its
    triggers decided and, if it failed, why (the failed step and its exception). A part the run never got
    to (a decision, a version) is ``None``."""
    from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

    from retrain_assets.core.alerts import step_error
    from retrain_assets.core.names import DELTA_VERSION_TAG
    from retrain_assets.defs.assets.model import retrain_decision
    from retrain_assets.defs.jobs import RETRAIN_JOB

    runs = instance.get_runs(RunsFilter(job_name=RETRAIN_JOB), limit=1)
    if not runs:
        return None
    run = runs[0]

    def events(kind: "DagsterEventType") -> list:
        records = instance.get_records_for_run(run.run_id, of_type=kind).records
        return [record.event_log_entry.dagster_event for record in records]

    version = run.tags.get(DELTA_VERSION_TAG)
    if version is None:  # a manual run reads the latest version; its raw_data materialization says which
        landed = [e.step_materialization_data.materialization for e in events(DagsterEventType.ASSET_MATERIALIZATION)]
        raw = [m.metadata["delta_version"].value for m in landed if m.asset_key.to_user_string() == "raw_data"]
        version = raw[0] if raw else None
    error = None
    if run.status == DagsterRunStatus.FAILURE:  # without a failed step (e.g. interrupted), the run says why itself
        error = step_error(events(DagsterEventType.STEP_FAILURE)) or next(
            (event.message for event in events(DagsterEventType.RUN_FAILURE) if event.message), "failed"
        )
    decided = retrain_decision(instance, run)
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "trigger": run.tags.get(TRIGGER_TAG, "manual"),
        "fired": decided["fired"] if decided else None,
        "reason": decided["reason"] if decided else None,
        "delta_version": int(version) if version is not None else None,
        "error": error,
    }


def model_code_state(config: RetrainConfig, registry: Optional["Registry"] = None) -> "CodeState":
    """Where the model's current code and params stand (:func:`modelstate.code_state`), against the registry
    as :func:`registry_snapshot` has it, so `retrain status --check` imports neither Dagster nor MLflow while
    the snapshot can be trusted.

    Raises:
        UserCodeError: the model's code named in retrain.yaml cannot be located.
    """
    return _code_state(config, registry_snapshot(config, registry))


def _code_state(config: RetrainConfig, snap: Optional[dict[str, Any]]) -> "CodeState":
    """:func:`modelstate.code_state` of the current code against ``snap`` (``None``: no store yet, nothing
    trained)."""
    from retrain_assets.core import modelstate
    from retrain_assets.core.training import model_code

    code = model_code(config)
    features = delta.latest_version(config.table_uri(delta.FEATURES_TABLE))
    return modelstate.code_state(snap or {"champion": None}, code, features)


def registry_snapshot(config: RetrainConfig, registry: Optional["Registry"] = None) -> Optional[dict[str, Any]]:
    """The registry's side of status (:func:`modelstate.snapshot`): without ``registry``, the kept snapshot
    when it can be trusted; otherwise read from MLflow and kept. ``None`` while there is no local store and no
    tracking server (nothing trained yet)."""
    from retrain_assets.core import modelstate

    snap = modelstate.remembered(config) if registry is None else None
    if snap is not None:
        return snap
    if registry is None and config.mlflow.tracking_uri is None and not (config.mlflow_dir / "mlflow.db").exists():
        return None
    if registry is None:
        from retrain_assets.core.registry import Registry

        registry = Registry(config)
    stamp = modelstate.store_stamp(config)  # before reading: a write meanwhile leaves the snapshot untrusted
    snap = modelstate.snapshot(registry, delta.latest_version(config.table_uri(delta.FEATURES_TABLE)))
    modelstate.remember(config, snap, stamp)
    return snap


def current_code(config: RetrainConfig, snap: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The ``current_code`` block of status, against the registry snapshot status read (see
    :func:`model_code_state`); ``None`` before the first champion."""
    from retrain_assets.core.usercode import UserCodeError

    try:
        state = _code_state(config, snap)
    except UserCodeError as exc:
        return {"code_hash": None, "state": "unreadable", "version": None, "reason": str(exc), "changes": []}
    return None if state.state == "no_champion" else state.as_dict()


def project_status(config: RetrainConfig, project: ProjectSource, instance: "DagsterInstance") -> dict[str, Any]:
    """Where things stand: raw table, last processed version, files refused at ingest, champion, last
    decision, checks, the last run and its trigger, stale assets, and recent events (alerts, rollbacks).
    ``project`` is the loaded project, or its config path, whose definitions are then built from ``config``."""
    from retrain_assets.core.alerts import read_alerts

    defs = as_loaded(project, config).defs

    raw = delta.table_summary(config.table_uri(delta.RAW_TABLE))
    registry_status: dict[str, Any] = {"champion": None, "last_decision": None}
    snap = registry_snapshot(config)  # MLflow is read (and its import paid) only after a registry write
    if snap is not None:
        registry_status = {**snap["status"], "current_code": current_code(config, snap)}
    from retrain_assets.core.locking import current_holder

    refusals, events = landing.read_refusals(config), read_alerts(config, limit=10)  # torn lines skipped, counted
    holder = current_holder(config.dagster_home)
    return {
        "raw_table": {
            "uri": config.table_uri(delta.RAW_TABLE),
            "version": raw["version"] if raw else None,
            "rows": raw["rows"] if raw else 0,
        },
        "last_processed_version": batches.last_processed_version(config),
        "rejected_batches": batches.rejected_batches(config),
        "refused_files": refusals.records,
        **registry_status,
        "latest_checks": latest_checks(instance, defs),
        "last_run": last_run(instance),
        "stale_assets": stale_assets(instance, defs),
        "events": events.records,
        "state_warnings": [
            text for text in (refusals.warning(config.refusals_log), events.warning(config.alerts_log)) if text
        ],
        "last_report": _latest_report(instance),
        "lock": None
        if holder is None
        else {
            "pid": holder.pid,
            "host": holder.host,
            "command": holder.command,
            "since": holder.since.isoformat(),
            "minutes": round(holder.age_seconds() / 60, 1),
            "description": holder.describe(),
        },
        "storage": {
            "home": str(config.home),
            "mlflow_tracking_uri": config.tracking_uri,
            "dagster_home": str(config.dagster_home),
            "reports": str(config.reports_dir),
            "quarantine": str(config.quarantine_dir),
        },
    }
