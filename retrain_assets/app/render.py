"""The text `retrain` and `retrain demo` print, built from the reports and outcomes the app returns.

Pure functions of their arguments, and light: the CLI imports this module on every call, so it imports no
Dagster and nothing heavy. What is missing is said in words or left out, never printed as ``None``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from retrain_assets.core.validation import CHECKS

if TYPE_CHECKING:
    from retrain_assets.app.execution import MaterializePlan, PartitionOutcome, RunOutcome
    from retrain_assets.app.status import LineageAsset
    from retrain_assets.app.ticking import TickReport
    from retrain_assets.core.reproduce import Reproduction


def describe_run(outcome: "RunOutcome", metric: str) -> str:
    """A few lines a person reads about one run: version, checks, scores, decision."""
    read = f"raw_data v{outcome.raw_version}" if outcome.raw_version is not None else "no raw_data version read"
    lines = [f"{read}: {outcome.trigger} run {'succeeded' if outcome.success else 'FAILED'} ({outcome.run_id})"]
    failed = {name: check for name, check in outcome.checks.items() if not check.passed}
    lines.append(f"  checks: {len(outcome.checks) - len(failed)}/{len(outcome.checks)} passed")
    lines += [f"  {'FAILED' if c.stopped_the_run else 'WARNING'} {name}: {c.message}" for name, c in failed.items()]
    if outcome.reason is not None:
        retrained = "retrained" if outcome.fired != "none" else "not retrained"
        lines.append(f"  {retrained}: {outcome.reason}")
    if outcome.evaluation:
        candidate, champion = outcome.evaluation["candidate"], outcome.evaluation["champion"]
        lines.append(
            f"  candidate v{outcome.evaluation['candidate_version']} {metric} {candidate[metric]:.4f}"
            + (f", champion {champion[metric]:.4f} on the same holdout" if champion else ", no champion yet")
        )
    if outcome.decision:
        verdict = "promoted" if outcome.decision["promoted"] else "not promoted"
        lines.append(f"  {verdict}: {outcome.decision['reason']}; champion is v{outcome.decision['champion_version']}")
    if outcome.error and not outcome.blocking_failures:
        lines.append(f"  error: {outcome.error}")
    return "\n".join(lines)


def describe_tick(report: "TickReport", metric: str) -> str:
    """`retrain tick`: each launch and what became of it, or why nothing was triggered."""
    if not report.launches:
        return "nothing triggered: " + "; ".join(f"{name}: {why}" for name, why in report.skips.items())
    lines = []
    for launch in report.launches:
        if launch.outcome is None:
            lines.append(f"{launch.source}: skipped ({launch.skipped})")
        else:
            lines.append(f"{launch.source} (run_key {launch.run_key}): {describe_run(launch.outcome, metric)}")
    return "\n".join(lines)


def describe_validation(report: list[dict]) -> str:
    """`retrain validate`, per file: one line per rule (failures first, with count and sample), then the verdict."""
    lines = []
    for entry in report:
        name = Path(entry["file"]).name
        if entry["refused"]:
            lines.append(f"{name}: REFUSED, ingest would not land it: {entry['refused']}")
            continue
        rules = sorted(entry["rules"], key=lambda rule: rule["passed"])
        for rule in rules:
            outcome = "passed" if rule["passed"] else ("FAILED" if rule["severity"] == "error" else "warn")
            detail = rule["detail"].removeprefix(name + ": ")
            lines.append(f"  {rule['kind']:<8} {outcome:<6} {rule['check']}: {detail}")
        failed = [rule for rule in rules if not rule["passed"]]
        hard = sum(rule["severity"] == "error" for rule in failed)
        verdict = "REJECTED" if hard else "accepted"
        lines.insert(
            len(lines) - len(rules),
            f"{name}: {verdict}: {len(rules) - len(failed)} of {len(rules)} rules "
            f"passed, {hard} hard failed, {len(failed) - hard} warned",
        )
    return "\n".join(lines)


def describe_revalidation(report: list[dict[str, Any]]) -> str:
    """`retrain revalidate`: per raw_data version, accepted now or still rejected and by which hard rules."""
    lines = []
    for entry in report:
        version = entry["raw_version"]
        if entry["accepted"]:
            lines.append(
                f"raw_data v{version}: accepted now ({entry['rows']} rows appended to "
                "validated_features; the next training run uses them)"
            )
        else:
            failed = "; ".join(c["message"] for c in entry["checks"].values() if c["severity"] == "error")
            lines.append(f"raw_data v{version}: still rejected: {failed}")
    return "\n".join(lines)


def describe_current_code(code: dict) -> str:
    """One line on the model's current code and params against the champion (see ``status.current_code``)."""
    state, current = code["state"], f"model code {code['code_hash']}"
    if state == "champion":
        return f"{current}: the champion (v{code['version']}) was built from it"
    if state == "lost":
        return f"{current}: tried as v{code['version']} on the current data and lost: {code['reason']}"
    if state == "untried":
        kinds = ", ".join(change["kind"] for change in code.get("changes", [])) or "code_changed or params_changed"
        return f"{current}: not tried yet; the next tick retrains ({kinds})"
    if state == "no_champion":
        return f"{current}: {code['reason']}"
    return f"model code cannot be read: {code['reason']}"


