"""`storage.landing_dir`: `retrain ingest` takes files only from inside the landing folder, whatever the path
says (``..`` segments and symlinks are resolved first); a file outside is refused without being read."""

import hashlib
import io
import json
import os
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from retrain_assets.app.cli import main
from retrain_assets.core import delta, landing as landing_files
from retrain_assets_tests.conftest import write_config


def retrain(config_path, *args):
    return CliRunner().invoke(main, ["--config", str(config_path), *map(str, args)], catch_exceptions=False)


@pytest.fixture
def landing(project, monkeypatch):
    """The project with ``storage.landing_dir: landing``, day 0 inside it and day 1 one level above."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_config(project, storage={"landing_dir": "landing"})
    folder = project.path.parent / "landing"
    folder.mkdir()
    inside = folder / project.batch(0).name
    inside.write_bytes(project.batch(0).read_bytes())
    return project, folder, inside


def test_landing_dir_is_resolved_beside_the_config(landing):
    project, folder, _ = landing

    assert project.config.landing_dir == folder.resolve()


@pytest.mark.parametrize("escape", ["dot-dot", "symlink"])
def test_a_path_resolving_outside_the_landing_dir_is_refused_unread(landing, escape):
    project, folder, inside = landing
    outside = project.batch(1)  # data/, beside landing/
    if escape == "dot-dot":
        path = folder / ".." / "data" / outside.name
    else:
        path = folder / "link.csv"
        os.symlink(outside, path)

    result = retrain(project.path, "ingest", path)

    assert result.exit_code == 1
    assert f"{path}: outside the landing folder {folder.resolve()}" in result.output
    assert f"resolves to {outside.resolve()}" in result.output
    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None
    assert not project.config.quarantine_dir.exists(), "a file outside the landing folder is not copied anywhere"
    report = json.loads(retrain(project.path, "status", "--json").output)
    [refusal] = report["refused_files"]
    assert refusal["file"] == str(path) and "outside the landing folder" in refusal["reason"]

    accepted = retrain(project.path, "ingest", inside)
    assert accepted.exit_code == 0 and "raw_data version 0" in accepted.output


def test_a_symlink_inside_the_landing_dir_to_a_file_inside_is_accepted(landing):
    project, folder, inside = landing
    link = folder / "today.csv"
    os.symlink(inside, link)

    result = retrain(project.path, "ingest", link)

    assert result.exit_code == 0, result.output
    assert "raw_data version 0" in result.output


def test_without_landing_dir_any_path_is_taken(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    result = retrain(project.path, "ingest", project.batch(0).parent / ".." / "data" / project.batch(0).name)

    assert result.exit_code == 0, result.output


def test_a_long_refused_name_neither_crashes_ingest_nor_skips_the_other_files(project, monkeypatch):
    """A refused file named with 240 bytes used to raise OSError (name too long in quarantine): no refusal
    recorded and the files after it in the same `ingest` never read."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    long_name = project.path.parent / ("b" * 236 + ".csv")
    long_name.write_bytes(b'customer_id,tenure_months\nC1,"unterminated\n')

    result = retrain(project.path, "ingest", long_name, project.batch(0))

    assert result.exit_code == 1
    assert "1 of 2 files refused" in result.output and "raw_data version 0 (600 rows)" in result.output
    report = json.loads(retrain(project.path, "status", "--json").output)
    [refusal] = report["refused_files"]
    kept = refusal["quarantined"]
    assert refusal["file"] == str(long_name) and os.path.exists(kept) and os.path.exists(kept + ".reason.txt")


