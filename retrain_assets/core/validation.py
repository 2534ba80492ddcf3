"""Validate one batch of raw data with a Great Expectations suite built from ``retrain.yaml``.

Every expectation carries ``meta["check"]``, the :data:`CHECKS` name it belongs to, so one GE run yields the
blocking checks. Two rules are plain pandas/Arrow, reported in the same :class:`RuleOutcome` form: column
types (GE's type-list expectation checks object columns value by value in Python, the main cost of a large
batch) and a feature that is a copy of the target (GE has no such expectation). ``great_expectations`` is
imported on first use only; the sensor and CLI paths stay light.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Sequence, Union

from retrain_assets.core import delta
from retrain_assets.core.config import ColumnRule, ColumnType, RetrainConfig, Severity, ValidationConfig

EXPECTED_CHECK = "values_as_expected"

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

CHECKS: dict[str, str] = {
    "schema_matches": "columns are exactly data.columns, each with a dtype of its declared type",
    "required_values_present": "no nulls in the target or in columns declared nullable: false; no column entirely null",
    "values_in_range": "numeric values within validation.columns hard limits, floats finite; data.timestamp not after "
    "the landing time (+1 h) nor older than validation.max_event_age_days",
    "categories_in_domain": "values in closed validation.columns domains; target values in validation.target_classes",
    "target_balanced": "classification: >= 2 classes (regression: target not constant); rows >= min_rows",
    "batch_integrity": "data.id unique within the batch; rows <= validation.max_batch_growth x the median of the "
    "recent accepted batches",
    "no_target_leakage": "no feature gives the target away: |corr| or single-feature ROC AUC near 1, a one-to-one "
    "mapping of the classes, or a null indicator that separates the classes",
    EXPECTED_CHECK: "values within the expected ranges, domains and null rates the sample showed, each class at "
    "least min_class_fraction of the batch (warns: a distribution signal, never rejects a batch)",
}
# The checks whose error-severity failures reject a batch; the expected-values check only ever warns.
HARD_CHECKS = tuple(name for name in CHECKS if name != EXPECTED_CHECK)
LEAKAGE_RULE = "feature_is_not_a_copy_of_the_target"
TYPE_RULE = "column_type_is_declared_type"
MAX_CORRELATION = 0.999
FUTURE_TOLERANCE = dt.timedelta(hours=1)  # clock skew between the source and the landing machine
RECENT_BATCHES = 10  # accepted batches the growth rule takes the median of
_MIN_ROWS_FOR_LEAKAGE = 30  # below this a perfect correlation or mapping can be chance

# Arrow type of an object column, from pandas' one-pass ``infer_dtype`` (nulls skipped); other results are mixed.
_OBJECT_TYPES = {
    "string": "string",
    "boolean": "bool",
    "integer": "int64",
    "floating": "double",
    "mixed-integer-float": "double",
    "datetime": "timestamp[us]",
    "empty": "null",
}
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 5}


def rules_hash(config: RetrainConfig) -> str:
    """Short, stable hash of the rules a batch is judged by (``data:`` and ``validation:``): the code version
    of ``validated_features``, and the key of verdicts the backtest reuses; the same rules give the same
    verdict."""
    import hashlib
    import json

    rules = json.dumps([config.data.model_dump(), config.validation.model_dump()], sort_keys=True, default=str)
    return hashlib.sha256(rules.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BatchContext:
    """What a batch is judged against besides its own rows: when it landed in ``raw_data`` and the row
    counts of the recent accepted batches (newest first)."""

    landed_at: Optional[dt.datetime] = None
    recent_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class RuleOutcome:
    """One expectation's result, in the terms of the check it belongs to. ``severity`` is ``error`` for a
    rule whose failure rejects the batch, ``warn`` for one that only reports."""

    check: str
    column: Optional[str]
    rule: str
    passed: bool
    failing_count: int
    failing_percent: float
    sample: list
    detail: str
    severity: Severity = "error"

    @property
    def kind(self) -> str:
        """``hard`` (a declared limit) or ``expected`` (what the sample showed)."""
        return "expected" if self.check == EXPECTED_CHECK else "hard"


class CheckVerdict(NamedTuple):
    """One check over a batch: failed with ``error`` severity rejects the batch, with ``warn`` it reports."""

    passed: bool
    message: str
    severity: Severity = "error"

    @property
    def rejects(self) -> bool:
        return not self.passed and self.severity == "error"


def build_suite(
    config: RetrainConfig, classes: Optional[Sequence[Any]] = None, context: BatchContext = BatchContext()
) -> "ExpectationSuite":
    """The expectation suite for one batch of ``raw_data``.

    Args:
        config: The project config; ``data.columns`` and ``validation`` define the expectations.
        classes: Target classes whose share is checked against ``min_class_fraction``; defaults to
            ``validation.target_classes``.
        context: Landing time and recent batch sizes; the timestamp and growth rules need them.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    _batch_definition()  # a suite needs an active context even to add expectations
    suite = gx.ExpectationSuite(name=f"{config.project}.raw_data")
    columns = gxe.ExpectTableColumnsToMatchSet(column_set=list(config.data.columns), exact_match=True)
    _add(suite, columns, "schema_matches")
    _add_null_rules(suite, config)
    _add_range_rules(suite, config)
    _add_event_time_rule(suite, config, context)
    _add_domain_rules(suite, config, classes)
    _add_batch_shape_rules(suite, config, context)
    return suite


