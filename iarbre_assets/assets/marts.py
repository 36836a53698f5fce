"""The dbt-duckdb marts as Dagster assets (group "marts"); dbt tests become asset checks.

Lineage: the dbt sources carry `meta.dagster.asset_key` = the keys of the Python assets that write the
warehouse tables (["tiles"], ["source", "communes"], ["source", "iris"], ["source_inventory"],
["plantability_score"]), so the graph runs unbroken from partner data to the marts.

Automation: `(eager() | sql_changed) & all_deps_blocking_checks_passed()`. eager is sane although the
models are unpartitioned and depend on commune-partitioned ["tiles"] / ["plantability_score"]
(AllPartitionMapping); verified in tests/marts/test_dbt_project.py:
- nothing downstream of the tiles is requested while any commune's tiles are missing
  (`~any_deps_missing`), which is also what the blocking test `class_areas_match_cells` demands;
- one re-scored commune requests stg_tiles and the tile marts once its run is over (not per partition
  while a backfill is in progress: `~any_deps_in_progress`);
- a failed blocking check on a staging model holds its marts back until that model passes again;
- on a fresh instance the marts come one tick after staging (checks never run count as not passed).
Consequence for the lead: every contract key must be a real, materialised asset (define
["source", "iris"] even for a territory without IRIS, writing an empty table), or the marts wait forever.
`sql_changed` rebuilds a model once after its SQL (dbt code_version) changes, under eager's guards.
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at definition time.
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from iarbre_assets.warehouse.dbt import (
    dbt_project,
    dbt_resource,
    export_warehouse_env,
    prepare_manifest,
    run_target_path,
)

__all__ = ["IarbreDbtTranslator", "MART_AUTOMATION", "dbt_resource", "iarbre_dbt_assets"]

_AC = dg.AutomationCondition
_SQL_CHANGED = (
    _AC.code_version_changed() & ~_AC.any_deps_missing() & ~_AC.any_deps_in_progress() & ~_AC.in_progress()
).with_label("sql_changed")
MART_AUTOMATION = (_AC.eager() | _SQL_CHANGED) & _AC.all_deps_blocking_checks_passed()

MART_OWNERS = ["team:data-stewards"]


class IarbreDbtTranslator(DagsterDbtTranslator):
    """Models: keys [<schema>, <model>] (e.g. marts/commune_plantability), group "marts", stewards,
    kinds dbt+duckdb, MART_AUTOMATION. Sources keep their meta.dagster.asset_key (the Python assets)."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in {"model", "seed", "snapshot"}:
            spec = spec.replace_attributes(
                group_name="marts",
                owners=MART_OWNERS,
                kinds={"dbt", "duckdb"},
                automation_condition=MART_AUTOMATION,
            )
        return spec


TRANSLATOR = IarbreDbtTranslator(
    settings=DagsterDbtTranslatorSettings(
        enable_asset_checks=True,  # dbt tests -> checks; severity error -> blocking
        enable_code_references=True,
        # factor_stats, score_runs and score_run_inputs are all written by ["plantability_score"]
        enable_duplicate_source_asset_keys=True,
    )
)

# Loading the definitions needs the manifest; this is a fingerprint check (ms) unless dbt files changed.
prepare_manifest()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=TRANSLATOR,
    pool="warehouse",
    name="iarbre_dbt_assets",
)
def iarbre_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource):
    """`dbt build` of the selected models and their tests, streamed as materialisations and checks.

    No `.fetch_row_counts()`: it opens the warehouse through dbt-duckdb inside this process and keeps
    the single-writer lock after the run, locking out the next Python writer.
    """
    from iarbre_assets.warehouse.duck import connect
    from iarbre_assets.warehouse.schema import ensure_schema

    export_warehouse_env()
    # Staging views need the contract tables to exist even before every writer ran once.
    con = connect()
    try:
        ensure_schema(con)
    finally:
        con.close()
    yield from dbt.cli(["build"], context=context, target_path=run_target_path(context.run.run_id)).stream()
