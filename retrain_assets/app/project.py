"""The project as one command loads it: ``retrain.yaml`` parsed once and the Dagster definitions built once.

A command (or one `retrain tick`) loads it at its start and passes it down; nothing below reads the file
again. The one exception is a re-executed run, which Dagster reconstructs from the path
(:func:`execution.retrain_job_for`), as a new process would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from retrain_assets.core.config import RetrainConfig, load_config

if TYPE_CHECKING:
    from dagster import Definitions


@dataclass(frozen=True)
class LoadedProject:
    """``defs`` are for running jobs in this process, whose command holds the project lock: their project
    resource does not take it again (see :class:`~retrain_assets.defs.resources.RetrainProject`)."""

    path: Path
    config: RetrainConfig
    defs: "Definitions"


ProjectSource = Union[LoadedProject, Path, str]


def load_project(config_path: Path | str, config: Optional[RetrainConfig] = None) -> LoadedProject:
    """Parse ``config_path`` (unless the caller has: ``config``) and build the definitions from that parse."""
    from retrain_assets.defs.build import build_defs

    path = Path(config_path)
    config = config if config is not None else load_config(path)
    return LoadedProject(path, config, build_defs(str(path), config, hold_project_lock=False))


def as_loaded(source: ProjectSource, config: Optional[RetrainConfig] = None) -> LoadedProject:
    """What the app's entry points take: a loaded project, or a config path (a script, a test) loaded here
    once, with ``config`` as its parse when the caller has one."""
    return source if isinstance(source, LoadedProject) else load_project(source, config)
