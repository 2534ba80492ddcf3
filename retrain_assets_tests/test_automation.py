"""The automation path end to end: triggers, gates, promotion, rollback, alerts and staleness."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from deltalake import DeltaTable
from mlflow import MlflowClient

from retrain_assets.app.cli import main
from retrain_assets.app.execution import ingest, materialize
from retrain_assets.app.status import project_status, stale_assets
from retrain_assets.app.ticking import tick
from retrain_assets.core import delta
from retrain_assets.definitions import build_defs

from .conftest import write_config

pytestmark = pytest.mark.integration
WEAK = {"estimator": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}
STRONG = {"estimator": "logistic_regression", "params": {"C": 1.0, "max_iter": 1000}}


def registry(project) -> MlflowClient:
    return MlflowClient(tracking_uri=project.config.tracking_uri, registry_uri=project.config.tracking_uri)


def versions(project) -> list:
    return registry(project).search_model_versions(f"name = '{project.config.mlflow.model_name}'")


def champion(project) -> str:
    return str(registry(project).get_model_version_by_alias(project.config.mlflow.model_name, "champion").version)


def day(project, instance, index: int):
    """`retrain ingest` of one day, then `retrain tick`; the one run it launches."""
    ingest(project.config, instance, project.batch(index))
    (launch,) = tick(project.path, instance).launches
    return launch.outcome


@pytest.fixture
def receiver(monkeypatch):
    """A real webhook receiver on 127.0.0.1; its URL reaches the config through an environment variable."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("RETRAIN_TEST_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    yield received
    server.shutdown()
    server.server_close()


def test_bad_batch_is_stopped_by_the_gate_and_alerts_go_out(automated, persistent, receiver):
    write_config(automated, alerts={"webhook_url_env": "RETRAIN_TEST_WEBHOOK"})
    assert day(automated, persistent, 0).success

    bad = day(automated, persistent, 6)

    assert not bad.success and bad.trigger == "new_version"
    assert set(bad.blocking_failures) == {"values_in_range"}, "the declared business limit on monthly_charges"
    assert "monthly_charges" in bad.blocking_failures["values_in_range"].message
    expected = bad.checks["values_as_expected"]  # nulls and a new region only warn: init inferred those rules
    assert not expected.passed and "tenure_months" in expected.message and "atlantis" in expected.message
    assert len(versions(automated)) == 1 and champion(automated) == "1"
    raw = DeltaTable(automated.config.table_uri(delta.RAW_TABLE), version=1).to_pyarrow_table()
    assert raw.num_rows == 1200 and raw.column("tenure_months").null_count > 0, "the bad batch is kept at its version"
    kinds = [message["kind"] for message in receiver]
    assert kinds == ["retrain_triggered", "promoted", "check_failed", "run_failed"]
    assert all(message["text"].startswith("[churn] ") for message in receiver)
    logged = [json.loads(line) for line in automated.config.alerts_log.read_text().splitlines()]
    assert [m["kind"] for m in logged] == kinds and {m["delivery"] for m in logged} == {"sent"}


def test_a_webhook_that_is_down_never_fails_the_run(automated, persistent, monkeypatch):
    monkeypatch.setenv("RETRAIN_TEST_WEBHOOK", "http://127.0.0.1:9/hook")  # discard port: nothing listens
    write_config(automated, alerts={"webhook_url_env": "RETRAIN_TEST_WEBHOOK", "timeout_seconds": 0.5})

    assert day(automated, persistent, 0).success
    alerts = automated.config.alerts_log.read_text().splitlines()
    assert {json.loads(line)["delivery"][:6] for line in alerts} == {"failed"}


def test_drift_fires_the_trigger_and_a_clean_batch_does_not(automated, persistent):
    write_config(automated, triggers={"min_new_rows": 10**9})
    assert day(automated, persistent, 0).success

    clean = day(automated, persistent, 1)
    assert clean.success and clean.checks["feature_drift"].passed and clean.fired == "none"
    assert clean.decision is None and len(versions(automated)) == 1

    drifted = day(automated, persistent, 7)
    drift = drifted.checks["feature_drift"]
    assert drifted.success and not drift.passed and not drift.blocking
    assert "monthly_charges" in drift.message or "support_calls" in drift.message
    assert "drift" in drifted.fired.split(",")
    assert drifted.decision is not None
    newest = max(versions(automated), key=lambda v: int(v.version))
    assert newest.tags["trigger"] == "new_version" and "drift" in newest.tags["trigger_reason"]


