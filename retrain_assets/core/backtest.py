"""Historical retrains: the model as it would have been trained at the end of a past window, from
``raw_data`` as it was then (Delta time travel to the version that had landed by the window's end), and
how it did on the window that followed (out-of-time evaluation).

A batch counts as the live path decided (its standing verdict in the ``validation_log``, revalidations
included); only batches the live path has not judged yet are validated here, with the current rules.
Historical models are logged to the MLflow experiment ``<experiment>-history``, tagged with their
partition and Delta version; they are never registered and never touch the ``champion`` alias.

The run cache: partitions whose training inputs are the same (the same raw_data version and rejected batches,
the same code hash, so the same code, params and seed) share one model. The first trains it; the others load
it, score their own following window, and log a run that names it (tag ``reused_model_run``) instead of a
model of their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core import delta, training

if TYPE_CHECKING:
    import pandas as pd

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.registry import LoggedModel, Registry

HISTORY_SUFFIX = "-history"
RUN_CACHE_TAG = "run_cache_key"  # on a history run that trained its model: what that model is a function of
# (table, version, rules) -> accepted, for batches the live path has not judged; the same rules give the same verdict
_verdicts: dict[tuple, bool] = {}


@dataclass
class Backtest:
    """One partition's historical retrain, as the backtest table shows it."""

    partition: str
    delta_version: int
    train_rows: int
    eval_rows: int
    metrics: dict[str, float]
    oot_metrics: dict[str, float]
    max_psi: Optional[float]
    drifted: list[str]
    rejected_versions: list[int]
    run_id: str = ""
    reused_from: Optional[str] = None  # the history run whose model this partition reused (the run cache)
    drift_scores: dict[str, Any] = field(default_factory=dict, repr=False)

    def row(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "drift_scores"}


class BatchReads:
    """The ``raw_data`` batches one history run has read, by version. Partition k trains on every batch up to
    its window's end, so reading them afresh per partition costs O(N²) batch reads over a range of N; a Delta
    version never changes, so each is read once. Kept per run, not per process, so that a long-lived code
    server does not go on holding the table."""

    def __init__(self) -> None:
        self._frames: dict[tuple[str, int], "pd.DataFrame"] = {}

    def read(self, uri: str, version: int) -> "pd.DataFrame":
        key = (uri, version)
        if key not in self._frames:
            self._frames[key] = delta.read_batch(uri, version).to_pandas()
        return self._frames[key]


def accepted_rows(
    config: "RetrainConfig", after: Optional[int], upto: int, reads: Optional[BatchReads] = None
) -> tuple[Optional["pd.DataFrame"], list[int]]:
    """Rows of the accepted batches in ``(after, upto]``, and the rejected versions."""
    import pandas as pd

    from retrain_assets.core.batches import validate, verdicts
    from retrain_assets.core.validation import rules_hash

    uri = config.table_uri(delta.RAW_TABLE)
    rules = rules_hash(config)
    judged = verdicts(config)
    frames, rejected, reads = [], [], reads or BatchReads()
    for commit in delta.batch_commits(uri, after, upto):
        version = commit["version"]
        frame = reads.read(uri, version)
        key = (uri, version, rules)
        if version not in judged and key not in _verdicts:
            _verdicts[key] = validate(config, frame, commit).accepted
        if judged[version] if version in judged else _verdicts[key]:
            frames.append(frame)
        else:
            rejected.append(version)
    return (pd.concat(frames, ignore_index=True) if frames else None), rejected


@dataclass
class TrainingWindow:
    """What a partition trains on: ``raw_data`` time-travelled to the version that had landed by ``end``, its
    accepted rows (within ``training.window``) and the batches rejected on the way. Finding it is the gate of
    the history path: a window with no version, or with every batch rejected, has nothing to train on."""

    partition: str
    end: dt.datetime
    version: int
    frame: "pd.DataFrame" = field(repr=False)
    rejected: list[int]


def training_window(
    config: "RetrainConfig", partition: str, end: dt.datetime, reads: Optional[BatchReads] = None
) -> TrainingWindow:
    """The window of ``partition``, validated; a ``ValueError`` says why there is nothing to train on."""
    uri = config.table_uri(delta.RAW_TABLE)
    version = delta.version_as_of(uri, end)
    if version is None:
        raise ValueError(f"partition {partition}: no raw_data version had landed by {end.isoformat()}")
    frame, rejected = accepted_rows(config, None, version, reads)
    if frame is None:
        raise ValueError(
            f"partition {partition}: every batch up to raw_data v{version} fails validation "
            f"(rejected {', '.join(f'v{v}' for v in rejected)}; `retrain status` lists why)"
        )
    return TrainingWindow(partition, end, version, training.window(frame, config), rejected)


