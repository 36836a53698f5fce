"""Shared helpers of the synthetic territory generator: seeded random streams and vectorised shapes.

Everything here works on numpy arrays of coordinates or of shapely geometries (no per-feature loops).
"""

from __future__ import annotations

import zlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

CRS = "EPSG:2154"


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per (seed, stream name).

    One stream per layer or step means changing how one layer is drawn never shifts another one.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"synthetic generator: seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(stream.encode())])


def rotate_xy(x, y, angle, cx=0.0, cy=0.0):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = np.asarray(x) - cx, np.asarray(y) - cy
    return cx + dx * c - dy * s, cy + dx * s + dy * c


def rotate_geoms(geoms: np.ndarray, angles, cx, cy) -> np.ndarray:
    """Rotate each geometry by its own angle (radians) about its own centre point."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms.copy()
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    angles, cx, cy = (np.broadcast_to(np.asarray(v, dtype=float), (len(geoms),)) for v in (angles, cx, cy))
    x, y = rotate_xy(coords[:, 0], coords[:, 1], angles[index], cx[index], cy[index])
    return shapely.set_coordinates(geoms.copy(), np.column_stack([x, y]))


def _shape_polygons(cx, cy, local_x, local_y, angle) -> np.ndarray:
    """Polygons from local vertex offsets (n, k) rotated by `angle` and moved to (cx, cy)."""
    angle = np.asarray(angle, dtype=float)[:, None]
    c, s = np.cos(angle), np.sin(angle)
    x = np.asarray(cx, dtype=float)[:, None] + local_x * c - local_y * s
    y = np.asarray(cy, dtype=float)[:, None] + local_x * s + local_y * c
    if len(x) == 0:
        return np.empty(0, dtype=object)
    return shapely.polygons(np.stack([x, y], axis=-1))


def rect_polygons(cx, cy, w, h, angle) -> np.ndarray:
    """Rotated rectangles of width w (along the angle) and height h, centred on (cx, cy)."""
    w = np.asarray(w, dtype=float)[:, None]
    h = np.asarray(h, dtype=float)[:, None]
    ux = np.array([-0.5, 0.5, 0.5, -0.5, -0.5])[None, :]
    uy = np.array([-0.5, -0.5, 0.5, 0.5, -0.5])[None, :]
    return _shape_polygons(cx, cy, ux * w, uy * h, angle)


def l_polygons(cx, cy, w, h, angle, cut_w, cut_h) -> np.ndarray:
    """L-shaped polygons: the w×h rectangle without its (cut_w × cut_h) top-right corner."""
    w, h = np.asarray(w, dtype=float)[:, None], np.asarray(h, dtype=float)[:, None]
    cw, ch = np.asarray(cut_w, dtype=float)[:, None], np.asarray(cut_h, dtype=float)[:, None]
    lx = np.hstack([-w / 2, w / 2, w / 2, w / 2 - cw, w / 2 - cw, -w / 2, -w / 2])
    ly = np.hstack([-h / 2, -h / 2, h / 2 - ch, h / 2 - ch, h / 2, h / 2, -h / 2])
    return _shape_polygons(cx, cy, lx, ly, angle)


def ellipse_polygons(cx, cy, a, b, angle, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n + 1)
    t[-1] = 0.0
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[:, None]
    return _shape_polygons(cx, cy, a * np.cos(t)[None, :], b * np.sin(t)[None, :], angle)


def lattice(geoms: np.ndarray, angles, step_x, step_y, rng: np.random.Generator, max_points: int = 20_000_000,
            local: bool = False):
    """Centres of a rotated lattice over each geometry's bounding box (in the geometry's own frame).

    Returns (owner index, x, y), plus the centres in the rotated frame (rotation about the origin by
    -angle) when `local` is true. The lattice of geometry i is aligned with angles[i] and has a random
    phase, so neighbouring blocks do not line up artificially.
    """
    n = len(geoms)
    if n == 0:
        empty = np.empty(0)
        out = (np.empty(0, dtype=np.int64), empty, empty)
        return out + (empty, empty) if local else out
    angles = np.broadcast_to(np.asarray(angles, dtype=float), (n,))
    step_x = np.broadcast_to(np.asarray(step_x, dtype=float), (n,))
    step_y = np.broadcast_to(np.asarray(step_y, dtype=float), (n,))
    b = shapely.bounds(rotate_geoms(geoms, -angles, 0.0, 0.0))
    # +2 cells so that the random phase never leaves a strip of the box uncovered
    nx = np.floor((b[:, 2] - b[:, 0]) / step_x).astype(np.int64) + 2
    ny = np.floor((b[:, 3] - b[:, 1]) / step_y).astype(np.int64) + 2
    counts = nx * ny
    total = int(counts.sum())
    if total > max_points:
        raise ValueError(f"synthetic generator: lattice of {total} points is too large")
    owner = np.repeat(np.arange(n), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(total) - start
    ix, iy = k % nx[owner], k // nx[owner]
    phase_x = rng.uniform(0, 1, n)[owner] * step_x[owner]
    phase_y = rng.uniform(0, 1, n)[owner] * step_y[owner]
    lx = b[owner, 0] + (ix + 0.5) * step_x[owner] - phase_x
    ly = b[owner, 1] + (iy + 0.5) * step_y[owner] - phase_y
    x, y = rotate_xy(lx, ly, angles[owner])
    return (owner, x, y, lx, ly) if local else (owner, x, y)


def clip_cells(geoms: np.ndarray, angles, lx, ly, w, h) -> np.ndarray:
    """Each geometry cut by a rectangle that is axis-aligned in its rotated frame, back in the world frame.

    `geoms` and the per-row arrays are aligned (one cell per row); the cell is centred on (lx, ly) in the
    frame rotated by -angle about the origin. Rectangle clipping is several times faster than a general
    overlay, which matters for the 10^5 lots and plots of a metropole.
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms.copy()
    angles = np.broadcast_to(np.asarray(angles, dtype=float), (len(geoms),))
    local_geoms = rotate_geoms(geoms, -angles, 0.0, 0.0)
    x0, y0 = np.asarray(lx - w / 2, dtype=float), np.asarray(ly - h / 2, dtype=float)
    x1, y1 = np.asarray(lx + w / 2, dtype=float), np.asarray(ly + h / 2, dtype=float)
    try:
        clipped = shapely.lib.clip_by_rect(local_geoms, x0, y0, x1, y1)
    except TypeError:  # a shapely without the array form of the ufunc
        clipped = np.array([shapely.clip_by_rect(g, a, b, c, d) for g, a, b, c, d in zip(local_geoms, x0, y0, x1, y1)],
                           dtype=object)
    out = rotate_geoms(clipped, angles, 0.0, 0.0)
    bad = ~shapely.is_valid(out)
    if bad.any():  # rectangle clipping is fast but not guaranteed clean
        out[bad] = shapely.make_valid(out[bad])
    return out


