"""GitOps on a real git repository: a committed change of params or model code retrains through `retrain tick`,
once; an unrelated commit retrains nothing."""

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets_tests.test_user_model import CHURN_MODEL

pytestmark = pytest.mark.integration


def retrain(config_path, *args):
    return CliRunner().invoke(main, ["--config", str(config_path), *args], catch_exceptions=False)


def launched(project) -> list[dict]:
    result = retrain(project.path, "tick", "--json")
    assert result.exit_code == 0, result.output
    return [launch for launch in json.loads(result.output)["launched"] if launch.get("run_id")]


class Repo:
    """A git repository holding a project; its branch is main."""

    def __init__(self, folder):
        self.folder = folder
        self.git = ["git", "-C", str(folder), "-c", "user.email=ci@example.org", "-c", "user.name=ci"]
        subprocess.run([*self.git, "init", "-q", "-b", "main"], check=True)

    @classmethod
    def of_project(cls, project, model: dict, **files: str) -> "Repo":
        """``project`` as the first commit of a repository: ``model`` merged into its model section, ``files``
        beside it; then its first batch landed."""
        raw = yaml.safe_load(project.path.read_text())
        raw["model"].update(model)
        repository = cls(project.path.parent)
        repository.raw = raw
        ignored = ".retrain/\ndata/\ncheck.txt\n"
        repository.commit(
            "model", **{"retrain.yaml": yaml.safe_dump(raw, sort_keys=False), ".gitignore": ignored, **files}
        )
        assert retrain(project.path, "ingest", str(project.batch(0))).exit_code == 0
        return repository

    def commit(self, message: str, **files: str) -> None:
        for name, text in files.items():
            (self.folder / name).write_text(text)
        subprocess.run([*self.git, "add", *files], check=True)
        subprocess.run([*self.git, "commit", "-q", "-m", message], check=True)


@pytest.fixture
def repo(project, monkeypatch):
    """The project as a git checkout with its own model code, the first champion trained by a tick."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    own = {
        "pipeline": "churn_model.py:make_pipeline",
        "features": "churn_model.py:add_ratios",
        "params": {"max_iter": 40},
    }
    repository = Repo.of_project(project, own, **{"churn_model.py": textwrap.dedent(CHURN_MODEL)})
    [first] = launched(project)
    assert first["decision"]["promoted"] is True
    return repository


def test_params_and_code_commits_retrain_once_and_an_unrelated_commit_does_not(project, repo):
    repo.raw["model"]["params"] = {"max_iter": 80}
    repo.commit("more boosting rounds", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})

    [params_run] = launched(project)
    assert params_run["trigger"] == "params_changed" and "params_changed" in params_run["fired"]
    assert params_run["metrics"]["candidate_version"] == "2"
    assert launched(project) == [], "the change was tried once: no retrain loop"

    code = (repo.folder / "churn_model.py").read_text().replace("+ 1)", "+ 2)")
    repo.commit("smoother ratio", **{"churn_model.py": code})

    [code_run] = launched(project)
    assert code_run["trigger"] == "code_changed" and "code_changed" in code_run["fired"]
    assert code_run["metrics"]["candidate_version"] == "3"

    repo.commit("docs", **{"NOTES.md": "how we model churn"})
    assert launched(project) == [], "a file outside the model's code changes nothing"


def status(project) -> dict:
    result = retrain(project.path, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_change_that_loses_is_tried_once_and_status_says_why(project, repo):
    assert status(project)["current_code"]["state"] == "champion"
    repo.raw["model"]["params"] = {"max_iter": 40, "l2_regularization": 0.0}  # the default: the same model
    repo.commit("spell out a default", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})
    assert status(project)["current_code"]["state"] == "untried"

    [tie] = launched(project)

    assert tie["trigger"] == "params_changed" and tie["decision"]["promoted"] is False
    code = status(project)["current_code"]
    assert code["state"] == "lost" and code["version"] == "2" and "does not beat" in code["reason"]
    assert launched(project) == [], "a change that lost does not retrain again on the same data"
    text = retrain(project.path, "status").output
    assert f"model code {code['code_hash']}: tried as v2 on the current data and lost: " in text


def test_reproduce_proves_identity_from_the_record_even_after_a_params_change(project, repo):
    first = retrain(project.path, "reproduce", "champion", "--json")
    assert first.exit_code == 0, first.output
    found = json.loads(first.output)
    assert found["identical"] and found["version"] == "1" and found["differences"] == []
    assert found["recorded_hash"] == found["reproduced_hash"] and found["holdout_rows"] > 0
    assert found["recorded_metrics"] == found["reproduced_metrics"] and "roc_auc" in found["recorded_metrics"]

    repo.raw["model"]["params"] = {"max_iter": 5}
    repo.commit("fewer rounds", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})
    again = retrain(project.path, "reproduce", "1")
    assert again.exit_code == 0, again.output
    assert "model v1 (trained on validated_features v0): identical" in again.output, "its own params, not today's"


def test_reproduce_refuses_other_code_naming_the_file_and_measures_it_when_allowed(project, repo):
    model_file = repo.folder / "churn_model.py"
    model_file.write_text(model_file.read_text().replace("+ 1)", "+ 2)"))  # uncommitted: the working tree counts

    refused = retrain(project.path, "reproduce", "1")
    assert refused.exit_code == 1
    assert (
        "not reproduced, the code of the working tree differs" in refused.output
        and "churn_model.py: changed" in refused.output
    )

    allowed = retrain(project.path, "reproduce", "1", "--allow-code-change", "--json")
    assert allowed.exit_code == 1, "other predictions are not identity"
    found = json.loads(allowed.output)
    assert found["retrained"] and not found["identical"] and found["differences"] == ["churn_model.py: changed"]
    assert found["recorded_hash"] != found["reproduced_hash"] and 0 < found["changed_rows"] <= found["holdout_rows"]

    at_commit = retrain(project.path, "reproduce", "1", "--at-commit")
    assert at_commit.exit_code == 0 and "identical" in at_commit.output and "code: git commit " in at_commit.output
    assert "+ 2)" in model_file.read_text(), "the working tree is left as it was"

    model_file.rename(repo.folder / "renamed.py")  # the module is gone from the working tree
    gone = retrain(project.path, "reproduce", "1")
    assert gone.exit_code == 1 and "model.pipeline: file 'churn_model.py'" in gone.output
    assert retrain(project.path, "reproduce", "1", "--at-commit").exit_code == 0, "its commit still has it"


def test_reproduce_names_a_version_that_does_not_exist(project, repo):
    result = retrain(project.path, "reproduce", "9")
    assert result.exit_code == 1 and "has no version 9" in result.output


NO_HEAVY_IMPORTS = """
import sys
from retrain_assets.app.cli import main
try:
    main(["--config", sys.argv[1], "status", "--check"])
