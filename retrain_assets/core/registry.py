"""MLflow tracking and registry for one project: log candidates, move aliases, read back the champion.

Aliases (MLflow 3; registry stages are deprecated): ``challenger`` is the newest candidate, ``champion`` the
model in production, ``previous_champion`` the one it replaced (what a rollback restores). Every model
version carries its provenance as tags (Delta version, code version, params hash, data range, row counts)
and, once decided, the decision and its reason. mlflow is imported only inside this module's functions.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core.config import METRICS
from retrain_assets.core.faults import crash_point
from retrain_assets.core.names import CHALLENGER, CHAMPION, DECISION_REASON_TAG, DECISION_TAG, PREVIOUS_CHAMPION

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from retrain_assets.core.config import RetrainConfig

# MLflow 3 saves scikit-learn models with skops, which loads only audited types. These are what the
# configurable estimators need (OneHotEncoder keeps a dtype; forests and boosting keep tree nodes; boosting
# with native categories keeps ``partial(check_array, ...)`` for its numeric columns: skops checks what a
# partial wraps like any other type, so only partials of check_array load); we trust them because the
# registry only holds models this project trained itself.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial",
    "sklearn.utils.validation.check_array",
]
PROFILE_ARTIFACT = "reference_profile.json"
MANIFEST_ARTIFACT = "code_manifest.json"  # the code's files and their hashes (see training.ModelCode.manifest)
REUSED_TAG = "reused_model_run"  # on a history run that scored a cached model instead of training one


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and the MLflow run that produced it. ``trigger_reason`` is why it was
    trained (its ``trigger_reason`` tag), carried along so steps downstream need not read run tags."""

    name: str
    version: str
    run_id: str
    trigger_reason: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class ModelRefused(ValueError):
    """A registered model version that :meth:`Registry.load` will not deserialize (not skops, or holding types
    outside :data:`SKOPS_TRUSTED_TYPES`): tampered, or not written by this project. Not the same as "no model"."""


