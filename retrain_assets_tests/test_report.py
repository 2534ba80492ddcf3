"""The HTML pages: content, escaping, inline SVG figures and confusion tables, and a light import."""

import html
import math
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from retrain_assets.core import report as pages
from retrain_assets.core.names import COMPARISON_CHECK, MINIMUM_CHECK

FIGURE = re.compile(r"<figure>(.*?)</figure>", re.S)
CHART_TITLE = re.compile(r'^<svg role="img" [^>]*><title>([^<]*)</title>')
FIGURE_CAPTION = re.compile(r"<figcaption[^>]*>(.*?)</figcaption>", re.S)
CONFUSION_TABLE = re.compile(r'<table class="cm"><caption>(.*?)</caption><thead>(.*?)</thead><tbody>(.*?)</tbody>')


def evaluation_report(**overrides) -> dict:
    report = {
        "candidate_version": "7",
        "champion_version": "6",
        "champion_note": "champion v6 scored on the same holdout",
        "delta_version": 12,
        "features_version": 13,
        "holdout_rows": 8,
        "metric": "roc_auc",
        "higher_is_better": True,
        "minimum": 0.6,
        "margin": 0.01,
        "candidate": {"accuracy": 0.75, "f1": 0.8, "log_loss": 0.41, "roc_auc": 0.83},
        "champion": {"accuracy": 0.625, "f1": 0.667, "log_loss": 0.52, "roc_auc": math.nan},
        "gates": {
            MINIMUM_CHECK: [True, "candidate roc_auc 0.8300 meets the minimum 0.6"],
            COMPARISON_CHECK: [True, "candidate roc_auc 0.8300 beats champion"],
        },
        "created_at": "2026-01-08T10:00:00+00:00",
        "decision": {"promoted": True, "reason": "candidate roc_auc 0.8300 beats champion"},
        "trigger_reason": "drift in monthly_charges (PSI 0.31, KS 0.22)",
    }
    return {**report, **overrides}


DRIFT = {
    "monthly_charges": {
        "method": "psi+ks",
        "psi": 0.31,
        "ks": 0.22,
        "p_value": 1e-9,
        "drifted": True,
        "detail": "PSI 0.31 over 10 bins",
        "reason": "PSI 0.31, KS 0.22",
        "psi_threshold": 0.2,
    },
    "plan": {
        "method": "psi",
        "psi": 0.02,
        "ks": None,
        "p_value": None,
        "drifted": False,
        "detail": "PSI 0.02",
        "reason": "",
    },
}
HISTORY = [
    {"label": "v5", "value": 0.78, "promoted": True},
    {"label": "v6", "value": 0.80, "promoted": True},
    {"label": "v7", "value": 0.83, "promoted": True},
]


DOTS = re.compile(r'<path d="((?:M[\d.]+ [\d.]+h0)+)"')
RESIDUAL_BAR = re.compile(r"^(.+): ([\d,]+) rows with residual (\S+) to (\S+)$")


