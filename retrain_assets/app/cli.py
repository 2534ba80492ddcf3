"""The ``retrain`` command: init, ingest, label, materialize, status, dag, reproduce, demo, ui.

Heavy libraries (mlflow, great_expectations, sklearn, dagster) are imported inside the commands that need them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from retrain_assets.app import render
from retrain_assets.core.config import ConfigError, RetrainConfig, load_config, resolve_config_path


class UtcDateTime(click.ParamType):
    """An ISO 8601 date or date-time as an aware UTC datetime: ``2026-01-05``, ``2026-01-05T23:00:00``,
    ``2026-01-05T23:00:00Z`` or ``2026-01-05T23:00:00+01:00``. An offset converts to UTC; a time without
    one is UTC, as every time the project records is."""

    name = "datetime"

    def convert(self, value, param, ctx) -> dt.datetime:
        if isinstance(value, dt.datetime):
            moment = value
        else:
            text = str(value).strip()
            try:  # Python 3.10's fromisoformat does not read "Z"
                moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
            except ValueError:
                self.fail(
                    f"{value!r} is not an ISO 8601 date or time, e.g. 2026-01-05, 2026-01-05T23:00:00, "
                    "2026-01-05T23:00:00Z or 2026-01-05T23:00:00+01:00",
                    param,
                    ctx,
                )
        return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


UTC_DATETIME = UtcDateTime()


def _load(ctx: click.Context) -> RetrainConfig:
    try:
        return load_config(ctx.obj["config"])
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Project file (default: $RETRAIN_CONFIG, else ./retrain.yaml).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Optional[Path]) -> None:
    """Keep a scikit-learn model fresh on Delta Lake data, orchestrated by Dagster."""
    ctx.obj = {"config": resolve_config_path(config_path)}


@main.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="Column the model predicts.")
@click.option("--task", type=click.Choice(["classification", "regression"]), default=None, help="Default: inferred.")
@click.option("--timestamp", default=None, help="Event-time column (gives data ranges and, later, backfills).")
@click.option("--id", "id_column", default=None, help="Row id column (keeps the holdout split stable).")
@click.option("--project", default=None, help="Project name (default: the folder's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@click.pass_context
def init(ctx, data, target, task, timestamp, id_column, project, force) -> None:
    """Write retrain.yaml inferred from a CSV/Parquet sample DATA, then say each choice made; review it
    before the first run."""
    from retrain_assets.core.inference import infer_config_with_notes, render_config
    from retrain_assets.core.landing import read_batch_file

    path: Path = ctx.obj["config"]
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    try:
        frame = read_batch_file(data)
        inferred = infer_config_with_notes(
            frame, target, task=task, timestamp=timestamp, id_column=id_column, project=project or path.parent.name
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    config = inferred.config
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(config, str(data)))
    click.echo(f"wrote {path}: {len(config.data.columns)} columns, task {config.data.task}, target {target!r}")
    for note in inferred.notes:
        click.echo(f"  {note}")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--as-of",
    "landed_at",
    type=UTC_DATETIME,
    default=None,
    help="Replaying history: when these batches originally landed (ISO 8601; no offset means UTC); backfills "
    "time-travel by it.",
)
@click.pass_context
def ingest(ctx, files, landed_at) -> None:
    """Append each CSV/Parquet FILE to raw_data as one new Delta version (refused files go to quarantine)."""
    from retrain_assets.app.execution import ingest as ingest_one
    from retrain_assets.app.instance import project_instance

    config = _load(ctx)
    with project_instance(config) as instance:
        refused = _land_each(files, lambda path: ingest_one(config, instance, path, landed_at), "raw_data", "rows")
    if refused:
        raise click.ClickException(f"{refused} of {len(files)} files refused; nothing of them was written")


def _land_each(files, land, table: str, unit: str) -> int:
    """Land each file with ``land`` (one version of ``table`` each), saying what became of it; how many were
    refused (a refused file is refused whole, and the others still land)."""
    from retrain_assets.core.landing import BatchRefused

    refused = 0
    for path in files:
        try:
            result = land(path)
        except BatchRefused as exc:
            refused += 1
            click.echo(f"refused {exc}", err=True)
            continue
        click.echo(f"{result.source}: {table} version {result.version} ({result.rows} {unit})")
    return refused


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--feed",
    is_flag=True,
    help="Then land the predictions labelled since the last feed as one raw_data batch (features + label).",
)
@click.pass_context
def label(ctx, files, feed) -> None:
    """Land ground truth for served predictions: each CSV/Parquet FILE (prediction_id and/or the data.id
    column, the label in the target column or `label`, optionally labeled_at) becomes one version of the
    labels table; a bad file is refused whole and quarantined, as ingest refuses a batch."""
    from retrain_assets.core.labels import land_labels

    if not files and not feed:
        raise click.UsageError("give labels FILE... to land, --feed, or both")
    config = _load(ctx)
    refused = _land_each(files, lambda path: land_labels(config, path), "labels", "labels")
    if feed:
        _feed(config)
    if refused:
        raise click.ClickException(f"{refused} of {len(files)} files refused; nothing of them was written")


def _feed(config: RetrainConfig) -> None:
    """`retrain label --feed`, under the project lock so that two feeds never land the same labels twice."""
    from retrain_assets.app.execution import feed_labels
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.core import feedback
    from retrain_assets.core.landing import BatchRefused
    from retrain_assets.core.locking import ProjectBusy

    try:
        with project_lock(config, "retrain label --feed"), project_instance(config) as instance:
            click.echo(feed_labels(config, instance))
    except (ProjectBusy, feedback.FeedRefused, BatchRefused) as exc:
        raise click.ClickException(f"feed: {exc}") from None


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def validate(ctx, files, as_json) -> None:
    """Run the validation suite on each FILE without ingesting it, judged as a batch landing now: every
    rule's outcome, hard or expected. Exit status 1 when a hard rule fails (or ingest would refuse the file)."""
    from retrain_assets.core.batches import validate_file
    from retrain_assets.core.validation import check_results

    config = _load(ctx)
    report, rejected = [], 0
    for path in files:
        try:
            outcomes = validate_file(config, path)
        except (ValueError, OSError) as exc:
            rejected += 1
            report.append({"file": str(path), "refused": str(exc), "accepted": False, "rules": []})
            continue
        accepted = not any(verdict.rejects for verdict in check_results(outcomes).values())
        rejected += not accepted
        rules = [
            {
                "kind": o.kind,
                "check": o.check,
                "column": o.column,
                "rule": o.rule,
                "passed": o.passed,
                "severity": o.severity,
                "failing_count": o.failing_count,
                "failing_percent": o.failing_percent,
                "sample": o.sample,
                "detail": o.detail,
            }
            for o in outcomes
        ]
        report.append({"file": str(path), "refused": None, "accepted": accepted, "rules": rules})
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render.describe_validation(report))
    if rejected:
        sys.exit(1)


