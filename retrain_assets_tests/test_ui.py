"""The Dagster UI on a populated project: the webserver's GraphQL API shows the lineage, the checks and the
materializations; headless Chromium renders the asset graph; and `retrain ui` serves the same code location."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from bench.workload import free_port, graphql
from retrain_assets.app.execution import ingest, materialize
from retrain_assets.app.instance import project_instance
from retrain_assets.core import synthetic
from retrain_assets.core.config import load_config
from retrain_assets.core.inference import infer_config, render_config

from .conftest import START, Project

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

PARENTS = {
    "raw_data": set(),
    "validated_features": {"raw_data"},
    "candidate_model": {"validated_features"},
    "evaluation_report": {"candidate_model", "validated_features"},
    "prod_model": {"evaluation_report"},
}
LINEAGE = set(PARENTS)
VALIDATION_CHECKS = [
    "schema_matches",
    "required_values_present",
    "values_in_range",
    "categories_in_domain",
    "target_balanced",
    "batch_integrity",
    "no_target_leakage",
]
CHECKS = {  # per asset: check name -> blocking
    "raw_data": {},
    "validated_features": {
        **dict.fromkeys(VALIDATION_CHECKS, True),
        "values_as_expected": False,
        "feature_drift": False,
        "champion_performance": False,
    },
    "candidate_model": {},
    "evaluation_report": {"candidate_meets_minimum": True, "candidate_beats_champion": False},
    "prod_model": {"champion_is_fresh": False},
}
BLOCKING = {name for attached in CHECKS.values() for name, blocking in attached.items() if blocking}

LINEAGE_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
POPULATED_QUERY = """{ assetNodes {
  assetKey { path }
  dependencyKeys { path }
  assetMaterializations(limit: 1) { runId }
  assetChecksOrError { ... on AssetChecks { checks { name blocking executionForLatestMaterialization { status } } } }
} }"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1600,1000",
]
# Asset and group nodes of the lineage graph are HTML inside <foreignObject>s of its SVG; the sidebar's
# asset list is not, so text found here was rendered by the graph.
GRAPH_NODE = "//*[local-name()='svg']//*[local-name()='foreignObject']"
COLLAPSED_GROUP = f"{GRAPH_NODE}//*[@aria-label='unfold_more']"
COMMUNITY_DIALOG = "//*[contains(@class, 'dialog')][.//*[normalize-space()='Join the Dagster community']]"


def wait_for_asset_graph(port: int, server: subprocess.Popen, timeout: float = 60) -> list[dict]:
    """Poll the GraphQL API until the code location is loaded; fail early if the server exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            nodes = graphql(port, LINEAGE_QUERY)["assetNodes"]
            if nodes:
                return nodes
        except OSError:
            pass
        assert server.poll() is None, f"{server.args[0]} exited with status {server.returncode}"
        assert time.monotonic() < deadline, f"the Dagster UI did not answer within {timeout:.0f} s"
        time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C (`dagster dev` and `dagster-webserver` stop their daemon and code server), then make sure
    nothing of the process group is left."""
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def parents_of(nodes: list[dict]) -> dict[str, set[str]]:
    return {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}


def assert_lineage(nodes: list[dict]) -> None:
    """The five lineage assets have exactly their designed parents; other assets may exist beside them."""
    parents = parents_of(nodes)
    assert LINEAGE <= set(parents), f"missing from the asset graph: {sorted(LINEAGE - set(parents))}"
    assert {key: parents[key] for key in PARENTS} == PARENTS
    if "backtest_summary" in parents:
        assert "historical_model" in parents["backtest_summary"]


@dataclass
class Served:
    project: Project
    run_id: str  # the run that materialized the graph
    port: int


def one_batch_project(root: Path) -> Project:
    """A project whose config is inferred from one clean 600-row churn batch (day 0 of ``project``)."""
    batch = root / f"churn-{START.isoformat()}.csv"
    frame = synthetic.churn_batch(START, 600, seed=11)
    frame.to_csv(batch, index=False)
    config = infer_config(frame, "churned", timestamp="event_time", id_column="customer_id", project="churn")
    config_path = root / "retrain.yaml"
    config_path.write_text(render_config(config, batch.name))
    return Project(config_path, load_config(config_path), [batch])