def _add(suite: "ExpectationSuite", expectation: Any, check: str, severity: Severity = "error", **meta: Any) -> None:
    """Add ``expectation`` tagged with the check it belongs to, its severity and what :func:`_outcome` shows."""
    expectation.meta = {"check": check, "severity": severity, **meta}
    suite.add_expectation(expectation)


def _expect(suite: "ExpectationSuite", expectation: Any, **meta: Any) -> None:
    """Add an expectation of what the sample showed: it only ever warns."""
    _add(suite, expectation, EXPECTED_CHECK, "warn", **meta)


def _add_null_rules(suite: "ExpectationSuite", config: RetrainConfig) -> None:
    """Per column: the target and non-nullable columns hold no nulls, any other is not entirely null (a column
    lost upstream), and at most its expected null fraction (warns)."""
    import great_expectations.expectations as gxe

    data, rules = config.data, config.validation
    for name in data.columns:
        rule = rules.columns.get(name) or ColumnRule()
        if name == data.target:
            _add(suite, gxe.ExpectColumnValuesToNotBeNull(column=name), "required_values_present")
        elif not rule.nullable:
            _add(
                suite,
                gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=rule.mostly),
                "required_values_present",
                rule.severity,
                **_mostly_meta(rule.mostly),
            )
        else:
            not_all_null = gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
                column=name, min_value=0, strict_min=True
            )
            _add(suite, not_all_null, "required_values_present", rule.severity, expect="not entirely null")
        limit = rule.expected.max_null_fraction if rule.expected else None
        if limit is not None and rule.nullable and name != data.target:
            _expect(
                suite,
                gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column=name, min_value=1 - limit),
                expect=f"at most {limit:.1%} null, as in the sample",
            )


def _add_range_rules(suite: "ExpectationSuite", config: RetrainConfig) -> None:
    """Per column: values within the hard limits, floats also finite (inf is out of range even where no range
    is configured); then within the expected range the sample showed (warns)."""
    import great_expectations.expectations as gxe

    for name, kind in config.data.columns.items():
        rule = config.validation.columns.get(name) or ColumnRule()
        low, high = rule.hard_min, rule.hard_max
        bounds = f"within hard [{_number(low, '-inf')}, {_number(high, 'inf')}]"
        if kind == "float":
            bounds = "finite" if low is None and high is None else f"finite, {bounds}"
            low, high = -sys.float_info.max if low is None else low, sys.float_info.max if high is None else high
        if low is not None or high is not None:
            in_range = gxe.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high, mostly=rule.mostly)
            _add(suite, in_range, "values_in_range", rule.severity, expect=bounds, **_mostly_meta(rule.mostly))
        seen = rule.expected
        if seen is not None and (seen.min is not None or seen.max is not None):
            _expect(
                suite,
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=seen.min, max_value=seen.max),
                expect=f"within expected [{_number(seen.min, '-inf')}, {_number(seen.max, 'inf')}]",
            )