@main.command()
@click.argument("versions", nargs=-1, required=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def revalidate(ctx, versions, as_json) -> None:
    """Validate rejected raw_data VERSIONS again with the current rules (after fixing retrain.yaml). Both
    verdicts stay in the validation log; a batch that passes now becomes training data for the next run.
    Nothing in raw_data is rewritten."""
    from retrain_assets.app.execution import revalidate as run
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.core.batches import RevalidationRefused
    from retrain_assets.core.locking import ProjectBusy

    config = _load(ctx)
    try:
        with project_lock(config, "retrain revalidate"), project_instance(config) as instance:
            outcomes = run(config, instance, list(versions))
    except (ProjectBusy, RevalidationRefused) as exc:
        raise click.ClickException(str(exc)) from None
    report: list[dict[str, Any]] = [
        {
            "raw_version": o.raw_version,
            "rows": o.rows,
            "accepted": o.accepted,
            "checks": {name: verdict._asdict() for name, verdict in o.checks.items() if not verdict.passed},
        }
        for o in outcomes
    ]
    click.echo(json.dumps(report, indent=2) if as_json else render.describe_revalidation(report))
    if not all(entry["accepted"] for entry in report):
        sys.exit(1)


@main.command()
@click.option("--force", is_flag=True, help="Run every asset, stale or not.")
@click.pass_context
def materialize(ctx, force) -> None:
    """Run what is stale in the retraining job on the latest raw_data version, in process, as `dvc repro` does:
    the data stage after a new raw_data version or a change of validation rules, the model stage after that
    or a change of the model's code or params. Says what it skipped and why; --force runs everything."""
    from retrain_assets.app.execution import materialize as run, plan_materialize
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.app.project import load_project
    from retrain_assets.core.locking import ProjectBusy

    config = _load(ctx)
    try:
        with project_lock(config, "retrain materialize"), project_instance(config) as instance:
            project = load_project(ctx.obj["config"], config)
            plan = None if force else plan_materialize(project, instance)
            if plan is not None:
                click.echo(render.describe_plan(plan))
                if not plan.run:
                    return
            outcome = run(project, instance, assets=plan.run if plan is not None else None)
    except ProjectBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render.describe_run(outcome, config.promotion.metric))
    if not outcome.success:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--check",
    is_flag=True,
    help="Only whether the model's code or params are stale (a tick would retrain): exit 1 if so, 0 if not, 2 "
    "when the code cannot be read. Quick: for a pre-commit hook or a CI step.",
)
@click.pass_context
def status(ctx, as_json, check) -> None:
    """Where things stand: raw table, last processed version, files refused at ingest, champion, last decision,
    checks."""
    config = _load(ctx)
    if check:
        _check(config, as_json)
        return
    from retrain_assets.app.instance import project_instance
    from retrain_assets.app.status import project_status

    with project_instance(config) as instance:
        report = project_status(config, ctx.obj["config"], instance)
    click.echo(json.dumps(report, indent=2) if as_json else render.describe_status(report))


