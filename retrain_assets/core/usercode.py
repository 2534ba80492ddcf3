"""The user's own model code named in ``retrain.yaml``: import it, and fingerprint it without importing it.

A spec is ``package.module:function`` (imported with the folder of ``retrain.yaml`` first on ``sys.path``) or
``path/to/file.py:function`` (relative to that folder, or absolute). The fingerprint says which code a model
was trained with; it is computed by ``retrain status --check`` too, so it reads files and never imports them.
Only the standard library is imported here, to keep that command quick.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping, Optional

CODE_DEPS_KEY = "model.code_deps"
GIT_TIMEOUT_SECONDS = 10
_CHUNK_BYTES = 1 << 20
_imported_digests: dict[str, Optional[bytes]] = {}  # module name -> its file's digest when this process imported it


class UserCodeError(ValueError):
    """The user's code named in ``retrain.yaml`` cannot be found, imported or used; the message names the key,
    the spec or module, and the cause."""


@dataclass(frozen=True)
class UserFunction:
    """A function from the user's code, with where it came from (for provenance and for error messages)."""

    spec: str
    function: Callable[..., Any]
    module_name: str
    source: Path


@dataclass(frozen=True)
class CodeFingerprint:
    """Which code a model was trained with: a hash of the files, each file's own hash (so a difference can be
    named file by file), and git's view of them."""

    hash: str
    file_hashes: tuple[tuple[str, str], ...]  # (name relative to the project folder, sha256), sorted by name
    git_commit: Optional[str]
    git_dirty: Optional[bool]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.file_hashes)


def load_function(spec: str, base_dir: Path, key: str) -> UserFunction:
    """Import the function a spec names. Two forms: "package.module:function" (imported with base_dir first on
    sys.path, so a module beside retrain.yaml works; base_dir is the folder of retrain.yaml) and
    "path/to/file.py:function" (a path relative to base_dir, or absolute; loaded with importlib under a stable
    module name derived from its resolved path so it can be imported twice consistently)."""
    module_part, attribute = _split(spec, key)
    if _is_file(module_part):
        module = _import_file(_file_path(module_part, base_dir, spec, key), spec, key)
    else:
        module = _import_dotted(module_part, base_dir, spec, key)
    try:
        function = getattr(module, attribute)
    except AttributeError:
        raise UserCodeError(
            f"{key}: module {module.__name__!r} has no attribute {attribute!r} (spec {spec!r})"
        ) from None
    if not callable(function):
        raise UserCodeError(
            f"{key}: {attribute!r} in module {module.__name__!r} is a {type(function).__name__}, "
            f"not callable (spec {spec!r})"
        )
    if module.__file__ is None:
        raise UserCodeError(f"{key}: module {module.__name__!r} has no source file (spec {spec!r})")
    return UserFunction(spec, function, module.__name__, Path(module.__file__).resolve())


def code_files(spec: str, base_dir: Path, key: str) -> Path:
    """The source file a spec's module lives in, found without importing anything (importing may be slow or
    fail, and ``retrain status --check`` must stay quick); an error names ``key``, the config key of the spec."""
    module_part, _ = _split(spec, key)
    if _is_file(module_part):
        return _file_path(module_part, base_dir, spec, key)
    parts = module_part.split(".")
    candidates = (Path(*parts, "__init__.py"), Path(*parts[:-1], f"{parts[-1]}.py"))
    # a package wins over a module of the same name in one folder, as in Python's own finder
    for root in (base_dir, *map(Path, sys.path)):
        for candidate in candidates:
            if (root / candidate).is_file():
                return (root / candidate).resolve()
    raise UserCodeError(
        f"{key}: cannot locate module {module_part!r} of spec {spec!r}: no "
        f"{' or '.join(c.as_posix() for c in candidates)} in {base_dir} nor in any sys.path entry"
    )


def fingerprint(base_dir: Path, specs: Mapping[str, str], code_deps: list[str], extra: str = "") -> CodeFingerprint:
    """The code a model is trained with: the module file of each spec (``specs`` maps config key to spec;
    always included, so nobody has to list train.py) and every file the ``code_deps`` globs match (relative
    to ``base_dir``, ``**`` recursive; a glob that matches nothing is an error, as it is most likely a typo).
    The hash covers each file's name and bytes in sorted order, and ``extra`` (the caller's params hash and
    platform version). Nothing is imported: ``retrain status --check`` calls this and must stay quick."""
    base = base_dir.resolve()
    paths = {code_files(spec, base, key) for key, spec in specs.items()}
    for pattern in code_deps:
        paths |= _matching_files(base, pattern)
    named = sorted((_display_name(path, base), path) for path in paths)
    digest = hashlib.sha256()
    file_hashes = []
    for name, path in named:
        content = _file_digest(path)
        digest.update(name.encode() + b"\0" + content + b"\0")
        file_hashes.append((name, content.hex()))
    digest.update(b"extra\0" + extra.encode())
    commit = _git(base, "rev-parse", "HEAD")
    status = _git(base, "status", "--porcelain", "--untracked-files=no") if commit is not None else None
    return CodeFingerprint(
        hash=digest.hexdigest()[:16],
        file_hashes=tuple(file_hashes),
        git_commit=commit,
        git_dirty=None if status is None else bool(status),
    )


