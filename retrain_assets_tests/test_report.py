"""The HTML pages: content, escaping, inlined PNG figures, and a light import."""

import base64
import html
import math
import re
import subprocess
import sys

import pytest

from retrain_assets.core import report as pages
from retrain_assets.core.names import COMPARISON_CHECK, MINIMUM_CHECK

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)">')


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


def png_images(page: str) -> list[bytes]:
    """The decoded PNG of every inlined image; each must carry alt text."""
    found = IMAGE.findall(page)
    assert all(alt.strip() for _, alt in found)
    return [base64.b64decode(data) for data, _ in found]


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
    images = png_images(page)
    assert len(images) >= 4
    assert all(image.startswith(PNG_SIGNATURE) for image in images)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert 'class="num better">+0.1250<' in page  # accuracy 0.75 vs 0.625
    assert 'class="num better">-0.1100<' in page  # log_loss: lower is better
    text = IMAGE.sub("", page)
    assert "<link" not in text and "http" not in text and "<script" not in text


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
    assert len(png_images(page)) == 2  # metric bars and the candidate's confusion matrix


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


def test_regression_page_has_residual_plots():
    report = evaluation_report(
        metric="rmse",
        higher_is_better=False,
        minimum=None,
        candidate={"r2": 0.9, "rmse": 1.2, "mae": 0.9},
        champion={"r2": 0.85, "rmse": 1.5, "mae": 1.1},
    )
    y_true = [float(i) for i in range(40)]
    page = pages.evaluation_html(
        report, "regression", y_true, [y + 0.5 for y in y_true], [y - 1.0 for y in y_true], DRIFT, HISTORY
    )
    assert 'alt="Predicted against actual values and residual histograms of candidate v7 and champion v6"' in page
    assert "residuals, actual − predicted" in page
    assert all(image.startswith(PNG_SIGNATURE) for image in png_images(page))


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
    assert "&lt;plan&gt;" in last
    assert "nan" not in IMAGE.sub("", page).lower()
    assert [image[:8] for image in png_images(page)] == [PNG_SIGNATURE]


def test_empty_backtest_renders():
    assert "no partitions" in pages.backtest_html([], "roc_auc")


def test_figure_data_uri_is_a_png():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    uri = pages.figure_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)


def test_import_stays_light():
    heavy = ("matplotlib", "sklearn", "mlflow", "great_expectations", "numpy", "dagster")
    code = f"import sys, retrain_assets.core.report; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_dollar_signs_in_feature_names_and_class_labels_are_drawn_as_text():
    """Names and labels are data: matplotlib would parse a ``$…$`` pair as math, and fail on most of them."""
    names = ["cost $a$ and $b$", "revenue_$_per_$", "price $\\mathrm{x$"]
    drift = {name: {**DRIFT["monthly_charges"], "drifted": i == 0} for i, name in enumerate(names)}
    classes = ["$x$ stays", "$x^$ leaves"]
    truth = [classes[i % 2] for i in range(8)]

    page = pages.evaluation_html(evaluation_report(), "classification", truth, truth[::-1], truth, drift, HISTORY)

    assert len(png_images(page)) == 4
    assert all(f"<td>{html.escape(name)}</td>" in page for name in names)