def with_hole(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer minus inner, for an inner polygon lying inside outer: built directly as a polygon with a hole.

    Falls back to an overlay where the hole would touch the shell along an edge (invalid as a hole).
    """
    outer = np.asarray(outer, dtype=object)
    inner = np.asarray(inner, dtype=object)
    if len(outer) == 0:
        return outer.copy()
    simple = (shapely.get_type_id(outer) == 3) & (shapely.get_num_interior_rings(outer) == 0) & \
             (shapely.get_type_id(inner) == 3) & (shapely.get_num_interior_rings(inner) == 0)
    out = np.empty(len(outer), dtype=object)
    if simple.any():
        out[simple] = shapely.polygons(shapely.get_exterior_ring(outer[simple]),
                                       holes=shapely.get_exterior_ring(inner[simple])[:, None])
    redo = ~simple
    redo[simple] = ~shapely.is_valid(out[simple])
    if redo.any():
        out[redo] = shapely.difference(outer[redo], inner[redo])
    return out


def random_points_in(geom, n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniform random points inside a (multi)polygon (rejection sampling in its bounding box)."""
    minx, miny, maxx, maxy = geom.bounds
    shapely.prepare(geom)
    out = []
    got = 0
    ratio = max(geom.area / ((maxx - minx) * (maxy - miny)), 0.01)
    while got < n:
        m = int((n - got) / ratio * 1.3) + 16
        x = rng.uniform(minx, maxx, m)
        y = rng.uniform(miny, maxy, m)
        keep = shapely.contains_xy(geom, x, y)
        pts = np.column_stack([x[keep], y[keep]])
        out.append(pts)
        got += len(pts)
    return np.vstack(out)[:n]


def explode(geoms: np.ndarray, owner: np.ndarray | None = None):
    """Single parts of an array of geometries, with the index of the geometry each part came from."""
    geoms = np.asarray(geoms, dtype=object)
    parts, index = shapely.get_parts(geoms, return_index=True)
    if owner is not None:
        index = np.asarray(owner)[index]
    return parts, index


def ensure_values(values: np.ndarray, required, eligible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give each required value that does not appear at least one eligible row (every filter can match)."""
    values = np.asarray(values, dtype=object).copy()
    present = set(pd.unique(pd.Series(values)).tolist())
    missing = [v for v in required if v not in present]
    if not missing:
        return values
    candidates = np.flatnonzero(eligible)
    if len(candidates) < len(missing):
        candidates = np.arange(len(values))
    if len(candidates) < len(missing):
        raise ValueError(f"synthetic generator: {len(values)} rows cannot carry the values {missing}")
    chosen = rng.choice(candidates, size=len(missing), replace=False)
    for row, value in zip(np.sort(chosen), missing):
        values[row] = value
    return values


def frame(columns: dict, geometry, gid: bool = True) -> gpd.GeoDataFrame:
    """A GeoDataFrame in EPSG:2154 with `gid` 1..n first (WFS layers are paged sorted by gid)."""
    geometry = np.asarray(geometry, dtype=object)
    data = {}
    if gid:
        data["gid"] = np.arange(1, len(geometry) + 1, dtype=np.int64)
    data.update(columns)
    table = pd.DataFrame(data, index=pd.RangeIndex(len(geometry)))
    return gpd.GeoDataFrame(table, geometry=gpd.array.from_shapely(geometry, crs=CRS), crs=CRS)


def text_column(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object), dtype="str")


def null_text(n: int) -> pd.Series:
    return pd.Series([None] * n, dtype="object")
