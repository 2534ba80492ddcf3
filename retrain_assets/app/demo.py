"""``retrain demo``: the main job on the embedded synthetic churn data, one day at a time."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import yaml

from retrain_assets.app import render
from retrain_assets.core import delta, landing, synthetic
from retrain_assets.core.config import Bounds, RetrainConfig, load_config

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from retrain_assets.app.project import LoadedProject

MARKER = ".retrain-demo"
START = dt.date(2026, 1, 5)
# What a person reviewing the inferred retrain.yaml would declare: the business limits, not one day's sample.
BUSINESS_RANGES = {"tenure_months": (0, 120), "monthly_charges": (0, 500), "support_calls": (0, 30)}


def declare_business_limits(config: RetrainConfig) -> None:
    """The review `retrain init` asks for: the churn columns' business limits become hard rules (blocking);
    the ranges the sample showed stay as expected values (warning)."""
    for column, (low, high) in BUSINESS_RANGES.items():
        config.validation.columns[column].hard = Bounds(min=low, max=high)


def prepare(directory: Path, fresh: bool) -> None:
    """Create the demo folder; ``fresh`` removes a previous demo, but only one this command made."""
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise FileExistsError(f"{directory} is not empty and was not made by `retrain demo`; choose another --dir")
        if not fresh:
            raise FileExistsError(f"{directory} holds a previous demo; pass --fresh to start over")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by `retrain demo`; `retrain demo --fresh` may delete this folder\n")


def write_batches(directory: Path, history_days: int, days: int, rows_per_day: int) -> list[tuple[dt.date, Path]]:
    """One CSV per day: ``history_days`` of clean history, then ``days`` live days of which the fifth is
    corrupted and the last three have drifted."""
    data = directory / "data"
    data.mkdir(exist_ok=True)
    bad = history_days + 4
    batches = synthetic.churn_days(
        START, history_days + days, rows_per_day, bad_day=bad, drift_from_day=history_days + days - 3, drift=0.8
    )
    files = []
    for index, (day, frame) in enumerate(batches):
        path = data / f"churn-{day.isoformat()}{'-bad' if index == bad else ''}.csv"
        frame.to_csv(path, index=False)
        files.append((day, path))
    return files


def end_of(day: dt.date) -> dt.datetime:
    """When a day's batch lands: the end of that day, UTC (the demo replays history with --as-of)."""
    return dt.datetime.combine(day, dt.time(23, 59), dt.timezone.utc)


def init_project(directory: Path, sample: Path, rows_per_day: int, echo: Callable[[str], None]) -> Path:
    """`retrain init` on the first day's sample, then the review a person would do (business ranges,
    ``triggers.min_new_rows``, the window, the history start); returns the written ``retrain.yaml``."""
    from retrain_assets.core.inference import infer_config, render_config

    config_path = directory / "retrain.yaml"
    inferred = infer_config(
        landing.read_batch_file(sample), "churned", timestamp="event_time", id_column="customer_id", project="churn"
    )
    declare_business_limits(inferred)
    inferred.triggers.min_new_rows = int(2.5 * rows_per_day)  # retrain on volume every few days
    inferred.model.window_days = 7  # learn from (and compare on) the last week
    inferred.history.start = START
    config_path.write_text(render_config(inferred, sample.name))
    echo(f"retrain init {sample.name} --target churned -> {config_path}")
    echo(
        f"  reviewed: hard limits {BUSINESS_RANGES}; triggers.min_new_rows {inferred.triggers.min_new_rows}; "
        f"model.window_days 7; history.start {START}"
    )
    return config_path


def live_days(
    project: "LoadedProject",
    instance: "DagsterInstance",
    files: list[tuple[dt.date, Path]],
    echo: Callable[[str], None],
) -> list[dict]:
    """A first tick that finds the history, then `retrain ingest` and `retrain tick` for each live day; one
    table row per run."""
    from retrain_assets.app.execution import ingest

    config, rows = project.config, []
    live: list[tuple[Optional[dt.date], Optional[Path]]] = [(None, None), *files]
    for day, path in live:
        if day is None or path is None:
            echo("\nretrain tick (the sensor finds the history)")
            ingested = None
        else:
            ingested = ingest(config, instance, path, end_of(day))
            echo(f"\nday {day}: retrain ingest {path.name} -> raw_data v{ingested.version}; retrain tick")
        rows += tick_rows(project, instance, day.isoformat() if day else "history", ingested, echo)
    return rows


