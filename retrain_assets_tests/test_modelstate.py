"""Where the model's code stands against the registry: the rule `retrain status --check` and the tick share."""

from retrain_assets.core.modelstate import code_state
from retrain_assets.core.training import ModelCode

CURRENT = ModelCode("code-new", "source-new", "params-new", (("train.py", "ab"),), None, None)


def version(number: str, code_hash: str, **tags: str) -> dict:
    return {
        "version": number,
        "code_hash": code_hash,
        "source_hash": tags.pop("source_hash", "source-old"),
        "params_hash": tags.pop("params_hash", "params-old"),
        "features_version": "7",
        **tags,
    }


def test_the_champion_built_from_the_current_code_is_up_to_date():
    snap = {"champion": version("3", "code-new"), "features_version": 7, "versions": []}
    state = code_state(snap, CURRENT, 7)
    assert (state.state, state.version, state.stale) == ("champion", "3", False)


def test_other_params_and_code_are_untried_and_name_both_changes():
    snap = {"champion": version("3", "code-old"), "features_version": 7, "versions": [version("3", "code-old")]}
    state = code_state(snap, CURRENT, 7)
    assert state.state == "untried" and state.stale
    assert [kind for kind, _ in state.changes] == ["params_changed", "code_changed"]


def test_a_change_that_lost_on_this_data_is_not_stale_until_the_data_moves():
    lost = version("4", "code-new", decision="rejected", decision_reason="does not beat the champion")
    snap = {"champion": version("3", "code-old"), "features_version": 7, "versions": [lost]}

    state = code_state(snap, CURRENT, 7)
    assert (state.state, state.version, state.reason, state.stale) == ("lost", "4", "does not beat the champion", False)
    assert code_state(snap, CURRENT, 8).state == "untried", "new validated data: the change is tried again"


def test_a_version_that_was_rolled_back_is_not_retried_and_says_why():
    promoted = version("4", "code-new", decision="promoted", decision_reason="beats the champion")
    snap = {"champion": version("3", "code-old"), "features_version": 7, "versions": [promoted]}

    state = code_state(snap, CURRENT, 7)

    assert state.state == "lost" and not state.stale
    assert state.reason == "v4 was promoted, then the champion was rolled back to v3"


def test_without_a_champion_a_tick_trains_one():
    state = code_state({"champion": None}, CURRENT, None)
    assert state.state == "no_champion" and state.stale and "trains one" in state.reason
