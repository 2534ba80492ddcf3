"""`retrain label`, the live joins, the ``live_performance`` days and their two sensors, and `--feed`, on a project
trained on real data (breast cancer, with ids and event times). Predictions are journaled through the real
ledger from the real champion's (and challenger's) answers on real rows; labels land through the CLI; days are
computed by real runs of the ``live`` job."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, Definitions, build_sensor_context

from retrain_assets.app.cli import main
from retrain_assets.core import delta, payloads, serving
from retrain_assets.core.config import RetrainConfig, load_config
from retrain_assets.core.delta import PREDICTIONS_TABLE
from retrain_assets.core.labels import LABELS_TABLE
from retrain_assets.core.ledger import PredictionLedger
from retrain_assets.defs.build import build_defs

from .serving_project import ID, TARGET, TIMESTAMP, Served, trained_project

TODAY = dt.datetime.now(dt.timezone.utc).date()


def ago(days: int) -> dt.date:
    return TODAY - dt.timedelta(days=days)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Served:
    return trained_project(tmp_path_factory.mktemp("labels"), keys=True)


@dataclass
class Live:
    """A copy of the trained project for one test: config, definitions, an instance, the dataset with its
    truth, and the two registered versions loaded for serving."""

    path: Path
    config: RetrainConfig
    defs: Definitions
    instance: DagsterInstance
    data: pd.DataFrame
    champion: serving.ServedModel
    challenger: serving.ServedModel
    journal: Path


@pytest.fixture
def live(trained, tmp_path, monkeypatch) -> Iterator[Live]:
    """Each test gets its own copy of the project (lake, registry, instance), so the tables it grows are its own."""
    from retrain_assets.core.registry import Registry

    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the CLI points it at the project's instance
    folder = tmp_path / "project"
    shutil.copytree(trained.path.parent, folder)
    path = folder / "retrain.yaml"
    config = load_config(path)
    registry = Registry(config)
    champion = serving.load(config, registry, "champion")
    assert champion is not None
    other = next(v for v in trained.versions if v != str(champion.version))
    challenger = serving.ServedModel(registry.name, int(other), "challenger", None, None, registry.load(other))
    data = pd.concat([pd.read_csv(folder / f"part{index}.csv") for index in range(3)], ignore_index=True)
    with DagsterInstance.ephemeral() as instance:
        yield Live(path, config, build_defs(str(path)), instance, data, champion, challenger, tmp_path / "journal")


def serve(live: Live, day: dt.date, rows: pd.DataFrame, shadow: bool = False, with_id: bool = True) -> pd.DataFrame:
    """The champion's answers to ``rows`` as one request served at noon of ``day`` (and the challenger's as
    shadow rows), journaled through the ledger into the predictions table: what `retrain serve` writes. Returns
    the champion's prediction ids with each row's id and truth: what a labeller knows."""
    served_at = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
    columns = [*live.config.data.features, *([ID] if with_id else [])]
    frame = payloads.typed(rows[columns].reset_index(drop=True).astype(object), live.config)
    request_id = uuid.uuid4().hex
    models = [(live.champion, False), *([(live.challenger, True)] if shadow else [])]
    answers = [
        serving.ledger_rows(model, frame, serving.score(model, frame, live.config), request_id, served_at, 1.0, flag)
        for model, flag in models
    ]
    ledger = PredictionLedger(live.config.table_uri(PREDICTIONS_TABLE), live.journal, 10_000, 60).start()
    try:
        for made in answers:
            ledger.record(made)
    finally:
        ledger.close()
    ids = answers[0].column("prediction_id").to_pylist()
    return pd.DataFrame({"prediction_id": ids, ID: rows[ID].tolist(), TARGET: rows[TARGET].tolist()})


def label(live: Live, name: str, frame: pd.DataFrame, *options: str) -> Any:
    """`retrain label` on ``frame`` written as the CSV file ``name`` beside the project."""
    path = live.path.parent / name
    frame.to_csv(path, index=False)
    return CliRunner().invoke(main, ["--config", str(live.path), "label", str(path), *options])


def evaluate(live: Live, name: str, cursor: Optional[str] = None) -> Any:
    """One tick of a sensor, as the daemon or `retrain tick` evaluates it."""
    sensor_def = live.defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=live.instance, cursor=cursor, definitions=live.defs, sensor_name=name, resources=live.defs.resources
    ) as context:
        return sensor_def.evaluate_tick(context)


def compute(live: Live, day: dt.date) -> dict[str, Any]:
    """A run of the ``live`` job for ``day``; its materialization's metadata, tables as lists of records."""
    result = live.defs.resolve_job_def("live").execute_in_process(
        instance=live.instance, partition_key=day.isoformat(), raise_on_error=False
    )
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    (event,) = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    return {
        key: [record.data for record in value.value.records] if hasattr(value.value, "records") else value.value
        for key, value in metadata.items()
    }


