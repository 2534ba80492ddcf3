"""`retrain ui`: the Dagster UI and daemon on the project's storage home, with a guard that web pages cannot pass.

Dagster's webserver runs any GraphQL it is sent, mutations included, from any origin: a ``text/plain`` POST
(which a browser sends cross-site without asking) to ``/graphql?query=mutation…`` pauses automation, and so
a page the operator happens to open could launch runs, stop sensors or wipe history. `dagster dev` gives no
way to add a check in front, so `retrain ui` starts the daemon as a child process (``dagster-daemon run``)
and serves the webserver's own ASGI app itself, wrapped in :class:`CrossSiteGuard`:

- the ``Host`` header must be one the UI is served as (the bound host, ``localhost``, ``127.0.0.1``, plus any
  ``--allowed-host``), which also stops DNS rebinding;
- a request that can change state (not GET/HEAD/OPTIONS, and every websocket) with an ``Origin`` or, lacking
  that, a ``Referer`` from another site is refused;
- a POST to ``/graphql`` must be ``application/json``, the one content type a browser will not send
  cross-site without a CORS preflight, which this server never grants;
- a GET to ``/graphql`` may only read: a mutation there is refused.

Clients that are not browsers (curl, scripts) send no ``Origin`` and keep working when they post JSON.
``--read-only`` serves Dagster's read-only UI, which refuses every mutation itself.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Iterator, MutableMapping, Optional
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from retrain_assets.core.config import RetrainConfig

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WORKSPACE_FILE = "workspace.yaml"
WORKSPACE = """load_from:
  - python_module:
      module_name: retrain_assets.definitions
      attribute: defs
      location_name: retrain_assets
"""


def local_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values the UI answers to: the bound host and the loopback names with the port, and
    ``extra`` as given (``ui.example.com`` behind a proxy on 443, say)."""
    names = {host, "localhost", "127.0.0.1", "::1"} - {"0.0.0.0", "::"}
    return frozenset({f"[{name}]:{port}" if ":" in name else f"{name}:{port}" for name in names} | set(extra))


def graphql_mutates(query: str) -> bool:
    """Whether a GraphQL document holds a mutation (a document that does not parse counts as one)."""
    from graphql import OperationType, parse
    from graphql.error import GraphQLSyntaxError
    from graphql.language import OperationDefinitionNode

    try:
        document = parse(query)
    except GraphQLSyntaxError:
        return True
    return any(
        isinstance(node, OperationDefinitionNode) and node.operation != OperationType.QUERY
        for node in document.definitions
    )


class CrossSiteGuard:
    """ASGI middleware refusing the requests a foreign web page could make the operator's browser send."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]):
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[1]})
        else:
            status, reason = refusal
            body = json.dumps({"error": reason}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> Optional[tuple[int, str]]:
        """``(status, reason)`` when the request must not reach Dagster, else ``None``."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        host = headers.get("host", "")
        if host not in self.allowed_hosts:
            return 421, f"the UI is not served as host {host!r}; start it with --allowed-host to allow it"
        method = scope.get("method", "GET")
        if scope["type"] == "websocket" or method not in SAFE_METHODS:
            source = headers.get("origin") or headers.get("referer")
            if source is not None and urlsplit(source).netloc not in self.allowed_hosts:
                return 403, f"cross-site request refused: it comes from {urlsplit(source).netloc or source!r}"
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/graphql"):
            if method == "POST" and headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return 415, "GraphQL over POST must be sent as application/json"
            if method == "GET":
                query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("query", [])
                if any(graphql_mutates(text) for text in query):
                    return 405, "a GraphQL mutation must be sent as a POST of application/json"
        return None


def write_workspace(dagster_home: Path) -> Path:
    """The workspace file the daemon and the webserver load: this package's code location."""
    path = dagster_home / WORKSPACE_FILE
    if not path.exists() or path.read_text() != WORKSPACE:
        path.write_text(WORKSPACE)
    return path


@contextlib.contextmanager
def daemon(workspace: Path) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run`` (sensors, schedules, the run queue) for as long as the UI is up."""
    from retrain_assets.app.compat import daemon_command

    process = subprocess.Popen(daemon_command(workspace))
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def guarded_app(
    instance: "DagsterInstance", workspace: Path, read_only: bool, allowed_hosts: frozenset[str]
) -> Iterator[ASGIApp]:
    """The webserver's own ASGI app on ``instance``, behind :class:`CrossSiteGuard` (the workspace context
    the app factory takes is a Dagster internal: :func:`compat.workspace_process_context`)."""
    from dagster_webserver.app import create_app_from_workspace_process_context

    from retrain_assets.app.compat import workspace_process_context

    with workspace_process_context(instance, workspace, read_only) as context:
        yield CrossSiteGuard(create_app_from_workspace_process_context(context), allowed_hosts)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(
    config: "RetrainConfig",
    host: str,
    port: int,
    read_only: bool = False,
    with_daemon: bool = True,
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Serve the guarded UI (and run the daemon beside it) until SIGINT or SIGTERM.

    The instance is opened first, under the project's opening lock, so the daemon never races the webserver
    to create its storage. A shell starts background jobs with SIGINT ignored, and children inherit that;
    restoring Python's handler first makes both signals stop the UI and, through :func:`daemon`, its daemon."""
    import uvicorn

    from retrain_assets.app.instance import project_instance

    signal.signal(signal.SIGINT, signal.default_int_handler)
    # uvicorn shuts down on SIGTERM, then raises it again: this handler turns it into the clean exit below
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt), contextlib.ExitStack() as stack:
        stack.callback(stop_descendants)  # last, after the orderly shutdown: whatever is left
        instance = stack.enter_context(project_instance(config))
        workspace = write_workspace(config.dagster_home)
        app = stack.enter_context(guarded_app(instance, workspace, read_only, local_hosts(host, port, allowed_hosts)))
        if with_daemon:
            stack.enter_context(daemon(workspace))
        uvicorn.run(app, host=host, port=port, log_level="warning")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from ``/proc`` (Linux)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found += children
        frontier += children
    return found


def stop_descendants(grace: float = 10.0) -> None:
    """Terminate the code servers the webserver and the daemon started: they would otherwise live on
    until their heartbeat times out, up to 45 s after the UI stopped."""
    import os
    import time

    pending = descendants(os.getpid())
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if Path(f"/proc/{pid}").exists() and not _reaped(pid)]
        time.sleep(0.1)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child; ``True`` once it is gone (a zombie counts as gone)."""
    import os

    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True
