"""Self-contained HTML pages a person reads: the evaluation of a candidate and a backtest over partitions.

A page is one file: a small inline stylesheet, tables for the numbers and figures inlined as base64 PNG. Figures
are drawn with ``matplotlib.figure.Figure`` directly (no pyplot, no backend switching). matplotlib, numpy and
scikit-learn are imported inside the functions that draw, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import numbers
from typing import TYPE_CHECKING, Any, Iterator, Optional, SupportsFloat

from retrain_assets.core.config import METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MINIMUM_GATE = "candidate_meets_minimum"  # checks.MINIMUM_CHECK; not imported from there, checks imports dagster
MISSING = "–"
HISTORY_ROWS = 10  # rows of the metric history table; the plot shows every entry
CANDIDATE_COLOR = "#2563eb"
CHAMPION_COLOR = "#ea580c"
PROMOTED_COLOR = "#16a34a"
DRIFTED_COLOR = "#dc2626"
QUIET_COLOR = "#94a3b8"

STYLE = """
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
img{max-width:100%;height:auto;display:block;margin:.5rem 0 1rem}
"""


def evaluation_html(
    report: dict,
    task: str,
    y_true: list,
    candidate_pred: list,
    champion_pred: Optional[list],
    drift_scores: Optional[dict[str, dict]],
    history: list[dict],
) -> str:
    """The evaluation page of one candidate: decision, metrics against the champion, holdout errors, drift, history.

    Args:
        report: The ``evaluation_report`` dict, optionally with ``decision`` ``{"promoted", "reason"}`` and
            ``trigger_reason``.
        task: ``"classification"`` or ``"regression"``.
        y_true: The holdout targets.
        candidate_pred: The candidate's predictions on the holdout.
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
    with _literal_text():
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
    with _literal_text():
        figure = _img(
            _backtest_figure(rows, metric),
            f"Line chart of holdout and out-of-time {metric} per partition, above a bar chart of max PSI per partition",
        )
    body.append(figure)
    body.append(_wrap("h2", "Partitions"))
    body.append(_wrap("p", "OOT: out of time, on the window after the partition; a dash where there is none.", "note"))
    body.append(_backtest_table(rows, metric))
    return _page(title, body)


