"""Model logic without Dagster: the stable holdout split, the scikit-learn Pipeline, metrics, one fit routine.

scikit-learn is imported inside the functions that need it, so importing this module stays cheap.

The holdout is chosen by hashing each row's id (or, without an id column, the row itself). A row therefore
lands in the holdout in every version of the table, so the champion never trained on any row of the
candidate's holdout and the two are compared fairly on the same rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from retrain_assets.core.config import RetrainConfig
    from retrain_assets.core.delta import TableRef
    from retrain_assets.core.registry import LoggedModel

_HASH_BUCKETS = 10_000
SAMPLE_ROWS = 100_000  # enough rows for a metric estimate that only informs (train fit, champion watch)
_MAX_TAG_CHARS = 5000  # MLflow's limit on a tag value
_SIGNATURE_ROWS = 100  # rows the features function sees to give the model signature its columns and types
_MAX_CATEGORIES = 50  # per categorical feature; the rarer ones are pooled as "infrequent"


def params_hash(config: "RetrainConfig") -> str:
    """Short, stable hash of everything that defines a model besides its data."""
    spec = {
        "estimator": config.model.estimator,
        "params": config.model.params,
        "seed": config.model.seed,
        "holdout_fraction": config.model.holdout_fraction,
        "features": config.data.features,
        "target": config.data.target,
    }
    # the user's code and the training window, when set (absent keys keep the hashes they had before these existed)
    optional = (
        ("pipeline", config.model.pipeline),
        ("model_features", config.model.features),
        ("window_days", config.model.window_days),
    )
    spec.update({key: value for key, value in optional if value})
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def holdout_key_columns(config: "RetrainConfig") -> list[str]:
    """The columns a row's holdout bucket hashes."""
    return [config.data.id] if config.data.id else list(config.data.columns)


def bucket_column(config: "RetrainConfig") -> str:
    """The ``validated_features`` column holding each row's holdout bucket (:func:`holdout_buckets`), named for
    the columns it hashes: a config that hashes others finds no such column and hashes again."""
    keys = json.dumps(holdout_key_columns(config)).encode()
    return f"_holdout_bucket_{hashlib.sha256(keys).hexdigest()[:8]}"


def holdout_buckets(frame: "pd.DataFrame", config: "RetrainConfig") -> "np.ndarray":
    """Each row's bucket in ``[0, 10000)``: the hash of its id column, or of the whole row without one. Stored
    once per accepted batch (:func:`bucket_column`), so no run hashes the table again."""
    import numpy as np
    import pandas as pd

    hashes = pd.util.hash_pandas_object(frame[holdout_key_columns(config)], index=False).to_numpy()
    return (hashes % _HASH_BUCKETS).astype(np.int16)


def holdout_cut(config: "RetrainConfig") -> int:
    """Buckets below this are the holdout."""
    return round(config.model.holdout_fraction * _HASH_BUCKETS)


def holdout_mask(frame: "pd.DataFrame", config: "RetrainConfig") -> "np.ndarray":
    """Boolean mask of holdout rows, stable across table versions: from the stored buckets where the frame has
    them (rows appended before they were stored have none), else hashed now; the same rows either way."""
    import numpy as np

    column = bucket_column(config)
    if column not in frame.columns:
        return holdout_buckets(frame, config) < holdout_cut(config)
    buckets = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(buckets)
    if missing.any():
        buckets[missing] = holdout_buckets(frame[missing], config)
    return buckets < holdout_cut(config)


def window(frame: "pd.DataFrame", config: "RetrainConfig") -> "pd.DataFrame":
    """The rows a model learns from and is judged on: the newest ``model.window_days`` (all without it).

    After drift, a window lets a candidate learn the new behaviour and be compared with the champion on
    recent holdout rows rather than on a holdout dominated by the old data."""
    import pandas as pd

    days = config.model.window_days
    if days is None or frame.empty:
        return frame
    stamps = frame[config.data.timestamp]
    return frame[stamps > stamps.max() - pd.Timedelta(days=days)]


