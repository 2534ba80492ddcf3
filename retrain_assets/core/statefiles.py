"""Small state files of the storage home, written so a crash or a full disk never leaves one unreadable.

Two kinds, two rules:

- **Whole-file state** (``tick_state.json``) is replaced, never edited: :func:`write_atomic` writes a
  temporary file in the same folder, fsyncs it, renames it over the old one and fsyncs the folder. A reader
  sees the old file or the new one, never a mix, and an empty or truncated file can only come from outside.
- **Logs** (``refusals.jsonl``, ``alerts.jsonl``) are append-only, so they are not rewritten by rename (that
  would copy the whole log per event and lose lines when two processes append at once). :func:`append_line`
  writes one whole line with a single ``write`` on an ``O_APPEND`` descriptor (under ``flock``, so its check
  for a torn last line never sees another writer's line in flight), then fsyncs: concurrent writers never
  interleave inside a line, and a crash can tear at most the final line. :func:`read_jsonl`
  skips a torn or corrupt line and counts it, so the caller can say so instead of crashing.

Standard library only: the CLI and the sensors import this.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; O_APPEND still keeps lines whole
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class JsonLines:
    """The readable records of a JSONL file (the newest ones when a limit was given) and how many lines
    were skipped as unreadable."""

    records: list[dict] = field(default_factory=list)
    skipped: int = 0

    def warning(self, path: Path) -> Optional[str]:
        """A sentence naming the skipped lines, or ``None`` when every line was readable."""
        if not self.skipped:
            return None
        lines = "line" if self.skipped == 1 else "lines"
        return f"{path}: skipped {self.skipped} unreadable {lines} (a torn or corrupt write)"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (temporary file in the same folder, fsync, rename, fsync
    of the folder), so a crash leaves the old content or the new, never an empty or partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def append_line(path: Path, record: Any) -> None:
    """Append ``record`` as one JSON line: a single write on an ``O_APPEND`` descriptor, then fsync.

    If the file ends in a torn line (a writer died mid-write), a newline goes first, so this record is not
    glued onto the fragment; the fragment stays one unreadable line that :func:`read_jsonl` skips."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)  # read: the last byte
    try:
        if fcntl is not None:  # writers take turns, so the last byte read is never another's line in flight
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:  # a regular file takes the whole line in one write; the loop is for a short write
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_jsonl(path: Path, limit: Optional[int] = None) -> JsonLines:
    """The JSON-object lines of ``path`` (the last ``limit`` of them, oldest first), skipping and counting
    lines that are not one JSON object (torn, corrupt, not UTF-8). Blank lines are ignored. No file: empty."""
    if limit is not None and limit <= 0:
        return JsonLines()
    try:
        log = path.open("rb")
    except FileNotFoundError:
        return JsonLines()
    records: deque[dict] = deque(maxlen=limit)
    skipped = 0
    with log:
        for raw in log:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                skipped += 1
    return JsonLines(list(records), skipped)


def read_json(path: Path) -> tuple[Optional[dict], Optional[str]]:
    """``(object, None)`` from a JSON file holding one object; ``(None, why)`` when it is missing, empty or
    unreadable, so a caller can treat it as no state and say why."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path}: no such file"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: unreadable ({type(exc).__name__})"
    if not text.strip():
        return None, f"{path}: empty"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(value, dict):
        return None, f"{path}: not a JSON object"
    return value, None


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
