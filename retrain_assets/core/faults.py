"""Named crash points, so the reliability suite can kill a real process at an exact step.

With ``RETRAIN_CRASH_AT=<point>`` in its environment, a process sends itself SIGKILL when it reaches that
point: no cleanup, no ``finally``, as when a machine dies. Unset (always, outside the suite), a point costs
one environment lookup. The points sit between the writes whose order the guarantees depend on.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RETRAIN_CRASH_AT"
POINTS = {
    "features_appended": "a batch is in validated_features, its validation_log entry not yet written",
    "model_logging": "inside the candidate's MLflow run, after the model is logged, before it is registered",
    "alias_promotion": "previous_champion moved, champion not yet",
    "ledger_committed": "a prediction journal segment is in the predictions table, its file not yet removed",
}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$RETRAIN_CRASH_AT`` names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
