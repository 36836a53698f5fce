"""Per-commune work for the score assets (no Dagster): score, classes and tiles of one commune.

    score/<commune>.tif             plantability score, float32, nodata -9999 outside the commune
    score/<commune>.class.tif       class 0..10, uint8, 255 outside the commune
    score/<commune>.json            provenance: every factor's weight, coverage and source versions
    tiles/<commune>.parquet         one row per cell (GeoParquet, cell centre points, EPSG:2154)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..geo.grid import Window, cell_owner
from ..geo.raster_io import read_geotiff, write_geotiff
from ..geo.preview import sample_on_lattice
from ..geo.score import classify, factor_stats, meta_sums, score_cells, top_factors
from ..paths import atomic_path, atomic_write_text
from .constraints import COVERAGE_NODATA, CommuneLayer, commune_mask

SCORE_NODATA = -9999.0
CLASS_NODATA = 255


@dataclass(frozen=True)
class FactorInput:
    slug: str
    label: str
    weight: float
    blocking: bool
    meta: str
    coverage_path: str


@dataclass
class ScoreTask:
    commune: str
    window: Window
    factors: list[FactorInput]
    communes: CommuneLayer
    out_dir: str
    blocked_score: float
    run_id: str = ""
    provenance: dict = field(default_factory=dict)
    class_breaks: list = field(default_factory=list)
    class_above: int = 10
    preview: tuple | None = None  # (extent Window, step): return a class sample for the run's preview


@dataclass
class ClassTask:
    commune: str
    score_path: str
    out_dir: str
    class_breaks: list[tuple[float, int]]
    class_above: int


@dataclass
class TilesTask:
    commune: str
    window: Window
    factors: list[FactorInput]
    score_path: str
    class_path: str
    out_path: str
    communes: CommuneLayer
    meta_index: dict[str, list[int]]
    top_groups: dict[str, list[int]]
    top_k: int
    run_id: str
    iris: dict | None = None  # {"path": parquet, "codes": [...], "code_field": str}
    display_footprints: dict[str, str] = field(default_factory=dict)  # slug -> footprint parquet


def score_paths(out_dir: str, commune: str) -> tuple[Path, Path, Path]:
    base = Path(out_dir)
    return base / f"{commune}.tif", base / f"{commune}.class.tif", base / f"{commune}.json"


def read_coverage_stack(factors: list[FactorInput], window: Window) -> np.ndarray:
    stack = np.zeros((len(factors), window.height, window.width), dtype=np.uint8)
    for i, factor in enumerate(factors):
        array, part_window, _ = read_geotiff(factor.coverage_path)
        if part_window != window:
            raise ValueError(f"{factor.coverage_path}: window {part_window.bounds} is not the commune window {window.bounds}")
        stack[i] = np.where(array == COVERAGE_NODATA, 0, array)
    return stack


def _array_sha(array: np.ndarray, window: Window) -> str:
    return hashlib.sha256(array.tobytes() + repr(window.bounds).encode()).hexdigest()


def run_score(task: ScoreTask) -> dict:
    stack = read_coverage_stack(task.factors, task.window)
    valid = commune_mask(task.communes, task.commune, task.window)
    weights = [f.weight for f in task.factors]
    blocking = [f.blocking for f in task.factors]
    result = score_cells(stack, weights, blocking, valid, blocked_score=task.blocked_score, nodata=SCORE_NODATA)
    score_path, _, sidecar = score_paths(task.out_dir, task.commune)
    write_geotiff(score_path, result.score, task.window, nodata=SCORE_NODATA)
    stats = factor_stats(stack, weights, result.blocked, valid, cell_area_m2=task.window.cell ** 2)
    scores = result.score[valid]
    record = {
        "commune": task.commune,
        "run_id": task.run_id,
        "window": list(task.window.bounds),
        "cells": int(valid.sum()),
        "blocked_cells": int((result.blocked & valid).sum()),
        "score_min": float(scores.min()) if scores.size else None,
        "score_max": float(scores.max()) if scores.size else None,
        "score_mean": float(scores.mean(dtype=np.float64)) if scores.size else None,
        "nodata_inside": int((result.score[valid] == SCORE_NODATA).sum()),
        "score_sha256": _array_sha(result.score, task.window),
        "factors": [
            {"slug": f.slug, "label": f.label, "weight": f.weight, "blocking": f.blocking, "meta": f.meta, **s}
            for f, s in zip(task.factors, stats)
        ],
        "provenance": task.provenance,
    }
    atomic_write_text(sidecar, json.dumps(record, indent=1, ensure_ascii=False, default=str))
    if task.preview is not None:
        extent, step = task.preview
        classes = classify(result.score, task.class_breaks, task.class_above, nodata_in=SCORE_NODATA,
                           nodata_out=CLASS_NODATA)
        record["preview"] = sample_on_lattice(classes, task.window, extent, step)
    return record


def run_class(task: ClassTask) -> dict:
    score, window, _ = read_geotiff(task.score_path)
    classes = classify(score, task.class_breaks, task.class_above, nodata_in=SCORE_NODATA, nodata_out=CLASS_NODATA)
    _, class_path, _ = score_paths(task.out_dir, task.commune)
    write_geotiff(class_path, classes, window, nodata=CLASS_NODATA)
    inside = score != SCORE_NODATA
    values, counts = np.unique(classes[inside], return_counts=True)
    return {
        "commune": task.commune,
        "counts": {int(v): int(c) for v, c in zip(values, counts)},
        "nodata_inside": int((classes[inside] == CLASS_NODATA).sum()),
        "class_sha256": _array_sha(classes, window),
    }


# ------------------------------------------------------------------------------------------------
def _owner_codes(layer_path: str, code_field: str, codes: list[str], window: Window) -> np.ndarray:
    frame = gpd.read_parquet(layer_path)
    by_code = dict(zip(frame[code_field].astype(str), frame.geometry.values))
    owner = cell_owner([by_code[c] for c in codes], window)
    names = np.array(codes + [None], dtype=object)
    return names[np.where(owner < 0, len(codes), owner)]


def run_tiles(task: TilesTask) -> dict:
    window = task.window
    inside = commune_mask(task.communes, task.commune, window)
    score, score_window, _ = read_geotiff(task.score_path)
    classes, class_window, _ = read_geotiff(task.class_path)
    if score_window != window or class_window != window:
        raise ValueError(f"{task.commune}: score/class rasters are not on the commune window {window.bounds}")
    stack = read_coverage_stack(task.factors, window)
    names = [f.slug for f in task.factors]
    top_index, top_pct, labels = top_factors(stack, names, k=task.top_k, groups=task.top_groups)
    metas = meta_sums(stack, task.meta_index)
    blocking_idx = [i for i, f in enumerate(task.factors) if f.blocking]
    rows, cols = np.nonzero(inside)
    xs, ys = window.cell_centres()
    label_array = np.array(labels + [None], dtype=object)

    columns: dict[str, object] = {
        "cell_id": pa.array(window.cell_ids()[rows, cols], pa.int64()),
        "commune": pa.array(np.full(len(rows), task.commune, dtype=object), pa.string()),
    }
    if task.iris:
        iris = _owner_codes(task.iris["path"], task.iris["code_field"], task.iris["codes"], window)
        columns["iris"] = pa.array(iris[rows, cols], pa.string())
    else:
        columns["iris"] = pa.nulls(len(rows), pa.string())
    columns["x"] = pa.array(xs[rows, cols], pa.float64())
    columns["y"] = pa.array(ys[rows, cols], pa.float64())
    columns["score"] = pa.array(score[rows, cols], pa.float32())
    columns["class"] = pa.array(classes[rows, cols], pa.uint8())
    blocked = np.zeros(window.shape, dtype=bool)
    first_blocking = np.full(window.shape, len(task.factors), dtype=np.int16)
    for i in reversed(blocking_idx):
        hit = stack[i] > 0
        blocked |= hit
        first_blocking[hit] = i
    columns["blocked"] = pa.array(blocked[rows, cols], pa.bool_())
    factor_names = np.array(names + [None], dtype=object)
    columns["blocking_factor"] = pa.array(factor_names[first_blocking[rows, cols]], pa.string())
    for k in range(task.top_k):
        idx = top_index[k][rows, cols]
        columns[f"top{k + 1}"] = pa.array(label_array[np.where(idx < 0, len(labels), idx)], pa.string())
        pct = top_pct[k][rows, cols]
        columns[f"top{k + 1}_pct"] = pa.array(pct, pa.uint16(), mask=idx < 0)
    for slug, values in metas.items():
        columns[f"meta_{slug}"] = pa.array(values[rows, cols], pa.uint16())
    for slug, path in task.display_footprints.items():
        columns[f"in_{slug}"] = pa.array(_centre_in(path, window)[rows, cols], pa.bool_())
    columns["run_id"] = pa.array(np.full(len(rows), task.run_id, dtype=object), pa.string())

    table = pa.table(columns)
    geometry = gpd.points_from_xy(xs[rows, cols], ys[rows, cols], crs="EPSG:2154")
    table = _with_geoparquet_geometry(table, geometry)
    out = Path(task.out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=250_000)
    return {"commune": task.commune, "rows": int(len(rows)), "path": str(out)}


def _centre_in(footprint_path: str, window: Window) -> np.ndarray:
    """Cells whose centre lies in a display-only footprint (e.g. QPV), at the cell resolution."""
    polygons = gpd.read_parquet(footprint_path).geometry.values
    if not len(polygons):
        return np.zeros(window.shape, dtype=bool)
    return cell_owner(list(polygons), window) >= 0


def _with_geoparquet_geometry(table: pa.Table, geometry) -> pa.Table:
    """Append a WKB point geometry column with GeoParquet 1.1 metadata (points, EPSG:2154, bbox)."""
    import shapely
    from pyproj import CRS

    wkb = shapely.to_wkb(np.asarray(geometry), output_dimension=2)
    table = table.append_column("geometry", pa.array(wkb, pa.binary()))
    meta = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                 "crs": json.loads(CRS.from_epsg(2154).to_json())}},
    }
    metadata = dict(table.schema.metadata or {})
    metadata[b"geo"] = json.dumps(meta).encode()
    return table.replace_schema_metadata(metadata)


def run_class_polygons(class_path: str) -> list[tuple[int, bytes]]:
    """The class polygons of one commune, dissolved per class, as (class, WKB)."""
    import shapely

    from ..geo.vectorise import class_polygons

    classes, window, _ = read_geotiff(class_path)
    return [(int(cls), shapely.to_wkb(geometry)) for cls, geometry in class_polygons(classes, window, nodata=CLASS_NODATA)]
