"""Small layers for the quality tests, derived from the catalogue (columns, filters, known values)."""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from iarbre_assets.catalog.models import ColumnBuffer, FactorDef, SourceDef
from iarbre_assets.catalog.territory import QualitySpec
from iarbre_assets.geo.normalise import normalise

LYON_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lyon"

# A synthetic territory box in Lambert-93 (near Lyon), and the quality spec the tests use.
BOUNDS = (840000.0, 6515000.0, 846000.0, 6521000.0)
QUALITY = QualitySpec(row_count_band=0.5, filter_values="blocking", bounds_margin_m=1000.0, min_valid_share=0.99)
ORIGIN = (841000.0, 6516000.0)
STEP = 30.0  # features on a 30 m grid: squares of 10 m never overlap


def filter_values(source: SourceDef, factors: list[FactorDef]) -> dict[str, list]:
    values: dict[str, list] = {}
    for factor in factors:
        if source.slug in factor.sources:
            for cond in factor.where:
                for value in cond.values:
                    values.setdefault(cond.field, [])
                    if value not in values[cond.field]:
                        values[cond.field].append(value)
    return values


def grid_xy(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A square-ish grid (10 columns at least), inside BOUNDS up to ~40 000 features."""
    cols = max(10, math.ceil(math.sqrt(n)))
    i = np.arange(n)
    return ORIGIN[0] + (i % cols) * STEP, ORIGIN[1] + (i // cols) * STEP


def geometries(kind: str, n: int) -> np.ndarray:
    x, y = grid_xy(n)
    if kind == "point":
        return shapely.points(x, y)
    if kind == "line":
        return shapely.linestrings(np.stack([np.stack([x, y], 1), np.stack([x + 20, y + 5], 1)], 1))
    squares = shapely.box(x, y, x + 10, y + 10)
    if kind == "polygon":
        return squares
    mixed = squares.copy()  # "any": alternate points and polygons
    mixed[::2] = shapely.points(x[::2], y[::2])
    return mixed


def raw_layer(source: SourceDef, factors: list[FactorDef], n: int = 60, crs: str = "EPSG:2154") -> gpd.GeoDataFrame:
    """A layer as a partner would deliver it: every declared column filled with plausible raw values."""
    wanted = filter_values(source, factors)
    radius_columns = {
        f.buffer.radius_from for f in factors if source.slug in f.sources and isinstance(f.buffer, ColumnBuffer)
    }
    data: dict[str, list] = {}
    for column, kind in source.columns.items():
        if column in source.known_values:
            cycle = list(source.known_values[column])
        elif column in wanted:
            cycle = list(wanted[column]) + (["Autre valeur"] if kind == "str" else [])
        else:
            cycle = None
        if cycle is not None:
            data[column] = [cycle[i % len(cycle)] for i in range(n)]
        elif column in radius_columns:
            data[column] = [float(40 + (i * 7) % 300) for i in range(n)]
        elif kind == "int":
            data[column] = list(range(1, n + 1))
        elif kind == "float":
            data[column] = [100.0 + i for i in range(n)]
        else:
            data[column] = [f"{column}-{i:05d}" for i in range(n)]
    data["comment"] = [f"feature {i}" for i in range(n)]
    gdf = gpd.GeoDataFrame(data, geometry=geometries(source.geometry, n), crs="EPSG:2154")
    return gdf if crs == "EPSG:2154" else gdf.to_crs(crs)


def good_layer(source: SourceDef, factors: list[FactorDef], n: int = 60) -> gpd.GeoDataFrame:
    layer, report = normalise(raw_layer(source, factors, n), source)
    assert report.rows_out == n, report.as_dict()
    return layer
