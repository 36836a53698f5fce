"""One definition of freshness, four views that agree; remote sources polled by cadence, cheaply.

The clock is injected: `as_of` on the territory resource (the check and the inventory mart), `--as-of`
on `iarbre freshness`, and Dagster's own clock frozen for its freshness policy.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from iarbre_assets import cli
from iarbre_assets.automation import polls
from iarbre_assets.definitions import build_definitions
from iarbre_assets.resources import TerritoryResource
from iarbre_assets.runner import materialise
from integration_helpers import execute_request, sensor_tick


def _dagster_freshness(run, key: dg.AssetKey, at: datetime) -> str:
    from dagster._core.definitions.freshness_evaluator import TimeWindowFreshnessPolicyEvaluator
    from dagster._core.loader import LoadingContextForTest
    from dagster._core.test_utils import freeze_time

    node = run.defs.resolve_asset_graph().get(key)
    with freeze_time(at):
        state = asyncio.run(TimeWindowFreshnessPolicyEvaluator().evaluate_freshness(
            LoadingContextForTest(run.instance), node))
    return state.value


def test_a_stale_source_is_late_in_every_view(demo_copy, capsys):
    run = demo_copy
    platform = run.platform
    by_cadence = {s.cadence: s.slug for s in platform.sources.values()}
    stale, fresh = by_cadence["P6M"], by_cadence["P1Y"]
    at = datetime.now(timezone.utc) + timedelta(days=250)
    as_of = at.isoformat(timespec="seconds")

    # 1. the command
    assert cli.main(["freshness", "--home", str(run.home), "--as-of", as_of, "--json"]) == 0
    rows = {r["source"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[stale]["status"] == "late" and rows[fresh]["status"] == "ok"
    assert rows[stale]["age_days"] in (249, 250)

    # 2. the check, and 3. the mart, computed with the same clock
    late_home = TerritoryResource(home=str(run.home), territory="demo", as_of=as_of)
    defs = build_definitions(late_home)
    outcome = materialise(defs, late_home, run.instance,
                          select=f'key:"raw/{stale}" or key:"source/{stale}" or key:"source_inventory"+')
    assert outcome.success, outcome.failures
    checks = [e.event_specific_data for e in outcome.result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
              and e.event_specific_data.check_name == "partner_freshness"]
    assert [c.passed for c in checks] == [False]
    assert checks[0].metadata["status"].value == "late"
    assert checks[0].metadata["content_age_days"].value == rows[stale]["age_days"]
    import duckdb

    con = duckdb.connect(str(run.store.warehouse), read_only=True)
    try:
        mart = {r[0]: r[1:] for r in con.execute(
            "SELECT source, freshness_status, age_days, is_stale FROM marts.source_inventory").fetchall()}
    finally:
        con.close()
    assert mart[stale] == ("late", rows[stale]["age_days"], True)
    assert mart[fresh] == ("ok", rows[fresh]["age_days"], False)

    # 4. Dagster's freshness policy on the raw asset, with its clock at the same time
    assert _dagster_freshness(run, dg.AssetKey(["raw", stale]), at) == "FAIL"
    assert _dagster_freshness(run, dg.AssetKey(["raw", fresh]), at) == "PASS"
    assert _dagster_freshness(run, dg.AssetKey(["raw", stale]), datetime.now(timezone.utc)) == "PASS"


def _backdate_polls(run, days: float = 2) -> None:
    state = polls.read_state(run.store)
    for entry in state.values():
        entry["at"] = (datetime.fromisoformat(entry["at"]) - timedelta(days=days)).isoformat(timespec="seconds")
    run.store.poll_state.write_text(json.dumps(state))


def test_an_enedis_endpoint_change_is_polled_and_recomputed_and_no_change_triggers_nothing(demo_copy):

    run = demo_copy
    platform = run.platform
    cursor = sensor_tick(run, "partner_refresh").cursor
    # first poll right after the full run's fetch: the validators are recorded, nothing is fetched again
    tick = sensor_tick(run, "partner_poll")
    assert not tick.run_requests and "none changed" in tick.skip_message
    assert {s.slug for s in polls.remote_sources(platform)} == set(polls.read_state(run.store))
    # not due yet: no request at all
    assert not sensor_tick(run, "partner_poll").run_requests
    # due, and the endpoints did not change: every probe answers "unchanged" (HTTP 304), no run
    _backdate_polls(run)
    tick = sensor_tick(run, "partner_poll")
    assert not tick.run_requests and "none changed" in tick.skip_message
    # Enedis republishes its underground network with one line moved
    slug = "ore_bt_souterrain"
    location = platform.sources[slug].location
    dataset = location.url.rstrip("/").split("/")[-2]
    served = platform.data_dir / "wire" / "datafair" / f"{dataset}.json"
    published = json.loads(served.read_text(encoding="utf-8"))
    line = json.loads(published["results"][0][location.geometry_field])
    line["coordinates"] = [[x + 0.00004, y] for x, y in line["coordinates"]]
    published["results"][0][location.geometry_field] = json.dumps(line)
    served.write_text(json.dumps(published, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    _backdate_polls(run)
    tick = sensor_tick(run, "partner_poll")
    assert len(tick.run_requests) == 1
    assert {k.to_user_string() for k in tick.run_requests[0].asset_selection} == {f"raw/{slug}", f"source/{slug}"}
    ingest = execute_request(run, tick.run_requests[0])
    assert ingest.success
    changed = {e.partition for e in ingest.get_asset_materialization_events()
               if e.asset_key == dg.AssetKey(["source_by_commune", slug])}
    assert changed
    tick = sensor_tick(run, "partner_refresh", cursor)
    assert len(tick.run_requests) == 1
    downstream = execute_request(run, tick.run_requests[0])
    assert downstream.success
    factors = {f.slug for f in platform.factors_of_source(slug)}
    per_commune = {(e.asset_key.to_user_string(), e.partition) for e in downstream.get_asset_materialization_events()
                   if e.partition is not None}
    assert {k for k, _ in per_commune if k.startswith(("footprint/", "coverage/"))} == \
        {f"{kind}/{f}" for kind in ("footprint", "coverage") for f in factors}
    assert {p for _, p in per_commune} == changed