def read_window(features: "TableRef", config: "RetrainConfig", holdout_only: bool = False) -> "pd.DataFrame":
    """The rows of :func:`window` read from ``validated_features`` at its pinned version, with the cut-off in
    the Delta scan: only the newest ``model.window_days`` are read, not the whole table (whose size grows
    with every batch) to be filtered in pandas. The stored holdout buckets come along; with ``holdout_only``
    the scan keeps only holdout rows (and rows without a stored bucket, for :func:`split` to hash)."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from retrain_assets.core import delta

    bucket = bucket_column(config)
    stored = bucket in delta.column_names(features.uri, features.version)
    where = None
    if holdout_only and stored:
        where = (ds.field(bucket) < holdout_cut(config)) | ds.field(bucket).is_null()
    days, stamp = config.model.window_days, config.data.timestamp
    newest = delta.newest_value(features.uri, features.version, stamp) if days is not None and stamp else None
    cut_in_scan = days is not None and stamp is not None and newest is not None
    if days is not None and cut_in_scan:
        cutoff = pc.subtract(newest, pa.scalar(dt.timedelta(days=days), pa.duration("us")))
        recent = ds.field(stamp) > cutoff
        where = recent if where is None else recent & where

    def read(columns: list[str]) -> "pd.DataFrame":
        frame = delta.read_table(features.uri, features.version, columns=columns, where=where)
        return frame if cut_in_scan else window(frame, config)

    if not stored:
        return read(list(config.data.columns))
    needed = _read_columns(config)
    frame = read([*needed, bucket])
    if len(needed) < len(config.data.columns) and frame[bucket].isna().any():
        return read([*config.data.columns, bucket])  # rows from before the buckets are hashed: every key column
    return frame


def _read_columns(config: "RetrainConfig") -> list[str]:
    """The columns a model needs read when the rows carry their buckets: all of them for ``model.features``
    (the team's function may use any), else the features, the target and the timestamp (the window, the data
    range); the id column, often the widest (one string per row), and ``data.ignore`` stay in the table."""
    data = config.data
    if config.model.features is not None:
        return list(data.columns)
    return [name for name in data.columns if name in data.features or name in (data.target, data.timestamp)]


def split(frame: "pd.DataFrame", config: "RetrainConfig") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """``(train, holdout)``; raises when either side is empty, naming the row count."""
    mask, columns = holdout_mask(frame, config), _data_columns(frame, config)
    train, holdout = frame.loc[~mask, columns], frame.loc[mask, columns]
    if train.empty or holdout.empty:
        raise ValueError(
            f"cannot split {len(frame)} rows into train ({len(train)}) and holdout ({len(holdout)}): "
            f"need more data or another model.holdout_fraction"
        )
    return train, holdout


def holdout_rows(frame: "pd.DataFrame", config: "RetrainConfig") -> "pd.DataFrame":
    """The holdout side of :func:`split` of a frame read with ``read_window(holdout_only=True)``, whose train
    rows were left in the table; raises when it is empty."""
    holdout = frame.loc[holdout_mask(frame, config), _data_columns(frame, config)]
    if holdout.empty:
        raise ValueError(f"no holdout rows among {len(frame)}: need more data or another model.holdout_fraction")
    return holdout


def _data_columns(frame: "pd.DataFrame", config: "RetrainConfig") -> list[str]:
    """The frame's columns but the stored buckets: a model and ``model.features`` see only the data."""
    return [name for name in frame.columns if name != bucket_column(config)]


@dataclass(frozen=True)
class ColumnRoles:
    """What a ``model.pipeline`` factory is told about the frame it will be fitted on (after
    ``model.features``): which input columns are numeric and which categorical, the target, task and seed."""

    numeric: list[str]
    categorical: list[str]
    target: str
    task: str
    seed: int


def column_roles(inputs: "pd.DataFrame", config: "RetrainConfig") -> ColumnRoles:
    """Declared columns keep their declared kind; a column ``model.features`` added is numeric when its dtype
    is (booleans are categories)."""
    from pandas.api import types

    declared = config.data.features
    numeric: list[str] = []
    categorical: list[str] = []
    for name in inputs.columns:
        kind = declared.get(name)
        is_number = (
            kind in ("int", "float")
            if kind
            else (types.is_numeric_dtype(inputs[name]) and not types.is_bool_dtype(inputs[name]))
        )
        (numeric if is_number else categorical).append(name)
    return ColumnRoles(numeric, categorical, config.data.target, config.data.task, config.model.seed)


