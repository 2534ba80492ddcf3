"""``retrain demo``: the main job on the embedded synthetic churn data, one day at a time."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Callable

from retrain_assets import lake, synthetic
from retrain_assets.config import load_config

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
    """One CSV per day; day ``bad_day`` is corrupted and the last two days have drifted."""
    data = directory / "data"
    data.mkdir(exist_ok=True)
    files = []
    drifted = synthetic.churn_days(START, days, rows_per_day, bad_day=bad_day, drift_from_day=days - 2, drift=0.8)
    for day, frame in drifted:
        path = data / f"churn-{day.isoformat()}{'-bad' if day == START + dt.timedelta(bad_day) else ''}.csv"
        frame.to_csv(path, index=False)
        files.append((day, path))
    return files


def run_demo(directory: Path, fresh: bool, days: int, rows_per_day: int, echo: Callable[[str], None] = print) -> list[dict]:
    """Init from day one's sample, then for each day ingest its batch and materialize; print a table.

    The story: a first champion, candidates that do not beat it by the margin, a bad batch the blocking
    checks stop (it stays in raw_data, the champion is untouched), then drifted days on which the champion
    slips and a candidate trained on the new data takes over."""
    from retrain_assets.inference import infer_config, render_config
    from retrain_assets.runner import materialize, project_instance

    if days < 2:
        raise ValueError("--days must be at least 2 (one bad day among good ones)")
    directory = directory.resolve()
    prepare(directory, fresh)
    bad_day = min(3, days - 1)
    files = write_batches(directory, days, rows_per_day, bad_day)
    config_path = directory / "retrain.yaml"
    sample = lake.read_batch_file(files[0][1])
    inferred = infer_config(sample, "churned", timestamp="event_time", id_column="customer_id", project="churn")
    for column, (low, high) in BUSINESS_RANGES.items():  # the review `retrain init` asks for
        rule = inferred.validation.columns[column]
        rule.min, rule.max = low, high
    config_path.write_text(render_config(inferred, files[0][1].name))
    echo(f"retrain init {files[0][1].name} --target churned -> {config_path} (ranges reviewed: {BUSINESS_RANGES})")
    config = load_config(config_path)
    metric = config.promotion.metric
    rows, champion_version = [], "-"
    with project_instance(config) as instance:
        for day, path in files:
            ingested = lake.ingest_file(config, path)
            outcome = materialize(config_path, instance)
            evaluation, decision = outcome.evaluation or {}, outcome.decision or {}
            champion = evaluation.get("champion") or {}
            row = {
                "day": day.isoformat(),
                "delta_version": ingested.version,
                "rows": ingested.rows,
                "checks": f"{sum(p for p, _ in outcome.checks.values())}/{len(outcome.checks)}",
                "candidate": evaluation.get("candidate", {}).get(metric),
                "champion": champion.get(metric),
                "promoted": "yes" if decision.get("promoted") else "no",
                "champion_version": decision.get("champion_version") or champion_version,
            }
            champion_version = row["champion_version"]
            rows.append(row)
            echo(f"day {row['day']}, " + outcome.describe(metric))
    echo("")
    echo(format_table(rows, metric))
    echo("")
    echo(f"MLflow store:  {config.tracking_uri}  (artifacts under {config.mlflow_dir / 'artifacts'})")
    echo(f"Dagster home:  {config.dagster_home}")
    echo(f"Delta tables:  {config.lake_uri}")
    echo(f"Open the UI:   .venv/bin/retrain --config {config_path} ui   (then http://127.0.0.1:3000)")
    echo(f"Status:        .venv/bin/retrain --config {config_path} status")
    return rows


def format_table(rows: list[dict], metric: str) -> str:
    def number(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = ["day", "delta version", "rows", "checks passed", f"candidate {metric}", f"champion {metric}", "promoted", "champion"]
    body = [
        [r["day"], str(r["delta_version"]), str(r["rows"]), r["checks"], number(r["candidate"]), number(r["champion"]),
         r["promoted"], f"v{r['champion_version']}" if r["champion_version"] != "-" else "-"]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    render = lambda line: "  ".join(cell.ljust(width) for cell, width in zip(line, widths))  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, body)])
