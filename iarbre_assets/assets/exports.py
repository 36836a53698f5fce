"""Exports: territory-wide Cloud-Optimised GeoTIFFs, the class polygons GeoPackage, tiles GeoParquet, preview.

The mosaics paste the per-commune rasters onto the territory grid. Parts share one lattice and each cell
has one owner, so there is no resampling, no seam and no double counting; the checks prove it. The
GeoPackage and the GeoParquet are written commune by commune (never the territory in memory), and a
commune's class polygons are re-polygonised only when its classes changed.
"""

import dagster as dg
import geopandas as gpd
import pyarrow.parquet as pq
import pyogrio
import shapely
from dagster import AssetExecutionContext

from ..automation.conditions import CODE_CHANGED
from ..compute.pool import map_tasks
from ..compute.scoring import run_class_polygons
from ..geo.grid import PLATFORM_CRS
from ..geo.score import CLASS_NODATA, SCORE_NODATA
from ..platform import Platform
from ..resources import TerritoryResource
from ..store import Export, atomic_path, atomic_write_bytes, read_json
from ..store.rasters import mosaic_to_cog
from .keys import (
    CLASS_COG_KEY,
    CLASS_KEY,
    GPKG_KEY,
    GROUP_EXPORTS,
    PREVIEW_KEY,
    SCORE_COG_KEY,
    SCORE_KEY,
    STEWARDS,
    TILES_EXPORT_KEY,
    TILES_KEY,
)
from .score import class_preview, preview_markdown


def _expected_cells(platform: Platform) -> int:
    store = platform.store
    return sum(read_json(store.score_record(c))["outputs"]["cells"] for c in platform.commune_codes
               if store.score_record(c).exists())


def _mosaic_asset(platform: Platform, key: dg.AssetKey, parent: dg.AssetKey, export: Export, dtype: str,
                  nodata, description: str) -> dg.AssetsDefinition:
    checks = [dg.AssetCheckSpec("seamless", asset=key, blocking=True,
                                description="The mosaic has exactly one value per commune cell: no gap, no seam, "
                                            "no double counting at commune edges.")]

    @dg.asset(key=key, deps=[parent], group_name=GROUP_EXPORTS, owners=[STEWARDS], kinds={"rasterio", "cog"},
              description=description, code_version="cog1", automation_condition=CODE_CHANGED, check_specs=checks)
    def _mosaic(context: AssetExecutionContext, territory: TerritoryResource) -> dg.MaterializeResult:
        platform = territory.platform
        territory.progress(context.run.run_id).emit(f"export {export.name.lower()}", note=str(platform.store.export(export).name))
        part_of = platform.store.score if export is Export.SCORE_COG else platform.store.classes
        parts = [part_of(code) for code in platform.commune_codes]
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise dg.Failure(description=f"{key.to_user_string()}: commune rasters missing: {missing[:5]}")
        out = platform.store.export(export)
        stats = mosaic_to_cog(parts, platform.territory_window, out, dtype=dtype, nodata=nodata, crs=platform.crs)
        expected = _expected_cells(platform)
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(out)), "valid_cells": stats["valid_cells"],
                      "expected_cells": expected, "parts": stats["parts"],
                      "size_bytes": out.stat().st_size, "bounds": dg.MetadataValue.json(platform.territory_window.bounds)},
            check_results=[dg.AssetCheckResult(check_name="seamless", passed=stats["valid_cells"] == expected,
                                               metadata={"valid_cells": stats["valid_cells"], "expected": expected})],
        )

    return _mosaic


def _commune_polygons(platform: Platform, codes: list[str]) -> None:
    """(Re)build the class polygons of the communes whose classes are newer than their cached polygons."""
    store = platform.store
    stale = [c for c in codes if not store.class_polygons(c).exists()
             or store.class_polygons(c).stat().st_mtime_ns < store.classes(c).stat().st_mtime_ns]
    labels = {c.class_: c.label for c in platform.catalogue.classes}
    colours = platform.catalogue.class_colours()
    sizes = {store.classes(c): platform.windows[c].width * platform.windows[c].height for c in stale}
    parts = map_tasks(run_class_polygons, [store.classes(c) for c in stale], size=sizes.__getitem__)
    for code, polygons in zip(stale, parts):
        geometries = [shapely.from_wkb(wkb) for _, wkb in polygons]
        frame = gpd.GeoDataFrame({
            "commune": [code] * len(polygons), "class": [cls for cls, _ in polygons],
            "label": [labels.get(cls, "") for cls, _ in polygons], "colour": [colours.get(cls, "") for cls, _ in polygons],
            "area_m2": [float(g.area) for g in geometries]}, geometry=geometries, crs=platform.crs)
        with atomic_path(store.class_polygons(code)) as tmp:
            frame.to_parquet(tmp)


