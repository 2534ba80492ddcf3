"""Alerts: one JSON line per event in ``alerts.jsonl``, and a Slack-compatible POST to a webhook if one is set.

The webhook URL is read from the environment variable named by ``alerts.webhook_url_env``, so the secret stays
out of ``retrain.yaml``. Delivery never raises: a webhook that is down, slow or answering an error is logged as a
warning (host only, since webhook URLs carry their secret in the path) and recorded in the message's
``delivery`` field. The line is appended after delivery was attempted, so it carries the outcome.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import logging
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Optional, Sequence

from retrain_assets.core import statefiles

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig

KINDS = (
    "retrain_triggered",
    "promoted",
    "rejected",
    "check_failed",
    "run_failed",
    "rollback",
    "champion_unloadable",
    "stuck",
)
NOT_CONFIGURED = "not configured"
MAX_RESPONSE_BYTES = 64 * 1024  # of a webhook's answer: enough for any error text, bounded against a hostile one

logger = logging.getLogger(__name__)


def send_alert(config: RetrainConfig, kind: str, text: str, details: Optional[dict] = None) -> dict:
    """Record an alert in ``alerts.jsonl`` and POST it to the webhook, if any; return it with its ``delivery``.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(KINDS)}")
    everything, id_column = config.alerts.redact_samples, None if config.validation.show_id_samples else config.data.id
    message = {
        "text": withhold_samples(f"[{config.project}] {text}", everything, id_column),
        "kind": kind,
        "project": config.project,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "details": _withhold_in(details or {}, everything, id_column),
    }
    body = json.dumps(message, default=str).encode("utf-8")
    url = _webhook_url(config)
    delivery = _post(url, body, config.alerts.timeout_seconds, config.alerts.https_only) if url else NOT_CONFIGURED
    message["delivery"] = delivery
    _append(config, message)
    return message


def read_alerts(config: RetrainConfig, limit: int = 10) -> statefiles.JsonLines:
    """The last ``limit`` alerts from ``alerts.jsonl``, oldest first, and how many torn or corrupt lines were
    skipped (`retrain status` says so)."""
    return statefiles.read_jsonl(config.alerts_log, limit)


def recent_alerts(config: RetrainConfig, limit: int = 10) -> list[dict]:
    """:func:`read_alerts`' records; skipped lines are logged as a warning."""
    read = read_alerts(config, limit)
    warning = read.warning(config.alerts_log)
    if warning:
        logger.warning(warning)
    return read.records