def backtest(
    config: "RetrainConfig",
    registry: "Registry",
    inputs: TrainingWindow,
    eval_end: dt.datetime,
    code: "training.ModelCode",
    run_cache: bool = True,
    reads: Optional[BatchReads] = None,
) -> Backtest:
    """Train on ``inputs`` with ``code`` (or, with ``run_cache``, reuse the model of a run with the same training
    inputs) and evaluate on what landed in ``(inputs.end, eval_end]``; log the run to MLflow."""
    from retrain_assets.core.drift import drift_summary, score_drift

    uri = config.table_uri(delta.RAW_TABLE)
    version, rejected, partition, end = inputs.version, inputs.rejected, inputs.partition, inputs.end
    key = run_cache_key(version, rejected, code.code_hash)
    experiment = registry.experiment_id(config.mlflow.experiment + HISTORY_SUFFIX)
    source = cached_run(registry, experiment, key) if run_cache else None
    if source is None:
        fitted = training.fit_and_record(lambda: inputs.frame, config, version, code)
        logged, train_rows = fitted.logged, fitted.train_count
        logged.tags[RUN_CACHE_TAG] = key
    else:
        logged, train_rows = _reused(registry, source), int(source.data.tags["train_rows"])
    eval_version = delta.version_as_of(uri, eval_end)
    following, _ = (
        accepted_rows(config, version, eval_version, reads) if eval_version not in (None, version) else (None, [])
    )
    oot = training.evaluate(logged.pipeline, following, config) if following is not None else {}
    rules = config.triggers.drift
    scores = {}
    if following is not None:
        scores = score_drift(
            logged.profile, following, rules.psi, rules.ks, rules.ks_pvalue, config.validation.redact_samples
        )
    result = Backtest(
        partition=partition,
        delta_version=version,
        train_rows=train_rows,
        eval_rows=0 if following is None else len(following),
        metrics=dict(logged.metrics),
        oot_metrics=oot,
        max_psi=max((s["psi"] for s in scores.values()), default=None),
        drifted=sorted(name for name, s in scores.items() if s["drifted"]),
        rejected_versions=rejected,
        drift_scores=scores,
    )
    logged.tags.update(
        {
            "partition": partition,
            "as_of": end.isoformat(),
            "train_rows": str(result.train_rows),
            "eval_rows": str(result.eval_rows),
            "drift": drift_summary(scores)[1] if scores else "no following window yet",
            "drifted": ",".join(result.drifted),
        }
    )
    logged.metrics.update({f"oot_{name}": value for name, value in oot.items()})
    if result.max_psi is not None:
        logged.metrics["max_psi"] = result.max_psi
    result.run_id, _ = registry.log_run(experiment, logged, reused_from=source.info.run_id if source else None)
    result.reused_from = source.info.run_id if source else None
    return result


def run_cache_key(raw_version: int, rejected: list[int], code_hash: str) -> str:
    """What a historical model is a function of: the raw_data version it time-travelled to, the batches of it
    that were rejected (so the accepted rows), and the code hash (code, params and seed)."""
    text = f"raw_data v{raw_version} rejected {sorted(rejected)} code {code_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_run(registry: "Registry", experiment_id: str, key: str) -> Optional[Any]:
    """The newest finished history run that trained a model under ``key`` (runs that reused one carry no key)."""
    query = f"tags.{RUN_CACHE_TAG} = '{key}' and attributes.status = 'FINISHED'"
    runs = registry.client.search_runs(
        [experiment_id], filter_string=query, max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0] if runs else None


def _reused(registry: "Registry", source: Any) -> "LoggedModel":
    """The record of a partition whose model is the one ``source`` trained: that model, loaded as the registry
    loads any (skops, trusted types only), with its params, in-time metrics, provenance and drift profile; the
    caller adds this partition's out-of-time results."""
    from retrain_assets.core.registry import PROFILE_ARTIFACT, LoggedModel

    window_only = ("partition", "as_of", "eval_rows", "drift", "drifted", RUN_CACHE_TAG)
    tags = {k: v for k, v in source.data.tags.items() if not k.startswith("mlflow.") and k not in window_only}
    metrics = {k: v for k, v in source.data.metrics.items() if not k.startswith("oot_") and k != "max_psi"}
    profile = registry.run_json(source.info.run_id, PROFILE_ARTIFACT)
    if profile is None:
        raise ValueError(f"history run {source.info.run_id} has no {PROFILE_ARTIFACT}; it cannot be reused")
    pipeline = registry.load_run_model(source.info.run_id)
    return LoggedModel(pipeline, None, dict(source.data.params), metrics, tags, profile)


def backtest_rows(config: "RetrainConfig", registry: "Registry") -> list[dict[str, Any]]:
    """The newest historical run of every partition, from MLflow, in partition order."""
    experiment = registry.client.get_experiment_by_name(config.mlflow.experiment + HISTORY_SUFFIX)
    if experiment is None:
        return []
    runs = registry.client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    newest: dict[str, Any] = {}
    for run in runs:
        newest.setdefault(run.data.tags["partition"], run)
    rows = []
    for partition in sorted(newest):
        run = newest[partition]
        metrics = run.data.metrics
        rows.append(
            {
                "partition": partition,
                "delta_version": int(run.data.tags["delta_version"]),
                "train_rows": int(run.data.tags["train_rows"]),
                "eval_rows": int(run.data.tags["eval_rows"]),
                "metrics": {k: v for k, v in metrics.items() if not k.startswith("oot_") and k != "max_psi"},
                "oot_metrics": {k[4:]: v for k, v in metrics.items() if k.startswith("oot_")},
                "max_psi": metrics.get("max_psi"),
                "drifted": [name for name in run.data.tags.get("drifted", "").split(",") if name],
                "drift": run.data.tags.get("drift", ""),
                "run_id": run.info.run_id,
            }
        )
    return rows
