"""send_alert and recent_alerts against a real HTTP receiver on 127.0.0.1."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from retrain_assets.alerts import recent_alerts, send_alert
from retrain_assets.config import parse_config

URL_ENV = "RETRAIN_TEST_WEBHOOK"


def make_config(tmp_path, **alerts):
    raw = {"project": "churn", "data": {"target": "y", "task": "classification", "columns": {"x": "float", "y": "int"}}}
    return parse_config({**raw, "alerts": alerts}, base_dir=tmp_path)


def log_lines(config):
    return [json.loads(line) for line in config.alerts_log.read_text().splitlines()]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Keep a proxy set in the environment away from the local receiver."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def receiver():
    """Start receivers answering ``status`` after up to ``delay`` seconds; returns (url, received bodies)."""
    servers, release = [], threading.Event()

    def start(status=200, delay=0.0):
        received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
                if delay and release.wait(delay):
                    return
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hooks/secret", received

    yield start
    release.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def test_delivered(tmp_path, monkeypatch, receiver, caplog):
    url, received = receiver()
    monkeypatch.setenv(URL_ENV, url)
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "promoted", "model v3 promoted", {"version": 3})

    assert message["delivery"] == "sent"
    assert len(received) == 1
    content_type, body = received[0]
    assert content_type == "application/json"
    assert body["text"] == "[churn] model v3 promoted"
    assert body["kind"] == "promoted" and body["project"] == "churn" and body["details"] == {"version": 3}
    assert log_lines(config) == [message]
    assert caplog.records == []


def test_http_error_is_recorded_not_raised(tmp_path, monkeypatch, receiver, caplog):
    url, received = receiver(status=500)
    monkeypatch.setenv(URL_ENV, url)
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "run_failed", "training crashed")

    assert message["delivery"].startswith("failed") and "500" in message["delivery"]
    assert len(received) == 1
    assert "127.0.0.1" in caplog.text and "500" in caplog.text
    assert "secret" not in caplog.text
    assert log_lines(config) == [message]


def test_receiver_down(tmp_path, monkeypatch, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{port}/hook")
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "rejected", "candidate lost")

    assert message["delivery"].startswith("failed") and "refused" in message["delivery"].lower()
    assert "127.0.0.1" in caplog.text
    assert log_lines(config) == [message]


def test_slow_receiver_times_out(tmp_path, monkeypatch, receiver, caplog):
    url, received = receiver(delay=3.0)
    monkeypatch.setenv(URL_ENV, url)
    config = make_config(tmp_path, webhook_url_env=URL_ENV, timeout_seconds=0.3)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "check_failed", "nulls in x")

    assert time.monotonic() - started < 1.5
    assert message["delivery"].startswith("failed") and "timeout" in message["delivery"]
    assert "timeout" in caplog.text
    assert log_lines(config) == [message]


def test_env_var_named_but_unset(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(URL_ENV, raising=False)
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "rollback", "rolled back to v2")

    assert message["delivery"] == "not configured"
    assert len(caplog.records) == 1 and URL_ENV in caplog.text
    assert log_lines(config) == [message]


def test_no_webhook_configured(tmp_path, caplog):
    config = make_config(tmp_path)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.alerts"):
        message = send_alert(config, "retrain_triggered", "drift in x")

    assert message["delivery"] == "not configured"
    assert message["text"] == "[churn] drift in x" and message["details"] == {}
    assert caplog.records == []
    assert log_lines(config) == [message]


def test_unsupported_scheme_fails_without_raising(tmp_path, monkeypatch):
    monkeypatch.setenv(URL_ENV, "file:///etc/hostname")
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    assert send_alert(config, "promoted", "v1")["delivery"].startswith("failed: webhook URL scheme")


def test_concurrent_appends_keep_whole_lines(tmp_path):
    config = make_config(tmp_path)
    details = {"padding": "x" * 10_000}  # longer than one write buffer

    def burst(worker):
        for number in range(25):
            send_alert(config, "promoted", f"w{worker} v{number}", details)

    workers = [threading.Thread(target=burst, args=(worker,)) for worker in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(alert["text"] for alert in log_lines(config)) == sorted(
        f"[churn] w{worker} v{number}" for worker in range(4) for number in range(25)
    )


def test_recent_alerts_last_n_in_order_and_tolerates_corrupt_tail(tmp_path):
    config = make_config(tmp_path)
    assert recent_alerts(config) == []
    for number in range(5):
        send_alert(config, "promoted", f"v{number}")
    with config.alerts_log.open("a") as log:
        log.write('{"text": "[churn] trunc')

    assert [alert["text"] for alert in recent_alerts(config, limit=3)] == ["[churn] v2", "[churn] v3", "[churn] v4"]
    assert len(recent_alerts(config, limit=50)) == 5
    assert recent_alerts(config, limit=0) == []


def test_unknown_kind_raises(tmp_path):
    config = make_config(tmp_path)
    with pytest.raises(ValueError, match="unknown alert kind 'promotion'"):
        send_alert(config, "promotion", "typo")
    assert not config.alerts_log.exists()


@pytest.mark.parametrize(
    "text, cut",
    [
        ("request to http://alice:pw-secret@127.0.0.1:5000/api/2.0/x failed", "request to http://127.0.0.1/… failed"),
        ("POST https://hooks.example.com/T0/tok-secret?x=1: HTTP 500", "POST https://hooks.example.com/…: HTTP 500"),
        ("cannot write 's3://bucket/lake/raw_data?sig=tok-secret'", "cannot write 's3://bucket/…'"),
        ("bad host http://[::1/hooks/tok-secret", "bad host <URL>"),
        ("no URL here: /tmp/lake/raw_data", "no URL here: /tmp/lake/raw_data"),
    ],
)
def test_without_urls_keeps_scheme_and_host_only(text, cut):
    from retrain_assets.alerts import without_urls

    assert without_urls(text) == cut