def _check(config: RetrainConfig, as_json: bool) -> None:
    """`retrain status --check` (see :func:`status.model_code_state`: no Dagster, and MLflow only when the
    snapshot of the registry cannot be trusted)."""
    from retrain_assets.app.status import model_code_state
    from retrain_assets.core.usercode import UserCodeError

    try:
        state = model_code_state(config)
    except UserCodeError as exc:
        click.echo(json.dumps({"state": "unreadable", "reason": str(exc)}) if as_json else str(exc), err=not as_json)
        sys.exit(2)
    click.echo(json.dumps(state.as_dict(), indent=2) if as_json else render.describe_check(state.as_dict()))
    if state.stale:
        sys.exit(1)


@main.command()
@click.option("--mermaid", is_flag=True, help="A Mermaid flowchart to paste into a ```mermaid block in markdown.")
@click.pass_context
def dag(ctx, mermaid) -> None:
    """The asset lineage, as the project's definitions declare it: each asset, what it reads, its checks
    (blocking ones marked). Reads no data: needs neither MLflow nor the Dagster instance."""
    from retrain_assets.app.project import load_project
    from retrain_assets.app.status import asset_lineage

    config = _load(ctx)
    assets = asset_lineage(load_project(ctx.obj["config"], config).defs)
    click.echo(render.lineage_mermaid(assets) if mermaid else render.describe_lineage(assets))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def tick(ctx, as_json) -> None:
    """Evaluate every sensor and due schedule once and run what they request, in process (for cron/CI)."""
    from retrain_assets.app.ticking import quiet_since_last_tick

    config = _load(ctx)
    say = lambda text: click.echo(f"warning: {text}", err=True)  # noqa: E731 - stderr keeps --json output JSON
    if quiet_since_last_tick(config, ctx.obj["config"], dt.datetime.now(dt.timezone.utc), say):
        reason = "raw_data unchanged since the last tick and the schedule not due"
        click.echo(
            json.dumps({"launched": [], "skipped": {"all": reason}}) if as_json else f"nothing triggered: {reason}"
        )
        return
    from retrain_assets.app.instance import project_instance
    from retrain_assets.app.project import load_project
    from retrain_assets.app.ticking import report_stuck, tick as run_tick
    from retrain_assets.core.locking import ProjectBusy

    try:  # the tick takes the project lock itself
        with project_instance(config) as instance:
            report = run_tick(load_project(ctx.obj["config"], config), instance)
    except ProjectBusy as exc:  # another process is doing the work: not an error, unless it has been too long
        stuck = report_stuck(config, exc.holder)
        message = f"{exc}; {stuck}" if stuck else str(exc)
        click.echo(
            json.dumps({"launched": [], "skipped": {"all": message}}) if as_json else f"nothing launched: {message}"
        )
        if stuck:
            sys.exit(2)
        return
    metric = config.promotion.metric
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else render.describe_tick(report, metric))
    if any(launch.outcome and not launch.outcome.success for launch in report.launches):
        sys.exit(1)


