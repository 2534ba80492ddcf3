"""Alerts: one JSON line per event in ``alerts.jsonl``, and a Slack-compatible POST to a webhook if one is set.

The webhook URL is read from the environment variable named by ``alerts.webhook_url_env``, so the secret stays
out of ``retrain.yaml``. Delivery never raises: a webhook that is down, slow or answering an error is logged as a
warning (host only, since webhook URLs carry their secret in the path) and recorded in the message's
``delivery`` field. The line is appended after delivery was attempted, so it carries the outcome.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from retrain_assets.config import RetrainConfig

KINDS = ("retrain_triggered", "promoted", "rejected", "check_failed", "run_failed", "rollback")
NOT_CONFIGURED = "not configured"

logger = logging.getLogger(__name__)


def send_alert(config: RetrainConfig, kind: str, text: str, details: Optional[dict] = None) -> dict:
    """Record an alert in ``alerts.jsonl`` and POST it to the webhook, if any; return it with its ``delivery``.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(KINDS)}")
    message = {
        "text": f"[{config.project}] {text}",
        "kind": kind,
        "project": config.project,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "details": details or {},
    }
    body = json.dumps(message, default=str).encode("utf-8")
    url = _webhook_url(config)
    delivery = _post(url, body, config.alerts.timeout_seconds) if url else NOT_CONFIGURED
    message["delivery"] = delivery
    _append(config, message)
    return message


def recent_alerts(config: RetrainConfig, limit: int = 10) -> list[dict]:
    """The last ``limit`` alerts from ``alerts.jsonl``, oldest first; lines that are not valid JSON are skipped."""
    if limit <= 0 or not config.alerts_log.is_file():
        return []
    latest: deque[dict] = deque(maxlen=limit)
    with config.alerts_log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                latest.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return list(latest)


def step_error(step_failures: Sequence[Any]) -> Optional[str]:
    """``"<step>: <exception>"`` of the first of Dagster's step-failure events, on one line: the user code's
    exception (the innermost cause), not Dagster's wrapper around it; an error of Dagster's own (a
    ``Failure`` our code raised, a failed blocking check) without its ``dagster._core...`` class name.
    ``None`` without a failed step."""
    if not step_failures:
        return None
    error = step_failures[0].step_failure_data.error
    while error is not None and error.cause is not None:
        error = error.cause
    text = error.message.strip() if error else "failed"
    if text.startswith("dagster."):
        text = text.partition(": ")[2] or text
    return f"{step_failures[0].step_key}: " + " ".join(line.strip() for line in text.splitlines() if line.strip())


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!?)\]]")  # not the sentence's punctuation


def without_urls(text: str) -> str:
    """``text`` with every URL cut to its scheme and host: a URL can carry a secret in its user part, path or
    query (webhook URLs do), and an exception message quotes URLs as they were given."""

    def host_only(match: "re.Match[str]") -> str:
        try:
            parts = urllib.parse.urlsplit(match.group())
            return f"{parts.scheme}://{parts.hostname or ''}/…"
        except ValueError:  # e.g. a malformed IPv6 host
            return "<URL>"

    return _URL.sub(host_only, text)


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


def _post(url: str, body: bytes, timeout: float) -> str:
    """POST ``body`` as JSON; ``"sent"`` or ``"failed: <reason>"``, never an exception. The URL carries a
    secret, so neither it nor an exception message quoting it ever reaches the reason or the log."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, scheme = parts.hostname or "?", parts.scheme
    except ValueError:  # e.g. a malformed IPv6 host
        host, scheme = "?", None
    if scheme is None:
        reason = "invalid webhook URL (ValueError)"
    elif scheme not in ("http", "https"):
        reason = f"webhook URL scheme must be http or https, got {scheme!r}"
    else:
        try:
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return "sent"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = _reason(exc, timeout)
        except Exception as exc:  # noqa: BLE001 - an alert must never fail the run that sends it
            reason = f"{type(exc).__name__} while posting"
    logger.warning("alert webhook at %s failed: %s", host, reason)
    return f"failed: {reason}"


def _reason(exc: Exception, timeout: float) -> str:
    """A short, secret-free description of a failed POST."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, TimeoutError):
        return f"timeout after {timeout:g}s"
    if isinstance(cause, (ValueError, http.client.InvalidURL)):  # their messages quote the URL
        return f"invalid webhook URL ({type(cause).__name__})"
    if isinstance(cause, OSError):  # socket errors: their text, no URL
        return f"{type(cause).__name__}: {cause.strerror or cause}"
    return type(cause).__name__ if isinstance(cause, BaseException) else str(cause)


def _append(config: RetrainConfig, message: dict) -> None:
    """Append one JSON line with a single unbuffered write, so concurrent writers never interleave a line."""
    config.alerts_log.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(message, default=str) + "\n").encode("utf-8")
    with open(config.alerts_log, "ab", buffering=0) as log:
        log.write(line)