def figure_names(page: str) -> list[str]:
    """What each figure says it shows: a chart's SVG ``<title>``, else its caption, as plain text; none is blank."""
    names = []
    for figure in FIGURE.findall(page):
        found = CHART_TITLE.match(figure) or FIGURE_CAPTION.search(figure)
        assert found, f"a figure without a title or caption: {figure[:200]}"
        names.append(" ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split()))
    assert all(names)
    return names


def tooltips(page: str) -> list[str]:
    """The ``<title>`` of every drawn mark (bar, histogram bin, point), as plain text."""
    return [html.unescape(text) for text in re.findall(r"<(?:rect|circle) [^>]*><title>([^<]*)</title>", page)]


def confusion_matrices(page: str) -> dict[str, dict[tuple[str, str], int]]:
    """Each confusion table by its caption: ``{(actual, predicted): count}`` as its cells show them."""
    matrices = {}
    for caption, head, body in CONFUSION_TABLE.findall(page):
        predicted = [html.unescape(label) for label in re.findall(r"<th>(.*?)</th>", head)[1:]]
        cells = {}
        for actual, row in re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", body):
            counts = [int(count.replace(",", "")) for count in re.findall(r'<td class="cm\d">([\d,]+)</td>', row)]
            cells.update({(html.unescape(actual), label): n for label, n in zip(predicted, counts, strict=True)})
        matrices[html.unescape(caption)] = cells
    return matrices


def expected_matrix(actual: list, predicted: list) -> dict[tuple[str, str], int]:
    """Every pair of labels with the number of rows that have it, zero for the pairs that never occur."""
    labels = set(actual) | set(predicted)
    pairs = Counter(zip(actual, predicted, strict=True))
    return {(str(a), str(p)): pairs[(a, p)] for a in labels for p in labels}


def residual_bins(page: str) -> dict[str, list[tuple[int, float, float]]]:
    """Per model the histogram bins it draws: ``(rows, low, high)`` read from the bars' titles."""
    bins: dict[str, list[tuple[int, float, float]]] = {}
    for mark in tooltips(page):
        if found := RESIDUAL_BAR.match(mark):
            name, rows, low, high = found.groups()
            bins.setdefault(name, []).append((int(rows.replace(",", "")), float(low), float(high)))
    return bins


def test_classification_page_has_verdict_versions_metrics_and_figures():
    report = evaluation_report(champion_note="<script>alert('x')</script> cannot score")
    page = pages.evaluation_html(
        report,
        "classification",
        [0, 1, 1, 0, 1, 1, 0, 1],
        [0, 1, 1, 0, 1, 0, 0, 1],
        [1, 1, 1, 0, 0, 1, 0, 1],
        DRIFT,
        HISTORY,
    )
    assert "Promoted" in page and 'class="verdict promoted"' in page
    assert "v7" in page and "v6" in page
    assert page.count("<td>roc_auc<span") == 1
    assert all(page.count(f"<td>{name}</td>") == 1 for name in ("accuracy", "f1", "log_loss"))
    for heading in ("Decision", "Candidate vs champion", "Errors on the holdout", "Feature drift", "Metric history"):
        assert f"<h2>{heading}</h2>" in page
    assert MINIMUM_CHECK in page and "drift in monthly_charges" in page
    assert figure_names(page) == [
        "Bar charts of each metric for candidate v7 and champion v6",
        "Confusion matrices of candidate v7 and champion v6 on the holdout rows. "
        "Shading from 0 to 4 rows, shared by the matrices.",
        "Horizontal bar charts of PSI and KS per feature, drifted features in red",
        "Line chart of roc_auc per model version, promoted versions as filled green dots, "
        "the minimum 0.6 as a dotted red line",
    ]
    marks = tooltips(page)
    assert {"candidate v7 accuracy: 0.7500", "champion v6 accuracy: 0.6250", "candidate v7 roc_auc: 0.8300"} <= set(
        marks
    )
    assert not any(mark.startswith("champion v6 roc_auc") for mark in marks), "a NaN metric has no bar"
    assert ">0.830</text>" in page and f">{pages.MISSING}</text>" in page
    assert {"monthly_charges PSI: 0.310", "plan PSI: 0.020", "monthly_charges KS statistic: 0.220"} <= set(marks)
    assert "PSI (dashed: threshold 0.2)" in page
    assert {"v5: 0.7800, promoted", "v7: 0.8300, promoted"} <= set(marks)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert 'class="num better">+0.1250<' in page  # accuracy 0.75 vs 0.625
    assert 'class="num better">-0.1100<' in page  # log_loss: lower is better
    assert "<img" not in page and "<link" not in page and "http" not in page and "nan" not in page.lower()


def test_confusion_matrices_hold_the_count_of_each_pair_of_labels_on_one_shared_scale():
    truth = ["a", "b", "c", "a", "b", "c", "a", "a", "c", "b"]
    candidate = ["a", "b", "b", "a", "c", "c", "a", "b", "c", "b"]
    champion = ["b", "b", "c", "a", "b", "a", "a", "a", "c", "b"]

    page = pages.evaluation_html(evaluation_report(), "classification", truth, candidate, champion, None, [])

    assert confusion_matrices(page) == {
        "candidate v7: 70.0% correct": expected_matrix(truth, candidate),
        "champion v6: 80.0% correct": expected_matrix(truth, champion),
    }
    shades = {(int(count), int(shade)) for shade, count in re.findall(r'<td class="cm(\d)">(\d+)</td>', page)}
    assert len({count for count, _ in shades}) == len(shades), "a count has one shade in both matrices"
    ordered = sorted(shades)
    assert ordered[0] == (0, 0) and ordered[-1] == (3, len(pages.CONFUSION_SHADES) - 1)
    assert [shade for _, shade in ordered] == sorted(shade for _, shade in ordered)


def test_page_without_champion_says_so():
    report = evaluation_report(
        champion_version=None,
        champion_note="no champion yet",
        champion=None,
        decision=None,
        gates={MINIMUM_CHECK: [True, "ok"], COMPARISON_CHECK: [True, "no champion yet; candidate roc_auc 0.8300"]},
    )
    del report["trigger_reason"]
    page = pages.evaluation_html(report, "classification", [0, 1, 1], [0, 1, 0], None, None, [])
    assert "There is no champion yet" in page
    assert "drift not measured (no champion yet)" in page
    assert "no earlier versions" in page
    assert "Passes every gate" in page
    assert len(figure_names(page)) == 2  # metric bars and the candidate's confusion matrix
    assert confusion_matrices(page) == {"candidate v7: 66.7% correct": expected_matrix([0, 1, 1], [0, 1, 0])}


def test_failed_minimum_is_a_red_rejection_and_a_lost_comparison_keeps_the_champion():
    failed_minimum = evaluation_report(
        decision={"promoted": False, "reason": "candidate roc_auc 0.5000 misses the minimum 0.6000"},
        gates={
            MINIMUM_CHECK: [False, "candidate roc_auc 0.5000 misses the minimum 0.6000"],
            COMPARISON_CHECK: [False, "does not beat"],
        },
    )
    lost = evaluation_report(
        decision={"promoted": False, "reason": "does not beat the champion"},
        gates={MINIMUM_CHECK: [True, "ok"], COMPARISON_CHECK: [False, "does not beat the champion"]},
    )
    y = [0, 1, 1, 0]
    assert '<p class="verdict rejected"><strong>Rejected: below minimum</strong>' in pages.evaluation_html(
        failed_minimum, "classification", y, y, y, None, []
    )
    assert '<p class="verdict kept"><strong>Kept champion</strong>' in pages.evaluation_html(
        lost, "classification", y, y, y, None, []
    )


REGRESSION_REPORT = evaluation_report(
    metric="rmse",
    higher_is_better=False,
    minimum=None,
    candidate={"r2": 0.9, "rmse": 1.2, "mae": 0.9},
    champion={"r2": 0.85, "rmse": 1.5, "mae": 1.1},
)


def test_regression_page_has_scatter_plots_and_residual_histograms_on_shared_bins():
    y_true = [float(i) for i in range(40)]
    page = pages.evaluation_html(
        REGRESSION_REPORT, "regression", y_true, [y + 0.5 for y in y_true], [y - 1.0 for y in y_true], DRIFT, HISTORY
    )
    assert (
        "Predicted against actual values and residual histograms of candidate v7 and champion v6; every row shown"
        in figure_names(page)
    )
    assert "residuals, actual − predicted" in page and "Scatter plots: every row shown." in page
    assert [path.count("M") for path in DOTS.findall(page)] == [40, 40]
    bins = residual_bins(page)
    assert list(bins) == ["candidate v7", "champion v6"]
    assert [sum(rows for rows, _, _ in drawn) for drawn in bins.values()] == [40, 40]
    (candidate_bin,), (champion_bin,) = bins.values()  # every residual is -0.5 and +1.0: one bin each
    assert candidate_bin[1] == pytest.approx(-0.5) and champion_bin[2] == pytest.approx(1.0)
    assert candidate_bin[2] - candidate_bin[1] == pytest.approx(champion_bin[2] - champion_bin[1])


@pytest.mark.parametrize(
    "task, truth, candidate, champion",
    [
        ("classification", [0, 1, 1, 0, 1], [0, 1, 0, 0, 1], [1, 1, 1, 0, 0]),
        ("classification", ["$x$ stays", "leaves", "leaves"], ["leaves", "leaves", "$x$ stays"], ["leaves"] * 3),
        ("regression", [1.0, 2.5, 4.0, 3.0], [1.5, 2.0, 4.5, 2.0], [0.5, 3.0, 3.5, 3.5]),
    ],
)
def test_numpy_arrays_and_pandas_series_render_the_same_page_as_lists(task, truth, candidate, champion):
    report = REGRESSION_REPORT if task == "regression" else evaluation_report()
    as_lists = pages.evaluation_html(report, task, truth, candidate, champion, DRIFT, HISTORY)
    as_arrays = pages.evaluation_html(
        report, task, np.asarray(truth), np.asarray(candidate), np.asarray(champion), DRIFT, HISTORY
    )
    as_series = pages.evaluation_html(
        report, task, pd.Series(truth), pd.Series(candidate), pd.Series(champion), DRIFT, HISTORY
    )
    assert as_arrays == as_lists and as_series == as_lists


def test_200_000_row_holdouts_render_small_pages_that_say_how_many_points_they_show():
    rows = 200_000
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 2, rows)
    guesses = [np.where(rng.random(rows) < share, classes, 1 - classes) for share in (0.9, 0.8)]
    classification = pages.evaluation_html(
        evaluation_report(holdout_rows=rows),
        "classification",
        classes.tolist(),
        guesses[0].tolist(),
        guesses[1].tolist(),
        DRIFT,
        HISTORY,
    )
    assert len(classification.encode()) < 500_000
    assert [sum(matrix.values()) for matrix in confusion_matrices(classification).values()] == [rows, rows]

    actual = rng.normal(100, 20, rows)
    predictions = actual + rng.normal(0, 5, rows), actual + rng.normal(1, 6, rows)
    regression = pages.evaluation_html(REGRESSION_REPORT, "regression", actual, *predictions, DRIFT, HISTORY)
    assert len(regression.encode()) < 500_000
    assert "Scatter plots: 2,000 of 200,000 rows shown." in regression
    assert any(name.endswith("; 2,000 of 200,000 rows shown") for name in figure_names(regression))
    assert [path.count("M") for path in DOTS.findall(regression)] == [2_000, 2_000]
    assert [sum(rows for rows, _, _ in drawn) for drawn in residual_bins(regression).values()] == [rows, rows]
    again = pages.evaluation_html(REGRESSION_REPORT, "regression", actual, *predictions, DRIFT, HISTORY)
    assert again == regression, "the sample of points is the same on every render"


