"""Per-commune work for the constraint assets (no Dagster): footprint and coverage of one factor.

Writes, through the store: the footprint polygons (GeoParquet) and its record (catalogue entry, source
versions), the percent coverage (uint8 GeoTIFF, 255 = outside the commune) and its record (statistics, hashes).

Features are read for the commune window grown by the factor's reach, so a buffer that crosses a commune
edge counts on both sides; each cell is then kept only in the commune that contains its centre, and only
the tiles holding such cells are rasterised. When one task computes both, the coverage is computed from the
footprint polygons in memory (the same polygons the parquet file holds, bit for bit).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..catalog.models import FactorDef
from ..geo.coverage import COVERAGE_NODATA, coverage_percent, percent_step
from ..geo.footprint import CellArea, factor_footprint
from ..geo.grid import PLATFORM_CRS, Window, cell_owner
from ..store import Store, write_json
from ..store.geoparquet import write_polygons
from ..store.rasters import write_geotiff
from ..store.files import file_sha256
from .caches import release_between_steps

# zstd: 1.6x faster to write than deflate (GDAL's default level 9), a little smaller, faster to read
COVERAGE_COMPRESS = "zstd"
_SOURCE_CACHE: "OrderedDict[str, gpd.GeoDataFrame]" = OrderedDict()
_SOURCE_CACHE_SIZE = 3
release_between_steps(_SOURCE_CACHE.clear)


@dataclass(frozen=True)
class SourceInput:
    """An accepted source version a factor reads."""

    slug: str
    version: str
    raw_sha256: str
    normalised_sha256: str
    partner: str
    origin: str
    path: str


@dataclass(frozen=True)
class CommuneLayer:
    """Where the accepted communes are, and their order (the first containing a cell centre owns it)."""

    path: str
    codes: tuple[str, ...]
    code_field: str = "code"


@dataclass
class FootprintTask:
    """Footprint of one factor for one commune.

    communes: when given, only the features that can reach a cell the commune owns are used (bounding box
      grown by the factor's reach touching a 4 x 4-cell block that holds an owned cell, then the geometry
      within the reach of the commune grown by half a cell's diagonal), instead of all those of the commune
      window's bounding box (+ reach): the same coverage of the owned cells, ~40 % less footprint work on
      the full-scale territory.
    """

    factor: FactorDef
    commune: str
    window: Window
    sources: list[SourceInput]
    store: Store
    union_method: str = "overlay"
    code_version: str = ""
    communes: "CommuneLayer | None" = None
    run_id: str = ""

    @property
    def factor_slug(self) -> str:
        return self.factor.slug


@dataclass
class CoverageTask:
    factor: str
    commune: str
    window: Window
    communes: CommuneLayer
    store: Store
    subpixel_m: float = 1.0
    run_id: str = ""

    @property
    def factor_slug(self) -> str:
        return self.factor


# ------------------------------------------------------------------------------------------------
def read_source(path: str) -> gpd.GeoDataFrame:
    """An accepted GeoParquet source, cached in the worker (a few sources fit in memory at once)."""
    if path in _SOURCE_CACHE:
        _SOURCE_CACHE.move_to_end(path)
        return _SOURCE_CACHE[path]
    frame = gpd.read_parquet(path)
    _SOURCE_CACHE[path] = frame
    while len(_SOURCE_CACHE) > _SOURCE_CACHE_SIZE:
        _SOURCE_CACHE.popitem(last=False)
    return frame


def _factor_frame(sources: list[SourceInput]) -> gpd.GeoDataFrame:
    frames = [read_source(s.path) for s in sources]
    if len(frames) == 1:
        return frames[0]
    key = "|".join(s.path for s in sources)
    if key not in _SOURCE_CACHE:
        _SOURCE_CACHE[key] = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=PLATFORM_CRS)
    return _SOURCE_CACHE[key]


def union_method_for(factor: FactorDef, geometry: str) -> str:
    """Every factor unions as published: buffered features, then an exact overlay union (docs/decisions.md D22)."""
    return "overlay"


def _footprint(task: FootprintTask) -> tuple[dict, np.ndarray]:
    """Compute and write one footprint: (sidecar record, the polygons written)."""
    frame = _factor_frame(task.sources)
    cells = None if task.communes is None else owned_area(task.communes, task.commune, task.window)
    footprint = factor_footprint(frame, task.factor, bounds=task.window.bounds, union_method=task.union_method,
                                 cells=cells)
    out = task.store.footprint(task.factor.slug, task.commune)
    write_polygons(out, footprint.polygons)
    record = {
        "factor": task.factor.slug,
        "commune": task.commune,
        "run_id": task.run_id,
        "window": list(task.window.bounds),
        # features used: those reaching into the commune (+ one cell), or into the whole window
        "extent": "commune" if task.communes is not None else "window",
        "catalogue_entry": task.factor.model_dump(mode="json", by_alias=True, exclude_none=True),
        "union_method": task.union_method,
        "code_version": task.code_version,
        "sources": [asdict(s) for s in task.sources],
        "stats": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in footprint.stats.items()},
        "sha256": file_sha256(out),
    }
    write_json(task.store.footprint_record(task.factor.slug, task.commune), record, indent=1)
    return record, footprint.polygons


def run_footprint(task: FootprintTask) -> dict:
    return _footprint(task)[0]


# ------------------------------------------------------------------------------------------------
_COMMUNES_CACHE: dict[str, list] = {}
# Owned-cell masks (and their CellArea) per (layer, commune, window): every factor of a commune needs the
# same. Bounded in bytes (a bool per cell: the 59 full-scale communes hold 40 MB), oldest dropped first.
_MASK_CACHE: "OrderedDict[tuple, tuple[object, int]]" = OrderedDict()
_MASK_CACHE_BYTES = 256 * 1024 * 1024
release_between_steps(_MASK_CACHE.clear)
release_between_steps(_COMMUNES_CACHE.clear)


def _cached(key: tuple, build):
    hit = _MASK_CACHE.get(key)
    if hit is not None:
        _MASK_CACHE.move_to_end(key)
        return hit[0]
    value, nbytes = build()
    _MASK_CACHE[key] = (value, nbytes)
    total = sum(n for _, n in _MASK_CACHE.values())
    while total > _MASK_CACHE_BYTES and len(_MASK_CACHE) > 1:
        _, (_, dropped) = _MASK_CACHE.popitem(last=False)
        total -= dropped
    return value


def _commune_geoms(communes: CommuneLayer) -> list:
    geoms = _COMMUNES_CACHE.get(communes.path)
    if geoms is None:
        frame = gpd.read_parquet(communes.path)
        by_code = dict(zip(frame[communes.code_field].astype(str), frame.geometry.values))
        missing = [c for c in communes.codes if c not in by_code]
        if missing:
            raise KeyError(f"{communes.path}: no commune with {communes.code_field} in {missing[:10]}")
        geoms = [by_code[c] for c in communes.codes]
        _COMMUNES_CACHE.clear()
        _COMMUNES_CACHE[communes.path] = geoms
    return geoms


def _owned_cells(communes: CommuneLayer, code: str, window: Window) -> np.ndarray:
    """Read-only cached mask of the cells of `window` that commune `code` owns (see commune_mask)."""

    def build():
        geoms = _commune_geoms(communes)
        index = communes.codes.index(code)
        # Only communes reaching into the window can own a cell of it; keeping them in code order keeps the
        # ownership rule (the first commune containing a centre wins) exactly that of cell_owner(all).
        near = np.flatnonzero(shapely.intersects(shapely.box(*window.bounds), shapely.envelope(geoms))).tolist()
        if index in near:
            mask = cell_owner([geoms[i] for i in near], window) == near.index(index)
        else:
            mask = np.zeros(window.shape, dtype=bool)
        mask.setflags(write=False)
        return mask, mask.nbytes

    return _cached(("mask", communes.path, communes.codes, communes.code_field, code, window), build)


def owned_area(communes: CommuneLayer, code: str, window: Window) -> CellArea:
    """The owned cells as a CellArea (cached too; ~1/4 of the mask's size)."""

    def build():
        # every owned cell's centre lies in the commune: its outline narrows the test to the geometry
        outline = _commune_geoms(communes)[communes.codes.index(code)]
        area = CellArea.from_mask(_owned_cells(communes, code, window), window.xmin, window.ymax, window.cell,
                                  outline=outline)
        area.table.setflags(write=False)
        return area, area.table.nbytes

    return _cached(("area", communes.path, communes.codes, communes.code_field, code, window), build)


def commune_mask(communes: CommuneLayer, code: str, window: Window) -> np.ndarray:
    """Cells of `window` whose centre lies in commune `code` (ties to the first commune in code order)."""
    return _owned_cells(communes, code, window).copy()


def run_coverage(task: CoverageTask, polygons: np.ndarray | None = None, footprint_sha256: str | None = None) -> dict:
    """Coverage of one commune. `polygons` (and the footprint file's `footprint_sha256`): the footprint just
    written by the same task, to skip reading it back; by default the footprint file is read."""
    footprint_path = task.store.footprint(task.factor, task.commune)
    if polygons is None:
        polygons = np.asarray(gpd.read_parquet(footprint_path).geometry.values)
    if footprint_sha256 is None:
        footprint_sha256 = file_sha256(footprint_path)
    inside = _owned_cells(task.communes, task.commune, task.window)
    coverage = coverage_percent(polygons, task.window, subpixel=task.subpixel_m, mask=inside)
    np.copyto(coverage, COVERAGE_NODATA, where=~inside)
    write_geotiff(task.store.coverage(task.factor, task.commune), coverage, task.window, nodata=COVERAGE_NODATA, compress=COVERAGE_COMPRESS)
    values = coverage[inside]
    step = percent_step(task.window, task.subpixel_m)[1]
    digest = hashlib.sha256(coverage)  # == sha256(coverage.tobytes() + bounds), without the copy
    digest.update(repr(task.window.bounds).encode())
    record = {
        "factor": task.factor,
        "commune": task.commune,
        "run_id": task.run_id,
        "footprint_sha256": footprint_sha256,
        "footprint_polygons": int(len(polygons)),
        "coverage_sha256": digest.hexdigest(),
        "cells": int(values.size),
        "covered_cells": int(np.count_nonzero(values)),
        "covered_area_m2": float(values.sum(dtype=np.int64)) / 100.0 * task.window.cell ** 2,
        "max": int(values.max()) if values.size else 0,
        # whole numbers of sub-pixels (multiples of 4 % with 1 m sub-pixels in 5 m cells)
        "values_ok": bool(values.max() <= 100 and not np.any(values % step)) if values.size else True,
        "outside_is_nodata": bool(np.all(coverage[~inside] == COVERAGE_NODATA)),
        # a footprint that reaches into the commune must cover some sub-pixel centre in it
        "footprint_in_commune": _footprint_reaches(polygons, task),
    }
    write_json(task.store.coverage_record(task.factor, task.commune), record, indent=1)
    return record


def _footprint_reaches(polygons, task: CoverageTask) -> int:
    """Footprint area (m², rounded) inside the commune window: non-zero means some coverage is expected.

    Polygons crossing the window edge are cut with a rectangle clip, not an overlay intersection: the same
    area (up to float noise) at a fraction of the cost on a network's few huge polygons.
    """
    polygons = np.asarray(polygons, dtype=object)
    if not len(polygons):
        return 0
    xmin, ymin, xmax, ymax = task.window.bounds
    b = shapely.bounds(polygons)
    inside = (b[:, 0] >= xmin) & (b[:, 1] >= ymin) & (b[:, 2] <= xmax) & (b[:, 3] <= ymax)
    crossing = ~inside & (b[:, 0] < xmax) & (b[:, 2] > xmin) & (b[:, 1] < ymax) & (b[:, 3] > ymin)
    area = float(shapely.area(polygons[inside]).sum())
    if crossing.any():
        area += float(shapely.area(shapely.clip_by_rect(polygons[crossing], xmin, ymin, xmax, ymax)).sum())
    return int(round(area))


@dataclass
class ConstraintTask:
    """Footprint and/or coverage of one factor in one commune (both when both are selected)."""

    footprint: FootprintTask | None
    coverage: CoverageTask | None

    @property
    def factor_slug(self) -> str:
        return (self.footprint or self.coverage).factor_slug

    @property
    def size(self) -> int:
        window = (self.footprint or self.coverage).window
        return window.width * window.height


def run_constraint(task: ConstraintTask) -> dict:
    out = {}
    polygons = sha = None
    if task.footprint is not None:
        out["footprint"], polygons = _footprint(task.footprint)
        sha = out["footprint"]["sha256"]
    if task.coverage is not None:
        out["coverage"] = run_coverage(task.coverage, polygons=polygons, footprint_sha256=sha)
    return out
