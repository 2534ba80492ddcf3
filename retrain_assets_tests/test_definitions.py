"""The code location loads, the lineage is as designed, and loading it stays light."""

import subprocess
import sys
from pathlib import Path

from dagster import DefaultScheduleStatus, DefaultSensorStatus

from retrain_assets.definitions import defs
from retrain_assets.defs.jobs import RETRAIN_JOB

ROOT = Path(__file__).resolve().parent.parent
LINEAGE = ["raw_data", "validated_features", "candidate_model", "evaluation_report", "prod_model"]


def test_lineage_edges():
    graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }

    assert set(parents) == set(LINEAGE) | {"historical_model", "backtest_summary", "live_performance"}
    assert parents["live_performance"] == set(), "it reads the predictions and labels tables, no asset"
    assert parents["historical_model"] == {"raw_data"} and parents["backtest_summary"] == {"historical_model"}
    assert parents["raw_data"] == set()
    assert parents["validated_features"] == {"raw_data"}
    assert parents["candidate_model"] == {"validated_features"}
    assert parents["evaluation_report"] == {"candidate_model", "validated_features"}
    assert parents["prod_model"] == {"evaluation_report"}


def test_checks_gate_where_designed():
    graph = defs.resolve_asset_graph()
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    blocking = {name: spec.asset_key.to_user_string() for name, spec in checks.items() if spec.blocking}
    warning = {name: spec.asset_key.to_user_string() for name, spec in checks.items() if not spec.blocking}

    validation = [
        "schema_matches",
        "required_values_present",
        "values_in_range",
        "categories_in_domain",
        "target_balanced",
        "batch_integrity",
        "no_target_leakage",
    ]
    assert blocking == {
        **{name: "validated_features" for name in validation},
        "candidate_meets_minimum": "evaluation_report",
        "window_validated": "historical_model",
    }
    assert checks["window_validated"].partitions_def is not None, "one verdict per history partition"
    assert warning == {
        "values_as_expected": "validated_features",
        "feature_drift": "validated_features",
        "champion_performance": "validated_features",
        "candidate_beats_champion": "evaluation_report",
        "champion_is_fresh": "prod_model",
        "prediction_drift": "live_performance",
        "served_feature_drift": "live_performance",
    }


def test_automation_is_on_by_default():
    sensors = {sensor.name: sensor for sensor in defs.sensors}
    assert set(sensors) == {
        "raw_data_version_sensor",
        "model_code_sensor",
        "alert_on_run_failure",
        "close_mlflow_runs_of_failed_run",
        "live_labels_sensor",
        "live_performance_sensor",
    }
    assert all(sensor.default_status == DefaultSensorStatus.RUNNING for sensor in sensors.values())
    (schedule,) = defs.schedules
    assert schedule.cron_schedule == "0 6 * * 1" and schedule.default_status == DefaultScheduleStatus.RUNNING


def test_job_covers_the_lineage():
    job = defs.resolve_job_def(RETRAIN_JOB)
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} >= set(LINEAGE)


def test_dagster_cli_validates_the_workspace():
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_loading_definitions_imports_no_heavy_library():
    code = (
        "import sys, retrain_assets.definitions, retrain_assets.app.cli;"
        "heavy = [m for m in ('mlflow', 'great_expectations', 'sklearn') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_model_format_library_is_pinned_from_below():
    """Review finding 18: models load only through skops with trusted types, yet skops came unpinned through
    mlflow; a resolver could pick any old release. It is a direct dependency with a lower bound."""
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    (skops,) = [Requirement(line) for line in project["dependencies"] if Requirement(line).name == "skops"]
    assert any(spec.operator == ">=" for spec in skops.specifier) and skops.specifier.contains("0.16.0")


def test_live_performance_runs_one_day_per_run_in_its_own_job():
    from dagster import DailyPartitionsDefinition

    job = defs.resolve_job_def("live")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {"live_performance"}
    assert isinstance(job.partitions_def, DailyPartitionsDefinition)
