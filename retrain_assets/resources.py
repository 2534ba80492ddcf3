"""Dagster resources: the project (``retrain.yaml`` and the storage and MLflow store it names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from dagster import ConfigurableResource
from pydantic import Field

from retrain_assets.config import RetrainConfig, load_config

if TYPE_CHECKING:
    from retrain_assets.registry import Registry


class RetrainProject(ConfigurableResource):
    """The project the assets work on; the config file is read when a step runs, not at import."""

    config_path: Optional[str] = Field(
        default=None, description="Path of retrain.yaml; default $RETRAIN_CONFIG, else ./retrain.yaml."
    )

    def load(self) -> RetrainConfig:
        return load_config(self.config_path)

    def registry(self, config: RetrainConfig) -> "Registry":
        from retrain_assets.registry import Registry

        return Registry(config)