@pytest.mark.parametrize(
    "task, candidate_pred, champion_pred",
    [("forecasting", [0], None), ("classification", [0, 1], None), ("classification", [0], [0, 1])],
)
def test_bad_inputs_raise(task, candidate_pred, champion_pred):
    with pytest.raises(ValueError, match="evaluation_html"):
        pages.evaluation_html(evaluation_report(), task, [0], candidate_pred, champion_pred, None, [])


def test_backtest_page_shows_a_dash_for_the_missing_out_of_time_window():
    rows = [
        {
            "partition": f"2026-01-0{day}",
            "delta_version": day,
            "train_rows": 600 * day,
            "eval_rows": 120,
            "metrics": {"roc_auc": 0.8, "accuracy": 0.7},
            "oot_metrics": {"roc_auc": 0.78, "accuracy": 0.69},
            "max_psi": 0.05,
            "drifted": [],
        }
        for day in (5, 6)
    ]
    rows.append(
        {
            "partition": "2026-01-07",
            "delta_version": 7,
            "train_rows": 4200,
            "eval_rows": 120,
            "metrics": {"roc_auc": 0.79, "accuracy": 0.71},
            "oot_metrics": {"roc_auc": math.nan},
            "max_psi": None,
            "drifted": ["<plan>"],
        }
    )
    page = pages.backtest_html(rows, "roc_auc", title="Backtest <churn>")
    assert "<h1>Backtest &lt;churn&gt;</h1>" in page
    last = page.split('<td class="nowrap">2026-01-07</td>')[1].split("</tr>")[0]
    assert last.count(f">{pages.MISSING}<") == 3  # roc_auc and accuracy out of time, max PSI
    assert "&lt;plan&gt;" in last and "<plan>" not in page
    assert "nan" not in page.lower()
    assert figure_names(page) == [
        "Line chart of holdout and out-of-time roc_auc per partition, above a bar chart of max PSI per partition"
    ]
    marks = tooltips(page)
    assert {"2026-01-06: next window (out of time) roc_auc 0.7800", "2026-01-06: max PSI 0.050"} <= set(marks)
    assert "2026-01-07: holdout (in time) roc_auc 0.7900" in marks
    assert not any(mark.startswith(("2026-01-07: next window", "2026-01-07: max PSI")) for mark in marks)


