"""``retrain demo``: the main job on the embedded synthetic churn data, one day at a time."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Callable

from retrain_assets import lake, synthetic
from retrain_assets.config import load_config
from retrain_assets.validation import CHECKS

MARKER = ".retrain-demo"
START = dt.date(2026, 1, 5)
# What a person reviewing the inferred retrain.yaml would write: the business limits, not one day's sample.
BUSINESS_RANGES = {"tenure_months": (0, 120), "monthly_charges": (0, 500), "support_calls": (0, 30)}


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


def write_batches(directory: Path, days: int, rows_per_day: int, bad_day: int) -> list[tuple[dt.date, Path]]:
    """One CSV per day; day ``bad_day`` is corrupted and the last three days have drifted."""
    data = directory / "data"
    data.mkdir(exist_ok=True)
    files = []
    drifted = synthetic.churn_days(START, days, rows_per_day, bad_day=bad_day, drift_from_day=days - 3, drift=0.8)
    for day, frame in drifted:
        path = data / f"churn-{day.isoformat()}{'-bad' if day == START + dt.timedelta(bad_day) else ''}.csv"
        frame.to_csv(path, index=False)
        files.append((day, path))
    return files


def run_demo(directory: Path, fresh: bool, days: int, rows_per_day: int, echo: Callable[[str], None] = print) -> list[dict]:
    """Init from day one's sample, then each day: ingest the day's file and run `retrain tick`, which
    starts whatever the sensor and triggers ask for. Ends with a rollback and the status.

    The story: a first champion; small days only validated until enough new rows have landed; a bad batch
    the blocking checks stop (it stays in raw_data, the champion is untouched); drifted days on which the
    drift and performance triggers fire and a candidate trained on the new data has to earn promotion."""
    from retrain_assets.cli import describe_status
    from retrain_assets.inference import infer_config, render_config
    from retrain_assets.registry import Registry
    from retrain_assets.runner import ingest, project_instance, project_status, rollback_champion
    from retrain_assets.ticking import tick

    if days < 6:
        raise ValueError("--days must be at least 6 (a bad day and drifted days among good ones)")
    directory = directory.resolve()
    prepare(directory, fresh)
    bad_day = 4
    files = write_batches(directory, days, rows_per_day, bad_day)
    config_path = directory / "retrain.yaml"
    sample = lake.read_batch_file(files[0][1])
    inferred = infer_config(sample, "churned", timestamp="event_time", id_column="customer_id", project="churn")
    for column, (low, high) in BUSINESS_RANGES.items():  # the review `retrain init` asks for
        rule = inferred.validation.columns[column]
        rule.min, rule.max = low, high
    inferred.triggers.min_new_rows = int(2.5 * rows_per_day)  # retrain on volume every few days
    config_path.write_text(render_config(inferred, files[0][1].name))
    echo(f"retrain init {files[0][1].name} --target churned -> {config_path}")
    echo(f"  reviewed: ranges {BUSINESS_RANGES}; triggers.min_new_rows {inferred.triggers.min_new_rows}")
    config = load_config(config_path)
    metric = config.promotion.metric
    rows = []
    with project_instance(config) as instance:
        for day, path in files:
            ingested = ingest(config, instance, path)
            echo(f"\nday {day}: retrain ingest {path.name} -> raw_data v{ingested.version}; retrain tick")
            report = tick(config_path, instance)
            for launch in report.launches:
                echo("  " + (launch.outcome.describe(metric).replace("\n", "\n  ") if launch.outcome else str(launch.skipped)))
                if launch.outcome:
                    rows.append(table_row(day, ingested, launch.outcome, metric, Registry(config)))
        echo("\n" + format_table(rows, metric))
        if Registry(config).by_alias("previous_champion") is not None:
            event = rollback_champion(config, instance, None, reason="demo: a rollback is one command")
            echo(f"\nretrain rollback\n{event['text']}")
        echo("\nretrain status\n" + describe_status(project_status(config, config_path, instance)))
    echo("")
    echo(f"MLflow store:  {config.tracking_uri}  (artifacts under {config.mlflow_dir / 'artifacts'})")
    echo(f"Dagster home:  {config.dagster_home}")
    echo(f"Delta tables:  {config.lake_uri}")
    echo(f"Open the UI:   make ui   (or: retrain --config {config_path} ui; then http://127.0.0.1:3000)")
    return rows


def table_row(day: dt.date, ingested, outcome, metric: str, registry) -> dict:
    """One line of the demo's table from a run's outcome."""
    evaluation, decision = outcome.evaluation or {}, outcome.decision or {}
    warnings = sum(1 for c in outcome.checks.values() if not c.passed and not c.blocking)
    if outcome.blocking_failures:
        verdict = "batch rejected" if any(n in CHECKS for n in outcome.blocking_failures) else "candidate rejected"
    elif outcome.fired in ("none", ""):
        verdict = "validated only"
    elif decision:
        verdict = f"promoted v{decision['champion_version']}" if decision["promoted"] else f"kept (v{evaluation['candidate_version']} lost)"
    else:
        verdict = "failed"
    champion = registry.by_alias("champion")
    return {
        "day": day.isoformat(),
        "delta_version": ingested.version,
        "rows": ingested.rows,
        "checks": f"{sum(c.passed for c in outcome.checks.values())}/{len(outcome.checks)}" + (f" ({warnings} warn)" if warnings else ""),
        "trigger": outcome.fired or "-",
        "decision": verdict,
        "candidate": evaluation.get("candidate", {}).get(metric),
        "champion": (evaluation.get("champion") or {}).get(metric),
        "champion_version": f"v{champion.version}" if champion is not None else "-",
    }


def format_table(rows: list[dict], metric: str) -> str:
    def number(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = ["day", "delta v", "rows", "checks passed", "triggers fired", "decision",
              f"candidate {metric}", f"champion {metric}", "champion"]
    body = [
        [r["day"], str(r["delta_version"]), str(r["rows"]), r["checks"], r["trigger"], r["decision"],
         number(r["candidate"]), number(r["champion"]), r["champion_version"]]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    render = lambda line: "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, body)])