def figure_data_uri(fig: "Figure") -> str:
    """``data:image/png;base64,...`` of a matplotlib Figure at 100 dpi, cropped to its content."""
    buffer = io.BytesIO()
    with _literal_text():
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@contextlib.contextmanager
def _literal_text() -> Iterator[None]:
    """Figures built and saved inside draw every string as written. Feature names, class labels and partitions
    are data: matplotlib would read a ``$…$`` pair in one as math text, and fail on most (``revenue_$_per_$``)."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


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
        parts.append(_img(_metric_figure(report, names), f"Bar charts of each metric for {models}"))
    return "".join(parts)


def _difference(task: str, name: str, candidate: Optional[float], champion: Optional[float]) -> str:
    """The candidate minus the champion, green where the candidate is better and red where it is worse."""
    gain = _number(candidate) - _number(champion)
    if math.isnan(gain):
        return _cell(MISSING, "num")
    higher_is_better = METRICS[task].get(name)
    tone = "" if higher_is_better is None or gain == 0 else ("better" if (gain > 0) == higher_is_better else "worse")
    return _cell(f"{gain:+.4f}", f"num {tone}".strip())


def _errors_section(task: str, y_true: list, models: list[tuple[str, list, str]]) -> str:
    """Confusion matrices (classification) or predicted-vs-actual and residual plots (regression) per model."""
    names = " and ".join(name for name, _, _ in models)
    if task == "classification":
        note = "Rows are the actual class, columns the predicted one; both matrices share one colour scale."
        figure = _img(_confusion_figure(y_true, models), f"Confusion matrices of {names} on the holdout rows")
    else:
        note = "Left: predicted against actual (dashed: perfect prediction). Right: residuals, actual − predicted."
        figure = _img(
            _residual_figure(y_true, models), f"Predicted against actual values and residual histograms of {names}"
        )
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
        + _img(_drift_figure(scores), "Horizontal bar charts of PSI and KS per feature, drifted features in red")
        + _table([head], rows)
    )


def _history_section(report: dict, history: list[dict]) -> str:
    """The primary metric per model version as a line, promoted versions marked, and the latest rows as a table."""
    metric = report["metric"]
    heading = _wrap("h2", "Metric history")
    if not history:
        return heading + _wrap("p", "no earlier versions to compare with", "note")
    shown = history[-HISTORY_ROWS:]
    rows = [
        _wrap("tr", _cell(entry["label"]) + _cell(_fmt(entry["value"]), "num") + _cell(_fmt(bool(entry["promoted"]))))
        for entry in reversed(shown)
    ]
    parts = [
        heading,
        _img(
            _history_figure(history, metric, report["minimum"]),
            f"Line chart of {metric} per model version, promoted versions as filled green dots",
        ),
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


def _metric_figure(report: dict, names: list[str]) -> "Figure":
    """One small bar chart per metric with a bar per model, since the metrics have different scales."""
    from matplotlib.figure import Figure

    models = [(f"candidate\nv{report['candidate_version']}", report["candidate"], CANDIDATE_COLOR)]
    if report["champion"] is not None:
        models.append((f"champion\nv{report['champion_version']}", report["champion"], CHAMPION_COLOR))
    columns = min(len(names), 4)
    lines = math.ceil(len(names) / columns)
    fig = Figure(figsize=(2.6 * columns, 2.6 * lines), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):  # the grid's spare axes are hidden below
        values = [_number(scores.get(name)) for _, scores, _ in models]
        bars = ax.bar(
            range(len(models)), [0 if math.isnan(v) else v for v in values], color=[c for _, _, c in models], width=0.6
        )
        ax.bar_label(bars, labels=[_fmt(v, 3) for v in values], padding=2, fontsize=9)
        ax.set_xticks(range(len(models)), [label for label, _, _ in models], fontsize=9)
        ax.set_title(name, fontsize=11, fontweight="bold" if name == report["metric"] else "normal")
        ax.margins(x=0.25, y=0.18)
        ax.axhline(0, color="#9ca3af", linewidth=0.8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return fig


def _confusion_figure(y_true: list, models: list[tuple[str, list, str]]) -> "Figure":
    """Confusion matrices side by side over the labels of ``y_true`` and every prediction, counts in the cells."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    labels = _labels([y_true, *(predicted for _, predicted, _ in models)])
    matrices = [confusion_matrix(y_true, predicted, labels=labels) for _, predicted, _ in models]
    peak = max(int(matrix.max()) for matrix in matrices) or 1
    size = min(max(3.6, 0.45 * len(labels) + 2.2), 9.0)
    fontsize = max(6, 13 - len(labels) // 2)
    ticks = [str(label) for label in labels]
    rotation = 45 if len(labels) > 4 or max(len(tick) for tick in ticks) > 10 else 0
    fig = Figure(figsize=(size * len(models) + 0.8, size), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, (name, _, _), matrix in zip(axes, models, matrices, strict=True):
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if count > peak / 2 else "#1f2937"
            ax.text(column, row, f"{count:,}", ha="center", va="center", color=color, fontsize=fontsize)
        ax.set_xticks(range(len(labels)), ticks, rotation=rotation, ha="right" if rotation else "center")
        ax.set_yticks(range(len(labels)), ticks)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        correct = np.trace(matrix) / matrix.sum()
        ax.set_title(f"{name}: {correct:.1%} correct", fontsize=11)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="rows")
    return fig


def _residual_figure(y_true: list, models: list[tuple[str, list, str]]) -> "Figure":
    """Per model a row: predicted against actual with the diagonal, and a histogram of residuals on shared bins."""
    import numpy as np
    from matplotlib.figure import Figure

    actual = np.asarray(y_true, dtype=float)
    predictions = [np.asarray(predicted, dtype=float) for _, predicted, _ in models]
    residuals = [actual - predicted for predicted in predictions]
    values = np.concatenate([actual, *predictions])
    low, high = np.nanmin(values), np.nanmax(values)
    spread = np.concatenate(residuals)
    bins = np.histogram_bin_edges(spread[np.isfinite(spread)], bins=30)
    fig = Figure(figsize=(10.5, 3.8 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 2, squeeze=False)
    rows = zip(axes, models, predictions, residuals, strict=True)
    for (scatter, histogram), (name, _, color), predicted, residual in rows:
        scatter.scatter(actual, predicted, s=10, alpha=0.45, color=color, linewidths=0)
        scatter.plot([low, high], [low, high], color="#374151", linestyle="--", linewidth=1)
        scatter.set_xlabel("actual")
        scatter.set_ylabel("predicted")
        scatter.set_title(f"{name}: predicted vs actual", fontsize=11)
        histogram.hist(residual[np.isfinite(residual)], bins=bins, color=color, alpha=0.85)
        histogram.axvline(0, color="#374151", linestyle="--", linewidth=1)
        histogram.set_xlabel("residual (actual − predicted)")
        histogram.set_ylabel("rows")
        histogram.set_title(f"{name}: residuals", fontsize=11)
        for ax in (scatter, histogram):
            ax.spines[["top", "right"]].set_visible(False)
    return fig


def _drift_figure(scores: dict[str, dict]) -> "Figure":
    """Horizontal bars of PSI (and KS where measured) per feature, largest PSI on top, thresholds as dashed lines."""
    from matplotlib.figure import Figure

    names = sorted(scores, key=lambda name: _number(scores[name].get("psi")))
    panels = [("psi", "PSI", "psi_threshold")]
    if any(scores[name].get("ks") is not None for name in names):
        panels.append(("ks", "KS statistic", "ks_threshold"))
    fig = Figure(figsize=(5.2 * len(panels) + 1.5, 0.32 * len(names) + 1.3), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    colors = [DRIFTED_COLOR if scores[name]["drifted"] else QUIET_COLOR for name in names]
    for ax, (key, title, threshold_key) in zip(axes, panels, strict=True):
        values = [_number(scores[name].get(key)) for name in names]
        bars = ax.barh(range(len(names)), [0 if math.isnan(v) else v for v in values], color=colors, height=0.65)
        ax.bar_label(bars, labels=[_fmt(v, 3) for v in values], padding=3, fontsize=8)
        thresholds = sorted({value for name in names if (value := scores[name].get(threshold_key)) is not None})
        for threshold in thresholds:
            ax.axvline(threshold, color="#111827", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        if thresholds:
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=11)
        ax.margins(x=0.18)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(range(len(names)), names)
    for tick, name in zip(axes[0].get_yticklabels(), names, strict=True):
        if scores[name]["drifted"]:
            tick.set_color(DRIFTED_COLOR)
            tick.set_fontweight("bold")
    return fig


def _history_figure(history: list[dict], metric: str, minimum: Optional[float]) -> "Figure":
    """The metric per version as a line; promoted versions filled green, the others hollow; the minimum dotted."""
    from matplotlib.figure import Figure

    values = [_number(entry["value"]) for entry in history]
    positions = range(len(history))
    fig = Figure(figsize=(min(12.0, max(6.5, 0.45 * len(history) + 3)), 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(positions, values, color=QUIET_COLOR, linewidth=1.5, zorder=1)
    styles: tuple[tuple[bool, dict[str, Any]], ...] = (
        (True, {"color": PROMOTED_COLOR, "s": 60}),
        (False, {"facecolors": "white", "edgecolors": "#64748b", "s": 45}),
    )
    for promoted, style in styles:
        chosen = [i for i, entry in enumerate(history) if bool(entry["promoted"]) == promoted]
        if chosen:
            label = "promoted" if promoted else "not promoted"
            ax.scatter(chosen, [values[i] for i in chosen], zorder=2, label=label, linewidths=1.5, **style)
    if minimum is not None:
        ax.axhline(minimum, color=DRIFTED_COLOR, linestyle=":", linewidth=1.2, label=f"minimum {minimum:g}")
    step = math.ceil(len(history) / 30)
    crowded = len(history) > 16
    ax.set_xticks(
        list(positions)[::step],
        [str(entry["label"]) for entry in history][::step],
        rotation=45 if crowded else 0,
        ha="right" if crowded else "center",
    )
    ax.set_ylabel(metric)
    ax.margins(x=0.05, y=0.2)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=9, loc="lower left", bbox_to_anchor=(0, 1), ncols=3, frameon=False)
    return fig


def _backtest_figure(rows: list[dict], metric: str) -> "Figure":
    """In-time and out-of-time ``metric`` per partition above a smaller bar chart of max PSI on the same x axis."""
    from matplotlib.figure import Figure

    positions = range(len(rows))
    fig = Figure(figsize=(min(14.0, max(7.5, 0.55 * len(rows) + 3)), 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    top.plot(
        positions,
        [_number(row["metrics"].get(metric)) for row in rows],
        marker="o",
        color=CANDIDATE_COLOR,
        label="holdout (in time)",
    )
    top.plot(
        positions,
        [_number(row["oot_metrics"].get(metric)) for row in rows],
        marker="s",
        color=CHAMPION_COLOR,
        label="next window (out of time)",
    )
    top.set_ylabel(metric)
    top.legend(fontsize=9, loc="lower left", bbox_to_anchor=(0, 1), ncols=2, frameon=False)
    top.grid(axis="y", alpha=0.3)
    psi = [_number(row["max_psi"]) for row in rows]
    bottom.bar(
        positions,
        [0 if math.isnan(v) else v for v in psi],
        color=[DRIFTED_COLOR if row["drifted"] else QUIET_COLOR for row in rows],
        width=0.6,
    )
    bottom.set_ylabel("max PSI")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(list(positions), [str(row["partition"]) for row in rows], rotation=45, ha="right")
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def _labels(series: list[list]) -> list:
    """The distinct values of all ``series``, sorted (by their text when they do not compare)."""
    distinct = {value for values in series for value in values}
    try:
        return sorted(distinct)
    except TypeError:
        return sorted(distinct, key=str)


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _img(fig: "Figure", alt: str) -> str:
    return f'<img src="{_e(figure_data_uri(fig))}" alt="{_e(alt)}">'


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