def _split(spec: str, key: str) -> tuple[str, str]:
    """``(module or file, attribute)``; a file form is ``.py`` or has a slash, anything else must be dotted."""
    if spec.count(":") != 1:
        raise UserCodeError(
            f"{key}: spec {spec!r} must have exactly one ':' between the module and the function, "
            "e.g. 'churn_model.train:make_pipeline' or 'models/train.py:make_pipeline'"
        )
    module_part, _, attribute = spec.partition(":")
    if not module_part.strip() or not attribute.strip():
        side, where = ("module", "before") if not module_part.strip() else ("function", "after")
        raise UserCodeError(f"{key}: spec {spec!r} has an empty {side} name (nothing {where} the ':')")
    if not _is_file(module_part) and not all(part.isidentifier() for part in module_part.split(".")):
        raise UserCodeError(
            f"{key}: {module_part!r} in spec {spec!r} is not a dotted module name (a file is written path/to/file.py)"
        )
    return module_part, attribute


def _is_file(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or "\\" in module_part


def _file_path(module_part: str, base_dir: Path, spec: str, key: str) -> Path:
    path = (base_dir / module_part).resolve()
    if not module_part.endswith(".py"):
        raise UserCodeError(f"{key}: {module_part!r} in spec {spec!r} is a path but not a .py file")
    if not path.is_file():
        raise UserCodeError(f"{key}: file {module_part!r} of spec {spec!r} does not exist (looked for {path})")
    return path


def _import_dotted(module_name: str, base_dir: Path, spec: str, key: str) -> ModuleType:
    """Left on ``sys.path`` afterwards: the user's code may import its siblings later, inside functions."""
    folder = str(base_dir.resolve())
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)
    _forget_if_from_elsewhere(module_name.split(".")[0], base_dir.resolve())
    # files written since the last import (a new project, a test) are not in the finders' directory caches yet
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
        return importlib.reload(module) if _changed_since_import(module) else module
    except (Exception, SystemExit) as error:
        raise UserCodeError(f"{key}: cannot import module {module_name!r} ({_cause(error)}) (spec {spec!r})") from error


def _forget_if_from_elsewhere(top: str, base: Path) -> None:
    """A spec resolves from ``base`` first: when ``base`` holds the package ``top`` but this process imported
    ``top`` from another folder (another commit's checkout, another project), forget that import."""
    if not ((base / top).is_dir() or (base / f"{top}.py").is_file()):
        return  # an installed package: whatever is imported is it
    loaded = sys.modules.get(top)
    source = getattr(loaded, "__file__", None)
    if loaded is None or source is None or Path(source).resolve().is_relative_to(base):
        return
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        del sys.modules[name]


def _changed_since_import(module: ModuleType) -> bool:
    """Whether the module's file changed since this process imported it (then it is imported again, so a
    long-lived process trains with the code its hash names; modules it imports itself are not re-imported)."""
    source = Path(module.__file__) if module.__file__ else None
    digest = _file_digest(source) if source is not None and source.is_file() else None
    seen = _imported_digests.setdefault(module.__name__, digest)
    _imported_digests[module.__name__] = digest
    return seen != digest


def _import_file(path: Path, spec: str, key: str) -> ModuleType:
    """Registered in ``sys.modules`` under a name fixed by the path, so a second load (or pickle) finds the same
    module."""
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"retrain_usercode_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules and not _changed_since_import(sys.modules[module_name]):
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise UserCodeError(f"{key}: cannot load file {str(path)!r} as a Python module (spec {spec!r})")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    _imported_digests[module_name] = _file_digest(path)
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        del sys.modules[module_name]
        raise UserCodeError(f"{key}: cannot import file {str(path)!r} ({_cause(error)}) (spec {spec!r})") from error
    return module


def _cause(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _matching_files(base: Path, pattern: str) -> set[Path]:
    """Files only, and none under ``__pycache__``: bytecode is rewritten by importing, not by editing the code."""
    if Path(pattern).is_absolute():
        raise UserCodeError(f"{CODE_DEPS_KEY}: glob {pattern!r} must be relative to the folder of retrain.yaml")
    matches = list(base.glob(pattern))
    files = {path.resolve() for path in matches if path.is_file() and "__pycache__" not in path.parts}
    if not files:
        found = f" (only folders: write '{pattern.rstrip('/')}/**/*.py' for their files)" if matches else ""
        raise UserCodeError(f"{CODE_DEPS_KEY}: glob {pattern!r} matches no file in {base}{found}")
    return files


def _display_name(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.digest()


def _git(folder: Path, *args: str) -> Optional[str]:
    """Git's output, or ``None`` when git cannot answer (no git binary, not a work tree, no commit yet)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@contextlib.contextmanager
def checkout_of(project_dir: Path, commit: str) -> Iterator[Path]:
    """The project folder as it was at ``commit``, exported with ``git archive`` into a temporary folder (the
    repository and its working tree are not touched), for as long as the ``with`` lasts.

    Raises:
        UserCodeError: ``project_dir`` is not in a git checkout, or git does not know ``commit``.
    """
    prefix = _git(project_dir, "rev-parse", "--show-prefix")
    if prefix is None:
        raise UserCodeError(f"{project_dir} is not in a git checkout, so commit {commit} cannot be read")
    try:
        archive = subprocess.run(
            ["git", "-C", str(project_dir), "archive", "--format=tar", commit],
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS * 6,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserCodeError(f"git archive of commit {commit} failed: {exc}") from exc
    if archive.returncode != 0:
        raise UserCodeError(f"git cannot export commit {commit}: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="retrain-commit-") as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(scratch, filter="data")
        yield Path(scratch) / prefix