def _add_event_time_rule(suite: "ExpectationSuite", config: RetrainConfig, context: BatchContext) -> None:
    """``data.timestamp`` not after the landing time (plus clock skew) nor older than ``max_event_age_days``;
    left out when the landing time is unknown, since both bounds are relative to it. The bounds are epoch
    microseconds because :func:`_as_ge_sees` hands GE timestamps as numbers."""
    import great_expectations.expectations as gxe

    if config.data.timestamp is None or context.landed_at is None:
        return
    landed = context.landed_at.astimezone(dt.timezone.utc)
    age = config.validation.max_event_age_days
    oldest = _epoch_us(landed - dt.timedelta(days=age)) if age is not None else None
    bounds = f"not after landing {landed:%Y-%m-%d %H:%M} UTC + 1 h" + (
        f", not older than {_number(age, '')} days" if age is not None else ""
    )
    in_window = gxe.ExpectColumnValuesToBeBetween(
        column=config.data.timestamp, min_value=oldest, max_value=_epoch_us(landed + FUTURE_TOLERANCE)
    )
    _add(suite, in_window, "values_in_range", expect=bounds, epoch_us=True)


def _add_domain_rules(suite: "ExpectationSuite", config: RetrainConfig, classes: Optional[Sequence[Any]]) -> None:
    """Values in closed domains (open ones only warn), target values in ``target_classes``, and each of
    ``classes`` (default: ``target_classes``) at least ``min_class_fraction`` of the batch (warns)."""
    import great_expectations.expectations as gxe

    target, rules = config.data.target, config.validation
    classification = config.data.task == "classification"
    for name, rule in rules.columns.items():
        if rule.domain is None:
            continue
        if rule.closed:
            _add(
                suite,
                gxe.ExpectColumnValuesToBeInSet(column=name, value_set=rule.domain, mostly=rule.mostly),
                "categories_in_domain",
                rule.severity,
                expect=f"in the closed domain {rule.domain}",
                **_mostly_meta(rule.mostly),
            )
        else:
            _expect(
                suite,
                gxe.ExpectColumnValuesToBeInSet(column=name, value_set=rule.domain),
                expect=f"in the values seen so far {rule.domain}",
            )
    if classification and rules.target_classes is not None:
        _add(
            suite,
            gxe.ExpectColumnValuesToBeInSet(column=target, value_set=rules.target_classes),
            "categories_in_domain",
            expect=f"in target_classes {rules.target_classes}",
        )
    balance_classes = rules.target_classes if classes is None else classes
    if classification and rules.min_class_fraction > 0:
        fraction = rules.min_class_fraction
        for value in balance_classes or ():
            # "mostly" makes GE require the share of non-null rows equal to this class to reach the floor
            expectation = gxe.ExpectColumnValuesToBeInSet(column=target, value_set=[value], mostly=fraction)
            _expect(suite, expectation, target_class=value, expect=f"class {value!r} >= {fraction:.1%} of the batch")


def _add_batch_shape_rules(suite: "ExpectationSuite", config: RetrainConfig, context: BatchContext) -> None:
    """A target that can be learnt from (two classes, or a non-constant value), enough rows, unique ids, and
    no sudden growth against the median of the recent accepted batches (left out when there are none)."""
    import great_expectations.expectations as gxe

    data, rules = config.data, config.validation
    if data.task == "classification":
        _add(
            suite,
            gxe.ExpectColumnUniqueValueCountToBeBetween(column=data.target, min_value=2),
            "target_balanced",
            expect="at least 2 classes",
        )
    else:
        _add(
            suite,
            gxe.ExpectColumnStdevToBeBetween(column=data.target, min_value=0, strict_min=True),
            "target_balanced",
            expect="stdev > 0",
        )
    _add(
        suite,
        gxe.ExpectTableRowCountToBeBetween(min_value=rules.min_rows),
        "target_balanced",
        expect=f"at least {rules.min_rows} rows",
    )
    if data.id is not None:
        _add(
            suite, gxe.ExpectColumnValuesToBeUnique(column=data.id), "batch_integrity", expect="unique within the batch"
        )
    if context.recent_rows and rules.max_batch_growth is not None:
        median = statistics.median(context.recent_rows)
        bounds = (
            f"at most {_number(rules.max_batch_growth, '')} x {_number(median, '')}, the median rows of the "
            f"last {len(context.recent_rows)} accepted batches"
        )
        limit = math.floor(rules.max_batch_growth * median)
        _add(suite, gxe.ExpectTableRowCountToBeBetween(max_value=limit), "batch_integrity", expect=bounds)


