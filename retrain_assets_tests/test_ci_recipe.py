"""The CI recipe in docs/ci/retrain.yml, its commands run as its steps run them (each a bash script, as a
process, in the repository's folder), on a real git repository: the built-in estimator with the project's own
feature function. Not the CI service: the steps, with the workflow's own env."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets_tests.test_gitops import Repo

pytestmark = pytest.mark.integration

WORKFLOW = Path(__file__).parents[1] / "docs" / "ci" / "retrain.yml"
FEATURES = '''
def add_ratio(frame):
    """Charges per month of tenure."""
    made = frame.copy()
    made["charges_per_tenure_month"] = made["monthly_charges"] / (made["tenure_months"] + 1)
    return made
'''


def run_job(repo: Repo, job: str, summary: Path) -> list[subprocess.CompletedProcess]:
    """Every step of ``job`` that runs a retrain command, in order, as GitHub's default shell runs a step
    (``bash -eo pipefail``), stopping at the first that fails."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    env = {
        **os.environ,
        **{name: str(value) for name, value in workflow["env"].items() if "${{" not in str(value)},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    env.pop("DAGSTER_HOME", None)
    done = []
    for step in workflow["jobs"][job]["steps"]:
        if "retrain " not in step.get("run", ""):
            continue
        command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
        done.append(subprocess.run(command, cwd=repo.folder, env=env, capture_output=True, text=True, timeout=600))
        if done[-1].returncode != 0:
            break
    return done


@pytest.fixture
def repo(project, monkeypatch) -> Repo:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    model = {"features": "features.py:add_ratio", "params": {"C": 1.0}}
    repository = Repo.of_project(project, model, **{"features.py": textwrap.dedent(FEATURES)})
    return repository


def test_the_workflow_retrains_on_model_changes_only_and_the_champion_reproduces(repo, tmp_path):
    summary = tmp_path / "summary.md"
    tick, reproduce = run_job(repo, "tick", summary)
    assert tick.returncode == 0 and "manual" not in tick.stdout and "promoted" in tick.stdout, tick.stdout + tick.stderr
    assert reproduce.returncode == 0 and "model v1 (trained on validated_features v0): identical" in reproduce.stdout

    repo.raw["model"]["params"] = {"C": 0.3}
    repo.commit("stronger regularisation", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})
    [check] = run_job(repo, "check", summary)
    assert check.returncode == 0, "a pull request that retrains is not a failed check"
    assert "Merging this retrains the model:" in summary.read_text() and "params_changed" in summary.read_text()

    tick, reproduce = run_job(repo, "tick", summary)
    assert tick.returncode == 0 and "params_changed run succeeded" in tick.stdout, tick.stdout + tick.stderr
    assert reproduce.returncode == 0 and ": identical" in reproduce.stdout, reproduce.stdout + reproduce.stderr

    changed = textwrap.dedent(FEATURES).replace("+ 1)", "+ 12)")
    repo.commit("tenure in years", **{"features.py": changed})
    [tick, *_] = run_job(repo, "tick", summary)
    assert tick.returncode == 0 and "code_changed run succeeded" in tick.stdout, tick.stdout + tick.stderr

    repo.commit("docs", **{"README.md": "# churn model\n"})
    summary.unlink()
    [check] = run_job(repo, "check", summary)
    assert check.returncode == 0 and "Merging this retrains nothing:" in summary.read_text()
    tick, reproduce = run_job(repo, "tick", summary)
    assert tick.returncode == 0 and tick.stdout.startswith("nothing triggered"), tick.stdout + tick.stderr
    assert reproduce.returncode == 0 and ": identical" in reproduce.stdout, reproduce.stdout + reproduce.stderr
    champion = json.loads(retrain_json(repo, "status"))["champion"]["version"]
    # when the feature change lost, the champion is older than HEAD: its code is read from its own commit
    assert ("code: the working tree" if champion == "3" else "code: git commit ") in reproduce.stdout


def test_a_pull_request_whose_model_code_cannot_be_read_fails_the_check(repo, tmp_path):
    repo.raw["model"]["features"] = "feature.py:add_ratio"  # a typo in the file name
    repo.commit("typo", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})

    [check] = run_job(repo, "check", tmp_path / "summary.md")

    assert check.returncode != 0 and "model.features: file 'feature.py'" in check.stdout
    assert json.loads(retrain_json(repo, "status", "--check"))["state"] == "unreadable"


def retrain_json(repo: Repo, *args: str) -> str:
    return CliRunner().invoke(main, ["--config", str(repo.folder / "retrain.yaml"), *args, "--json"]).output
