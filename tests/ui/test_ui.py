"""The platform as a person sees it: `dagster dev`, a demo run launched through GraphQL, headless Chromium.

Run alone with `pytest -m ui`. Screenshots are written to test-output/ui/ (open the PNGs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ui_browser import Browser, chromium_path

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "ui"
pytestmark = [pytest.mark.ui, pytest.mark.slow]

ASSET_NODES = """
{ assetNodes { assetKey { path } dependencyKeys { path } groupName isObservable kinds
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    assetMaterializations(limit: 1) { tags { key value } }
    assetChecksOrError { ... on AssetChecks { checks { name blocking
        executionForLatestMaterialization { status } } } } } }
"""


def _require_chromium() -> None:
    if chromium_path():
        return
    message = "headless Chromium is needed for the UI test: apt-get install chromium"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    def __init__(self, home: Path, port: int):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(home / "dagster-dev.log", "w")
        from iarbre_assets.cli import subprocess_env
        from iarbre_assets.resources import TerritoryResource

        env = subprocess_env(TerritoryResource(home=str(home), territory="demo"))
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO / "workspace.yaml"),
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited: see {self.log.name}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    # the code location may still be loading
                    data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name "
                                        "locationOrLoadError { __typename } } } } }")
                    entries = data["workspaceOrError"]["locationEntries"]
                    if entries and entries[0]["locationOrLoadError"] and \
                            entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                        return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError("dagster dev did not become ready")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui_home")
    from iarbre_assets.catalog import load_territory
    from iarbre_assets.cli import write_instance_config
    from iarbre_demo.generator import generate_demo

    generate_demo(load_territory("demo").data_dir_path(home))  # what `iarbre-demo` does
    write_instance_config(home / "dagster")
    server = DagsterDev(home, _free_port())
    try:
        server.wait_ready()
        server.graphql("mutation { setNuxSeen }")
        yield server
    finally:
        server.stop()


def _launch_demo_run(server: DagsterDev) -> str:
    communes = _partition_keys(server)
    mutation = """
    mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
      __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
      ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }
    """
    params = {
        "selector": {"repositoryLocationName": "iarbre", "repositoryName": "__repository__",
                     "jobName": "materialise_all"},
        "executionMetadata": {"tags": [
            {"key": "dagster/asset_partition_range_start", "value": communes[0]},
            {"key": "dagster/asset_partition_range_end", "value": communes[-1]},
        ]},
    }
    result = server.graphql(mutation, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _partition_keys(server: DagsterDev) -> list[str]:
    data = server.graphql('{ assetNodeOrError(assetKey: {path: ["plantability_score"]}) '
                          '{ ... on AssetNode { partitionKeys } } }')
    return data["assetNodeOrError"]["partitionKeys"]


RUN_STATE = 'query($id: ID!) { runOrError(runId: $id) { ... on Run { status stats { ... on RunStatsSnapshot { ' \
    'stepsSucceeded materializations } } } } }'


def _wait_run(server: DagsterDev, run_id: str, stalled_after: float = 600) -> str:
    """Wait for the run to finish, as long as it makes progress (a step or a materialisation more within
    `stalled_after` seconds): a busy machine is slow, not stuck."""
    last, moved = None, time.monotonic()
    while True:
        run = server.graphql(RUN_STATE, {"id": run_id})["runOrError"]
        if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            return run["status"]
        progress = (run["status"], run["stats"].get("stepsSucceeded"), run["stats"].get("materializations"))
        if progress != last:
            last, moved = progress, time.monotonic()
        elif time.monotonic() - moved > stalled_after:
            raise TimeoutError(f"run {run_id} made no progress for {stalled_after:.0f} s ({progress})")
        time.sleep(2)


def _runs(server: DagsterDev, tag: dict) -> list[dict]:
    data = server.graphql('query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status '
                          'tags { key value } } } } }', {"f": {"tags": [tag]}})
    return data["runsOrError"]["results"]


def _materialisations(server: DagsterDev, path: list[str], run_id: str) -> list[dict]:
    """The materialisations of one asset by one run, as the UI's asset page lists them."""
    data = server.graphql('query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset { '
                          'assetMaterializations(limit: 200) { partition runId } } } }', {"k": {"path": path}})
    return [{"partitionKey": m["partition"], "runId": m["runId"]}
            for m in data["assetOrError"]["assetMaterializations"] if m["runId"] == run_id]


def _wait_for_runs(server: DagsterDev, tag: dict, count: int, stalled_after: float = 600,
                   before: set[str] = frozenset()) -> list[dict]:
    """Wait until `count` runs with this tag, other than those in `before`, exist and are finished (the
    daemon launches them)."""
    deadline = time.monotonic() + stalled_after
    while True:
        runs = [r for r in _runs(server, tag) if r["runId"] not in before]
        if len(runs) >= count:
            return [dict(r, status=_wait_run(server, r["runId"], stalled_after)) for r in runs]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the daemon launched {len(runs)} run(s) tagged {tag}, expected {count}")
        time.sleep(2)


