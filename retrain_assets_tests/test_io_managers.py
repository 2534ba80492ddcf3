"""The values passed between steps are stored as JSON and come back as the same objects; nothing else can
be stored, and a stored value can only become one of the listed types."""

import pytest

from retrain_assets.core.batches import ValidatedBatches
from retrain_assets.core.decision import Decision, EvaluationReport
from retrain_assets.core.delta import TableRef
from retrain_assets.core.monitoring import Finding
from retrain_assets.core.registry import ModelRef
from retrain_assets.defs.io_managers import STORED_TYPES, decode, encode


def test_the_values_of_the_lineage_round_trip():
    import numpy as np

    values = [
        TableRef("s3://lake/validated_features", 4, 7),
        ModelRef("churn", "3", "abc123", trigger_reason="new data: 600 rows"),
        {"candidate": {"roc_auc": 0.91, "f1": float("nan")}, "champion": None, "gates": {"floor": [True, "ok"]}},
        [{"partition": "2026-01-05", "drifted": ["tenure"], "rows": np.int64(600)}],
        None,
        ValidatedBatches(
            TableRef("lake/validated_features", 2, 5),
            5,
            [4, 5],
            [3],
            1200,
            Finding(True, "tenure drifted", {"scores": {"tenure": {"psi": 0.4, "drifted": True}}}),
            Finding(False, "champion roc_auc 0.9000", {"roc_auc": 0.9}),
        ),
        EvaluationReport(
            "3",
            "2",
            "champion v2 scored on the same holdout",
            None,
            5,
            2,
            240,
            "roc_auc",
            True,
            0.6,
            0.01,
            {"roc_auc": 0.91},
            {"roc_auc": 0.88},
            Decision(True, "meets"),
            Decision(True, "beats"),
            Decision(True, "beats"),
            "new data",
            "2026-01-05T00:00:00+00:00",
        ),
    ]
    for value in values:
        back = decode(encode(value, "value"), "value")
        if isinstance(value, dict):
            assert back["candidate"]["f1"] != back["candidate"]["f1"]  # NaN stays NaN
            back["candidate"]["f1"] = value["candidate"]["f1"] = 0.0
        assert back == value and type(back) is type(value)
    assert set(STORED_TYPES) == {"TableRef", "ModelRef", "ValidatedBatches", "Finding", "EvaluationReport", "Decision"}


def test_an_object_json_cannot_hold_is_refused_naming_the_output():
    import pandas as pd

    with pytest.raises(TypeError, match=r"candidate_model: a pandas.core.frame.DataFrame cannot be stored"):
        encode({"frame": pd.DataFrame({"a": [1]})}, "candidate_model")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b'{"__retrain_type__": "Popen", "args": ["sh"]}', "names the type 'Popen'"),
        (b'{"__retrain_type__": "TableRef", "uri": "x", "version": 1}', "does not match its fields"),
        (b"\x80\x04\x95\x00", "prod_model is not a JSON value"),
    ],
)
def test_a_stored_value_becomes_only_a_listed_type(payload, message):
    with pytest.raises(ValueError, match=message):
        decode(payload, "prod_model")