def build_class_gpkg(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=GPKG_KEY, deps=[CLASS_KEY], group_name=GROUP_EXPORTS, owners=[STEWARDS], kinds={"gpkg"},
              description="Class polygons dissolved per class and commune (GeoPackage layer "
                          f"`plantability_classes`, {PLATFORM_CRS}), for QGIS. Written commune by commune.",
              code_version="gpkg1", automation_condition=CODE_CHANGED)
    def _gpkg(context: AssetExecutionContext, territory: TerritoryResource) -> dg.MaterializeResult:
        platform = territory.platform
        codes = platform.commune_codes
        territory.progress(context.run.run_id).emit("export class polygons")
        _commune_polygons(platform, codes)
        out = platform.store.export(Export.CLASS_GPKG)
        features, area = 0, 0.0
        with atomic_path(out) as tmp:
            for i, code in enumerate(codes):
                frame = gpd.read_parquet(platform.store.class_polygons(code))
                pyogrio.write_dataframe(frame, tmp, driver="GPKG", layer="plantability_classes", append=i > 0)
                features, area = features + len(frame), area + float(frame["area_m2"].sum())
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out)), "features": features,
                                              "area_m2": round(area, 1)})

    return _gpkg


def build_preview(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=PREVIEW_KEY, deps=[CLASS_KEY], group_name=GROUP_EXPORTS,
              owners=[STEWARDS], kinds={"png"}, code_version="png1", automation_condition=CODE_CHANGED,
              description="A small PNG of the whole territory's class map in the published colours.")
    def _preview(context: AssetExecutionContext, territory: TerritoryResource) -> dg.MaterializeResult:
        platform = territory.platform
        png = class_preview(platform, platform.commune_codes, max_px=800)
        out = platform.store.export(Export.CLASS_PREVIEW)
        atomic_write_bytes(out, png)
        return dg.MaterializeResult(metadata={"preview": preview_markdown(png, "Territory class map"),
                                              "path": dg.MetadataValue.path(str(out)), "size_bytes": len(png)})

    return _preview


def build_tiles_export(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=TILES_EXPORT_KEY, deps=[TILES_KEY], group_name=GROUP_EXPORTS, owners=[STEWARDS],
              kinds={"parquet"}, code_version="tilesx1", automation_condition=CODE_CHANGED,
              description=f"All tiles of the territory in one GeoParquet file (cell-centre points, {PLATFORM_CRS}), "
                          "streamed commune by commune.")
    def _tiles_export(context: AssetExecutionContext, territory: TerritoryResource) -> dg.MaterializeResult:
        platform = territory.platform
        territory.progress(context.run.run_id).emit("export tiles GeoParquet")
        files = [platform.store.tiles(code) for code in platform.commune_codes]
        out = platform.store.export(Export.TILES_PARQUET)
        rows = 0
        schema = pq.read_schema(files[0])
        with atomic_path(out) as tmp:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for path in files:
                    table = pq.read_table(path, schema=schema)
                    writer.write_table(table, row_group_size=250_000)
                    rows += table.num_rows
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out)), "dagster/row_count": rows,
                                              "size_bytes": out.stat().st_size})

    return _tiles_export


def build_export_defs(platform: Platform) -> list:
    return [
        _mosaic_asset(platform, SCORE_COG_KEY, SCORE_KEY, Export.SCORE_COG, "float32", SCORE_NODATA,
                      "Territory-wide plantability score, Cloud-Optimised GeoTIFF (float32, nodata -9999), "
                      "mosaicked from the communes on the shared grid."),
        _mosaic_asset(platform, CLASS_COG_KEY, CLASS_KEY, Export.CLASS_COG, "uint8", CLASS_NODATA,
                      "Territory-wide plantability class, Cloud-Optimised GeoTIFF (uint8, 255 = nodata)."),
        build_class_gpkg(platform),
        build_preview(platform),
        build_tiles_export(platform),
    ]
