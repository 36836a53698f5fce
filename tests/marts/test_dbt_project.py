"""The dbt project and its Dagster wiring, without building: lineage keys, translator choices, checks,
automation, manifest preparation, and the dbt vars kept equal to the catalogue."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from iarbre_assets.catalog import TERRITORIES_DIR, load_catalog, load_territory
from iarbre_assets.warehouse.dbt import DBT_PROJECT_DIR, dbt_project, prepare_manifest
from iarbre_assets.warehouse.schema import contract_asset_keys

MODELS = {
    ("staging", m) for m in ("stg_tiles", "stg_communes", "stg_iris", "stg_source_versions",
                             "stg_factor_stats", "stg_score_runs", "stg_score_run_inputs")
} | {
    ("marts", m) for m in ("commune_plantability", "iris_plantability", "factor_contribution",
                           "source_inventory", "run_provenance")
}


@pytest.fixture(scope="module")
def graph():
    from iarbre_assets.assets.marts import dbt_resource, iarbre_dbt_assets

    defs = dg.Definitions(assets=[iarbre_dbt_assets], resources={"dbt": dbt_resource()})
    return defs.resolve_asset_graph(), iarbre_dbt_assets


def test_dbt_sources_are_exactly_the_contract_python_assets(graph):
    asset_graph, _ = graph
    external = {k for k in asset_graph.get_all_asset_keys() if not asset_graph.get(k).is_materializable}
    assert external == {dg.AssetKey(list(k)) for k in contract_asset_keys().values()}
    assert external == {dg.AssetKey(["tiles"]), dg.AssetKey(["source", "communes"]), dg.AssetKey(["source", "iris"]),
                        dg.AssetKey(["source_inventory"]), dg.AssetKey(["plantability_score"])}
    parents = lambda *k: asset_graph.get(dg.AssetKey(list(k))).parent_keys  # noqa: E731
    assert parents("staging", "stg_tiles") == {dg.AssetKey(["tiles"])}
    assert parents("staging", "stg_source_versions") == {dg.AssetKey(["source_inventory"])}
    assert parents("staging", "stg_score_run_inputs") == {dg.AssetKey(["plantability_score"])}
    assert dg.AssetKey(["staging", "stg_tiles"]) in parents("marts", "commune_plantability")


def test_models_are_stewarded_marts_with_the_automation_condition(graph):
    from iarbre_assets.assets.marts import MART_AUTOMATION

    asset_graph, assets_def = graph
    materialisable = {k for k in asset_graph.get_all_asset_keys() if asset_graph.get(k).is_materializable}
    assert materialisable == {dg.AssetKey(list(k)) for k in MODELS}
    for key in materialisable:
        spec = next(s for s in assets_def.specs if s.key == key)
        assert spec.group_name == "marts"
        assert spec.owners == ["team:data-stewards"]
        assert spec.kinds == {"dbt", "duckdb"}
        assert spec.automation_condition == MART_AUTOMATION
        assert "dagster/code_references" in spec.metadata
    assert assets_def.op.pool == "warehouse"


def test_dbt_tests_are_checks_blocking_by_severity(graph):
    _, assets_def = graph
    specs = {s.name: s for s in assets_def.check_specs}
    klass = specs["stg_tiles_class_is_a_published_class"]
    assert klass.blocking and klass.asset_key == dg.AssetKey(["staging", "stg_tiles"])
    assert specs["commune_plantability_class_areas_match_commune_cells"].blocking
    assert specs["factor_contribution_commune_factor_unique"].blocking
    assert specs["stg_source_versions_one_current_version_per_source"].blocking
    assert specs["run_provenance_references_score_runs"].blocking
    for warn in ("source_inventory_sources_are_fresh", "source_inventory_latest_version_in_use",
                 "stg_communes_area_matches_outline"):
        assert not specs[warn].blocking
    # every mart carries at least one blocking check
    for name in ("commune_plantability", "iris_plantability", "factor_contribution", "source_inventory",
                 "run_provenance"):
        assert any(s.blocking and s.asset_key == dg.AssetKey(["marts", name]) for s in specs.values()), name


def test_automation_eager_over_commune_partitions(graph):
    """The models are unpartitioned children of commune-partitioned assets. Nothing downstream of the
    tiles is requested while a commune's tiles are missing; once staging ran with passing checks the
    marts follow; a single re-scored commune requests stg_tiles and its marts; a failed blocking check on
    stg_tiles holds the marts back until stg_tiles passes again."""
    _, assets_def = graph
    communes = dg.StaticPartitionsDefinition(["69901", "69902"])

    @dg.asset(key=["tiles"], partitions_def=communes)
    def tiles(): ...

    @dg.asset(key=["plantability_score"], partitions_def=communes)
    def plantability_score(): ...

    @dg.asset(key=["source", "communes"])
    def src_communes(): ...

    @dg.asset(key=["source", "iris"])
    def src_iris(): ...

    @dg.asset(key=["source_inventory"])
    def source_inventory(): ...

    from iarbre_assets.assets.marts import dbt_resource

    defs = dg.Definitions(assets=[tiles, plantability_score, src_communes, src_iris, source_inventory, assets_def],
                          resources={"dbt": dbt_resource()})
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(assets_def)
    checks_of = {}
    for spec in assets_def.check_specs:
        checks_of.setdefault(spec.asset_key, []).append(spec.name)
    state = {"cursor": None}

    def tick() -> set[str]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                   cursor=state["cursor"])
        state["cursor"] = result.cursor
        return {k.to_user_string() for k in assets_def.keys if result.get_num_requested(k)}

    def materialised(path, partition=None):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=path, partition=partition))

    def ran(names, failing=()):  # a dbt run of these models with their checks
        for name in names:
            key = dg.AssetKey(name.split("/"))
            materialised(key)
            for check in checks_of.get(key, []):
                instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=key, check_name=check, passed=check not in failing,
                    severity=dg.AssetCheckSeverity.ERROR))

    staging = {f"staging/{m}" for layer, m in MODELS if layer == "staging"}
    marts = {f"marts/{m}" for layer, m in MODELS if layer == "marts"}
    tile_marts = {"marts/commune_plantability", "marts/iris_plantability"}

    assert tick() == set()
    for path in (["source", "communes"], ["source", "iris"], ["source_inventory"]):
        materialised(path)
    for partition in ("69901", "69902"):
        materialised(["plantability_score"], partition)
    materialised(["tiles"], "69901")
    assert tick() == staging - {"staging/stg_tiles"}  # tiles of 69902 missing
    materialised(["tiles"], "69902")
    assert tick() == {"staging/stg_tiles"}
    ran(staging)
    assert tick() == marts  # checks of never-run models gate the first marts one tick later
    ran(marts)
    assert tick() == set()
    materialised(["tiles"], "69901")  # one commune re-scored
    assert tick() == {"staging/stg_tiles"} | tile_marts
    ran(["staging/stg_tiles"], failing={"stg_tiles_class_is_a_published_class"})
    assert tick() == set()  # blocked
    materialised(["tiles"], "69902")
    assert tick() == {"staging/stg_tiles"}  # still blocked downstream
    ran(["staging/stg_tiles"])
    assert tick() == tile_marts


def test_prepare_manifest_is_idempotent_and_fast():
    manifest = prepare_manifest()
    assert manifest == dbt_project.manifest_path and manifest.exists()
    mtime = manifest.stat().st_mtime_ns
    start = time.monotonic()
    assert prepare_manifest() == manifest
    assert time.monotonic() - start < 1.0
    assert manifest.stat().st_mtime_ns == mtime  # not re-parsed


def test_dbt_vars_match_the_catalogue_and_territory_grids():
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["vars"]["classes"] == sorted(c.class_ for c in load_catalog().classes)
    catalogue = load_catalog()
    assert project["vars"]["top_factors"] == catalogue.scoring.top_factors
    assert project["vars"]["aggregated_top_groups"] == [m.slug for m in catalogue.meta_factors if m.aggregate_in_top]
    for path in sorted(TERRITORIES_DIR.glob("*.yaml")):
        grid = load_territory(path).grid
        assert project["vars"]["cell_area_m2"] == grid.cell_size_m ** 2, path.name


def test_profile_is_offline_and_loads_the_spatial_plugin():
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["iarbre"]["outputs"]["dev"]
    assert profile["type"] == "duckdb" and profile["threads"] == 1
    assert profile["config_options"]["autoinstall_known_extensions"] is False
    assert "extensions" not in profile  # would INSTALL from the network
    assert [p["module"] for p in profile["plugins"]] == ["iarbre_assets.warehouse.dbt_plugin"]
    assert profile["path"].startswith("{{ env_var('IARBRE_HOME'")
    assert not (Path(DBT_PROJECT_DIR) / "packages.yml").exists()