def test_demo_run_lineage_checks_and_pages(dagster_dev):
    _require_chromium()
    started = time.monotonic()
    run_id = _launch_demo_run(dagster_dev)
    assert _wait_run(dagster_dev, run_id) == "SUCCESS", (dagster_dev.home / "dagster-dev.log").read_text()[-3000:]

    nodes = {"/".join(n["assetKey"]["path"]): n for n in dagster_dev.graphql(ASSET_NODES)["assetNodes"]}
    # lineage: the GRDF chain down to the commune mart
    assert "source/ore_gaz" in {"/".join(d["path"]) for d in nodes["source_by_commune/ore_gaz"]["dependencyKeys"]}
    assert "source_by_commune/ore_gaz" in {"/".join(d["path"]) for d in nodes["footprint/reseau_gaz"]["dependencyKeys"]}
    mart = next(k for k in nodes if k.endswith("commune_plantability"))
    assert nodes[mart]["groupName"] == "marts"
    groups = {n["groupName"] for n in nodes.values()}
    assert {"sources", "constraints", "score", "marts", "exports"} <= groups
    # checks: sources' quality suites and the marts' dbt tests passed on the latest materialisation
    def statuses(key):
        checks = nodes[key]["assetChecksOrError"]["checks"]
        return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks}
    assert statuses("source/ore_gaz")["quality_suite"] == "SUCCEEDED"
    assert statuses("raw/ore_gaz")["delivery"] == "SUCCEEDED"
    stg_tiles = next(k for k in nodes if k.endswith("stg_tiles"))
    assert statuses(stg_tiles) and all(s == "SUCCEEDED" for s in statuses(stg_tiles).values())
    assert all(s == "SUCCEEDED" for s in statuses(mart).values())
    # every ancestor of the commune mart, back to GRDF's raw delivery, as the UI's graph holds it
    ancestors, todo = set(), [mart]
    while todo:
        for dep in nodes[todo.pop()]["dependencyKeys"]:
            key = "/".join(dep["path"])
            if key not in ancestors:
                ancestors.add(key)
                todo.append(key)
    assert {"raw/ore_gaz", "source/ore_gaz", "footprint/reseau_gaz", "coverage/reseau_gaz",
            "plantability_score"} <= ancestors, sorted(ancestors)
    # the sources group: every source with its partner as owner, its kinds, its checks and its version
    from iarbre_assets.catalog import load_catalog, load_territory

    catalogue = load_catalog()
    for slug, source in load_territory("demo").source_defs(catalogue).items():
        for prefix in ("raw", "source"):
            node = nodes[f"{prefix}/{slug}"]
            assert node["groupName"] == "sources"
            teams = {o.get("team") for o in node["owners"]}
            assert source.partner.replace("_", "-") in teams and "data-stewards" in teams, (slug, teams)
            assert node["kinds"], slug
            version = {t["key"]: t["value"] for t in node["assetMaterializations"][0]["tags"]}
            assert version.get("dagster/data_version"), (slug, prefix)
        assert statuses(f"source/{slug}")["quality_suite"] == "SUCCEEDED", slug
        assert "partner_freshness" in statuses(f"raw/{slug}")

    # what a person sees: the lineage of the commune mart, and the score asset with its class preview
    OUTPUT.mkdir(parents=True, exist_ok=True)
    browser = Browser(dagster_dev.home / "chromium-profile")
    try:
        browser.open(f"{dagster_dev.url}/assets/{mart}?view=lineage", wait_for_text="stg_tiles")
        time.sleep(2)  # let the graph layout settle
        text = browser.text()
        assert "commune_plantability" in text and "stg_tiles" in text
        browser.screenshot(OUTPUT / "commune_plantability_lineage.png")
        # the gas network's coverage, upstream back to GRDF's raw delivery (the URL the "Upstream" scope and
        # the depth controls lead to); the view opens zoomed out, so zoom in as a person would
        browser.open(f"{dagster_dev.url}/assets/coverage/reseau_gaz?view=lineage&lineageScope=upstream"
                     "&lineageDepth=3", wait_for_text="ore_gaz", timeout=90)
        text = browser.text()
        assert text.count("ore_gaz") >= 3 and "reseau_gaz" in text  # raw, source, source_by_commune
        time.sleep(2)
        browser.click_selector('[aria-label="zoom_in"]', times=4)
        time.sleep(2)
        browser.screenshot(OUTPUT / "reseau_gaz_upstream_lineage.png")

        # the steward's view of the sources: the catalogue filtered on the group, with partners and status
        # (a virtualised table: the first rows, in key order, are rendered)
        browser.open(f"{dagster_dev.url}/assets?asset-selection=group%3A%22sources%22", wait_for_text="aerodromes")
        text = browser.text()
        assert "Partner: Métropole de Lyon" in text and "Licence" in text and "sources" in text
        time.sleep(2)
        browser.screenshot(OUTPUT / "sources_group.png")

        browser.open(f"{dagster_dev.url}/assets/plantability_score", wait_for_text="preview")
        browser.screenshot(OUTPUT / "plantability_score.png")
        browser.click_text("[Show Markdown]")
        browser.wait("[...document.images].some(i => i.src.startsWith('data:image/png') && i.naturalWidth > 100)")
        time.sleep(1)
        browser.screenshot(OUTPUT / "plantability_score_preview.png")
    finally:
        browser.close()
    for png in ("commune_plantability_lineage.png", "reseau_gaz_upstream_lineage.png",
                "sources_group.png", "plantability_score.png", "plantability_score_preview.png"):
        assert (OUTPUT / png).stat().st_size > 20_000, f"{png} looks blank"
    print(f"UI test: run and pages in {time.monotonic() - started:.0f} s")


