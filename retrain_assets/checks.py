"""Asset checks. The data-validation checks are blocking: a failing batch stops the run before training."""

from dagster import AssetCheckSpec

from retrain_assets.validation import CHECKS

VALIDATION_CHECKS = [
    AssetCheckSpec(name, asset="validated_features", blocking=True, description=description)
    for name, description in CHECKS.items()
]
