"""Self-contained HTML pages a person reads: the evaluation of a candidate and a backtest over partitions.

A page is one file: a small inline stylesheet, tables for the numbers and figures as inline SVG (confusion matrices as
shaded tables), written here from numpy arrays. That costs milliseconds per page, where rendering PNGs with a plotting
library cost most of a second per retrain. numpy is imported inside the functions that draw, so importing this module
stays cheap.
"""

from __future__ import annotations

import html
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, SupportsFloat, Union

from retrain_assets.core.config import METRICS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    Values = Union[Sequence[Any], np.ndarray, pd.Series]

MINIMUM_GATE = "candidate_meets_minimum"  # checks.MINIMUM_CHECK; not imported from there, checks imports dagster
MISSING = "–"
HISTORY_ROWS = 10  # rows of the metric history table; the plot shows every entry
SCATTER_POINTS = 2_000  # most rows in a predicted-vs-actual plot: enough to see the errors, small enough for a page
HISTOGRAM_BINS = 30
CANDIDATE_COLOR = "#2563eb"
CHAMPION_COLOR = "#ea580c"
PROMOTED_COLOR = "#16a34a"
DRIFTED_COLOR = "#dc2626"
QUIET_COLOR = "#94a3b8"
HOLLOW_COLOR = "#64748b"
INK_COLOR = "#374151"
GRID_COLOR = "#e5e7eb"
AXIS_COLOR = "#9ca3af"
CHAR_WIDTH = 6.5  # pixels per character of 11px figure text, to leave room for labels
# confusion-matrix shading from no rows to the most rows in any cell of the page (classes .cm0 to .cm8)
CONFUSION_SHADES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
LIGHT_TEXT_FROM = 5  # shades from this one on are dark enough to need white counts

STYLE = (
    """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2937;
background:#f1f5f9;margin:0;line-height:1.5}
main{max-width:1100px;margin:0 auto;padding:24px 36px 48px;background:#fff;min-height:100vh}
h1{font-size:1.6rem;margin:0 0 .5rem}
h2{font-size:1.2rem;margin:2rem 0 .75rem;padding-bottom:.25rem;border-bottom:1px solid #e5e7eb}
.verdict{padding:.7rem 1rem;border-radius:6px;font-size:1.05rem;margin:1rem 0}
.verdict.promoted{background:#dcfce7;border-left:6px solid #16a34a}
.verdict.kept{background:#f1f5f9;border-left:6px solid #64748b}
.verdict.rejected{background:#fee2e2;border-left:6px solid #dc2626}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1.25rem;margin:.5rem 0;font-size:.9rem}
.facts dt{color:#64748b}.facts dd{margin:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{padding:.35rem .75rem;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
th{background:#f8fafc;font-weight:600}
th.group{text-align:center;border-left:1px solid #e5e7eb}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.nowrap{white-space:nowrap}
.scroll{overflow-x:auto}
.scroll table{font-size:.85rem}
.scroll th,.scroll td{padding:.3rem .5rem}
tr.primary td{font-weight:700}
tr.drifted td{background:#fef2f2}
.badge{display:inline-block;padding:0 .55rem;border-radius:999px;font-size:.8rem;font-weight:600}
.badge.pass{background:#dcfce7;color:#166534}.badge.fail{background:#fee2e2;color:#991b1b}
.better{color:#15803d}.worse{color:#b91c1c}
.tag{font-size:.75rem;color:#64748b;font-weight:400;margin-left:.4rem}
.note{color:#64748b;font-size:.9rem}
figure{margin:.5rem 0 1rem}
figure svg{display:block;max-width:100%;height:auto}
svg text{font-size:11px}
.matrices{display:flex;flex-wrap:wrap;gap:1rem 2.5rem;overflow-x:auto}
table.cm caption{text-align:left;font-weight:600;padding-bottom:.25rem}
table.cm td{text-align:center;font-variant-numeric:tabular-nums;min-width:3rem;border:1px solid #fff}
.swatch{display:inline-block;width:1rem;height:.8rem;vertical-align:middle;border:1px solid #e5e7eb}
"""
    + "".join(f".cm{level}{{background:{color}}}" for level, color in enumerate(CONFUSION_SHADES))
    + ",".join(f".cm{level}" for level in range(LIGHT_TEXT_FROM, len(CONFUSION_SHADES)))
    + "{color:#fff}\n"
)


