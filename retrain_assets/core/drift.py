"""Data drift of a new batch against the champion's training data, per feature.

At training time :func:`reference_profile` condenses the training rows into a small JSON-serialisable profile
(logged next to the model); at validation time :func:`score_drift` scores a batch against that profile alone, so
the cost follows the batch size, not the training table. Numeric features get PSI over quantile bins plus a KS
test against the training CDF at its percentiles; categorical features get PSI over category shares, values never
seen in training counted in a bucket of their own. The profile holds shares and quantiles, never rows: no raw
sample of customer values leaves the lake with the model. ``scipy`` is imported on first use only.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

NUMERIC = ("int", "float")
CATEGORICAL = ("category", "string", "bool")
NULL_KEY = "__null__"
OTHER_KEY = "__other__"
UNSEEN_KEY = "__unseen__"
MAX_CATEGORIES = 100  # more distinct values than this: the rarest share one OTHER_KEY bucket (keeps profiles small)
QUANTILES = 100  # the KS sketch keeps the training CDF at the 1st..99th percentiles
MAX_FILTER_BITS = 1 << 16  # the membership sketch of the OTHER_KEY values: at most 8 KiB per feature
EPSILON = 1e-4  # stands in for an empty bucket's share so PSI stays finite


def reference_profile(
    frame: pd.DataFrame, features: Mapping[str, str], bins: int = 10, seed: int = 0, quantiles: int = QUANTILES
) -> dict:
    """A compact, JSON-serialisable profile of the training rows that :func:`score_drift` compares batches to.

    Numeric features keep quantile bin edges (``bins`` equal-frequency bins, duplicate edges dropped, outer bins
    open-ended), the share of rows per bin and of nulls, and a sketch of the CDF for the KS test: the distinct
    interior quantiles (``1/quantiles`` apart) with the share of values at or below and strictly below each. No
    raw value is kept, and the size does not follow the row count. Non-finite numbers count as nulls.
    Categorical features keep the share of each value (keys as strings, nulls under ``"__null__"``; beyond
    :data:`MAX_CATEGORIES` values the rarest share ``"__other__"``, with a hashed membership sketch of them, so a
    value seen in training is told from a new one), and the Good-Turing estimate of the share of new values (the
    share of rows whose value occurs once), which a clean batch of a long-tailed column shows.

    Args:
        frame: The training rows.
        features: ``{name: column type}`` of the model inputs, as ``config.data.features`` gives them.
        bins: Number of equal-frequency bins per numeric feature.
        seed: Not used since the profile keeps no sample (kept for callers).
        quantiles: Resolution of the KS sketch.

    Returns:
        ``{"rows", "features", "columns": {name: profile}}`` of plain JSON types.

    Raises:
        ValueError: ``frame`` is empty, lacks a feature, a feature has a type without a profile (timestamp) or a
            numeric feature holds non-numbers.
    """
    if len(frame) == 0:
        raise ValueError("reference_profile: the training frame has no rows")
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ValueError(f"reference_profile: features {missing} are not columns of the training frame")
    columns: dict[str, Any] = {}
    for name, kind in features.items():
        if kind in NUMERIC:
            columns[name] = _numeric_profile(name, kind, frame[name], bins, quantiles)
        elif kind in CATEGORICAL:
            columns[name] = _categorical_profile(frame[name])
        else:
            raise ValueError(f"reference_profile: feature {name!r} has type {kind!r}, which has no drift profile")
    return {"rows": len(frame), "features": dict(features), "columns": columns}


def score_drift(
    profile: dict,
    batch: pd.DataFrame,
    psi_threshold: float,
    ks_threshold: float,
    ks_pvalue: float,
    redact: bool = False,
) -> dict[str, dict]:
    """Score every feature of ``profile`` on ``batch``.

    A categorical feature is drifted when its PSI exceeds ``psi_threshold``; categories unseen in training share
    one bucket of their own (expected at the profile's Good-Turing share), apart from the "other" bucket of rare
    training values. A numeric feature is drifted when the PSI over the reference bins (nulls one more bucket)
    exceeds ``psi_threshold``, or when the KS statistic of its values against the reference CDF sketch exceeds
    ``ks_threshold`` with a p-value below ``ks_pvalue``. A PSI counts only when the shares moved more
    than chance would move them in a batch of that size: a chi-square test of the bucket counts against the
    reference shares, at the same level. The level is ``ks_pvalue`` for the batch as a whole: each feature is
    tested at ``ks_pvalue / features`` (Bonferroni), so thirty features do not make thirty chances of a false
    alarm. A feature missing from the batch, or without a single value in it, is drifted; its PSI is computed
    as if every row were null.

    Args:
        profile: What :func:`reference_profile` returned.
        batch: The new rows.
        psi_threshold: PSI above this marks a feature drifted.
        ks_threshold: KS statistic above this marks a numeric feature drifted...
        ks_pvalue: ...when the test's p-value is also below this (divided among the features); the
            significance level of the PSI, too.
        redact: ``validation.redact_samples``: a categorical detail names no unseen value (category values are
            customer data too), only how many there are and their share.

    Returns:
        ``{feature: {"method", "psi", "ks", "p_value", "drifted", "detail", "reason"}}``: ``method`` is
        ``"psi+ks"`` when the KS test ran, else ``"psi"`` (``ks`` and ``p_value`` None); ``detail`` is one line
        for a person; ``reason`` says briefly why the feature drifted ("" when it did not).
    """
    scores = {}
    level = ks_pvalue / max(1, len(profile["features"]))  # Bonferroni: the batch as a whole, not each feature
    for name, kind in profile["features"].items():
        reference = profile["columns"][name]
        column = batch[name] if name in batch.columns else None
        if kind in NUMERIC:
            scores[name] = _score_numeric(name, reference, column, psi_threshold, ks_threshold, level)
        else:
            scores[name] = _score_categorical(name, reference, column, psi_threshold, level, redact)
    return scores


def drift_summary(scores: dict[str, dict]) -> tuple[bool, str]:
    """``(any feature drifted, one line naming the drifted features and their scores)``.

    For example ``"drift in monthly_charges (PSI 0.31, KS 0.22), support_calls (KS 0.19)"``, or
    ``"no drift: max PSI 0.03 (plan)"`` when nothing drifted.
    """
    drifted = [f"{name} ({score['reason']})" for name, score in scores.items() if score["drifted"]]
    if drifted:
        return True, "drift in " + ", ".join(drifted)
    if not scores:
        return False, "no drift: no features scored"
    name = max(scores, key=lambda feature: scores[feature]["psi"])
    return False, f"no drift: max PSI {scores[name]['psi']:.2f} ({name})"


def _numeric_profile(name: str, kind: str, column: pd.Series, bins: int, quantiles: int) -> dict:
    """Bin edges, bin and null shares and the CDF sketch of one numeric training column."""
    try:
        values = pd.to_numeric(column).to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:
        message = f"reference_profile: feature {name!r} is declared {kind} but holds non-numbers: {exc}"
        raise ValueError(message) from None
    finite = np.sort(values[np.isfinite(values)])
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if finite.size else np.array([])
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    return {
        "edges": edges.tolist(),
        "fractions": (counts / values.size).tolist(),
        "null_fraction": 1.0 - finite.size / values.size,
        "count": int(finite.size),
        "cdf": _cdf_sketch(finite, quantiles),
    }


def _cdf_sketch(ordered: np.ndarray, quantiles: int) -> dict:
    """The CDF of sorted values at their distinct interior quantiles: ``points``, the share of values at or
    below each (``at``) and strictly below (``below``), so a step of a discrete column is kept whole."""
    if not ordered.size:
        return {"points": [], "at": [], "below": []}
    points = np.unique(np.quantile(ordered, np.linspace(0, 1, quantiles + 1)[1:-1]))
    at = np.searchsorted(ordered, points, side="right") / ordered.size
    below = np.searchsorted(ordered, points, side="left") / ordered.size
    return {"points": points.tolist(), "at": at.tolist(), "below": below.tolist()}


def _categorical_profile(column: pd.Series) -> dict:
    """Capped category shares, the membership sketch of the capped values and the expected share of new ones."""
    counts = column.value_counts(dropna=True)
    fractions = _capped(_category_fractions(column))
    profile: dict[str, Any] = {"fractions": fractions, "unseen_fraction": float((counts == 1).sum() / len(column))}
    if OTHER_KEY in fractions:
        profile["other_filter"] = _bloom([key for key in _category_fractions(column) if key not in fractions])
    return profile


def _bloom(keys: list[str]) -> dict:
    """A Bloom filter of ``keys`` (hashes, not values): ``bits`` base64, ``size`` in bits, ``hashes`` per key.
    About 16 bits a key up to :data:`MAX_FILTER_BITS`; past that false positives grow, and a new value is then
    sometimes taken for a rare seen one (the drift of old)."""
    size = max(64, min(MAX_FILTER_BITS, 16 * len(keys)))
    size += -size % 8
    hashes = max(1, min(8, round(size / max(1, len(keys)) * 0.693)))
    bits = np.zeros(size // 8, dtype=np.uint8)
    for key in keys:
        for index in _bloom_indexes(key, size, hashes):
            bits[index >> 3] |= np.uint8(1 << (index & 7))
    return {"bits": base64.b64encode(bits.tobytes()).decode("ascii"), "size": size, "hashes": hashes}


def _bloom_indexes(key: str, size: int, hashes: int) -> list[int]:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    first, second = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
    return [(first + i * second) % size for i in range(hashes)]


def _in_bloom(bits: bytes, sketch: dict, key: str) -> bool:
    return all(bits[index >> 3] >> (index & 7) & 1 for index in _bloom_indexes(key, sketch["size"], sketch["hashes"]))


def _category_key(value: Any) -> str:
    """The profile key of one categorical value; integral floats (ints that met a null) read as ints."""
    if pd.isna(value):
        return NULL_KEY
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _category_fractions(column: pd.Series) -> dict[str, float]:
    """Share of rows per category key, most frequent first."""
    fractions: dict[str, float] = {}
    for value, count in column.value_counts(dropna=False).items():
        if count:
            key = _category_key(value)
            fractions[key] = fractions.get(key, 0.0) + count / len(column)
    return dict(sorted(fractions.items(), key=lambda item: -item[1]))


def _capped(fractions: dict[str, float]) -> dict[str, float]:
    """``fractions`` with at most :data:`MAX_CATEGORIES` values besides nulls; the rest summed as other."""
    values = [key for key in fractions if key != NULL_KEY]
    if len(values) <= MAX_CATEGORIES:
        return fractions
    kept = {key: fractions[key] for key in values[:MAX_CATEGORIES]}
    kept[OTHER_KEY] = sum(fractions[key] for key in values[MAX_CATEGORIES:])
    if NULL_KEY in fractions:
        kept[NULL_KEY] = fractions[NULL_KEY]
    return kept


def _psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two aligned share vectors, empty buckets floored at :data:`EPSILON`."""
    e = np.maximum(np.asarray(expected, dtype="float64"), EPSILON)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _tested_rows(rows: int, reference: dict) -> float:
    """The sample size the bucket test is run at: the reference's shares were measured on ``count`` values, not
    known exactly, so a small reference (a holdout's scores) widens the test as a two-sample one would
    (1/n = 1/rows + 1/count); a training reference of many rows leaves it at about ``rows``."""
    count = reference.get("count")
    return rows if not count else 1.0 / (1.0 / rows + 1.0 / count)


def _chi_square_p(expected: list[float], actual: list[float], rows: float) -> float:
    """p-value of a chi-square goodness-of-fit test of a batch's bucket shares against the reference's.

    PSI measures how far the shares moved, whatever the batch size; this says whether ``rows`` values could
    have moved them that far by chance (a batch of a hundred rows from unchanged data has a PSI of about 0.1
    to 0.3 over ten buckets from sampling alone). Buckets expecting fewer than 5 values, where the test's
    approximation fails, are pooled into one; with fewer than two buckets left nothing can be shown (p = 1)."""
    from scipy.stats import chisquare

    e = np.maximum(np.asarray(expected, dtype="float64"), EPSILON)
    e = e / e.sum() * rows
    observed = np.asarray(actual, dtype="float64") * rows
    small = e < 5
    if small.any():
        e = np.append(e[~small], e[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    if len(e) < 2:
        return 1.0
    return float(chisquare(observed, e / e.sum() * observed.sum()).pvalue)


def _absent(column: Optional[pd.Series]) -> Optional[str]:
    """Why ``column`` has no usable value ("missing from the batch", ...), or None when it has some."""
    if column is None:
        return "missing from the batch"
    if len(column) == 0:
        return "no rows in the batch"
    if column.isna().all():
        return f"all {len(column)} values null in the batch"
    return None


def _score(
    method: str, psi: float, ks: Optional[float], p_value: Optional[float], drifted: bool, detail: str, reason: str
) -> dict:
    return {
        "method": method,
        "psi": psi,
        "ks": ks,
        "p_value": p_value,
        "drifted": drifted,
        "detail": detail,
        "reason": reason,
    }


def _score_numeric(
    name: str,
    reference: dict,
    column: Optional[pd.Series],
    psi_threshold: float,
    ks_threshold: float,
    ks_pvalue: float,
) -> dict:
    """PSI over the reference bins and nulls, plus KS against the reference CDF sketch."""

    expected = reference["fractions"] + [reference["null_fraction"]]
    values = np.array([])
    absent = _absent(column)
    if column is not None and not absent:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        values = values[np.isfinite(values)]
        if not values.size:
            absent = f"no numbers among {len(column)} values in the batch"
    if absent:
        psi = _psi(expected, [0.0] * len(reference["fractions"]) + [1.0])
        return _score("psi", psi, None, None, True, f"{name}: {absent} (PSI {psi:.2f})", absent)
    assert column is not None  # _absent() names a missing column
    counts = np.bincount(np.searchsorted(reference["edges"], values, side="left"), minlength=len(expected) - 1)
    actual = (counts / len(column)).tolist() + [1.0 - values.size / len(column)]
    psi = _psi(expected, actual)
    psi_drifted = (
        psi > psi_threshold and _chi_square_p(expected, actual, _tested_rows(len(column), reference)) < ks_pvalue
    )
    psi_text = f"PSI {psi:.2f}" + (f" > {psi_threshold:g}" if psi_drifted else "")
    if not (reference["cdf"]["points"] if "cdf" in reference else reference.get("sample")):
        reason = f"PSI {psi:.2f}" if psi_drifted else ""
        return _score("psi", psi, None, None, psi_drifted, f"{name}: {psi_text} (no training values for KS)", reason)
    ks, p_value = _ks(values, reference)
    ks_drifted = ks > ks_threshold and p_value < ks_pvalue
    ks_text = f"KS {ks:.2f}" + (f" > {ks_threshold:g}" if ks_drifted else "") + f" (p={p_value:.2g})"
    reason = ", ".join(text for text, hit in ((f"PSI {psi:.2f}", psi_drifted), (f"KS {ks:.2f}", ks_drifted)) if hit)
    return _score("psi+ks", psi, ks, p_value, psi_drifted or ks_drifted, f"{name}: {psi_text}, {ks_text}", reason)


def _ks(values: np.ndarray, reference: dict) -> tuple[float, float]:
    """KS statistic and p-value of finite batch values against the training CDF, at the sketch's points (both
    sides of each step); the p-value is the two-sample one for the training and batch counts. A profile
    logged before the sketch existed holds a raw sample instead, tested as it was."""
    from scipy.stats import ks_2samp, kstwo

    if "cdf" not in reference:
        result = ks_2samp(values, np.asarray(reference["sample"], dtype="float64"))
        return float(result.statistic), float(result.pvalue)
    sketch, ordered = reference["cdf"], np.sort(values)
    points = np.asarray(sketch["points"], dtype="float64")
    at = np.searchsorted(ordered, points, side="right") / ordered.size
    below = np.searchsorted(ordered, points, side="left") / ordered.size
    ks = float(max(np.abs(at - sketch["at"]).max(), np.abs(below - sketch["below"]).max()))
    rows, trained = ordered.size, reference["count"]
    return ks, float(kstwo.sf(ks, max(1, round(rows * trained / (rows + trained)))))


def _score_categorical(
    name: str,
    reference: dict,
    column: Optional[pd.Series],
    psi_threshold: float,
    significance: float,
    redact: bool = False,
) -> dict:
    """PSI over the reference category shares plus one bucket of values unseen in training: a value not among
    the kept shares is a rare training value (the other bucket) only when the membership sketch holds it.
    The detail names up to 3 unseen values, or with ``redact`` only their count and share."""
    known = reference["fractions"]
    absent = _absent(column)
    batch = {NULL_KEY: 1.0} if absent else _category_fractions(column)
    sketch = reference.get("other_filter")
    bits = base64.b64decode(sketch["bits"]) if sketch else b""
    actual = {key: 0.0 for key in known}
    unseen: dict[str, float] = {}
    for key, share in batch.items():
        if key in known:
            actual[key] += share
        elif OTHER_KEY in known and key != NULL_KEY and (sketch is None or _in_bloom(bits, sketch, key)):
            actual[OTHER_KEY] += share  # a profile without a sketch (logged before it existed) cannot tell
        else:
            unseen[key] = share
    new = reference.get("unseen_fraction", 0.0)
    expected = [share * (1 - new) for share in known.values()] + [new]
    shares = list(actual.values()) + [sum(unseen.values())]
    psi = _psi(expected, shares)
    if absent:
        return _score("psi", psi, None, None, True, f"{name}: {absent} (PSI {psi:.2f})", absent)
    assert column is not None  # _absent() names a missing column
    drifted = psi > psi_threshold and _chi_square_p(expected, shares, len(column)) < significance
    detail = f"{name}: PSI {psi:.2f}" + (f" > {psi_threshold:g}" if drifted else "")
    if unseen and redact:
        count = f"{len(unseen)} value" + ("s" if len(unseen) > 1 else "")
        detail += f" (unseen: {count}, {sum(unseen.values()):.0%}; withheld: validation.redact_samples)"
    elif unseen:
        top = sorted(unseen.items(), key=lambda item: -item[1])[:3]
        detail += " (unseen: " + ", ".join(f"{key} {share:.0%}" for key, share in top) + ")"
    return _score("psi", psi, None, None, drifted, detail, f"PSI {psi:.2f}" if drifted else "")
