"""`retrain serve` as a real uvicorn process on 127.0.0.1, over a project trained on real data (scikit-learn's
bundled breast cancer set) with real Delta and MLflow: MLflow's scoring protocol through MLflow's own client and
plain HTTP, the ledger, the hot swap under concurrent load, `kill -9` under load, and malformed requests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests

from bench import serving as bench_serving
from bench.workload import free_port
from retrain_assets.core import delta
from retrain_assets.core.config import RetrainConfig
from retrain_assets.core.delta import PREDICTIONS_TABLE

from .serving_project import Served, retrain, trained_project


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    """Breast cancer cut in three parts: two land for the first champion, the third makes a second version."""
    return trained_project(tmp_path_factory.mktemp("serving"))


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=30)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)


def start_server(project: Served, log: Path) -> Server:
    """`retrain serve` on the project, up (``/ping`` answers 200), as the serving benchmark starts it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "RETRAIN_CRASH_AT")}
    command = [
        str(Path(sys.executable).parent / "retrain"),
        "--config",
        str(project.path),
        "serve",
        "--port",
        str(port),
    ]
    started = bench_serving.start_server("retrain serve", command, env, log, port)
    bench_serving.wait_up(started)
    return Server(started.process, started.url, log)


@contextlib.contextmanager
def running(project: Served, log: Path) -> Iterator[Server]:
    server = start_server(project, log)
    try:
        yield server
    finally:  # SIGTERM: the server flushes its ledger on the way out
        bench_serving.stop_server(bench_serving.Server("retrain serve", server.process, server.url, log))


@contextlib.contextmanager
def serving_settings(project: Served, **settings) -> Iterator[None]:
    """``serving`` keys added to the project's retrain.yaml (its last section) for one test, then removed."""
    raw = project.path.read_text()
    project.path.write_text(raw + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in settings.items()))
    try:
        yield
    finally:
        project.path.write_text(raw)


@contextlib.contextmanager
def champion_at(project: Served, version: str) -> Iterator[None]:
    """The champion alias moved to ``version`` for one test (as `retrain rollback` moves it), then back."""
    from retrain_assets.core.registry import Registry

    before = str(Registry(project.config).by_alias("champion").version)
    if before != version:
        retrain(project.path, "rollback", "--to", version, "--force", "--reason", "test")
    try:
        yield
    finally:
        if before != version:
            retrain(project.path, "rollback", "--to", before, "--force", "--reason", "restore")


def ledger_rows(config: RetrainConfig, expected: int, timeout: float = 30.0) -> pd.DataFrame:
    """The predictions table once it holds at least ``expected`` rows (the flusher appends every 0.5 s)."""
    uri = config.table_uri(PREDICTIONS_TABLE)
    deadline = time.monotonic() + timeout
    while True:
        rows = delta.read_table(uri) if delta.latest_version(uri) is not None else pd.DataFrame()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_mlflow_scoring_protocol_answers_as_the_registered_champion(served, tmp_path):
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    from retrain_assets.core.registry import Registry
    from retrain_assets.core.training import model_inputs

    registry = Registry(served.config)
    champion = registry.by_alias("champion")
    pipeline = registry.load(str(champion.version))
    rows = served.features.iloc[:25].reset_index(drop=True)
    expected = pipeline.predict_proba(model_inputs(rows, served.config))
    before = len(ledger_rows(served.config, 0, timeout=0))
    with running(served, tmp_path / "serve.log") as server:
        port = int(server.url.rsplit(":", 1)[1])
        client = ScoringServerClient("127.0.0.1", port)
        client.ping()
        answer = client.invoke(rows)  # MLflow's own client: dataframe_split
        predictions = answer.get_predictions()
        assert len(predictions) == 25
        assert list(predictions.iloc[:, 0]) == [int(c) for c in pipeline.classes_[expected.argmax(axis=1)]]
        assert answer["model_version"] == str(champion.version)
        assert len(set(answer["prediction_ids"])) == 25
        probabilities = pd.DataFrame(answer["probabilities"])
        assert probabilities.to_numpy() == pytest.approx(expected)

        records = json.loads(rows.iloc[:3].to_json(orient="records"))
        columns = {name: rows[name].iloc[:3].tolist() for name in rows.columns}
        for body in ({"dataframe_records": records}, {"instances": records}, {"inputs": columns}):
            reply = server.post("/invocations", json=body)
            assert reply.status_code == 200, reply.text
            assert reply.json()["predictions"] == answer["predictions"][:3]
        csv = server.post("/invocations", data=rows.iloc[:3].to_csv(index=False), headers={"Content-Type": "text/csv"})
        assert csv.status_code == 200 and csv.json()["predictions"] == answer["predictions"][:3], csv.text

        v2 = {
            "inputs": [
                {"name": name, "shape": [3], "datatype": "FP64", "data": rows[name].iloc[:3].tolist()}
                for name in rows.columns
            ]
        }
        inferred = server.post(f"/v2/models/{registry.name}/infer", json=v2)
        assert inferred.status_code == 200, inferred.text
        outputs = {output["name"]: output for output in inferred.json()["outputs"]}
        assert outputs["predictions"]["data"] == answer["predictions"][:3]

        version = server.get("/version").json()["champion"]
        assert version["version"] == str(champion.version) and version["alias"] == "champion"
        assert version["delta_version"] == int(champion.tags["delta_version"])
        health = server.get("/health").json()
        assert health["status"] == "ok", health
    table = ledger_rows(served.config, before + 25 + 3 * 5)
    assert len(table) == before + 25 + 3 * 5  # the server flushed on SIGTERM: every served row, once
    assert table["prediction_id"].is_unique
    mine = table[table["request_id"] == answer["request_id"]]
    assert len(mine) == 25 and set(mine["model_version"]) == {int(champion.version)}
    features = json.loads(mine.iloc[0]["features"])
    assert set(features) == set(rows.columns)


