"""A partner update reaches every output by itself, in one incremental run, and nothing else is recomputed.

The sensors are evaluated tick by tick on the home's real instance, and the runs they request are executed
as the daemon would launch them: the drop → the inbox sensor → the ingest run → the refresh sensor → one run
covering the touched communes, the mosaics and exports, the warehouse and every dbt model (dbt once).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import dagster as dg
import geopandas as gpd
import pandas as pd
import shapely

from integration_helpers import execute_request, marts_state, run_platform, sensor_tick

TERRITORY_WIDE = {"plantability_score_cog", "plantability_class_cog", "class_polygons_gpkg", "class_map_preview",
                  "tiles_geoparquet", "source_inventory"}


def _windows_hit(platform, geometry, halo: float) -> set[str]:
    return {code for code, window in platform.windows.items()
            if shapely.box(*window.bounds).buffer(halo, join_style="mitre").intersects(geometry)}


def _move_one_feature(platform, slug: str):
    """The source's accepted features with the one reaching the fewest commune windows moved by 3 m, and the
    communes whose windows (with the source's halo) see the change."""
    halo = platform.source_halo_m(slug)
    current = platform.store.versions(slug).current()
    frame = gpd.read_parquet(current.data_path(platform.store))
    reach = [len(_windows_hit(platform, g, halo)) for g in frame.geometry]
    index = min(range(len(frame)), key=reach.__getitem__)
    old = frame.geometry.iloc[index]
    moved = frame.copy()
    moved.loc[index, "geometry"] = shapely.affinity.translate(old, xoff=3.0)
    expected = _windows_hit(platform, old, halo) | _windows_hit(platform, moved.geometry.iloc[index], halo)
    assert 0 < len(expected) < len(platform.commune_codes)
    return moved, expected


def _materialised(result) -> Counter:
    return Counter((e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events())


def test_a_grdf_drop_in_one_commune_recomputes_exactly_what_depends_on_it(demo_copy, tmp_path):
    run, platform = demo_copy, demo_copy.platform
    refresh_cursor = sensor_tick(run, "partner_refresh").cursor  # the daemon starts watching
    previous = platform.store.versions("ore_gaz").current()
    moved, expected = _move_one_feature(platform, "ore_gaz")
    drop = platform.store.inbox("grdf") / "ore_gaz.geojson"
    drop.parent.mkdir(parents=True, exist_ok=True)
    moved.to_file(drop, driver="GeoJSON", engine="pyogrio")

    # the inbox sensor asks for GRDF's source only; the ingest reports the changed communes
    tick = sensor_tick(run, "partner_inbox")
    assert len(tick.run_requests) == 1
    assert {k.to_user_string() for k in tick.run_requests[0].asset_selection} == {"raw/ore_gaz", "source/ore_gaz"}
    ingest = execute_request(run, tick.run_requests[0])
    assert ingest.success
    assert {p for (k, p) in _materialised(ingest) if k == "source_by_commune/ore_gaz"} == expected
    assert [e["state"] for e in platform.store.drops.entries() if e["file"] == "ore_gaz.geojson"] == ["accepted"]

    # the refresh sensor asks for one run: exactly the gas factors there, their score, classes and tiles,
    # the territory-wide exports and warehouse, and the dbt models, each once
    tick = sensor_tick(run, "partner_refresh", refresh_cursor)
    assert len(tick.run_requests) == 1
    downstream = execute_request(run, tick.run_requests[0])
    assert downstream.success
    done = _materialised(downstream)
    assert set(done.values()) == {1}, "an asset partition was materialised twice"
    gas_factors = {f.slug for f in platform.factors_of_source("ore_gaz")}
    partitioned = {(k, p) for (k, p) in done if p is not None}
    assert partitioned == {(f"{kind}/{f}", c) for kind in ("footprint", "coverage") for f in gas_factors for c in expected} \
        | {(k, c) for k in ("plantability_score", "plantability_class", "tiles") for c in expected}
    unpartitioned = {k for (k, p) in done if p is None}
    assert TERRITORY_WIDE <= unpartitioned
    assert {k for k in unpartitioned if not k.startswith(("staging/", "marts/"))} == TERRITORY_WIDE
    assert {"marts/commune_plantability", "marts/run_provenance", "marts/source_inventory"} <= unpartitioned
    steps = {e.step_key for e in downstream.all_events if e.event_type_value == "STEP_START"}
    assert len([s for s in steps if "dbt" in s]) == 1, "dbt is built once"
    checks = {(e.event_specific_data.check_name, e.event_specific_data.passed) for e in downstream.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert ("marts_match_outputs", True) in checks
    assert all(passed for _, passed in checks)

    # and then nothing is pending: neither the refresh sensor nor the inbox asks for more
    assert not sensor_tick(run, "partner_refresh", tick.cursor).run_requests
    assert not sensor_tick(run, "partner_inbox").run_requests

    # the same bytes dropped again, under a copy's name: recorded, and nothing runs
    shutil.copy(drop, drop.with_name("ore_gaz (1).geojson"))
    again = sensor_tick(run, "partner_inbox")
    assert not again.run_requests
    assert platform.store.drops.entries()[-1]["state"] == "accepted" and "same bytes" in platform.store.drops.entries()[-1]["reason"]

    # the marts equal those of a from-scratch run on the same inputs (run ids and times aside)
    scratch_home = tmp_path / "scratch"
    (scratch_home / "inbox" / "grdf").mkdir(parents=True)
    shutil.copy(drop, scratch_home / "inbox" / "grdf" / "ore_gaz.geojson")
    scratch = run_platform(scratch_home)
    assert scratch.outcome.success, scratch.outcome.failures
    # communes the update did not reach keep the score computed from the previous gas version, and name it
    untouched = set(platform.commune_codes) - expected
    import duckdb

    con = duckdb.connect(str(run.home / "warehouse.duckdb"), read_only=True)
    try:
        named = dict(con.execute("SELECT commune, version FROM marts.run_provenance WHERE source = 'ore_gaz' "
                                 "AND is_latest_run").fetchall())
    finally:
        con.close()
    new_version = platform.store.versions("ore_gaz").current().raw_sha256
    assert {c: named[c] for c in untouched} == {c: previous.raw_sha256 for c in untouched}
    assert {c: named[c] for c in expected} == {c: new_version for c in expected}
    carried = {(c, "ore_gaz") for c in untouched}
    incremental, fresh = marts_state(run.home, carried), marts_state(scratch_home, carried)
    assert set(incremental) == set(fresh)
    differing = {t: ([r for r in incremental[t] if r not in fresh[t]][:2], [r for r in fresh[t] if r not in incremental[t]][:2])
                 for t in incremental if incremental[t] != fresh[t]}
    assert not differing, json.dumps(differing, indent=1)[:6000]

    # what a steward and an auditor read: the report, explain and the provenance all name the new version
    from iarbre_assets.provenance.explain import explain_point
    from iarbre_assets.provenance.report import commune_report

    new = platform.store.versions("ore_gaz").current().raw_sha256
    touched = sorted(expected)[0]
    report = commune_report(touched, run.store.warehouse)
    assert {i["source"]: i["version"] for i in report["inputs"]}["ore_gaz"] == new
    record = json.loads(run.store.score_record(touched).read_text())
    x0, y0, x1, y1 = record["grid"]["window"]
    tiles = pd.read_parquet(run.store.tiles(touched), columns=["x", "y"])
    explanation = explain_point(run.home, float(tiles.x.iloc[0]), float(tiles.y.iloc[0]))
    assert {s["slug"]: s["raw_sha256"] for s in explanation["sources"]}["ore_gaz"] == new
    others = sorted(set(platform.commune_codes) - expected)
    if others:
        other = json.loads(run.store.score_record(others[0]).read_text())
        assert {s["slug"]: s["raw_sha256"] for s in other["sources"]}["ore_gaz"] != new


def test_changes_in_communes_apart_are_one_short_chain_each_partition_once_and_the_marts_at_the_end(demo_copy):
    """A Dagster run covers one range of communes: an update touching the first and the last commune (not
    contiguous) is a chain of two runs, one at a time, the second with the mosaics, exports and dbt."""
    run, platform = demo_copy, demo_copy.platform
    codes = platform.commune_codes
    refresh_cursor = sensor_tick(run, "partner_refresh").cursor
    halo = platform.source_halo_m("ore_gaz")
    frame = gpd.read_parquet(platform.store.versions("ore_gaz").current().data_path(platform.store))
    moved = frame.copy()
    for code in (codes[0], codes[-1]):  # a feature whose reach, moved or not, is that commune alone
        index = next(i for i, g in enumerate(frame.geometry)
                     if _windows_hit(platform, g, halo) == {code}
                     and _windows_hit(platform, shapely.affinity.translate(g, xoff=3.0), halo) == {code})
        moved.loc[index, "geometry"] = shapely.affinity.translate(frame.geometry.iloc[index], xoff=3.0)
    drop = platform.store.inbox("grdf") / "ore_gaz.geojson"
    drop.parent.mkdir(parents=True, exist_ok=True)
    moved.to_file(drop, driver="GeoJSON", engine="pyogrio")
    ingest = execute_request(run, sensor_tick(run, "partner_inbox").run_requests[0])
    assert ingest.success
    assert {p for (k, p) in _materialised(ingest) if k == "source_by_commune/ore_gaz"} == {codes[0], codes[-1]}

    results, cursor = [], refresh_cursor
    while True:
        tick = sensor_tick(run, "partner_refresh", cursor)
        cursor = tick.cursor or cursor
        if not tick.run_requests:
            break
        assert len(tick.run_requests) == 1, "one run at a time"
        request = tick.run_requests[0]
        results.append((request.tags["iarbre/refresh_step"], execute_request(run, request)))
        assert len(results) <= 3, "the chain does not end"
    assert [step for step, _ in results] == ["1/2", "2/2"]
    assert all(result.success for _, result in results)
    first, last = (_materialised(result) for _, result in results)
    assert {p for (_, p) in first} == {codes[0]} and {p for (_, p) in last} - {None} == {codes[-1]}
    assert not any(p is None for (_, p) in first), "the territory-wide assets wait for the last commune"
    assert TERRITORY_WIDE <= {k for (k, p) in last if p is None}
    assert not set(first) & set(last)
    steps = [e.step_key for _, r in results for e in r.all_events if e.event_type_value == "STEP_START"]
    assert len([s for s in steps if "dbt" in s]) == 1, "dbt is built once"
    checks = {(e.event_specific_data.check_name, e.event_specific_data.passed) for _, r in results
              for e in r.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert ("marts_match_outputs", True) in checks and all(passed for _, passed in checks)
    # the event log says which run started the chain
    assert all(ingest.run_id[:8] in r.dagster_run.tags["iarbre/after_runs"] for _, r in results)

    from iarbre_assets.provenance.report import commune_report

    new = platform.store.versions("ore_gaz").current().raw_sha256
    for code in (codes[0], codes[-1]):
        report = commune_report(code, run.store.warehouse)
        assert {i["source"]: i["version"] for i in report["inputs"]}["ore_gaz"] == new


def test_a_bad_drop_is_refused_and_nothing_is_recomputed_from_it(demo_copy):
    run, platform = demo_copy, demo_copy.platform
    refresh_cursor = sensor_tick(run, "partner_refresh").cursor
    before = platform.store.versions("ore_gaz").current()
    drop = platform.store.inbox("grdf") / "ore_gaz.geojson"
    drop.parent.mkdir(parents=True, exist_ok=True)
    drop.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Li')
    tick = sensor_tick(run, "partner_inbox")
    ingest = execute_request(run, tick.run_requests[0])
    assert not any(k.startswith(("source/", "source_by_commune/")) for k, _ in _materialised(ingest))
    entry = platform.store.drops.entries()[-1]
    assert entry["state"] == "rejected" and "ore_gaz" in entry["reason"] and "ore_gaz.geojson" in entry["reason"]
    assert platform.store.versions("ore_gaz").current().version == before.version
    # only the stewards' inventory records the refusal: no constraint, score or export runs
    tick = sensor_tick(run, "partner_refresh", refresh_cursor)
    if tick.run_requests:
        selected = {k.to_user_string() for k in tick.run_requests[0].asset_selection}
        assert selected and all(k == "source_inventory" or k.startswith(("staging/", "marts/")) for k in selected)
        assert "marts/source_inventory" in selected and "marts/commune_plantability" not in selected
    assert not sensor_tick(run, "partner_inbox").run_requests


def test_a_drop_matching_no_source_is_quarantined_with_its_reason(demo_copy):
    run, platform = demo_copy, demo_copy.platform
    folder = platform.store.inbox("enedis")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reseau_electrique.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (folder / "lisez-moi.pdf").write_bytes(b"%PDF-1.4")
    tick = sensor_tick(run, "partner_inbox")
    assert not tick.run_requests
    states = {e["file"]: (e["state"], e["reason"]) for e in platform.store.drops.entries()}
    assert states["reseau_electrique.geojson"][0] == "quarantined"
    assert "ore_bt_souterrain" in states["reseau_electrique.geojson"][1]
    assert states["lisez-moi.pdf"][0] == "ignored"
    # the UI shows it as an observation of Enedis's inbox asset (the daemon records the sensor's events)
    events = [e for e in tick.asset_events if e.asset_key == dg.AssetKey(["inbox", "enedis"])]
    assert {e.metadata["state"].value for e in events} == {"quarantined", "ignored"}
