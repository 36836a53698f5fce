"""The territory grid: 5 m cells on the absolute Lambert-93 lattice (DESIGN.md §2, "The grid").

Every window (a commune, its halo, the whole territory) is a rectangle of whole cells whose corners are
whole multiples of the cell size, so any two windows of the same cell size line up exactly and mosaic
without resampling. Fix of reference defect #14: the origin is never the raw float corner of a bounding
box, and the east/south edges are rounded outwards, never truncated by int().

Coordinates are metres in EPSG:2154. Arrays are row-major, row 0 at the north (top) edge.

Global cell id (stable across windows and runs): for the cell whose lower-left corner is (x, y),
    ix = floor(x / cell), iy = floor(y / cell), id = ix * 10_000_000 + iy     (int64)
Lambert-93 y stays below 7.3e6 m, so iy < 1.5e6 < 10_000_000 at 5 m and ids never collide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from affine import Affine
from rasterio.features import rasterize

from .crs import PLATFORM_CRS  # noqa: F401 - re-exported: the grid's CRS

CELL_M = 5.0
CELL_ID_FACTOR = 10_000_000
# Tolerance, in cells, when checking that a coordinate sits on the lattice (absorbs float noise only).
_LATTICE_EPS = 1e-6


def _lattice_index(value: float, cell: float, what: str) -> int:
    """Integer k with value == k * cell (within float noise), or ValueError."""
    k = round(value / cell)
    if abs(value / cell - k) > _LATTICE_EPS:
        raise ValueError(f"{what}={value!r} is not a whole multiple of the cell size {cell!r} m")
    return int(k)


@dataclass(frozen=True)
class Window:
    """A rectangle of whole grid cells.

    xmin, ymax: top-left corner in metres (EPSG:2154), whole multiples of `cell`.
    width, height: size in cells. cell: cell size in metres (5.0 for the platform grid).
    """

    xmin: float
    ymax: float
    width: int
    height: int
    cell: float = CELL_M

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", float(self.cell))
        if self.cell <= 0:
            raise ValueError(f"cell size must be > 0, got {self.cell!r}")
        if self.width < 0 or self.height < 0:
            raise ValueError(f"window size must be >= 0 cells, got {self.width} x {self.height}")
        # Store the exact lattice multiples so xmin/ymax carry no accumulated float noise.
        object.__setattr__(self, "xmin", _lattice_index(self.xmin, self.cell, "xmin") * self.cell)
        object.__setattr__(self, "ymax", _lattice_index(self.ymax, self.cell, "ymax") * self.cell)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # -- geometry ------------------------------------------------------------------------------
    @property
    def xmax(self) -> float:
        return self.xmin + self.width * self.cell

    @property
    def ymin(self) -> float:
        return self.ymax - self.height * self.cell

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in metres."""
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in cells, the shape of a 2-D array on this window."""
        return (self.height, self.width)

    @property
    def transform(self) -> Affine:
        return Affine(self.cell, 0.0, self.xmin, 0.0, -self.cell, self.ymax)

    def subpixel_transform(self, sub: float = 1.0) -> Affine:
        """Transform of the fine raster (sub-pixels of `sub` metres) covering the same window."""
        return Affine(sub, 0.0, self.xmin, 0.0, -sub, self.ymax)

    def subdivision(self, sub: float = 1.0) -> int:
        """How many sub-pixels of `sub` metres fit along one cell edge (must be a whole number)."""
        k = self.cell / sub
        if sub <= 0 or abs(k - round(k)) > 1e-9 or round(k) < 1:
            raise ValueError(f"sub-pixel size {sub!r} m does not divide the cell size {self.cell!r} m")
        return int(round(k))

    # -- per-cell arrays -----------------------------------------------------------------------
    @property
    def _ix0(self) -> int:
        return int(round(self.xmin / self.cell))

    @property
    def _iy_top(self) -> int:
        """Lattice row index (floor(y_bottom / cell)) of the window's first (northern) row."""
        return int(round(self.ymax / self.cell)) - 1

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every cell centre, two float64 arrays of shape (height, width)."""
        xs = self.xmin + (np.arange(self.width, dtype=np.float64) + 0.5) * self.cell
        ys = self.ymax - (np.arange(self.height, dtype=np.float64) + 0.5) * self.cell
        return np.broadcast_to(xs, self.shape).copy(), np.broadcast_to(ys[:, None], self.shape).copy()

    def cell_ids(self) -> np.ndarray:
        """Global cell ids (see module doc), int64 array of shape (height, width)."""
        ix = self._ix0 + np.arange(self.width, dtype=np.int64)
        iy = self._iy_top - np.arange(self.height, dtype=np.int64)
        return ix[None, :] * CELL_ID_FACTOR + iy[:, None]

    # -- relations between windows ---------------------------------------------------------------
    def offset_in(self, other: "Window") -> tuple[int, int]:
        """(row_off, col_off) of this window's top-left cell in `other`'s array (may be negative).

        Raises ValueError when the two windows are not on the same lattice.
        """
        if not math.isclose(self.cell, other.cell, rel_tol=0, abs_tol=1e-9):
            raise ValueError(f"cell sizes differ: {self.cell!r} m vs {other.cell!r} m")
        row_off = _lattice_index(other.ymax - self.ymax, self.cell, "row offset (m)")
        col_off = _lattice_index(self.xmin - other.xmin, self.cell, "column offset (m)")
        return row_off, col_off

    def slices_in(self, other: "Window") -> tuple[slice, slice]:
        """Row and column slices of `other`'s array covered by this window (which must lie inside it)."""
        row_off, col_off = self.offset_in(other)
        if row_off < 0 or col_off < 0 or row_off + self.height > other.height or col_off + self.width > other.width:
            raise ValueError(f"window {self.bounds} is not inside window {other.bounds}")
        return slice(row_off, row_off + self.height), slice(col_off, col_off + self.width)

    def contains_window(self, other: "Window") -> bool:
        try:
            other.slices_in(self)
        except ValueError:
            return False
        return True

    def tiles(self, size: int) -> list[tuple[slice, slice, "Window"]]:
        """Split into tiles of at most size x size cells: (row slice, col slice, tile window) in this array."""
        out = []
        for r0 in range(0, self.height, size):
            for c0 in range(0, self.width, size):
                h = min(size, self.height - r0)
                w = min(size, self.width - c0)
                tile = Window(self.xmin + c0 * self.cell, self.ymax - r0 * self.cell, w, h, self.cell)
                out.append((slice(r0, r0 + h), slice(c0, c0 + w), tile))
        return out

    @classmethod
    def from_transform(cls, transform: Affine, width: int, height: int) -> "Window":
        """The window of a north-up raster with square cells (e.g. read from a GeoTIFF)."""
        if transform.b != 0 or transform.d != 0 or transform.a <= 0 or not math.isclose(
            transform.e, -transform.a, rel_tol=1e-12
        ):
            raise ValueError(f"not a north-up grid with square cells: {tuple(transform)[:6]}")
        return cls(transform.c, transform.f, width, height, transform.a)


