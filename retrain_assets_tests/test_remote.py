"""The same integration tests with the lake on S3 (a real S3 HTTP endpoint: moto's server on 127.0.0.1,
through deltalake and dagster-aws) and MLflow behind a real `mlflow server` on 127.0.0.1."""

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from . import test_automation, test_history, test_lake, test_pipeline, test_sensors
from .conftest import write_config

pytestmark = pytest.mark.integration
BUCKET = "retrain-lake"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(command: list[str], health: str, log: Path, timeout: float = 90) -> subprocess.Popen:
    """Start a server process and wait until ``health`` answers 200."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[2]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's standalone S3 server on a free port, with a bucket for the lake."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = serve([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], f"{url}/moto-api/", log)
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield url
    stop(process)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (sqlite backend, local artifact store it serves) on a free port."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
               "--artifacts-destination", str(home / "artifacts")]
    process = serve(command, f"http://127.0.0.1:{port}/health", home / "server.log", timeout=120)
    yield f"http://127.0.0.1:{port}"
    stop(process)


def go_remote(project, s3_endpoint, mlflow_server, monkeypatch):
    """Point a project's lake at a fresh S3 prefix and its tracking at the MLflow server."""
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    unique = uuid.uuid4().hex[:8]
    write_config(
        project,
        storage={"lake_uri": f"s3://{BUCKET}/{unique}"},
        mlflow={"tracking_uri": mlflow_server, "experiment": f"churn-{unique}", "model_name": f"churn-{unique}"},
    )
    return project


@pytest.fixture
def remote_project(project, s3_endpoint, mlflow_server, monkeypatch):
    return go_remote(project, s3_endpoint, mlflow_server, monkeypatch)


@pytest.fixture
def remote_automated(automated, s3_endpoint, mlflow_server, monkeypatch):
    return go_remote(automated, s3_endpoint, mlflow_server, monkeypatch)


def test_lake_is_on_s3_and_artifacts_go_through_dagster_aws(remote_project, instance):
    from dagster_aws.s3 import S3PickleIOManager

    from retrain_assets.definitions import build_defs
    from retrain_assets.lake import ingest_file

    assert remote_project.config.lake_uri.startswith("s3://")
    assert isinstance(build_defs(str(remote_project.path)).resources["io_manager"], S3PickleIOManager)
    ingest_file(remote_project.config, remote_project.batch(0))
    import boto3

    prefix = remote_project.config.lake_uri.split("/")[-1]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any("/raw_data/_delta_log/00000000000000000000.json" in key for key in keys)
    outcome = test_pipeline.materialize(remote_project.path, instance)
    assert outcome.success, outcome.error
    pickled = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/dagster")
    assert pickled.get("KeyCount", 0) >= 5, "each asset's output is pickled to S3 by dagster-aws"


def test_pipeline_clean_batch(remote_project, instance):
    test_pipeline.test_clean_batch_gives_a_champion_with_provenance(remote_project, instance)


def test_pipeline_bad_batch(remote_project, instance):
    test_pipeline.test_bad_batch_is_stopped_kept_and_later_batches_still_train(remote_project, instance)


def test_lake_versions_readable(remote_project):
    test_lake.test_each_file_is_one_version_readable_by_plain_readers(remote_project)


def test_lake_refusal(remote_project, tmp_path):
    test_lake.test_refused_file_is_quarantined_byte_identical_and_writes_nothing(
        remote_project, tmp_path, "wrong-type.csv", None, "tenure_months"
    )


def test_automation_drift_trigger(remote_automated, persistent):
    test_automation.test_drift_fires_the_trigger_and_a_clean_batch_does_not(remote_automated, persistent)


def test_sensor_and_tick(remote_automated, persistent):
    test_sensors.test_tick_skips_a_run_key_that_already_ran(remote_automated, persistent)


def test_history_backfill(remote_automated, persistent):
    history = test_history.three_weeks.__wrapped__(remote_automated, persistent)
    test_history.test_backfill_trains_as_of_each_week_and_scores_the_next(history, persistent)
