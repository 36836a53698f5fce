"""GeoParquet writers of the store: normalised source versions, footprint polygons, tiles.

All write GeoParquet 1.1 (WKB geometry, CRS as PROJJSON) atomically (temporary sibling, then rename).
"""

from __future__ import annotations

import itertools
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


_POINT_WKB = np.dtype([("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])  # packed: 21 bytes


def point_wkb(xs: np.ndarray, ys: np.ndarray) -> pa.BinaryArray:
    """2-D points as little-endian ISO WKB (the bytes shapely.to_wkb writes), built straight into one Arrow
    buffer: no geometry object per point (a commune's millions of cell centres held ~1 GB as shapely Points)."""
    n = len(xs)
    records = np.empty(n, dtype=_POINT_WKB)
    records["order"], records["kind"], records["x"], records["y"] = 1, 1, xs, ys
    offsets = np.arange(0, (n + 1) * _POINT_WKB.itemsize, _POINT_WKB.itemsize, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(records)])


def with_point_geometry(table: pa.Table, xs: np.ndarray, ys: np.ndarray, crs: str = PLATFORM_CRS) -> pa.Table:
    """Append a WKB point geometry column with GeoParquet 1.1 metadata (points, EPSG:2154)."""
    table = table.append_column("geometry", point_wkb(np.asarray(xs, np.float64), np.asarray(ys, np.float64)))
    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                 "crs": ProjCRS.from_user_input(crs).to_json_dict()}},
    }
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(meta).encode()
    return table.replace_schema_metadata(metadata)


def write_tiles(path: Path, tables) -> None:
    """Write a commune's tiles from an iterable of at least one table of at most TILES_ROW_GROUP rows (one
    row group each; the first one's schema, GeoParquet metadata included, is the file's)."""
    tables = iter(tables)
    with atomic_path(path) as tmp:
        first = next(tables)
        with pq.ParquetWriter(tmp, first.schema, compression="zstd") as writer:
            for table in itertools.chain([first], tables):
                writer.write_table(table, row_group_size=TILES_ROW_GROUP)