def snap_bounds(bounds: Sequence[float], cell: float = CELL_M) -> tuple[float, float, float, float]:
    """Round (minx, miny, maxx, maxy) outwards to whole multiples of `cell` metres.

    Fix of reference defect #14. An empty extent (a point, or a line on a lattice line) still gets one
    cell, so a window is never zero-sized.
    """
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx > maxx or miny > maxy:
        raise ValueError(f"invalid bounds {tuple(bounds)!r}: expected finite (minx, miny, maxx, maxy)")

    def down(v: float) -> float:
        k = v / cell
        r = round(k)
        return (r if abs(k - r) <= _LATTICE_EPS else math.floor(k)) * cell

    def up(v: float) -> float:
        k = v / cell
        r = round(k)
        return (r if abs(k - r) <= _LATTICE_EPS else math.ceil(k)) * cell

    sminx, sminy, smaxx, smaxy = down(minx), down(miny), up(maxx), up(maxy)
    if smaxx <= sminx:
        smaxx = sminx + cell
    if smaxy <= sminy:
        smaxy = sminy + cell
    return (sminx, sminy, smaxx, smaxy)


def window_for_bounds(bounds: Sequence[float], cell: float = CELL_M, halo_m: float = 0.0) -> Window:
    """Smallest lattice window containing `bounds` expanded by `halo_m` metres on every side."""
    if halo_m < 0:
        raise ValueError(f"halo_m must be >= 0, got {halo_m!r}")
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    minx, miny, maxx, maxy = snap_bounds((minx - halo_m, miny - halo_m, maxx + halo_m, maxy + halo_m), cell)
    return Window(minx, maxy, int(round((maxx - minx) / cell)), int(round((maxy - miny) / cell)), cell)


def cell_id_to_xy(ids, cell: float = CELL_M, centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the global cell id: lower-left corner (x, y) in metres, or the centre if `centre`."""
    ids = np.asarray(ids, dtype=np.int64)
    ix = np.floor_divide(ids, CELL_ID_FACTOR)
    iy = ids - ix * CELL_ID_FACTOR
    shift = 0.5 * cell if centre else 0.0
    return ix * cell + shift, iy * cell + shift


def xy_to_cell_id(x, y, cell: float = CELL_M) -> np.ndarray:
    """Global id of the cell containing point(s) (x, y) (a point on a west/south edge belongs to that cell)."""
    ix = np.floor(np.asarray(x, dtype=np.float64) / cell).astype(np.int64)
    iy = np.floor(np.asarray(y, dtype=np.float64) / cell).astype(np.int64)
    return ix * CELL_ID_FACTOR + iy


def cell_owner(commune_geoms: Sequence, window: Window) -> np.ndarray:
    """Which commune owns each cell: int32 (height, width), index into `commune_geoms`, -1 for none.

    A cell belongs to the commune containing its centre (5 m rasterisation, all_touched=False). Where
    communes overlap (or both claim a centre lying exactly on their shared border), the first in the
    given order wins (the caller sorts by INSEE code), so every cell has at most one owner and commune
    mosaics are seamless.
    """
    if len(commune_geoms) >= np.iinfo(np.int32).max:
        raise ValueError("too many communes for an int32 owner index")
    if window.width == 0 or window.height == 0:
        return np.full(window.shape, -1, dtype=np.int32)
    # rasterize() burns in order, later shapes overwriting earlier ones: feed them last-to-first.
    shapes = [
        (geom, index)
        for index, geom in reversed(list(enumerate(commune_geoms)))
        if geom is not None and not geom.is_empty
    ]
    if not shapes:
        return np.full(window.shape, -1, dtype=np.int32)
    return rasterize(
        shapes, out_shape=window.shape, transform=window.transform, fill=-1, all_touched=False, dtype="int32"
    )


def owned_cell_counts(geoms: Sequence, codes: Sequence[str], window: Window, tile: int = 2048) -> dict[str, int]:
    """Cells of `window` whose centre lies in each unit (first unit in code order wins), tile by tile."""
    counts = dict.fromkeys(codes, 0)
    for _rows, _cols, part in window.tiles(tile):
        owner = cell_owner(list(geoms), part)
        values, n = np.unique(owner[owner >= 0], return_counts=True)
        for v, c in zip(values, n):
            counts[codes[v]] += int(c)
    return counts