@dataclass(frozen=True)
class LoggedModel:
    """What goes into one MLflow run: the fitted pipeline, the record around it, and ``inputs``: training
    rows whose column names and types become the model's signature. The rows themselves are never stored
    (no input example): they are customer data, and MLflow would keep them beside the model."""

    pipeline: Any
    inputs: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    profile: dict[str, Any]
    code_manifest: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def platform_release() -> str:
    """The installed release of this package (part of every model's code hash: the platform trains it too)."""
    try:
        return metadata.version("retrain-assets")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def code_version() -> str:
    """Package version plus the git commit of the checkout it runs from (``-dirty`` with local edits): the
    platform's own version, recorded beside the hash of the project's code (``code_hash``)."""
    release = platform_release()
    here = Path(__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = "-dirty" if sha and git("status", "--porcelain", "--untracked-files=no") else ""
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{release}+g{sha}{dirty}" if sha else release


def _run_id(version: "ModelVersion") -> str:
    """The MLflow run that trained ``version`` (:meth:`Registry.log_candidate` registers every version from its run)."""
    if version.run_id is None:
        raise ValueError(f"model {version.name} v{version.version} has no MLflow run")
    return version.run_id


class Registry:
    """The project's MLflow experiment and registered model."""

    def __init__(self, config: "RetrainConfig"):
        import mlflow
        from mlflow import MlflowClient

        self.config = config
        self.name = config.mlflow.model_name
        if config.mlflow.tracking_uri is None:
            from retrain_assets.core.landing import ensure_home

            ensure_home(config)
            config.mlflow_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(config.tracking_uri)
        mlflow.set_registry_uri(config.tracking_uri)
        self.client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)

    def experiment_id(self, name: Optional[str] = None) -> str:
        """The id of experiment ``name`` (default: the project's), created on first use."""
        name = name or self.config.mlflow.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # a server stores artifacts where it is configured to; a local store keeps them under the storage home
        # (MLflow's own default would be ./mlruns in whatever folder the process happens to run in)
        served = self.config.tracking_uri.startswith(("http://", "https://", "databricks"))
        location = None if served else f"{self.config.artifact_location}/{name}"
        return self.client.create_experiment(name, artifact_location=location)

    def log_run(self, experiment_id: str, model: "LoggedModel", reused_from: Optional[str] = None) -> tuple[str, Any]:
        """One MLflow run holding the fitted pipeline, its params, metrics, tags, drift reference profile and
        code manifest; returns the run id and MLflow's ModelInfo. With ``reused_from`` (the run whose model
        this one reuses, see the run cache in ``core.backtest``) the model is not stored again: the run records
        the reuse as the tag ``reused_model_run`` and the ModelInfo is ``None``."""
        import mlflow
        import pandas
        import sklearn
        from mlflow.models import infer_signature

        requirements = [f"scikit-learn=={sklearn.__version__}", f"pandas=={pandas.__version__}"]
        # before the run: a refused model leaves no trace
        trusted = self.trusted_types_for(model.pipeline) if reused_from is None else []
        tags = {**model.tags, **({REUSED_TAG: reused_from} if reused_from else {})}
        with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
            mlflow.log_params(model.params)
            mlflow.log_metrics({k: v for k, v in model.metrics.items() if v == v})  # NaN (undefined) is not logged
            mlflow.log_dict(model.profile, PROFILE_ARTIFACT)
            if model.code_manifest:
                mlflow.log_dict(model.code_manifest, MANIFEST_ARTIFACT)
            if reused_from is not None:
                return run.info.run_id, None
            info = mlflow.sklearn.log_model(
                model.pipeline,
                name="model",
                signature=infer_signature(model.inputs),  # the schema only: no input_example, so no rows
                pip_requirements=requirements,
                skops_trusted_types=trusted,
            )
            crash_point("model_logging")
        return run.info.run_id, info

    def close_interrupted(self, dagster_run_id: str) -> list[str]:
        """Mark the MLflow runs that a killed Dagster run left ``RUNNING`` as ``KILLED``; return their ids."""
        experiment = self.client.get_experiment_by_name(self.config.mlflow.experiment)
        if experiment is None:
            return []
        query = f"tags.dagster_run_id = '{dagster_run_id}' and attributes.status = 'RUNNING'"
        runs = self.client.search_runs([experiment.experiment_id], filter_string=query)
        for run in runs:
            self.client.set_terminated(run.info.run_id, status="KILLED")
        return [run.info.run_id for run in runs]

    def log_candidate(self, model: "LoggedModel") -> ModelRef:
        """Log a candidate (see :meth:`log_run`), register it and point ``challenger`` at it."""
        run_id, info = self.log_run(self.experiment_id(), model)
        self._ensure_registered_model()
        registered = self.client.create_model_version(
            self.name, source=info.model_uri, run_id=run_id, tags=model.tags, model_id=info.model_id
        )
        version = str(registered.version)
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)
        return ModelRef(self.name, version, run_id, model.tags.get("trigger_reason", ""))

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name)

    def load(self, version: str) -> Any:
        """Version ``version`` of the project's model, read from the registry in ``retrain.yaml`` (never the
        ambient ``MLFLOW_*_URI`` or mlflow's process-wide URIs) and deserialized only by skops, trusting
        only the types of :meth:`_trusted`: never pickle, never a type list stored beside the model.

        Raises:
            ModelRefused: the version's artifact is not a skops file of a scikit-learn model, or it holds a
                type outside the trusted list; the message names the model version.
        """
        source = self.client.get_model_version_download_uri(self.name, version)
        return self._load_artifact(source, f"model {self.name!r} version {version}")

    def load_run_model(self, run_id: str) -> Any:
        """The model a run logged (an unregistered history run, say), read as :meth:`load` reads a version."""
        return self._load_artifact(f"runs:/{run_id}/model", f"the model of MLflow run {run_id}")

    def _load_artifact(self, source: str, what: str) -> Any:
        import tempfile

        import mlflow
        import skops.io
        import yaml

        with tempfile.TemporaryDirectory() as scratch:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source,
                    dst_path=scratch,
                    tracking_uri=self.config.tracking_uri,
                    registry_uri=self.config.tracking_uri,
                )
            )
            try:
                flavor = (yaml.safe_load((local / "MLmodel").read_text()) or {}).get("flavors", {}).get("sklearn") or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ModelRefused(f"{what}: refused, its MLmodel file cannot be read ({type(exc).__name__})") from None
            saved_as = flavor.get("serialization_format")
            if saved_as != "skops":
                raise ModelRefused(f"{what}: refused, saved as {saved_as!r}; only skops models are loaded (no pickle)")
            path = (local / str(flavor.get("pickled_model", ""))).resolve()
            if local.resolve() not in path.parents or not path.is_file():
                raise ModelRefused(
                    f"{what}: refused, its model file {flavor.get('pickled_model')!r} is not in the artifact"
                )
            try:
                held = set(skops.io.get_untrusted_types(file=path))
            except Exception as exc:  # anything skops cannot parse is not a model we wrote
                raise ModelRefused(
                    f"{what}: refused, {path.name} is not a readable skops file ({type(exc).__name__})"
                ) from None
            trusted = self._trusted(held)
            if held - set(trusted):
                raise ModelRefused(
                    f"{what}: refused, {path.name} holds types outside the trusted list: {sorted(held - set(trusted))}"
                )
            return skops.io.load(path, trusted=trusted)

    def _trusted(self, held: set[str]) -> list[str]:
        """The types skops may load: :data:`SKOPS_TRUSTED_TYPES`, ``model.trusted_types``, and those of ``held``
        defined in the modules of the project's own code (``model.pipeline``, ``model.features``), which this
        process imports (and so runs) anyway. Never a list stored beside the model."""
        from retrain_assets.core import usercode

        model = self.config.model
        own = [
            usercode.load_function(spec, self.config.project_dir, key).module_name
            for key, spec in (("model.pipeline", model.pipeline), ("model.features", model.features))
            if spec
        ]
        prefixes = tuple(f"{name.split('.')[0]}." for name in own)
        extra = {*model.trusted_types, *(name for name in held if prefixes and name.startswith(prefixes))}
        return [*SKOPS_TRUSTED_TYPES, *sorted(extra - set(SKOPS_TRUSTED_TYPES))]

    def trusted_types_for(self, pipeline: Any) -> list[str]:
        """The trusted types for saving ``pipeline``; a type it holds outside them is refused before anything
        is logged, naming ``model.trusted_types``, so no model is registered that could not be loaded."""
        import skops.io

        held = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
        trusted = self._trusted(held)
        if held - set(trusted):
            raise ValueError(
                f"model.trusted_types: the model holds types skops does not load by default: "
                f"{sorted(held - set(trusted))}; list them under model.trusted_types if you trust them"
            )
        return trusted

    def reference_profile(self, version: "ModelVersion") -> Optional[dict[str, Any]]:
        """The drift reference logged with ``version`` (``None`` for models logged without one), read through
        this registry's client, so from the configured store."""
        return self.run_json(_run_id(version), PROFILE_ARTIFACT)

    def code_manifest(self, version: "ModelVersion") -> Optional[dict[str, Any]]:
        """The code manifest logged with ``version`` (``None`` for models trained before manifests)."""
        return self.run_json(_run_id(version), MANIFEST_ARTIFACT)

    def run_json(self, run_id: str, artifact: str) -> Optional[dict[str, Any]]:
        """A JSON artifact of an MLflow run, or ``None`` when the run has none by that name."""
        import json
        import tempfile

        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self.client.download_artifacts(run_id, artifact, scratch)
                return json.loads(Path(path).read_text())
            except (MlflowException, OSError, ValueError):
                return None

    def reuse_candidate(self, version: "ModelVersion", dagster_run_id: str, reason: str) -> ModelRef:
        """The run cache's hit for ``candidate_model``: point ``challenger`` at an existing version built from the
        same features version, code and params instead of training it again, and record the reuse on it."""
        name, number = self.name, str(version.version)
        self.client.set_registered_model_alias(name, CHALLENGER, number)
        self.client.set_model_version_tag(name, number, "reused_by_run", dagster_run_id)
        self.client.set_model_version_tag(name, number, "reused_at", _now())
        return ModelRef(name, number, _run_id(version), reason)

    def trained_with(self, code_hash: str, features_version: int) -> Optional["ModelVersion"]:
        """The newest registered version built from ``code_hash`` on ``features_version`` of the features
        table, if one was: a change of code or params is tried once per data version."""
        query = (
            f"name = '{self.name}' and tags.code_hash = '{code_hash}' and tags.features_version = '{features_version}'"
        )
        versions = self.client.search_model_versions(query)
        return max(versions, key=lambda v: int(v.version)) if versions else None

    def by_alias(self, alias: str) -> Optional["ModelVersion"]:
        """The version ``alias`` points at; ``None`` only when the registered model or the alias does not exist.

        Any other failure (a store that cannot be reached, a refused request) raises: taken for "no champion",
        it would let a candidate be promoted without the comparison.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return None
            raise
        version = model.aliases.get(alias)
        return None if version is None else self.client.get_model_version(self.name, str(version))

    def record_decision(self, version: str, promote: bool, reason: str, extra: dict[str, Any]) -> None:
        """Write the decision, its reason, when, and the comparison onto the model version and its run (a version
        the run cache reused is decided again: the tags hold its latest decision)."""
        verdict = "promoted" if promote else "rejected"
        tags = {DECISION_TAG: verdict, DECISION_REASON_TAG: reason, "decided_at": _now(), **extra}
        run_id = _run_id(self.client.get_model_version(self.name, version))
        from mlflow.entities import RunTag

        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, str(value))
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])  # one write

    def promote(self, version: str) -> Optional[str]:
        """Point ``champion`` at ``version``; the replaced champion keeps ``previous_champion``."""
        previous = self.by_alias(CHAMPION)
        if previous is not None and str(previous.version) != version:
            self.client.set_registered_model_alias(self.name, PREVIOUS_CHAMPION, previous.version)
        crash_point("alias_promotion")
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        self.client.set_model_version_tag(self.name, version, "promoted_at", _now())
        return str(previous.version) if previous is not None else None

    def rollback(self, to: Optional[str], reason: str, who: str, force: bool = False) -> dict[str, Any]:
        """Point ``champion`` at ``to`` (default: the ``previous_champion``); the replaced champion becomes
        ``previous_champion``, so a second rollback undoes the first. Who, when and why go on the version.

        Raises:
            ValueError: there is no such version, it is the champion already, or it was never champion (a
                rejected candidate, say) and ``force`` is not set; the message says why it was not.
        """
        from mlflow.exceptions import MlflowException

        current = self.by_alias(CHAMPION)
        if to is None:
            previous = self.by_alias(PREVIOUS_CHAMPION)
            if previous is None:
                raise ValueError(f"model {self.name!r} has no previous champion to roll back to; pass --to VERSION")
            to = str(previous.version)
        try:
            target = self.client.get_model_version(self.name, to)
        except MlflowException:
            known = sorted(int(v.version) for v in self.client.search_model_versions(f"name = '{self.name}'"))
            raise ValueError(f"model {self.name!r} has no version {to!r} (versions: {known})") from None
        if current is not None and str(current.version) == to:
            raise ValueError(f"version {to} of {self.name!r} is already the champion")
        never = _never_champion(target)
        if never is not None and not force:
            raise ValueError(f"{never}; pass --force to make it champion anyway")
        if current is not None:
            self.client.set_registered_model_alias(self.name, PREVIOUS_CHAMPION, current.version)
        self.client.set_registered_model_alias(self.name, CHAMPION, to)
        event = {
            "from_version": str(current.version) if current is not None else None,
            "to_version": to,
            "by": who,
            "at": _now(),
            "reason": reason,
            **({"override": never} if never is not None else {}),
        }
        for key, value in event.items():
            self.client.set_model_version_tag(self.name, to, f"rollback_{key}", str(value))
        return event

    def metrics(self, version: "ModelVersion") -> dict[str, float]:
        """The holdout metrics recorded when ``version`` was trained."""
        logged = self.client.get_run(_run_id(version)).data.metrics
        return {name: logged[name] for name in METRICS[self.config.data.task] if name in logged}

    def describe(self, version: "ModelVersion") -> dict[str, Any]:
        """The champion block of ``retrain status``."""
        tags = version.tags
        return {
            "name": self.name,
            "version": str(version.version),
            "metrics": self.metrics(version),
            "delta_version": _int_or_none(tags.get("delta_version")),
            "code_version": tags.get("code_version"),
            "params_hash": tags.get("params_hash"),
            "trained_at": tags.get("trained_at"),
            "promoted_at": tags.get("promoted_at"),
            "trigger_reason": tags.get("trigger_reason"),
            "data_range": {"min": tags.get("data_min"), "max": tags.get("data_max")} if tags.get("data_min") else None,
        }

    def metric_history(self, metric: str) -> list[dict[str, Any]]:
        """``metric`` on its own holdout for every registered version, oldest first (for the report)."""
        history = []
        versions = self.client.search_model_versions(f"name = '{self.name}'")
        for version in sorted(versions, key=lambda v: int(v.version)):
            value = self.client.get_run(_run_id(version)).data.metrics.get(metric)
            if value is not None:
                promoted = "promoted_at" in version.tags
                history.append({"label": f"v{version.version}", "value": value, "promoted": promoted})
        return history

    def last_decision(self) -> Optional[dict[str, Any]]:
        """The latest decision on any model version (a reused version can be decided after newer ones), as the
        ``last_decision`` block of status."""
        versions = self.client.search_model_versions(f"name = '{self.name}'")
        decided = [v for v in versions if DECISION_TAG in v.tags]
        if not decided:
            return None
        newest = max(decided, key=lambda v: (v.tags.get("decided_at", ""), int(v.version)))
        return {
            "candidate_version": str(newest.version),
            "promoted": newest.tags[DECISION_TAG] == "promoted",
            "reason": newest.tags.get(DECISION_REASON_TAG),
            "delta_version": _int_or_none(newest.tags.get("delta_version")),
        }


def _never_champion(version: "ModelVersion") -> Optional[str]:
    """Why ``version`` has never been champion, from its decision tags; ``None`` if it has been (promoted, or
    made champion by a rollback)."""
    tags = version.tags
    if "promoted_at" in tags or "rollback_to_version" in tags:
        return None
    never = f"v{version.version} was never champion"
    decision = tags.get(DECISION_TAG)
    if decision == "rejected":
        compared = tags.get("compared_with", "none")
        lost = f"it lost to v{compared}" if compared != "none" else "it was rejected"
        return f"{never}: {lost} ({tags.get(DECISION_REASON_TAG, 'no reason recorded')})"
    if decision is None:
        return f"{never}: no promotion decision was recorded for it (its run stopped before one)"
    return f"{never}: it was decided {decision}, but its promotion never completed"


def _int_or_none(value: Optional[str]) -> Optional[int]:
    return int(value) if value not in (None, "") else None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
