"""The project lock and the run deadline: what keeps two writers off one project, and stuck work loud.

One exclusive ``flock`` on ``<dagster home>/retrain.lock`` is held by whatever runs jobs on a project:
`retrain tick`, `materialize`, `backfill`, `revalidate`, `rollback`, and every run the daemon launches (its
project resource takes the lock for the run's steps, waiting for a tick to finish). The kernel drops the lock
when its process dies, even by SIGKILL. The file records the holder (pid, host, command, since), so a
refused caller can say who holds the lock and for how long, and `tick` can tell a busy project from a stuck
one (``runs.lock_alert_minutes``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

LOCK_FILE = "retrain.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the project lock, as its holder wrote it in the lock file."""

    pid: int
    host: str
    command: str
    since: dt.datetime

    def age_seconds(self, now: Optional[dt.datetime] = None) -> float:
        return ((now or dt.datetime.now(dt.timezone.utc)) - self.since).total_seconds()

    def describe(self) -> str:
        minutes = self.age_seconds() / 60
        return f"pid {self.pid} on {self.host} ({self.command}), for {minutes:.0f} min (since {self.since:%H:%M} UTC)"


class ProjectBusy(RuntimeError):
    """Another process holds the project lock; ``holder`` is who, when the lock file says."""

    def __init__(self, message: str, holder: Optional[LockHolder]):
        super().__init__(message)
        self.holder = holder


def lock_path(dagster_home: Path) -> Path:
    return dagster_home / LOCK_FILE


def read_holder(text: str) -> Optional[LockHolder]:
    """The holder recorded in a lock file's text; ``None`` for an empty or unreadable one."""
    try:
        record = json.loads(text)
        return LockHolder(
            int(record["pid"]), str(record["host"]), str(record["command"]), dt.datetime.fromisoformat(record["since"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def current_holder(dagster_home: Path) -> Optional[LockHolder]:
    """Who holds the project lock now, or ``None`` when nobody does (the file is emptied on release)."""
    import fcntl

    path = lock_path(dagster_home)
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(handle.read()) or LockHolder(0, "?", "unknown", dt.datetime.now(dt.timezone.utc))
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def project_lock(dagster_home: Path, wait_seconds: float = 0, command: Optional[str] = None) -> Iterator[None]:
    """Hold the project lock, waiting up to ``wait_seconds`` for it (default: not at all). Raises
    :class:`ProjectBusy` naming the holder and its age.

    Not re-entrant: a process that holds the lock and asks for it again is refused at once, without waiting
    (``flock`` on a second open of the file would wait for the process itself). Code that runs under a held
    lock is told so by its caller instead (the project resource's ``hold_project_lock``)."""
    import fcntl

    path = lock_path(dagster_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = read_holder(handle.read())
                if holder is not None and (holder.pid, holder.host) == (os.getpid(), socket.gethostname()):
                    message = f"this process already holds the project lock ({holder.command}); it is not re-entrant"
                    raise ProjectBusy(message, holder) from None
                if time.monotonic() >= deadline:
                    who = holder.describe() if holder else "a process that recorded no holder"
                    message = f"another retrain process is running jobs on this project: {who}"
                    raise ProjectBusy(message, holder) from None
                time.sleep(0.5)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or Path(sys.argv[0]).name,
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        handle.truncate(0)
        handle.write(json.dumps(record))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


class RunTimedOut(Exception):
    """A run went past ``runs.max_runtime_minutes``."""


# The orchestrator's own bookkeeping: its event log writes and their SQL. A timer that fires there is held
# back a moment, so the exception lands in the step (which Dagster then fails) and not in Dagster's storage
# code (the exception escapes the run) or in a garbage-collection callback (Python drops it). Storage that
# hangs still times out, _MAX_HOLD_SECONDS later.
_BOOKKEEPING = ("dagster.", "sqlalchemy.", "alembic.")
_RETRY_SECONDS = 0.05
_MAX_HOLD_SECONDS = 10.0


def _in_bookkeeping(frame: Any) -> bool:
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return module.startswith(_BOOKKEEPING)


@dataclass
class Deadline:
    """What :func:`run_deadline` did: ``stopped`` holds its message once it stopped the run, so a run stopped
    outside any step (in the orchestrator's machinery, which records no step error) still says why it failed."""

    stopped: Optional[str] = None


@contextlib.contextmanager
def run_deadline(seconds: float, what: str) -> Iterator[Deadline]:
    """Raise :class:`RunTimedOut` in the step that is running when ``seconds`` have passed, so an in-process
    run that hangs fails (and releases the lock) instead of blocking every later retrain. Needs the main
    thread (a signal timer); elsewhere it bounds nothing, and says so in the docstring of its caller."""
    deadline = Deadline()
    if threading.current_thread() is not threading.main_thread():
        yield deadline
        return

    held_back = [0.0]

    def expire(signum: int, frame: Any) -> None:
        if _in_bookkeeping(frame) and held_back[0] < _MAX_HOLD_SECONDS:  # try again in a moment
            held_back[0] += _RETRY_SECONDS
            signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)
            return
        deadline.stopped = f"{what} ran longer than runs.max_runtime_minutes ({seconds / 60:g} min) and was stopped"
        raise RunTimedOut(deadline.stopped)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