@main.command()
@click.option(
    "--start",
    type=UTC_DATETIME,
    required=True,
    help="First partition: an ISO 8601 date, or a time whose UTC date counts.",
)
@click.option(
    "--end", type=UTC_DATETIME, required=True, help="Last partition: an ISO 8601 date, or a time whose UTC date counts."
)
@click.option(
    "--no-run-cache", is_flag=True, help="Train every partition, even one whose training inputs an earlier one had."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def backfill(ctx, start, end, no_run_cache, as_json) -> None:
    """Retrain as of every history partition from START to END (Delta time travel), then the backtest."""
    from retrain_assets.app.execution import backfill as run_backfill
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.app.project import load_project
    from retrain_assets.core.locking import ProjectBusy

    config = _load(ctx)

    def progress(index, total, outcome) -> None:
        if not as_json:
            click.echo(render.backfill_progress(index, total, outcome, config.promotion.metric))

    try:
        with project_lock(config, "retrain backfill"), project_instance(config) as instance:
            project = load_project(ctx.obj["config"], config)
            outcomes, rows = run_backfill(
                project, instance, start.date(), end.date(), progress, run_cache=not no_run_cache
            )
    except ProjectBusy as exc:
        raise click.ClickException(str(exc)) from None
    if not outcomes:
        raise click.ClickException(
            f"no {config.history.partitions} partition starts between {start.date()} and {end.date()}"
        )
    report = config.reports_dir / "backtest.html"
    if as_json:
        payload = {"partitions": [o.__dict__ for o in outcomes], "backtest": rows, "report": str(report)}
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(render.backfill_summary(rows, report))
    if not all(outcome.success for outcome in outcomes):
        sys.exit(1)


@main.command()
@click.argument("version")
@click.option(
    "--allow-code-change",
    is_flag=True,
    help="Retrain even when the code on disk differs from the version's, and report how far its predictions moved.",
)
@click.option(
    "--at-commit",
    is_flag=True,
    help="When the working tree's code differs, read the code from the git commit the version recorded "
    "(exported to a temporary folder; the checkout is not touched).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def reproduce(ctx, version, allow_code_change, at_commit, as_json) -> None:
    """Retrain registered model VERSION (a number, or an alias such as champion) from its recorded
    validated-features version, params and seed, and prove it is the same model: the same hash of its
    predictions on its holdout and the same metrics. Refuses, naming the files, when the code on disk differs
    from the version's. Exit status 0 only on identity. Logs and registers nothing."""
    from retrain_assets.app.instance import quiet_mlflow
    from retrain_assets.core.registry import Registry
    from retrain_assets.core.reproduce import CannotReproduce, reproduce as run
    from retrain_assets.core.usercode import UserCodeError

    config = _load(ctx)
    quiet_mlflow()
    try:
        found = run(config, Registry(config), version, allow_code_change=allow_code_change, at_commit=at_commit)
    except (CannotReproduce, UserCodeError) as exc:
        raise click.ClickException(str(exc)) from None
    payload = {**found.__dict__, "identical": found.identical}
    click.echo(json.dumps(payload, indent=2, default=str) if as_json else render.describe_reproduction(found))
    if not found.identical:
        sys.exit(1)


@main.command()
@click.option("--to", "version", default=None, help="Registered model version (default: the previous champion).")
@click.option("--reason", default="manual rollback", show_default=True, help="Why; recorded on the model version.")
@click.option("--force", is_flag=True, help="Also to a version that was never champion (e.g. a rejected candidate).")
@click.pass_context
def rollback(ctx, version, reason, force) -> None:
    """Point the champion alias back at the previous (or given) model version."""
    from retrain_assets.app.execution import rollback_champion
    from retrain_assets.app.instance import project_instance, project_lock
    from retrain_assets.core.locking import ProjectBusy

    config = _load(ctx)
    try:
        with project_lock(config, "retrain rollback"), project_instance(config) as instance:
            event = rollback_champion(config, instance, version, reason, force=force)
    except (ValueError, ProjectBusy) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(event["text"])


@main.command()
@click.option(
    "--vacuum/--no-vacuum",
    default=True,
    show_default=True,
    help="Delete the files that commits removed, as far as no version the project still reads needs them.",
)
@click.option(
    "--retention-hours",
    type=click.IntRange(min=0),
    default=None,
    help="Vacuum only files removed more than N hours ago (default: the shortest that keeps every version the "
    "history, reproduce and running jobs read; a shorter one is refused and nothing is changed).",
)
@click.pass_context
def maintain(ctx, vacuum, retention_hours) -> None:
    """Keep the Delta tables quick to open: a checkpoint on each, small files of validation_log and predictions
    compacted, commit logs kept, replaced files vacuumed. Runs beside ingest and runs; one line per table."""
    from retrain_assets.app.instance import quiet_mlflow
    from retrain_assets.core import maintenance

    if retention_hours is not None and not vacuum:
        raise click.UsageError("--retention-hours is the vacuum's; leave out --no-vacuum")
    config = _load(ctx)
    quiet_mlflow()  # the registry is read only when validated_features has files to vacuum
    try:
        tables = maintenance.plan(config, vacuum=vacuum, retention_hours=retention_hours)
    except maintenance.RetentionRefused as exc:
        raise click.ClickException(str(exc)) from None
    for table in maintenance.maintain(config, tables):
        click.echo(table.describe())


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"))
@click.option("--fresh", is_flag=True, help="Start over: remove a previous demo in --dir first.")
@click.option("--days", default=10, show_default=True, help="Daily batches to ingest.")
@click.option("--rows-per-day", default=1000, show_default=True)
@click.option("--history-weeks", default=8, show_default=True, help="Weeks of past data landed before the live days.")
def demo(directory, fresh, days, rows_per_day, history_weeks) -> None:
    """The whole product on synthetic churn data: history, daily batches through `retrain tick` (one bad,
    the last ones drifted), a backfill, a rollback and the status."""
    from retrain_assets.app.demo import run_demo

    try:
        run_demo(
            directory, fresh=fresh, days=days, rows_per_day=rows_per_day, history_weeks=history_weeks, echo=click.echo
        )
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--read-only", is_flag=True, help="Serve Dagster's read-only UI: nothing can be launched or changed.")
@click.option("--no-daemon", is_flag=True, help="Do not run the daemon here (it runs as its own service).")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Another Host header to answer to, e.g. the name an authenticating proxy forwards (repeatable).",
)
@click.pass_context
def ui(ctx, port, host, read_only, no_daemon, allowed_hosts) -> None:
    """The Dagster UI and daemon on this project's storage home; requests a foreign web page could send
    (another Origin, a non-JSON GraphQL POST, a mutation over GET) are refused."""
    from retrain_assets.app.instance import prepare_dagster_home
    from retrain_assets.app.webui import serve

    config = _load(ctx)
    home = prepare_dagster_home(config)
    os.environ["RETRAIN_CONFIG"] = str(ctx.obj["config"])
    mode = " (read-only)" if read_only else ""
    click.echo(f"Dagster UI{mode} on http://{host}:{port} (DAGSTER_HOME={home}); Ctrl-C stops it")
    serve(config, host, port, read_only=read_only, with_daemon=not no_daemon, allowed_hosts=allowed_hosts)


@main.command()
@click.option("--host", default=None, help="Address to bind (default serving.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default serving.port, 5005).")
@click.pass_context
def serve(ctx, host, port) -> None:
    """Serve the champion over HTTP (MLflow's scoring protocol), journal every prediction into the
    predictions table, and swap in the new champion when the alias moves."""
    from retrain_assets.app.serve import serve as run_server

    config = _load(ctx)
    host, port = host or config.serving.host, port or config.serving.port
    click.echo(f"serving the champion of {config.project} on http://{host}:{port}; Ctrl-C stops it")
    run_server(config, host, port)