_SAMPLE_MARKERS = ("sample [", "e.g. [")  # how validation and ingest quote failing values: a Python list repr
_COLUMN = re.compile(r"""column ('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def withhold_samples(text: str, everything: bool, id_column: Optional[str]) -> str:
    """``text`` with the failing-value samples it quotes (``sample [...]``, ``e.g. [...]``) replaced by
    ``[withheld]``: all of them when ``everything``, else those of the rule on column ``id_column`` (the
    nearest ``column '...'`` before the sample). Counts and rule names stay. Validation already withholds
    at the source; this is the last line before a message leaves the lake."""
    if not everything and id_column is None:
        return text
    pieces, position = [], 0
    while True:
        starts = [found for found in (text.find(marker, position) for marker in _SAMPLE_MARKERS) if found >= 0]
        if not starts:
            break
        opening = text.index("[", min(starts))
        closing = _list_end(text, opening)
        if everything or _column_before(text, min(starts)) == id_column:
            pieces.append(text[position:opening] + "[withheld]")
        else:
            pieces.append(text[position:closing])
        position = closing
    return "".join(pieces) + text[position:]


def _list_end(text: str, opening: int) -> int:
    """The index after the ``]`` closing the list repr opened at ``opening`` (quotes and nesting respected);
    the end of ``text`` when it is cut short."""
    depth, quote, index = 0, None, opening
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return len(text)


def _column_before(text: str, at: int) -> Optional[str]:
    """The column named by the last ``column '...'`` before ``at`` (``None``: none, or a table rule is nearer)."""
    import ast

    matches = list(_COLUMN.finditer(text, 0, at))
    if not matches or text.rfind("table: ", 0, at) > matches[-1].start():
        return None
    try:
        return str(ast.literal_eval(matches[-1].group(1)))
    except (ValueError, SyntaxError):
        return None


def _withhold_in(value: Any, everything: bool, id_column: Optional[str]) -> Any:
    """:func:`withhold_samples` over every string in a JSON-like value."""
    if isinstance(value, str):
        return withhold_samples(value, everything, id_column)
    if isinstance(value, dict):
        return {key: _withhold_in(item, everything, id_column) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_withhold_in(item, everything, id_column) for item in value]
    return value


# Exceptions whose message already names the config key and their cause (the cause keeps its traceback).
_NAMES_ITS_CAUSE = {"UserCodeError"}


def step_error(step_failures: Sequence[Any]) -> Optional[str]:
    """``"<step>: <exception>"`` of the first of Dagster's step-failure events, on one line: the user code's
    exception (the innermost cause, or the first that names its cause itself), not Dagster's wrapper around
    it; an error of Dagster's own (a ``Failure`` our code raised, a failed blocking check) without its
    ``dagster._core...`` class name. ``None`` without a failed step."""
    if not step_failures:
        return None
    error = step_failures[0].step_failure_data.error
    while error is not None and error.cause is not None and error.cls_name not in _NAMES_ITS_CAUSE:
        error = error.cause
    text = error.message.strip() if error else "failed"
    if text.startswith("dagster."):
        text = text.partition(": ")[2] or text
    return f"{step_failures[0].step_key}: " + " ".join(line.strip() for line in text.splitlines() if line.strip())


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)\]]")  # not the sentence's punctuation
# urllib3 quotes the rest of the URL apart: "Max retries exceeded with url: /path?token=…"
_URL_TAIL = re.compile(r"\burl: /[^\s'\"<>]*")


def without_urls(text: str) -> str:
    """``text`` with every URL cut to its scheme and host: a URL can carry a secret in its user part, path or
    query (webhook URLs do), and an exception message quotes URLs as they were given."""

    def host_only(match: "re.Match[str]") -> str:
        try:
            parts = urllib.parse.urlsplit(match.group())
            return f"{parts.scheme}://{parts.hostname or ''}/…"
        except ValueError:  # e.g. a malformed IPv6 host
            return "<URL>"

    return _URL_TAIL.sub("url: /…", _URL.sub(host_only, text))


def _webhook_url(config: RetrainConfig) -> Optional[str]:
    """The webhook URL from the environment, or None (with a warning when the named variable is unset)."""
    name = config.alerts.webhook_url_env
    if not name:
        return None
    url = os.environ.get(name, "").strip()
    if not url:
        logger.warning("alerts.webhook_url_env names %s, but that variable is unset or empty; alert not sent", name)
        return None
    return url


def _post(url: str, body: bytes, timeout: float, https_only: bool = False) -> str:
    """POST ``body`` as JSON; ``"sent"`` (a 2xx answer) or ``"failed: <reason>"``, never an exception. The
    URL carries a secret, so neither it nor an exception message quoting it ever reaches the reason or the
    log. Redirects are not followed: a 3xx is a failure that names the status."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, scheme = parts.hostname or "?", parts.scheme
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:  # e.g. a malformed IPv6 host
        host, scheme = "?", None
    if scheme is None:
        reason = "invalid webhook URL (ValueError)"
    elif scheme not in ("http", "https"):
        reason = f"webhook URL scheme must be http or https, got {scheme!r}"
    elif https_only and scheme != "https":
        reason = "alerts.https_only is set and the webhook URL is http://; not sent"
    elif not parts.hostname:
        reason = "invalid webhook URL (no host)"
    else:
        try:
            outcome = _deliver(parts, body, timeout)
        except Exception as exc:  # noqa: BLE001 - an alert must never fail the run that sends it
            outcome = f"{type(exc).__name__} while posting"
        if outcome is None:
            return "sent"
        reason = outcome
    logger.warning("alert webhook at %s failed: %s", host, reason)
    return f"failed: {reason}"


