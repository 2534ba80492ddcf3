"""Dagster resources: the project (``retrain.yaml`` and the storage and MLflow store it names), and where
run artifacts go: the local filesystem, or S3 through dagster-aws when the lake is on S3."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from retrain_assets.core.config import RetrainConfig, load_config

if TYPE_CHECKING:
    from retrain_assets.core.registry import Registry


class RetrainProject(ConfigurableResource):
    """The project the assets work on; the config file is read when a step runs, not at import."""

    config_path: Optional[str] = Field(
        default=None, description="Path of retrain.yaml; default $RETRAIN_CONFIG, else ./retrain.yaml."
    )

    def load(self) -> RetrainConfig:
        return load_config(self.config_path)

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["RetrainProject"]:
        """A run's steps hold the project lock, so a run the daemon launches and a cron `retrain tick` never
        write at once: a step waits for the other process (up to ``runs.max_runtime_minutes``). In a run
        that `retrain` executes in process it already holds the lock, which is re-entrant. Sensors and
        schedules (no run) only read, and never wait."""
        from retrain_assets.core.locking import project_lock

        if context.run_id is None:
            yield self.create_resource(context)
            return
        config = self.load()
        run = f"dagster run {context.run_id[:8]}"
        with project_lock(config.dagster_home, wait_seconds=config.runs.max_runtime_seconds, command=run):
            yield self.create_resource(context)

    def registry(self, config: RetrainConfig) -> "Registry":
        from retrain_assets.core.registry import Registry

        return Registry(config)


def artifact_io_manager(config: Optional[RetrainConfig]):
    """Where values passed between steps are kept, as JSON (see :mod:`retrain_assets.defs.io_managers`): under
    the instance's storage locally (also for in-process runs, so a run interrupted by a crash can be
    re-executed from the failed step); with ``storage.lake_uri: s3://bucket/prefix``, under ``prefix/dagster``
    through dagster-aws's S3 resource. Only the region and the endpoint are passed to it, from the standard
    AWS variables; credentials come from boto3's default chain, as for Delta, so temporary credentials
    (``AWS_SESSION_TOKEN``), profiles and SSO work, and no secret is part of the resource's config."""
    if config is None:
        return None
    if not config.lake_uri.startswith("s3://"):
        from retrain_assets.defs.io_managers import LocalJsonIOManager

        return LocalJsonIOManager(base_dir=str(config.dagster_home / "storage"))
    import os

    from dagster import EnvVar
    from dagster_aws.s3 import S3Resource

    from retrain_assets.defs.s3_io_manager import S3JsonIOManager

    bucket, _, prefix = config.lake_uri.removeprefix("s3://").partition("/")
    settings: dict[str, Any] = {  # S3Resource's fields differ in type; these two are strings
        field: EnvVar(variable)
        for field, variable in (("region_name", "AWS_REGION"), ("endpoint_url", "AWS_ENDPOINT_URL"))
        if os.environ.get(variable)
    }
    return S3JsonIOManager(
        s3=S3Resource(**settings), s3_bucket=bucket, s3_prefix=f"{prefix}/dagster".strip("/")
    )
