"""Secrets and paths.

Credentials come only from the environment and never reach logs, run records, MLflow, alerts or files: a
realistic sequence runs through the real `retrain` CLI with canary secrets in the S3 secret key (moto with
IAM signature checks, so a wrong key fails), the webhook URL (a local receiver) and the MLflow token (a
recording proxy in front of a real `mlflow server`); then every place a secret could end up is scanned.

Models are loaded only from the registry in ``retrain.yaml``, and only through skops with the project's
trusted-types list: ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` point at a decoy store with its own
champion, and tampered artifacts (pickles, foreign skops types) are refused.
"""

import base64
import hashlib
import http.client
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from retrain_assets.app.demo import declare_business_limits
from retrain_assets.core import synthetic
from retrain_assets.core.config import load_config
from retrain_assets.core.inference import infer_config, render_config
from retrain_assets_tests.conftest import START
from retrain_assets_tests.test_remote import free_port, serve, start_mlflow_server, stop

RETRAIN = Path(sys.executable).parent / "retrain"
WEBHOOK_ENV = "RETRAIN_SECRET_WEBHOOK"
BUCKET = "secret-lake"
LOCAL = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


# --- real servers -----------------------------------------------------------------------------------


def _start(handler_class) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _shutdown(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def webhook_receiver(received: list):
    """Records (path, headers, body) of every POST and answers 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, str(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return _start(Handler)


def recording_proxy(upstream_port: int, seen: list):
    """A reverse proxy in front of the MLflow server that records each request's Authorization header."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def forward(self):
            body = self._body()
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            skip = {"host", "connection", "transfer-encoding", "content-length"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in skip:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

        def log_message(self, *args):
            pass

    return _start(Handler)


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory):
    """moto's S3 server checking request signatures against its IAM users: the lake's credentials are an
    access key of a user created here, so only the right secret reaches the bucket."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # create_user, put_user_policy, create_access_key
    try:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        process = serve(command, f"{url}/moto-api/", log)
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    iam = boto3.client(
        "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    iam.create_user(UserName="lake")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="lake", PolicyName="lake", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="lake")["AccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    s3.create_bucket(Bucket=BUCKET)
    yield url, key["AccessKeyId"], key["SecretAccessKey"], s3
    stop(process)


@pytest.fixture(scope="module")
def mlflow_backend(tmp_path_factory):
    """A real `mlflow server` (sqlite, proxied artifacts) and its home folder."""
    home = tmp_path_factory.mktemp("mlflow-secret")
    port, process = start_mlflow_server(home)
    yield port, home
    stop(process)


# --- a decoy MLflow store named by the environment ------------------------------------------------


def make_store_with_champion(uri: str, model_name: str, versions: int = 3) -> None:
    """A sqlite MLflow store with ``versions`` versions of ``model_name`` (constant predictors tagged as
    coming from Delta version 999, with their own drift profile) and ``champion`` on the last one. Written
    through a client bound to ``uri``, so this process's mlflow settings stay untouched."""
    import tempfile

    import mlflow.sklearn
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    client = MlflowClient(uri, uri)
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    experiment = client.create_experiment("decoy", artifact_location=artifacts.as_uri())
    client.create_registered_model(model_name)
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        frame = pd.DataFrame({"x": [0.0, 1.0]})
        mlflow.sklearn.save_model(DummyClassifier(strategy="constant", constant=1).fit(frame, [0, 1]), str(model))
        for _ in range(versions):
            run = client.create_run(experiment)
            client.log_dict(run.info.run_id, {"decoy": True}, "reference_profile.json")
            client.log_metric(run.info.run_id, "roc_auc", 0.99)
            client.log_artifacts(run.info.run_id, str(model), "model")
            client.set_terminated(run.info.run_id)
            client.create_model_version(
                model_name,
                source=f"{run.info.artifact_uri}/model",
                run_id=run.info.run_id,
                tags={"delta_version": "999", "decoy": "yes"},
            )
    client.set_registered_model_alias(model_name, "champion", str(versions))


def store_fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- the scanned sequence ---------------------------------------------------------------------------


@dataclass
class Scenario:
    root: Path
    config_path: Path
    canaries: dict[str, str]
    env: dict[str, str]
    commands: list = field(default_factory=list)  # (args, returncode, stdout, stderr)
    webhook: list = field(default_factory=list)
    mlflow_requests: list = field(default_factory=list)
    s3: object = None
    mlflow_uri: str = ""
    mlflow_home: Path = None
    decoy: Path = None
    decoy_before: dict = field(default_factory=dict)

    @property
    def config(self):
        return load_config(self.config_path)

    def cli(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(RETRAIN), "--config", str(self.config_path), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.commands.append((args, done.returncode, done.stdout, done.stderr))
        assert done.returncode == expect, (
            f"retrain {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-3000:]}"
        )
        return done


def leaks(canaries: dict[str, str], where: str, content) -> list[str]:
    """``where`` for every canary found in ``content`` (str or bytes), verbatim or URL/base64-encoded."""
    import urllib.parse

    if isinstance(content, str):
        content = content.encode("utf-8", "replace")
    found = []
    for name, secret in canaries.items():
        forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret)[1:-1]}
        if any(form.encode() in content for form in forms) or base64.b64encode(secret.encode())[:-4] in content:
            found.append(f"{name} in {where}")
    return found


