"""Running the job in process against the project's persistent Dagster instance, and reading status.

The instance lives under ``<home>/dagster`` (the CLI points ``DAGSTER_HOME`` there), so ``retrain ui``,
``retrain materialize`` and ``retrain status`` all see the same runs, materializations and checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

from retrain_assets import batches, lake
from retrain_assets.config import RetrainConfig

if TYPE_CHECKING:
    from dagster import DagsterInstance

_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
# The CLI prints its own summary of a run; Dagster's full event log stays in the instance (and the UI).
_QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def prepare_dagster_home(config: RetrainConfig) -> Path:
    """Create ``<home>/dagster`` with a ``dagster.yaml`` (if missing) and point ``DAGSTER_HOME`` at it."""
    home = config.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextlib.contextmanager
def project_instance(config: RetrainConfig) -> Iterator["DagsterInstance"]:
    from dagster import DagsterInstance

    prepare_dagster_home(config)
    with DagsterInstance.get() as instance:
        yield instance


def quiet_libraries() -> None:
    """Keep MLflow's registration chatter and Dagster's beta notices out of the CLI's output."""
    from dagster import BetaWarning

    warnings.filterwarnings("ignore", category=BetaWarning)  # Output(data_version=...) is marked beta
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class RunOutcome:
    """What one run of the retraining job did, in the terms the CLI and the demo print."""

    run_id: str
    success: bool
    raw_version: Optional[int] = None
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    evaluation: Optional[dict[str, Any]] = None
    decision: Optional[dict[str, Any]] = None
    error: Optional[str] = None

    def describe(self, metric: str) -> str:
        """A few lines a person reads: version, checks, scores, decision."""
        lines = [f"raw_data v{self.raw_version}: run {'succeeded' if self.success else 'FAILED'} ({self.run_id})"]
        failed = {name: message for name, (passed, message) in self.checks.items() if not passed}
        lines.append(f"  checks: {len(self.checks) - len(failed)}/{len(self.checks)} passed")
        lines += [f"  FAILED {name}: {message}" for name, message in failed.items()]
        if self.evaluation:
            champion = self.evaluation["champion"]
            lines.append(
                f"  candidate v{self.evaluation['candidate_version']} {metric} {self.evaluation['candidate'][metric]:.4f}"
                + (f", champion {champion[metric]:.4f} on the same holdout" if champion else ", no champion yet")
            )
        if self.decision:
            verdict = "promoted" if self.decision["promoted"] else "not promoted"
            lines.append(f"  {verdict}: {self.decision['reason']}; champion is v{self.decision['champion_version']}")
        if self.error and all(passed for passed, _ in self.checks.values()):
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def materialize(config_path: Path, instance: "DagsterInstance", tags: Optional[dict[str, str]] = None) -> RunOutcome:
    """Run the whole asset graph once, in process; a failing blocking check gives ``success=False``."""
    from retrain_assets.definitions import RETRAIN_JOB, build_defs

    quiet_libraries()
    job = build_defs(str(config_path)).resolve_job_def(RETRAIN_JOB)
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags or {}, run_config=_QUIET_LOGGERS)
    outcome = RunOutcome(run_id=result.run_id, success=result.success)
    for evaluation in result.get_asset_check_evaluations():
        outcome.checks[evaluation.check_name] = (evaluation.passed, evaluation.description or "")
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == "raw_data":
            outcome.raw_version = int(materialization.metadata["delta_version"].value)
    outputs = {node: result.output_for_node(node) for node in ("evaluation_report", "prod_model") if _has_output(result, node)}
    outcome.evaluation, outcome.decision = outputs.get("evaluation_report"), outputs.get("prod_model")
    failures = [e for e in result.all_events if e.is_step_failure]
    if failures:
        error = failures[0].step_failure_data.error
        outcome.error = f"{failures[0].step_key}: {error.message.strip() if error else 'failed'}"
    return outcome


def _has_output(result: Any, node: str) -> bool:
    return any(e.is_successful_output and e.step_key == node for e in result.all_events)


def latest_checks(instance: "DagsterInstance") -> list[dict[str, Any]]:
    """The newest evaluation of every asset check in the code location."""
    from retrain_assets.definitions import defs

    checks = []
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=lambda k: k.to_user_string()):
        record = instance.get_latest_asset_check_evaluation_record(key)
        evaluation = record.evaluation if record is not None else None
        if evaluation is None:
            continue
        checks.append(
            {
                "name": key.name,
                "asset": key.asset_key.to_user_string(),
                "passed": evaluation.passed,
                "blocking": bool(evaluation.blocking),
                "message": evaluation.description,
                "run_id": record.run_id,
            }
        )
    return checks


def project_status(config: RetrainConfig, instance: "DagsterInstance") -> dict[str, Any]:
    """Where things stand: the raw table, the last processed version, champion, last decision, checks."""
    raw = lake.table_summary(config.table_uri(lake.RAW_TABLE))
    registry_status: dict[str, Any] = {"champion": None, "last_decision": None}
    if config.mlflow.tracking_uri is not None or (config.mlflow_dir / "mlflow.db").exists():
        from retrain_assets.registry import CHAMPION, Registry

        registry = Registry(config)
        champion = registry.by_alias(CHAMPION)
        registry_status = {
            "champion": registry.describe(champion) if champion is not None else None,
            "last_decision": registry.last_decision(),
        }
    return {
        "raw_table": {
            "uri": config.table_uri(lake.RAW_TABLE),
            "version": raw["version"] if raw else None,
            "rows": raw["rows"] if raw else 0,
        },
        "last_processed_version": batches.last_processed_version(config),
        **registry_status,
        "latest_checks": latest_checks(instance),
        "storage": {
            "home": str(config.home),
            "mlflow_tracking_uri": config.tracking_uri,
            "dagster_home": str(config.dagster_home),
            "reports": str(config.reports_dir),
            "quarantine": str(config.quarantine_dir),
        },
    }