def tick_rows(
    project: "LoadedProject",
    instance: "DagsterInstance",
    label: str,
    ingested: Optional[landing.IngestResult],
    echo: Callable[[str], None],
) -> list[dict]:
    """`retrain tick`, what each of its runs did, and one table row per run labelled ``label``."""
    from retrain_assets.app.ticking import tick
    from retrain_assets.core.registry import Registry

    config, metric, rows = project.config, project.config.promotion.metric, []
    for launch in tick(project, instance).launches:
        outcome = launch.outcome
        echo("  " + (render.describe_run(outcome, metric).replace("\n", "\n  ") if outcome else str(launch.skipped)))
        if outcome is not None:
            version = outcome.raw_version
            landed = ingested.rows if ingested else delta.table_rows(config.table_uri(delta.RAW_TABLE), version)
            champion = Registry(config).by_alias("champion")
            number = champion.version if champion is not None else None
            rows.append(render.demo_row(label, version, landed, outcome, metric, number))
    return rows


# The worked example of the README's "Your own model code": a ratio feature and a HistGradientBoosting pipeline.
OWN_MODEL = '''"""The demo's own model code (see "Your own model code" in the README)."""
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder


def add_ratios(frame):
    """Charges per month of tenure: what a new customer pays weighs more than what a long one does."""
    made = frame.copy()
    made["charges_per_tenure_month"] = made["monthly_charges"] / (made["tenure_months"] + 1)
    return made


def make_pipeline(params, roles):
    encode = ColumnTransformer(
        [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), roles.categorical)],
        remainder="passthrough",
    )
    booster = HistGradientBoostingClassifier(random_state=roles.seed, **params)
    return Pipeline([("encode", encode), ("booster", booster)])
'''


def edit_model(config_path: Path, **model: object) -> None:
    """What a person does in an editor (and commits): change the ``model:`` section of retrain.yaml."""
    raw = yaml.safe_load(config_path.read_text())
    raw["model"] = {**raw.get("model", {}), **model}
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def gitops(config_path: Path, instance: "DagsterInstance", echo: Callable[[str], None]) -> list[dict]:
    """The model as code: a params change, then the team's own pipeline and feature function, each retrained
    by the next `retrain tick` (``params_changed``, ``code_changed``) under the same gates; then `retrain
    status --check` and `retrain reproduce` of the champion."""
    from retrain_assets.app.project import load_project
    from retrain_assets.app.status import model_code_state
    from retrain_assets.core.registry import Registry
    from retrain_assets.core.reproduce import reproduce

    rows = []
    edit_model(config_path, params={"C": 0.3})
    echo("\nmodel.params: C 1.0 -> 0.3 (stronger regularisation), committed")
    stale = model_code_state(load_config(config_path))
    echo("retrain status --check  (exit 1: " + render.describe_check(stale.as_dict()).splitlines()[0] + ")")
    echo("retrain tick")
    rows += tick_rows(load_project(config_path), instance, "params", None, echo)
    (config_path.parent / "churn_model.py").write_text(OWN_MODEL)
    edit_model(
        config_path,
        pipeline="churn_model.py:make_pipeline",
        features="churn_model.py:add_ratios",
        params={"max_iter": 100, "learning_rate": 0.05},
    )
    echo("\nyour own model: churn_model.py (a ratio feature, a HistGradientBoosting pipeline) named in retrain.yaml")
    echo("retrain tick")
    rows += tick_rows(load_project(config_path), instance, "own code", None, echo)
    config = load_config(config_path)
    settled = model_code_state(config)
    echo(f"retrain status --check  (exit {int(settled.stale)}: {render.describe_check(settled.as_dict())})")
    found = reproduce(config, Registry(config), "champion")
    echo("retrain reproduce champion  (exit " + ("0" if found.identical else "1") + ")")
    echo("  " + render.describe_reproduction(found).replace("\n", "\n  "))
    return rows