def _mostly_meta(mostly: float) -> dict[str, Any]:
    return {"mostly": mostly} if mostly < 1 else {}


def validate_batch(
    frame: "pd.DataFrame", config: RetrainConfig, batch: str = "batch", context: BatchContext = BatchContext()
) -> list[RuleOutcome]:
    """Run the suite on ``frame`` once, then the leakage rule; outcomes ordered by check, then by column.

    Args:
        frame: The batch, as ``pyarrow.Table.to_pandas()`` gives it; it is not modified.
        config: The project config.
        batch: Label that starts every detail line, e.g. ``"raw_data v3"``.
        context: When the batch landed and the recent accepted batch sizes (without them, the timestamp and
            growth rules are left out).
    """
    target, rules = config.data.target, config.validation
    classes = rules.target_classes
    if classes is None and rules.min_class_fraction > 0 and target in frame.columns:
        classes = sorted({_plain(value) for value in frame[target].dropna().unique()}, key=str)
    suite = build_suite(config, classes, context)
    ge_batch = _batch_definition().get_batch(batch_parameters={"dataframe": _as_ge_sees(frame)})
    results = ge_batch.validate(suite, result_format=_RESULT_FORMAT).results
    missing = set(config.data.columns) - set(frame.columns)
    outcomes = [_outcome(result, batch, missing, lambda column: withheld_because(config, column)) for result in results]
    outcomes += type_outcomes(frame, config, batch) + leakage_outcomes(frame, config, batch)
    check_order = {name: index for index, name in enumerate(CHECKS)}
    column_order = {name: index for index, name in enumerate(config.data.columns)}
    return sorted(outcomes, key=lambda o: (check_order[o.check], -1 if o.column is None else column_order[o.column]))


def type_outcomes(frame: "pd.DataFrame", config: RetrainConfig, batch: str = "batch") -> list[RuleOutcome]:
    """One outcome per declared column in ``frame``: its Arrow type is of the family of the type the Delta
    table stores (:func:`delta.arrow_type`): any int (or float64, an int column with nulls) for int, any number
    for float, any string (or dictionary of strings) for category and string, any timestamp unit or zone for
    timestamp. An all-null column passes (that is ``required_values_present``'s business)."""
    import pandas as pd
    import pyarrow as pa

    present = [name for name in config.data.columns if name in frame.columns]
    schema = pa.Schema.from_pandas(frame[present].iloc[:0], preserve_index=False)  # dtypes only, no data
    outcomes = []
    for name in present:
        kind, series = config.data.columns[name], frame[name]
        if series.dtype == object:
            inferred = pd.api.types.infer_dtype(series, skipna=True)
            actual = pa.type_for_alias(_OBJECT_TYPES[inferred]) if inferred in _OBJECT_TYPES else None
            observed = inferred + " values"
        else:
            actual, observed = schema.field(name).type, str(series.dtype)
        if actual is not None and pa.types.is_dictionary(actual):
            actual = actual.value_type
        where = f"{batch}: column {name!r}: {TYPE_RULE} (declared {kind}, stored as {delta.arrow_type(kind)})"
        if actual is not None and _of_kind(actual, kind):
            outcomes.append(RuleOutcome("schema_matches", name, TYPE_RULE, True, 0, 0.0, [], f"{where} passed"))
        else:
            why = withheld_because(config, name)
            if why is not None:
                observed += f", sample withheld ({why})"
            elif series.dtype == object:
                observed += f", sample {[_plain(value) for value in series.dropna().head(3)]}"
            outcomes.append(
                RuleOutcome(
                    "schema_matches",
                    name,
                    TYPE_RULE,
                    False,
                    len(series),
                    100.0,
                    [observed],
                    f"{where} failed: observed {observed}",
                )
            )
    return outcomes


def _of_kind(actual: "pa.DataType", kind: "ColumnType") -> bool:
    """Whether values of Arrow type ``actual`` belong in a column declared ``kind``."""
    import pyarrow as pa

    if pa.types.is_null(actual) or actual == delta.arrow_type(kind):
        return True
    if kind == "int":
        return pa.types.is_integer(actual) or actual == pa.float64()
    if kind == "float":
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if kind in ("category", "string"):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    return kind == "timestamp" and pa.types.is_timestamp(actual)


