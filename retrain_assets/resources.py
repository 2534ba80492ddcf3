"""Dagster resources: the project (``retrain.yaml`` and the storage and MLflow store it names), and where
run artifacts go: the local filesystem, or S3 through dagster-aws when the lake is on S3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

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


def artifact_io_manager(config: Optional[RetrainConfig]):
    """Dagster's filesystem IO manager under the instance's storage locally (also for in-process runs, so
    a run interrupted by a crash can be re-executed from the failed step); with ``storage.lake_uri:
    s3://bucket/prefix``, dagster-aws's S3 pickle IO manager under ``prefix/dagster``. Credentials, region and
    endpoint come from the standard AWS environment variables, read as ``EnvVar`` when set, never from files."""
    if config is None:
        return None
    if not config.lake_uri.startswith("s3://"):
        from dagster import FilesystemIOManager

        return FilesystemIOManager(base_dir=str(config.dagster_home / "storage"))
    import os

    from dagster import EnvVar
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    bucket, _, prefix = config.lake_uri.removeprefix("s3://").partition("/")
    settings: dict[str, Any] = {  # S3Resource's fields differ in type; these four are strings
        field: EnvVar(variable)
        for field, variable in (
            ("region_name", "AWS_REGION"),
            ("endpoint_url", "AWS_ENDPOINT_URL"),
            ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
            ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
        )
        if os.environ.get(variable)
    }
    return S3PickleIOManager(
        s3_resource=S3Resource(**settings), s3_bucket=bucket, s3_prefix=f"{prefix}/dagster".strip("/")
    )
