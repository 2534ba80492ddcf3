"""Seeded synthetic customer-churn batches for the demo, the tests and the benchmarks.

One batch is one day of customers. The same ``(day, rows, seed, drift)`` always gives the same frame, ``drift``
moves both the feature distributions and the churn relationship, and :func:`corrupt_batch` makes a batch that
validation must reject.
"""

from __future__ import annotations

import datetime
from typing import Optional

import numpy as np
import pandas as pd

# Column -> type in retrain.yaml's vocabulary, in frame order.
CHURN_TYPES = {
    "customer_id": "string",
    "event_time": "timestamp",
    "tenure_months": "int",
    "plan": "category",
    "contract": "category",
    "monthly_charges": "float",
    "region": "category",
    "support_calls": "int",
    "paperless_billing": "bool",
    "churned": "int",
}
CHURN_COLUMNS = list(CHURN_TYPES)
PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
REGIONS = ("north", "south", "east", "west")

_MICROS_PER_DAY = 86_400_000_000
_PLAN_CHARGE_MEAN = np.array([30.0, 65.0, 100.0])


def churn_batch(day: datetime.date, rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """One day of customers with a ``churned`` label drawn from a logistic model.

    Args:
        day: The batch date; ids and event times fall on it.
        rows: Number of customers.
        seed: Base seed; combined with the day's ordinal so every day differs.
        drift: 0 for the reference distribution, 1 for fully drifted features and churn behaviour; up to 2
            carries the same change further, until tenure, charges and support calls predict churn the other
            way round (the demo's served day: customers unlike any the champion has seen).

    Returns:
        A frame with :data:`CHURN_COLUMNS` in order.
    """
    if not 0.0 <= drift <= 2.0:
        raise ValueError(f"drift: {drift} is not within [0, 2]")
    if rows < 0:
        raise ValueError(f"rows: {rows} is negative")
    rng = np.random.default_rng([seed, day.toordinal()])

    micros = np.sort(rng.integers(0, _MICROS_PER_DAY, size=rows))
    event_time = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(micros, unit="us")

    tenure = np.clip(np.round(rng.gamma(1.2, 22.0 * (1.0 - 0.35 * drift), size=rows)), 0, 72).astype("int64")
    plan = rng.choice(3, size=rows, p=[0.40 - 0.15 * drift, 0.35, 0.25 + 0.15 * drift])
    long_contract = np.clip(0.15 + tenure / 100.0 - 0.2 * drift, 0.02, 0.9)
    contract = np.where(rng.random(rows) < long_contract, np.where(rng.random(rows) < 0.5, 1, 2), 0)
    charges: np.ndarray = _PLAN_CHARGE_MEAN[plan] + 12.0 * drift + rng.normal(0.0, 8.0, size=rows)
    charges = np.round(np.clip(charges, 15.0, 130.0), 2)
    region = rng.choice(4, size=rows, p=[0.3, 0.25, 0.25, 0.2])
    support_calls = np.clip(rng.poisson(1.0 + 0.4 * (plan == 0) + 1.5 * drift, size=rows), 0, 12).astype("int64")
    paperless = rng.random(rows) < 0.6

    logit = (
        -1.2
        - (0.05 - 0.03 * drift) * tenure
        + 1.0 * (contract == 0)
        - 1.0 * (contract == 2)
        + (0.025 - 0.02 * drift) * (charges - 65.0)
        + (0.4 - 0.3 * drift) * support_calls
        + (0.2 + 0.8 * drift) * paperless
        + 1.2 * drift * (region == 1)
        - 1.6 * drift
    )
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    return pd.DataFrame(
        {
            "customer_id": [f"C{day:%Y%m%d}-{i:05d}" for i in range(rows)],
            "event_time": event_time.astype("datetime64[us, UTC]"),
            "tenure_months": tenure,
            "plan": np.array(PLANS, dtype=object)[plan],
            "contract": np.array(CONTRACTS, dtype=object)[contract],
            "monthly_charges": charges,
            "region": np.array(REGIONS, dtype=object)[region],
            "support_calls": support_calls,
            "paperless_billing": paperless,
            "churned": churned,
        },
        columns=CHURN_COLUMNS,
    )


def corrupt_batch(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A copy of a churn batch with nulls, impossible charges and an unknown region.

    About 10% of ``tenure_months`` become null (the column turns float64, as pandas does), a few
    ``monthly_charges`` become -50 and 10000, and a few ``region`` values become ``"atlantis"``.
    """
    rng = np.random.default_rng(seed)
    rows = len(frame)
    bad = frame.copy()
    tenure = bad["tenure_months"].astype("float64")
    tenure.iloc[rng.choice(rows, size=min(rows, max(1, round(0.1 * rows))), replace=False)] = np.nan
    bad["tenure_months"] = tenure
    charges_at = rng.choice(rows, size=min(rows, 4), replace=False)
    bad.iloc[charges_at, bad.columns.get_loc("monthly_charges")] = np.resize([-50.0, 10000.0], len(charges_at))
    bad.iloc[rng.choice(rows, size=min(rows, 3), replace=False), bad.columns.get_loc("region")] = "atlantis"
    return bad


def churn_days(
    start: datetime.date,
    days: int,
    rows_per_day: int,
    seed: int = 7,
    bad_day: Optional[int] = None,
    drift_from_day: Optional[int] = None,
    drift: float = 0.0,
) -> list[tuple[datetime.date, pd.DataFrame]]:
    """Consecutive daily batches from ``start``.

    Args:
        start: Date of the first batch.
        days: Number of batches.
        rows_per_day: Rows in each batch.
        seed: Base seed for every batch.
        bad_day: 0-based index of the batch to pass through :func:`corrupt_batch`, if any.
        drift_from_day: 0-based index of the first drifted batch, if any.
        drift: Drift applied from ``drift_from_day`` on.

    Returns:
        ``(day, frame)`` pairs in date order.
    """
    batches = []
    for index in range(days):
        day = start + datetime.timedelta(days=index)
        drifted = drift_from_day is not None and index >= drift_from_day
        frame = churn_batch(day, rows_per_day, seed, drift if drifted else 0.0)
        if index == bad_day:
            frame = corrupt_batch(frame, seed + day.toordinal())
        batches.append((day, frame))
    return batches
