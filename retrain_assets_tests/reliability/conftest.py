"""The reliability suite: bad input, crashes, concurrency, restarts and secrets. Every test here is marked
``reliability`` (``pytest -m reliability`` runs only them); they run in CI with the rest."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
