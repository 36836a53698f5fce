"""One connected graph from every partner's raw data to the marts and exports (asserted on the asset graph)."""

from __future__ import annotations

import dagster as dg


def _graph(demo_graph):
    return demo_graph.resolve()


def _ancestors(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    seen, stack = set(), [key]
    while stack:
        for parent in graph.get(stack.pop()).parent_keys:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_no_orphan_asset(demo_graph):
    graph = _graph(demo_graph)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.parent_keys or node.child_keys, f"{key.to_user_string()} is not connected"


def test_gas_footprint_parents(demo_graph):
    parents = _graph(demo_graph).get(dg.AssetKey(["footprint", "reseau_gaz"])).parent_keys
    assert dg.AssetKey(["source_by_commune", "ore_gaz"]) in parents
    assert dg.AssetKey(["source", "ore_gaz"]) in parents


def test_commune_mart_reaches_every_partner_raw_source(demo_graph):
    graph = _graph(demo_graph)
    mart = next(k for k in graph.get_all_asset_keys() if k.path[-1] == "commune_plantability")
    ancestors = _ancestors(graph, mart)
    for slug in demo_graph.platform.sources:
        assert dg.AssetKey(["raw", slug]) in ancestors, slug
    # the GRDF chain, step by step
    chain = [["raw", "ore_gaz"], ["source", "ore_gaz"], ["source_by_commune", "ore_gaz"], ["footprint", "reseau_gaz"],
             ["coverage", "reseau_gaz"], ["plantability_score"], ["plantability_class"], ["tiles"]]
    for parent, child in zip(chain, chain[1:]):
        assert dg.AssetKey(parent) in graph.get(dg.AssetKey(child)).parent_keys, (parent, child)
    assert dg.AssetKey(["tiles"]) in ancestors


def test_dbt_sources_are_python_assets(demo_graph):
    from iarbre_assets.warehouse.schema import contract_asset_keys

    graph = _graph(demo_graph)
    materialisable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    for table, key in contract_asset_keys().items():
        assert dg.AssetKey(list(key)) in materialisable, table
    dbt_models = [k for k in materialisable if k.path[0] in {"staging", "marts"}]
    assert dbt_models
    for model in dbt_models:
        for parent in graph.get(model).parent_keys:
            assert graph.get(parent).is_materializable, f"{model.to_user_string()} <- {parent.to_user_string()}"


def test_groups_owners_and_checks(demo_graph):
    graph = _graph(demo_graph)
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {"sources", "constraints", "score", "marts", "exports"} <= groups
    raw = graph.get(dg.AssetKey(["raw", "ore_gaz"]))
    assert "team:grdf" in raw.owners and raw.tags["partner"] == "grdf"
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("source/ore_gaz", "quality_suite") in checks
    assert ("coverage/reseau_gaz", "values_in_range") in checks
    assert ("plantability_class", "classes_valid") in checks


def test_a_configured_local_server_is_used_and_none_is_started(demo_graph):
    """LOCAL_SERVER in the configuration names a partners' server already running (the benchmarks run the
    demo's in a process of its own): the platform uses it and starts none of its own."""
    from iarbre_assets.platform import Platform
    from iarbre_assets.resources import TerritoryResource

    before = Platform._server
    resource = TerritoryResource(home=demo_graph.territory.home, territory="demo",
                                 url_secrets={"LOCAL_SERVER": "http://127.0.0.1:9"})
    platform = resource.platform
    urls = [platform.source_url(s) for s in platform.sources.values()]
    remote = [u for u in urls if u]
    assert remote and all(u.startswith("http://127.0.0.1:9/") for u in remote)
    assert Platform._server is before


def test_a_child_process_rebuilt_from_the_environment_keeps_the_configured_local_server(demo_graph):
    from iarbre_assets.resources import TerritoryResource

    parent = TerritoryResource(home=demo_graph.territory.home, territory="demo",
                               url_secrets={"LOCAL_SERVER": "http://127.0.0.1:9"})
    child = TerritoryResource.from_env(parent.environment())
    assert child.url_secrets.get("LOCAL_SERVER") == "http://127.0.0.1:9"