def test_status_works_past_a_torn_line_in_refusals_jsonl_and_mentions_it(project, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert retrain(project.path, "ingest", project.path.parent / "missing.csv").exit_code == 1
    with project.config.refusals_log.open("a") as log:
        log.write('{"at": "2026-01-05T00:00:00+00:00", "fi')

    result = retrain(project.path, "status")

    assert result.exit_code == 0, result.output
    assert "refused missing.csv" in result.output
    assert f"{project.config.refusals_log}: skipped 1 unreadable line" in result.output


@pytest.mark.parametrize("content", ["", '{"config_mtime": 1', "[]", '{"next_schedule": "soon"}'])
def test_tick_runs_past_an_empty_or_corrupt_tick_state(project, monkeypatch, content):
    """An empty tick_state.json (a crash between truncating and writing it) used to crash every tick."""
    from retrain_assets.app.ticking import STATE_FILE

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    state = project.config.dagster_home / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(content)

    result = retrain(project.path, "tick")

    assert result.exit_code == 0, result.output
    assert "running a full tick" in result.output and "nothing triggered" in result.output
    assert json.loads(state.read_text())["config_mtime"] == project.path.stat().st_mtime
    assert [p.name for p in state.parent.iterdir() if p.name.startswith(f".{STATE_FILE}")] == []


_WATCH: dict = {}  # the watch armed by the running test (see `on_open`); empty: disarmed
_HOOKED: list = []


def _audit(event, args):
    if event != "open" or not _WATCH or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    opened = os.fsdecode(args[0])
    if opened in _WATCH["paths"]:
        _WATCH["opens"].append(opened)
        if len(_WATCH["opens"]) == _WATCH["at"]:
            _WATCH["then"]()


@pytest.fixture
def on_open():
    """``watch(paths, at, then)`` runs ``then`` just before the ``at``-th open of any of ``paths`` in this
    process and returns the list of those opens. Python's audit hooks (PEP 578) see every ``open`` and
    ``os.open`` before it happens, so a swap lands exactly between a check and an open, deterministically
    and without patching our code. A hook cannot be removed: it is installed once and disarmed after each test."""
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(True)

    def watch(paths, at, then):
        _WATCH.update(paths={os.fspath(path) for path in paths}, opens=[], at=at, then=then)
        return _WATCH["opens"]

    yield watch
    _WATCH.clear()


@pytest.mark.parametrize("swapped", ["file", "folder"])
def test_a_batch_swapped_for_a_link_outside_between_the_check_and_the_open_is_refused(landing, on_open, swapped):
    """Finding 11: the landing check resolved the path, then the file was opened by name (three times), so a
    file swapped for a symlink to one outside the landing folder right after the check was read and landed.
    The swap here happens at the very first open; the file, or the folder holding it, becomes a link to day 1
    outside. Now the one descriptor opened is checked (no symlink followed at the end; where the kernel says
    it lives), so nothing outside is read."""
    project, folder, inside = landing
    elsewhere = project.path.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / inside.name).write_bytes(project.batch(1).read_bytes())
    if swapped == "file":
        path = inside

        def swap():
            inside.unlink()
            os.symlink(elsewhere / inside.name, inside)
    else:
        (folder / "sub").mkdir()
        path = folder / "sub" / inside.name
        path.write_bytes(inside.read_bytes())

        def swap():
            (folder / "sub").rename(folder / "sub-before")
            os.symlink(elsewhere, folder / "sub")

    on_open([path, path.resolve()], at=1, then=swap)

    with pytest.raises(landing_files.BatchRefused) as refused:
        landing_files.ingest_file(project.config, path)

    assert f"{path}: changed while being opened" in str(refused.value) and "not read" in str(refused.value)
    assert delta.latest_version(project.config.table_uri(delta.RAW_TABLE)) is None
    assert refused.value.quarantined is None and not project.config.quarantine_dir.exists()
    [refusal] = landing_files.recent_refusals(project.config)
    assert "changed while being opened" in refusal["reason"]


def test_a_batch_is_opened_once_so_a_swap_after_the_check_cannot_change_what_lands(landing, on_open):
    """Finding 11: size, hash, parse and quarantine copy each opened the path again, so the bytes hashed
    were not always the bytes landed. Here any second open of the path would find it swapped for a link to
    day 1 outside the landing folder: there is none, and exactly day 0's bytes land under day 0's hash."""
    project, folder, inside = landing
    original = inside.read_bytes()
    outside = project.batch(1)

    def swap():
        inside.unlink()
        os.symlink(outside, inside)

    opens = on_open([inside, inside.resolve()], at=2, then=swap)

    result = landing_files.ingest_file(project.config, inside)

    assert len(opens) == 1, opens
    uri = project.config.table_uri(delta.RAW_TABLE)
    landed = delta.read_batch(uri, result.version).to_pandas()
    assert landed["customer_id"].tolist() == pd.read_csv(io.BytesIO(original))["customer_id"].tolist()
    assert delta.history(uri)[-1][delta.SHA_KEY] == hashlib.sha256(original).hexdigest()
