"""Dagster resources: the project (``retrain.yaml`` and the storage and MLflow store it names), and where
run artifacts go: the local filesystem, or S3 through dagster-aws when the lake is on S3."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from retrain_assets.core.config import RetrainConfig, load_config

if TYPE_CHECKING:
    from retrain_assets.core.registry import Registry


class RetrainProject(ConfigurableResource):
    """The project the assets work on. The config file is read on first use, not at import, and once per
    resource instance: Dagster makes one per run (per step process with the multiprocess executor) and per
    sensor evaluation, so a run sees one version of the file and a long-lived code server a fresh one.

    A run's steps hold the project lock, so a run the daemon launches and a cron `retrain tick` never write
    at once. The lock is not re-entrant, so each run has it taken in one place: here, by default, for runs
    launched elsewhere (the daemon, the UI, a bare ``execute_in_process``); by the `retrain` command or tick
    that executes a run in process, which builds its definitions with ``hold_project_lock=False``
    (:func:`retrain_assets.app.project.load_project`). The flag is set when the definitions are built, not
    in a run's config: Dagster replaces a resource's constructed values with run config as a whole, and a
    run re-executed from the UI inherits its parent's run config, so it would run without the lock."""

    config_path: Optional[str] = Field(
        default=None, description="Path of retrain.yaml; default $RETRAIN_CONFIG, else ./retrain.yaml."
    )
    hold_project_lock: bool = Field(
        default=True,
        description="Take the project lock for the run's steps; false only when the process executing the run "
        "holds it already (`retrain` commands and ticks).",
    )
    _config: Optional[RetrainConfig] = PrivateAttr(default=None)

    def load(self) -> RetrainConfig:
        """The parsed config file: read on the first call, the same object on every later one."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["RetrainProject"]:
        """Take the project lock for a run (see the class docstring), waiting for another process up to
        ``runs.max_runtime_minutes``. Sensors and schedules (no run) only read, and never wait."""
        from retrain_assets.core.locking import project_lock

        if context.run_id is None or not self.hold_project_lock:
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
    return S3JsonIOManager(s3=S3Resource(**settings), s3_bucket=bucket, s3_prefix=f"{prefix}/dagster".strip("/"))
