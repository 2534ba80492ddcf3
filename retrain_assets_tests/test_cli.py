"""The `retrain` command as a user runs it: init, ingest, materialize, status."""

import json

import pytest
from click.testing import CliRunner

from retrain_assets.cli import main

pytestmark = pytest.mark.integration

STATUS_KEYS = {"raw_table", "last_processed_version", "champion", "last_decision", "latest_checks"}


def retrain(config_path, *args):
    return CliRunner().invoke(main, ["--config", str(config_path), *args], catch_exceptions=False)


def test_init_writes_a_config_the_other_commands_accept(project, tmp_path):
    config_path = tmp_path / "fresh" / "retrain.yaml"

    result = retrain(config_path, "init", str(project.batch(0)), "--target", "churned", "--timestamp", "event_time")

    assert result.exit_code == 0, result.output
    assert "task classification" in result.output
    text = config_path.read_text()
    assert "target_classes" in text and "region" in text
    again = retrain(config_path, "init", str(project.batch(0)), "--target", "churned")
    assert again.exit_code != 0 and "--force" in again.output
    unknown = retrain(tmp_path / "x.yaml", "init", str(project.batch(0)), "--target", "nope")
    assert unknown.exit_code != 0 and "nope" in unknown.output


def test_ingest_materialize_status_round_trip(project, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    unreadable = tmp_path / "broken.csv"
    unreadable.write_bytes(b"customer_id,tenure_months\nC1,\"unterminated\n")

    ingested = retrain(project.path, "ingest", str(project.batch(0)), str(unreadable))

    assert ingested.exit_code != 0
    assert "raw_data version 0 (600 rows)" in ingested.output
    assert "broken.csv" in ingested.output and "1 of 2 files refused" in ingested.output

    materialized = retrain(project.path, "materialize")
    assert materialized.exit_code == 0, materialized.output
    assert "checks: 12/12 passed" in materialized.output and "promoted" in materialized.output

    status = retrain(project.path, "status", "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert STATUS_KEYS <= set(report)
    assert report["raw_table"]["version"] == 0 and report["raw_table"]["rows"] == 600
    assert report["last_processed_version"] == 0
    champion = report["champion"]
    assert champion["version"] == "1" and champion["delta_version"] == 0 and "roc_auc" in champion["metrics"]
    assert set(champion) >= {"name", "code_version", "params_hash", "trained_at", "data_range"}
    assert report["last_decision"]["promoted"] is True
    assert len(report["latest_checks"]) == 12 and all(c["passed"] for c in report["latest_checks"])
    assert report["last_run"]["trigger"] == "manual" and report["last_run"]["fired"] == "manual,bootstrap,new_data"
    assert [event["kind"] for event in report["events"]] == ["retrain_triggered", "promoted"]
    assert (project.config.dagster_home / "dagster.yaml").exists()
    page = project.config.reports_dir / "evaluation-model-v1.html"
    assert report["last_report"] == str(page)
    html = page.read_text()
    assert "Candidate vs champion" in html and html.count("data:image/png;base64,") >= 3


def test_materialize_of_a_bad_batch_exits_non_zero_and_names_the_problem(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "ingest", str(project.batch(2))).exit_code == 0

    result = retrain(project.path, "materialize")

    assert result.exit_code == 1
    assert "FAILED required_values_present" in result.output and "tenure_months" in result.output
    status = json.loads(retrain(project.path, "status", "--json").output)
    assert status["champion"] is None and status["last_processed_version"] == 0
    assert any(not c["passed"] and c["blocking"] for c in status["latest_checks"])


def test_missing_config_is_a_clear_error(tmp_path):
    result = retrain(tmp_path / "absent.yaml", "status")
    assert result.exit_code != 0 and "no such config file" in result.output


def test_tick_runs_what_the_sensor_asks_then_nothing(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "ingest", str(project.batch(0))).exit_code == 0

    first = retrain(project.path, "tick", "--json")

    assert first.exit_code == 0, first.output
    (launch,) = json.loads(first.output)["launched"]
    assert launch["source"] == "raw_data_version_sensor" and launch["run_key"] == "0" and launch["success"]
    assert launch["trigger"] == "new_version" and launch["decision"]["promoted"] is True
    again = retrain(project.path, "tick")
    assert again.exit_code == 0 and "nothing triggered: raw_data unchanged since the last tick" in again.output
