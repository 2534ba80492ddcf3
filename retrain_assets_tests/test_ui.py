"""`retrain ui` serves the code location: the Dagster webserver's GraphQL API shows the lineage."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C for `dagster dev` (it stops its webserver, daemon and code server), then make sure."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_ui_shows_the_five_assets_with_their_lineage(project):
    port = free_port()
    retrain = Path(sys.executable).parent / "retrain"
    server = subprocess.Popen(
        [str(retrain), "--config", str(project.path), "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                nodes = graphql(port, QUERY)["assetNodes"]
                break
            except OSError:
                assert server.poll() is None, "retrain ui exited"
                assert time.monotonic() < deadline, "the Dagster UI did not answer within 90 s"
                time.sleep(1)
    finally:
        stop(server)

    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}
    assert parents == {
        "raw_data": set(),
        "validated_features": {"raw_data"},
        "candidate_model": {"validated_features"},
        "evaluation_report": {"candidate_model", "validated_features"},
        "prod_model": {"evaluation_report"},
    }
    assert (project.config.dagster_home / "dagster.yaml").exists(), "the UI runs on the project's storage home"
