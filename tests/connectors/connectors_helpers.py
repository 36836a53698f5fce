"""Helpers of the connector tests: sample frames, wire-format writers and SourceDef builders.
(the fixtures are in conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
from shapely.geometry import LineString, Point, box

from iarbre_assets.catalog.models import (
    CartofrichesLocation,
    DatafairLocation,
    FileLocation,
    IgnWfsLocation,
    SourceDef,
    WfsLocation,
)

sys.path.insert(0, str(Path(__file__).parent))  # connectors_fakeserver.py

LYON_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lyon"

TREE_TYPENAME = "metropole-de-lyon:abr_arbres_alignement.abrarbre"
BUILDING_TYPENAME = "BDTOPO_V3:batiment"
GAS_DATASET = "infrastructures-reseau-gaz"

# Three communes; 69001/69002 overlap on x 840900..841000, 69002/69003 touch at x = 842000.
COMMUNE_BBOXES = [
    ("69001", (840000.0, 6510000.0, 841000.0, 6511000.0)),
    ("69002", (840900.0, 6510000.0, 842000.0, 6511000.0)),
    ("69003", (842000.0, 6510000.0, 843000.0, 6511000.0)),
]


def make_source(location, slug: str = "test_source") -> SourceDef:
    return SourceDef(slug=slug, label="test", partner="test_partner", family="test", geometry="any",
                     connector=location.kind, location=location, cadence="P1Y", licence="test")


def wfs_source(url: str, typename: str = TREE_TYPENAME, page_size: int = 5, **extra) -> SourceDef:
    return make_source(WfsLocation(url=url, typename=typename, sort_by="gid", page_size=page_size, **extra),
                       slug="arbres")


def ign_source(url: str, page_size: int = 4) -> SourceDef:
    return make_source(IgnWfsLocation(url=url, typename=BUILDING_TYPENAME, page_size=page_size), slug="batiments")


def datafair_source(url: str, page_size: int = 4, qs: str | None = "code_epci:200046977") -> SourceDef:
    return make_source(DatafairLocation(url=url, qs=qs, page_size=page_size), slug="ore_gaz")


def cartofriches_source(url: str, page_size: int = 2) -> SourceDef:
    return make_source(CartofrichesLocation(url=url, coddep="69", page_size=page_size), slug="cartofriches")


def file_source(path, layer: str | None = None, crs: str | None = None) -> SourceDef:
    return make_source(FileLocation(path=str(path), layer=layer, crs=crs), slug="partner_file")


def trees_frame() -> gpd.GeoDataFrame:
    """23 trees: gid 1..23, an essence (None for every 7th), a height with decimals."""
    n = 23
    return gpd.GeoDataFrame(
        {"gid": np.arange(1, n + 1),
         "essence": [None if i % 7 == 0 else f"Platanus {i} & <x>" for i in range(1, n + 1)],
         "hauteur": [round(3.25 + 0.1 * i, 2) for i in range(1, n + 1)]},
        geometry=[Point(840000.125 + 10 * i, 6510000.5 + 3 * i) for i in range(1, n + 1)],
        crs="EPSG:2154",
    )


def buildings_frame() -> gpd.GeoDataFrame:
    """30 squares of 10 m at x = 840005 + 100 k (k = 0..29), plus one straddling x = 842000."""
    xs = [840005.0 + 100 * k for k in range(30)] + [841995.0]
    geoms = [box(x, 6510500.0, x + 10, 6510510.0) for x in xs]
    return gpd.GeoDataFrame({"cleabs": [f"BATIMENT{k:016d}" for k in range(len(xs))],
                             "nature": ["Indifférenciée"] * len(xs)}, geometry=geoms, crs="EPSG:2154")


def gas_frame() -> gpd.GeoDataFrame:
    """12 gas lines in Lambert-93; 9 in EPCI 200046977 (rows 0..8), 3 elsewhere."""
    lines = [LineString([(842000 + 50 * i, 6519000), (842000 + 50 * i, 6519040 + i)]) for i in range(12)]
    return gpd.GeoDataFrame({"code_epci": ["200046977"] * 9 + ["200000000"] * 3,
                             "materiau": [f"PE{i}" for i in range(12)],
                             "diametre": [63.0 + i for i in range(12)]}, geometry=lines, crs="EPSG:2154")


def friches_frame() -> gpd.GeoDataFrame:
    """5 sites in commune 69002, 1 in 69003."""
    sites = [box(841000 + 150 * i, 6510200, 841050 + 150 * i, 6510260) for i in range(5)]
    sites.append(box(842500, 6510200, 842560, 6510260))
    return gpd.GeoDataFrame({"site_id": [f"69002_{i}" for i in range(5)] + ["69003_0"],
                             "site_nom": [f"Friche {i}" for i in range(6)],
                             "code_insee": ["69002"] * 5 + ["69003"]}, geometry=sites, crs="EPSG:2154")
