"""payloads.typed: values already of the JSON type a column declares take a quick way; it must give exactly what the
general cast (ingest's ``cast_column``) gives, and leave every other value to the general cast and its refusals."""

import json
import random

import pandas as pd
import pytest

from retrain_assets.core.config import parse_config
from retrain_assets.core.delta import cast_column
from retrain_assets.core.payloads import PayloadError, parse, typed

COLUMNS = {"n": "int", "x": "float", "plan": "category", "note": "string", "flag": "bool", "y": "int"}


@pytest.fixture
def config(tmp_path):
    raw = {"project": "churn", "data": {"target": "y", "task": "classification", "columns": COLUMNS}}
    return parse_config(raw, base_dir=tmp_path)


def general(frame: pd.DataFrame, config) -> pd.DataFrame:
    """What the general cast makes of ``frame`` (the values in these tests all convert)."""
    return pd.DataFrame({name: cast_column(frame[name], config.data.columns[name]) for name in frame.columns})


def sample(rng: random.Random, kind: str):
    """A value JSON sends for ``kind``, now and then one the quick way must leave to the general cast."""
    odd = rng.random() < 0.15
    if kind == "int":
        return rng.choice([None, "7", 3.0, 2**60]) if odd else rng.randint(-(10**6), 10**6)
    if kind == "float":
        return (
            rng.choice([None, "2.5", float("nan"), 2**60])
            if odd
            else rng.choice([rng.random() * 100, rng.randint(0, 9)])
        )
    if kind == "bool":
        return rng.choice([None, "yes", 1]) if odd else rng.random() < 0.5
    return rng.choice([None, 12]) if odd else rng.choice(["basic", "premium", "", "ünï"])


def test_quick_and_general_casts_agree(config):
    rng = random.Random(13)
    features = {name: kind for name, kind in COLUMNS.items() if name != "y"}
    for _ in range(300):
        rows = rng.choice([1, 2, 5, 40])
        data = [[sample(rng, kind) for kind in features.values()] for _ in range(rows)]
        body = json.dumps({"dataframe_split": {"columns": list(features), "data": data}}).encode()
        frame = pd.DataFrame(data, columns=list(features), dtype=object)
        pd.testing.assert_frame_equal(parse(body, "application/json", config), general(frame, config))


def test_the_quick_way_refuses_what_the_general_cast_refuses(config):
    def one(**values):
        row = {"n": 1, "x": 1.5, "plan": "basic", "note": "a", "flag": True} | values
        return pd.DataFrame([row], dtype=object)

    with pytest.raises(PayloadError, match="'x', row 0: True is not a float"):
        typed(one(x=True), config)
    with pytest.raises(PayloadError, match="'n', row 0: 9223372036854775807 is not a int"):
        typed(one(n=2**63 - 1), config)  # as ingest: beyond what the range check can tell from 2**63
    with pytest.raises(PayloadError, match="'n', row 0: 1.5 is not a int"):
        typed(one(n=1.5), config)
    assert typed(one(), config).dtypes.astype(str).to_dict() == {
        "n": "Int64",
        "x": "float64",
        "plan": "string",
        "note": "string",
        "flag": "boolean",
    }
