"""The reference recipe, re-implemented from the published description (plantability-method.md §2.1-2.3),
as the baseline for benchmarks and for the tests that show its defects. NOT used by the platform.

Written from the description only, with its defects on purpose:
* one grid over the whole territory bounding box, origin at the raw float corner (minx, maxy), sizes
  truncated with int() (defect #14);
* each factor rasterised at 1 m over the WHOLE territory (a territory-wide 1 m array per factor);
* 5x5 sum by a centred convolution (scipy.ndimage.convolve, ones(5, 5), mode="constant") sampled every
  5th pixel -> the layer shifts 2 m east and 2 m south (defect #12);
* percent = (x / 25 * 100) cast to int8, stored as uint8.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """Same as rasterio.transform.from_origin (north-up grid with its top-left corner at west, north)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def reference_coverage(polygons, territory_bounds) -> tuple[np.ndarray, object]:
    """(uint8 percent array on the reference 5 m grid, its affine transform)."""
    minx, miny, maxx, maxy = territory_bounds
    width, height = int((maxx - minx) / 1), int((maxy - miny) / 1)
    width_out, height_out = int((maxx - minx) / 5), int((maxy - miny) / 5)
    fine = np.zeros((height, width), dtype=np.uint8)
    geoms = [g for g in polygons if g is not None and not g.is_empty]
    if geoms:
        fine = rasterize(
            [(g, 1) for g in geoms], out_shape=(height, width), transform=from_origin(minx, maxy, 1, 1),
            fill=0, default_value=1, dtype="uint8",
        )
    summed = ndimage.convolve(fine, np.ones((5, 5), dtype=np.uint8), mode="constant", cval=0)
    coarse = summed[0 : height_out * 5 : 5, 0 : width_out * 5 : 5]
    percent = (coarse / 25 * 100).astype(np.int8).astype(np.uint8)
    return percent, from_origin(minx, maxy, 5, 5)


def reference_score(coverages, weights, blocking) -> np.ndarray:
    """float32 score: -5 where any blocking factor is > 0, else sum of w * pct / 100 (no nodata mask)."""
    coverages = [np.asarray(c) for c in coverages]
    blocked = np.zeros(coverages[0].shape, dtype=bool)
    for pct, is_blocking in zip(coverages, blocking):
        if is_blocking:
            blocked |= pct > 0
    result = np.zeros(coverages[0].shape, dtype=np.float32)
    for pct, weight, is_blocking in zip(coverages, weights, blocking):
        if not is_blocking:
            result[~blocked] += weight * pct[~blocked] / 100
    result[blocked] = -5.0
    return result