def test_empty_backtest_renders():
    assert "no partitions" in pages.backtest_html([], "roc_auc")


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.0, 0.83, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.78, 0.83, [0.78, 0.79, 0.80, 0.81, 0.82, 0.83]),
        (28.0, 170.0, [0, 50, 100, 150, 200]),
        (-27.3, 36.9, [-40, -20, 0, 20, 40]),
        (0.0, 200_000.0, [0, 50_000, 100_000, 150_000, 200_000]),
        (0.8, 0.8, [0.70, 0.75, 0.80, 0.85, 0.90]),
        (0.0, 0.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (math.nan, math.nan, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    ],
)
def test_ticks_are_a_few_round_values_that_cover_the_range(low, high, expected):
    assert pages._ticks(low, high) == pytest.approx(expected)


def test_tick_labels_have_the_decimals_their_step_needs():
    assert pages._tick_labels([0.0, 0.25, 0.5]) == ["0.00", "0.25", "0.50"]
    assert pages._tick_labels([-40.0, -20.0, 0.0, 20.0]) == ["-40", "-20", "0", "20"]
    assert pages._tick_labels([0.0, 50_000.0, 100_000.0]) == ["0", "50,000", "100,000"]
    assert pages._tick_labels(pages._ticks(0.1, 0.3)) == ["0.10", "0.15", "0.20", "0.25", "0.30"]


def test_import_stays_light():
    heavy = ("matplotlib", "sklearn", "mlflow", "great_expectations", "numpy", "dagster")
    code = f"import sys, retrain_assets.core.report; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_dollar_signs_in_feature_names_and_class_labels_are_drawn_as_text():
    """Names and labels are data: a ``$…$`` pair is no math, a ``<`` or ``&`` no markup; each is shown as written."""
    names = ["cost $a$ and $b$", "revenue_$_per_$", "price $\\mathrm{x$", "ratio <b>&amp;"]
    drift = {name: {**DRIFT["monthly_charges"], "drifted": i == 0} for i, name in enumerate(names)}
    classes = ["$x$ stays", "$x^$ leaves <&>"]
    truth = [classes[i % 2] for i in range(8)]

    page = pages.evaluation_html(evaluation_report(), "classification", truth, truth[::-1], truth, drift, HISTORY)

    assert len(figure_names(page)) == 4
    assert all(f"<td>{html.escape(name)}</td>" in page for name in names)
    assert all(f">{html.escape(name)}</text>" in page for name in names), "the drift chart's labels"
    assert all(f"<th>{html.escape(label)}</th>" in page for label in classes), "the confusion tables' labels"
    assert "<b>" not in page and "<&>" not in page
