"""Running the job in process against the project's instance: materialize, resume, backfill, rollback."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.app.instance import caller, quiet_libraries
from retrain_assets.app.project import LoadedProject, ProjectSource, as_loaded
from retrain_assets.core import batches, landing
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.names import BACKFILL_TAG, LAUNCHER_TAG, RETRY_TAG, TRIGGER_TAG

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

    from retrain_assets.core.locking import Deadline

# The CLI prints its own summary of a run; Dagster's full event log stays in the instance (and the UI).
_QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    message: str
    blocking: bool
    severity: str = "ERROR"

    @property
    def stopped_the_run(self) -> bool:
        """A blocking check fails the run only with ERROR severity (WARN: a batch rejected among accepted ones)."""
        return self.blocking and not self.passed and self.severity == "ERROR"


@dataclass
class RunOutcome:
    """What one run of the retraining job did, in the terms the CLI and the demo print."""

    run_id: str
    success: bool
    raw_version: Optional[int] = None
    checks: dict[str, CheckOutcome] = field(default_factory=dict)
    evaluation: Optional[dict[str, Any]] = None
    decision: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    drift_scores: Optional[dict[str, dict[str, Any]]] = None  # per feature, when the drift check measured any
    retrain: Optional[dict[str, Any]] = None  # what candidate_model decided: {"retrain", "fired", "reason"}
    live: Optional[dict[str, Any]] = None  # a run of the live job: the live_performance day's metadata

    @property
    def trigger(self) -> str:
        return self.tags.get(TRIGGER_TAG, "manual")

    @property
    def fired(self) -> str:
        """Kinds of triggers that fired, or ``none`` (empty when the run stopped before deciding)."""
        return self.retrain["fired"] if self.retrain else ""

    @property
    def reason(self) -> Optional[str]:
        """Why the run retrained or not, in words (``None`` when it stopped before deciding)."""
        return self.retrain["reason"] if self.retrain else None

    @property
    def blocking_failures(self) -> dict[str, CheckOutcome]:
        return {name: check for name, check in self.checks.items() if check.stopped_the_run}

    def describe(self, metric: str) -> str:
        """:func:`render.describe_run`; kept as a method for scripts (``bench/``) and test failure messages,
        which print an outcome they hold as ``outcome.describe(metric)``."""
        from retrain_assets.app.render import describe_run

        return describe_run(self, metric)


def materialize(
    project: ProjectSource,
    instance: "DagsterInstance",
    tags: Optional[dict[str, str]] = None,
    assets: Optional[list[str]] = None,
    job_name: Optional[str] = None,
    partition_key: Optional[str] = None,
) -> RunOutcome:
    """Run the retraining job (or the job ``job_name``, a sensor's other target: the ``live`` job's day
    ``partition_key``) once, in process, for a caller that holds the project lock (or needs none: a test):
    every asset, or only ``assets`` (those not run are read from the IO manager's storage, as Dagster does
    for a subset run). A failing blocking check gives ``success=False``."""
    from dagster import AssetKey

    project = as_loaded(project)
    quiet_libraries()
    from retrain_assets.defs.jobs import RETRAIN_JOB

    job = _retrain_job(project.defs) if job_name in (None, RETRAIN_JOB) else project.defs.resolve_job_def(job_name)
    tags = {**(tags or {}), LAUNCHER_TAG: "retrain"}
    selection = [AssetKey(name) for name in assets] if assets is not None else None
    with _deadline(project.config, f"the {job.name} run") as deadline:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=tags,
            run_config=_QUIET_LOGGERS,
            asset_selection=selection,
            partition_key=partition_key,
        )
    return _outcome(result, instance, result.output_for_node, deadline)


DATA_STAGE = ("raw_data", "validated_features")
MODEL_STAGE = ("candidate_model", "evaluation_report", "prod_model")


@dataclass
class MaterializePlan:
    """What `retrain materialize` runs, as `dvc repro` decides it: ``why`` each asset it runs is stale
    (upstream first; empty when nothing is), and ``skipped`` with why not."""

    why: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def run(self) -> list[str]:
        return list(self.why)


def plan_materialize(project: LoadedProject, instance: "DagsterInstance") -> MaterializePlan:
    """Which stages of the retraining job are stale. The data stage (``raw_data``, ``validated_features``)
    is stale by Dagster's own rules: never materialized, a newer ``raw_data`` data version (every ingest
    reports one) or another code version (the hash of the validation rules). The model stage is stale when
    the data stage runs, or when the model's code or params are untried (see :func:`status.model_code_state`),
    so a change that already lost on this data is not run again. Stages that are not stale are skipped and
    their stored values used."""
    from dagster import AssetKey

    from retrain_assets.app.compat import stale_causes
    from retrain_assets.app.status import model_code_state
    from retrain_assets.core.registry import Registry

    features = AssetKey("validated_features")
    data, model = list(DATA_STAGE), list(MODEL_STAGE)
    if instance.get_latest_materialization_event(features) is None:
        return MaterializePlan(dict.fromkeys(data + model, "never materialized"))
    causes = stale_causes(instance, project.defs.resolve_asset_graph())
    data_causes = sorted(causes.get(AssetKey("raw_data"), set()) | causes.get(features, set()))
    if data_causes:
        why = "; ".join(data_causes)
        return MaterializePlan({**dict.fromkeys(data, why), **dict.fromkeys(model, "upstream runs")})
    fresh = "up to date: no new raw_data version and the same validation rules since it last ran"
    skipped = dict.fromkeys(data, fresh)
    state = model_code_state(project.config, Registry(project.config))
    if state.stale:
        why = "; ".join(message for _, message in state.changes) or state.reason or state.state
        return MaterializePlan(dict.fromkeys(model, why), skipped)
    if state.state == "champion":
        done = f"up to date: the champion v{state.version} was built from the current code and params"
    else:
        done = f"the current code and params were tried as v{state.version} on this data and lost: {state.reason}"
    return MaterializePlan({}, {**skipped, **dict.fromkeys(model, done)})


def _deadline(config: RetrainConfig, what: str) -> contextlib.AbstractContextManager["Deadline"]:
    """``runs.max_runtime_minutes`` for an in-process run (see :func:`locking.run_deadline`)."""
    from retrain_assets.core.locking import run_deadline

    return run_deadline(config.runs.max_runtime_seconds, what)


def _retrain_job(defs: "Definitions") -> Any:
    """The retraining job, every step in this process."""
    from dagster import in_process_executor

    from retrain_assets.defs.jobs import RETRAIN_JOB

    return defs.resolve_job_def(RETRAIN_JOB).with_executor_def(in_process_executor)


def retrain_job_for(config_path: str) -> Any:
    """The retraining job of the project at ``config_path``, every step in this process: what Dagster
    reconstructs a re-executed run from (:func:`resume`), so it starts from the path, as a new process does.
    The process re-executing holds the project lock (the tick), so the run does not take it."""
    from retrain_assets.defs.build import build_defs

    return _retrain_job(build_defs(config_path, hold_project_lock=False))


def resume(project: LoadedProject, instance: "DagsterInstance", run_id: str) -> RunOutcome:
    """Re-execute a failed run from its failed steps, in process (Dagster's re-execution "from failure"):
    the steps that finished are not run again; their outputs are loaded from the IO manager's storage."""
    from dagster import ReexecutionOptions, build_reconstructable_job, execute_job

    quiet_libraries()
    parent = instance.get_run_by_id(run_id)
    if parent is None:
        raise ValueError(f"cannot resume run {run_id}: the Dagster instance has no such run")
    tags = {
        key: value for key, value in parent.tags.items() if not key.startswith("dagster/") or key == "dagster/run_key"
    }
    job = build_reconstructable_job(
        "retrain_assets.app.execution", "retrain_job_for", reconstructable_args=(str(project.path),)
    )
    options = ReexecutionOptions.from_failure(run_id, instance)
    with _deadline(project.config, f"the retry of run {run_id}") as deadline:
        result = execute_job(
            job, instance, run_config=_QUIET_LOGGERS, tags={**tags, RETRY_TAG: run_id}, reexecution_options=options
        )
    # asset values are read by asset key, as the IO manager stored them
    return _outcome(result, instance, lambda node: project.defs.load_asset_value(node, instance=instance), deadline)


def _outcome(result: Any, instance: "DagsterInstance", output: Any, deadline: "Deadline") -> RunOutcome:
    """What the CLI reports of a finished in-process run; ``output(node)`` reads an asset's value. A run the
    deadline stopped outside a step has no step error: the deadline's message is its error."""
    from retrain_assets.core.names import DELTA_VERSION_TAG, DRIFT_CHECK
    from retrain_assets.defs.assets.live import LIVE_PERFORMANCE
    from retrain_assets.defs.assets.model import retrain_decision

    run = instance.get_run_by_id(result.run_id)
    if run is None:
        raise RuntimeError(f"run {result.run_id} finished but the Dagster instance has no record of it")
    outcome = RunOutcome(run_id=result.run_id, success=result.success, tags=dict(run.tags))
    for evaluation in result.get_asset_check_evaluations():
        outcome.checks[evaluation.check_name] = CheckOutcome(
            evaluation.passed, evaluation.description or "", bool(evaluation.blocking), evaluation.severity.value
        )
        if evaluation.check_name == DRIFT_CHECK and "scores" in evaluation.metadata:
            outcome.drift_scores = evaluation.metadata["scores"].value
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == "raw_data":
            outcome.raw_version = int(materialization.metadata["delta_version"].value)
        if materialization.asset_key.to_user_string() == LIVE_PERFORMANCE:
            outcome.live = {key: value.value for key, value in materialization.metadata.items()}
    if outcome.raw_version is None and DELTA_VERSION_TAG in outcome.tags:  # a resumed run skips raw_data
        outcome.raw_version = int(outcome.tags[DELTA_VERSION_TAG])
    outputs = {node: output(node) for node in ("evaluation_report", "prod_model") if _has_output(result, node)}
    report = outputs.get("evaluation_report")  # a core.decision.EvaluationReport
    outcome.evaluation = report.as_dict() if report is not None else None
    if outcome.raw_version is None and report is not None:  # a run of the model stage only
        outcome.raw_version = report.delta_version
    outcome.decision = outputs.get("prod_model")
    outcome.retrain = retrain_decision(instance, run)
    outcome.error = _first_error(result) or (deadline.stopped if not result.success else None)
    return outcome


def _first_error(result: Any) -> Optional[str]:
    """The first failed step and the user code's exception (not Dagster's wrapper around it)."""
    from retrain_assets.core.alerts import step_error

    return step_error([event for event in result.all_events if event.is_step_failure])


def _has_output(result: Any, node: str) -> bool:
    return any(e.is_successful_output and e.step_key == node for e in result.all_events)


def ingest(
    config: RetrainConfig,
    instance: "DagsterInstance",
    path: Path,
    landed_at: Optional["dt.datetime"] = None,
    metadata: Optional[dict[str, str]] = None,
) -> "landing.IngestResult":
    """`retrain ingest` for one file (and `retrain label --feed` for its batch, with the commit ``metadata``
    saying what it covered): land it in Delta, then tell Dagster that ``raw_data`` has a new data version, so
    the UI shows what depends on it as stale until the sensor's run catches up."""
    from dagster import AssetMaterialization

    result = landing.ingest_file(config, path, landed_at, metadata)
    materialization = AssetMaterialization(
        "raw_data",
        description=f"{result.source} landed as Delta version {result.version}",
        metadata={"delta_version": result.version, "rows_added": result.rows, "source_file": result.source},
        tags={"dagster/data_version": str(result.version)},
    )
    instance.report_runless_asset_event(materialization)
    return result


def feed_labels(config: RetrainConfig, instance: "DagsterInstance") -> str:
    """`retrain label --feed`: the predictions labelled since the last feed land as one ``raw_data`` batch
    (:mod:`core.feedback`); what it did, in a line. The caller holds the project lock."""
    from retrain_assets.core import feedback

    batch = feedback.collect(config)
    if batch.table is None:
        return f"nothing to feed: {batch.reason}"
    result = ingest(config, instance, feedback.write(config, batch), metadata=batch.metadata)
    return (
        f"fed {result.rows} labelled predictions (labels versions {batch.after + 1} to {batch.through}) "
        f"as raw_data version {result.version} ({result.source})"
    )


@dataclass
class PartitionOutcome:
    partition: str
    success: bool
    row: Optional[dict[str, Any]] = None
    error: Optional[str] = None


def backfill(
    project: ProjectSource,
    instance: "DagsterInstance",
    start: "dt.date",
    end: "dt.date",
    progress: Any = None,
    run_cache: bool = True,
) -> tuple[list[PartitionOutcome], Optional[list[dict[str, Any]]]]:
    """Run the ``history`` job once over every partition starting in ``[start, end]``, in process, then the
    ``backtest`` summary; ``progress(index, total, outcome)`` is called for each partition once the run ends.
    The run is the one a UI backfill launches (``historical_model`` has a single-run backfill policy: the
    partition range travels in Dagster's range tags), so both take one code path and show the same
    per-partition materializations and ``window_validated`` checks. ``run_cache=False`` trains every partition
    (see ``historical_model``). The caller holds the project lock (or needs none: a test), as for
    :func:`materialize`."""
    import uuid

    from dagster import DagsterEventType

    from retrain_assets.defs.assets.history import backtest_row
    from retrain_assets.defs.jobs import BACKTEST_JOB, HISTORY_JOB, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

    project = as_loaded(project)
    quiet_libraries()
    defs = project.defs
    job = defs.resolve_job_def(HISTORY_JOB)
    partitions = job.partitions_def
    if partitions is None:
        raise RuntimeError(f"the {HISTORY_JOB} job has no partitions (see jobs.history_jobs)")
    keys = [key for key in partitions.get_partition_keys() if start <= dt.date.fromisoformat(key[:10]) <= end]
    if not keys:
        return [], None
    tags = {
        BACKFILL_TAG: uuid.uuid4().hex[:8],
        TRIGGER_TAG: "backfill",
        PARTITION_RANGE_START_TAG: keys[0],
        PARTITION_RANGE_END_TAG: keys[-1],
    }
    run_config = {**_QUIET_LOGGERS, "ops": {"historical_model": {"config": {"run_cache": run_cache}}}}
    with _deadline(project.config, f"the history run of {keys[0]} to {keys[-1]}"):
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags, run_config=run_config)
    done: dict[str, PartitionOutcome] = {}
    for event in result.all_events:
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            key = str(materialization.partition)
            done[key] = PartitionOutcome(key, True, row=backtest_row(materialization.metadata))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if not check.passed and check.partition is not None:
                done[check.partition] = PartitionOutcome(check.partition, False, error=check.description)
    not_reached = _first_error(result) or "the history run stopped before this partition"
    outcomes = [done.get(key, PartitionOutcome(key, False, error=not_reached)) for key in keys]
    if progress is not None:
        for index, outcome in enumerate(outcomes, start=1):
            progress(index, len(keys), outcome)
    if not any(outcome.success for outcome in outcomes):
        return outcomes, None
    summary = defs.resolve_job_def(BACKTEST_JOB).execute_in_process(instance=instance, run_config=_QUIET_LOGGERS)
    return outcomes, summary.output_for_node("backtest_summary")


