"""Cartofriches (geofriches) for the demo: the GeoJSON collection the local server pages like the API.

    data = write_dataset_file(gdf)        # needs a code_insee column; deterministic JSON bytes

The product only reads Cartofriches pages (iarbre_assets.connectors.cartofriches).
"""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from iarbre_assets.connectors.cartofriches import CRS, ID_PROPERTY

__all__ = ["write_dataset_file"]


def write_dataset_file(gdf: gpd.GeoDataFrame, *, id_field: str = ID_PROPERTY) -> bytes:
    """The demo's Cartofriches dataset: a GeoJSON FeatureCollection in EPSG:4326, one feature per site.

    `gdf` must have a `code_insee` column (the commune the server filters on); the feature `id` is the
    `id_field` value when that column exists, else the row number (1-based). Deterministic bytes.
    """
    if gdf.crs is None:
        raise ValueError("write_dataset_file needs a GeoDataFrame with a CRS")
    if "code_insee" not in gdf.columns:
        raise ValueError("write_dataset_file needs a 'code_insee' column (commune of each site)")
    frame = gdf.to_crs(CRS) if gdf.crs != CRS else gdf
    columns = [c for c in frame.columns if c != frame.geometry.name]
    geojson = shapely.to_geojson(np.asarray(frame.geometry.array))
    values = [frame[c].tolist() for c in columns]
    features = []
    for i in range(len(frame)):
        properties = {c: _json_value(v[i]) for c, v in zip(columns, values)}
        properties["code_insee"] = None if properties["code_insee"] is None else str(properties["code_insee"])
        fid = properties.get(id_field) if id_field in properties else i + 1
        features.append({"type": "Feature", "id": fid,
                         "geometry": None if geojson[i] is None else json.loads(geojson[i]),
                         "properties": properties})
    document = {"type": "FeatureCollection", "features": features}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json_value(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
