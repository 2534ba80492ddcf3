"""Where the model's current code and params stand against the registry, and a snapshot that answers it fast.

The answer (:func:`code_state`): ``champion`` when the champion was built from the current code hash (code,
params and seed), ``lost`` when a candidate built from it on the current validated-features version lost to
the champion (a tick will not try it again on that data), ``untried`` when a tick would retrain, with the
changes that make it do so (``params_changed``, ``code_changed``), or ``no_champion``.

`retrain status --check` is meant for a pre-commit hook or a CI step, so it must answer in well under a
second without importing Dagster or MLflow. The registry's side of the answer is therefore kept in
``model_state.json`` under the Dagster home: the champion's hashes and every version trained on the newest
features version. It is only a shortcut, trusted while the local MLflow store (``mlflow.db``) has not changed
since it was written; any write to the registry (a new candidate, a promotion, a rollback) makes the next
check read MLflow and write it again. With an MLflow tracking server there is no file whose age says so, and
the check always reads MLflow.
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
    ``features_version`` (the current one), read from MLflow."""
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


def remember(config: "RetrainConfig", snap: dict[str, Any]) -> None:
    """Write ``snap`` as the shortcut (local MLflow store only: see the module docstring)."""
    if config.mlflow.tracking_uri is None:
        statefiles.write_atomic(config.dagster_home / STATE_FILE, json.dumps(snap))


def remembered(config: "RetrainConfig") -> Optional[dict[str, Any]]:
    """The shortcut, when it can be trusted: the local MLflow store exists and has not changed since it was
    written. ``None`` otherwise (or when it is unreadable), and the caller reads MLflow."""
    path: Path = config.dagster_home / STATE_FILE
    store = config.mlflow_dir / "mlflow.db"
    if config.mlflow.tracking_uri is not None or not path.is_file() or not store.is_file():
        return None
    if path.stat().st_mtime < store.stat().st_mtime:
        return None
    state, problem = statefiles.read_json(path)
    return state if problem is None else None