def leakage_outcomes(frame: "pd.DataFrame", config: RetrainConfig, batch: str = "batch") -> list[RuleOutcome]:
    """One outcome per feature column: it fails when the feature alone gives the target away.

    - its values: |Pearson| (and, for regression, |Spearman|) correlation >= :data:`MAX_CORRELATION`; for
      classification a one-to-one mapping onto the classes, or a ROC AUC >= ``validation.max_feature_auc``
      between every pair of classes (a noisy copy of the label);
    - its missingness: a column filled in for one outcome only. Its null indicator's ROC AUC for some class
      against the rest (regression: of the target between rows with and without the value) reaches
      ``validation.max_missingness_auc``.

    A real feature can separate one class perfectly (iris' setosa); it cannot separate every pair, so the
    value rule takes the worst pair. Classes (and null/non-null groups) with fewer than 20 rows are left out,
    where a perfect separation can be chance; AUCs are measured on a seeded sample of at most 100,000 rows.
    Plain pandas: GE has no expectation for this. No outcomes when the target is missing, has fewer than
    two values, or fewer than 30 rows are labelled."""
    data = config.data
    target = _leakage_target(frame, config)
    if target is None:
        return []
    where = f"{LEAKAGE_RULE} (|corr| with {data.target!r} < {MAX_CORRELATION}"
    where += ", not one-to-one with its classes" if target.classification else ""
    where += ", no value or null indicator that separates it)"
    outcomes = []
    for name, kind in data.features.items():
        if name not in frame.columns:
            continue
        found = _leak_signs(target.rows(frame[name]), kind, target, config.validation)
        detail = f"{batch}: column {name!r}: {where}"
        if found:
            detail = f"{detail} failed: {'; '.join(found)}"
            outcomes.append(
                RuleOutcome("no_target_leakage", name, LEAKAGE_RULE, False, target.count, 100.0, found, detail)
            )
        else:
            outcomes.append(RuleOutcome("no_target_leakage", name, LEAKAGE_RULE, True, 0, 0.0, [], f"{detail} passed"))
    return outcomes


_NUMERIC_KINDS = ("int", "float", "bool")  # column types the leakage rules read as float64


@dataclass(frozen=True)
class _LeakageTarget:
    """The labelled rows' target in the forms the leakage rules compare every feature with, computed once per
    batch: class codes, the AUC sample's rows, and the target as floats when numeric (else ``y`` is None)."""

    labels: "pd.Series"  # which rows of the batch are labelled
    labelled: bool  # every row is: then no row selection (a copy of each column) is needed
    count: int  # labelled rows
    classification: bool
    classes: "np.ndarray"  # factorized target, one code per labelled row
    levels: int  # distinct target values
    sampled: Union[slice, "np.ndarray"]  # see _leakage_sample
    sample_classes: "np.ndarray"
    sample_target: "np.ndarray"
    y: Optional["np.ndarray"]

    def rows(self, series: "pd.Series") -> "pd.Series":
        """The labelled rows of a batch column."""
        return series if self.labelled else series[self.labels]


def _leakage_target(frame: "pd.DataFrame", config: RetrainConfig) -> Optional[_LeakageTarget]:
    """The target as the leakage rules need it, or ``None`` when it cannot be judged: missing, fewer than two
    values, or fewer than ``_MIN_ROWS_FOR_LEAKAGE`` labelled rows (a perfect fit can be chance there)."""
    import numpy as np
    import pandas as pd

    data = config.data
    if data.target not in frame.columns:
        return None
    labels = frame[data.target].notna()
    labelled = labels.all()
    target = frame[data.target] if labelled else frame[data.target][labels]
    classes, levels = pd.factorize(target)
    if len(target) < _MIN_ROWS_FOR_LEAKAGE or len(levels) < 2:
        return None
    sampled = _leakage_sample(len(target), config.model.seed)
    numeric = data.columns[data.target] in _NUMERIC_KINDS
    return _LeakageTarget(
        labels=labels,
        labelled=labelled,
        count=len(target),
        classification=data.task == "classification",
        classes=classes,
        levels=len(levels),
        sampled=sampled,
        sample_classes=classes[sampled],
        sample_target=target.to_numpy()[sampled],
        y=target.astype("float64").to_numpy(na_value=np.nan) if numeric else None,
    )