def sqlite_contents(path: Path):
    """Every cell of every table of a sqlite file, with zlib-compressed blobs (Dagster snapshots) inflated."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for row in db.execute(f'select * from "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        yield table, cell
                        try:
                            yield table, zlib.decompress(cell)
                        except zlib.error:
                            pass
                    elif cell is not None:
                        yield table, str(cell)


def scan_folder(canaries, folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        found += leaks(canaries, f"file {path.relative_to(folder)}", path.read_bytes())
        if path.read_bytes()[:16] == b"SQLite format 3\x00":
            for table, cell in sqlite_contents(path):
                found += leaks(canaries, f"sqlite {path.relative_to(folder)} table {table}", cell)
    return sorted(set(found))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, moto_with_auth, mlflow_backend) -> Scenario:
    """Good batches, a retrain, a second retrain, a bad batch that fails a blocking check, status, status
    --json and a rollback, all through the CLI, with secrets in the environment and a decoy MLflow store in
    ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``."""
    endpoint, access_key, secret_key, s3 = moto_with_auth
    upstream_port, mlflow_home = mlflow_backend
    root = tmp_path_factory.mktemp("secrets")
    data = root / "data"
    data.mkdir()
    days = []
    for day, frame in synthetic.churn_days(START, 7, 500, seed=5, bad_day=6):
        days.append(data / f"churn-{day.isoformat()}.csv")
        frame.to_csv(days[-1], index=False)
    config = infer_config(
        synthetic.churn_batch(START, 500, seed=5),
        "churned",
        timestamp="event_time",
        id_column="customer_id",
        project="churn",
    )
    declare_business_limits(config)
    raw = yaml.safe_load(render_config(config, days[0].name))
    unique = uuid.uuid4().hex[:8]
    received, seen = [], []
    hook, proxy = webhook_receiver(received), recording_proxy(upstream_port, seen)
    mlflow_uri = f"http://127.0.0.1:{proxy.server_address[1]}"
    direct = f"http://127.0.0.1:{upstream_port}"  # what this test reads with, so the proxy sees only the CLI
    raw["storage"] = {"lake_uri": f"s3://{BUCKET}/{unique}"}
    raw["mlflow"] = {"tracking_uri": mlflow_uri, "experiment": f"churn-{unique}", "model_name": f"churn-{unique}"}
    raw["alerts"] = {"webhook_url_env": WEBHOOK_ENV}
    config_path = root / "retrain.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    decoy = root / "decoy"
    decoy.mkdir()
    decoy_uri = f"sqlite:///{decoy / 'mlflow.db'}"
    make_store_with_champion(decoy_uri, raw["mlflow"]["model_name"])
    hook_token, mlflow_token = f"hook-canary-{uuid.uuid4().hex}", f"mlflow-canary-{uuid.uuid4().hex}"
    canaries = {"AWS_SECRET_ACCESS_KEY": secret_key, WEBHOOK_ENV: hook_token, "MLFLOW_TRACKING_TOKEN": mlflow_token}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "DAGSTER_", "RETRAIN_"))}
    env.update(LOCAL)
    env.update(
        AWS_ACCESS_KEY_ID=access_key,
        AWS_SECRET_ACCESS_KEY=secret_key,
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
        MLFLOW_TRACKING_TOKEN=mlflow_token,
        MLFLOW_TRACKING_URI=decoy_uri,
        MLFLOW_REGISTRY_URI=decoy_uri,
        **{WEBHOOK_ENV: f"http://127.0.0.1:{hook.server_address[1]}/hooks/{hook_token}?token={hook_token}"},
    )
    run = Scenario(
        root,
        config_path,
        canaries,
        env,
        webhook=received,
        mlflow_requests=seen,
        s3=s3,
        mlflow_uri=direct,
        mlflow_home=mlflow_home,
        decoy=decoy,
        decoy_before=store_fingerprint(decoy),
    )
    try:
        run.cli("ingest", str(days[0]))
        run.cli("tick")  # first model, promoted: there is no champion
        run.cli("ingest", str(days[1]))
        run.cli("tick")  # second model, compared with the first
        run.cli("ingest", str(days[6]))
        run.cli("tick", expect=1)  # blocking validation check fails: check alert and run failure alert
        run.cli("status")
        run.cli("status", "--json")
        from mlflow import MlflowClient

        client = MlflowClient(direct, direct)
        name = raw["mlflow"]["model_name"]
        if "previous_champion" in client.get_registered_model(name).aliases:
            run.cli("rollback", "--reason", "secrets test")
        else:
            champion = client.get_model_version_by_alias(name, "champion").version
            other = next(v.version for v in client.search_model_versions(f"name = '{name}'") if v.version != champion)
            run.cli("rollback", "--to", str(other), "--reason", "secrets test")
        yield run
    finally:
        _shutdown(hook)
        _shutdown(proxy)


# --- canary tests -----------------------------------------------------------------------------------


def test_the_canary_secrets_were_really_used(scenario):
    hook_token = scenario.canaries[WEBHOOK_ENV]
    kinds = [json.loads(body)["kind"] for _, _, body in scenario.webhook]
    assert scenario.webhook
    assert all(f"/hooks/{hook_token}?token={hook_token}" == path for path, _, _ in scenario.webhook)
    assert {"retrain_triggered", "promoted", "check_failed", "run_failed", "rollback"} <= set(kinds), kinds

    token = scenario.canaries["MLFLOW_TRACKING_TOKEN"]
    assert len(scenario.mlflow_requests) > 20
    assert {auth for _, _, auth in scenario.mlflow_requests} == {f"Bearer {token}"}

    import botocore.exceptions

    prefix = scenario.config.lake_uri.removeprefix(f"s3://{BUCKET}/")
    keys = [o["Key"] for o in scenario.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any(key.endswith("raw_data/_delta_log/00000000000000000002.json") for key in keys)
    assert any("/dagster/" in key for key in keys), "dagster-aws wrote the run's outputs with the same key"
    import boto3

    wrong = boto3.client(
        "s3",
        endpoint_url=scenario.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=scenario.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="not-" + "x" * 36,
    )
    with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
        wrong.list_objects_v2(Bucket=BUCKET)


def test_no_canary_in_cli_output(scenario):
    found = []
    for args, _, stdout, stderr in scenario.commands:
        found += leaks(scenario.canaries, f"stdout of retrain {' '.join(args)}", stdout)
        found += leaks(scenario.canaries, f"stderr of retrain {' '.join(args)}", stderr)
    assert len(scenario.commands) == 9
    assert found == []


def test_no_canary_in_dagster_records(scenario):
    from dagster import AssetKey, DagsterInstance
    from dagster_shared.serdes import serialize_value

    from retrain_assets.definitions import build_defs

    found, seen_events = [], 0
    with DagsterInstance.from_config(str(scenario.config.dagster_home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and sum(run.status.value == "FAILURE" for run in runs) == 1
        for run in runs:
            where = f"run {run.run_id[:8]}"
            found += leaks(scenario.canaries, f"{where} tags", json.dumps(run.tags))
            found += leaks(scenario.canaries, f"{where} run config", json.dumps(run.run_config, default=str))
            found += leaks(scenario.canaries, f"{where} record", serialize_value(run))
            found += leaks(
                scenario.canaries,
                f"{where} job snapshot",
                serialize_value(instance.get_job_snapshot(run.job_snapshot_id)),
            )
            found += leaks(
                scenario.canaries,
                f"{where} plan snapshot",
                serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)),
            )
            for entry in instance.all_logs(run.run_id):
                seen_events += 1
                found += leaks(
                    scenario.canaries, f"{where} event {entry.dagster_event_type}: message", entry.user_message or ""
                )
                found += leaks(scenario.canaries, f"{where} event {entry.dagster_event_type}", serialize_value(entry))
        for key in ("raw_data", "validated_features", "candidate_model", "evaluation_report", "prod_model"):
            records = instance.fetch_materializations(AssetKey(key), limit=100).records
            assert records, key  # runless ones too: ingest and rollback report raw_data and prod_model
            for record in records:
                found += leaks(scenario.canaries, f"{key} materialization", serialize_value(record.event_log_entry))
        checks = 0
        for check_key in build_defs(str(scenario.config_path)).resolve_asset_graph().asset_check_keys:
            for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100):
                checks += 1
                found += leaks(scenario.canaries, f"check {check_key.name}", serialize_value(record.event))
    assert seen_events > 50 and checks > 10
    assert found == []


def test_no_canary_in_mlflow(scenario):
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient(scenario.mlflow_uri, scenario.mlflow_uri)
    config = scenario.config
    found, artifacts = [], 0
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    assert len(runs) >= 2
    for run in runs:
        where = f"mlflow run {run.info.run_id[:8]}"
        found += leaks(scenario.canaries, f"{where} params", json.dumps(run.data.params))
        found += leaks(scenario.canaries, f"{where} tags", json.dumps(run.data.tags))
        found += leaks(scenario.canaries, f"{where} metric names", json.dumps(sorted(run.data.metrics)))
        found += leaks(scenario.canaries, f"{where} info", json.dumps(dict(run.info), default=str))
    logged = client.search_logged_models([e.experiment_id for e in experiments])
    for model in logged:
        found += leaks(
            scenario.canaries, f"logged model {model.model_id}", json.dumps(model.to_dictionary(), default=str)
        )
    versions = client.search_model_versions(f"name = '{config.mlflow.model_name}'")
    assert len(versions) >= 2
    registered = client.get_registered_model(config.mlflow.model_name)
    found += leaks(
        scenario.canaries, "registered model", json.dumps({"tags": registered.tags, "d": registered.description})
    )
    with tempfile.TemporaryDirectory() as scratch:
        for version in versions:
            where = f"model version {version.version}"
            described = {"tags": version.tags, "description": version.description, "source": version.source}
            found += leaks(scenario.canaries, where, json.dumps(described))
            local = Path(client.download_artifacts(version.run_id, "", f"{scratch}/run-{version.version}"))
            model = Path(scratch) / f"model-{version.version}"
            model.mkdir()
            import mlflow.artifacts

            mlflow.artifacts.download_artifacts(
                client.get_model_version_download_uri(version.name, version.version),
                dst_path=str(model),
                tracking_uri=scenario.mlflow_uri,
            )
            for path in [*local.rglob("*"), *model.rglob("*")]:
                if path.is_file():
                    artifacts += 1
                    found += leaks(scenario.canaries, f"{where} artifact {path.name}", path.read_bytes())
    assert artifacts >= 10
    assert found == []


def test_no_canary_in_alerts(scenario):
    lines = scenario.config.alerts_log.read_text().splitlines()
    assert len(lines) >= 5
    found = leaks(scenario.canaries, "alerts.jsonl", "\n".join(lines))
    for number, (_, _, body) in enumerate(scenario.webhook):
        found += leaks(scenario.canaries, f"webhook body {number} ({json.loads(body)['kind']})", body)
    assert all(json.loads(line)["delivery"] == "sent" for line in lines)
    assert found == []


def test_no_canary_in_storage_home_lake_or_mlflow_store(scenario):
    from deltalake import DeltaTable

    config = scenario.config
    found = scan_folder(scenario.canaries, config.home)
    found += [f"mlflow server: {hit}" for hit in scan_folder(scenario.canaries, scenario.mlflow_home)]
    prefix = config.lake_uri.removeprefix(f"s3://{BUCKET}/")
    objects = scenario.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    for item in objects:
        body = scenario.s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        found += leaks(scenario.canaries, f"s3 object {item['Key']}", body)
    options = {
        k: scenario.env[k]
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP")
    }
    history = DeltaTable(config.table_uri("raw_data"), storage_options=options).history()
    found += leaks(scenario.canaries, "raw_data Delta commit metadata", json.dumps(history, default=str))
    assert len(history) == 3 and len(objects) > 10
    assert any((config.home / "dagster").rglob("*.db"))
    assert found == []


def test_the_environment_registry_is_never_used(scenario):
    """``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` named a decoy store with a champion of the same
    name: nothing was written to it, and every comparison used the configured server's models."""
    from mlflow import MlflowClient

    assert store_fingerprint(scenario.decoy) == scenario.decoy_before
    client = MlflowClient(scenario.mlflow_uri, scenario.mlflow_uri)
    name = scenario.config.mlflow.model_name
    versions = client.search_model_versions(f"name = '{name}'")
    assert all("decoy" not in v.tags and v.tags["delta_version"] != "999" for v in versions)
    second = json.loads((scenario.config.reports_dir / "evaluation-model-v2.json").read_text())
    assert second["champion_version"] == "1", second["champion_note"]
    status = json.loads(next(out for args, _, out, _ in scenario.commands if args == ("status", "--json")))
    assert status["champion"]["delta_version"] in (0, 1)


# --- models come only from the configured registry, only through skops ------------------------------


@pytest.fixture
def configured(tmp_path):
    """A project whose registry (the default sqlite store under its home) holds one real model, the champion."""
    from retrain_assets.core import training
    from retrain_assets.core.config import parse_config
    from retrain_assets.core.registry import LoggedModel, Registry

    frame = synthetic.churn_batch(START, 300, seed=3)
    inferred = infer_config(frame, "churned", timestamp="event_time", id_column="customer_id")
    raw = yaml.safe_load(render_config(inferred, "x.csv"))
    config = parse_config(raw, base_dir=tmp_path)
    registry = Registry(config)
    pipeline = training.train(frame, config)
    features = frame[list(config.data.features)]
    ref = registry.log_candidate(
        LoggedModel(
            pipeline, features.head(3), {"estimator": "lr"}, {"roc_auc": 0.7}, {"delta_version": "0"}, {"ours": True}
        )
    )
    registry.promote(ref.version)
    return config, registry, features, pipeline


def test_reads_use_the_configured_registry_even_when_mlflow_points_elsewhere(configured, tmp_path, monkeypatch):
    import mlflow

    from retrain_assets.core.names import CHAMPION
    from retrain_assets.core.registry import Registry

    config, registry, features, pipeline = configured
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    decoy_uri = f"sqlite:///{decoy / 'mlflow.db'}"
    make_store_with_champion(decoy_uri, config.mlflow.model_name, versions=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", decoy_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", decoy_uri)
    before = store_fingerprint(decoy)
    # another component of the same process (or the environment) moves mlflow's process-wide URIs
    mlflow.set_tracking_uri(decoy_uri)
    mlflow.set_registry_uri(decoy_uri)
    try:
        champion = registry.by_alias(CHAMPION)
        assert str(champion.version) == "1" and "decoy" not in champion.tags
        loaded = registry.load("1")
        assert type(loaded[-1]).__name__ != "DummyClassifier"
        assert (loaded.predict(features) == pipeline.predict(features)).all()
        assert registry.reference_profile(champion) == {"ours": True}
        assert registry.metrics(champion) == {"roc_auc": 0.7}
        fresh = Registry(config)  # a new registry re-reads retrain.yaml, whatever the environment says
        assert str(fresh.by_alias(CHAMPION).version) == "1"
        assert type(fresh.load("1")[-1]).__name__ != "DummyClassifier"
    finally:
        mlflow.set_tracking_uri(config.tracking_uri)
        mlflow.set_registry_uri(config.tracking_uri)
    assert store_fingerprint(decoy) == before


class Payload:
    """Unpickling this creates ``marker``: stands in for any code an attacker's pickle would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _artifact_dir(registry, version: str) -> Path:
    from urllib.parse import unquote, urlparse

    uri = registry.client.get_model_version_download_uri(registry.name, version)
    assert uri.startswith("file://"), uri
    return Path(unquote(urlparse(uri).path))


@pytest.mark.parametrize(
    "tampering", ["pickle_declared_in_mlmodel", "pickle_in_place_of_skops", "foreign_type_trusted_by_mlmodel"]
)
def test_a_tampered_model_version_is_refused(configured, tmp_path, tampering):
    import mlflow
    import skops.io

    from retrain_assets.core.registry import SKOPS_TRUSTED_TYPES

    config, registry, *_ = configured
    folder = _artifact_dir(registry, "1")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops" and flavor["skops_trusted_types"] == SKOPS_TRUSTED_TYPES
    marker = tmp_path / "payload-ran"
    model_file = folder / flavor["pickled_model"]
    if tampering == "pickle_declared_in_mlmodel":
        model_file.unlink()
        (folder / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
        flavor.update(pickled_model="model.pkl", serialization_format="cloudpickle")
        expected = "saved as 'cloudpickle'"
    elif tampering == "pickle_in_place_of_skops":
        model_file.write_bytes(pickle.dumps(Payload(marker)))
        expected = "model.skops is not a readable skops file"
    else:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        model_file.write_bytes(skops.io.dumps(Pipeline([("run", FunctionTransformer(os.system))])))
        flavor["skops_trusted_types"] = [*SKOPS_TRUSTED_TYPES, "posix.system", "nt.system"]
        expected = r"model.skops holds types outside the trusted list: \['posix.system'\]"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(ValueError, match=rf"model '{config.mlflow.model_name}' version 1: refused, {expected}"):
        registry.load("1")
    assert not marker.exists()

    # the same artifact through MLflow's own loader, which trusts what the artifact says about itself
    loaded = None
    try:
        loaded = mlflow.sklearn.load_model(f"models:/{registry.name}/1")
    except Exception:
        pass
    if tampering == "foreign_type_trusted_by_mlmodel":
        assert loaded[0].func is os.system
    elif tampering == "pickle_declared_in_mlmodel":
        assert marker.exists(), "the tampered artifact really runs code when unpickled"


# --- alert paths that fail: the URL's secret stays out of the outcome, the log and the exception ------


@pytest.mark.parametrize(
    "shape",
    [
        "http://127.0.0.1:{port}/hooks/{secret}",
        "http://127.0.0.1:{dead}/hooks/{secret}",
        "http://127.0.0.1:{port}/hooks/{secret} x",
        "http://user:{secret}@127.0.0.1:{port}/hooks",
        "http://[::1/hooks/{secret}",
        "http://127.0.0.1:99999/hooks/{secret}",
        "ftp://127.0.0.1/{secret}",
    ],
)
def test_failed_webhook_delivery_never_quotes_the_url(tmp_path, monkeypatch, caplog, shape):
    import logging

    from retrain_assets.core.alerts import send_alert
    from retrain_assets.core.config import parse_config

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _start(Refuse)
    secret = f"hook-canary-{uuid.uuid4().hex}"
    url = shape.format(port=server.server_address[1], dead=free_port(), secret=secret)
    monkeypatch.setenv(WEBHOOK_ENV, url)
    for name, value in LOCAL.items():
        monkeypatch.setenv(name, value)
    raw = {
        "project": "churn",
        "data": {"target": "y", "task": "classification", "columns": {"x": "float", "y": "int"}},
        "alerts": {"webhook_url_env": WEBHOOK_ENV, "timeout_seconds": 2},
    }
    config = parse_config(raw, base_dir=tmp_path)
    try:
        with caplog.at_level(logging.DEBUG):
            message = send_alert(config, "run_failed", "run 1234 failed", {"run_id": "1234"})
    finally:
        _shutdown(server)

    assert message["delivery"].startswith("failed: ")
    canaries = {"webhook": secret}
    assert leaks(canaries, "outcome", json.dumps(message)) == []
    assert leaks(canaries, "alerts.jsonl", config.alerts_log.read_bytes()) == []
    assert leaks(canaries, "log", caplog.text) == []


def test_run_failure_alert_does_not_copy_the_launchers_tags(project, monkeypatch):
    """A run launched with a credential in its tags (by a UI user, a CI job, an API client) fails: the
    alert names the run, not every tag it carries."""
    from dagster import build_sensor_context, instance_for_test

    from retrain_assets.core.alerts import recent_alerts
    from retrain_assets.core.names import TRIGGER_TAG
    from retrain_assets.definitions import build_defs
    from retrain_assets.defs.jobs import RETRAIN_JOB
    from retrain_assets.defs.sensors import alert_on_run_failure

    secret = f"tag-canary-{uuid.uuid4().hex}"
    defs = build_defs(str(project.path))
    with instance_for_test() as instance:

        def evaluate(cursor):
            with build_sensor_context(
                instance=instance,
                cursor=cursor,
                definitions=defs,
                resources=defs.resources,
                sensor_name=alert_on_run_failure.name,
            ) as context:
                return alert_on_run_failure.evaluate_tick(context)

        started = evaluate(None)
        tags = {"launcher/api_token": secret, TRIGGER_TAG: "manual"}
        job = defs.resolve_job_def(RETRAIN_JOB)
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags)
        assert not result.success  # nothing ingested: raw_data has no table
        evaluate(started.cursor)

    alerts = recent_alerts(project.config)
    assert [alert["kind"] for alert in alerts] == ["run_failed"]
    assert alerts[0]["details"]["run_id"] == result.run_id and alerts[0]["details"]["tags"][TRIGGER_TAG] == "manual"
    assert leaks({"tag": secret}, "run_failed alert", json.dumps(alerts)) == []


def test_a_tampered_champion_blocks_promotion_and_alerts(project, instance, tmp_path):
    """A champion refused as untrusted is not "no champion": skipping the comparison would promote the
    candidate past a margin nobody checked. It stays champion, the comparison fails naming it, an alert says so."""
    from dagster import AssetCheckSeverity, asset, materialize

    from retrain_assets.core import delta, landing, training
    from retrain_assets.core.alerts import recent_alerts
    from retrain_assets.core.batches import ValidatedBatches
    from retrain_assets.core.monitoring import Finding
    from retrain_assets.core.names import CHAMPION, COMPARISON_CHECK
    from retrain_assets.core.registry import LoggedModel, ModelRef, Registry
    from retrain_assets.defs.assets.evaluation import evaluation_report
    from retrain_assets.defs.assets.promotion import prod_model
    from retrain_assets.defs.resources import RetrainProject

    config = project.config
    uri = config.table_uri(delta.FEATURES_TABLE)
    table = delta.to_table_schema(landing.read_batch_file(project.batch(0)), config.data.columns, "day 0")
    features = delta.TableRef(uri, delta.append(uri, table), raw_version=0)
    frame = delta.read_table(uri, features.version, columns=list(config.data.columns))
    registry = Registry(config)
    logged = LoggedModel(training.train(frame, config), frame.head(0), {}, {}, {"delta_version": "0"}, {"rows": 0})
    registry.log_candidate(logged)
    registry.promote("1")
    candidate = registry.log_candidate(logged)
    marker = tmp_path / "payload-ran"
    folder = _artifact_dir(registry, "1")
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["sklearn"]
    (folder / flavor["pickled_model"]).write_bytes(pickle.dumps(Payload(marker)))

    @asset(name="validated_features")
    def given_features() -> ValidatedBatches:
        quiet = Finding(False, "not measured here")
        return ValidatedBatches(features, 0, [0], [], len(frame), drift=quiet, performance=quiet)

    @asset(name="candidate_model")
    def given_candidate() -> ModelRef:
        return candidate

    result = materialize(
        [given_features, given_candidate, evaluation_report, prod_model],
        instance=instance,
        resources={"project": RetrainProject(config_path=str(project.path))},
    )

    assert not marker.exists()
    comparison = next(c for c in result.get_asset_check_evaluations() if c.check_name == COMPARISON_CHECK)
    assert not comparison.passed and comparison.severity == AssetCheckSeverity.ERROR
    assert comparison.description.startswith("champion v1 cannot be loaded, so the candidate was not compared")
    assert "refused, model.skops is not a readable skops file" in comparison.description
    assert result.output_for_node("prod_model")["promoted"] is False
    assert str(registry.by_alias(CHAMPION).version) == "1"
    assert registry.client.get_model_version(registry.name, candidate.version).tags["decision"] == "rejected"
    alerts = {alert["kind"]: alert for alert in recent_alerts(config)}
    assert alerts["champion_unloadable"]["details"] == {"champion_version": "1", "candidate_version": "2"}
    assert "champion v1 cannot be loaded" in alerts["rejected"]["text"]
