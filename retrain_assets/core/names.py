"""Every name that travels between modules, processes or tools, in one place: Dagster run tags, asset
check names, and the MLflow aliases and model-version tag keys. A name here is part of the stored record
(runs, check history, the registry), so renaming one orphans what was written under the old name."""

# Dagster run tags: how a run started. What a run found and decided travels in asset outputs and events.
# what started the run: new_version, schedule, manual, backfill, live_performance (a retrain), live_labels (a day)
TRIGGER_TAG = "retrain/trigger"
TRIGGER_REASON_TAG = "retrain/trigger_reason"  # why, when the starter says more than its kind (live_performance)
DELTA_VERSION_TAG = "retrain/delta_version"  # the raw_data version a sensor run is for
BACKFILL_TAG = "retrain/backfill"  # one id shared by the runs of one `retrain backfill`
# Runs this package executes in its own process carry this tag: a tick that holds the project lock and finds
# one of them unfinished knows its process died (see ticking.recover_interrupted).
LAUNCHER_TAG = "retrain/launcher"
RETRY_TAG = "retrain/retry_of"
INTERRUPTED_TAG = "retrain/interrupted"
# Dagster's run monitoring (when the instance enables it) fails a run older than this many seconds.
MAX_RUNTIME_TAG = "dagster/max_runtime"

# Asset checks beyond the validation suite's own (validation.CHECKS).
DRIFT_CHECK = "feature_drift"
PERFORMANCE_CHECK = "champion_performance"
MINIMUM_CHECK = "candidate_meets_minimum"
COMPARISON_CHECK = "candidate_beats_champion"
FRESHNESS_CHECK = "champion_is_fresh"

# MLflow registry: aliases and the tags of a model version.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
DECISION_TAG = "decision"
DECISION_REASON_TAG = "decision_reason"
LIVE_CHECK_TAG = "live_check"  # promotion.live_check on a holdout winner: awaiting, passed or failed
# Copied from the model version into prod_model's metadata: what a person asks of a champion.
RECORD_TAGS = ("delta_version", "data_min", "data_max", "rows", "params_hash", "code_version", "trigger_reason")