BAD_BODIES = [
    (b"", "application/json", "empty body"),
    (b"{", "application/json", "not valid JSON"),
    (b"[1, 2]", "application/json", "expected an object"),
    (b'{"dataframe_split": {"columns": ["x"], "data": [[1]]}}', "application/json", "missing column"),
    (b'{"dataframe_records": [{"nope": 1}]}', "application/json", "missing column"),
    (b"a,b\n1,2\n", "text/csv", "missing column"),
    (b"<xml/>", "application/xml", "content type"),
]


def test_bad_requests_get_a_4xx_naming_the_field_and_reach_no_ledger(served, tmp_path):
    rows = served.features.iloc[:2].reset_index(drop=True)
    first = rows.columns[0]
    records = json.loads(rows.to_json(orient="records"))
    wrong_type = [dict(records[0], **{first: "not a number"})]
    unknown = [dict(records[0], extra_column=1)]
    with_target = [dict(records[0], target=1)]
    before = len(ledger_rows(served.config, 0, timeout=0))
    with running(served, tmp_path / "serve.log") as server:
        for body, kind, expected in BAD_BODIES:
            reply = server.post("/invocations", data=body, headers={"Content-Type": kind})
            assert 400 <= reply.status_code < 500 and expected in reply.json()["message"], (body, reply.text)
        for payload, named in ((wrong_type, repr(first)), (unknown, "'extra_column'"), (with_target, "'target'")):
            reply = server.post("/invocations", json={"dataframe_records": payload})
            assert reply.status_code == 422 and named in reply.json()["message"], reply.text
        missing = [{k: v for k, v in records[0].items() if k != first}]
        reply = server.post("/invocations", json={"dataframe_records": missing})
        assert reply.status_code == 422 and repr(first) in reply.json()["message"], reply.text
        too_big = server.post("/invocations", data=b"x" * (served.config.serving.max_body_bytes + 1))
        assert too_big.status_code == 413 and "max_body_bytes" in too_big.json()["message"]

        # the fuzz: thousands of mutations of a good body, each answered (never a 5xx, never a dropped
        # connection), and only the ones still valid reach the ledger
        good = json.dumps({"dataframe_split": rows.to_dict(orient="split")}).encode()
        fuzz = random.Random(13)
        statuses: dict[int, int] = {}
        accepted = 0

        def mutate() -> bytes:
            data = bytearray(good)
            for _ in range(fuzz.randint(1, 6)):
                position = fuzz.randrange(len(data))
                action = fuzz.random()
                if action < 0.4:
                    data[position] = fuzz.randrange(256)
                elif action < 0.7:
                    del data[position : position + fuzz.randint(1, 20)]
                else:
                    data[position:position] = fuzz.choice([b"{", b"]", b'"', b"null", b"1e999", b",", b"\x00", b"NaN"])
            return bytes(data)

        with requests.Session() as session:
            for _ in range(2000):
                reply = session.post(server.url + "/invocations", data=mutate(), timeout=30)
                statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                assert reply.status_code < 500, reply.text
                if reply.status_code == 200:
                    accepted += len(reply.json()["predictions"])
                else:
                    assert reply.json()["message"]
        assert server.get("/ping").status_code == 200
    assert set(statuses) - {200} and statuses.get(200, 0) < 2000, statuses
    table = ledger_rows(served.config, before + accepted)
    assert len(table) == before + accepted