def evaluation_html(
    report: dict,
    task: str,
    y_true: Values,
    candidate_pred: Values,
    champion_pred: Optional[Values],
    drift_scores: Optional[dict[str, dict]],
    history: list[dict],
) -> str:
    """The evaluation page of one candidate: decision, metrics against the champion, holdout errors, drift, history.

    Args:
        report: The ``evaluation_report`` dict, optionally with ``decision`` ``{"promoted", "reason"}`` and
            ``trigger_reason``.
        task: ``"classification"`` or ``"regression"``.
        y_true: The holdout targets: a list, numpy array or pandas Series.
        candidate_pred: The candidate's predictions on the holdout, in the same forms.
        champion_pred: The champion's predictions on the same rows, or ``None`` without a champion.
        drift_scores: ``drift.score_drift`` output (a feature may add ``psi_threshold`` / ``ks_threshold`` to draw
            them), or ``None`` when drift was not measured.
        history: ``{"label", "value", "promoted"}`` of the primary metric per model version, oldest first.

    Raises:
        ValueError: ``task`` is unknown, the holdout is empty or predictions are not as long as ``y_true``.
    """
    if task not in METRICS:
        raise ValueError(f"evaluation_html: task {task!r} is neither of {sorted(METRICS)}")
    if len(y_true) == 0:
        raise ValueError("evaluation_html: y_true is empty")
    for name, predicted in (("candidate_pred", candidate_pred), ("champion_pred", champion_pred)):
        if predicted is not None and len(predicted) != len(y_true):
            raise ValueError(f"evaluation_html: {name} has {len(predicted)} values, y_true {len(y_true)}")
    models = [(f"candidate v{report['candidate_version']}", candidate_pred, CANDIDATE_COLOR)]
    if champion_pred is not None:
        models.append((f"champion v{report['champion_version']}", champion_pred, CHAMPION_COLOR))
    label, tone, reason = _verdict(report)
    body = [
        _wrap("h1", _e(f"Evaluation of candidate v{report['candidate_version']}")),
        _wrap("p", f"<strong>{_e(label)}</strong> — {_e(reason)}", f"verdict {tone}"),
        _facts(report),
        _decision_section(report),
        _comparison_section(report, task),
        _errors_section(task, y_true, models),
        _drift_section(drift_scores),
        _history_section(report, history),
    ]
    return _page(f"Candidate v{report['candidate_version']}: {label}", body)


def backtest_html(rows: list[dict], metric: str, title: str = "Backtest") -> str:
    """A backtest page: in-time and out-of-time ``metric`` and max PSI per partition, then a table of every row.

    Args:
        rows: One dict per partition, in order: ``partition``, ``delta_version``, ``train_rows``, ``eval_rows``,
            ``metrics`` and ``oot_metrics`` (``{name: value}``; the latter empty or NaN without a next window),
            ``max_psi`` (or ``None``) and ``drifted`` (feature names).
        metric: The metric to plot; the table shows every metric.
        title: The page title.
    """
    body = [_wrap("h1", _e(title))]
    if not rows:
        body.append(_wrap("p", "no partitions to show", "note"))
        return _page(title, body)
    span = f"{len(rows)} partitions from {rows[0]['partition']} to {rows[-1]['partition']} · metric {metric}"
    body.append(_wrap("p", _e(span)))
    body.append(_wrap("h2", "Metric and drift per partition"))
    body.append(
        _wrap(
            "p",
            _e(
                f"Holdout {metric} of the model trained up to each partition and its {metric} on the following window "
                "(out of time); below, the largest PSI of any feature, red where a feature drifted."
            ),
            "note",
        )
    )
    body.append(
        _backtest_figure(
            rows,
            metric,
            f"Line chart of holdout and out-of-time {metric} per partition, above a bar chart of max PSI per partition",
        )
    )
    body.append(_wrap("h2", "Partitions"))
    body.append(_wrap("p", "OOT: out of time, on the window after the partition; a dash where there is none.", "note"))
    body.append(_backtest_table(rows, metric))
    return _page(title, body)


def _verdict(report: dict) -> tuple[str, str, str]:
    """``(label, tone, reason)`` of the banner; without a ``decision`` the gates say what will happen."""
    gates = report["gates"]
    decision = report.get("decision")
    failed = [reason for passed, reason in gates.values() if not passed]
    if decision is not None and decision["promoted"]:
        return "Promoted", "promoted", decision["reason"]
    minimum = gates.get(MINIMUM_GATE)
    if minimum is not None and not minimum[0]:
        return "Rejected: below minimum", "rejected", minimum[1]
    if decision is None and not failed:
        return "Passes every gate", "promoted", "; ".join(reason for _, reason in gates.values())
    return "Kept champion", "kept", decision["reason"] if decision is not None else "; ".join(failed)


def _facts(report: dict) -> str:
    """The versions, data and time the evaluation is about, as a two-column list."""
    champion = report["champion_version"]
    facts = {
        "Candidate": f"v{report['candidate_version']}",
        "Champion": f"v{champion}" if champion is not None else "none (no champion yet)",
        "Champion note": report["champion_note"],
        "Holdout rows": _fmt(report["holdout_rows"]),
        "Raw Delta version": _fmt(report["delta_version"]),
        "Features Delta version": _fmt(report["features_version"]),
        "Created": report["created_at"],
    }
    items = "".join(_wrap("dt", _e(name)) + _wrap("dd", _e(value)) for name, value in facts.items())
    return _wrap("dl", items, "facts")


def _decision_section(report: dict) -> str:
    """The promotion rule, a pass/fail row per gate and the trigger reason."""
    direction = "higher" if report["higher_is_better"] else "lower"
    bound = "no minimum"
    if report["minimum"] is not None:
        bound = f"{'minimum' if report['higher_is_better'] else 'maximum'} {report['minimum']:g}"
    rule = f"Primary metric {report['metric']} ({direction} is better) · {bound} · margin {report['margin']:g}"
    rows = [
        _wrap("tr", _cell(name) + _wrap("td", _badge(passed)) + _cell(reason))
        for name, (passed, reason) in report["gates"].items()
    ]
    parts = [_wrap("h2", "Decision"), _wrap("p", _e(rule)), _table([_head(["Gate", "Result", "Reason"])], rows)]
    if report.get("decision") is not None:
        outcome = "promoted" if report["decision"]["promoted"] else "not promoted"
        parts.append(_wrap("p", _e(f"Decision: {outcome} — {report['decision']['reason']}")))
    if report.get("trigger_reason"):
        parts.append(_wrap("p", _e(f"Triggered by: {report['trigger_reason']}")))
    return "".join(parts)


