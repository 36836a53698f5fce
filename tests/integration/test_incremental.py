"""A partner update recomputes only what depends on that source, and only where it changed."""

from __future__ import annotations

import json

import dagster as dg
import geopandas as gpd
import shapely

from iarbre_assets.compute.constraints import coverage_paths
from iarbre_assets.provenance.source_versions import SourceVersions
from iarbre_assets.runner import materialise_all


def _windows_hit(platform, geometry, halo: float) -> set[str]:
    return {code for code, window in platform.windows.items()
            if shapely.box(*window.bounds).buffer(halo, join_style="mitre").intersects(geometry)}


def test_sanitation_update_recomputes_one_commune(demo_copy):
    defs, instance, platform = demo_copy.defs, demo_copy.instance, demo_copy.platform
    slug, factor = "assainissement", "assainissement"
    halo = platform.source_halo_m(slug)
    baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert baseline.total_requested == 0, "nothing should be pending after a full run"

    # The water service delivers a new file in which one pipe moved by 3 m; pick the pipe that reaches
    # the fewest commune windows, so that most communes must stay untouched.
    current = SourceVersions(platform.layout, slug).current()
    frame = gpd.read_parquet(current.data_path(platform.layout))
    reach = [len(_windows_hit(platform, g, halo)) for g in frame.geometry]
    index = min(range(len(frame)), key=reach.__getitem__)
    old = frame.geometry.iloc[index]
    moved = frame.copy()
    moved.loc[index, "geometry"] = shapely.affinity.translate(old, xoff=3.0)
    expected = _windows_hit(platform, old, halo) | _windows_hit(platform, moved.geometry.iloc[index], halo)
    assert 0 < len(expected) < len(platform.commune_codes)
    drop = platform.layout.inbox_dir(platform.sources[slug].partner) / "assainissement.geojson"
    drop.parent.mkdir(parents=True, exist_ok=True)
    moved.to_file(drop, driver="GeoJSON", engine="pyogrio")

    # The inbox sensor notices the drop and asks for the source's ingestion
    sensor = defs.get_sensor_def("partner_inbox")
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert len(tick.run_requests) == 1
    requested = {tuple(k.path) for k in tick.run_requests[0].asset_selection}
    assert requested == {("raw", slug), ("source", slug)}
    outcome = materialise_all(defs=defs, platform=platform, instance=instance,
                              select=[list(k) for k in requested])
    assert outcome.success, outcome.failures

    # Only the touched communes' windows were reported as changed...
    reported = {e.partition for e in outcome.result.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey(["source_by_commune", slug])}
    assert reported == expected
    # ...so the automation recomputes this factor there, and nothing else
    evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
    assert evaluation.get_requested_partitions(dg.AssetKey(["footprint", factor])) == expected
    for other in platform.factors:
        if other.slug != factor:
            assert not evaluation.get_requested_partitions(dg.AssetKey(["footprint", other.slug])), other.slug

    # Materialise what the automation asks, for those communes: the other communes' rasters are untouched
    untouched = sorted(set(platform.commune_codes) - expected)
    coverage_dir = str(platform.layout.constraint_dir(factor))
    before = {c: json.loads(coverage_paths(coverage_dir, c)[1].read_text()) for c in platform.commune_codes}
    job = defs.resolve_implicit_global_asset_job_def()
    for code in sorted(expected):
        result = job.execute_in_process(instance=instance, partition_key=code, raise_on_error=False,
                                        asset_selection=[dg.AssetKey(["footprint", factor]),
                                                         dg.AssetKey(["coverage", factor])])
        assert result.success
    for code in untouched:
        assert json.loads(coverage_paths(coverage_dir, code)[1].read_text()) == before[code]
