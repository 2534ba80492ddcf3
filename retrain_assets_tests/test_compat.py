"""Each Dagster internal fenced in ``retrain_assets.app.compat``, called for real: an upgrade that moves or
changes one fails here, by name, before `retrain status`, `tick`, the CLI's output or `retrain ui` do."""

import datetime as dt
import logging
import subprocess

import pytest
from dagster import (
    AssetCheckSpec,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    Output,
    asset,
    instance_for_test,
    materialize,
)

from retrain_assets.app import compat
from retrain_assets.app.webui import write_workspace


def _graph(up_code_version: str) -> list:
    @asset(code_version=up_code_version)
    def up() -> int:
        return 1

    @asset(code_version="1")
    def down(up: int) -> int:
        return up + 1

    return [up, down]


def test_stale_causes_name_a_new_code_version_and_a_new_upstream_data_version():
    with DagsterInstance.ephemeral() as instance:
        assert materialize(_graph("1"), instance=instance).success
        assert compat.stale_causes(instance, Definitions(assets=_graph("1")).resolve_asset_graph()) == {}

        changed = Definitions(assets=_graph("2")).resolve_asset_graph()
        assert compat.stale_causes(instance, changed) == {AssetKey("up"): {"has a new code version"}}

        instance.report_runless_asset_event(AssetMaterialization("up", tags={"dagster/data_version": "new"}))
        landed = Definitions(assets=_graph("1")).resolve_asset_graph()
        assert compat.stale_causes(instance, landed) == {AssetKey("down"): {"has a new dependency data version"}}


def test_cron_fire_times_ascend_from_the_start_in_the_schedule_timezone():
    monday_noon = dt.datetime(2026, 11, 2, 12, tzinfo=dt.timezone.utc)
    times = compat.cron_fire_times("0 6 * * 1", "UTC", monday_noon)
    assert [next(times), next(times)] == [
        dt.datetime(2026, 11, 9, 6, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 11, 16, 6, tzinfo=dt.timezone.utc),
    ]
    paris = next(compat.cron_fire_times("0 6 * * *", "Europe/Paris", monday_noon))
    assert paris.astimezone(dt.timezone.utc) == dt.datetime(2026, 11, 3, 5, tzinfo=dt.timezone.utc)


def test_missing_check_result_logger_is_where_dagster_warns_of_a_blocking_check_without_result(caplog):
    @asset(output_required=False)
    def skipped():  # produces nothing, as candidate_model does when no trigger fired
        if False:
            yield Output(1)

    @asset(check_specs=[AssetCheckSpec("gate", asset="gated", blocking=True)])
    def gated(skipped: int):  # never runs: its input was not produced
        return skipped

    @asset
    def after(gated: int) -> int:
        return gated

    name = compat.missing_check_result_logger().name  # at WARNING, whatever quiet_libraries set it to before
    with DagsterInstance.ephemeral() as instance, caplog.at_level(logging.WARNING, logger=name):
        assert materialize([skipped, gated, after], instance=instance).success
    warnings = [record for record in caplog.records if record.name == name]
    assert any("'gated:gate' emitted no result" in record.getMessage() for record in warnings), caplog.records


def test_daemon_command_is_a_dagster_daemon_run_this_interpreter_accepts(tmp_path):
    result = subprocess.run(
        [*compat.daemon_command(write_workspace(tmp_path)), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--workspace" in result.stdout


@pytest.mark.parametrize("read_only", [True, False])
def test_workspace_process_context_loads_the_code_location(tmp_path, monkeypatch, read_only):
    from dagster_webserver.app import create_app_from_workspace_process_context

    monkeypatch.chdir(tmp_path)  # no retrain.yaml here: the code location loads its defaults
    monkeypatch.delenv("RETRAIN_CONFIG", raising=False)
    with instance_for_test() as instance:  # not an ephemeral one: the code server process opens it too
        with compat.workspace_process_context(instance, write_workspace(tmp_path), read_only) as context:
            request = context.create_request_context()
            assert request.code_location_names == ["retrain_assets"] and not request.code_location_errors()
            assert request.read_only is read_only
            assert request.get_code_location("retrain_assets").get_repository("__repository__").has_job("retrain")
            assert create_app_from_workspace_process_context(context) is not None


def test_the_scheduler_tags_its_runs_with_the_hidden_scheduled_execution_time(tmp_path, monkeypatch):
    """The tag name ``retrain tick`` writes so the daemon finds its scheduled runs (and reads to find the
    daemon's): the scheduler's own, with its leading dot, on a run it launched through a code server."""
    monkeypatch.chdir(tmp_path)  # no retrain.yaml here: the defaults' weekly schedule
    monkeypatch.delenv("RETRAIN_CONFIG", raising=False)
    assert compat.scheduled_execution_time_tag() == ".dagster/scheduled_execution_time"
    start = dt.datetime.now(dt.timezone.utc)
    due = next(time for time in compat.cron_fire_times("0 6 * * 1", "UTC", start) if time > start)
    with instance_for_test() as instance:  # its run queue holds the run: nothing executes it
        with compat.workspace_process_context(instance, write_workspace(tmp_path), read_only=False) as context:
            compat.launch_scheduled_runs(context, start)  # a schedule seen the first time starts its clock
            assert instance.get_runs() == []
            compat.launch_scheduled_runs(context, due + dt.timedelta(minutes=1))
        (run,) = instance.get_runs()
    assert run.tags["dagster/schedule_name"] == "retrain_schedule"
    assert run.tags[compat.scheduled_execution_time_tag()] == due.astimezone(dt.timezone.utc).isoformat()