REQUEST_ROWS = 50  # rows per request of the served day


def serve_a_day(
    config_path: Path, instance: "DagsterInstance", day: dt.date, rows_per_day: int, echo: Callable[[str], None]
) -> list[dict]:
    """The loop closed (`retrain serve`, `retrain label --feed`, `retrain tick`): the champion serves a day of
    customers unlike any it has seen, their outcomes come in a day late, the live day finds the champion behind
    its holdout, the live-performance trigger retrains on the fed batch, and the server swaps to the new
    champion. The server stamps each answer as of the replayed day, as `retrain ingest --as-of` does batches."""
    from retrain_assets.app.execution import feed_labels
    from retrain_assets.app.project import load_project
    from retrain_assets.app.serve import BackgroundServer
    from retrain_assets.core.labels import land_labels

    config = load_config(config_path)
    data, flushed, poll = config.data, config.serving.flush_seconds, config.serving.poll_seconds
    traffic = synthetic.churn_batch(day, 3 * rows_per_day, seed=29, drift=1.6)
    midnight = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    moment = [midnight]  # what the server's clock says: advanced request by request through the day
    rows: list[dict] = []
    with BackgroundServer(config, clock=lambda: moment[0]) as server:
        served_by = _get(server.url, "/version")["champion"]
        echo(f"\nretrain serve -> {server.url}: champion v{served_by['version']}")
        requests = range(0, len(traffic), REQUEST_ROWS)
        for start in requests:
            moment[0] = midnight + dt.timedelta(days=start / len(traffic))
            request = traffic.iloc[start : start + REQUEST_ROWS][[data.id, *data.features]]
            _post(
                server.url,
                "/invocations",
                {"dataframe_split": json.loads(request.to_json(orient="split", index=False))},
            )
        in_delta = _until(lambda: _get(server.url, "/health")["ledger"]["backlog_rows"] == 0, 30 + 5 * flushed)
        echo(
            f"  {len(requests)} requests of {REQUEST_ROWS} customers on {day}: each answer journaled before it went, "
            f"then appended to the predictions table{'' if in_delta else ' (NOT yet: see /health)'}"
        )
        rows.append(_serve_row(f"served {day}", len(traffic), f"answered by v{served_by['version']}", served_by))
        labels_path = config_path.parent / "data" / f"churn-labels-{day.isoformat()}.csv"
        late = end_of(day + dt.timedelta(days=1))
        traffic[[data.id, data.target]].assign(labeled_at=late.isoformat()).to_csv(labels_path, index=False)
        landed = land_labels(config, labels_path)
        echo(f"retrain label {labels_path.name} --feed  (outcomes known {late:%Y-%m-%d %H:%M}, a day late)")
        echo(f"  labels version {landed.version}; " + feed_labels(config, instance))
        echo("retrain tick")
        rows += tick_rows(load_project(config_path), instance, f"live {day}", None, echo)
        _until(lambda: _get(server.url, "/version")["champion"]["version"] != served_by["version"], 3 * poll)
        now_serving = _get(server.url, "/version")["champion"]
        was, now = served_by["version"], now_serving["version"]
        verdict = f"serving v{now} (was v{was})" if now != was else f"still serving v{was}"
        echo(f"retrain serve: {verdict}")
        rows.append(_serve_row("hot swap", "-", verdict, now_serving))
    return rows


def _serve_row(label: str, rows: "int | str", decision: str, champion: dict) -> dict:
    """A line of the demo's table about the server (see :func:`render.demo_row`)."""
    return {
        "day": label,
        "delta_version": "-",
        "rows": rows,
        "checks": "-",
        "trigger": "-",
        "decision": decision,
        "candidate": None,
        "champion": None,
        "champion_version": f"v{champion['version']}",
    }