def _deliver(parts: urllib.parse.SplitResult, body: bytes, timeout: float) -> Optional[str]:
    """``None`` once the webhook answered 2xx, else why not. A socket timeout bounds each read, not the
    call (a server trickling a byte at a time holds a plain call for ever), so the exchange runs in a
    worker thread the caller waits for at most ``timeout``; at the deadline the socket is shut down, which
    ends the worker's blocked read too. At most :data:`MAX_RESPONSE_BYTES` of the answer are read."""
    connection, target, headers = _connection(parts, timeout)
    box: dict[str, Any] = {}

    def exchange() -> None:
        try:
            connection.request("POST", target, body=body, headers={"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            box["answer"] = _answer(response.status, response.reason)
            response.read(MAX_RESPONSE_BYTES)  # the rest is never read: the connection is closed
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            box.setdefault("error", exc)
        finally:
            connection.close()

    worker = threading.Thread(target=exchange, name="retrain-alert-webhook", daemon=True)
    worker.start()
    worker.join(timeout)
    late = worker.is_alive()
    if late:
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the worker
                pass
    if "answer" in box:  # the status line came in time; reading the rest of the answer does not matter
        return box["answer"]
    if late:
        return f"timeout after {timeout:g}s"
    error = box["error"]
    if isinstance(error, (OSError, http.client.HTTPException, ValueError)):
        return _reason(error, timeout)
    return f"{type(error).__name__} while posting"


def _answer(status: int, said: str) -> Optional[str]:
    """``None`` for a 2xx status, else the failure to record (the reason phrase cut short, URLs removed)."""
    if 200 <= status < 300:
        return None
    said = without_urls(" ".join(str(said).split()))[:80]
    if 300 <= status < 400:
        return f"HTTP {status} {said}: a redirect, not followed (the alert was not delivered)"
    return f"HTTP {status} {said}"


def _connection(
    parts: urllib.parse.SplitResult, timeout: float
) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """An unopened connection to the webhook, the request target and extra headers; through the proxy the
    environment names for the URL (``https_proxy``/``http_proxy``, unless ``no_proxy`` covers the host), as
    urllib would: a ``CONNECT`` tunnel for https, the absolute URL for http."""
    https, host, port = parts.scheme == "https", parts.hostname or "", parts.port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return kind(host, port, timeout=timeout), target, {}
    via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if via.username is not None:
        user = f"{urllib.parse.unquote(via.username)}:{urllib.parse.unquote(via.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(user.encode()).decode("ascii")
    connection = kind(via.hostname or "", via.port or 80, timeout=timeout)
    if https:
        connection.set_tunnel(host, port or 443, headers=headers)
        return connection, target, {}
    return connection, urllib.parse.urlunsplit(parts._replace(fragment="")), headers


def _reason(exc: Exception, timeout: float) -> str:
    """A short, secret-free description of a failed POST."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout:g}s"
    if isinstance(exc, (ValueError, http.client.InvalidURL)):  # their messages quote the URL
        return f"invalid webhook URL ({type(exc).__name__})"
    if isinstance(exc, OSError):  # socket errors: their text, no URL
        return f"{type(exc).__name__}: {without_urls(str(exc.strerror or exc))}"
    return type(exc).__name__


def _append(config: RetrainConfig, message: dict) -> None:
    """Append one JSON line (:func:`statefiles.append_line`: one ``O_APPEND`` write, fsynced), so concurrent
    writers never interleave a line."""
    from retrain_assets.core.landing import ensure_home

    ensure_home(config)
    statefiles.append_line(config.alerts_log, message)
