"""Per-commune work for the constraint assets (no Dagster): footprint and coverage of one factor.

    constraints/<factor>/<commune>.footprint.parquet   the footprint polygons (GeoParquet, EPSG:2154)
    constraints/<factor>/<commune>.footprint.json      what produced it: catalogue entry, source versions
    constraints/<factor>/<commune>.tif                 percent coverage, uint8, 255 = outside the commune
    constraints/<factor>/<commune>.json                coverage statistics and hashes

Features are read for the commune window grown by the factor's reach, so a buffer that crosses a commune
edge counts on both sides; each cell is then kept only in the commune that contains its centre.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ..catalog.models import FactorDef, FixedBuffer
from ..geo.coverage import coverage_percent
from ..geo.footprint import factor_footprint
from ..geo.grid import Window, cell_owner
from ..geo.raster_io import write_geotiff
from ..paths import atomic_path, atomic_write_text

CRS = "EPSG:2154"
COVERAGE_NODATA = 255
_SOURCE_CACHE: "OrderedDict[str, gpd.GeoDataFrame]" = OrderedDict()
_SOURCE_CACHE_SIZE = 3


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
    factor: FactorDef
    commune: str
    window: Window
    sources: list[SourceInput]
    out_dir: str
    union_method: str = "overlay"
    code_version: str = ""

    @property
    def factor_slug(self) -> str:
        return self.factor.slug


@dataclass
class CoverageTask:
    factor: str
    commune: str
    window: Window
    footprint_path: str
    communes: CommuneLayer
    out_dir: str
    subpixel_m: float = 1.0

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
        _SOURCE_CACHE[key] = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=CRS)
    return _SOURCE_CACHE[key]


def union_method_for(factor: FactorDef, geometry: str) -> str:
    """Networks: buffer the merged lines once (same covered area, ~8x faster, docs/decisions.md)."""
    if geometry == "line" and isinstance(factor.buffer, FixedBuffer) and not factor.simplify_m:
        return "merge_lines"
    return "overlay"


def footprint_paths(out_dir: str, commune: str) -> tuple[Path, Path]:
    base = Path(out_dir)
    return base / f"{commune}.footprint.parquet", base / f"{commune}.footprint.json"


def coverage_paths(out_dir: str, commune: str) -> tuple[Path, Path]:
    base = Path(out_dir)
    return base / f"{commune}.tif", base / f"{commune}.json"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_footprint(task: FootprintTask) -> dict:
    frame = _factor_frame(task.sources)
    footprint = factor_footprint(frame, task.factor, bounds=task.window.bounds, union_method=task.union_method)
    out, sidecar = footprint_paths(task.out_dir, task.commune)
    out.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame(geometry=gpd.GeoSeries(footprint.polygons, crs=CRS), crs=CRS)
    with atomic_path(out) as tmp:
        gdf.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, compression="zstd")
    record = {
        "factor": task.factor.slug,
        "commune": task.commune,
        "window": list(task.window.bounds),
        "catalogue_entry": task.factor.model_dump(mode="json", by_alias=True, exclude_none=True),
        "union_method": task.union_method,
        "code_version": task.code_version,
        "sources": [asdict(s) for s in task.sources],
        "stats": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in footprint.stats.items()},
        "sha256": _file_sha256(out),
    }
    atomic_write_text(sidecar, json.dumps(record, indent=1, ensure_ascii=False))
    return record


# ------------------------------------------------------------------------------------------------
_COMMUNES_CACHE: dict[str, list] = {}


def commune_mask(communes: CommuneLayer, code: str, window: Window) -> np.ndarray:
    """Cells of `window` whose centre lies in commune `code` (ties to the first commune in code order)."""
    geoms = _COMMUNES_CACHE.get(communes.path)
    if geoms is None:
        frame = gpd.read_parquet(communes.path)
        by_code = dict(zip(frame[communes.code_field].astype(str), frame.geometry.values))
        geoms = [by_code[c] for c in communes.codes]
        _COMMUNES_CACHE.clear()
        _COMMUNES_CACHE[communes.path] = geoms
    return cell_owner(geoms, window) == communes.codes.index(code)


def run_coverage(task: CoverageTask) -> dict:
    polygons = np.asarray(gpd.read_parquet(task.footprint_path).geometry.values)
    coverage = coverage_percent(polygons, task.window, subpixel=task.subpixel_m)
    inside = commune_mask(task.communes, task.commune, task.window)
    coverage[~inside] = COVERAGE_NODATA
    out, sidecar = coverage_paths(task.out_dir, task.commune)
    write_geotiff(out, coverage, task.window, nodata=COVERAGE_NODATA)
    values = coverage[inside]
    record = {
        "factor": task.factor,
        "commune": task.commune,
        "footprint_sha256": _file_sha256(Path(task.footprint_path)),
        "footprint_polygons": int(len(polygons)),
        "coverage_sha256": hashlib.sha256(coverage.tobytes() + repr(task.window.bounds).encode()).hexdigest(),
        "cells": int(inside.sum()),
        "covered_cells": int((values > 0).sum()),
        "covered_area_m2": float(values.sum(dtype=np.int64)) / 100.0 * task.window.cell ** 2,
        "max": int(values.max()) if values.size else 0,
        "values_ok": bool(((values <= 100) & (values % 4 == 0)).all()) if values.size else True,
        "outside_is_nodata": bool((coverage[~inside] == COVERAGE_NODATA).all()),
        # a footprint that reaches into the commune must cover some sub-pixel centre in it
        "footprint_in_commune": _footprint_reaches(polygons, task),
    }
    atomic_write_text(sidecar, json.dumps(record, indent=1))
    return record


def _footprint_reaches(polygons, task: CoverageTask) -> int:
    """Footprint area (m², rounded) inside the commune window: non-zero means some coverage is expected."""
    import shapely

    if not len(polygons):
        return 0
    box = shapely.box(*task.window.bounds)
    inside = shapely.contains_properly(box, polygons)
    crossing = ~inside & shapely.intersects(box, polygons)
    area = shapely.area(polygons[inside]).sum()
    if crossing.any():
        area += shapely.area(shapely.intersection(polygons[crossing], box)).sum()
    return int(round(float(area)))


@dataclass
class ConstraintTask:
    """Footprint and/or coverage of one factor in one commune (both when both are selected)."""

    footprint: FootprintTask | None
    coverage: CoverageTask | None

    @property
    def size(self) -> int:
        window = (self.footprint or self.coverage).window
        return window.width * window.height


def run_constraint(task: ConstraintTask) -> dict:
    out = {}
    if task.footprint is not None:
        out["footprint"] = run_footprint(task.footprint)
    if task.coverage is not None:
        out["coverage"] = run_coverage(task.coverage)
    return out
