"""The code location Dagster loads (``workspace.yaml``, ``[tool.dagster]``): the project's definitions, built
at import from ``$RETRAIN_CONFIG`` or ``./retrain.yaml`` by :func:`~retrain_assets.defs.build.build_defs`. The
app does not import this module: it builds the definitions once per command from the config it has parsed."""

from retrain_assets.defs.build import build_defs

__all__ = ["build_defs", "defs"]

defs = build_defs()