def test_worse_candidate_rejected_better_promoted_rollback_restores(automated, persistent):
    write_config(automated, model=WEAK, promotion={"minimum": 0.5, "margin": 0.01})
    ingest(automated.config, persistent, automated.batch(0))
    first = materialize(automated.path, persistent)
    assert first.success, first.describe("roc_auc")
    assert champion(automated) == "1"

    write_config(automated, model=STRONG)
    better = materialize(automated.path, persistent)
    assert better.success and better.decision["promoted"] and champion(automated) == "2"

    write_config(automated, model={**WEAK, "seed": 7})  # another weak model: v1 again would be reused
    worse = materialize(automated.path, persistent)
    assert worse.success, "losing is a normal outcome"
    assert not worse.checks["candidate_beats_champion"].passed and not worse.checks["candidate_beats_champion"].blocking
    assert worse.decision["promoted"] is False and champion(automated) == "2"
    rejected = registry(automated).get_model_version(automated.config.mlflow.model_name, "3")
    assert rejected.tags["decision"] == "rejected" and "does not beat" in rejected.tags["decision_reason"]
    assert {"candidate_roc_auc", "champion_roc_auc", "candidate_accuracy", "champion_f1"} <= set(rejected.tags)

    cli = CliRunner()
    rolled = cli.invoke(main, ["--config", str(automated.path), "rollback", "--reason", "bad deploy"])
    assert rolled.exit_code == 0, rolled.output
    assert champion(automated) == "1"
    restored = registry(automated).get_model_version(automated.config.mlflow.model_name, "1")
    assert restored.tags["rollback_reason"] == "bad deploy" and restored.tags["rollback_from_version"] == "2"
    status = project_status(automated.config, automated.path, persistent)
    assert status["champion"]["version"] == "1" and status["events"][-1]["kind"] == "rollback"
    missing = cli.invoke(main, ["--config", str(automated.path), "rollback", "--to", "99"])
    assert missing.exit_code != 0 and "no version '99'" in missing.output and champion(automated) == "1"

    write_config(automated, model={**STRONG, "seed": 7}, promotion={"minimum": 0.99})
    floor = materialize(automated.path, persistent)
    assert not floor.success and set(floor.blocking_failures) == {"candidate_meets_minimum"}
    assert champion(automated) == "1"
    assert registry(automated).get_model_version(automated.config.mlflow.model_name, "4").tags["decision"] == "rejected"


def test_new_data_and_params_make_exactly_the_right_assets_stale(automated, persistent):
    ingest(automated.config, persistent, automated.batch(0))
    assert materialize(automated.path, persistent).success
    assert stale_assets(persistent, build_defs(str(automated.path))) == {}

    write_config(automated, model={"params": {"C": 0.5, "max_iter": 1000}})
    after_params = stale_assets(persistent, build_defs(str(automated.path)))
    assert set(after_params) == {"candidate_model", "evaluation_report", "prod_model"}
    assert any("code version" in cause for cause in after_params["candidate_model"])

    assert materialize(automated.path, persistent).success
    ingest(automated.config, persistent, automated.batch(1))
    after_data = stale_assets(persistent, build_defs(str(automated.path)))
    assert set(after_data) == {"validated_features", "candidate_model", "evaluation_report", "prod_model"}


def test_prod_model_materialization_carries_the_run_record(automated, persistent):
    from dagster import AssetKey

    ingest(automated.config, persistent, automated.batch(0))
    assert materialize(automated.path, persistent).success
    event = persistent.get_latest_materialization_event(AssetKey("prod_model"))
    metadata = event.asset_materialization.metadata
    for key in (
        "decided_at",
        "candidate_metrics",
        "champion_metrics",
        "delta_version",
        "data_min",
        "data_max",
        "rows",
        "params_hash",
        "code_version",
        "trigger_reason",
    ):
        assert key in metadata, key
    assert metadata["delta_version"].value == "0" and metadata["rows"].value == "600"