def build_pipeline(config: "RetrainConfig", inputs: "Optional[pd.DataFrame]" = None) -> Any:
    """The model to fit on ``inputs`` (the model's input columns): the user's ``model.pipeline`` factory
    when set, else the built-in Pipeline for ``model.estimator``."""
    if config.model.pipeline is None:
        return _builtin_pipeline(config, inputs)
    from retrain_assets.core import usercode

    factory = usercode.load_function(config.model.pipeline, config.project_dir, "model.pipeline")
    roles = column_roles(inputs if inputs is not None else _empty_inputs(config), config)
    try:
        model = factory.function(dict(config.model.params), roles)
    except Exception as exc:
        raise usercode.UserCodeError(
            f"model.pipeline: {config.model.pipeline} raised {type(exc).__name__}: {exc}"
        ) from exc
    needed = ("fit", "predict", "predict_proba") if config.data.task == "classification" else ("fit", "predict")
    missing = [name for name in needed if not callable(getattr(model, name, None))]
    if missing:
        raise usercode.UserCodeError(
            f"model.pipeline: {config.model.pipeline} returned a {type(model).__module__}.{type(model).__name__}, "
            f"not a scikit-learn estimator for {config.data.task} (no {', '.join(missing)})"
        )
    return model


def _empty_inputs(config: "RetrainConfig") -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(columns=list(config.data.features))


def _builtin_pipeline(config: "RetrainConfig", inputs: "Optional[pd.DataFrame]") -> "Pipeline":
    """Preprocessing and estimator in one Pipeline, so serving applies exactly what training did.

    Categories are one-hot encoded, except for ``hist_gradient_boosting``, which gets one ordinal code per
    category and splits on them natively (``categorical_features``): it accepts only dense input, and a dense
    one-hot of many levels costs a float per level and row, where its native categories cost one column."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    roles = column_roles(inputs if inputs is not None else _empty_inputs(config), config)
    numeric, categorical = roles.numeric, roles.categorical
    native = config.model.estimator == "hist_gradient_boosting"
    if native:
        # missing values become a category of their own; unseen ones encode as NaN, the booster's missing bin;
        # the booster allows at most max_bins categories per feature
        levels = min(_MAX_CATEGORIES, config.model.params.get("max_bins", 255))
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=levels)
    else:
        # missing values become a category of their own; unseen categories encode as all zeros
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=_MAX_CATEGORIES)
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
            ("categorical", encoder, categorical),
        ]
    )
    # the transformer's output holds the numeric columns, then the categorical ones
    native_categories = {"categorical_features": [False] * len(numeric) + [True] * len(categorical)} if native else {}
    return Pipeline([("preprocess", preprocess), ("estimator", _estimator(config, native_categories))])


def _estimator(config: "RetrainConfig", defaults: dict):
    from sklearn import ensemble, linear_model

    classification = config.data.task == "classification"
    classes = {
        "logistic_regression": linear_model.LogisticRegression,
        "ridge": linear_model.Ridge,
        "random_forest": ensemble.RandomForestClassifier if classification else ensemble.RandomForestRegressor,
        "hist_gradient_boosting": (
            ensemble.HistGradientBoostingClassifier if classification else ensemble.HistGradientBoostingRegressor
        ),
    }
    params = {"random_state": config.model.seed, **defaults, **config.model.params}
    try:
        return classes[config.model.estimator](**params)
    except TypeError as exc:
        raise ValueError(f"model.params: {exc}") from exc


def sample(frame: "pd.DataFrame", config: "RetrainConfig", rows: int = SAMPLE_ROWS) -> "pd.DataFrame":
    """At most ``rows`` rows, drawn with the model seed: for metrics that inform but do not decide."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=config.model.seed)