def by_model(metadata: dict, version: int, alias: str) -> dict:
    return next(row for row in metadata["by_model"] if (row["model_version"], row["alias"]) == (version, alias))


BAD_FILES = [
    ({TARGET: [1, 0]}, "no key column: a labels file needs 'prediction_id' or the id column 'patient_id'"),
    ({"prediction_id": ["a", "b"]}, "no label column: give the label in 'target' (data.target) or 'label'"),
    ({"prediction_id": ["a", None], ID: [None, None], TARGET: [1, 0]}, "row 2: no key: neither 'prediction_id'"),
    ({ID: ["p0001", "p0002"], TARGET: [1, "yes"]}, "row 2 ('yes'): column 'target': does not cast to int"),
    ({ID: ["p0001", "p0002"], "label": [1, 2]}, "row 2 (2): column 'label': not a class of validation.target_classes"),
    ({"prediction_id": ["a", "b", "a"], TARGET: [1, 0, 1]}, "rows 1 and 3: column 'prediction_id': 'a' twice"),
    ({ID: ["p0001"], TARGET: [1], "labeled_at": ["2100-01-01"]}, "row 1 ('2100-01-01'): column 'labeled_at': in the"),
]


@pytest.mark.parametrize("columns, message", BAD_FILES)
def test_a_bad_labels_file_is_refused_whole_quarantined_and_named(trained, tmp_path, columns, message):
    path = tmp_path / "retrain.yaml"
    shutil.copy(trained.path, path)
    config = load_config(path)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(columns).to_csv(labels, index=False)

    result = CliRunner().invoke(main, ["--config", str(path), "label", str(labels)])

    assert result.exit_code == 1 and f"refused labels.csv: {message}" in result.stderr, result.output
    assert delta.latest_version(config.table_uri(LABELS_TABLE)) is None, "nothing of the file was written"
    (refusal,) = [json.loads(line) for line in config.refusals_log.read_text().splitlines()]
    assert refusal["file"] == str(labels) and message in refusal["reason"]
    assert Path(refusal["quarantined"]).read_bytes() == labels.read_bytes(), "kept byte for byte"


def test_a_labels_file_lands_once(trained, tmp_path):
    path = tmp_path / "retrain.yaml"
    shutil.copy(trained.path, path)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"prediction_id": ["a", None], ID: [None, "p0001"], TARGET: [1, 0]}).to_csv(labels, index=False)
    runner = CliRunner()

    assert (
        runner.invoke(main, ["--config", str(path), "label", str(labels)]).output
        == "labels.csv: labels version 0 (2 labels)\n"
    )
    again = runner.invoke(main, ["--config", str(path), "label", str(labels)])

    assert again.exit_code == 1 and "identical content already landed as labels version 0" in again.stderr
    table = delta.read_table(load_config(path).table_uri(LABELS_TABLE))
    assert table[["prediction_id", "entity_id", "label"]].values.tolist() == [["a", None, "1"], [None, "p0001", "0"]]