def test_a_partner_drop_reaches_the_marts_with_the_daemon_running(dagster_dev):
    """The daemon does it all: the inbox sensor's ingest run, then the refresh sensor's one run; the marts,
    the report and explain then name GRDF's new version."""
    import geopandas as gpd
    import shapely

    from iarbre_assets.provenance.report import commune_report
    from iarbre_assets.store import Store

    store = Store(dagster_dev.home)
    if store.versions("ore_gaz").current() is None:  # run alone: the demo must be there first
        assert _wait_run(dagster_dev, _launch_demo_run(dagster_dev)) == "SUCCESS"
    current = store.versions("ore_gaz").current()
    frame = gpd.read_parquet(current.data_path(store))
    frame.loc[0, "geometry"] = shapely.affinity.translate(frame.geometry.iloc[0], xoff=3.0)
    drop = store.inbox("grdf") / "ore_gaz.geojson"
    drop.parent.mkdir(parents=True, exist_ok=True)
    tmp = drop.with_name(".ore_gaz.part")
    frame.to_file(tmp, driver="GeoJSON", engine="pyogrio")
    inbox_tag, refresh_tag = {"key": "iarbre/trigger", "value": "partner_inbox"}, {"key": "iarbre/trigger", "value": "refresh"}
    before = {r["runId"] for tag in (inbox_tag, refresh_tag) for r in _runs(dagster_dev, tag)}
    tmp.rename(drop)  # partners drop by renaming a complete file into the inbox
    started = time.monotonic()
    [ingest] = _wait_for_runs(dagster_dev, inbox_tag, 1, before=before)
    assert ingest["status"] == "SUCCESS"
    # the refresh run that follows this ingest names it (another may follow an earlier run)
    after_ingest = lambda r: ingest["runId"][:8] in {t["key"]: t["value"] for t in r["tags"]}.get(  # noqa: E731
        "iarbre/after_runs", "")
    deadline = time.monotonic() + 600
    while not any(after_ingest(r) for r in _runs(dagster_dev, refresh_tag)):
        assert time.monotonic() < deadline, "the daemon launched no refresh run after the ingest"
        time.sleep(2)
    refresh = next(r for r in _runs(dagster_dev, refresh_tag) if after_ingest(r))
    refresh = dict(refresh, status=_wait_run(dagster_dev, refresh["runId"]))
    assert refresh["status"] == "SUCCESS", (dagster_dev.home / "dagster-dev.log").read_text()[-3000:]
    print(f"drop to marts consistent, with the daemon: {time.monotonic() - started:.0f} s")
    new = store.versions("ore_gaz").current().raw_sha256
    assert new != current.raw_sha256
    # the communes the ingest found changed now name the new version in their report
    touched = {r["partitionKey"] for r in _materialisations(dagster_dev, ["source_by_commune", "ore_gaz"], ingest["runId"])}
    assert touched
    for code in touched:
        report = commune_report(code, store.warehouse)
        assert {i["source"]: i["version"] for i in report["inputs"]}["ore_gaz"] == new, code
    # the consistency check of the marts ran in the refresh run and passed
    nodes = {"/".join(n["assetKey"]["path"]): n for n in dagster_dev.graphql(ASSET_NODES)["assetNodes"]}
    checks = {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status")
              for c in nodes["marts/commune_plantability"]["assetChecksOrError"]["checks"]}
    assert checks["marts_match_outputs"] == "SUCCEEDED"
