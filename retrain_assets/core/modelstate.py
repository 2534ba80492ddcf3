"""Where the model's current code and params stand against the registry, and a snapshot that answers it fast.

The answer (:func:`code_state`): ``champion`` when the champion was built from the current code hash (code,
params and seed), ``lost`` when a candidate built from it on the current validated-features version lost to
the champion (a tick will not try it again on that data), ``untried`` when a tick would retrain, with the
changes that make it do so (``params_changed``, ``code_changed``), or ``no_champion``.

`retrain status --check` is meant for a pre-commit hook or a CI step, so it must answer in well under a
second without importing Dagster or MLflow, and `retrain status` in under two (importing MLflow alone takes
about one). The registry's side of both answers is therefore kept in ``model_state.json`` under the Dagster
home: the champion's hashes and every version trained on the newest features version, and the champion and
last-decision blocks of status. It is only a shortcut, trusted while the local MLflow store (``mlflow.db``) is
the file it was read from: its modification time (in nanoseconds) and size, taken before MLflow was read, are
kept with it, so any write to the registry (a new candidate, a promotion, a rollback), even one made while it
was read, makes the next reader read MLflow and write it again. With an MLflow tracking server there is no
file to date it by, and MLflow is always read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core import statefiles
from retrain_assets.core.triggers import code_change

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.registry import Registry
    from retrain_assets.core.training import ModelCode

STATE_FILE = "model_state.json"
_VERSION_TAGS = ("code_hash", "source_hash", "params_hash", "features_version", "decision", "decision_reason")


@dataclass(frozen=True)
class CodeState:
    """See the module docstring; ``changes`` holds ``(kind, message)`` of what makes an ``untried`` state
    retrain, ``version`` the champion's or the version that lost."""

    state: str
    code_hash: str
    version: Optional[str] = None
    reason: Optional[str] = None
    changes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        """Whether a tick would retrain because of the code or params."""
        return self.state in ("untried", "no_champion")

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "code_hash": self.code_hash,
            "version": self.version,
            "reason": self.reason,
            "changes": [{"kind": kind, "message": message} for kind, message in self.changes],
        }


def snapshot(registry: "Registry", features_version: Optional[int]) -> dict[str, Any]:
    """The registry's side of :func:`code_state`: the champion's tags and those of every version trained on
    ``features_version`` (the current one), and the ``status`` blocks (``champion``, ``last_decision``), read
    from MLflow."""
    from retrain_assets.core.names import CHAMPION

    champion = registry.by_alias(CHAMPION)
    versions: list[Any] = []
    if features_version is not None:
        query = f"name = '{registry.name}' and tags.features_version = '{features_version}'"
        versions = registry.client.search_model_versions(query)

    def record(version: Any) -> dict[str, Any]:
        return {"version": str(version.version), **{k: version.tags.get(k) for k in _VERSION_TAGS}}

    return {
        "champion": record(champion) if champion is not None else None,
        "features_version": features_version,
        "versions": sorted((record(v) for v in versions), key=lambda r: int(r["version"])),
        "status": {
            "champion": registry.describe(champion) if champion is not None else None,
            "last_decision": registry.last_decision(),
        },
    }


def code_state(snap: dict[str, Any], code: "ModelCode", features_version: Optional[int]) -> CodeState:
    """Where ``code`` stands against the registry ``snap`` describes, on ``features_version``."""
    champion = snap.get("champion")
    if champion is None:
        return CodeState("no_champion", code.code_hash, reason="no champion yet: the next tick with data trains one")
    if champion.get("code_hash") == code.code_hash:
        return CodeState("champion", code.code_hash, champion["version"])
    same_data = features_version is not None and snap.get("features_version") == features_version
    tried = [v for v in snap.get("versions", []) if same_data and v.get("code_hash") == code.code_hash]
    if tried:
        newest = tried[-1]
        reason = newest.get("decision_reason")
        if newest.get("decision") == "promoted":  # it was champion, and a rollback replaced it
            reason = f"v{newest['version']} was promoted, then the champion was rolled back to v{champion['version']}"
        return CodeState("lost", code.code_hash, newest["version"], reason)
    changes = code_change(champion, code.params_hash, code.source_hash, None)
    return CodeState("untried", code.code_hash, champion["version"], changes=changes)


def store_stamp(config: "RetrainConfig") -> Optional[list[int]]:
    """The local MLflow store's modification time (ns) and size, what a snapshot is trusted by; ``None`` with a
    tracking server, or before the store exists."""
    store = config.mlflow_dir / "mlflow.db"
    if config.mlflow.tracking_uri is not None or not store.is_file():
        return None
    stat = store.stat()
    return [stat.st_mtime_ns, stat.st_size]


def remember(config: "RetrainConfig", snap: dict[str, Any], stamp: Optional[list[int]]) -> None:
    """Keep ``snap``, read from a store whose :func:`store_stamp` was ``stamp`` before it was read (local MLflow
    store only: see the module docstring)."""
    if stamp is not None:
        statefiles.write_atomic(config.dagster_home / STATE_FILE, json.dumps({**snap, "store": stamp}))


def remembered(config: "RetrainConfig") -> Optional[dict[str, Any]]:
    """The shortcut, when it can be trusted: the local MLflow store is as it was when the shortcut was read from
    it. ``None`` otherwise (or when it is unreadable, or from a release without the status blocks), and the
    caller reads MLflow."""
    path: Path = config.dagster_home / STATE_FILE
    stamp = store_stamp(config)
    if stamp is None or not path.is_file():
        return None
    state, problem = statefiles.read_json(path)
    if problem is not None or not isinstance(state, dict) or state.get("store") != stamp or "status" not in state:
        return None
    return state