def _comparison_section(report: dict, task: str) -> str:
    """Every metric of both models with their difference, and a bar chart per metric."""
    candidate, champion, primary = report["candidate"], report["champion"], report["metric"]
    names = list(dict.fromkeys([primary, *candidate, *(champion or {})]))
    parts = [_wrap("h2", "Candidate vs champion")]
    if champion is None:
        absent = "There is no champion yet: the candidate only has to meet the minimum."
        if report["champion_version"] is not None:  # refused as untrusted, or unable to score this holdout
            absent = f"Champion v{report['champion_version']} was not scored: {report['champion_note']}"
        parts.append(_wrap("p", _e(absent), "note"))
        head = ["Metric", f"Candidate v{report['candidate_version']}"]
    else:
        head = [
            "Metric",
            f"Candidate v{report['candidate_version']}",
            f"Champion v{report['champion_version']}",
            "Difference",
        ]
    rows = []
    for name in names:
        label = _e(name) + (_wrap("span", "primary", "tag") if name == primary else "")
        cells = _wrap("td", label) + _cell(_fmt(candidate.get(name)), "num")
        if champion is not None:
            cells += _cell(_fmt(champion.get(name)), "num") + _difference(
                task, name, candidate.get(name), champion.get(name)
            )
        rows.append(_wrap("tr", cells, "primary" if name == primary else ""))
    parts.append(_table([_head(head, ["", "num", "num", "num"])], rows))
    if names:
        models = " and ".join(
            f"{role} v{report[f'{role}_version']}" for role in ("candidate", "champion") if report[role] is not None
        )
        parts.append(_metric_figure(report, names, f"Bar charts of each metric for {models}"))
    return "".join(parts)


def _difference(task: str, name: str, candidate: Optional[float], champion: Optional[float]) -> str:
    """The candidate minus the champion, green where the candidate is better and red where it is worse."""
    gain = _number(candidate) - _number(champion)
    if math.isnan(gain):
        return _cell(MISSING, "num")
    higher_is_better = METRICS[task].get(name)
    tone = "" if higher_is_better is None or gain == 0 else ("better" if (gain > 0) == higher_is_better else "worse")
    return _cell(f"{gain:+.4f}", f"num {tone}".strip())


def _errors_section(task: str, y_true: Values, models: list[tuple[str, Values, str]]) -> str:
    """Confusion matrices (classification) or predicted-vs-actual and residual plots (regression) per model."""
    names = " and ".join(name for name, _, _ in models)
    if task == "classification":
        note = "Rows are the actual class, columns the predicted one"
        note += "; both matrices share one colour scale." if len(models) > 1 else "."
        figure = _confusion_figure(y_true, models, f"Confusion matrices of {names} on the holdout rows")
    else:
        note = (
            "Left: predicted against actual (dashed: perfect prediction). "
            "Right: residuals, actual − predicted, of every row on bins shared by the models."
        )
        figure = _residual_figure(y_true, models, f"Predicted against actual values and residual histograms of {names}")
    return _wrap("h2", "Errors on the holdout") + _wrap("p", _e(note), "note") + figure


def _drift_section(scores: Optional[dict[str, dict]]) -> str:
    """PSI and KS per feature, drifted features in red, and the same scores as a table."""
    heading = _wrap("h2", "Feature drift")
    if scores is None:
        return heading + _wrap("p", "drift not measured (no champion yet)", "note")
    if not scores:
        return heading + _wrap("p", "no features scored", "note")
    drifted = [name for name, score in scores.items() if score["drifted"]]
    summary = f"{len(drifted)} of {len(scores)} features drifted" + (f": {', '.join(drifted)}" if drifted else "")
    names = sorted(scores, key=lambda name: -_number(scores[name].get("psi")))
    rows = [
        _wrap(
            "tr",
            _cell(name)
            + _cell(scores[name].get("method", MISSING))
            + _cell(_fmt(scores[name].get("psi"), 3), "num")
            + _cell(_fmt(scores[name].get("ks"), 3), "num")
            + _cell(_pvalue(scores[name].get("p_value")), "num")
            + _wrap("td", _badge(not scores[name]["drifted"], "stable", "drifted"))
            + _cell(scores[name].get("reason") or scores[name].get("detail", "")),
            "drifted" if scores[name]["drifted"] else "",
        )
        for name in names
    ]
    head = _head(["Feature", "Method", "PSI", "KS", "p-value", "Status", "Why"], ["", "", "num", "num", "num"])
    return (
        heading
        + _wrap("p", _e(summary + ". Drifted features in red."), "note")
        + _drift_figure(scores, "Horizontal bar charts of PSI and KS per feature, drifted features in red")
        + _table([head], rows)
    )