def start_ui(project: Project, port: int, *options: str) -> subprocess.Popen:
    """`retrain ui` on the project, with its cross-site guard; ``--no-daemon`` keeps sensors from starting runs
    behind the tests' backs."""
    env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    return subprocess.Popen(
        [str(BIN / "retrain"), "--config", str(project.path), "ui", "--port", str(port), *options],
        cwd=project.path.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One clean batch ingested and the graph materialized once into the project's persistent instance,
    served on 127.0.0.1 (the server boots while the graph materializes)."""
    project = one_batch_project(tmp_path_factory.mktemp("ui"))
    port = free_port()
    server = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            # project_instance points DAGSTER_HOME at the project; setenv first so the old value comes back.
            patch.setenv("DAGSTER_HOME", str(project.config.dagster_home))
            with project_instance(project.config) as instance:
                ingest(project.config, instance, project.batch(0))  # the instance exists before the server reads it
                server = start_ui(project, port, "--no-daemon")
                outcome = materialize(project.path, instance)
        assert outcome.success, outcome.describe("roc_auc")
        wait_for_asset_graph(port, server)
        yield Served(project, outcome.run_id, port)
    finally:
        if server is not None:
            stop(server)


def test_retrain_ui_read_only_serves_the_lineage_refuses_mutations_and_stops_on_sigterm(project):
    port = free_port()
    server = start_ui(project, port, "--read-only")
    try:
        nodes = wait_for_asset_graph(port, server)
        before = graphql(port, PAUSED)["instance"]["autoMaterializePaused"]
        status, body = send(port, "/graphql", json.dumps({"query": toggle(before)}), "application/json")
        after = graphql(port, PAUSED)["instance"]["autoMaterializePaused"]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            leftovers = process_group(server.pid)
            stop(server)

    assert_lineage(nodes)
    assert (project.config.dagster_home / "dagster.yaml").exists(), "the UI runs on the project's storage home"
    assert after == before, "read-only: the mutation is refused"
    assert status == 500 and "UnauthorizedError" in body or "not authorized" in body.lower(), body[:500]
    assert server.returncode == 0 and leftovers == [], "SIGTERM stops the UI, its daemon and code servers"


def process_group(pgid: int) -> list[str]:
    """Commands of the processes still alive in a process group. A zombie (state Z) has exited and only waits to
    be reaped by whoever adopted it (in a container, an init that may be slow to), so it does not count, as in
    ``webui.stop_descendants``."""
    listing = subprocess.run(["ps", "-o", "pgid=,stat=,args=", "-e"], capture_output=True, text=True).stdout
    rows = [line.split(maxsplit=2) for line in listing.splitlines()]
    return [" ".join(row) for row in rows if row[0] == str(pgid) and not row[1].startswith("Z")]


PAUSED = "{ instance { autoMaterializePaused } }"


def toggle(paused: bool) -> str:
    """The mutation that flips automation's paused state: any change shows the mutation ran."""
    return f"mutation {{ setAutoMaterializePaused(paused: {str(not paused).lower()}) }}"


def send(
    port: int, path: str, body: Optional[str] = None, content_type: Optional[str] = None, **headers: str
) -> tuple[int, str]:
    """One HTTP request to the UI (a POST when there is a body); the status and the body, errors included."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body.encode() if body is not None else None,
        headers={
            **({"Content-Type": content_type} if content_type else {}),
            **{name.replace("_", "-"): value for name, value in headers.items()},
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_request_a_foreign_web_page_can_send_runs_no_mutation(served):
    """Review finding 2: a ``text/plain`` POST to ``/graphql?query=mutation…`` with a foreign ``Origin`` paused
    automation. Every shape of it a browser sends without a CORS preflight is refused, and so is a page
    that reaches the UI under another host name (DNS rebinding); the operator's own requests still run."""
    before = graphql(served.port, PAUSED)["instance"]["autoMaterializePaused"]
    flip = toggle(before)
    query = "/graphql?" + urllib.parse.urlencode({"query": flip})
    evil = "http://evil.example"
    refused = {
        "text/plain with a foreign Origin": send(served.port, query, "", "text/plain", Origin=evil),
        "a form with a foreign Referer": send(
            served.port, query, "a=b", "application/x-www-form-urlencoded", Referer=f"{evil}/page"
        ),
        "multipart with no Origin": send(served.port, query, "", "multipart/form-data; boundary=x"),
        "a mutation over GET": send(served.port, query),
        "JSON with a foreign Origin": send(
            served.port, "/graphql", json.dumps({"query": flip}), "application/json", Origin=evil
        ),
        "another Host header": send(
            served.port, "/graphql", json.dumps({"query": flip}), "application/json", Host="evil.example"
        ),
    }
    assert {name: status for name, (status, _) in refused.items()} == {
        "text/plain with a foreign Origin": 403,
        "a form with a foreign Referer": 403,
        "multipart with no Origin": 415,
        "a mutation over GET": 405,
        "JSON with a foreign Origin": 403,
        "another Host header": 421,
    }
    assert graphql(served.port, PAUSED)["instance"]["autoMaterializePaused"] == before

    own = f"http://127.0.0.1:{served.port}"
    status, body = send(served.port, "/graphql", json.dumps({"query": flip}), "application/json", Origin=own)
    assert status == 200 and not json.loads(body).get("errors"), body[:500]
    assert graphql(served.port, PAUSED)["instance"]["autoMaterializePaused"] == (not before)
    graphql(served.port, toggle(not before))
    assert send(served.port, "/graphql?query=%7B%20version%20%7D")[0] == 200, "a read over GET still answers"


def test_graphql_shows_lineage_checks_and_materializations(served):
    nodes = graphql(served.port, POPULATED_QUERY)["assetNodes"]

    assert_lineage(nodes)
    by_name = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    checks = {name: by_name[name]["assetChecksOrError"]["checks"] for name in PARENTS}
    assert {name: {c["name"]: c["blocking"] for c in attached} for name, attached in checks.items()} == CHECKS
    assert {name: [m["runId"] for m in by_name[name]["assetMaterializations"]] for name in PARENTS} == {
        name: [served.run_id] for name in PARENTS
    }, "every lineage asset's latest materialization is the run of the populated instance"
    gates = {
        check["name"]: (check["executionForLatestMaterialization"] or {}).get("status")
        for attached in checks.values()
        for check in attached
        if check["blocking"]
    }
    assert gates == dict.fromkeys(BLOCKING, "SUCCEEDED"), "the clean batch passed every blocking check"


def graph_text(driver: webdriver.Chrome) -> set[str]:
    return {line for node in driver.find_elements(By.XPATH, GRAPH_NODE) for line in node.text.splitlines()}


@pytest.fixture
def chromium(tmp_path) -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium through its chromedriver, on a fresh profile."""
    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), (
        "needs the Debian packages chromium and chromium-driver (`make test` installs them)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    # An explicit driver path means Selenium Manager is never run: nothing is downloaded.
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.browser
def test_chromium_renders_the_asset_graph(served, chromium, tmp_path):
    driver = chromium
    driver.get(f"http://127.0.0.1:{served.port}/asset-groups")
    wait = WebDriverWait(driver, 30)
    wait.until(expected_conditions.title_contains("Global asset lineage"))

    # Once per DAGSTER_HOME (the server records it in .nux/) the UI opens this dialog over the graph.
    skip = (By.XPATH, f"{COMMUNITY_DIALOG}//button[normalize-space()='Skip']")
    try:
        WebDriverWait(driver, 15).until(expected_conditions.element_to_be_clickable(skip)).click()
    except TimeoutException:
        pass
    wait.until(expected_conditions.invisibility_of_element_located((By.XPATH, COMMUNITY_DIALOG)))

    wait.until(graph_text)
    if driver.find_elements(By.XPATH, COLLAPSED_GROUP):  # with several groups they start collapsed
        # the graph's "Expand all groups" (its settings menu, or ⌥E)
        ActionChains(driver).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    wait.until(lambda d: LINEAGE <= graph_text(d))

    screenshot = tmp_path / "asset-graph.png"
    assert driver.save_screenshot(str(screenshot))

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000, "the screenshot looks blank"


LAUNCH_BACKFILL = """mutation { launchPartitionBackfill(backfillParams: {
  assetSelection: [{path: ["historical_model"]}], allPartitions: true
}) { __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
LAUNCH = """mutation { launchRun(executionParams: {selector: {
  repositoryLocationName: "retrain_assets", repositoryName: "__repository__", jobName: "retrain"
}}) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
REEXECUTE = """mutation Reexecute($run: String!) { launchPipelineReexecution(reexecutionParams: {
  parentRunId: $run, strategy: ALL_STEPS
}) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
# What the UI's own code does for a button: a JSON POST from the page's origin (the browser sets Origin).
IN_PAGE_GRAPHQL = """const [query, variables, done] = arguments;
fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json"},
                   body: JSON.stringify({query, variables})})
  .then(response => response.json()).then(done, error => done({error: String(error)}));"""


@pytest.mark.browser
def test_in_chromium_the_operator_launches_and_reruns_while_a_foreign_page_changes_nothing(served, chromium):
    """Through the guard, the operator's browser launches a backfill of the history partitions, launches
    the retraining job and re-executes that run, as the UI's buttons do (with no daemon here they stay
    queued); then a page on another origin, opened in the same browser,
    sends finding 2's cross-site request, which reaches the UI and changes nothing."""
    import http.server
    import threading

    driver, ui = chromium, f"http://127.0.0.1:{served.port}"
    driver.get(f"{ui}/runs")
    backfill = driver.execute_async_script(IN_PAGE_GRAPHQL, LAUNCH_BACKFILL, {})
    launched = driver.execute_async_script(IN_PAGE_GRAPHQL, LAUNCH, {})
    assert backfill["data"]["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", backfill
    assert launched["data"]["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["data"]["launchRun"]["run"]["runId"]
    rerun = driver.execute_async_script(IN_PAGE_GRAPHQL, REEXECUTE, {"run": run_id})
    assert rerun["data"]["launchPipelineReexecution"]["__typename"] == "LaunchRunSuccess", rerun

    before = graphql(served.port, PAUSED)["instance"]["autoMaterializePaused"]
    attack = f"{ui}/graphql?" + urllib.parse.urlencode({"query": toggle(before)})
    page = f"""<html><body><script>
fetch({json.dumps(attack)}, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
                             body: "{{}}"}})
  .then(() => {{ document.title = "answered"; }}, () => {{ document.title = "unreachable"; }});
</script></body></html>""".encode()

    class ForeignSite(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ForeignSite)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{site.server_address[1]}/")
        WebDriverWait(driver, 15).until(lambda d: d.title in ("answered", "unreachable"))
        answered = driver.title
    finally:
        site.shutdown()

    assert answered == "answered", "the cross-site request reached the UI (and got its refusal)"
    assert graphql(served.port, PAUSED)["instance"]["autoMaterializePaused"] == before
