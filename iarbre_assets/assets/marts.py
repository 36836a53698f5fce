"""The dbt-duckdb marts as Dagster assets (group "marts"); dbt tests become asset checks.

Lineage: the dbt sources carry `meta.dagster.asset_key` = the keys of the Python assets that write the
warehouse tables (warehouse/schema.py), so the graph runs unbroken from partner data to the marts.
The manifest is built by `iarbre dbt-prepare` (README commands, CI); loading the definitions never runs dbt.
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at definition time.
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ..automation.conditions import MART_AUTOMATION
from ..compute import pool
from ..resources import TerritoryResource, WarehouseResource
from ..warehouse.dbt import dbt_project, dbt_vars, manifest_is_current, run_target_path
from ..warehouse.schema import contract, ensure_schema
from .keys import GROUP_MARTS, STEWARDS, WAREHOUSE_POOL


class IarbreDbtTranslator(DagsterDbtTranslator):
    """Models: keys [<schema>, <model>] (e.g. marts/commune_plantability), group "marts", stewards,
    kinds dbt+duckdb, MART_AUTOMATION. Sources keep their meta.dagster.asset_key (the Python assets)."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in {"model", "seed", "snapshot"}:
            spec = spec.replace_attributes(group_name=GROUP_MARTS, owners=[STEWARDS], kinds={"dbt", "duckdb"},
                                           automation_condition=MART_AUTOMATION)
        return spec


TRANSLATOR = IarbreDbtTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True,  # dbt tests -> checks; severity error -> blocking
        enable_code_references=True,
        # factor_stats, score_runs and score_run_inputs are all written by ["plantability_score"]
        enable_duplicate_source_asset_keys=True,
    )
)


class ManifestMissingError(RuntimeError):
    pass


def build_dbt_assets() -> dg.AssetsDefinition:
    if not dbt_project.manifest_path.exists():
        raise ManifestMissingError(f"{dbt_project.manifest_path} does not exist: run `iarbre dbt-prepare` "
                                   "(the README's commands do) before loading the definitions")
    if not manifest_is_current():
        raise ManifestMissingError(f"{dbt_project.manifest_path} was built from other dbt files than those in "
                                   f"{dbt_project.project_dir}: run `iarbre dbt-prepare`")

    @dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=TRANSLATOR,
                pool=WAREHOUSE_POOL, name="iarbre_dbt_assets")
    def iarbre_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, territory: TerritoryResource,
                          warehouse: WarehouseResource):
        """`dbt build` of the selected models and their tests on this home's warehouse, streamed as
        materialisations and checks.

        No `.fetch_row_counts()`: it opens the warehouse through dbt-duckdb inside this process and keeps
        the single-writer lock after the run, locking out the next Python writer.
        """
        platform = territory.platform
        with warehouse.get_connection() as con:  # staging views need every contract table, even before its writer ran
            ensure_schema(con, contract(platform.catalogue))
        territory.progress(context.run.run_id).emit("dbt build", note=f"{len(context.selected_asset_keys)} models")
        # dbt works in its own process: the idle pool workers would hold ~1.3 GB through it at full scale
        # (a later pooled step starts them again; docs/decisions.md D40)
        pool.shutdown()
        target = run_target_path(platform.store.dbt_dir, context.run.run_id)
        yield from dbt.cli(["build", "--vars", dbt_vars(platform.store.warehouse, warehouse.memory_limit)],
                           context=context,
                           target_path=target).stream()

    return iarbre_dbt_assets
