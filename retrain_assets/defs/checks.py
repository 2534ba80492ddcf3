"""Asset check specs. Data validation and the metric floor are blocking: they stop the run. Drift, champion
performance, the comparison with the champion and freshness warn: they inform triggers and decisions."""

from dagster import AssetCheckSpec

from retrain_assets.core.names import COMPARISON_CHECK, DRIFT_CHECK, FRESHNESS_CHECK, MINIMUM_CHECK, PERFORMANCE_CHECK
from retrain_assets.core.validation import CHECKS, EXPECTED_CHECK, HARD_CHECKS

# Blocking: a batch that breaks a hard rule is rejected, and a run that accepted no batch stops (a run that
# accepted others goes on, the check failing with WARN severity; see batches.ValidationRun.check_results).
VALIDATION_CHECKS = [
    AssetCheckSpec(name, asset="validated_features", blocking=True, description=CHECKS[name]) for name in HARD_CHECKS
] + [AssetCheckSpec(EXPECTED_CHECK, asset="validated_features", description=CHECKS[EXPECTED_CHECK])]
MONITORING_CHECKS = [
    AssetCheckSpec(
        DRIFT_CHECK,
        asset="validated_features",
        description="PSI/KS of the accepted batches vs the champion's training data",
    ),
    AssetCheckSpec(
        PERFORMANCE_CHECK, asset="validated_features", description="the champion's score on the accepted batches"
    ),
]
EVALUATION_CHECKS = [
    AssetCheckSpec(
        MINIMUM_CHECK, asset="evaluation_report", blocking=True, description="candidate meets promotion.minimum"
    ),
    AssetCheckSpec(
        COMPARISON_CHECK,
        asset="evaluation_report",
        description="candidate beats the champion by promotion.margin on the same holdout",
    ),
]
FRESHNESS_CHECKS = [
    AssetCheckSpec(
        FRESHNESS_CHECK, asset="prod_model", description="the champion is younger than promotion.max_age_days"
    ),
]