def test_late_labels_recompute_their_own_day_and_the_label_delay_holds_a_day_back(live):
    rows = live.data.iloc[:40]
    first = serve(live, ago(3), rows)
    second = serve(live, ago(2), rows)  # the same patients again, a day later
    serve(live, ago(1), live.data.iloc[40:80])  # yesterday: its labels are not due before tomorrow
    assert label(live, "by-id.csv", first[["prediction_id", TARGET]]).exit_code == 0

    started = evaluate(live, "live_labels_sensor")
    keys = {request.partition_key: request.run_key for request in started.run_requests}
    assert keys == {ago(3).isoformat(): f"{ago(3)}@labels-v0", ago(2).isoformat(): f"{ago(2)}@labels-v0"}
    early = compute(live, ago(3))
    assert (early["served_rows"], early["labelled_rows"], early["labels_version"]) == (40, 40, 0)
    assert by_model(early, live.champion.version, "champion")["roc_auc"] > 0.9
    unlabelled = compute(live, ago(2))
    champion = by_model(unlabelled, live.champion.version, "champion")
    assert (champion["labelled"], champion["roc_auc"]) == (0, None), "below serving.min_labelled_rows: no metric"
    held = live.defs.resolve_job_def("live").execute_in_process(
        instance=live.instance, partition_key=ago(1).isoformat(), raise_on_error=False
    )
    (failure,) = held.get_step_failure_events()
    assert "its labels are due only at" in failure.step_failure_data.error.message
    assert "serving.label_delay_hours 24" in failure.step_failure_data.error.message

    # labels by patient id, known in the evening of the second day: they belong to the second day's answers
    evening = dt.datetime.combine(ago(2), dt.time(18), dt.timezone.utc).isoformat()
    late = second[[ID, TARGET]].assign(labeled_at=evening)
    assert label(live, "by-patient.csv", late).exit_code == 0
    again = evaluate(live, "live_labels_sensor", started.cursor)
    assert [(r.partition_key, r.run_key) for r in again.run_requests] == [(ago(2).isoformat(), f"{ago(2)}@labels-v1")]
    recomputed = compute(live, ago(2))
    assert (recomputed["labelled_rows"], recomputed["labels_version"]) == (40, 1)
    assert compute(live, ago(3))["labelled_rows"] == 40, "the first day's answers did not take the later labels"
    assert not evaluate(live, "live_labels_sensor", again.cursor).run_requests


def test_the_champion_falling_behind_on_live_labels_requests_one_retrain(live):
    from retrain_assets.core.triggers import decide_retrain

    wrong = serve(live, ago(5), live.data.iloc[100:160])
    right = serve(live, ago(6), live.data.iloc[160:220])
    assert label(live, "flipped.csv", wrong[["prediction_id"]].assign(label=1 - wrong[TARGET])).exit_code == 0
    assert label(live, "right.csv", right[["prediction_id", TARGET]]).exit_code == 0

    fine = compute(live, ago(6))
    assert fine["champion_trigger"]["fired"] is False, fine["champion_trigger"]
    quiet = evaluate(live, "live_performance_sensor")
    assert not quiet.run_requests and "neither behind" in quiet.skip_message
    behind = compute(live, ago(5))
    fired = evaluate(live, "live_performance_sensor", quiet.cursor)
    (request,) = fired.run_requests
    version = live.champion.version
    assert request.run_key == f"live_performance-champion-v{version}-labels-v1"
    assert request.tags["retrain/trigger"] == "live_performance"
    reason = request.tags["retrain/trigger_reason"]
    assert reason == behind["champion_trigger"]["reason"] and f"champion v{version} live roc_auc" in reason
    assert "on 60 labelled rows" in reason and "dropped" in reason
    assert not evaluate(live, "live_performance_sensor", fired.cursor).run_requests, "nothing new: no second run"
    compute(live, ago(5))  # the same day again, on the same labels: the same run key, which Dagster runs once
    assert [r.run_key for r in evaluate(live, "live_performance_sensor", fired.cursor).run_requests] == [
        request.run_key
    ]

    decision = decide_retrain(live.config, "live_performance", True, 0, trigger_reason=reason)
    assert decision.retrain and decision.fired == ("live_performance",) and reason in decision.summary