def _leak_signs(feature: "pd.Series", kind: ColumnType, target: _LeakageTarget, rules: ValidationConfig) -> list[str]:
    """How one feature (its labelled rows) gives the target away, one phrase per sign; empty when it does not.
    The pairwise AUC is only measured when nothing else was found, as it is the costliest sign."""
    import numpy as np

    x = feature.astype("float64").to_numpy(na_value=np.nan) if kind in _NUMERIC_KINDS else None
    found = []
    if x is not None and target.y is not None:
        correlation = _correlation(x, target.y, target.classification)
        if correlation is not None and correlation >= MAX_CORRELATION:
            found.append(f"|corr| {correlation:.4f}")
    if target.classification:
        pairs = _one_to_one_pairs(feature, target)
        if pairs is not None:
            found.append(f"its {pairs} values map one-to-one onto the classes")
        if x is not None and not found:
            worst = _worst_pair_auc(x[target.sampled], target.sample_classes, target.levels)
            if worst is not None and worst >= rules.max_feature_auc:
                found.append(f"ROC AUC {worst:.4f} between every pair of classes (>= {rules.max_feature_auc})")
    score = _missingness_auc(feature, target)
    if score is not None and score >= rules.max_missingness_auc:
        found.append(f"its null indicator alone has ROC AUC {score:.4f} (>= {rules.max_missingness_auc})")
    return found


def _correlation(x: "np.ndarray", y: "np.ndarray", classification: bool) -> Optional[float]:
    """|Pearson| of feature and target over the rows where both are finite (inf and nulls are other rules'
    business), for regression the larger of it and |Spearman|; ``None`` with too few such rows to judge."""
    import numpy as np
    import pandas as pd

    both = np.isfinite(x) & np.isfinite(y)
    if both.sum() < _MIN_ROWS_FOR_LEAKAGE:
        return None
    with np.errstate(all="ignore"):  # values near the float limit overflow: no correlation then
        correlation = abs(float(np.corrcoef(x[both], y[both])[0, 1]))
        if not classification:
            ranked = pd.Series(x[both]).rank().corr(pd.Series(y[both]).rank())
            correlation = max(correlation, abs(float(ranked)))
    return correlation


def _one_to_one_pairs(feature: "pd.Series", target: _LeakageTarget) -> Optional[int]:
    """The number of classes when each value of the feature (a null counts as a value of its own) goes with
    exactly one class and each class with one value, else ``None``: such a feature is a renamed label."""
    import numpy as np
    import pandas as pd

    codes, values = pd.factorize(feature)
    if len(values) + int((codes < 0).any()) != target.levels:
        return None
    pairs = int(np.count_nonzero(np.bincount((codes.astype("int64") + 1) * target.levels + target.classes)))
    return pairs if pairs == target.levels else None


def _missingness_auc(feature: "pd.Series", target: _LeakageTarget) -> Optional[float]:
    """ROC AUC of the feature's null indicator: for classification the best class against the rest, for
    regression of the target between rows with and without a value; ``None`` when nothing or everything is
    null (then the indicator says nothing) or the groups are too small."""
    missing = feature.isna().to_numpy()[target.sampled]
    if not missing.any() or missing.all():
        return None
    if target.classification:
        return _indicator_auc(missing, target.sample_classes, target.levels)
    return _auc(target.sample_target.astype("float64"), missing)


_LEAKAGE_SAMPLE_ROWS = 100_000
_MIN_GROUP_ROWS = 20  # a class (or null group) smaller than this can be separated by chance


def _leakage_sample(rows: int, seed: int) -> Union[slice, "np.ndarray"]:
    """Row positions the AUC rules look at: all of them (a slice, so indexing copies nothing), or a seeded
    sample of :data:`_LEAKAGE_SAMPLE_ROWS`."""
    import numpy as np

    if rows <= _LEAKAGE_SAMPLE_ROWS:
        return slice(None)
    return np.sort(np.random.default_rng(seed).choice(rows, _LEAKAGE_SAMPLE_ROWS, replace=False))


