"""Exports: territory-wide Cloud-Optimised GeoTIFFs, the class polygons GeoPackage, tiles GeoParquet, preview.

The mosaics paste the per-commune rasters onto the territory grid. Parts share one lattice and each cell
has one owner, so there is no resampling, no seam and no double counting; the checks prove it.
"""


import json

import dagster as dg
from dagster import AssetExecutionContext
import geopandas as gpd
import pyarrow.parquet as pq
import pyogrio
import shapely

from ..compute.pool import map_tasks
from ..compute.scoring import CLASS_NODATA, SCORE_NODATA, run_class_polygons, score_paths
from ..geo.raster_io import mosaic_to_cog
from ..paths import atomic_path, atomic_write_bytes
from ..platform import Platform
from .common import EAGER, GROUP_EXPORTS, STEWARDS
from .score import CLASS_KEY, SCORE_KEY, TILES_KEY, class_preview, preview_markdown

SCORE_COG_KEY = dg.AssetKey(["plantability_score_cog"])
CLASS_COG_KEY = dg.AssetKey(["plantability_class_cog"])
GPKG_KEY = dg.AssetKey(["class_polygons_gpkg"])
TILES_EXPORT_KEY = dg.AssetKey(["tiles_geoparquet"])


def _expected_cells(platform: Platform) -> dict[str, int]:
    out = {}
    for code in platform.commune_codes:
        sidecar = score_paths(str(platform.layout.score), code)[2]
        out[code] = json.loads(sidecar.read_text())["cells"] if sidecar.exists() else 0
    return out


def _mosaic_asset(platform: Platform, key: dg.AssetKey, parent: dg.AssetKey, which: int, out_name: str,
                  dtype: str, nodata, description: str) -> dg.AssetsDefinition:
    checks = [dg.AssetCheckSpec("seamless", asset=key, blocking=True,
                                description="The mosaic has exactly one value per commune cell: no gap, no seam, "
                                            "no double counting at commune edges.")]

    @dg.asset(key=key, deps=[parent], group_name=GROUP_EXPORTS, owners=[STEWARDS], kinds={"rasterio", "cog"},
              description=description, code_version="cog1", automation_condition=EAGER, check_specs=checks)
    def _mosaic(context: AssetExecutionContext) -> dg.MaterializeResult:
        parts = [score_paths(str(platform.layout.score), code)[which] for code in platform.commune_codes]
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise dg.Failure(description=f"{key.to_user_string()}: commune rasters missing: {missing[:5]}")
        out = platform.layout.score / out_name
        stats = mosaic_to_cog(parts, platform.territory_window, out, dtype=dtype, nodata=nodata)
        expected = sum(_expected_cells(platform).values())
        return dg.MaterializeResult(
            metadata={"path": dg.MetadataValue.path(str(out)), "valid_cells": stats["valid_cells"],
                      "expected_cells": expected, "parts": stats["parts"],
                      "size_bytes": out.stat().st_size, "bounds": dg.MetadataValue.json(platform.territory_window.bounds)},
            check_results=[dg.AssetCheckResult(check_name="seamless", passed=stats["valid_cells"] == expected,
                                               metadata={"valid_cells": stats["valid_cells"], "expected": expected})],
        )

    return _mosaic


def build_class_gpkg(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=GPKG_KEY, deps=[CLASS_KEY], group_name=GROUP_EXPORTS, owners=[STEWARDS], kinds={"gpkg"},
              description="Class polygons dissolved per class and commune (GeoPackage layer "
                          "`plantability_classes`, EPSG:2154), for QGIS.",
              code_version="gpkg1", automation_condition=EAGER)
    def _gpkg(context: AssetExecutionContext) -> dg.MaterializeResult:
        labels = {c.class_: c.label for c in platform.catalogue.classes}
        colours = platform.catalogue.class_colours()
        rows = []
        paths = [str(score_paths(str(platform.layout.score), code)[1]) for code in platform.commune_codes]
        cells = {path: platform.windows[code].width * platform.windows[code].height
                 for code, path in zip(platform.commune_codes, paths)}
        parts = map_tasks(run_class_polygons, paths, size=cells.__getitem__)
        for code, polygons in zip(platform.commune_codes, parts):
            for cls, wkb in polygons:
                geometry = shapely.from_wkb(wkb)
                rows.append({"commune": code, "class": cls, "label": labels.get(cls, ""),
                             "colour": colours.get(cls, ""), "area_m2": float(geometry.area), "geometry": geometry})
        frame = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:2154")
        out = platform.layout.exports / "plantability_classes.gpkg"
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            pyogrio.write_dataframe(frame, tmp, driver="GPKG", layer="plantability_classes")
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out)), "features": len(frame),
                                              "area_m2": round(float(frame["area_m2"].sum()), 1)})

    return _gpkg


def build_preview(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=dg.AssetKey(["class_map_preview"]), deps=[CLASS_KEY], group_name=GROUP_EXPORTS,
              owners=[STEWARDS], kinds={"png"}, code_version="png1", automation_condition=EAGER,
              description="A small PNG of the whole territory's class map in the published colours.")
    def _preview(context: AssetExecutionContext) -> dg.MaterializeResult:
        png = class_preview(platform, platform.commune_codes, max_px=800)
        out = platform.layout.exports / "plantability_class_preview.png"
        atomic_write_bytes(out, png)
        return dg.MaterializeResult(metadata={"preview": preview_markdown(png, "Territory class map"),
                                              "path": dg.MetadataValue.path(str(out)), "size_bytes": len(png)})

    return _preview


def build_tiles_export(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(key=TILES_EXPORT_KEY, deps=[TILES_KEY], group_name=GROUP_EXPORTS, owners=[STEWARDS],
              kinds={"parquet"}, code_version="tilesx1", automation_condition=EAGER,
              description="All tiles of the territory in one GeoParquet file (cell-centre points, EPSG:2154), "
                          "streamed commune by commune.")
    def _tiles_export(context: AssetExecutionContext) -> dg.MaterializeResult:
        files = [platform.layout.tiles / f"{code}.parquet" for code in platform.commune_codes]
        out = platform.layout.exports / "tiles.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
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
        _mosaic_asset(platform, SCORE_COG_KEY, SCORE_KEY, 0, "plantability_score.tif", "float32", SCORE_NODATA,
                      "Territory-wide plantability score, Cloud-Optimised GeoTIFF (float32, nodata -9999), "
                      "mosaicked from the communes on the shared grid."),
        _mosaic_asset(platform, CLASS_COG_KEY, CLASS_KEY, 1, "plantability_class.tif", "uint8", CLASS_NODATA,
                      "Territory-wide plantability class, Cloud-Optimised GeoTIFF (uint8, 255 = nodata)."),
        build_class_gpkg(platform),
        build_preview(platform),
        build_tiles_export(platform),
    ]