def describe_check(code: dict) -> str:
    """`retrain status --check`: whether a tick would retrain because of the code or params, and why."""
    lines = [describe_current_code(code)]
    lines += [f"  {change['kind']}: {change['message']}" for change in code.get("changes", [])]
    if code["state"] in ("champion", "lost"):
        lines.append("up to date: a tick retrains nothing for the code or params")
    return "\n".join(lines)


def describe_status(report: dict) -> str:
    """`retrain status` for a person."""
    raw, champion, decision = report["raw_table"], report["champion"], report["last_decision"]
    processed = report["last_processed_version"]
    lines = [
        f"raw_data: {raw['uri']} version {raw['version']} ({raw['rows']} rows)"
        if raw["version"] is not None
        else f"raw_data: no versions yet ({raw['uri']}; land a batch with `retrain ingest FILE`)",
        f"last processed raw version: {processed if processed is not None else 'none yet'}",
    ]
    if report["lock"]:
        lines.append(f"busy: the project lock is held by {report['lock']['description']}")
    for batch in report["rejected_batches"][-5:]:
        lines.append(
            f"rejected raw_data v{batch['raw_version']} ({batch['rows']} rows, kept; `retrain revalidate "
            f"{batch['raw_version']}` after fixing the rules): {', '.join(batch['failed_checks'])}"
        )
    for refusal in report["refused_files"][-5:]:
        kept = f" (kept in {refusal['quarantined']})" if refusal["quarantined"] else ""
        lines.append(f"refused {Path(refusal['file']).name} at {refusal['at']}: {refusal['reason']}{kept}")
    if champion:
        known = {
            "delta v": champion["delta_version"],
            "trained ": champion["trained_at"],
            "params ": champion["params_hash"],
            "code ": champion["code_version"],
        }
        provenance = ", ".join(f"{label}{value}" for label, value in known.items() if value is not None)
        provenance = f" ({provenance})" if provenance else ""
        lines.append(f"champion: {champion['name']} v{champion['version']}{provenance}")
        if champion["metrics"]:
            lines.append("  metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(champion["metrics"].items())))
    else:
        lines.append("champion: none")
    if decision:
        verdict = "promoted" if decision["promoted"] else "rejected"
        why = f": {decision['reason']}" if decision["reason"] else ""
        lines.append(f"last decision: candidate v{decision['candidate_version']} {verdict}{why}")
    if report.get("current_code"):
        lines.append(describe_current_code(report["current_code"]))
    run = report["last_run"]
    if run:
        read = f" on raw_data v{run['delta_version']}" if run["delta_version"] is not None else ""
        said = "; ".join(text for text in (run["reason"], run["error"] and f"error: {run['error']}") if text)
        lines.append(f"last run: {run['status']} ({run['trigger']}{read})" + (f": {said}" if said else ""))
    for check in report["latest_checks"]:
        stopped = check["blocking"] and check["severity"] == "ERROR"
        verdict = "passed" if check["passed"] else ("FAILED" if stopped else "WARNING")
        message = f" - {check['message']}" if check["message"] else ""
        lines.append(f"check {check['asset']}/{check['name']}: {verdict}{message}")
    for asset, causes in report["stale_assets"].items():
        lines.append(f"stale: {asset} ({'; '.join(causes)})")
    lines += [f"event {event['at']} {event['kind']}: {event['text']}" for event in report["events"][-5:]]
    if report["last_report"]:
        lines.append(f"latest evaluation report: {report['last_report']}")
    lines += [f"warning: {text}" for text in report.get("state_warnings", [])]
    return "\n".join(lines)


def describe_lineage(assets: list["LineageAsset"]) -> str:
    """`retrain dag`: the lineage drawn as trees from each root asset, then one line per asset, upstream first,
    with what it reads and its checks. ``assets`` come upstream first (:func:`status.asset_lineage`)."""
    lines = _lineage_trees(assets)
    lines += ["", "assets, upstream first (<- what each reads); a [blocking] check stops the run when it fails:"]
    width = max(len(asset.name) for asset in assets) if assets else 0
    for asset in assets:
        reads = f"  <- {', '.join(asset.upstream)}" if asset.upstream else ""
        lines.append(f"  {asset.name.ljust(width)}  group {asset.group}{reads}")
        if asset.checks:
            marks = ", ".join(f"{check.name} [blocking]" if check.blocking else check.name for check in asset.checks)
            lines += textwrap.wrap(marks, 116, initial_indent="      checks: ", subsequent_indent=" " * 14)
    return "\n".join(lines)


def _lineage_trees(assets: list["LineageAsset"]) -> list[str]:
    """Each root with its dependents below it, ``tree``-style. Every dependency is one branch: an asset
    reached again (a second upstream) is named with ``(see above)`` instead of being drawn twice."""
    dependents: dict[str, list[str]] = {asset.name: [] for asset in assets}
    for asset in assets:
        for parent in asset.upstream:
            dependents[parent].append(asset.name)
    drawn: set[str] = set()
    lines: list[str] = []

    def draw(name: str, lead: str, branch: str, rest: str) -> None:
        if name in drawn:
            lines.append(f"{lead}{branch}{name} (see above)")
            return
        drawn.add(name)
        lines.append(f"{lead}{branch}{name}")
        children = dependents[name]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            draw(child, lead + rest, "`-- " if last else "|-- ", "    " if last else "|   ")

    for asset in assets:
        if not asset.upstream:
            draw(asset.name, "", "", "")
    return lines


def lineage_mermaid(assets: list["LineageAsset"]) -> str:
    """`retrain dag --mermaid`: a Mermaid flowchart for a ```` ```mermaid ```` block in GitHub markdown, one
    subgraph per group and one edge per dependency; a node says how many checks it has and how many block."""
    ids = {asset.name: _mermaid_id(asset.name) for asset in assets}
    lines = ["graph TD"]
    for group in dict.fromkeys(asset.group for asset in assets):
        lines.append(f'  subgraph group_{_mermaid_id(group)}["{_mermaid_text(group)}"]')
        for asset in (a for a in assets if a.group == group):
            label = _mermaid_text(asset.name)
            if asset.checks:
                blocking = sum(check.blocking for check in asset.checks)
                label += f"<br/>{len(asset.checks)} check{'s' if len(asset.checks) > 1 else ''}"
                label += f", {blocking} blocking" if blocking else ""
            lines.append(f'    {ids[asset.name]}["{label}"]')
        lines.append("  end")
    lines += [f"  {ids[parent]} --> {ids[asset.name]}" for asset in assets for parent in asset.upstream]
    return "\n".join(lines)


def _mermaid_id(name: str) -> str:
    """A node id Mermaid reads as one (an asset key's ``/`` or ``-`` would not be; ``end`` closes a subgraph)."""
    safe = re.sub(r"\W", "_", name)
    return f"{safe}_" if safe.lower() == "end" else safe


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def partition_line(row: dict, metric: str, with_rows: bool = True) -> str:
    """One backfilled partition: its version, training rows, in-time and out-of-time scores (the newest has
    no later data)."""
    oot = row["oot_metrics"].get(metric)
    later = f"{oot:.4f}" if oot is not None else "- (no later data)"
    rows = f", {row['train_rows']} rows" if with_rows else ""
    reused = f", reused the model of run {row['reused_from'][:8]} (same inputs)" if row.get("reused_from") else ""
    return f"raw_data v{row['delta_version']}{rows}, {metric} {row['metrics'][metric]:.4f}, out-of-time {later}{reused}"


def backfill_progress(index: int, total: int, outcome: "PartitionOutcome", metric: str, with_rows: bool = True) -> str:
    """The line `retrain backfill` prints as each partition finishes."""
    if outcome.success and outcome.row is not None:  # a partition that succeeded has its row
        return f"[{index}/{total}] {outcome.partition}: {partition_line(outcome.row, metric, with_rows)}"
    return f"[{index}/{total}] {outcome.partition}: FAILED {outcome.error}"


def backfill_summary(rows: Optional[list[dict]], report: Path) -> str:
    return f"backtest of {len(rows or [])} partitions: {report}"


def demo_row(
    label: str,
    version: Optional[int],
    rows: int,
    outcome: "RunOutcome",
    metric: str,
    champion_version: Optional[str],
) -> dict:
    """One line of the demo's table from a run's outcome and the champion's version after it; ``label`` is the
    day it ran on, or what started it."""
    if outcome.live is not None:
        return _live_demo_row(label, outcome.live, metric, champion_version)
    evaluation, decision = outcome.evaluation or {}, outcome.decision or {}
    warnings = sum(1 for c in outcome.checks.values() if not c.passed and not c.stopped_the_run)
    if outcome.blocking_failures:
        verdict = "batch rejected" if any(n in CHECKS for n in outcome.blocking_failures) else "candidate rejected"
    elif outcome.fired in ("none", ""):
        verdict = "validated only"
    elif decision:
        verdict = (
            f"promoted v{decision['champion_version']}"
            if decision["promoted"]
            else f"kept (v{evaluation['candidate_version']} lost)"
        )
    else:
        verdict = "failed"
    passed = f"{sum(c.passed for c in outcome.checks.values())}/{len(outcome.checks)}"
    return {
        "day": label,
        "delta_version": version,
        "rows": rows,
        "checks": passed + (f" ({warnings} warn)" if warnings else ""),
        "trigger": outcome.fired or "-",
        "decision": verdict,
        "candidate": evaluation.get("candidate", {}).get(metric),
        "champion": (evaluation.get("champion") or {}).get(metric),
        "champion_version": f"v{champion_version}" if champion_version is not None else "-",
    }


def _live_demo_row(label: str, day: dict, metric: str, champion_version: Optional[str]) -> dict:
    """The demo's line for a day of ``live_performance``: the served rows, the champion's live metric on the
    labelled ones, and the triggers it fired."""
    judged, drifted = day["champion_trigger"], day["champion_drift"]
    fired = [name for name, found in (("live_performance", judged), ("prediction_drift", drifted)) if found["fired"]]
    served_by = f"v{judged['champion_version']}"
    return {
        "day": label,
        "delta_version": f"predictions v{day['predictions_version']}",
        "rows": day["served_rows"],
        "checks": f"{day['labelled_rows']} labelled",
        "trigger": ",".join(fired) or "-",
        "decision": f"{served_by} behind live" if fired else f"{served_by} holds live",
        "candidate": None,
        "champion": judged.get(metric),
        "champion_version": f"v{champion_version}" if champion_version is not None else "-",
    }


def _first_kinds(fired: str, shown: int = 3) -> str:
    """The first ``shown`` of a run's comma-separated triggers, and how many more: the table stays readable."""
    kinds = fired.split(",")
    return fired if len(kinds) <= shown else ",".join(kinds[:shown]) + f" +{len(kinds) - shown}"


def format_table(rows: list[dict], metric: str) -> str:
    """The demo's table of :func:`demo_row` lines, columns padded to their widest cell."""

    def number(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = [
        "day",
        "delta v",
        "rows",
        "checks passed",
        "triggers fired",
        "decision",
        f"candidate {metric}",
        f"champion {metric}",
        "champion",
    ]
    body = [
        [
            r["day"],
            str(r["delta_version"]),
            str(r["rows"]),
            r["checks"],
            _first_kinds(r["trigger"]),
            r["decision"],
            number(r["candidate"]),
            number(r["champion"]),
            r["champion_version"],
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    render = lambda line: "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, body)])


def describe_reproduction(found: "Reproduction") -> str:
    """`retrain reproduce`: identical or not, and why."""
    head = f"model v{found.version} (trained on validated_features v{found.features_version})"
    if not found.retrained:
        files = "\n".join(f"  {line}" for line in found.differences)
        return (
            f"{head}: not reproduced, the code of {found.code_from} differs from the code it was built from:\n"
            f"{files}\npass --at-commit to read the code of the commit it recorded, or --allow-code-change to "
            "retrain with this code and see how far its predictions move"
        )
    lines = [f"code: {found.code_from}", f"holdout: {found.holdout_rows} rows"]
    lines.append(f"predictions hash: recorded {found.recorded_hash}, reproduced {found.reproduced_hash}")
    for name, value in found.recorded_metrics.items():
        again = found.reproduced_metrics.get(name)
        lines.append(f"{name}: recorded {value:.6f}, reproduced {again:.6f}" if again is not None else name)
    if found.differences:
        lines.append("retrained with other code (--allow-code-change):")
        lines.extend(f"  {line}" for line in found.differences)
    if found.changed_rows is not None:
        lines.append(f"{found.changed_rows} of {found.holdout_rows} holdout rows get another prediction")
    verdict = "identical: the same predictions and metrics" if found.identical else "NOT identical"
    return f"{head}: {verdict}\n" + "\n".join(f"  {line}" for line in lines)


def describe_plan(plan: "MaterializePlan") -> str:
    """`retrain materialize`: each asset it skips and why, then each it runs and why."""
    lines = [f"skip {name}: {why}" for name, why in plan.skipped.items()]
    lines += [f"run  {name}: {why}" for name, why in plan.why.items()]
    if not plan.run:
        lines.append("nothing is stale; --force runs everything anyway")
    return "\n".join(lines)