def model_inputs(frame: "pd.DataFrame", config: "RetrainConfig") -> "pd.DataFrame":
    """The columns the model sees: the declared features or, with ``model.features``, what that function
    makes of the frame (the declared features it keeps, then the columns it adds). One function for
    training, evaluation, backtests and serving, so they cannot drift apart."""
    if config.model.features is None:
        return frame[list(config.data.features)]
    import pandas as pd

    from retrain_assets.core import usercode

    spec = config.model.features
    function = usercode.load_function(spec, config.project_dir, "model.features").function
    try:
        made = function(frame.copy())
    except Exception as exc:
        raise usercode.UserCodeError(f"model.features: {spec} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(made, pd.DataFrame) or len(made) != len(frame):
        shape = f"{len(made)} rows for {len(frame)}" if isinstance(made, pd.DataFrame) else type(made).__name__
        raise usercode.UserCodeError(
            f"model.features: {spec} must return a pandas DataFrame with one row per input row, in order; "
            f"it returned {shape}"
        )
    kept = [name for name in config.data.features if name in made.columns]
    added = [name for name in made.columns if name not in frame.columns and name != config.data.target]
    return made[kept + added]


def features_and_target(frame: "pd.DataFrame", config: "RetrainConfig") -> tuple["pd.DataFrame", "pd.Series"]:
    return model_inputs(frame, config), frame[config.data.target]


def train(frame: "pd.DataFrame", config: "RetrainConfig") -> Any:
    """Fit a fresh model on ``frame`` (the train split); a user pipeline that fails to fit says so."""
    return fit_inputs(*features_and_target(frame, config), config)


def fit_inputs(features: "pd.DataFrame", target: "pd.Series", config: "RetrainConfig") -> Any:
    """:func:`train` on inputs already made (:func:`features_and_target`), so the caller may let go of the rows."""
    pipeline = build_pipeline(config, features)
    try:
        pipeline.fit(features, target)
    except Exception as exc:
        if config.model.pipeline is None:
            raise
        from retrain_assets.core.usercode import UserCodeError

        raise UserCodeError(
            f"model.pipeline: the model of {config.model.pipeline} failed to fit: {type(exc).__name__}: {exc}"
        ) from exc
    return pipeline


def evaluate(pipeline: "Pipeline", frame: "pd.DataFrame", config: "RetrainConfig") -> dict[str, float]:
    """All metrics of the task on ``frame``; a metric that is undefined there (one class only) is NaN."""
    return score(pipeline, frame, config)[0]


def score(
    pipeline: "Pipeline", frame: "pd.DataFrame", config: "RetrainConfig"
) -> tuple[dict[str, float], "np.ndarray"]:
    """``(metrics, predictions)`` on ``frame`` from one pass of the model (see :func:`evaluate`)."""
    features, target = features_and_target(frame, config)
    if config.data.task == "regression":
        predicted = pipeline.predict(features)
        return regression_metrics(target, predicted), predicted
    proba = pipeline.predict_proba(features)
    return classification_metrics(target.to_numpy(), proba, list(pipeline.classes_))


def regression_metrics(target: Any, predicted: Any) -> dict[str, float]:
    """The regression metrics of ``predicted`` against ``target``: what a holdout and live rows are judged by."""
    from sklearn import metrics

    return {
        "r2": float(metrics.r2_score(target, predicted)),
        "rmse": float(metrics.root_mean_squared_error(target, predicted)),
        "mae": float(metrics.mean_absolute_error(target, predicted)),
    }


def classification_metrics(
    target: "np.ndarray", proba: "np.ndarray", classes: list
) -> tuple[dict[str, float], "np.ndarray"]:
    """``(metrics, predictions)`` from class probabilities (columns in the order of ``classes``): one function
    for holdouts and for live rows scored from the probabilities the server logged."""
    import numpy as np
    from sklearn import metrics

    predicted = np.asarray(classes)[proba.argmax(axis=1)]
    binary = len(classes) == 2
    f1_options = {"pos_label": classes[-1]} if binary else {"average": "macro"}
    result = {
        "accuracy": float(metrics.accuracy_score(target, predicted)),
        "f1": float(metrics.f1_score(target, predicted, **f1_options)),
        "log_loss": float(metrics.log_loss(target, proba, labels=classes)),
    }
    result["roc_auc"] = _roc_auc(target, proba, classes)
    return result, predicted


def _roc_auc(target: "np.ndarray", proba: "np.ndarray", classes: list) -> float:
    """ROC AUC: binary, or the mean one-vs-rest AUC over the classes present in ``target``. A small holdout
    (its rows are chosen by id hash, not stratified) can miss a class; that class cannot be scored there, the
    others still can. NaN when fewer than two classes are present."""
    from sklearn import metrics

    present = [index for index, label in enumerate(classes) if (target == label).any()]
    if len(present) < 2:
        return math.nan
    if len(classes) == 2:
        return float(metrics.roc_auc_score(target == classes[1], proba[:, 1]))
    return float(sum(metrics.roc_auc_score(target == classes[i], proba[:, i]) for i in present) / len(present))


def data_range(frame: "pd.DataFrame", config: "RetrainConfig") -> Optional[dict[str, str]]:
    """ISO ``{"min", "max"}`` of the timestamp column, or ``None`` without one."""
    return data_range_of([frame], config)


def data_range_of(frames: list["pd.DataFrame"], config: "RetrainConfig") -> Optional[dict[str, str]]:
    """:func:`data_range` of the rows of ``frames`` together (the two sides of a split)."""
    column = config.data.timestamp
    stamps = [frame[column] for frame in frames if column and not frame.empty]
    if not stamps:
        return None
    return {"min": min(s.min() for s in stamps).isoformat(), "max": max(s.max() for s in stamps).isoformat()}


@dataclass(frozen=True)
class ModelCode:
    """The code a model of this project is built from. ``source_hash`` covers the modules of ``model.pipeline``
    and ``model.features`` (always, so nobody has to list train.py), the ``model.code_deps`` files and the
    platform release; ``code_hash`` adds the params hash. It changes when, and only when, a retrain could
    build another model from the same data; ``source_hash`` tells a code change from a params change."""

    code_hash: str
    source_hash: str
    params_hash: str
    file_hashes: tuple[tuple[str, str], ...]
    git_commit: Optional[str]
    git_dirty: Optional[bool]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.file_hashes)

    def manifest(self) -> dict[str, Any]:
        """What ``retrain reproduce`` compares file by file: logged beside every model as ``code_manifest.json``."""
        from retrain_assets.core.registry import platform_release

        return {
            "code_hash": self.code_hash,
            "source_hash": self.source_hash,
            "params_hash": self.params_hash,
            "platform": platform_release(),
            "files": dict(self.file_hashes),
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
        }