def test_served_rows_unlike_the_training_data_fail_the_drift_checks_and_request_one_retrain(live):
    steady = serve(live, ago(6), live.data.iloc[:120])
    assert len(steady) == 120
    calm = compute(live, ago(6))
    assert calm["champion_drift"]["fired"] is False, calm["champion_drift"]
    quiet = evaluate(live, "live_performance_sensor")
    assert not quiet.run_requests

    benign = live.data[live.data[TARGET] == 1].iloc[:120]
    serve(live, ago(5), benign.assign(**{"mean radius": benign["mean radius"] * 1.6}))
    result = live.defs.resolve_job_def("live").execute_in_process(
        instance=live.instance, partition_key=ago(5).isoformat(), raise_on_error=False
    )
    assert result.success
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not checks["prediction_drift"].passed and "prediction drift" in checks["prediction_drift"].description
    assert not checks["served_feature_drift"].passed and "mean radius" in checks["served_feature_drift"].description
    assert checks["prediction_drift"].severity.value == "WARN"  # non-blocking: the day is still computed
    fired = evaluate(live, "live_performance_sensor", quiet.cursor)
    (request,) = fired.run_requests
    assert request.run_key == f"prediction_drift-champion-v{live.champion.version}"
    assert request.tags["retrain/trigger"] == "prediction_drift"
    assert "prediction drift" in request.tags["retrain/trigger_reason"]


def test_a_champion_behind_and_drifting_on_the_same_day_is_retrained_by_one_run(live):
    from retrain_assets.core.triggers import decide_retrain

    benign = live.data[live.data[TARGET] == 1].iloc[:120]
    answered = serve(live, ago(5), benign.assign(**{"mean radius": benign["mean radius"] * 1.6}))
    flipped = answered[["prediction_id"]].assign(label=1 - answered[TARGET])
    flipped.loc[flipped.index[:40], "label"] = 1  # two classes, or the day has no ROC AUC to judge
    assert label(live, "flipped.csv", flipped).exit_code == 0
    day = compute(live, ago(5))
    assert day["champion_trigger"]["fired"] and day["champion_drift"]["fired"]

    (request,) = evaluate(live, "live_performance_sensor").run_requests
    version = live.champion.version
    assert request.run_key == f"live_performance-champion-v{version}-labels-v0"
    assert request.tags["retrain/trigger"] == "live_performance,prediction_drift"
    reason = request.tags["retrain/trigger_reason"]
    assert day["champion_trigger"]["reason"] in reason and day["champion_drift"]["reason"] in reason
    decision = decide_retrain(live.config, request.tags["retrain/trigger"], True, 0, trigger_reason=reason)
    assert decision.retrain and decision.fired == ("live_performance,prediction_drift",)


def test_champion_and_challenger_are_judged_on_the_same_labelled_rows(live):
    from sklearn.metrics import roc_auc_score

    from retrain_assets.core.training import model_inputs

    rows = live.data.iloc[220:280]
    answered = serve(live, ago(8), rows, shadow=True)
    assert label(live, "labels.csv", answered[["prediction_id", TARGET]]).exit_code == 0  # the client's ids only

    day = compute(live, ago(8))

    champion, challenger = live.champion.version, live.challenger.version
    assert by_model(day, challenger, "challenger")["labelled"] == by_model(day, champion, "champion")["labelled"] == 60
    (pair,) = day["champion_vs_challenger"]
    assert (pair["champion_version"], pair["challenger_version"], pair["rows"]) == (champion, challenger, 60)
    for model, key in ((live.champion, "champion_roc_auc"), (live.challenger, "challenger_roc_auc")):
        truth = roc_auc_score(rows[TARGET], model.pipeline.predict_proba(model_inputs(rows, live.config))[:, 1])
        assert pair[key] == pytest.approx(truth)