def _auc(scores: "np.ndarray", positive: "np.ndarray") -> Optional[float]:
    """ROC AUC of ``scores`` for ``positive`` from average ranks (ties count half), folded to >= 0.5 since a
    leak can run either way; ``None`` when a side has fewer than :data:`_MIN_GROUP_ROWS` rows."""
    import numpy as np
    import pandas as pd

    known = ~np.isnan(scores)
    scores, positive = scores[known], positive[known]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if min(n_pos, n_neg) < _MIN_GROUP_ROWS:
        return None
    ranks = pd.Series(scores).rank().to_numpy()
    area = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return max(area, 1 - area)


def _worst_pair_auc(x: "np.ndarray", classes: "np.ndarray", count: int) -> Optional[float]:
    """The lowest AUC of ``x`` over the pairs of classes large enough to judge (``None``: no such pair)."""
    import itertools

    judged = []
    for first, second in itertools.combinations(range(count), 2):
        pair = (classes == first) | (classes == second)
        score = _auc(x[pair], classes[pair] == first)
        if score is not None:
            judged.append(score)
    return min(judged) if judged else None


def _indicator_auc(missing: "np.ndarray", classes: "np.ndarray", count: int) -> Optional[float]:
    """The highest AUC of the null indicator for one class against the rest."""
    scores = missing.astype("float64")
    found = [_auc(scores, classes == level) for level in range(count)]
    judged = [score for score in found if score is not None]
    return max(judged) if judged else None


def check_results(outcomes: list[RuleOutcome]) -> dict[str, CheckVerdict]:
    """A :class:`CheckVerdict` for every name in :data:`CHECKS`; the message joins the failing rules'
    details. A check fails with ``error`` severity when any failing rule of it has that severity."""
    summary = {}
    for check in CHECKS:
        mine = [outcome for outcome in outcomes if outcome.check == check]
        failed = [outcome for outcome in mine if not outcome.passed]
        if failed:
            severity: Severity = "error" if any(o.severity == "error" for o in failed) else "warn"
            summary[check] = CheckVerdict(False, "; ".join(o.detail for o in failed), severity)
        elif mine:
            summary[check] = CheckVerdict(True, f"ok: {len(mine)} rule{'s' if len(mine) != 1 else ''} passed")
        else:
            summary[check] = CheckVerdict(True, "ok: no rules configured")
    return summary


@lru_cache(maxsize=None)
def _batch_definition() -> "BatchDefinition":
    """A whole-dataframe batch definition on the process's one ephemeral GE context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # GE hands tqdm an explicit disable=, so TQDM_DISABLE has no effect: progress bars go off in the config.
    # No docs site either: GE's default ephemeral config logs a temporary folder for one.
    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(), progress_bars=ProgressBarsConfig(globally=False)
    )
    context = gx.get_context(mode="ephemeral", project_config=project)
    # GE fingerprints every frame under HASH_THRESHOLD bytes (hashing each row: ~0.6 s per 1M) only to label the
    # batch, which we never read. A module constant of GE's, not an option: an upgrade that drops it breaks
    # test_validation's fingerprint test.
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0
    asset = context.data_sources.add_pandas("retrain_assets").add_dataframe_asset("raw_data")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def _epoch_us(moment: dt.datetime) -> float:
    """Microseconds since the Unix epoch (exact in a float until the year 2255)."""
    return moment.timestamp() * 1_000_000


def _as_ge_sees(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame``, or a copy with timestamps as float microseconds since the epoch (null: NaN) and text
    (categoricals and object columns holding only strings) as Arrow-backed strings.

    GE 1.24 compares datetimes one Python object at a time (about 5 s per million rows) but numbers as arrays,
    and it cannot handle a categorical dtype. It also copies the whole frame, every column, for each column
    rule (dropping the rule's nulls): Arrow strings copy as buffers, object columns one pointer and reference
    count at a time (0.55 s of 1.45 s for a 500k-row batch). Samples of timestamp rules are turned back into
    dates in :func:`_outcome`.
    """
    import pandas as pd

    converted = {}
    for name, series in frame.items():
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            naive = series.dt.tz_convert(None) if isinstance(series.dtype, pd.DatetimeTZDtype) else series
            converted[name] = (naive - pd.Timestamp(0)) / pd.Timedelta(microseconds=1)
        elif isinstance(series.dtype, pd.CategoricalDtype) or (
            series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) == "string"
        ):
            converted[name] = series.astype("string[pyarrow]")  # strings only: nothing else is made text
    return frame.assign(**converted) if converted else frame