except SystemExit as done:
    heavy = sorted(name for name in ("dagster", "mlflow", "sklearn", "great_expectations") if name in sys.modules)
    print("heavy:", heavy)
    sys.exit(done.code)
"""


def check(project) -> tuple[int, str]:
    """`retrain status --check` as its own process, as a pre-commit hook runs it; prints the heavy modules it
    imported."""
    done = subprocess.run(
        [sys.executable, "-c", NO_HEAVY_IMPORTS, str(project.path)], capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


def test_status_check_says_when_a_tick_would_retrain_without_loading_dagster_or_mlflow(project, repo):
    code, output = check(project)
    assert code == 0 and "the champion (v1) was built from it" in output and "up to date" in output
    code, output = check(project)  # the registry has not changed: answered from the snapshot
    assert code == 0 and "heavy: []" in output, output

    repo.raw["model"]["params"] = {"max_iter": 80}
    repo.commit("more boosting rounds", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})
    code, output = check(project)
    assert code == 1 and "the next tick retrains (params_changed)" in output and "heavy: []" in output, output

    [run] = launched(project)
    assert run["trigger"] == "params_changed"
    code, output = check(project)  # the registry changed: read again, not the old snapshot
    assert code == 0 and ("(v2) was built from it" in output or "tried as v2" in output), output

    (repo.folder / "churn_model.py").rename(repo.folder / "renamed.py")
    code, output = check(project)
    assert code == 2 and "model.pipeline: file 'churn_model.py'" in output, output


STATUS_IMPORTS = """
import sys
from retrain_assets.app.cli import main
try:
    main(["--config", sys.argv[1], "status", "--json"])
except SystemExit as done:
    print("mlflow imported:", "mlflow" in sys.modules)
    sys.exit(done.code)
"""


def status_process(project) -> tuple[dict, bool]:
    """`retrain status --json` as its own process: the report, and whether it imported MLflow."""
    command = [sys.executable, "-c", STATUS_IMPORTS, str(project.path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report, _, imported = done.stdout.rpartition("mlflow imported:")
    return json.loads(report), imported.strip() == "True"


def test_status_reads_mlflow_only_after_a_registry_write(project, repo):
    first, _ = status_process(project)
    again, imported = status_process(project)
    assert first["champion"]["version"] == "1" and first["current_code"]["state"] == "champion"
    assert not imported, "the registry has not changed: the champion and decision come from the snapshot"
    assert (again["champion"], again["last_decision"], again["current_code"]) == (
        first["champion"],
        first["last_decision"],
        first["current_code"],
    )

    repo.raw["model"]["params"] = {"max_iter": 80}
    repo.commit("more boosting rounds", **{"retrain.yaml": yaml.safe_dump(repo.raw, sort_keys=False)})
    before_tick, imported = status_process(project)
    assert not imported and before_tick["current_code"]["state"] == "untried", "the code moved, not the registry"
    [run] = launched(project)  # v2 registered and decided: the store changed
    after, imported = status_process(project)
    assert imported and after["last_decision"]["candidate_version"] == "2", after["last_decision"]
    assert after["current_code"]["version"] == "2" and after["current_code"]["state"] in ("champion", "lost")