def test_feed_lands_the_labelled_predictions_as_one_valid_batch_exactly_once(live):
    raw = live.config.table_uri(delta.RAW_TABLE)
    before = delta.latest_version(raw)
    rows = live.data.iloc[280:400]
    answered = serve(live, ago(10), rows)
    unlabelled = serve(live, ago(10), live.data.iloc[400:410])
    assert unlabelled["prediction_id"].notna().all()

    fed = label(live, "labels.csv", answered[["prediction_id", TARGET]], "--feed")

    assert fed.exit_code == 0, fed.output
    version = before + 1
    assert f"fed 120 labelled predictions (labels versions 0 to 0) as raw_data version {version}" in fed.output
    commit = next(entry for entry in delta.history(raw) if entry["version"] == version)
    assert commit["retrain.fed_labels_through"] == "0"
    batch = delta.read_batch(raw, version).to_pandas().sort_values(ID).reset_index(drop=True)
    expected = rows.sort_values(ID).reset_index(drop=True)
    assert batch[ID].tolist() == expected[ID].tolist() and batch[TARGET].tolist() == expected[TARGET].tolist()
    assert (batch[TIMESTAMP] == pd.Timestamp(dt.datetime.combine(ago(10), dt.time(12)), tz="UTC")).all()
    path = live.config.home / "feedback" / commit["retrain.source_file"]
    checked = CliRunner().invoke(main, ["--config", str(live.path), "validate", str(path)])
    assert checked.exit_code == 0, checked.output
    (request,) = evaluate(live, "raw_data_version_sensor").run_requests
    assert request.run_key == str(version), "the version sensor retrains on it as on any batch"

    again = CliRunner().invoke(main, ["--config", str(live.path), "label", "--feed"])
    assert again.output == "nothing to feed: every labels version up to 0 was fed already\n"
    assert delta.latest_version(raw) == version

    anonymous = serve(live, ago(9), live.data.iloc[410:415], with_id=False)
    refused = label(live, "anonymous.csv", anonymous[["prediction_id", TARGET]], "--feed")
    assert refused.exit_code == 1 and "5 of 5 labelled predictions to feed carry no 'patient_id'" in refused.output
    named = re.search(r"e\.g\. prediction '(\w+)'", refused.output)
    assert named and named.group(1) in set(anonymous["prediction_id"]) and delta.latest_version(raw) == version


def test_retrain_tick_computes_the_days_the_labels_sensor_requests(live):
    from retrain_assets.app.ticking import tick

    answers = serve(live, ago(3), live.data.iloc[:40])
    assert label(live, "day.csv", answers[["prediction_id", TARGET]]).exit_code == 0
    report = tick(live.path, live.instance)
    (day,) = [launch for launch in report.launches if launch.source == "live_labels_sensor"]
    assert day.outcome is not None and day.outcome.success, day.outcome
    run = live.instance.get_run_by_id(day.outcome.run_id)
    assert (run.job_name, run.tags["dagster/partition"]) == ("live", ago(3).isoformat())
    again = tick(live.path, live.instance)  # nothing new: the day is not run twice
    assert not [launch for launch in again.launches if launch.source == "live_labels_sensor" and not launch.skipped]


def with_live_check(live: Live, min_rows: int, max_drop: float) -> Live:
    """The project with ``promotion.live_check`` on (and the shadow scoring it needs), and no holdout margin:
    the project's second version then wins on the holdout against the first, the champion."""
    import dataclasses

    import yaml

    raw = yaml.safe_load(live.path.read_text())
    raw["promotion"] = {**raw.get("promotion", {}), "margin": 0.0}
    raw["promotion"]["live_check"] = {"min_rows": min_rows, "max_drop": max_drop}
    raw["serving"] = {**raw.get("serving", {}), "shadow": True}
    live.path.write_text(yaml.safe_dump(raw))
    return dataclasses.replace(live, config=load_config(live.path), defs=build_defs(str(live.path)))


def decide_again(live: Live, job: str = "retrain", tags: Optional[dict] = None) -> dict[str, Any]:
    """``prod_model`` on the stored candidate (through ``evaluation_report`` for the retraining job); the
    registry's aliases and the candidate's tags afterwards."""
    from dagster import AssetKey

    from retrain_assets.core.registry import Registry

    selection = [AssetKey("evaluation_report"), AssetKey("prod_model")] if job == "retrain" else None
    result = live.defs.resolve_job_def(job).execute_in_process(
        instance=live.instance, asset_selection=selection, tags=tags, raise_on_error=False
    )
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    registry = Registry(live.config)
    aliases = {alias: int(registry.by_alias(alias).version) for alias in ("champion", "challenger")}
    return {**aliases, **registry.client.get_model_version(registry.name, str(live.challenger.version)).tags}


def ranked_by(live: Live, model: serving.ServedModel, rows: pd.DataFrame) -> pd.Series:
    """Labels that agree with ``model``'s ranking of ``rows`` (the upper half is 1): on them it is perfect."""
    from retrain_assets.core.training import model_inputs

    scores = pd.Series(model.pipeline.predict_proba(model_inputs(rows, live.config))[:, 1], index=rows.index)
    return (scores > scores.median()).astype(int)


