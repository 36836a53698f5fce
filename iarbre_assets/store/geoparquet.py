"""GeoParquet writers of the store: normalised source versions, footprint polygons, tiles.

All write GeoParquet 1.1 (WKB geometry, CRS as PROJJSON) atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS as ProjCRS

from ..geo.grid import PLATFORM_CRS
from .files import atomic_path

ROW_GROUP_SIZE = 20_000
TILES_ROW_GROUP = 250_000


def write_source_version(gdf: gpd.GeoDataFrame, path: Path) -> None:
    """GeoParquet 1.1 with a bbox covering column, rows in Hilbert order so bbox reads prune row groups."""
    if len(gdf):
        order = gdf.geometry.hilbert_distance().argsort(kind="stable")
        gdf = gdf.iloc[order.to_numpy()].reset_index(drop=True)
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, row_group_size=ROW_GROUP_SIZE,
                       compression="zstd")


_GEOMETRY_TYPES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
                   6: "MultiPolygon", 7: "GeometryCollection"}
_PROJJSON: dict = {}


def write_polygons(path: Path, polygons: np.ndarray, crs: str = PLATFORM_CRS) -> None:
    """GeoParquet 1.1 (WKB geometry + covering bbox column, zstd), as GeoDataFrame.to_parquet writes it.

    Written with pyarrow directly: through geopandas the same file costs ~9 ms more per commune (pandas
    overhead), i.e. most of a small factor's footprint step. Read it with geopandas.read_parquet.
    """
    polygons = np.asarray(polygons, dtype=object)
    if crs not in _PROJJSON:
        _PROJJSON.setdefault(crs, ProjCRS.from_user_input(crs).to_json_dict())
    bounds = shapely.bounds(polygons) if len(polygons) else np.empty((0, 4))
    bbox = pa.StructArray.from_arrays([pa.array(bounds[:, i], pa.float64()) for i in range(4)],
                                      names=["xmin", "ymin", "xmax", "ymax"])
    column = {"encoding": "WKB", "crs": _PROJJSON[crs],
              "geometry_types": sorted({_GEOMETRY_TYPES[t] for t in shapely.get_type_id(polygons).tolist()})}
    if len(polygons):
        column["bbox"] = [float(bounds[:, 0].min()), float(bounds[:, 1].min()),
                          float(bounds[:, 2].max()), float(bounds[:, 3].max())]
    column["covering"] = {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    geo = {"primary_column": "geometry", "columns": {"geometry": column}, "version": "1.1.0",
           "creator": {"library": "geopandas", "version": gpd.__version__}}
    field = pa.field("geometry", pa.binary(), metadata={
        "ARROW:extension:name": "geoarrow.wkb",
        "ARROW:extension:metadata": json.dumps({"crs": _PROJJSON[crs]}),
    })
    schema = pa.schema([field, pa.field("bbox", bbox.type)], metadata={"geo": json.dumps(geo)})
    table = pa.Table.from_arrays([pa.array(shapely.to_wkb(polygons), pa.binary()), bbox], schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def with_point_geometry(table: pa.Table, geometry, crs: str = PLATFORM_CRS) -> pa.Table:
    """Append a WKB point geometry column with GeoParquet 1.1 metadata (points, EPSG:2154, bbox)."""
    wkb = shapely.to_wkb(np.asarray(geometry), output_dimension=2)
    table = table.append_column("geometry", pa.array(wkb, pa.binary()))
    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                 "crs": ProjCRS.from_user_input(crs).to_json_dict()}},
    }
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(meta).encode()
    return table.replace_schema_metadata(metadata)


def write_tiles(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=TILES_ROW_GROUP)