def _history_section(report: dict, history: list[dict]) -> str:
    """The primary metric per model version as a line, promoted versions marked, and the latest rows as a table."""
    metric = report["metric"]
    heading = _wrap("h2", "Metric history")
    if not history:
        return heading + _wrap("p", "no earlier versions to compare with", "note")
    shown = history[-HISTORY_ROWS:]
    title = f"Line chart of {metric} per model version, promoted versions as filled green dots"
    if report["minimum"] is not None:
        title += f", the minimum {report['minimum']:g} as a dotted red line"
    rows = [
        _wrap("tr", _cell(entry["label"]) + _cell(_fmt(entry["value"]), "num") + _cell(_fmt(bool(entry["promoted"]))))
        for entry in reversed(shown)
    ]
    parts = [
        heading,
        _history_figure(history, metric, report["minimum"], title),
        _table([_head(["Version", metric, "Promoted"], ["", "num"])], rows),
    ]
    if len(history) > len(shown):
        parts.append(_wrap("p", _e(f"latest {len(shown)} of {len(history)} versions, newest first"), "note"))
    return "".join(parts)


def _backtest_table(rows: list[dict], metric: str) -> str:
    """Every partition with each metric in time and out of time; missing values as a dash."""
    names = list(dict.fromkeys([metric, *(name for row in rows for name in [*row["metrics"], *row["oot_metrics"]])]))
    span = ["Partition", "Delta version", "Train rows", "Eval rows"]
    top = "".join(_cell(text, "", "th") for text in span)
    top += "".join(f'<th class="group" colspan="2">{_e(name)}</th>' for name in names)
    top += _cell("Max PSI", "num", "th") + _cell("Drifted features", "", "th")
    sub = "".join(_cell("", "", "th") for _ in span)
    sub += "".join(_cell("holdout", "num", "th") + _cell("OOT", "num", "th") for _ in names)
    sub += _cell("", "", "th") * 2
    body = []
    for row in rows:
        cells = _cell(row["partition"], "nowrap") + "".join(
            _cell(_fmt(row[key]), "num") for key in ("delta_version", "train_rows", "eval_rows")
        )
        for name in names:
            for scores in (row["metrics"], row["oot_metrics"]):
                cells += _cell(_fmt(scores.get(name), 3), "num")
        cells += _cell(_fmt(row["max_psi"], 3), "num") + _cell(", ".join(row["drifted"]) or "none")
        body.append(_wrap("tr", cells, "drifted" if row["drifted"] else ""))
    return _wrap("div", _table([_wrap("tr", top), _wrap("tr", sub)], body), "scroll")