def disputed(live: Live, count: int) -> pd.DataFrame:
    """The ``count`` rows the champion and the challenger score most differently: where the truth tells them apart."""
    from retrain_assets.core.training import model_inputs

    inputs = model_inputs(live.data, live.config)
    gap = (live.champion.pipeline.predict_proba(inputs) - live.challenger.pipeline.predict_proba(inputs))[:, 1]
    return live.data.iloc[pd.Series(abs(gap)).nlargest(count).index]


def live_auc(live: Live, model: serving.ServedModel, rows: pd.DataFrame, truth: pd.Series) -> float:
    from sklearn.metrics import roc_auc_score

    from retrain_assets.core.training import model_inputs

    return roc_auc_score(truth, model.pipeline.predict_proba(model_inputs(rows, live.config))[:, 1])


def test_a_holdout_winner_waits_as_challenger_until_its_live_rows_pass_then_is_promoted(live):
    live = with_live_check(live, min_rows=60, max_drop=0.01)
    champion, challenger = live.champion.version, live.challenger.version

    held = decide_again(live)
    assert (held["champion"], held["challenger"], held["live_check"]) == (champion, challenger, "awaiting")
    assert held["decision"] == "rejected"
    assert (
        f"awaiting the live check: challenger v{challenger} against champion v{champion} on 0 paired"
        in (held["decision_reason"])
    )

    rows = disputed(live, 80)
    truth = ranked_by(live, live.challenger, rows)  # the live truth sides with the challenger
    for day, part in ((ago(3), slice(0, 40)), (ago(2), slice(40, 80))):
        answered = serve(live, day, rows.iloc[part], shadow=True)
        assert (
            label(live, f"{day}.csv", answered[["prediction_id"]].assign(target=truth.iloc[part].tolist())).exit_code
            == 0
        )
        check = compute(live, day)["challenger_live_check"]
        requests = evaluate(live, "live_performance_sensor").run_requests or []
        if day == ago(3):
            assert (check["ready"], check["rows"]) == (False, 40)
            assert not [r for r in requests if r.job_name == "live_check"], "40 of the 60 rows: nothing to decide yet"
    assert (check["ready"], check["rows"], check["challenger_version"]) == (True, 80, challenger)
    (request,) = [r for r in requests if r.job_name == "live_check"]
    assert request.run_key == f"live_check-challenger-v{challenger}-labels-v1"
    assert request.tags["retrain/trigger"] == "live_check"

    decided = decide_again(live, "live_check", request.tags)

    assert (decided["champion"], decided["live_check"], decided["decision"]) == (challenger, "passed", "promoted")
    mine, theirs = live_auc(live, live.challenger, rows, truth), live_auc(live, live.champion, rows, truth)
    assert (
        f"passes the live check: live roc_auc {mine:.4f} against {theirs:.4f} on 80 paired rows"
        in (decided["decision_reason"])
    )
    from retrain_assets.core.registry import Registry

    assert int(Registry(live.config).by_alias("previous_champion").version) == champion
    assert compute(live, ago(2))["challenger_live_check"]["ready"] is False, "decided: no challenger awaits"


def test_a_holdout_winner_worse_on_its_live_rows_is_rejected_and_the_champion_stays(live):
    live = with_live_check(live, min_rows=60, max_drop=0.01)
    champion, challenger = live.champion.version, live.challenger.version
    assert decide_again(live)["live_check"] == "awaiting"
    rows = disputed(live, 80)
    truth = ranked_by(live, live.champion, rows)  # the live truth sides with the champion
    mine, theirs = live_auc(live, live.challenger, rows, truth), live_auc(live, live.champion, rows, truth)
    assert theirs - mine > 0.01, "the rows must tell the two apart by more than max_drop"
    answered = serve(live, ago(4), rows, shadow=True)
    assert label(live, "day.csv", answered[["prediction_id"]].assign(target=truth.tolist())).exit_code == 0
    assert compute(live, ago(4))["challenger_live_check"]["ready"]
    (request,) = [r for r in evaluate(live, "live_performance_sensor").run_requests if r.job_name == "live_check"]

    decided = decide_again(live, "live_check", request.tags)

    assert (decided["champion"], decided["challenger"]) == (champion, challenger)
    assert (decided["live_check"], decided["decision"]) == ("failed", "rejected")
    assert (
        f"fails the live check: live roc_auc {mine:.4f} against {theirs:.4f} on 80 paired rows"
        in (decided["decision_reason"])
    )
