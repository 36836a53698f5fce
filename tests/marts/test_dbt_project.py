"""The dbt project and its Dagster wiring, without building: lineage keys, translator choices, checks,
automation, manifest preparation, and the dbt vars kept equal to the catalogue."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from iarbre_assets.catalog import TERRITORIES_DIR, load_catalog, load_territory
from iarbre_assets.warehouse.dbt import DBT_PROJECT_DIR, dbt_project, prepare_manifest
from iarbre_assets.warehouse.schema import contract_asset_keys

from .conftest import dbt_assets, dbt_resources

MODELS = {
    ("staging", m) for m in ("stg_tiles", "stg_communes", "stg_iris", "stg_source_versions",
                             "stg_factor_stats", "stg_score_runs", "stg_score_run_inputs",
                             "stg_score_run_weights", "stg_score_diff", "stg_source_freshness")
} | {
    ("marts", m) for m in ("commune_plantability", "iris_plantability", "factor_contribution",
                           "source_inventory", "run_provenance", "run_weights", "score_diff",
                           "score_diff_by_class")
}


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return dbt_resources(tmp_path_factory.mktemp("dbt_project_home"))


@pytest.fixture(scope="module")
def graph(resources):
    assets_def = dbt_assets()
    defs = dg.Definitions(assets=[assets_def], resources=resources)
    return defs.resolve_asset_graph(), assets_def


def test_dbt_sources_are_exactly_the_contract_python_assets(graph):
    asset_graph, _ = graph
    external = {k for k in asset_graph.get_all_asset_keys() if not asset_graph.get(k).is_materializable}
    assert external == {dg.AssetKey(list(k)) for k in contract_asset_keys().values()}
    assert external == {dg.AssetKey(["tiles"]), dg.AssetKey(["source", "communes"]), dg.AssetKey(["source", "iris"]),
                        dg.AssetKey(["source_inventory"]), dg.AssetKey(["plantability_score"]),
                        dg.AssetKey(["plantability_class"])}
    parents = lambda *k: asset_graph.get(dg.AssetKey(list(k))).parent_keys  # noqa: E731
    assert parents("staging", "stg_tiles") == {dg.AssetKey(["tiles"])}
    assert parents("staging", "stg_source_versions") == {dg.AssetKey(["source_inventory"])}
    assert parents("staging", "stg_score_run_inputs") == {dg.AssetKey(["plantability_score"])}
    assert parents("staging", "stg_score_run_weights") == {dg.AssetKey(["plantability_score"])}
    assert parents("staging", "stg_score_diff") == {dg.AssetKey(["plantability_class"])}
    assert parents("staging", "stg_source_freshness") == {dg.AssetKey(["source_inventory"])}
    assert dg.AssetKey(["staging", "stg_source_freshness"]) in parents("marts", "source_inventory")
    assert parents("marts", "score_diff_by_class") == {dg.AssetKey(["marts", "score_diff"])}
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
    for name in ("stg_score_diff_cells_add_up_to_commune_cells", "score_diff_cells_add_up_to_commune_cells",
                 "score_diff_by_class_areas_add_up_to_the_runs_cells", "score_diff_by_class_net_change_is_rescored_cells",
                 "stg_score_run_weights_belong_to_a_score_run", "run_weights_run_commune_factor_unique",
                 "stg_source_freshness_status_known", "stg_source_versions_source_has_a_freshness",
                 "stg_score_runs_provenance_is_the_prov_json_of_the_run"):
        assert specs[name].blocking, name
    assert specs["stg_score_diff_cells_add_up_to_commune_cells"].asset_key == dg.AssetKey(["staging", "stg_score_diff"])
    for warn in ("source_inventory_sources_are_fresh", "source_inventory_latest_version_in_use",
                 "stg_communes_area_matches_outline", "stg_score_diff_belongs_to_a_score_run",
                 "stg_score_runs_recorded_their_weights"):
        assert not specs[warn].blocking
    # every mart carries at least one blocking check
    for name in ("commune_plantability", "iris_plantability", "factor_contribution", "source_inventory",
                 "run_provenance", "run_weights", "score_diff", "score_diff_by_class"):
        assert any(s.blocking and s.asset_key == dg.AssetKey(["marts", name]) for s in specs.values()), name


def test_models_follow_code_changes_and_leave_data_changes_to_the_refresh_sensor(graph):
    """Every model carries the marts' condition: a partner update reaches the marts through the refresh
    sensor's single run (dbt once), so new tiles alone request nothing, while a model whose SQL changed
    (its code version) is requested on the next tick."""
    from iarbre_assets.automation.conditions import MART_AUTOMATION

    asset_graph, assets_def = graph
    for key in assets_def.keys:
        assert asset_graph.get(key).automation_condition.get_label() == MART_AUTOMATION.get_label(), key

    communes = dg.StaticPartitionsDefinition(["69901", "69902"])

    @dg.asset(key=["tiles"], partitions_def=communes)
    def tiles(): ...

    def model(code_version: str):
        @dg.asset(key=["marts", "commune_plantability"], deps=[tiles], code_version=code_version,
                  automation_condition=MART_AUTOMATION)
        def commune_plantability(): ...
        return commune_plantability

    instance = dg.DagsterInstance.ephemeral()
    state = {"cursor": None}

    def tick(code_version: str) -> int:
        defs = dg.Definitions(assets=[tiles, model(code_version)])
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=state["cursor"])
        state["cursor"] = result.cursor
        return result.get_num_requested(dg.AssetKey(["marts", "commune_plantability"]))

    for partition in ("69901", "69902"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="tiles", partition=partition))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=["marts", "commune_plantability"]))
    assert tick("sql-1") == 0
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="tiles", partition="69901"))
    assert tick("sql-1") == 0  # new data: the refresh sensor's run, not the condition
    assert tick("sql-2") == 1  # the model's SQL changed
    assert tick("sql-2") == 0  # handled once


def test_prepare_manifest_is_idempotent_and_fast():
    manifest = prepare_manifest()
    assert manifest == dbt_project.manifest_path and manifest.exists()
    mtime = manifest.stat().st_mtime_ns
    assert prepare_manifest() == manifest
    assert manifest.stat().st_mtime_ns == mtime  # not re-parsed: the fingerprint of the dbt files matched


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
    # the platform passes each home's warehouse as the warehouse_path var; by hand, $IARBRE_HOME is the fallback
    assert profile["path"].startswith("{{ var('warehouse_path', env_var('IARBRE_HOME'")
    assert not (Path(DBT_PROJECT_DIR) / "packages.yml").exists()
