"""data-fair datasets for the demo: the on-disk record file the local server pages as `.../lines`.

    data = write_dataset_file(gdf, geometry_field="geo_shape")   # deterministic JSON bytes

The product only reads data-fair pages (iarbre_assets.connectors.datafair).
"""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from iarbre_assets.connectors.datafair import CRS

__all__ = ["write_dataset_file"]


def write_dataset_file(gdf: gpd.GeoDataFrame, *, geometry_field: str = "geometry") -> bytes:
    """The demo's on-disk form of a data-fair dataset: {"total": N, "results": [...]}, deterministic JSON.

    Records are in data-fair shape: `_i` (1-based line number, the paging cursor), `_id`, the attributes,
    and `geometry_field` as a GeoJSON string in EPSG:4326 (the frame is reprojected if needed).
    """
    if gdf.crs is None:
        raise ValueError("write_dataset_file needs a GeoDataFrame with a CRS")
    frame = gdf.to_crs(CRS) if gdf.crs != CRS else gdf
    columns = [c for c in frame.columns if c != frame.geometry.name]
    if geometry_field in columns or "_i" in columns or "_id" in columns:
        raise ValueError(f"columns may not be named {geometry_field!r}, '_i' or '_id'")
    geojson = shapely.to_geojson(np.asarray(frame.geometry.array))
    values = [frame[c].tolist() for c in columns]
    results = []
    for i in range(len(frame)):
        record = {"_i": i + 1, "_id": f"line-{i + 1}"}
        for column, column_values in zip(columns, values):
            record[column] = _json_value(column_values[i])
        record[geometry_field] = None if geojson[i] is None else str(geojson[i])
        results.append(record)
    document = {"total": len(results), "results": results}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json_value(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