def model_code(config: "RetrainConfig") -> ModelCode:
    """:class:`ModelCode` of the project as it is on disk: reads the files once and imports none of them."""
    from retrain_assets.core import usercode
    from retrain_assets.core.registry import platform_release

    specs = {
        key: spec
        for key, spec in (("model.pipeline", config.model.pipeline), ("model.features", config.model.features))
        if spec
    }
    source = usercode.fingerprint(
        config.project_dir, specs, config.model.code_deps, extra=f"platform {platform_release()}"
    )
    params = params_hash(config)
    code_hash = hashlib.sha256(f"{source.hash} params {params}".encode()).hexdigest()[:16]
    return ModelCode(code_hash, source.hash, params, source.file_hashes, source.git_commit, source.git_dirty)


def raw_output(pipeline: Any, frame: "pd.DataFrame", config: "RetrainConfig") -> "np.ndarray":
    """The model's raw output on ``frame`` as float64: class probabilities, or the regression values."""
    import numpy as np

    inputs = model_inputs(frame, config)
    output = pipeline.predict_proba(inputs) if config.data.task == "classification" else pipeline.predict(inputs)
    return np.ascontiguousarray(np.asarray(output, dtype=np.float64))


def prediction_hash(pipeline: Any, frame: "pd.DataFrame", config: "RetrainConfig") -> str:
    """A hash of :func:`raw_output` as bytes: two models with the same hash predict identically on those rows,
    which is what reproduce proves."""
    return output_hash(raw_output(pipeline, frame, config))


