"""Helpers shared by the geo tests (a uniquely named module, importable from any test file here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from iarbre_assets.geo.coverage import block_count, percent_step
from iarbre_assets.geo.footprint import polygonal_parts
from iarbre_assets.geo.grid import Window

REPO = Path(__file__).resolve().parents[2]
# A lattice corner near Lyon (multiples of 5 m), so tests use realistic Lambert-93 magnitudes.
X0, Y0 = 842_000.0, 6_519_000.0


def window_at(col0: int, row0: int, width: int, height: int) -> Window:
    """A window whose top-left corner is `col0` cells east and `row0` cells north of (X0, Y0)."""
    return Window(X0 + 5 * col0, Y0 + 5 * row0, width, height)


def coverage_bruteforce(polygons, window: Window, subpixel: float = 1.0) -> np.ndarray:
    """Point-in-polygon of every sub-pixel centre, then the share per cell in percent (slow, obvious)."""
    k, step = percent_step(window, subpixel)
    xs = window.xmin + (np.arange(window.width * k) + 0.5) * subpixel
    ys = window.ymax - (np.arange(window.height * k) + 0.5) * subpixel
    gx, gy = np.meshgrid(xs, ys)
    inside = np.zeros(gx.shape, dtype=bool)
    for poly in polygonal_parts(polygons):
        inside |= shapely.contains_xy(poly, gx, gy)
    return (block_count(inside.astype(np.uint8), k) * step).astype(np.uint8)


def random_polygons(rng: np.random.Generator, window: Window, n: int) -> np.ndarray:
    """Star-shaped polygons (3-30 vertices, 1-40 m radius), some with holes, some crossing the window edge."""
    polys = []
    for i in range(n):
        cx = rng.uniform(window.xmin - 10, window.xmax + 10)
        cy = rng.uniform(window.ymin - 10, window.ymax + 10)
        count = int(rng.integers(3, 30))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(1, 40, count)
        poly = shapely.Polygon(np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))
        if i % 4 == 0:
            poly = poly.difference(shapely.Point(cx, cy).buffer(rng.uniform(1, 6)))
        polys.append(poly)
    return np.array(polys, dtype=object)
