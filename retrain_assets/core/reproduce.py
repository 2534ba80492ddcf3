"""`retrain reproduce VERSION`: train a registered model version again and prove it is the same model.

"The same commit and data version always produce the same model", checked rather than assumed. The version is
retrained from what it recorded: the validated-features Delta version it was trained on (time travel), its
``model`` section (params, seed, holdout fraction, window; from its code manifest) and the project's code as
it is on disk. Identity means the same hash of the raw predictions on its holdout (class probabilities or
regression values as float64 bytes, see :func:`training.prediction_hash`) and the same holdout metrics.

The code must be the code the version was built from: the working tree's or, with ``at_commit``, that of the
git commit the version recorded (exported to a temporary folder; the checkout is not touched). When a file's
hash differs, reproduce refuses and names the files (the code manifest holds each file's hash); with
``allow_code_change`` it retrains anyway and reports how far the predictions moved. Nothing is logged or
registered: reproducing changes no state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core import delta, training, usercode

if TYPE_CHECKING:
    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.registry import Registry


class CannotReproduce(ValueError):
    """The version cannot be retrained at all: no such version, not a trained candidate, its data is gone."""


@dataclass
class Reproduction:
    """What reproduce found. ``identical`` only when it retrained and both the prediction hash and the metrics
    match; ``differences`` names what differs in the code (and, when the record has no manifest, says so)."""

    version: str
    features_version: int
    differences: list[str]
    retrained: bool
    recorded_hash: Optional[str] = None
    reproduced_hash: Optional[str] = None
    recorded_metrics: dict[str, float] = field(default_factory=dict)
    reproduced_metrics: dict[str, float] = field(default_factory=dict)
    holdout_rows: int = 0
    code_from: str = "the working tree"  # or the git commit the code was read from (--at-commit)
    changed_rows: Optional[int] = None  # holdout rows whose raw output differs (only when the hashes differ)

    @property
    def identical(self) -> bool:
        return (
            self.retrained
            and self.recorded_hash == self.reproduced_hash
            and _same(self.recorded_metrics, self.reproduced_metrics)
        )


def resolve_version(registry: "Registry", version: str) -> Any:
    """The model version named by number or by alias (``champion``, ``previous_champion``, ``challenger``)."""
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        found = registry.by_alias(version)
        if found is None:
            raise CannotReproduce(f"model {registry.name!r} has no version with the alias {version!r}")
        return found
    try:
        return registry.client.get_model_version(registry.name, version)
    except MlflowException:
        raise CannotReproduce(f"model {registry.name!r} has no version {version}") from None


def code_differences(manifest: Optional[dict[str, Any]], code: training.ModelCode, recorded_source: str) -> list[str]:
    """One line per way the code on disk differs from the record: a changed, added or removed file, another
    platform release. Empty when the code is the same (its source hash matches)."""
    if recorded_source == code.source_hash:
        return []
    if manifest is None:
        return [
            f"the code's hash is {code.source_hash}, the model was built from {recorded_source}; the model has no "
            "code manifest (trained before they were recorded), so the files cannot be named"
        ]
    recorded, current = manifest.get("files", {}), dict(code.file_hashes)
    both = sorted(recorded.keys() & current.keys())
    lines = [f"{name}: changed" for name in both if recorded[name] != current[name]]
    lines += [f"{name}: new in the model's code" for name in sorted(current.keys() - recorded.keys())]
    lines += [f"{name}: no longer in the model's code" for name in sorted(recorded.keys() - current.keys())]
    from retrain_assets.core.registry import platform_release

    if manifest.get("platform") != platform_release():
        lines.append(f"retrain-assets {platform_release()} now, {manifest.get('platform')} then")
    return lines or [f"the code's hash is {code.source_hash}, the model was built from {recorded_source}"]


def recorded_config(
    config: "RetrainConfig", manifest: Optional[dict[str, Any]], tags: dict[str, str]
) -> "RetrainConfig":
    """``config`` with the ``model`` section the version was trained with (params, seed, holdout, window), so a
    params change made since does not stop the old version being reproduced. Without a manifest, the current
    section, which must then have the recorded params hash."""
    from retrain_assets.core.config import ModelConfig

    if manifest is not None and "model" in manifest:
        config = config.model_copy(update={"model": ModelConfig.model_validate(manifest["model"])})
    recorded = tags.get("params_hash")
    if recorded and training.params_hash(config) != recorded:
        raise CannotReproduce(
            f"the params the model was trained with (hash {recorded}) cannot be rebuilt from this project: now "
            f"{training.params_hash(config)} (data.features, data.target or, for a model without a code manifest, "
            "the model section changed since)"
        )
    return config


def reproduce(
    config: "RetrainConfig",
    registry: "Registry",
    version: str,
    allow_code_change: bool = False,
    at_commit: bool = False,
) -> Reproduction:
    """Retrain ``version`` (a number or an alias) and compare it with the record (see the module docstring).
    With ``at_commit``, when the working tree's code differs, the code is read from the git commit the version
    recorded (``git archive`` into a temporary folder) instead."""
    found = resolve_version(registry, version)
    tags, number = found.tags, str(found.version)
    if "features_version" not in tags:
        raise CannotReproduce(f"v{number} records no validated_features version: it was not trained by candidate_model")
    manifest = registry.code_manifest(found)
    config = recorded_config(config, manifest, tags)
    recorded_source = tags.get("source_hash", "")
    with contextlib.ExitStack() as stack:
        try:
            code = training.model_code(config)
            differences = code_differences(manifest, code, recorded_source)
        except usercode.UserCodeError as exc:  # e.g. the module was renamed since: its commit still has it
            if not at_commit:
                raise
            differences = [str(exc)]
        code_from = "the working tree"
        if differences and at_commit:
            commit = tags.get("git_commit")
            if not commit:
                raise CannotReproduce(f"v{number} records no git commit: its project was not a git checkout")
            config = config.with_code_from(stack.enter_context(usercode.checkout_of(config.project_dir, commit)))
            code = training.model_code(config)
            differences = code_differences(manifest, code, recorded_source)
            code_from = f"git commit {commit[:12]}"
            if differences and tags.get("git_dirty") == "true":
                differences.append(f"v{number} was trained from a working tree with uncommitted changes to that commit")
        result = Reproduction(number, int(tags["features_version"]), differences, retrained=False, code_from=code_from)
        if not differences or allow_code_change:
            _retrain_and_compare(result, config, registry, found, code)
    return result


def _retrain_and_compare(
    result: Reproduction, config: "RetrainConfig", registry: "Registry", found: Any, code: training.ModelCode
) -> None:
    tags = found.tags
    uri = config.table_uri(delta.FEATURES_TABLE)
    try:
        frame = training.read_window(delta.TableRef(uri, result.features_version, int(tags["delta_version"])), config)
    except Exception as exc:  # a vacuumed or deleted version: Delta says which
        where = f"{uri} version {result.features_version}"
        raise CannotReproduce(f"v{result.version}: {where} cannot be read: {exc}") from exc
    fitted = training.fit_and_record(lambda: frame, config, int(tags["delta_version"]), code)
    registered = registry.load(result.version) if "predictions_hash" not in tags or result.differences else None
    result.retrained = True
    result.holdout_rows = len(fitted.holdout)
    result.recorded_hash = tags.get("predictions_hash") or training.prediction_hash(registered, fitted.holdout, config)
    result.reproduced_hash = fitted.logged.tags["predictions_hash"]
    result.recorded_metrics = registry.metrics(found)
    result.reproduced_metrics = {name: fitted.logged.metrics[name] for name in result.recorded_metrics}
    if registered is not None and result.recorded_hash != result.reproduced_hash:
        result.changed_rows = _changed_rows(registered, fitted.logged.pipeline, fitted.holdout, config)


def _changed_rows(before: Any, after: Any, holdout: Any, config: "RetrainConfig") -> int:
    outputs = [training.raw_output(model, holdout, config) for model in (before, after)]
    if outputs[0].shape != outputs[1].shape:
        return len(holdout)
    differ = outputs[0] != outputs[1]
    return int(differ.any(axis=1).sum() if differ.ndim > 1 else differ.sum())


def _same(recorded: dict[str, float], reproduced: dict[str, float]) -> bool:
    """Equal metrics; an undefined metric (NaN, not logged) counts as equal to itself."""
    both_nan = lambda name: recorded[name] != recorded[name] and reproduced[name] != reproduced[name]  # noqa: E731
    return recorded.keys() == reproduced.keys() and all(
        recorded[name] == reproduced[name] or both_nan(name) for name in recorded
    )
