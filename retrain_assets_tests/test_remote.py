"""The same integration tests with the lake on S3 (a real S3 HTTP endpoint: moto's server on 127.0.0.1,
through deltalake and dagster-aws) and MLflow behind a real `mlflow server` on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from . import test_automation, test_history, test_landing, test_pipeline, test_sensors
from .conftest import write_config
from .test_ui import LINEAGE

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

    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).create_bucket(Bucket=BUCKET)
    yield url
    stop(process)


def start_mlflow_server(home: Path) -> tuple[int, subprocess.Popen]:
    """A real `mlflow server` under ``home`` (sqlite backend, proxied artifacts) on a free port, once it answers."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(home / "artifacts")]
    return port, serve(command, f"http://127.0.0.1:{port}/health", home / "server.log", timeout=120)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (sqlite backend, local artifact store it serves) on a free port."""
    port, process = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
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
    from retrain_assets.core.landing import ingest_file
    from retrain_assets.definitions import build_defs
    from retrain_assets.defs.s3_io_manager import S3JsonIOManager

    assert remote_project.config.lake_uri.startswith("s3://")
    assert isinstance(build_defs(str(remote_project.path)).resources["io_manager"], S3JsonIOManager)
    ingest_file(remote_project.config, remote_project.batch(0))
    import boto3

    prefix = remote_project.config.lake_uri.split("/")[-1]
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any("/raw_data/_delta_log/00000000000000000000.json" in key for key in keys)
    outcome = test_pipeline.materialize(remote_project.path, instance)
    assert outcome.success, outcome.error
    stored = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/dagster")
    keys = sorted(item["Key"].removeprefix(f"{prefix}/dagster/") for item in stored.get("Contents", []))
    assert keys == [f"{asset}.json" for asset in sorted(LINEAGE)], "one JSON value per asset"
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{prefix}/dagster/candidate_model.json")["Body"]
    assert json.loads(body.read())["__retrain_type__"] == "ModelRef"


def test_pipeline_clean_batch(remote_project, instance):
    test_pipeline.test_clean_batch_gives_a_champion_with_provenance(remote_project, instance)


def test_pipeline_bad_batch(remote_project, instance):
    test_pipeline.test_bad_batch_is_stopped_kept_and_later_batches_still_train(remote_project, instance)


def test_lake_versions_readable(remote_project):
    test_landing.test_each_file_is_one_version_readable_by_plain_readers(remote_project)


def test_lake_refusal(remote_project, tmp_path):
    test_landing.test_refused_file_is_quarantined_byte_identical_and_writes_nothing(
        remote_project, tmp_path, "wrong-type.csv", None, "tenure_months"
    )


def test_automation_drift_trigger(remote_automated, persistent):
    test_automation.test_drift_fires_the_trigger_and_a_clean_batch_does_not(remote_automated, persistent)


def test_sensor_and_tick(remote_automated, persistent):
    test_sensors.test_a_lost_cursor_runs_no_version_again_and_a_repeated_run_key_is_skipped(
        remote_automated, persistent
    )


def test_history_backfill(remote_automated, persistent):
    history = test_history.three_weeks.__wrapped__(remote_automated, persistent)
    test_history.test_backfill_trains_as_of_each_week_and_scores_the_next(history, persistent)


def test_temporary_credentials_reach_the_lake_and_the_step_storage(project, instance, tmp_path, monkeypatch):
    """Review finding 8: with STS credentials (key, secret and ``AWS_SESSION_TOKEN``) and a server that checks
    signatures, Delta worked but the step storage failed: the IO manager was given the key and secret only.
    Both now take boto3's default chain."""
    import os

    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "7")  # the setup calls below, up to the bucket
    process = serve(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        f"{url}/moto-api/",
        tmp_path / "moto.log",
    )
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        setup = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="lake")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="lake", PolicyName="lake", PolicyDocument=json.dumps(policy))
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
        }
        role = iam.create_role(RoleName="lake", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        iam.put_role_policy(RoleName="lake", PolicyName="lake", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="lake")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        sts = boto3.client(
            "sts",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="retrain-test")["Credentials"]
        temporary = {
            "AWS_ACCESS_KEY_ID": session["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": session["SecretAccessKey"],
            "AWS_SESSION_TOKEN": session["SessionToken"],
        }
        for name, value in {**AWS_ENV, **temporary, "AWS_ENDPOINT_URL": url, "no_proxy": "127.0.0.1"}.items():
            monkeypatch.setenv(name, value)
        without_token = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=session["AccessKeyId"],
            aws_secret_access_key=session["SecretAccessKey"],
        )
        with pytest.raises(Exception, match="InvalidAccessKeyId"):
            without_token.list_objects_v2(Bucket=BUCKET)  # the server does check the token
        write_config(project, storage={"lake_uri": f"s3://{BUCKET}/sts"})
        from retrain_assets.core.landing import ingest_file

        ingest_file(project.config, project.batch(0))
        outcome = test_pipeline.materialize(project.path, instance)
        assert outcome.success, outcome.error
        fresh = boto3.session.Session().client("s3")  # boto3.client() would reuse an earlier test's credentials
        stored = fresh.list_objects_v2(Bucket=BUCKET, Prefix="sts/dagster")["KeyCount"]
        assert stored == len(LINEAGE) and os.environ["AWS_SESSION_TOKEN"] == session["SessionToken"]
    finally:
        stop(process)
