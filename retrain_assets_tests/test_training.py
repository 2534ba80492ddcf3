"""The model logic: stable holdout, pipeline, metrics, promotion decision."""

import math

import pytest

from retrain_assets.core import decision, synthetic, training
from retrain_assets.core.config import parse_config

from .conftest import START


def churn_config(**overrides):
    raw = {
        "data": {
            "target": "churned",
            "task": "classification",
            "timestamp": "event_time",
            "id": "customer_id",
            "columns": synthetic.CHURN_TYPES,
        },
        "promotion": {"metric": "roc_auc", "minimum": 0.6, "margin": 0.01},
    }
    for key, value in overrides.items():
        section, field = key.split("__")
        raw.setdefault(section, {})[field] = value
    return parse_config(raw)


def frames(days=3, rows=500):
    return [frame for _, frame in synthetic.churn_days(START, days, rows, seed=3)]


def test_holdout_rows_stay_holdout_as_the_table_grows():
    import pandas as pd

    config = churn_config()
    first = frames(1)[0]
    grown = pd.concat(frames(3), ignore_index=True)

    early = training.holdout_mask(first, config)
    late = training.holdout_mask(grown, config)[: len(first)]
    assert (early == late).all()
    assert 0.15 < late.mean() < 0.25


def test_stored_buckets_and_rows_without_them_split_as_hashing_does():
    import numpy as np

    config = churn_config()
    frame = frames(2)[0].reset_index(drop=True)
    buckets = training.holdout_buckets(frame, config).astype("float64")
    buckets[::3] = np.nan  # rows appended before the buckets were stored
    stored = frame.assign(**{training.bucket_column(config): buckets})

    assert (training.holdout_mask(stored, config) == training.holdout_mask(frame, config)).all()
    train, holdout = training.split(stored, config)
    assert list(holdout.columns) == list(frame.columns), "the model never sees the buckets"
    assert len(train) + len(holdout) == len(frame)
    other = churn_config(data__id=None)  # hashing whole rows: another column, so none is taken as stored
    assert training.bucket_column(other) != training.bucket_column(config)
    assert (training.holdout_mask(stored, other) == training.holdout_mask(frame, other)).all()


def test_a_table_with_stored_buckets_is_read_without_the_id_and_splits_the_same(tmp_path):
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from retrain_assets.core import delta

    config = churn_config()
    frame = pd.concat(frames(2), ignore_index=True)
    column = training.bucket_column(config)
    uri = str(tmp_path / "features")
    buckets = training.holdout_buckets(frame, config)
    delta.append(uri, pa.Table.from_pandas(frame.assign(**{column: buckets}), preserve_index=False))
    ref = delta.TableRef(uri, 0, 0)
    expected_train, expected_holdout = training.split(frame, config)

    read = training.read_window(ref, config)

    assert config.data.id not in read.columns, "the id is hashed once, at validation, and not read again"
    train, holdout = training.split(read, config)
    columns = list(train.columns)
    pd.testing.assert_frame_equal(train.reset_index(drop=True), expected_train[columns].reset_index(drop=True))
    pd.testing.assert_frame_equal(holdout.reset_index(drop=True), expected_holdout[columns].reset_index(drop=True))

    older = frame.assign(**{column: np.where(np.arange(len(frame)) % 2, buckets, np.nan)})  # rows from before
    delta.append(uri, pa.Table.from_pandas(older.astype({column: "Int16"}), preserve_index=False), merge_schema=True)
    mixed = training.read_window(delta.TableRef(uri, 1, 1), config)
    assert config.data.id in mixed.columns, "rows without a stored bucket are hashed: the id is read"
    doubled = pd.concat([frame, frame], ignore_index=True)
    assert (training.holdout_mask(mixed, config) == training.holdout_mask(doubled, config)).all()


def test_split_refuses_too_little_data():
    with pytest.raises(ValueError, match="cannot split 1 rows"):
        training.split(frames(1)[0].head(1), churn_config())


def test_trained_pipeline_scores_with_all_metrics_and_handles_unseen_categories():
    import pandas as pd

    config = churn_config()
    train, holdout = training.split(pd.concat(frames(), ignore_index=True), config)
    pipeline = training.train(train, config)
    metrics = training.evaluate(pipeline, holdout, config)
    assert set(metrics) == {"accuracy", "f1", "log_loss", "roc_auc"}
    assert metrics["roc_auc"] > 0.7
    odd = holdout.head(3).copy()
    odd["region"] = ["atlantis", None, "north"]
    assert pipeline.predict_proba(odd[list(config.data.features)]).shape == (3, 2)