def rollback_champion(
    config: RetrainConfig, instance: "DagsterInstance", version: Optional[str], reason: str, force: bool = False
) -> dict[str, Any]:
    """`retrain rollback`: move the alias (registry tags say who, when, why), alert, and report the change
    to Dagster as a ``prod_model`` materialization so the asset's history in the UI shows it. A version
    that was never champion is refused unless ``force`` (see :meth:`Registry.rollback`)."""
    from dagster import AssetMaterialization

    from retrain_assets.core.alerts import send_alert
    from retrain_assets.core.registry import Registry

    event = Registry(config).rollback(version, reason=reason, who=caller(), force=force)
    text = f"champion rolled back from v{event['from_version']} to v{event['to_version']} by {event['by']}: {reason}"
    if "override" in event:
        text += f" (forced: {event['override']})"
    send_alert(config, "rollback", text, event)
    metadata = {
        "champion_version": event["to_version"],
        "promoted": False,
        "reason": f"rollback: {reason}",
        "rolled_back_from": event["from_version"],
        "by": event["by"],
    }
    instance.report_runless_asset_event(AssetMaterialization("prod_model", metadata=metadata))
    return {**event, "text": text}


def revalidate(config: RetrainConfig, instance: "DagsterInstance", versions: list[int]) -> list["batches.BatchOutcome"]:
    """`retrain revalidate`: judge rejected batches again (:func:`batches.revalidate`), and tell Dagster when
    ``validated_features`` gained rows, so the UI shows the new data version and what is now stale."""
    from dagster import AssetMaterialization

    outcomes = batches.revalidate(config, versions)
    accepted = [outcome.raw_version for outcome in outcomes if outcome.accepted]
    features = batches.current_features(config)
    if accepted and features is not None:
        metadata: dict[str, Any] = {
            "revalidated": accepted,
            "delta_version": features.version,
            "rows_added": sum(outcome.rows for outcome in outcomes if outcome.accepted),
        }
        revalidated = ", ".join(f"v{v}" for v in accepted)
        instance.report_runless_asset_event(
            AssetMaterialization(
                "validated_features",
                description=f"raw_data {revalidated} accepted on revalidation",
                metadata=metadata,
                tags={"dagster/data_version": str(features.version)},
            )
        )
    return outcomes
