"""The refresh planner turns what changed into runs: one run for one commune range, else a chain in
dependency order whose last run carries the territory-wide assets; each asset partition exactly once."""

from __future__ import annotations

import dagster as dg

from iarbre_assets.automation.refresh import (
    RefreshPlan,
    plan_from_json,
    plan_to_json,
    plan_without,
    ranges,
    refresh_steps,
    step_request,
)

SCORE, CLASSES = dg.AssetKey("plantability_score"), dg.AssetKey("plantability_class")
MOSAIC = dg.AssetKey("plantability_score_cog")

def _keys(graph, *wanted):
    keys = set(graph.get_all_asset_keys())
    missing = [k for k in wanted if k not in keys]
    assert not missing, missing
    return wanted

def _plan(communes_by_key: dict, territory_wide=()) -> RefreshPlan:
    return RefreshPlan(after_runs=["a" * 32], partitioned={k: set(v) for k, v in communes_by_key.items()},
                       unpartitioned=set(territory_wide))

def _gas_keys(demo_graph):
    graph = demo_graph.resolve()
    slug = next(f.slug for f in demo_graph.platform.factors_of_source("ore_gaz") if not f.display_only)
    footprint, coverage = dg.AssetKey(["footprint", slug]), dg.AssetKey(["coverage", slug])
    return graph, _keys(graph, footprint, coverage, SCORE, CLASSES, MOSAIC)

def test_ranges_split_partition_keys_where_the_order_has_a_gap():
    order = ["a", "b", "c", "d", "e"]
    assert ranges({"a", "b", "c"}, order) == [("a", "c")]
    assert ranges({"e", "a", "c", "d"}, order) == [("a", "a"), ("c", "e")]
    assert ranges({"b"}, order) == [("b", "b")]

def test_one_commune_range_is_one_run_carrying_the_territory_wide_assets(demo_graph):
    graph, (footprint, coverage, score, classes, mosaic) = _gas_keys(demo_graph)
    codes = demo_graph.platform.commune_codes
    touched = set(codes[:2])
    steps = refresh_steps(_plan({footprint: touched, coverage: touched, score: touched, classes: touched}, [mosaic]),
                          graph, codes)
    assert len(steps) == 1
    assert steps[0].span == (codes[0], codes[1])
    assert set(steps[0].keys) == {footprint, coverage, score, classes, mosaic}

def test_communes_apart_are_a_chain_in_order_and_only_the_last_run_has_the_territory_wide_assets(demo_graph):
    graph, (footprint, coverage, score, classes, mosaic) = _gas_keys(demo_graph)
    codes = demo_graph.platform.commune_codes
    apart = {codes[0], codes[-1]}
    plan = _plan({footprint: apart, coverage: apart, score: apart, classes: apart}, [mosaic])
    steps = refresh_steps(plan, graph, codes)
    assert [s.span for s in steps] == [(codes[0], codes[0]), (codes[-1], codes[-1])]
    assert mosaic not in steps[0].keys and mosaic in steps[-1].keys
    order = list(graph.toposorted_asset_keys)
    for step in steps:
        assert list(step.keys) == sorted(step.keys, key=order.index), "a run lists its assets upstream first"

    # the sensor keeps the rest of the chain in its cursor, and asks for it once the first run is done
    rest = plan_from_json(plan_to_json(plan_without(plan, steps[0], codes)))
    assert rest.partitioned == {k: {codes[-1]} for k in (footprint, coverage, score, classes)}
    assert rest.unpartitioned == {mosaic}
    assert refresh_steps(rest, graph, codes) == steps[1:]
    assert plan_without(rest, steps[1], codes).empty

def test_upstream_communes_run_before_a_wider_downstream_set(demo_graph):
    graph, (footprint, coverage, score, classes, mosaic) = _gas_keys(demo_graph)
    codes = demo_graph.platform.commune_codes
    steps = refresh_steps(_plan({footprint: {codes[0]}, coverage: {codes[0]}, score: set(codes), classes: set(codes)},
                                [mosaic]), graph, codes)
    assert [(set(s.keys), s.span) for s in steps] == [
        ({footprint, coverage}, (codes[0], codes[0])),
        ({score, classes, mosaic}, (codes[0], codes[-1])),
    ]

def test_each_chain_run_is_tagged_with_its_step_and_a_run_key_of_its_own(demo_graph):
    graph, (footprint, coverage, score, classes, mosaic) = _gas_keys(demo_graph)
    codes = demo_graph.platform.commune_codes
    plan = _plan({score: {codes[0], codes[-1]}}, [mosaic])
    steps = refresh_steps(plan, graph, codes)
    requests = [step_request(s, plan, i, len(steps)) for i, s in enumerate(steps, start=1)]
    assert [r.tags["iarbre/refresh_step"] for r in requests] == ["1/2", "2/2"]
    assert [r.tags["dagster/asset_partition_range_start"] for r in requests] == [codes[0], codes[-1]]
    assert len({r.run_key for r in requests}) == 2
    assert refresh_steps(RefreshPlan(after_runs=[]), graph, codes) == []
