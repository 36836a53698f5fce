"""The scalar frame Great Expectations validates: declared attributes plus derived geometry columns.

GX cannot reason about shapely geometries, so each feature's validity, type, emptiness, bounding box and
measure (area or length), and the layer's CRS, become plain columns first.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from .spec import SuiteSpec

PLATFORM_CRS = "EPSG:2154"

GEOM_VALID = "geom_valid"
GEOM_TYPE = "geom_type"
GEOM_EMPTY = "geom_empty"
GEOM_MEASURE = "geom_measure"  # area (m²) of polygons, length (m) of lines, null for points
BBOX = {"minx": "bbox_minx", "miny": "bbox_miny", "maxx": "bbox_maxx", "maxy": "bbox_maxy"}
CRS_COLUMN = "crs"
DERIVED_COLUMNS = (GEOM_VALID, GEOM_TYPE, GEOM_EMPTY, GEOM_MEASURE, *BBOX.values(), CRS_COLUMN)

_TYPE_NAMES = np.array(
    [None, "Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
     "GeometryCollection"],
    dtype=object,
)


def crs_label(crs) -> str:
    """'EPSG:2154' for anything equal to the platform CRS, else the CRS's own short name, or 'none'."""
    if crs is None:
        return "none"
    crs = CRS.from_user_input(crs)
    if crs == CRS.from_user_input(PLATFORM_CRS):
        return PLATFORM_CRS
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name


_NUMERIC_DTYPES = {"int": {"Int64", "Int32", "int64", "int32"}, "float": {"Float64", "Float32", "float64", "float32"}}


def kind_matches(dtype, kind: str) -> bool:
    """Whether a pandas dtype is a normalised form of a catalogue column type (as the schema check sees it)."""
    if kind == "str":
        return isinstance(dtype, pd.StringDtype)
    return str(dtype) in _NUMERIC_DTYPES[kind]


def derive_frame(gdf: gpd.GeoDataFrame, spec: SuiteSpec) -> pd.DataFrame:
    """One row per feature: the declared columns present in `gdf` and the derived geometry columns."""
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf._geometry_column_name not in gdf.columns:
        raise TypeError(f"source {spec.source!r}: expected a GeoDataFrame with an active geometry column")
    clash = sorted(set(spec.columns) & set(DERIVED_COLUMNS))
    if clash:
        raise ValueError(f"source {spec.source!r}: declared columns {clash} collide with derived quality columns")
    geoms = np.asarray(gdf.geometry.array, dtype=object)
    type_ids = shapely.get_type_id(geoms)
    bounds = shapely.bounds(geoms)
    dims = shapely.get_dimensions(geoms)
    measure = np.full(len(geoms), np.nan)
    measure[dims == 2] = shapely.area(geoms[dims == 2])
    measure[dims == 1] = shapely.length(geoms[dims == 1])
    data: dict[str, object] = {}
    for column in spec.columns:
        if column in gdf.columns:
            values = gdf[column].reset_index(drop=True)
            # Both pandas string flavours ("str" with NaN, "string" with NA) are strings; GX only knows
            # the second by name, so present them uniformly. Non-string columns are left as they are.
            if isinstance(values.dtype, pd.StringDtype):
                values = values.astype("string")
            data[column] = values
    data[GEOM_VALID] = shapely.is_valid(geoms)  # null geometries count as invalid
    data[GEOM_TYPE] = pd.Series(_TYPE_NAMES[type_ids + 1], dtype="string")
    data[GEOM_EMPTY] = shapely.is_empty(geoms)
    data[GEOM_MEASURE] = measure
    for key, column in BBOX.items():
        data[column] = bounds[:, ["minx", "miny", "maxx", "maxy"].index(key)]
    data[CRS_COLUMN] = pd.Series([crs_label(gdf.crs)] * len(geoms), dtype="string")
    return pd.DataFrame(data, index=pd.RangeIndex(len(geoms)))
