"""The project's Dagster definitions: assets, checks, jobs, sensors, schedule and resources, assembled in one
place. ``retrain_assets.definitions`` builds them at import for Dagster's tools; the app builds them here,
once per command, from the config it has parsed."""

from typing import Optional

from dagster import Definitions

from retrain_assets.core.config import RetrainConfig, load_config, resolve_config_path
from retrain_assets.defs.assets import LINEAGE, candidate_model, validated_features
from retrain_assets.defs.assets.history import build_history_assets, history_partitions
from retrain_assets.defs.assets.live import build_live_assets, live_partitions  # live performance (issue 13)
from retrain_assets.defs.executors import executor_from_env
from retrain_assets.defs.jobs import history_jobs, live_check_job, live_job, max_runtime_tag, retrain_job
from retrain_assets.defs.resources import RetrainProject, artifact_io_manager
from retrain_assets.defs.schedules import retrain_schedule
from retrain_assets.defs.sensors import build_live_sensors, build_sensors


def _project_config(config_path: Optional[str]) -> Optional[RetrainConfig]:
    """The project's config when its file exists (a broken one raises); ``None`` before `retrain init`."""
    if not resolve_config_path(config_path).is_file():
        return None
    return load_config(config_path)


def build_defs(
    config_path: Optional[str] = None, config: Optional[RetrainConfig] = None, hold_project_lock: bool = True
) -> Definitions:
    """Definitions for the project at ``config_path`` (default: ``$RETRAIN_CONFIG``, else ``./retrain.yaml``);
    ``config`` is that file already parsed, by a command that loads it once and passes it down. A process
    that holds the project lock and executes runs itself passes ``hold_project_lock=False`` (see
    :class:`RetrainProject`).

    The config shapes six things at load time: the schedule's cron, the sensors' interval, the history
    partitions, the days of ``live_performance``, and two code versions, so that Dagster marks an asset stale
    exactly when what builds it changed.
    ``validated_features``' is the hash of the validation rules; ``candidate_model``'s the hash of the
    project's model code, params and the platform release (:func:`training.model_code`).
    """
    from retrain_assets.core.config import HistoryConfig, TriggersConfig

    if config is None:
        config = _project_config(config_path)
    assets = _versioned(list(LINEAGE), config) if config is not None else list(LINEAGE)
    triggers = config.triggers if config is not None else TriggersConfig()
    cron = triggers.schedule
    partitions = history_partitions(config.history if config is not None else HistoryConfig())
    days = live_partitions(config)  # live performance (issue 13): one partition per day served
    return Definitions(
        assets=assets + build_history_assets(partitions) + build_live_assets(days),
        jobs=[retrain_job, live_check_job, *history_jobs(partitions), live_job(days)],
        sensors=build_sensors(triggers.sensor_interval_seconds) + build_live_sensors(triggers.sensor_interval_seconds),
        schedules=[retrain_schedule(cron, max_runtime_tag(config) if config else {})] if cron else [],
        resources=_resources(config, config_path, hold_project_lock),
        executor=executor_from_env(),
    )


def _versioned(assets: list, config: RetrainConfig) -> list:
    """The lineage with the code versions of ``validated_features`` and ``candidate_model`` from the config."""
    from retrain_assets.core.training import model_code
    from retrain_assets.core.usercode import UserCodeError
    from retrain_assets.core.validation import rules_hash

    try:
        code = f"code-{model_code(config).code_hash}"
    except UserCodeError:  # the definitions still load; the run fails in candidate_model, naming the key
        code = "code-unreadable"
    versions = {validated_features: f"rules-{rules_hash(config)}", candidate_model: code}
    return [
        asset.map_asset_specs(lambda spec, v=versions[asset]: spec.replace_attributes(code_version=v))
        if asset in versions
        else asset
        for asset in assets
    ]


def _resources(config: Optional[RetrainConfig], config_path: Optional[str], hold_project_lock: bool) -> dict:
    resources = {"project": RetrainProject(config_path=config_path, hold_project_lock=hold_project_lock)}
    io_manager = artifact_io_manager(config)
    if io_manager is not None:
        resources["io_manager"] = io_manager
    return resources