def _until(done: Callable[[], bool], seconds: float) -> bool:
    """Whether ``done()`` became true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _get(url: str, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + path, timeout=30) as answer:
        return json.loads(answer.read())


def _post(url: str, path: str, document: dict) -> dict:
    import urllib.request

    body = json.dumps(document).encode()
    request = urllib.request.Request(url + path, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def run_demo(
    directory: Path,
    fresh: bool,
    days: int,
    rows_per_day: int,
    history_weeks: int = 8,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """The whole product on synthetic churn data, through the same commands a user runs.

    1. `retrain init` on the first day's sample (then the review a person would do: business ranges,
       `triggers.min_new_rows`), and `retrain ingest --as-of` of ``history_weeks`` of past days.
    2. `retrain tick`: the sensor sees the history, the first champion is trained.
    3. Each live day: `retrain ingest`, `retrain tick`. Small days are only validated until enough new
       rows have landed; a bad batch is stopped by the blocking checks (kept in raw_data, champion
       untouched); on drifted days drift and performance trigger retrains, and a candidate is promoted only
       when it beats the champion by the margin.
    4. The model as code: a params change, then the team's own pipeline and feature function, each retrained
       by `retrain tick`; `retrain status --check` and `retrain reproduce champion`.
    5. `retrain serve` in this process: a day of customers unlike any before, their outcomes labelled a day
       late (`retrain label --feed`), then `retrain tick`: the live day finds the champion behind, the
       live-performance trigger retrains on the fed batch, and the server swaps to the new champion.
    6. `retrain backfill` over every weekly partition: models as of each past week (Delta time travel),
       scored out of time, gathered in the backtest table and plot.
    7. `retrain rollback` and `retrain status`.
    """
    from retrain_assets.app.execution import backfill, ingest, rollback_champion
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.app.project import load_project
    from retrain_assets.app.status import project_status
    from retrain_assets.core.registry import Registry

    if days < 6:
        raise ValueError("--days must be at least 6 (a bad day and drifted days among good ones)")
    directory = directory.resolve()
    prepare(directory, fresh)
    history_days = 7 * history_weeks
    files = write_batches(directory, history_days, days, rows_per_day)
    config_path = init_project(directory, files[0][1], rows_per_day, echo)
    config = load_config(config_path)
    project = load_project(config_path, config)
    metric = config.promotion.metric
    with project_instance(config) as instance:
        for history_day, history_file in files[:history_days]:
            ingest(config, instance, history_file, end_of(history_day))
        echo(
            f"retrain ingest --as-of ... x{history_days}: {history_weeks} weeks of history, "
            f"raw_data v0-v{history_days - 1}"
        )
        rows = live_days(project, instance, files[history_days:], echo)
        rows += gitops(config_path, instance, echo)
        rows += serve_a_day(config_path, instance, files[-1][0] + dt.timedelta(days=1), rows_per_day, echo)
        echo("\n" + render.format_table(rows, metric))
        config = load_config(config_path)
        project = load_project(config_path, config)

        last_day = files[-1][0]
        echo(f"\nretrain backfill --start {START} --end {last_day}")
        with project_lock(config, "retrain demo"):  # as `retrain backfill` does; a tick takes it itself
            outcomes, backtest = backfill(
                project,
                instance,
                START,
                last_day,
                progress=lambda i, n, o: echo("  " + render.backfill_progress(i, n, o, metric, with_rows=False)),
            )
        echo(f"  backtest table of {len(backtest or [])} weeks and plots: {config.reports_dir / 'backtest.html'}")

        if Registry(config).by_alias("previous_champion") is not None:
            event = rollback_champion(config, instance, None, reason="demo: a rollback is one command")
            echo(f"\nretrain rollback\n{event['text']}")
        echo("\nretrain status\n" + render.describe_status(project_status(config, project, instance)))
    echo("")
    echo(f"MLflow store:  {config.tracking_uri}  (artifacts under {config.mlflow_dir / 'artifacts'})")
    echo(f"Dagster home:  {config.dagster_home}")
    echo(f"Delta tables:  {config.lake_uri}")
    echo(f"Reports:       {config.reports_dir}")
    echo(f"Open the UI:   make ui   (or: retrain --config {config_path} ui; then http://127.0.0.1:3000)")
    return rows