def _metric_figure(report: dict, names: list[str], title: str) -> str:
    """One small bar chart per metric with a bar per model, since the metrics have different scales."""
    models = [("candidate", report["candidate_version"], report["candidate"], CANDIDATE_COLOR)]
    if report["champion"] is not None:
        models.append(("champion", report["champion_version"], report["champion"], CHAMPION_COLOR))
    columns = min(len(names), 4)
    panel_width, panel_height = 210.0, 200.0
    parts = []
    for index, name in enumerate(names):
        left, top = panel_width * (index % columns), panel_height * (index // columns)
        values = [_number(scores.get(name)) for _, _, scores, _ in models]
        known = [value for value in values if math.isfinite(value)]
        ticks = _ticks(min([0.0, *known]), max([0.0, *known]), 4)
        room = _tick_room(ticks)
        plot = _Plot(
            left + room, top + 40, panel_width - room - 12, panel_height - 90, (-0.5, len(models) - 0.5), ticks
        )
        parts.append(_text(left + panel_width / 2, top + 16, name, bold=name == report["metric"]))
        parts += _y_grid(plot, ticks)
        zero, bar_width = plot.y(0.0), 0.6 * plot.width / len(models)
        for position, ((role, version, _, color), value) in enumerate(zip(models, values, strict=True)):
            center, end = plot.x(position), plot.y(value) if math.isfinite(value) else zero
            if math.isfinite(value):
                tooltip = f"{role} v{version} {name}: {_fmt(value)}"
                parts.append(_rect(center - bar_width / 2, min(zero, end), bar_width, abs(end - zero), color, tooltip))
            parts.append(_text(center, end + 14 if end > zero else end - 5, _fmt(value, 3)))
            parts.append(_text(center, plot.bottom + 16, role))
            parts.append(_text(center, plot.bottom + 30, f"v{version}"))
        parts.append(_line(plot.left, zero, plot.right, zero, AXIS_COLOR))
    return _svg_figure(panel_width * columns, panel_height * math.ceil(len(names) / columns), title, parts)


def _confusion_figure(y_true: Values, models: list[tuple[str, Values, str]], title: str) -> str:
    """Confusion matrices side by side as tables of counts, shaded on one scale shared by every matrix."""
    import numpy as np

    labels, (actual, *predictions) = _label_codes([y_true, *(predicted for _, predicted, _ in models)])
    classes, levels = len(labels), len(CONFUSION_SHADES) - 1
    matrices = [
        np.bincount(actual * classes + predicted, minlength=classes * classes).reshape(classes, classes)
        for predicted in predictions
    ]
    peak = max(int(matrix.max()) for matrix in matrices) or 1
    head = _wrap("tr", _cell("actual ↓ predicted →", "", "th") + "".join(_cell(label, "", "th") for label in labels))
    tables = []
    for (name, _, _), matrix in zip(models, matrices, strict=True):
        shades = -(-matrix * levels // peak)  # the ceiling: one row is the lightest shade but never white
        rows = []
        for label, counts, row_shades in zip(labels, matrix.tolist(), shades.tolist(), strict=True):
            cells = zip(counts, row_shades, strict=True)
            rows.append(
                _wrap("tr", _cell(label, "", "th") + "".join(f'<td class="cm{s}">{n:,}</td>' for n, s in cells))
            )
        caption = _wrap("caption", _e(f"{name}: {np.trace(matrix) / matrix.sum():.1%} correct"))
        tables.append(f'<table class="cm">{caption}<thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')
    scale = "".join(f'<span class="swatch cm{level}"></span>' for level in range(levels + 1))
    shared = ", shared by the matrices" if len(models) > 1 else ""
    caption = f"{_e(title)}. Shading {scale} from 0 to {peak:,} rows{shared}."
    return _wrap("figure", _wrap("div", "".join(tables), "matrices") + _wrap("figcaption", caption, "note"))


def _residual_figure(y_true: Values, models: list[tuple[str, Values, str]], title: str) -> str:
    """Per model a row: predicted against actual on a sample of rows with the diagonal, and a histogram of every
    residual on bins shared by the models."""
    import numpy as np

    actual = np.asarray(y_true, dtype=float)
    predictions = [np.asarray(predicted, dtype=float) for _, predicted, _ in models]
    residuals = [actual - predicted for predicted in predictions]
    shown = np.flatnonzero(np.isfinite(actual) & np.logical_and.reduce([np.isfinite(p) for p in predictions]))
    if len(shown) > SCATTER_POINTS:  # the same rows for every model, the same rows on every render
        shown = np.sort(np.random.default_rng(0).choice(shown, SCATTER_POINTS, replace=False))
    sample = f"{len(shown):,} of {len(actual):,} rows shown" if len(shown) < len(actual) else "every row shown"
    points = np.concatenate([actual[shown], *(predicted[shown] for predicted in predictions)])
    ticks = _ticks(float(points.min()), float(points.max())) if points.size else _ticks(0.0, 1.0)
    finite = [residual[np.isfinite(residual)] for residual in residuals]
    edges = np.histogram_bin_edges(np.concatenate(finite), bins=HISTOGRAM_BINS)
    counts = [np.histogram(residual, bins=HISTOGRAM_BINS, range=(edges[0], edges[-1]))[0] for residual in finite]
    count_ticks = _ticks(0.0, float(max(int(count.max()) for count in counts)), 4)
    residual_ticks = _ticks(float(edges[0]), float(edges[-1]))
    scatter_left = _tick_room(ticks) + 16
    histogram_left = scatter_left + 420 + _tick_room(count_ticks) + 16
    row_height, parts = 300.0, []
    for row, ((name, _, color), predicted, count) in enumerate(zip(models, predictions, counts, strict=True)):
        top = row * row_height + 34
        scatter = _Plot(scatter_left, top, 360, 214, ticks, ticks)
        histogram = _Plot(histogram_left, top, 340, 214, residual_ticks, count_ticks)
        parts += [
            _text(scatter.left + scatter.width / 2, top - 14, f"{name}: predicted vs actual", bold=True),
            _text(histogram.left + histogram.width / 2, top - 14, f"{name}: residuals", bold=True),
            *_y_grid(scatter, ticks, "predicted"),
            *_x_grid(scatter, ticks, "actual"),
            _dots(scatter.x(actual[shown]), scatter.y(predicted[shown]), color),
            _line(scatter.left, scatter.bottom, scatter.right, scatter.top, INK_COLOR, dash="5 4"),
            *_y_grid(histogram, count_ticks, "rows"),
            *_x_grid(histogram, residual_ticks, "residual (actual − predicted)"),
        ]
        for low, high, rows in zip(edges[:-1].tolist(), edges[1:].tolist(), count.tolist(), strict=True):
            if rows:
                left, bar_top = histogram.x(low), histogram.y(rows)
                bar = (left, bar_top, max(histogram.x(high) - left - 1, 0.5), histogram.bottom - bar_top)
                parts.append(_rect(*bar, color, f"{name}: {rows:,} rows with residual {low:.4g} to {high:.4g}"))
        if residual_ticks[0] < 0 < residual_ticks[-1]:
            zero = histogram.x(0.0)
            parts.append(_line(zero, histogram.top, zero, histogram.bottom, INK_COLOR, dash="5 4"))
    width, height = histogram_left + 356, row_height * len(models)
    return _svg_figure(width, height, f"{title}; {sample}", parts, f"Scatter plots: {sample}.")


def _drift_figure(scores: dict[str, dict], title: str) -> str:
    """Horizontal bars of PSI (and KS where measured) per feature, largest PSI on top, thresholds as dashed lines."""
    names = sorted(scores, key=lambda name: -_number(scores[name].get("psi")))
    panels = [("psi", "PSI", "psi_threshold")]
    if any(scores[name].get("ks") is not None for name in names):
        panels.append(("ks", "KS statistic", "ks_threshold"))
    labels = [name if len(name) <= 40 else name[:39] + "…" for name in names]
    label_room, row_height, panel_width = 16 + CHAR_WIDTH * max(map(len, labels)), 22.0, 330.0
    parts = []
    for row, (name, label) in enumerate(zip(names, labels, strict=True)):
        drifted = scores[name]["drifted"]
        y = 40 + row_height * (row + 0.5) + 4
        parts.append(_text(label_room - 8, y, label, "end", DRIFTED_COLOR if drifted else INK_COLOR, bold=drifted))
    for index, (key, heading, threshold_key) in enumerate(panels):
        values = [_number(scores[name].get(key)) for name in names]
        thresholds = sorted({value for name in names if (value := scores[name].get(threshold_key)) is not None})
        ticks = _ticks(0.0, max([0.0, *(v for v in [*values, *thresholds] if math.isfinite(v))]), 4)
        left = label_room + index * panel_width
        plot = _Plot(left, 40, panel_width - 70, row_height * len(names), ticks, (len(names), 0))
        dashed = f" (dashed: threshold {', '.join(f'{value:g}' for value in thresholds)})" if thresholds else ""
        parts.append(_text(plot.left + plot.width / 2, 18, heading + dashed, bold=True))
        parts += _x_grid(plot, ticks)
        for row, (name, value) in enumerate(zip(names, values, strict=True)):
            middle, end = plot.y(row + 0.5), plot.x(value if math.isfinite(value) else 0.0)
            color = DRIFTED_COLOR if scores[name]["drifted"] else QUIET_COLOR
            parts.append(
                _rect(plot.left, middle - 7, end - plot.left, 14, color, f"{name} {heading}: {_fmt(value, 3)}")
            )
            parts.append(_text(end + 4, middle + 4, _fmt(value, 3), "start"))
        for threshold in thresholds:
            parts.append(_line(plot.x(threshold), plot.top - 4, plot.x(threshold), plot.bottom, INK_COLOR, dash="5 3"))
    return _svg_figure(label_room + panel_width * len(panels), 40 + row_height * len(names) + 34, title, parts)


def _history_figure(history: list[dict], metric: str, minimum: Optional[float], title: str) -> str:
    """The metric per version as a line; promoted versions filled green, the others hollow; the minimum dotted."""
    values = [_number(entry["value"]) for entry in history]
    labels = [str(entry["label"]) for entry in history]
    known = [value for value in [*values, _number(minimum)] if math.isfinite(value)]
    ticks = _ticks(min(known, default=math.nan), max(known, default=math.nan))
    rotate = len(history) > 16
    room = _tick_room(ticks) + 16
    width = min(1000.0, max(560.0, 44.0 * len(history) + 120))
    plot = _Plot(room, 40, width - room - 20, 200, (-0.5, len(history) - 0.5), ticks)
    parts = _y_grid(plot, ticks, metric)
    legend = [(_circle(0, 0, PROMOTED_COLOR), "promoted"), (_circle(0, 0, HOLLOW_COLOR, hollow=True), "not promoted")]
    if minimum is not None:
        y = plot.y(minimum)
        parts.append(_line(plot.left, y, plot.right, y, DRIFTED_COLOR, dash="2 3"))
        legend.append((_line(-8, 0, 8, 0, DRIFTED_COLOR, dash="2 3"), f"minimum {minimum:g}"))
    parts.append(_polyline(plot, values, QUIET_COLOR))
    for position, (entry, value) in enumerate(zip(history, values, strict=True)):
        if math.isfinite(value):
            promoted = bool(entry["promoted"])
            tooltip = f"{entry['label']}: {_fmt(value)}, {'promoted' if promoted else 'not promoted'}"
            color = PROMOTED_COLOR if promoted else HOLLOW_COLOR
            parts.append(_circle(plot.x(position), plot.y(value), color, tooltip, hollow=not promoted))
    parts += _x_categories(plot, labels, rotate)
    parts += _legend(plot.left, 16, legend)
    return _svg_figure(width, plot.bottom + (_rotated_room(labels) if rotate else 30), title, parts)


def _backtest_figure(rows: list[dict], metric: str, title: str) -> str:
    """In-time and out-of-time ``metric`` per partition above a smaller bar chart of max PSI on the same x axis."""
    holdout = [_number(row["metrics"].get(metric)) for row in rows]
    later = [_number(row["oot_metrics"].get(metric)) for row in rows]
    psi = [_number(row["max_psi"]) for row in rows]
    labels = [str(row["partition"]) for row in rows]
    known = [value for value in [*holdout, *later] if math.isfinite(value)]
    metric_ticks = _ticks(min(known, default=math.nan), max(known, default=math.nan))
    psi_ticks = _ticks(0.0, max([0.0, *(value for value in psi if math.isfinite(value))]), 3)
    room = max(_tick_room(metric_ticks), _tick_room(psi_ticks)) + 16
    width = min(1100.0, max(640.0, 52.0 * len(rows) + 140))
    positions = (-0.5, len(rows) - 0.5)
    top = _Plot(room, 40, width - room - 20, 210, positions, metric_ticks)
    bottom = _Plot(room, top.bottom + 36, top.width, 90, positions, psi_ticks)
    parts = [*_y_grid(top, metric_ticks, metric), *_y_grid(bottom, psi_ticks, "max PSI")]
    bar_width = 0.6 * bottom.width / len(rows)
    for position, (row, value) in enumerate(zip(rows, psi, strict=True)):
        if math.isfinite(value):
            color = DRIFTED_COLOR if row["drifted"] else QUIET_COLOR
            drifted = f", drifted: {', '.join(row['drifted'])}" if row["drifted"] else ""
            tooltip = f"{row['partition']}: max PSI {_fmt(value, 3)}{drifted}"
            y = bottom.y(value)
            parts.append(_rect(bottom.x(position) - bar_width / 2, y, bar_width, bottom.y(0.0) - y, color, tooltip))
    series = [
        (holdout, CANDIDATE_COLOR, "holdout (in time)", _circle),
        (later, CHAMPION_COLOR, "next window (out of time)", _square),
    ]
    for values, color, name, marker in series:
        parts.append(_polyline(top, values, color))
        parts += [
            marker(top.x(position), top.y(value), color, f"{labels[position]}: {name} {metric} {_fmt(value)}")
            for position, value in enumerate(values)
            if math.isfinite(value)
        ]
    parts += _x_categories(bottom, labels, rotate=True)
    parts += _legend(top.left, 16, [(marker(0, 0, color), name) for _, color, name, marker in series])
    return _svg_figure(width, bottom.bottom + _rotated_room(labels), title, parts)


def _label_codes(series: list[Values]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sorted distinct values of all ``series``, and each series as indices into them.

    The distinct values come from a sample of rows; a full pass then finds any the sample missed. Sorting every row
    of text labels would cost ten times as much. Labels of mixed types (``None`` among strings) compare as text.
    """
    import numpy as np

    values = np.concatenate([np.asarray(values) for values in series])
    if values.dtype.kind == "O":
        values = np.asarray(values.tolist())  # numbers stay numbers, text becomes a string array
        if values.dtype.kind == "O":
            values = values.astype(str)
    labels = np.unique(values[:: max(1, len(values) // 4096)])
    codes = np.minimum(np.searchsorted(labels, values), len(labels) - 1)
    missed = labels[codes] != values
    if missed.any():
        labels = np.union1d(labels, values[missed])
        codes = np.searchsorted(labels, values)
    return labels, np.split(codes, len(series))


@dataclass(frozen=True)
class _Plot:
    """The data area of a chart: where it sits in the figure, in pixels, and the data ranges its sides stand for."""

    left: float
    top: float
    width: float
    height: float
    x_range: Sequence[float]  # the first and last value are the left and right edges
    y_range: Sequence[float]  # the first and last value are the bottom and top edges

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def x(self, value: Any) -> Any:
        """The horizontal pixel of ``value``, a number or a numpy array."""
        low, high = self.x_range[0], self.x_range[-1]
        return self.left + (value - low) * (self.width / (high - low))

    def y(self, value: Any) -> Any:
        """The vertical pixel of ``value``, a number or a numpy array; larger values sit higher."""
        low, high = self.y_range[0], self.y_range[-1]
        return self.bottom - (value - low) * (self.height / (high - low))


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` steps of 1, 2, 2.5 or 5 times a power of ten, from at or below ``low`` to at or above ``high``,
    so that an axis starts and ends on a round, labelled value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        low, high = (low - abs(low) / 10, high + abs(high) / 10) if low else (0.0, 1.0)
    rough = (high - low) / count
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(factor * power for factor in (1, 2, 2.5, 5, 10) if factor * power >= rough * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [index * step for index in range(first, last + 1)]


def _tick_labels(ticks: list[float]) -> list[str]:
    """``ticks`` as text, thousands separated, with as many decimals as their step needs."""
    step = ticks[1] - ticks[0]
    decimals = 0
    while decimals < 12 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return [f"{0.0 if abs(tick) < step / 1e6 else tick:,.{decimals}f}" for tick in ticks]


def _tick_room(ticks: list[float]) -> float:
    """The pixels left of a plot that its tick labels take."""
    return 12 + CHAR_WIDTH * max(map(len, _tick_labels(ticks)))


def _rotated_room(labels: list[str]) -> float:
    """The pixels below a plot that ``labels`` turned by 45° take."""
    return 20 + min(0.71 * CHAR_WIDTH * max(map(len, labels), default=0), 140)


def _y_grid(plot: _Plot, ticks: list[float], label: str = "") -> list[str]:
    """Horizontal grid lines at ``ticks``, their values on the left, and ``label`` up the left side."""
    parts = []
    for tick, text in zip(ticks, _tick_labels(ticks), strict=True):
        y = plot.y(tick)
        parts += [_line(plot.left, y, plot.right, y, GRID_COLOR), _text(plot.left - 6, y + 4, text, "end")]
    if label:
        parts.append(_text(plot.left - _tick_room(ticks) - 6, plot.top + plot.height / 2, label, angle=-90))
    return parts


def _x_grid(plot: _Plot, ticks: list[float], label: str = "") -> list[str]:
    """Vertical grid lines at ``ticks``, their values below, and ``label`` under them."""
    parts = []
    for tick, text in zip(ticks, _tick_labels(ticks), strict=True):
        x = plot.x(tick)
        parts += [_line(x, plot.top, x, plot.bottom, GRID_COLOR), _text(x, plot.bottom + 15, text)]
    if label:
        parts.append(_text(plot.left + plot.width / 2, plot.bottom + 32, label))
    return parts


def _x_categories(plot: _Plot, labels: list[str], rotate: bool) -> list[str]:
    """``labels`` under positions 0, 1, …; at most about 30 of them, turned by 45° when ``rotate``."""
    step, y = math.ceil(len(labels) / 30), plot.bottom + 14
    return [
        _text(plot.x(position), y, labels[position], "end" if rotate else "middle", angle=-45 if rotate else 0)
        for position in range(0, len(labels), step)
    ]


def _legend(x: float, y: float, entries: list[tuple[str, str]]) -> list[str]:
    """A row of ``(symbol, text)`` keys from ``(x, y)``; each symbol is drawn around the origin."""
    parts = []
    for symbol, text in entries:
        parts += [f'<g transform="translate({x + 8:.1f} {y:.1f})">{symbol}</g>', _text(x + 20, y + 4, text, "start")]
        x += 36 + CHAR_WIDTH * len(text)
    return parts


def _polyline(plot: _Plot, values: list[float], color: str) -> str:
    """A line through ``values`` at positions 0, 1, …, broken where a value is missing."""
    commands, drawing = [], False
    for position, value in enumerate(values):
        if math.isfinite(value):
            commands.append(f"{'L' if drawing else 'M'}{plot.x(position):.1f} {plot.y(value):.1f}")
        drawing = math.isfinite(value)
    return f'<path d="{"".join(commands)}" fill="none" stroke="{color}" stroke-width="1.5"/>'


def _dots(xs: np.ndarray, ys: np.ndarray, color: str) -> str:
    """One path of round dots, a zero-length stroke each: a fraction of the bytes of a ``<circle>`` per point."""
    moves = "".join(f"M{x:.1f} {y:.1f}h0" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
    style = 'fill="none" stroke-opacity="0.45" stroke-width="4" stroke-linecap="round"'
    return f'<path d="{moves}" stroke="{color}" {style}/>'


def _svg_figure(width: float, height: float, title: str, parts: list[str], caption: str = "") -> str:
    """A chart as inline SVG; its ``<title>`` says what it shows, to screen readers and as a tooltip."""
    svg = (
        f'<svg role="img" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">'
        f"<title>{_e(title)}</title>{''.join(parts)}</svg>"
    )
    return _wrap("figure", svg + (_wrap("figcaption", _e(caption), "note") if caption else ""))


def _text(
    x: float, y: float, text: str, anchor: str = "middle", color: str = INK_COLOR, bold: bool = False, angle: int = 0
) -> str:
    """``text``, escaped, at ``(x, y)``, turned ``angle`` degrees about that point (negative: anticlockwise)."""
    weight = ' font-weight="600"' if bold else ""
    turn = f' transform="rotate({angle} {x:.1f} {y:.1f})"' if angle else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}"{weight}{turn}>{_e(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, color: str, dash: str = "") -> str:
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}"{dashes}/>'


def _rect(x: float, y: float, width: float, height: float, color: str, tooltip: str = "") -> str:
    title = f"<title>{_e(tooltip)}</title>" if tooltip else ""
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{color}">{title}</rect>'


def _circle(x: float, y: float, color: str, tooltip: str = "", hollow: bool = False) -> str:
    """A marker dot filled with ``color``, or white inside a ``color`` ring when ``hollow``."""
    paint = f'fill="#fff" stroke="{color}" stroke-width="1.5"' if hollow else f'fill="{color}"'
    title = f"<title>{_e(tooltip)}</title>" if tooltip else ""
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" {paint}>{title}</circle>'


def _square(x: float, y: float, color: str, tooltip: str = "") -> str:
    return _rect(x - 4, y - 4, 8, 8, color, tooltip)


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _table(head: list[str], body: list[str]) -> str:
    """A table from rendered header and body rows."""
    return f"<table><thead>{''.join(head)}</thead><tbody>{''.join(body)}</tbody></table>"


def _head(texts: list[str], classes: Optional[list[str]] = None) -> str:
    """A header row; ``classes`` are per column (missing ones empty)."""
    classes = list(classes or []) + [""] * len(texts)
    return _wrap("tr", "".join(_cell(text, cls, "th") for text, cls in zip(texts, classes, strict=False)))


def _cell(text: object, cls: str = "", tag: str = "td") -> str:
    return _wrap(tag, _e(text), cls)


def _badge(passed: bool, good: str = "pass", bad: str = "fail") -> str:
    return _wrap("span", good if passed else bad, f"badge {'pass' if passed else 'fail'}")


def _wrap(tag: str, inner: str, cls: str = "") -> str:
    """``inner`` (already HTML) in a ``tag`` element."""
    attribute = f' class="{cls}"' if cls else ""
    return f"<{tag}{attribute}>{inner}</{tag}>"


def _e(text: object) -> str:
    return html.escape(str(text))


def _number(value: Optional[SupportsFloat]) -> float:
    """``value`` as a float, NaN for ``None``."""
    return math.nan if value is None else float(value)


def _fmt(value: Optional[SupportsFloat], digits: int = 4) -> str:
    """A number for a table: integers with thousands separators, floats to ``digits`` places, a dash when missing."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{value:,}"
    value = float(value)
    return MISSING if math.isnan(value) else f"{value:.{digits}f}"


def _pvalue(value: Optional[float]) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.2g}"
