"""tiles, partitioned by commune: one row per 5 m cell, as GeoParquet per commune and iarbre.tiles."""

import dagster as dg
import geopandas as gpd
from dagster import AssetExecutionContext

from ..automation.conditions import CODE_CHANGED
from ..compute.pool import map_tasks
from ..compute.scoring import TilesTask, run_tiles
from ..platform import Platform
from ..resources import TerritoryResource, WarehouseResource
from ..store import read_json
from ..warehouse import writes
from ..warehouse.schema import contract
from .constraints import communes_layer
from .keys import (
    CLASS_KEY,
    GROUP_SCORE,
    SCORE_KEY,
    SINGLE_RUN,
    STEWARDS,
    TILES_KEY,
    WAREHOUSE_POOL,
    communes_partitions,
    coverage_key,
    footprint_key,
    source_key,
)
from .score import factor_inputs


def build_tiles_asset(platform: Platform) -> dg.AssetsDefinition:
    display = [f for f in platform.factors if f.display_only]
    deps = [CLASS_KEY, SCORE_KEY] + [coverage_key(f.slug) for f in platform.scored_factors]
    deps += [footprint_key(f.slug) for f in display]
    if platform.territory.iris is not None:
        deps.append(source_key("iris"))
    checks = [dg.AssetCheckSpec("one_row_per_cell", asset=TILES_KEY, blocking=True,
                                description="Each commune has exactly one row per cell it owns.")]

    @dg.asset(
        key=TILES_KEY,
        deps=deps,
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_SCORE,
        owners=[STEWARDS],
        kinds={"parquet", "duckdb"},
        description=("One row per 5 m cell: cell id, centre x/y, commune, IRIS, score, class, blocking factor, "
                     "top factors (networks aggregated), meta-factor sums, display-only layers. GeoParquet per "
                     "commune (cell-centre points) and table iarbre.tiles in the warehouse."),
        code_version="tiles1",
        automation_condition=CODE_CHANGED,
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _tiles(context: AssetExecutionContext, territory: TerritoryResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        platform = territory.platform
        store, catalogue = platform.store, platform.catalogue
        communes = list(context.partition_keys)
        store.history.register_run(context.run.run_id, communes)
        tasks = tiles_tasks(platform, communes, context.run.run_id)
        with territory.progress(context.run.run_id).stage("tiles", len(tasks)) as advance:
            records = map_tasks(run_tiles, tasks, size=lambda t: t.window.width * t.window.height, progress=advance)
        expected = {code: read_json(store.score_record(code))["outputs"]["cells"] for code in communes}
        mismatched = {r["commune"]: (r["rows"], expected.get(r["commune"])) for r in records
                      if r["rows"] != expected.get(r["commune"])}
        with warehouse.get_connection() as con:
            loaded = writes.load_tiles(con, contract(catalogue), [store.tiles(c) for c in communes], communes)
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "dagster/row_count": loaded,
                "rows_per_commune": dg.MetadataValue.json({r["commune"]: r["rows"] for r in records}),
                "display_layers": dg.MetadataValue.json(sorted(f.slug for f in display)),
                "dagster/uri": dg.MetadataValue.path(str(store.tiles(communes[0]).parent)),
                "warehouse_table": "iarbre.tiles",
            },
            check_results=[dg.AssetCheckResult(check_name="one_row_per_cell", passed=not mismatched,
                                               metadata={"mismatched": dg.MetadataValue.json(mismatched)})],
        )

    return _tiles


def tiles_tasks(platform: Platform, communes: list[str], run_id: str) -> list[TilesTask]:
    """The tiles task of each commune (what run_tiles needs: rasters, factors, IRIS, display layers)."""
    store, catalogue = platform.store, platform.catalogue
    display = [f for f in platform.factors if f.display_only]
    names = [f.slug for f in platform.scored_factors]
    index = {slug: i for i, slug in enumerate(names)}
    meta_index = {m.slug: [index[s] for s in catalogue.meta_mapping[m.slug] if s in index]
                  for m in catalogue.meta_factors}
    groups = {m.slug: meta_index[m.slug] for m in catalogue.meta_factors
              if m.aggregate_in_top and meta_index[m.slug]}
    iris = None
    if platform.territory.iris is not None:
        current = store.versions("iris").require_current()
        code_field = platform.territory.iris.code_field
        frame = gpd.read_parquet(current.data_path(store))
        iris = {"path": str(current.data_path(store)), "code_field": code_field,
                "codes": sorted(frame[code_field].astype(str))}
    return [TilesTask(
        commune=code, window=platform.windows[code], factors=factor_inputs(platform), store=store,
        communes=communes_layer(platform), meta_index=meta_index, top_groups=groups,
        top_k=catalogue.scoring.top_factors, run_id=run_id, iris=iris,
        display_footprints={f.slug: str(store.footprint(f.slug, code)) for f in display})
        for code in communes]
