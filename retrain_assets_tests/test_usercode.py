"""The user's own code named in retrain.yaml: both spec forms load, errors name key, spec and cause, and the
fingerprint follows the code it covers (and only that code) without importing it. Real files and a real git
repository on tmp_path; modules the tests import are forgotten afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrain_assets.core.usercode import UserCodeError, code_files, fingerprint, load_function

TRAIN_PY = '''
"""A user's model factory, importing a sibling module of its package."""
from churn_model.features import add_ratios


def make_pipeline(C=1.0):
    return {"estimator": "logistic_regression", "C": C, "features": add_ratios}
'''
FEATURES_PY = """
def add_ratios(row):
    return {**row, "charge_per_month": row["total"] / row["months"]}
"""
PIPELINE_SPEC = "churn_model.train:make_pipeline"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def restore_import_state(monkeypatch, tmp_path):
    """``load_function`` changes ``sys.path`` and ``sys.modules``; each test starts from the same state."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    # git must not find a repository above tmp_path, so "outside git" really is
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    yield
    # not monkeypatch.delitem here: its undo, which runs later, would put the module back
    inside = str(tmp_path.resolve()) + "/"
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(inside):
            del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with retrain.yaml beside the user's package ``churn_model``."""
    write(tmp_path / "retrain.yaml", "model:\n  pipeline: churn_model.train:make_pipeline\n")
    write(tmp_path / "churn_model" / "__init__.py", "")
    write(tmp_path / "churn_model" / "train.py", TRAIN_PY)
    write(tmp_path / "churn_model" / "features.py", FEATURES_PY)
    write(tmp_path / "churn_model" / "unused.py", "VALUE = 1\n")
    write(tmp_path / "notes.txt", "first notes\n")
    return tmp_path


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_all(folder: Path) -> None:
    git(folder, "add", "-A")
    identity = ("-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false")
    git(folder, *identity, "commit", "-q", "-m", "change")


def test_a_dotted_spec_imports_the_module_beside_retrain_yaml(project):
    loaded = load_function(PIPELINE_SPEC, project, "model.pipeline")

    assert loaded.function(C=0.5)["C"] == 0.5
    assert loaded.function()["features"]({"total": 120.0, "months": 12})["charge_per_month"] == 10.0
    assert loaded.spec == PIPELINE_SPEC and loaded.module_name == "churn_model.train"
    assert (
        loaded.source == (project / "churn_model" / "train.py").resolve() == code_files(PIPELINE_SPEC, project, "model")
    )
    assert sys.path[0] == str(project.resolve())


def test_a_real_scikit_learn_factory_and_feature_function_train_together(project):
    write(
        project / "churn_model" / "train.py",
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline as chain\n"
        "from sklearn.preprocessing import FunctionTransformer, StandardScaler\n\n"
        "def make_pipeline(add_ratios):\n"
        "    return chain(FunctionTransformer(add_ratios), StandardScaler(), LogisticRegression())\n",
    )
    write(project / "churn_model" / "features.py", "def add_ratios(x):\n    return x[:, :1] / x[:, 1:]\n")

    features = load_function("churn_model.features:add_ratios", project, "model.features")
    factory = load_function(PIPELINE_SPEC, project, "model.pipeline")
    model = factory.function(features.function)
    model.fit(np.array([[1.0, 4.0], [3.0, 1.0], [1.0, 5.0], [4.0, 1.0]]), [0, 1, 0, 1])

    assert list(model.predict(np.array([[1.0, 6.0], [5.0, 1.0]]))) == [0, 1]


@pytest.mark.parametrize("relative", [True, False])
def test_a_file_spec_loads_under_a_stable_module_name(project, relative):
    train = write(project / "models" / "train.py", "def make_pipeline():\n    return 'pipeline'\n")
    spec = "models/train.py:make_pipeline" if relative else f"{train}:make_pipeline"

    first = load_function(spec, project, "model.pipeline")
    again = load_function("models/train.py:make_pipeline", project, "model.pipeline")

    assert first.function() == "pipeline" and first.spec == spec
    assert first.source == train.resolve() == code_files(spec, project, "model")
    assert again.module_name == first.module_name and again.function is first.function
    assert sys.modules[first.module_name].make_pipeline is first.function


@pytest.mark.parametrize("spec", ["models.train:make", "models/train.py:make"])
def test_a_module_whose_file_changed_is_imported_again(project, spec):
    """A long-lived process trains with the code on disk, the code its hash names, not what it imported first."""
    write(project / "models" / "__init__.py", "")
    train = write(project / "models" / "train.py", "def make():\n    return 'first'\n")
    assert load_function(spec, project, "model.pipeline").function() == "first"
    assert load_function(spec, project, "model.pipeline").function() == "first"

    train.write_text("def make():\n    return 'second'\n")

    assert load_function(spec, project, "model.pipeline").function() == "second"


def test_file_specs_of_two_files_with_one_name_are_two_modules(project):
    write(project / "a" / "train.py", "def make():\n    return 'a'\n")
    write(project / "b" / "train.py", "def make():\n    return 'b'\n")

    a = load_function("a/train.py:make", project, "model.pipeline")
    b = load_function("b/train.py:make", project, "model.pipeline")

    assert (a.function(), b.function()) == ("a", "b") and a.module_name != b.module_name


BROKEN_MODULES = {
    "broken_syntax.py": "def make_pipeline(:\n",
    "raises_at_import.py": "raise RuntimeError('no database at import time')\n",
    "bad_import.py": "import not_installed_anywhere\n",
    "exits_at_import.py": "import sys\nsys.exit(3)\n",
    "constants.py": "THRESHOLD = 0.5\n",
}


@pytest.mark.parametrize(
    "spec, named, cause",
    [
        ("churn_model.train", "'churn_model.train'", "exactly one ':'"),
        ("churn_model.train:make_pipeline:extra", "'churn_model.train:make_pipeline:extra'", "exactly one ':'"),
        (":make_pipeline", "':make_pipeline'", "empty module name"),
        ("churn_model.train:", "'churn_model.train:'", "empty function name"),
        ("churn-model.train:make_pipeline", "'churn-model.train'", "not a dotted module name"),
        ("models/missing.py:make_pipeline", "'models/missing.py'", "does not exist"),
        ("models/train:make_pipeline", "'models/train'", "not a .py file"),
        (
            "missing_package.train:make_pipeline",
            "'missing_package.train'",
            "(ModuleNotFoundError: No module named 'missing_package')",
        ),
        ("broken_syntax:make_pipeline", "'broken_syntax'", "SyntaxError: "),
        ("broken_syntax.py:make_pipeline", "broken_syntax.py", "SyntaxError: "),
        ("raises_at_import:make_pipeline", "'raises_at_import'", "RuntimeError: no database at import time"),
        ("raises_at_import.py:make", "raises_at_import.py", "RuntimeError: no database at import time"),
        ("bad_import:make", "'bad_import'", "ModuleNotFoundError: No module named 'not_installed_anywhere'"),
        ("exits_at_import:make", "'exits_at_import'", "SystemExit: 3"),
        ("churn_model.train:make_model", "'churn_model.train'", "has no attribute 'make_model'"),
        ("constants:THRESHOLD", "'constants'", "'THRESHOLD' in module 'constants' is a float, not callable"),
    ],
)
def test_each_failure_names_key_spec_and_cause(project, spec, named, cause):
    for name, text in BROKEN_MODULES.items():
        write(project / name, text)

    with pytest.raises(UserCodeError) as raised:
        load_function(spec, project, "model.pipeline")

    message = str(raised.value)
    assert message.startswith("model.pipeline: ")
    assert named in message and cause in message
    assert isinstance(raised.value, ValueError)


def test_a_failed_import_leaves_no_half_module_behind(project):
    write(project / "half.py", "STARTED = True\nraise RuntimeError('boom')\n")
    with pytest.raises(UserCodeError, match="boom"):
        load_function("half.py:make", project, "model.pipeline")

    assert not [module for module in sys.modules.values() if getattr(module, "STARTED", False)]


def test_code_files_prefers_base_dir_and_searches_sys_path(project, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("site")
    write(elsewhere / "churn_model" / "train.py", "")
    write(elsewhere / "installed_pkg" / "sub" / "__init__.py", "")
    monkeypatch.syspath_prepend(str(elsewhere))

    assert code_files(PIPELINE_SPEC, project, "model") == (project / "churn_model" / "train.py").resolve()
    assert (
        code_files("installed_pkg.sub:f", project, "model")
        == (elsewhere / "installed_pkg" / "sub" / "__init__.py").resolve()
    )
    assert code_files("churn_model:f", project, "model") == (project / "churn_model" / "__init__.py").resolve()
    with pytest.raises(UserCodeError, match=r"model: cannot locate module 'nowhere\.train' of spec 'nowhere\.train:f'"):
        code_files("nowhere.train:f", project, "model")


def test_the_fingerprint_always_covers_the_factory_module(project):
    found = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [])

    assert found.files == ("churn_model/train.py",)
    assert len(found.hash) == 16 and int(found.hash, 16) >= 0


def test_fingerprint_files_are_relative_sorted_and_listed_once(project, tmp_path_factory):
    outside = write(tmp_path_factory.mktemp("shared") / "helpers.py", "")
    write(project / "churn_model" / "__pycache__" / "train.cpython-311.pyc", "bytecode")
    write(project / "churn_model" / "sql" / "query.sql", "select 1")
    specs = {
        "model.pipeline": "churn_model.train:make_pipeline",
        "model.features": "churn_model.features:add_ratios",
        "other": f"{outside}:helper",
    }

    found = fingerprint(project, specs, ["churn_model/**/*", "churn_model/*.py"])

    inside = (
        "churn_model/__init__.py",
        "churn_model/features.py",
        "churn_model/sql/query.sql",
        "churn_model/train.py",
        "churn_model/unused.py",
    )
    assert found.files == tuple(sorted((str(outside.resolve()), *inside)))


@pytest.mark.parametrize(
    "edit, changes",
    [
        (lambda root: write(root / "churn_model" / "train.py", TRAIN_PY + "\n# tuned\n"), True),
        (lambda root: write(root / "churn_model" / "features.py", FEATURES_PY + "\n# faster\n"), True),
        (lambda root: write(root / "notes.txt", "second notes\n"), False),
        (lambda root: write(root / "churn_model" / "unused.py", "VALUE = 2\n"), False),
    ],
    ids=["factory module", "code_deps file", "unrelated file", "unrelated module"],
)
def test_the_fingerprint_follows_only_the_code_it_covers(project, edit, changes):
    def current() -> str:
        return fingerprint(
            project, {"model.pipeline": PIPELINE_SPEC}, ["churn_model/features.py"], extra="params=abc"
        ).hash

    before = current()
    edit(project)

    assert (current() != before) is changes


def test_the_fingerprint_covers_extra_and_file_names(project):
    base = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [], extra="params=abc platform=0.1.0")

    assert (
        fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [], extra="params=abc platform=0.1.0").hash == base.hash
    )
    assert (
        fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [], extra="params=abd platform=0.1.0").hash != base.hash
    )
    write(project / "churn_model" / "model.py", TRAIN_PY)
    assert fingerprint(project, {"model.pipeline": "churn_model.model:make_pipeline"}, []).hash != base.hash


@pytest.mark.parametrize("glob", ["churn_model/*.yaml", "churn_model", "/etc/*.conf"])
def test_a_code_deps_glob_that_matches_no_file_is_an_error(project, glob):
    with pytest.raises(UserCodeError) as raised:
        fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, ["churn_model/*.py", glob])

    assert str(raised.value).startswith("model.code_deps: ") and repr(glob) in str(raised.value)


def test_fingerprint_does_not_import_the_users_module(project):
    write(project / "slow_model" / "__init__.py", "raise RuntimeError('imported')\n")
    write(project / "slow_model" / "train.py", "raise RuntimeError('imported')\n")

    found = fingerprint(project, {"model.pipeline": "slow_model.train:make_pipeline"}, [])

    assert found.files == ("slow_model/train.py",)
    assert "slow_model" not in sys.modules and "slow_model.train" not in sys.modules


def test_outside_git_there_is_no_commit(project):
    found = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [])

    assert found.git_commit is None and found.git_dirty is None


def test_a_repository_without_commits_counts_as_outside_git(project):
    git(project, "init", "-q")

    found = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [])

    assert found.git_commit is None and found.git_dirty is None


def test_in_git_the_commit_is_head_and_dirty_follows_tracked_files(project):
    git(project, "init", "-q")
    commit_all(project)

    clean = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [])
    assert clean.git_commit == git(project, "rev-parse", "HEAD") and len(clean.git_commit) == 40
    assert clean.git_dirty is False

    write(project / "scratch.py", "untracked = True\n")
    assert fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, []).git_dirty is False

    write(project / "churn_model" / "train.py", TRAIN_PY + "\n# tuned\n")
    assert fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, []).git_dirty is True

    commit_all(project)
    committed = fingerprint(project, {"model.pipeline": PIPELINE_SPEC}, [])
    assert committed.git_dirty is False
    assert committed.git_commit == git(project, "rev-parse", "HEAD") != clean.git_commit


def test_importing_the_module_loads_no_third_party_package():
    """``retrain status --check`` imports it; a heavy import would cost its 0.5 s budget."""
    code = (
        "import sys, retrain_assets.core.usercode\n"
        "heavy = {'yaml', 'pydantic', 'dagster', 'pandas', 'numpy', 'sklearn', 'mlflow'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"
