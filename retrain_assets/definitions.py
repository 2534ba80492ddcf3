"""The code location: assets, checks, the retraining job and resources, assembled in one place."""

from typing import Optional

from dagster import AssetSelection, Definitions, define_asset_job

from retrain_assets.assets import LINEAGE
from retrain_assets.resources import RetrainProject

RETRAIN_JOB = "retrain"

retrain_job = define_asset_job(
    RETRAIN_JOB,
    selection=AssetSelection.assets(*LINEAGE),
    description="Validate new raw_data batches, train a candidate, compare it with the champion, promote if better.",
)


def build_defs(config_path: Optional[str] = None) -> Definitions:
    """Definitions for the project at ``config_path`` (default: ``$RETRAIN_CONFIG``, else ``./retrain.yaml``)."""
    return Definitions(
        assets=LINEAGE,
        jobs=[retrain_job],
        resources={"project": RetrainProject(config_path=config_path)},
    )


defs = build_defs()
