"""send_alert and recent_alerts against a real HTTP receiver on 127.0.0.1."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from retrain_assets.core.alerts import recent_alerts, send_alert
from retrain_assets.core.config import parse_config

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

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
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

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
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

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
        message = send_alert(config, "rejected", "candidate lost")

    assert message["delivery"].startswith("failed") and "refused" in message["delivery"].lower()
    assert "127.0.0.1" in caplog.text
    assert log_lines(config) == [message]


def test_slow_receiver_times_out(tmp_path, monkeypatch, receiver, caplog):
    url, received = receiver(delay=3.0)
    monkeypatch.setenv(URL_ENV, url)
    config = make_config(tmp_path, webhook_url_env=URL_ENV, timeout_seconds=0.3)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
        message = send_alert(config, "check_failed", "nulls in x")

    assert time.monotonic() - started < 1.5
    assert message["delivery"].startswith("failed") and "timeout" in message["delivery"]
    assert "timeout" in caplog.text
    assert log_lines(config) == [message]


def test_env_var_named_but_unset(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(URL_ENV, raising=False)
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
        message = send_alert(config, "rollback", "rolled back to v2")

    assert message["delivery"] == "not configured"
    assert len(caplog.records) == 1 and URL_ENV in caplog.text
    assert log_lines(config) == [message]


def test_no_webhook_configured(tmp_path, caplog):
    config = make_config(tmp_path)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
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
    from retrain_assets.core.alerts import without_urls

    assert without_urls(text) == cut


@pytest.fixture
def serve():
    """Start a real HTTP server on 127.0.0.1 with the given handler class; returns its base URL."""
    servers = []

    def start(handler):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def swallow(self):
        self.rfile.read(int(self.headers["Content-Length"]))


def test_a_trickling_receiver_cannot_hold_the_call_past_its_deadline(tmp_path, monkeypatch, serve, caplog):
    """The timeout bounds the whole call: a server sending its status line a byte every 50 ms (each read
    well within a socket timeout) used to hold a 0.5 s call for the whole 10 s it trickled."""

    class Trickle(_Quiet):
        def do_POST(self):
            self.swallow()
            for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"x" * 200:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)

    monkeypatch.setenv(URL_ENV, serve(Trickle) + "/hooks/secret")
    config = make_config(tmp_path, webhook_url_env=URL_ENV, timeout_seconds=0.5)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
        message = send_alert(config, "run_failed", "training crashed")

    assert time.monotonic() - started < 0.5 + 0.4
    assert message["delivery"] == "failed: timeout after 0.5s"
    assert "secret" not in caplog.text and "secret" not in config.alerts_log.read_text()
    assert log_lines(config) == [message]


def test_a_huge_answer_is_read_no_further_than_64_kb(tmp_path, monkeypatch, serve):
    """A 200 MB answer used to be read whole (and held in memory); now reading stops at 64 KB and the
    connection is closed, so the server cannot push more than what the socket buffers take."""
    pushed = []

    class Huge(_Quiet):
        def do_POST(self):
            self.swallow()
            self.send_response(200)
            self.send_header("Content-Length", str(200 << 20))
            self.end_headers()
            chunk, total = b"0" * (1 << 16), 0
            try:
                while total < 200 << 20:
                    self.wfile.write(chunk)
                    total += len(chunk)
            except OSError:
                pass
            finally:
                pushed.append(total)

    monkeypatch.setenv(URL_ENV, serve(Huge) + "/hooks/secret")
    config = make_config(tmp_path, webhook_url_env=URL_ENV, timeout_seconds=3)

    message = send_alert(config, "promoted", "v2")

    assert message["delivery"] == "sent"
    deadline = time.monotonic() + 3
    while not pushed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pushed and pushed[0] < 32 << 20, f"the server pushed {pushed} bytes"


def test_a_redirect_is_not_followed_and_not_recorded_as_sent(tmp_path, monkeypatch, serve, caplog):
    """A 3xx used to be followed (as a GET elsewhere) and the alert recorded as "sent"."""
    followed = []

    class Redirect(_Quiet):
        def do_POST(self):
            self.swallow()
            if self.path.startswith("/elsewhere"):
                followed.append(self.path)
                self.send_response(200)
            else:
                self.send_response(302)
                self.send_header("Location", "/elsewhere/secret")
            self.end_headers()

        do_GET = do_POST

    monkeypatch.setenv(URL_ENV, serve(Redirect) + "/hooks/secret")
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    with caplog.at_level(logging.WARNING, logger="retrain_assets.core.alerts"):
        message = send_alert(config, "rollback", "rolled back to v2")

    assert message["delivery"].startswith("failed: HTTP 302") and "not followed" in message["delivery"]
    assert followed == []
    assert log_lines(config) == [message]
    assert "secret" not in caplog.text and "secret" not in config.alerts_log.read_text()


def test_https_only_refuses_an_http_webhook(tmp_path, monkeypatch, receiver):
    url, received = receiver()
    monkeypatch.setenv(URL_ENV, url)
    config = make_config(tmp_path, webhook_url_env=URL_ENV, https_only=True)

    message = send_alert(config, "promoted", "v1")

    assert message["delivery"] == "failed: alerts.https_only is set and the webhook URL is http://; not sent"
    assert received == []
    assert make_config(tmp_path).alerts.https_only is False


def test_an_http_proxy_from_the_environment_is_still_used(tmp_path, monkeypatch, serve):
    """Delivery no longer goes through urllib; a proxy named in http_proxy must keep working."""
    seen = []

    class Proxy(_Quiet):
        def do_POST(self):
            seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]))
            self.send_response(200)
            self.end_headers()

    monkeypatch.setenv("http_proxy", serve(Proxy))
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv(URL_ENV, "http://hooks.invalid:8080/hooks/secret?x=1")
    config = make_config(tmp_path, webhook_url_env=URL_ENV)

    assert send_alert(config, "promoted", "v1")["delivery"] == "sent"
    assert seen == [("http://hooks.invalid:8080/hooks/secret?x=1", "[churn] v1")]


FAILURES = (
    "raw_data v3: column 'customer_id': expect_column_values_to_be_unique (unique within the batch) failed for 2 "
    "of 600 rows (0.3%), sample ['C-0042', 'C-0042']; raw_data v3: column 'monthly_charges': "
    "expect_column_values_to_be_between (within hard [0, 500]) failed for 1 of 600 non-null values (0.2%), "
    "sample [9999.5]"
)


def id_config(tmp_path, validation=None, **alerts):
    columns = {"customer_id": "string", "monthly_charges": "float", "y": "int"}
    raw = {
        "project": "churn",
        "data": {"target": "y", "task": "classification", "id": "customer_id", "columns": columns},
    }
    return parse_config({**raw, "alerts": alerts, "validation": validation or {}}, base_dir=tmp_path)


def test_id_values_never_leave_in_an_alert_by_default(tmp_path, monkeypatch, receiver):
    """Validation withholds them at the source; the alert withholds any still quoted, webhook and log alike."""
    url, received = receiver()
    monkeypatch.setenv(URL_ENV, url)
    config = id_config(tmp_path, webhook_url_env=URL_ENV)

    message = send_alert(config, "run_failed", FAILURES, {"error": FAILURES, "checks": [FAILURES]})

    logged, posted = config.alerts_log.read_text(), json.dumps(received)
    for text in (logged, posted):
        assert "C-0042" not in text
        assert "sample [withheld]" in text and "failed for 2 of 600 rows" in text and "9999.5" in text
    assert message["details"]["checks"] == [message["details"]["error"]]
    shown = id_config(tmp_path / "shown", {"show_id_samples": True})
    assert "C-0042" in send_alert(shown, "run_failed", FAILURES)["text"]


def test_redact_samples_keeps_every_failing_value_out_of_alerts(tmp_path, monkeypatch, receiver):
    url, received = receiver()
    monkeypatch.setenv(URL_ENV, url)
    config = id_config(tmp_path, {"show_id_samples": True}, webhook_url_env=URL_ENV, redact_samples=True)

    send_alert(config, "run_failed", FAILURES + "; column 'plan' cannot be cast to int: 3 values, e.g. ['a]b', 'x']")

    for text in (config.alerts_log.read_text(), json.dumps(received)):
        assert "C-0042" not in text and "9999.5" not in text and "a]b" not in text and "'x'" not in text
        assert text.count("[withheld]") == 3
        assert "expect_column_values_to_be_between" in text and "failed for 1 of 600 non-null values" in text
