"""Per-commune work for the score assets (no Dagster): score, classes and tiles of one commune.

Writes, through the store: the score (float32 GeoTIFF, nodata -9999 outside the commune) and its record
(what the run used: weights, blocking, class breaks, code and source versions, and the outputs' hashes),
the classes (uint8, 255 outside), and the tiles (GeoParquet, one cell-centre point per cell). Each output is
also kept in the score history under the run id (hard links: no copy), with the coverages the score read
(one multi-band file per commune, so that explaining a cell opens one file, not one per factor).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa

from ..geo.coverage import COVERAGE_NODATA
from ..geo.grid import Window, cell_owner
from ..geo.preview import sample_on_lattice
from ..geo.score import CLASS_NODATA, SCORE_NODATA, classify, factor_stats, meta_sums, score_cells, top_factors
from ..store import Store, write_json
from ..store.geoparquet import TILES_ROW_GROUP, with_point_geometry, write_tiles
from ..store.history import COVERAGE_BLOCK
from ..store.rasters import read_geotiff, read_tags, write_geotiff
from .constraints import CommuneLayer, commune_mask


@dataclass(frozen=True)
class FactorInput:
    slug: str
    label: str
    weight: float
    blocking: bool
    meta: str


@dataclass
class ScoreTask:
    commune: str
    window: Window
    factors: list[FactorInput]
    communes: CommuneLayer
    store: Store
    blocked_score: float
    run_id: str = ""
    record: dict = field(default_factory=dict)  # what the run used (see assets/score.py); outputs are added
    class_breaks: list = field(default_factory=list)
    class_above: int = 10
    preview: tuple | None = None  # (extent Window, step): return a class sample for the run's preview


@dataclass
class ClassTask:
    commune: str
    store: Store
    class_breaks: list[tuple[float, int]]
    class_above: int
    run_id: str = ""


@dataclass
class TilesTask:
    commune: str
    window: Window
    factors: list[FactorInput]
    store: Store
    communes: CommuneLayer
    meta_index: dict[str, list[int]]
    top_groups: dict[str, list[int]]
    top_k: int
    run_id: str
    iris: dict | None = None  # {"path": parquet, "codes": [...], "code_field": str}
    display_footprints: dict[str, str] = field(default_factory=dict)  # slug -> footprint parquet


def read_coverage_stack(paths: list[Path], window: Window) -> np.ndarray:
    stack = np.zeros((len(paths), window.height, window.width), dtype=np.uint8)
    for i, path in enumerate(paths):
        array, part_window, _ = read_geotiff(path)
        if part_window != window:
            raise ValueError(f"{path}: window {part_window.bounds} is not the commune window {window.bounds}")
        stack[i] = np.where(array == COVERAGE_NODATA, 0, array)
    return stack


def coverage_paths(store: Store, factors: list[FactorInput], commune: str) -> list[Path]:
    return [store.coverage(f.slug, commune) for f in factors]


def _array_sha(array: np.ndarray, window: Window) -> str:
    return hashlib.sha256(array.tobytes() + repr(window.bounds).encode()).hexdigest()


def run_score(task: ScoreTask) -> dict:
    coverages = coverage_paths(task.store, task.factors, task.commune)
    stack = read_coverage_stack(coverages, task.window)
    valid = commune_mask(task.communes, task.commune, task.window)
    weights = [f.weight for f in task.factors]
    blocking = [f.blocking for f in task.factors]
    result = score_cells(stack, weights, blocking, valid, blocked_score=task.blocked_score, nodata=SCORE_NODATA)
    score_path = task.store.score(task.commune)
    write_geotiff(score_path, result.score, task.window, nodata=SCORE_NODATA)
    stats = factor_stats(stack, weights, result.blocked, valid, cell_area_m2=task.window.cell ** 2)
    scores = result.score[valid]
    outputs = {
        "cells": int(valid.sum()),
        "blocked_cells": int((result.blocked & valid).sum()),
        "score_min": float(scores.min()) if scores.size else None,
        "score_max": float(scores.max()) if scores.size else None,
        "score_mean": float(scores.mean(dtype=np.float64)) if scores.size else None,
        "nodata_inside": int((result.score[valid] == SCORE_NODATA).sum()),
        "score_sha256": _array_sha(result.score, task.window),
    }
    record = {**task.record, "commune": task.commune, "run_id": task.run_id, "outputs": outputs}
    record["factor_stats"] = [{"slug": f.slug, **s} for f, s in zip(task.factors, stats)]
    write_json(task.store.score_record(task.commune), record, indent=1)
    history = task.store.history
    history.keep(task.run_id, task.commune, "score", score_path)
    history.keep(task.run_id, task.commune, "record", task.store.score_record(task.commune))
    if task.run_id:
        write_geotiff(history.entry_path(task.run_id, task.commune, "coverages"), stack, task.window, nodata=None,
                      compress="zstd", band_names=[f.slug for f in task.factors], block=COVERAGE_BLOCK)
    if task.preview is not None:
        extent, step = task.preview
        classes = classify(result.score, task.class_breaks, task.class_above, nodata_in=SCORE_NODATA,
                           nodata_out=CLASS_NODATA)
        record["preview"] = sample_on_lattice(classes, task.window, extent, step)
    return record


def run_class(task: ClassTask) -> dict:
    """Classes of one commune, and their transitions from the classes it had before (the score_diff)."""
    from ..geo.diff import class_transitions

    score, window, _ = read_geotiff(task.store.score(task.commune))
    classes = classify(score, task.class_breaks, task.class_above, nodata_in=SCORE_NODATA, nodata_out=CLASS_NODATA)
    class_path = task.store.classes(task.commune)
    before, from_run = None, None
    if class_path.exists():
        previous, previous_window, _ = read_geotiff(class_path)
        if previous_window == window:
            before, from_run = previous, read_tags(class_path).get("run_id") or None
    write_geotiff(class_path, classes, window, nodata=CLASS_NODATA, tags={"run_id": task.run_id})
    task.store.history.keep(task.run_id, task.commune, "classes", class_path)
    valid = sorted({c for _, c in task.class_breaks} | {task.class_above})
    if before is None:
        before = np.full(classes.shape, CLASS_NODATA, dtype=classes.dtype)
    transitions = class_transitions(before, classes, valid, CLASS_NODATA)
    inside = score != SCORE_NODATA
    values, counts = np.unique(classes[inside], return_counts=True)
    return {
        "commune": task.commune,
        "counts": {int(v): int(c) for v, c in zip(values, counts)},
        "nodata_inside": int((classes[inside] == CLASS_NODATA).sum()),
        "class_sha256": _array_sha(classes, window),
        "from_run": from_run,
        "transitions": transitions_rows(transitions),
    }


def transitions_rows(transitions) -> list[dict]:
    """from/to class cell counts; a None class is a cell unscored on that side."""
    rows = [{"from_class": r["from_class"], "to_class": r["to_class"], "cells": r["cells"]} for r in transitions.as_rows()]
    rows += [{"from_class": None, "to_class": c, "cells": n} for c, n in transitions.appeared.items() if n]
    rows += [{"from_class": c, "to_class": None, "cells": n} for c, n in transitions.disappeared.items() if n]
    return rows


# ------------------------------------------------------------------------------------------------
def _owner_codes(layer_path: str, code_field: str, codes: list[str], window: Window) -> np.ndarray:
    """Per cell of the window, the index in `codes` of the polygon owning it (-1 for none)."""
    frame = gpd.read_parquet(layer_path)
    by_code = dict(zip(frame[code_field].astype(str), frame.geometry.values))
    return cell_owner([by_code[c] for c in codes], window)


def run_tiles(task: TilesTask) -> dict:
    """Write the commune's tiles GeoParquet: one row per owned cell, in row-group slices (the window-sized
    rasters are read once; the Arrow columns exist for one slice at a time, so a task's memory does not
    grow with the commune's number of cells)."""
    window = task.window
    inside = commune_mask(task.communes, task.commune, window)
    score, score_window, _ = read_geotiff(task.store.score(task.commune))
    classes, class_window, _ = read_geotiff(task.store.classes(task.commune))
    if score_window != window or class_window != window:
        raise ValueError(f"{task.commune}: score/class rasters are not on the commune window {window.bounds}")
    stack = read_coverage_stack(coverage_paths(task.store, task.factors, task.commune), window)
    names = [f.slug for f in task.factors]
    top_index, top_pct, labels = top_factors(stack, names, k=task.top_k, groups=task.top_groups)
    metas = meta_sums(stack, task.meta_index)
    first_blocking = np.full(window.shape, len(task.factors), dtype=np.int16)
    for i in reversed([i for i, f in enumerate(task.factors) if f.blocking]):
        first_blocking[stack[i] > 0] = i
    del stack
    iris_owner = iris_codes = None
    if task.iris:
        iris_codes = pa.array(task.iris["codes"] + [None], pa.string())
        iris_owner = _owner_codes(task.iris["path"], task.iris["code_field"], task.iris["codes"], window)
    display = {slug: _centre_in(path, window) for slug, path in task.display_footprints.items()}
    flat = np.flatnonzero(inside.reshape(-1))
    xs, ys = window.cell_centres()
    cell_ids = window.cell_ids()
    # strings taken from small Arrow dictionaries: no Python object per cell
    label_strings = pa.array(labels + [None], pa.string())
    factor_names = pa.array(names + [None], pa.string())
    commune, run_id = pa.scalar(task.commune, pa.string()), pa.scalar(task.run_id, pa.string())

    def columns(at: np.ndarray) -> pa.Table:
        """The rows of the cells at these flat indices of the window."""
        n = len(at)
        out: dict[str, object] = {
            "cell_id": pa.array(cell_ids.reshape(-1)[at], pa.int64()),
            "commune": pa.repeat(commune, n),
        }
        if iris_owner is not None:
            owner = iris_owner.reshape(-1)[at]
            out["iris"] = iris_codes.take(pa.array(np.where(owner < 0, len(iris_codes) - 1, owner)))
        else:
            out["iris"] = pa.nulls(n, pa.string())
        x, y = xs.reshape(-1)[at], ys.reshape(-1)[at]
        out["x"] = pa.array(x, pa.float64())
        out["y"] = pa.array(y, pa.float64())
        out["score"] = pa.array(score.reshape(-1)[at], pa.float32())
        out["class"] = pa.array(classes.reshape(-1)[at], pa.uint8())
        blocking = first_blocking.reshape(-1)[at]
        out["blocked"] = pa.array(blocking < len(task.factors), pa.bool_())
        out["blocking_factor"] = factor_names.take(pa.array(blocking))
        for k in range(task.top_k):
            idx = top_index[k].reshape(-1)[at]
            out[f"top{k + 1}"] = label_strings.take(pa.array(np.where(idx < 0, len(labels), idx)))
            out[f"top{k + 1}_pct"] = pa.array(top_pct[k].reshape(-1)[at], pa.uint16(), mask=idx < 0)
        for slug, values in metas.items():
            out[f"meta_{slug}"] = pa.array(values.reshape(-1)[at], pa.uint16())
        for slug, centre_in in display.items():
            out[f"in_{slug}"] = pa.array(centre_in.reshape(-1)[at], pa.bool_())
        out["run_id"] = pa.repeat(run_id, n)
        return with_point_geometry(pa.table(out), x, y)

    out = task.store.tiles(task.commune)
    write_tiles(out, (columns(flat[i:i + TILES_ROW_GROUP]) for i in range(0, max(len(flat), 1), TILES_ROW_GROUP)))
    task.store.history.keep(task.run_id, task.commune, "tiles", out)
    return {"commune": task.commune, "rows": int(len(flat)), "path": str(out)}


def _centre_in(footprint_path: str, window: Window) -> np.ndarray:
    """Cells whose centre lies in a display-only footprint (e.g. QPV), at the cell resolution."""
    polygons = gpd.read_parquet(footprint_path).geometry.values
    if not len(polygons):
        return np.zeros(window.shape, dtype=bool)
    return cell_owner(list(polygons), window) >= 0


def run_class_polygons(class_path: Path) -> list[tuple[int, bytes]]:
    """The class polygons of one commune, dissolved per class, as (class, WKB)."""
    import shapely

    from ..geo.vectorise import class_polygons

    classes, window, _ = read_geotiff(class_path)
    return [(int(cls), shapely.to_wkb(geometry)) for cls, geometry in class_polygons(classes, window, nodata=CLASS_NODATA)]