def load(server: Server, stop: threading.Event, rows: pd.DataFrame, answers: list, failures: list) -> None:
    """One client sending 5-row requests until ``stop``: every answer's version and ids, every failure."""
    body = {"dataframe_split": rows.iloc[:5].to_dict(orient="split")}
    with requests.Session() as session:
        while not stop.is_set():
            try:
                reply = session.post(server.url + "/invocations", json=body, timeout=30)
            except requests.RequestException as exc:
                failures.append(repr(exc))
                continue
            if reply.status_code != 200:
                failures.append(f"{reply.status_code} {reply.text}")
            else:
                content = reply.json()
                answers.append((content["model_version"], content["prediction_ids"]))


def test_hot_swap_under_load_fails_no_request(served, tmp_path):
    from retrain_assets.core.registry import Registry

    before = str(Registry(served.config).by_alias("champion").version)
    other = next(v for v in reversed(served.versions) if v != before)
    with serving_settings(served, poll_seconds=0.5), running(served, tmp_path / "serve.log") as server:
        stop, failures = threading.Event(), []
        answers: list[list] = [[] for _ in range(4)]  # per client: the order one client saw is the order served
        clients = [
            threading.Thread(target=load, args=(server, stop, served.features, mine, failures)) for mine in answers
        ]
        for client in clients:
            client.start()
        try:
            time.sleep(1.0)
            with champion_at(served, other):
                deadline = time.monotonic() + 30
                while server.get("/version").json()["champion"]["version"] != other and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)
                stop.set()
        finally:
            stop.set()
            for client in clients:
                client.join()
    assert failures == []
    for seen in answers:  # across clients, an answer from the old version may be appended after one from the new
        versions = [version for version, _ in seen]
        assert versions[0] == before and versions[-1] == other, (versions[0], versions[-1])
        assert set(versions[versions.index(other) :]) == {other}  # swapped once, for good


def test_shadow_challenger_scores_every_request_off_the_response(served, tmp_path):
    from retrain_assets.core.registry import Registry

    registry = Registry(served.config)
    challenger = str(registry.by_alias("challenger").version)
    champion = next(v for v in served.versions if v != challenger)
    before = len(ledger_rows(served.config, 0, timeout=0))
    rows = served.features.iloc[:4].reset_index(drop=True)
    with champion_at(served, champion), serving_settings(served, shadow=True):
        with running(served, tmp_path / "serve.log") as server:
            replies = [
                server.post("/invocations", json={"dataframe_split": rows.to_dict(orient="split")}).json()
                for _ in range(10)
            ]
            health = server.get("/health").json()
    assert set(health["models"]) == {"champion", "challenger"}
    assert {reply["model_version"] for reply in replies} == {champion}
    assert all(len(reply["predictions"]) == 4 for reply in replies)
    table = ledger_rows(served.config, before + 80)
    new = table[table["request_id"].isin({reply["request_id"] for reply in replies})]
    shadow = new[new["shadow"]]
    assert len(shadow) == 40 and set(shadow["alias"]) == {"challenger"}
    assert set(shadow["model_version"]) == {int(challenger)}
    assert set(shadow["request_id"]) == {reply["request_id"] for reply in replies}
    pairs = {(row.request_id, row.row_index) for row in shadow.itertuples()}
    assert pairs == {(row.request_id, row.row_index) for row in new[~new["shadow"]].itertuples()}
    answered = {pid for reply in replies for pid in reply["prediction_ids"]}
    assert answered == set(new[~new["shadow"]]["prediction_id"]) and not answered & set(shadow["prediction_id"])


def test_kill_9_under_load_loses_no_acknowledged_prediction(served, tmp_path):
    log = tmp_path / "serve.log"
    before = ledger_rows(served.config, 0, timeout=0)
    seen = set(before["prediction_id"]) if len(before) else set()
    server = start_server(served, log)
    stop, answers, failures = threading.Event(), [], []
    clients = [threading.Thread(target=load, args=(server, stop, served.features, answers, failures)) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(2.0)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    stop.set()
    for client in clients:
        client.join()
    acknowledged = {pid for _, ids in answers for pid in ids}
    assert len(acknowledged) > 100 and failures  # it died under load: requests after the kill failed
    with running(served, log):  # the restart replays the journal into the table
        table = ledger_rows(served.config, len(seen) + len(acknowledged))
    new = table[~table["prediction_id"].isin(seen)]
    assert acknowledged <= set(new["prediction_id"])
    assert table["prediction_id"].is_unique
