"""`storage.landing_dir`: `retrain ingest` takes files only from inside the landing folder, whatever the path
says (``..`` segments and symlinks are resolved first); a file outside is refused without being read."""

import json
import os

import pytest
from click.testing import CliRunner

from retrain_assets import lake
from retrain_assets.cli import main
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
    assert lake.latest_version(project.config.table_uri(lake.RAW_TABLE)) is None
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
