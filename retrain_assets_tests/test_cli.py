"""The `retrain` command as a user runs it: init, ingest, materialize, status, dag."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from retrain_assets.app.cli import main

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
    unreadable.write_bytes(b'customer_id,tenure_months\nC1,"unterminated\n')

    ingested = retrain(project.path, "ingest", str(project.batch(0)), str(unreadable))

    assert ingested.exit_code != 0
    assert "raw_data version 0 (600 rows)" in ingested.output
    assert "broken.csv" in ingested.output and "1 of 2 files refused" in ingested.output

    materialized = retrain(project.path, "materialize")
    assert materialized.exit_code == 0, materialized.output
    assert "checks: 13/13 passed" in materialized.output and "promoted" in materialized.output

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
    assert len(report["latest_checks"]) == 13 and all(c["passed"] for c in report["latest_checks"])
    assert report["last_run"]["trigger"] == "manual" and report["last_run"]["fired"] == "manual,bootstrap,new_data"
    assert [event["kind"] for event in report["events"]] == ["retrain_triggered", "promoted"]
    import yaml

    instance_settings = yaml.safe_load((project.config.dagster_home / "dagster.yaml").read_text())
    assert instance_settings["run_monitoring"] == {"enabled": True}, "daemon runs are held to their max runtime"
    assert instance_settings["run_retries"] == {  # a daemon run whose worker died is retried, a failed step is not
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    queue = instance_settings["concurrency"]["runs"]
    assert queue["tag_concurrency_limits"] == [{"key": "retrain/trigger", "limit": 1}], "one retraining run at a time"
    assert 1 <= queue["max_concurrent_runs"] <= min(4, os.cpu_count()), "no more runs at once than cores"
    page = project.config.reports_dir / "evaluation-model-v1.html"
    assert report["last_report"] == str(page)
    html = page.read_text()
    assert "Candidate vs champion" in html and html.count("<figure>") >= 3


def test_materialize_runs_only_what_is_stale_and_force_runs_everything(project, monkeypatch):
    from retrain_assets_tests.conftest import write_config

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "ingest", str(project.batch(0))).exit_code == 0
    first = retrain(project.path, "materialize")
    assert first.exit_code == 0 and "run  raw_data: never materialized" in first.output, first.output

    again = retrain(project.path, "materialize")
    assert again.exit_code == 0 and "nothing is stale" in again.output and "checks:" not in again.output
    assert "skip validated_features: up to date" in again.output
    assert "skip candidate_model: up to date: the champion v1 was built from the current code" in again.output

    write_config(project, model={"params": {"C": 0.5}})
    model_only = retrain(project.path, "materialize")
    assert model_only.exit_code == 0, model_only.output
    assert (
        "skip raw_data: up to date" in model_only.output and "run  candidate_model: params changed" in model_only.output
    )
    assert "raw_data v0: manual run succeeded" in model_only.output and "checks: 2/3 passed" in model_only.output
    status = json.loads(retrain(project.path, "status", "--json").output)
    assert status["current_code"]["state"] in ("champion", "lost") and status["current_code"]["version"] == "2"

    assert retrain(project.path, "ingest", str(project.batch(1))).exit_code == 0
    new_data = retrain(project.path, "materialize")
    assert "run  validated_features: " in new_data.output and "skip " not in new_data.output, new_data.output

    forced = retrain(project.path, "materialize", "--force")
    assert forced.exit_code == 0 and "skip " not in forced.output and "nothing is stale" not in forced.output
    assert forced.output.startswith("raw_data v1: manual run succeeded") and "/13 passed" in forced.output, "all checks"


def test_materialize_of_a_bad_batch_exits_non_zero_and_names_the_problem(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "ingest", str(project.batch(2))).exit_code == 0

    result = retrain(project.path, "materialize")

    assert result.exit_code == 1
    assert "FAILED values_in_range" in result.output and "column 'monthly_charges'" in result.output
    assert "WARNING values_as_expected" in result.output and "column 'tenure_months'" in result.output
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


def test_rollback_refuses_a_version_that_was_never_champion_unless_forced(project, monkeypatch):
    from .test_registry import decided_registry

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    _, lost = decided_registry(project.config)

    refused = retrain(project.path, "rollback", "--to", "3")

    assert refused.exit_code != 0
    assert f"v3 was never champion: it lost to v2 ({lost}); pass --force" in refused.output
    forced = retrain(project.path, "rollback", "--to", "3", "--force", "--reason", "try the challenger")
    assert forced.exit_code == 0, forced.output
    assert "rolled back from v2 to v3" in forced.output
    assert "(forced: v3 was never champion: it lost to v2" in forced.output
    status = json.loads(retrain(project.path, "status", "--json").output)
    assert status["champion"]["version"] == "3"
    assert status["events"][-1]["kind"] == "rollback" and "forced" in status["events"][-1]["text"]


def test_validate_dry_runs_the_suite_on_files_without_ingesting(project, tmp_path):
    import pandas as pd

    from retrain_assets.core import delta

    bad = tmp_path / "bad.csv"
    frame = pd.read_csv(project.batch(1))
    frame.loc[:4, "churned"] = 7  # a class never declared: always a hard failure
    frame.to_csv(bad, index=False)
    unreadable = tmp_path / "empty.csv"
    unreadable.write_bytes(b"")

    clean = retrain(project.path, "validate", str(project.batch(1)))
    assert clean.exit_code == 0, clean.output
    assert clean.output.startswith(f"{project.batch(1).name}: accepted:")
    assert "  hard     passed schema_matches" in clean.output

    result = retrain(project.path, "validate", str(bad), str(unreadable))
    assert result.exit_code == 1
    assert "bad.csv: REJECTED" in result.output and "empty.csv: REFUSED" in result.output
    line = next(line for line in result.output.splitlines() if "FAILED" in line)
    assert "categories_in_domain" in line and "column 'churned'" in line and "sample [7, 7, 7, 7, 7]" in line

    report = json.loads(retrain(project.path, "validate", "--json", str(bad)).output)
    [failed] = [rule for rule in report[0]["rules"] if not rule["passed"] and rule["severity"] == "error"]
    assert (failed["kind"], failed["column"], failed["failing_count"]) == ("hard", "churned", 5)
    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None, "nothing was ingested"


@pytest.mark.parametrize(
    "text, utc",
    [
        ("2026-01-05", dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)),
        ("2026-01-05T23:00:00", dt.datetime(2026, 1, 5, 23, tzinfo=dt.timezone.utc)),
        ("2026-01-05T23:00:00Z", dt.datetime(2026, 1, 5, 23, tzinfo=dt.timezone.utc)),
        ("2026-01-05T23:00:00+01:00", dt.datetime(2026, 1, 5, 22, tzinfo=dt.timezone.utc)),
        ("2026-01-05T23:00:00-02:30", dt.datetime(2026, 1, 6, 1, 30, tzinfo=dt.timezone.utc)),
    ],
)
def test_date_options_read_iso_8601_and_convert_offsets_to_utc(text, utc):
    from retrain_assets.app.cli import UTC_DATETIME

    moment = UTC_DATETIME.convert(text, None, None)

    assert moment == utc and moment.utcoffset() == dt.timedelta(0)


def test_a_date_that_is_not_iso_8601_is_a_usage_error_naming_the_forms(project):
    result = retrain(project.path, "ingest", "--as-of", "05/01/2026", str(project.batch(0)))

    assert result.exit_code == 2
    assert "'05/01/2026' is not an ISO 8601 date or time" in result.output and "2026-01-05T23:00:00Z" in result.output


def test_ingest_as_of_with_an_offset_lands_at_that_utc_time(project, monkeypatch):
    from retrain_assets.core import delta

    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    result = retrain(project.path, "ingest", "--as-of", "2026-01-06T09:00:00+01:00", str(project.batch(0)))

    assert result.exit_code == 0, result.output
    (commit,) = delta.history(project.config.table_uri(delta.RAW_TABLE))
    assert delta.landed_at(commit) == dt.datetime(2026, 1, 6, 8, tzinfo=dt.timezone.utc)


def test_backfill_dates_with_offsets_are_taken_as_their_utc_dates(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    result = retrain(
        project.path, "backfill", "--start", "2030-01-01T00:30:00+01:00", "--end", "2030-01-02T23:00:00-02:00"
    )

    assert result.exit_code != 0
    assert "no weekly partition starts between 2029-12-31 and 2030-01-03" in result.output


def test_status_of_an_empty_project_says_what_is_missing_in_words(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    result = retrain(project.path, "status")

    assert result.exit_code == 0, result.output
    uri = project.config.table_uri("raw_data")
    assert result.output.splitlines()[:3] == [
        f"raw_data: no versions yet ({uri}; land a batch with `retrain ingest FILE`)",
        "last processed raw version: none yet",
        "champion: none",
    ]
    assert "None" not in result.output and "last run" not in result.output


def test_status_of_a_failed_run_shows_its_error(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "materialize").exit_code == 1  # nothing landed: raw_data has no table

    never_read = retrain(project.path, "status")

    uri = project.config.table_uri("raw_data")
    never = f"last run: FAILURE (manual): error: raw_data: raw_data: no Delta table at {uri}; land a batch first"
    assert never in never_read.output
    assert "None" not in never_read.output
    assert retrain(project.path, "ingest", str(project.batch(2))).exit_code == 0
    assert retrain(project.path, "materialize").exit_code == 1  # the corrupted day fails the blocking checks

    blocked = retrain(project.path, "status")

    (line,) = [line for line in blocked.output.splitlines() if line.startswith("last run:")]
    assert line.startswith("last run: FAILURE (manual on raw_data v0): error: validated_features: "), line
    own_words = [line for line in blocked.output.splitlines() if not line.startswith("check ")]  # checks quote data
    assert not [line for line in own_words if "None" in line], own_words
    report = json.loads(retrain(project.path, "status", "--json").output)
    checks = report["latest_checks"]
    stopped = [c["name"] for c in checks if c["blocking"] and c["severity"] == "ERROR" and not c["passed"]]
    assert stopped and all(name in line.split("severity: ", 1)[1] for name in stopped), line
    assert "blocking asset check" in line
    assert report["last_run"]["delta_version"] == 0 and report["last_run"]["error"] == line.split("error: ", 1)[1]


def test_tick_json_gives_checks_metrics_decision_and_drift_scores(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    features = set(project.config.data.features)
    assert retrain(project.path, "ingest", str(project.batch(0))).exit_code == 0

    first = retrain(project.path, "tick", "--json")

    assert first.exit_code == 0, first.output
    (launch,) = json.loads(first.output)["launched"]
    checks = {check["name"]: check for check in launch["checks"]}
    assert len(checks) >= 12 and all(check["passed"] for check in checks.values())
    assert checks["values_in_range"]["blocking"] is True and checks["values_in_range"]["severity"] == "ERROR"
    assert checks["feature_drift"] == {
        "name": "feature_drift",
        "passed": True,
        "blocking": False,
        "severity": "WARN",
        "message": checks["feature_drift"]["message"],
    }
    assert "no champion yet" in checks["feature_drift"]["message"]
    metrics = launch["metrics"]
    assert metrics["metric"] == "roc_auc" and metrics["candidate_version"] == "1" and metrics["champion"] is None
    assert 0.5 < metrics["candidate"]["roc_auc"] <= 1 and set(metrics["candidate"]) >= {"accuracy", "f1", "log_loss"}
    assert launch["decision"]["promoted"] is True and launch["drift_scores"] is None
    assert retrain(project.path, "ingest", str(project.batch(1))).exit_code == 0

    second = json.loads(retrain(project.path, "tick", "--json").output)["launched"][0]

    assert second["success"] and second["metrics"]["champion_version"] == "1"
    assert set(second["metrics"]["champion"]) == set(second["metrics"]["candidate"]), "both scored on one holdout"
    assert set(second["drift_scores"]) == features
    assert all({"psi", "drifted"} <= set(score) for score in second["drift_scores"].values())
    assert second["decision"]["reason"] and second["reason"]


LINEAGE_EDGES = {
    ("raw_data", "validated_features"),
    ("validated_features", "candidate_model"),
    ("candidate_model", "evaluation_report"),
    ("validated_features", "evaluation_report"),
    ("evaluation_report", "prod_model"),
    ("raw_data", "historical_model"),
    ("historical_model", "backtest_summary"),
}


def test_dag_lists_each_asset_upstream_first_with_what_it_reads_and_its_checks(project):
    result = retrain(project.path, "dag")

    assert result.exit_code == 0, result.output
    tree, listing = result.output.split("\n\n", 1)
    roots = tree.splitlines()
    assert roots[roots.index("raw_data") :][:3] == ["raw_data", "|-- validated_features", "|   |-- candidate_model"]
    assert "`-- evaluation_report (see above)" in tree, "a second upstream is one branch, not a second copy"
    assets = {line.split()[0]: line for line in listing.splitlines()[1:] if not line.startswith("      ")}
    order = list(assets)
    assert set(order) == {name for edge in LINEAGE_EDGES for name in edge} | {"live_performance"}
    assert all(order.index(up) < order.index(down) for up, down in LINEAGE_EDGES), order
    assert set(order[:2]) == {"live_performance", "raw_data"}, "the roots first"
    assert order.index("prod_model") < order.index("historical_model")
    assert assets["live_performance"].rstrip().endswith("group live"), "it reads tables, no asset"
    assert assets["raw_data"].rstrip().endswith("group retrain"), "a root reads nothing"
    assert assets["validated_features"].endswith("<- raw_data")
    assert assets["evaluation_report"].endswith("group retrain  <- candidate_model, validated_features")
    assert assets["backtest_summary"].endswith("group history  <- historical_model")
    checks = " ".join(listing.split())
    assert "values_in_range [blocking]" in checks and "candidate_meets_minimum [blocking]" in checks
    assert "candidate_beats_champion [blocking]" not in checks and "candidate_beats_champion" in checks
    assert "feature_drift [blocking]" not in checks and "champion_is_fresh" in checks


def test_dag_mermaid_has_one_edge_per_dependency_and_a_subgraph_per_group(project):
    result = retrain(project.path, "dag", "--mermaid")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "graph TD"
    edges = [tuple(line.split(" --> ")) for line in (line.strip() for line in lines) if " --> " in line]
    assert len(edges) == len(LINEAGE_EDGES) and set(edges) == LINEAGE_EDGES
    assert '  subgraph group_retrain["retrain"]' in lines and '  subgraph group_history["history"]' in lines
    assert '  subgraph group_live["live"]' in lines and sum(line.strip() == "end" for line in lines) == 3
    assert '    validated_features["validated_features<br/>10 checks, 7 blocking"]' in lines
    assert '    prod_model["prod_model<br/>1 check"]' in lines


def test_dag_reads_the_definitions_only_not_mlflow_sklearn_or_great_expectations(project):
    code = (
        "import sys\n"
        "from retrain_assets.app.cli import main\n"
        f"main(['--config', {str(project.path)!r}, 'dag'], standalone_mode=False)\n"
        "print(sorted(m for m in ('mlflow', 'sklearn', 'great_expectations') if m in sys.modules))\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert "|-- validated_features" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"
    assert not project.config.home.exists(), "nothing is written: no storage home, no Dagster instance"