@pytest.mark.parametrize("estimator", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_a_category_never_seen_in_training_is_scored_like_the_rest(estimator):
    """An open domain lets a new category through validation (it warns); the model must still score it: the
    one-hot encoder maps it to all zeros, the booster's ordinal encoder to its missing-value bin."""
    import numpy as np
    import pandas as pd

    config = churn_config(model__estimator=estimator)
    train, holdout = training.split(pd.concat(frames(), ignore_index=True), config)
    pipeline = training.train(train, config)
    new = holdout.head(50).assign(region="atlantis", plan="enterprise")

    probabilities = pipeline.predict_proba(new[list(config.data.features)])

    assert probabilities.shape == (50, 2) and np.isfinite(probabilities).all()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert training.evaluate(pipeline, new, config)["roc_auc"] > 0.5


def test_same_seed_same_model():
    import pandas as pd

    config = churn_config(model__estimator="random_forest", model__params={"n_estimators": 20})
    train, holdout = training.split(pd.concat(frames(2), ignore_index=True), config)
    first = training.evaluate(training.train(train, config), holdout, config)
    second = training.evaluate(training.train(train, config), holdout, config)
    assert first == second


def test_bad_hyper_parameter_names_the_key():
    config = churn_config(model__params={"not_a_param": 1})
    with pytest.raises(ValueError, match="model.params"):
        training.build_pipeline(config)


def test_params_hash_follows_params_only():
    assert training.params_hash(churn_config()) == training.params_hash(churn_config())
    assert training.params_hash(churn_config()) != training.params_hash(churn_config(model__params={"C": 0.5}))


@pytest.mark.parametrize(
    "candidate, champion, promote, words",
    [
        (0.80, None, True, "no champion yet"),
        (0.55, None, False, "misses the minimum"),
        (0.55, 0.50, False, "misses the minimum"),
        (0.82, 0.80, True, "beats champion"),
        (0.805, 0.80, False, "does not beat"),
        (0.80, 0.80, False, "does not beat"),
        (math.nan, None, False, "undefined"),
    ],
)
def test_decision(candidate, champion, promote, words):
    config = churn_config()
    verdict = decision.decide({"roc_auc": candidate}, None if champion is None else {"roc_auc": champion}, config)
    assert verdict.promote is promote and words in verdict.reason


def test_error_metrics_decide_in_the_other_direction():
    config = parse_config(
        {
            "data": {"target": "y", "task": "regression", "columns": {"x": "float", "y": "float"}},
            "model": {"estimator": "ridge"},
            "promotion": {"metric": "rmse", "minimum": 2.0, "margin": 0.1},
        }
    )
    assert decision.decide({"rmse": 1.0}, {"rmse": 1.2}, config).promote
    assert not decision.decide({"rmse": 1.15}, {"rmse": 1.2}, config).promote
    assert "maximum" in decision.decide({"rmse": 2.5}, None, config).reason


def test_regression_pipeline_metrics():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame({"x": x, "y": 3 * x + rng.normal(scale=0.1, size=400)})
    config = parse_config(
        {
            "data": {"target": "y", "task": "regression", "columns": {"x": "float", "y": "float"}},
            "model": {"estimator": "ridge"},
            "promotion": {"metric": "r2"},
        }
    )
    train, holdout = training.split(frame, config)
    metrics = training.evaluate(training.train(train, config), holdout, config)
    assert metrics["r2"] > 0.99 and metrics["rmse"] < 0.2


def test_window_keeps_the_newest_days_only():
    import pandas as pd

    frame = pd.concat(frames(5, 100), ignore_index=True)
    config = churn_config(model__window_days=2)
    recent = training.window(frame, config)
    assert recent["event_time"].min() > frame["event_time"].max() - pd.Timedelta(days=2)
    assert 150 < len(recent) <= 200 and len(training.window(frame, churn_config())) == len(frame)


def test_sample_caps_rows_reproducibly():
    frame = frames(1, 500)[0]
    config = churn_config()
    assert training.sample(frame, config, rows=1000) is frame
    first, second = training.sample(frame, config, rows=100), training.sample(frame, config, rows=100)
    assert len(first) == 100 and first.index.equals(second.index)


def many_levels_frame(task, rows=2000, columns=5, levels=40, seed=0):
    """A numeric column and ``columns`` category columns of ``levels`` levels each, the target following them:
    one-hot, that is ``1 + columns * levels`` columns, a density below ColumnTransformer's sparse_threshold."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, size=(rows, columns))
    effect = rng.normal(size=(columns, levels))
    signal = effect[np.arange(columns), codes].sum(axis=1)
    frame = pd.DataFrame({f"c{i}": [f"level-{code}" for code in codes[:, i]] for i in range(columns)})
    frame["x"] = rng.normal(size=rows)
    signal = signal + frame["x"]
    frame["y"] = (signal > np.median(signal)).astype(int) if task == "classification" else signal
    kinds = {f"c{i}": "category" for i in range(columns)}
    kinds.update(x="float", y="int" if task == "classification" else "float")
    return frame, kinds


def model_config(task, kinds, estimator, target="y"):
    metric = "roc_auc" if task == "classification" else "r2"
    return parse_config(
        {
            "data": {"target": target, "task": task, "columns": kinds},
            "model": {"estimator": estimator},
            "promotion": {"metric": metric},
        }
    )


def one_hot_is_sparse(frame, kinds, task, target="y"):
    """Whether the one-hot pipeline (the linear model's) turns ``frame`` into a sparse matrix."""
    import scipy.sparse

    linear = model_config(task, kinds, "logistic_regression" if task == "classification" else "ridge", target)
    features, _ = training.features_and_target(frame, linear)
    return scipy.sparse.issparse(training.build_pipeline(linear).named_steps["preprocess"].fit_transform(features))


@pytest.mark.parametrize("task, metric, floor", [("classification", "roc_auc", 0.85), ("regression", "r2", 0.7)])
def test_hist_gradient_boosting_trains_on_categories_too_many_for_a_dense_one_hot(task, metric, floor):
    frame, kinds = many_levels_frame(task)
    assert one_hot_is_sparse(frame, kinds, task), "the frame must be in the regime where one-hot output is sparse"
    config = model_config(task, kinds, "hist_gradient_boosting")

    train, holdout = training.split(frame, config)
    pipeline = training.train(train, config)

    assert training.evaluate(pipeline, holdout, config)[metric] > floor
    unseen = holdout.head(2).copy()
    unseen["c0"] = ["level-never-seen", None]
    assert len(pipeline.predict(unseen[list(config.data.features)])) == 2


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_hist_gradient_boosting_on_real_data_with_many_level_categories(task):
    """Breast cancer (classification) and diabetes (regression) from scikit-learn, half their measurements
    binned into 20 named levels each, as a source with coded categories would deliver them."""
    import pandas as pd
    from sklearn import datasets

    loader = datasets.load_breast_cancer if task == "classification" else datasets.load_diabetes
    frame = loader(as_frame=True).frame
    binned = [name for name in frame.columns if name != "target"][::2]
    for name in binned:
        frame[name] = "bin-" + pd.qcut(frame[name], q=20, labels=False, duplicates="drop").astype(str)
    kinds = {name: ("category" if name in binned else "float") for name in frame.columns}
    kinds["target"] = "int" if task == "classification" else "float"
    assert one_hot_is_sparse(frame, kinds, task, target="target")
    config = model_config(task, kinds, "hist_gradient_boosting", target="target")

    train, holdout = training.split(frame, config)
    metrics = training.evaluate(training.train(train, config), holdout, config)

    assert metrics["roc_auc"] > 0.95 if task == "classification" else metrics["r2"] > 0.25


def test_multiclass_roc_auc_scores_the_classes_a_small_holdout_has():
    """Wine's first 60 shuffled rows: the id-hash holdout can miss a class; the metric is then the mean
    one-vs-rest AUC over the classes it has, not undefined (which failed the first run's minimum)."""
    import numpy as np
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.sample(frac=1, random_state=7).reset_index(drop=True)
    columns = {name: "float" for name in wine.columns if name != "target"} | {"target": "int"}
    config = parse_config({"data": {"target": "target", "task": "classification", "columns": columns}})
    pipeline = training.train(wine.iloc[60:], config)
    two_classes = wine.iloc[:60][wine.iloc[:60]["target"] != 2]

    metrics = training.evaluate(pipeline, two_classes, config)

    assert np.isfinite(metrics["roc_auc"]) and metrics["roc_auc"] > 0.9
    assert math.isnan(training.evaluate(pipeline, two_classes[two_classes["target"] == 0], config)["roc_auc"])