def output_hash(output: "np.ndarray") -> str:
    """The hash :func:`prediction_hash` gives, of an output already computed."""
    return hashlib.sha256(str(output.shape).encode() + output.tobytes()).hexdigest()[:16]


def output_metrics(
    output: "np.ndarray", target: "pd.Series", pipeline: Any, config: "RetrainConfig"
) -> dict[str, float]:
    """The task's metrics (:func:`evaluate`'s) of :func:`raw_output` against ``target``: one model pass serves the
    metrics, the prediction hash and the score reference."""
    if config.data.task == "regression":
        return regression_metrics(target, output)
    return classification_metrics(target.to_numpy(), output, list(pipeline.classes_))[0]


@dataclass(frozen=True)
class FittedModel:
    """A pipeline trained on the stable train split of a frame, with the MLflow record every model of the
    project carries (:func:`fit_and_record`): the split's train row count, a sample of its train rows
    (:func:`sample`, for the train metrics), its holdout, and the frame's data range."""

    logged: "LoggedModel"
    train_count: int
    train_sample: "pd.DataFrame"
    holdout: "pd.DataFrame"
    span: Optional[dict[str, str]]


def fit_and_record(
    read: Callable[[], "pd.DataFrame"], config: "RetrainConfig", delta_version: int, code: Optional[ModelCode] = None
) -> FittedModel:
    """Split the frame ``read`` returns, train with the fixed seed, score on the holdout and describe: params
    (with the holdout fraction), the provenance tags (Delta version, code version, params hash, rows, data
    range) and the drift reference profile, and the hash and files of the project's code (``code``, or
    :func:`model_code`) with the git commit when the project is a git checkout, and the hash of its holdout
    predictions (:func:`prediction_hash`, what ``retrain reproduce`` compares). The one routine behind
    ``candidate_model``, the history backtest and reproduce; callers add their own metrics and tags before
    logging ``logged``.

    It takes a reader, not the frame, and keeps only the model's inputs while the model fits: the whole frame
    goes once split, the train rows once their inputs, sample and profile are made (peak memory is the fit's)."""
    from retrain_assets.core.drift import reference_profile
    from retrain_assets.core.registry import LoggedModel, code_version
    from retrain_assets.core.served_drift import SCORES_KEY, score_reference

    train_rows, holdout = split(read(), config)
    model = config.model
    span = data_range_of([train_rows, holdout], config)
    profile = reference_profile(train_rows, config.data.features, bins=config.triggers.drift.bins, seed=model.seed)
    train_count, train_sample = len(train_rows), sample(train_rows, config)
    signature = model_inputs(train_rows.head(_SIGNATURE_ROWS), config).head(0)  # the columns and types; no rows
    inputs, target = features_and_target(train_rows, config)
    del train_rows
    pipeline = fit_inputs(inputs, target, config)
    del inputs, target
    output = raw_output(pipeline, holdout, config)
    metrics = output_metrics(output, holdout[config.data.target], pipeline, config)
    code = code or model_code(config)
    tags = {
        "delta_version": str(delta_version),
        "code_version": code_version(),
        "code_hash": code.code_hash,
        "source_hash": code.source_hash,
        "code_files": ",".join(code.files)[:_MAX_TAG_CHARS],
        "params_hash": code.params_hash,
        "predictions_hash": output_hash(output),
        "rows": str(train_count + len(holdout)),
        **({"data_min": span["min"], "data_max": span["max"]} if span else {}),
        **({"git_commit": code.git_commit} if code.git_commit else {}),
        **({"git_dirty": str(code.git_dirty).lower()} if code.git_dirty is not None else {}),
    }
    params = {
        "estimator": model.estimator,
        "seed": model.seed,
        "holdout_fraction": model.holdout_fraction,
        **model.params,
    }
    scores = score_reference(output, config)
    if scores is not None:  # what served scores are compared to (prediction drift)
        profile[SCORES_KEY] = scores
    manifest = {**code.manifest(), "model": config.model.model_dump(mode="json")}  # what reproduce retrains with
    logged = LoggedModel(pipeline, signature, params, metrics, tags, profile, manifest)
    return FittedModel(logged, train_count, train_sample, holdout, span)
