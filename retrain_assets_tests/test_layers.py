"""Imports run app -> defs -> core, never back: read from the source with ``ast``, nothing is imported.

``core/`` is plain Python that can be called and tested without Dagster, so no module in it imports
``dagster`` or a ``dagster_*`` package anywhere (inside functions and under ``if TYPE_CHECKING:`` too), nor
anything above it. ``defs/`` wires core into Dagster and knows nothing of ``app/`` nor of
``definitions.py``, which assembles it. The package's own ``__init__.py`` runs before any core module, so it
imports nothing above core either. The checker is tested on a synthetic tree with one violation of each kind,
so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple, Optional

import retrain_assets

PACKAGE_DIR = Path(retrain_assets.__file__).resolve().parent
# What each layer may not import: module prefixes, matched on whole dotted segments.
FORBIDDEN = {
    "core": ("dagster", "dagster_*", "retrain_assets.defs", "retrain_assets.app", "retrain_assets.definitions"),
    "defs": ("retrain_assets.app", "retrain_assets.definitions"),
    "root": ("dagster", "dagster_*", "retrain_assets.defs", "retrain_assets.app", "retrain_assets.definitions"),
}


class Violation(NamedTuple):
    module: str
    line: int
    imported: str
    layer: str

    def __str__(self) -> str:
        return f"{self.module} line {self.line}: {self.layer} module imports {self.imported}"


def layer_violations(package_dir: Path) -> list[Violation]:
    """Every import in the package at ``package_dir`` that goes against :data:`FORBIDDEN`, in file order."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        module = _module_name(path, package_dir)
        forbidden = FORBIDDEN.get(_layer(module))
        if forbidden is None:
            continue
        for line, imported in _imports(path, module, is_package=path.name == "__init__.py"):
            if any(_matches(imported, prefix) for prefix in forbidden):
                found.append(Violation(module, line, imported, _layer(module)))
    return found


def _module_name(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    """``core``, ``defs``, ``app``, ``definitions`` or ``root`` (the package's ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def _imports(path: Path, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every name imported in the file, wherever the import sits, relative
    imports resolved. ``from x import y`` yields ``x.y`` (``y`` may be a module: ``from retrain_assets import
    app``), ``from x import *`` yields ``x``. A literal ``importlib.import_module("...")`` or
    ``__import__("...")`` counts as an import too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            found += [(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and (dynamic := _dynamic_import(node)) is not None:
            found.append((node.lineno, dynamic))
    return sorted(found)


def _resolve(node: ast.ImportFrom, package: list[str]) -> str:
    if not node.level:
        return node.module or ""
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_import(node: ast.Call) -> Optional[str]:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _matches(imported: str, prefix: str) -> bool:
    """Whether ``imported`` is ``prefix`` or inside it; ``dagster_*`` is any top-level ``dagster_`` package."""
    if prefix == "dagster_*":
        return imported.split(".")[0].startswith("dagster_")
    return imported == prefix or imported.startswith(prefix + ".")


def test_imports_run_app_defs_core():
    layers = {_layer(_module_name(path, PACKAGE_DIR)) for path in PACKAGE_DIR.rglob("*.py")}
    assert {"core", "defs", "app", "definitions", "root"} <= layers, f"layers found: {sorted(layers)}"

    violations = layer_violations(PACKAGE_DIR)

    assert not violations, "imports against the layer direction:\n" + "\n".join(map(str, violations))


def test_checker_reports_each_kind_of_violation(tmp_path):
    files = {
        "__init__.py": '"""Root."""\nfrom retrain_assets.defs import jobs\n',
        "definitions.py": "import dagster\nfrom retrain_assets.defs import jobs\nfrom .core import names\n",
        "core/__init__.py": "",
        "core/names.py": '"""Mentions dagster in text only."""\nimport dagsterless\nfrom . import config\n',
        "core/config.py": (
            "from typing import TYPE_CHECKING\n"
            "import dagster\n"
            "if TYPE_CHECKING:\n"
            "    from dagster_aws.s3 import S3Resource\n"
            "def load():\n"
            "    from dagster import Definitions\n"
            "    import importlib\n"
            "    return importlib.import_module('dagster_k8s')\n"
        ),
        "core/upward.py": (
            "import retrain_assets.defs.jobs\n"
            "from retrain_assets.app import cli\n"
            "from retrain_assets import definitions\n"
            "from ..defs.sensors import sensor\n"
            "from .. import app\n"
            "from retrain_assets.core.config import load\n"
        ),
        "defs/__init__.py": "from ..app import cli\n",
        "defs/jobs.py": (
            "import dagster\n"
            "from retrain_assets.core import names\n"
            "from retrain_assets.app.cli import main\n"
            "from retrain_assets.definitions import defs\n"
            "from . import sensors\n"
        ),
        "defs/sensors.py": "",
        "app/__init__.py": "",
        "app/cli.py": "import dagster\nfrom ..defs import jobs\nfrom retrain_assets.definitions import defs\n",
    }
    package_dir = tmp_path / "retrain_assets"
    for name, text in files.items():
        (package_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (package_dir / name).write_text(text)

    violations = layer_violations(package_dir)
    found = {(v.module, v.line, v.imported) for v in violations}

    assert found == {
        ("retrain_assets", 2, "retrain_assets.defs.jobs"),
        ("retrain_assets.core.config", 2, "dagster"),
        ("retrain_assets.core.config", 4, "dagster_aws.s3.S3Resource"),
        ("retrain_assets.core.config", 6, "dagster.Definitions"),
        ("retrain_assets.core.config", 8, "dagster_k8s"),
        ("retrain_assets.core.upward", 1, "retrain_assets.defs.jobs"),
        ("retrain_assets.core.upward", 2, "retrain_assets.app.cli"),
        ("retrain_assets.core.upward", 3, "retrain_assets.definitions"),
        ("retrain_assets.core.upward", 4, "retrain_assets.defs.sensors.sensor"),
        ("retrain_assets.core.upward", 5, "retrain_assets.app"),
        ("retrain_assets.defs", 1, "retrain_assets.app.cli"),
        ("retrain_assets.defs.jobs", 3, "retrain_assets.app.cli.main"),
        ("retrain_assets.defs.jobs", 4, "retrain_assets.definitions.defs"),
    }
    assert "retrain_assets.core.upward line 5: core module imports retrain_assets.app" in map(str, violations)
