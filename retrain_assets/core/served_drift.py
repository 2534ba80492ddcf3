"""Drift seen in production: the champion's served scores against its holdout scores (prediction drift), and
the inputs it was served against its training reference (feature drift on served rows).

The score reference is built when a model is trained (:func:`score_reference`): a profile, in the format of
:func:`retrain_assets.core.drift.reference_profile`, of one column, the model's score on its holdout (the
positive-class probability of a binary classifier, the predicted value of a regression: what the ledger
keeps as ``score``). It is logged inside the drift reference, so no holdout row leaves the lake. Served
rows are then scored against it with the same PSI and KS rules, thresholds and significance tests as
feature drift (``triggers.drift``). A multiclass model has no single score: only its inputs are watched.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Optional

from retrain_assets.core.monitoring import Finding

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrain_assets.core.config import RetrainConfig

SCORE = "score"
SCORES_KEY = "scores"  # the score reference's key inside a model's drift reference profile
PREDICTION_DRIFT_CHECK = "prediction_drift"
SERVED_DRIFT_CHECK = "served_feature_drift"
MIN_SERVED_ROWS = 30  # fewer served rows say too little to test a distribution on


def score_reference(output: "np.ndarray", config: "RetrainConfig") -> Optional[dict]:
    """The profile of a model's raw output on its holdout (``training.raw_output``); ``None`` for a multiclass
    model."""
    import pandas as pd

    from retrain_assets.core.drift import reference_profile

    if config.data.task == "classification":
        if output.shape[1] != 2:
            return None
        output = output[:, 1]
    frame = pd.DataFrame({SCORE: output})
    return reference_profile(frame, {SCORE: "float"}, bins=config.triggers.drift.bins, seed=config.model.seed)


def served(
    uri: str, version: int, start: dt.datetime, end: dt.datetime, columns: tuple[str, ...] = (SCORE, "features")
) -> "pd.DataFrame":
    """The champion rows (not shadow) that ``version`` answered in ``[start, end)``, from the predictions table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from retrain_assets.core import delta

    if delta.latest_version(uri) is None:
        import pandas as pd

        return pd.DataFrame(columns=list(columns))
    stamp = pa.timestamp("us", tz="UTC")
    where = (
        (pc.field("model_version") == version)
        & (pc.field("alias") == "champion")
        & ~pc.field("shadow")
        & (pc.field("served_at") >= pa.scalar(start, stamp))
        & (pc.field("served_at") < pa.scalar(end, stamp))
    )
    return delta.read_table(uri, columns=list(columns), where=where)


def prediction_drift(config: "RetrainConfig", profile: Optional[dict], rows: "pd.DataFrame", version: int) -> Finding:
    """PSI/KS of the served scores in ``rows`` against champion v``version``'s holdout scores."""
    import pandas as pd

    from retrain_assets.core.drift import drift_summary, score_drift

    reference = (profile or {}).get(SCORES_KEY)
    if reference is None:
        return Finding(False, f"champion v{version} has no score reference (multiclass, or trained before one)")
    values = pd.to_numeric(rows[SCORE], errors="coerce").dropna()
    if len(values) < MIN_SERVED_ROWS:
        return Finding(False, f"{len(values)} served scores of v{version}; at least {MIN_SERVED_ROWS} are compared")
    rules = config.triggers.drift
    scores = score_drift(reference, pd.DataFrame({SCORE: values}), rules.psi, rules.ks, rules.ks_pvalue)
    drifted, message = drift_summary(scores)
    text = message.replace("drift in score", "prediction drift:").replace("no drift", "no prediction drift")
    return Finding(drifted, f"{text} ({len(values)} served scores of v{version} vs its holdout)", {"scores": scores})


def served_feature_drift(
    config: "RetrainConfig", profile: Optional[dict], rows: "pd.DataFrame", version: int
) -> Finding:
    """Per-feature PSI/KS of the inputs in ``rows`` (the ledger's ``features`` JSON) against champion
    v``version``'s training reference."""
    import pandas as pd

    from retrain_assets.core.drift import drift_summary, score_drift

    if profile is None:
        return Finding(False, f"champion v{version} has no reference profile; served drift not measured")
    if len(rows) < MIN_SERVED_ROWS:
        return Finding(False, f"{len(rows)} served rows of v{version}; at least {MIN_SERVED_ROWS} are compared")
    inputs = pd.DataFrame([json.loads(text) for text in rows["features"]])
    rules = config.triggers.drift
    scores = score_drift(profile, inputs, rules.psi, rules.ks, rules.ks_pvalue, redact=config.validation.redact_samples)
    drifted, message = drift_summary(scores)
    return Finding(drifted, f"{message} (on {len(rows)} served rows of v{version})", {"scores": scores})