def withheld_because(config: RetrainConfig, column: Optional[str]) -> Optional[str]:
    """Why failing values of ``column`` stay out of outcomes, or ``None`` when they may be shown. Samples end
    up in webhooks, ``alerts.jsonl``, Dagster events and the ``validation_log``: ids never (unless
    ``validation.show_id_samples``), no value at all with ``validation.redact_samples``."""
    if config.validation.redact_samples:
        return "validation.redact_samples"
    if column is not None and column == config.data.id and not config.validation.show_id_samples:
        return "data.id values; validation.show_id_samples shows them"
    return None


def _outcome(
    result: "ExpectationValidationResult",
    batch: str,
    missing: set[str],
    withheld: Callable[[Optional[str]], Optional[str]] = lambda column: None,
) -> RuleOutcome:
    """Turn one GE result into a :class:`RuleOutcome` with a one-line detail; ``withheld`` says why a
    column's failing values are not to be shown (see :func:`withheld_because`), ``None`` to show them."""
    config = result.expectation_config
    if config is None:
        raise ValueError(f"{batch}: a Great Expectations result without its expectation")
    meta, rule, column = config.meta, config.type, config.kwargs.get("column")
    where = f"{batch}: " + (f"column {column!r}" if column is not None else "table")
    expect = meta.get("expect", "") + (f", mostly {meta['mostly']:.2%}" if "mostly" in meta else "")
    what = f"{where}: {rule} ({expect})" if expect else f"{where}: {rule}"
    severity = meta.get("severity", "error")
    info = result.result or {}
    error = _error(result.exception_info)
    if error is not None:
        reason = f"column {column!r} is missing from the batch" if column in missing else error
        detail = f"{what} could not run: {reason}"
        return RuleOutcome(meta["check"], column, rule, False, 1, 100.0, [], detail, severity)
    passed = bool(result.success)
    if "unexpected_count" in info and "target_class" not in meta:
        count, percent = int(info["unexpected_count"]), float(info["unexpected_percent"] or 0.0)
        sample = [_plain(value) for value in info["partial_unexpected_list"][:5]]
        if meta.get("epoch_us"):
            sample = [None if value is None else _from_epoch_us(value) for value in sample]
        scope = "non-null values" if "missing_count" in info else "rows"
        judged = info["element_count"] - info.get("missing_count", 0)
        why = withheld(column)
        shown = f"sample withheld ({why})" if why is not None else f"sample {sample}"
        sample = [] if why is not None else sample
        failure = f"failed for {count} of {judged} {scope} ({percent:.1f}%), {shown}"
    else:
        count, percent = int(not passed), 0.0 if passed else 100.0
        if "target_class" in meta:
            judged = info["element_count"] - info["missing_count"]
            share = 100.0 - float(info["unexpected_percent"] or 0.0)
            sample = [meta["target_class"]]
            failure = f"failed: the class makes up {share:.1f}% of {judged} labelled rows"
        elif "details" in info:
            mismatched = info["details"]["mismatched"]
            lost, extra = mismatched.get("missing", []), mismatched.get("unexpected", [])
            sample = (lost + extra)[:5]
            failure = f"failed: missing columns {lost}, unexpected columns {extra}"
        else:
            sample = [_plain(info.get("observed_value"))]
            failure = f"failed: observed {sample[0]}"
    if passed:
        return RuleOutcome(meta["check"], column, rule, True, count, percent, [], f"{what} passed", severity)
    return RuleOutcome(meta["check"], column, rule, False, count, percent, sample, f"{what} {failure}", severity)


def _from_epoch_us(value: float) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value)).isoformat(sep=" ")


def _error(exception_info: dict) -> Optional[str]:
    """The message of an exception GE caught while validating, if any (its info is flat or keyed by metric)."""
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        if info.get("raised_exception"):
            return str(info.get("exception_message"))
    return None


def _plain(value: Any) -> Any:
    """A JSON-serialisable version of a cell value: numpy scalars as Python, nulls as None, others as str."""
    import numpy as np
    import pandas as pd

    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _number(value: Optional[float], unbounded: str) -> str:
    """A bound as it reads best: ``5`` rather than ``5.0``, the unbounded side as ``-inf``/``inf``."""
    if value is None:
        return unbounded
    return str(int(value)) if float(value).is_integer() else str(value)
