"""GeoTIFF input/output on the territory grid: per-commune parts and the territory mosaic (COG).

Writes are atomic (temporary sibling, then rename), tiled, deflate-compressed, with an explicit CRS.
Every raster is on the lattice of grid.Window: parts mosaic by pasting, never by resampling.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.windows import Window as RioWindow

from ..geo.grid import PLATFORM_CRS as DEFAULT_CRS
from ..geo.grid import Window
from .files import atomic_path

BLOCK = 256


def _as_bands(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3:
        return array
    raise ValueError(f"expected a (height, width) or (bands, height, width) array, got shape {array.shape}")


def _predictor(dtype: np.dtype) -> int:
    return 3 if np.issubdtype(dtype, np.floating) else 2


def _is_nodata(values: np.ndarray, nodata) -> np.ndarray:
    if nodata is None:
        return np.zeros(values.shape, dtype=bool)
    if isinstance(nodata, float) and np.isnan(nodata):
        return np.isnan(values)
    return values == nodata


def _tiled_profile(window: Window, count: int, dtype, crs: str, nodata, **options) -> dict:
    """A tiled GeoTIFF profile on `window` (BigTIFF when needed), plus creation `options`."""
    return {
        "driver": "GTiff",
        "width": window.width,
        "height": window.height,
        "count": count,
        "dtype": np.dtype(dtype).name,
        "crs": CRS.from_user_input(crs),
        "transform": window.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "BIGTIFF": "IF_SAFER",
        **options,
    }


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    window: Window,
    nodata: float | int | None,
    crs: str = DEFAULT_CRS,
    compress: str = "deflate",
    tags: dict | None = None,
    band_names: list[str] | None = None,
    block: int = BLOCK,
) -> Path:
    """Write a (H, W) or (bands, H, W) array on `window` as a tiled GeoTIFF, atomically. Returns the path.

    `band_names` become the band descriptions; several bands are pixel-interleaved, so one block read gives
    every band of a cell (a small `block` keeps that read cheap)."""
    path = Path(path)
    bands = _as_bands(array)
    if bands.shape[1:] != window.shape:
        raise ValueError(f"{path}: array shape {bands.shape[1:]} does not match window shape {window.shape}")
    if band_names is not None and len(band_names) != bands.shape[0]:
        raise ValueError(f"{path}: {len(band_names)} band names for {bands.shape[0]} bands")
    profile = _tiled_profile(window, bands.shape[0], bands.dtype, crs, nodata, compress=compress,
                             predictor=_predictor(bands.dtype), blockxsize=block, blockysize=block)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(bands)
            for index, name in enumerate(band_names or [], start=1):
                dst.set_band_description(index, name)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return path


def read_band_names(path: str | Path) -> list[str | None]:
    with rasterio.open(path) as src:
        return list(src.descriptions)


def read_window(path: str | Path, crs: str | None = DEFAULT_CRS) -> tuple[Window, object, int, np.dtype]:
    """(Window, nodata, band count, dtype) of a GeoTIFF, checking it is on a grid lattice and in `crs`."""
    path = Path(path)
    with rasterio.open(path) as src:
        if crs is not None and (src.crs is None or src.crs != CRS.from_user_input(crs)):
            raise ValueError(f"{path}: CRS is {src.crs}, expected {crs}")
        try:
            window = Window.from_transform(src.transform, src.width, src.height)
        except ValueError as exc:
            raise ValueError(f"{path}: not on the platform grid: {exc}") from None
        return window, src.nodata, src.count, np.dtype(src.dtypes[0])


def read_tags(path: str | Path) -> dict:
    with rasterio.open(path) as src:
        return dict(src.tags())


def read_geotiff(path: str | Path, crs: str | None = DEFAULT_CRS) -> tuple[np.ndarray, Window, object]:
    """(array, Window, nodata): a 1-band file gives a (H, W) array, otherwise (bands, H, W)."""
    window, nodata, count, _ = read_window(path, crs)
    with rasterio.open(path) as src:
        array = src.read()
    return (array[0] if count == 1 else array), window, nodata


def mosaic_to_cog(
    parts: Sequence[str | Path],
    window: Window,
    out_path: str | Path,
    dtype,
    nodata: float | int,
    crs: str = DEFAULT_CRS,
    resampling: str | None = None,
) -> dict:
    """Paste per-commune parts into the territory `window` and write a Cloud-Optimised GeoTIFF atomically.

    Only each part's valid (non-nodata) cells are pasted; memory holds one part at a time. Parts must be
    on the same lattice (same cell size, offsets in whole cells) and inside `window`, and no two parts may
    both have a valid value for the same cell — each is refused with an error naming the file.
    resampling: overview resampling; default "mode" for integer rasters (classes), "average" for floats.
    Returns {"parts": n, "valid_cells": n}.
    """
    out_path = Path(out_path)
    dtype = np.dtype(dtype)
    if nodata is None:
        raise ValueError(f"{out_path}: a mosaic needs a nodata value (cells no part covers)")
    if resampling is None:
        resampling = "average" if np.issubdtype(dtype, np.floating) else "mode"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    parts = [Path(p) for p in parts]
    band_count = read_window(parts[0], crs)[2] if parts else 1
    valid_cells = 0
    with tempfile.TemporaryDirectory(prefix=f".{out_path.stem}.mosaic-", dir=out_path.parent) as tmpdir:
        staging = Path(tmpdir) / "staging.tif"
        profile = _tiled_profile(window, band_count, dtype, crs, nodata)
        # Blocks never written read back as nodata, so the staging file needs no initial fill.
        with rasterio.open(staging, "w+", **profile) as dst:
            for part in parts:
                part_window, part_nodata, count, _ = read_window(part, crs)
                if count != band_count:
                    raise ValueError(f"{part}: {count} bands, the first part has {band_count}")
                try:
                    rows, cols = part_window.slices_in(window)
                except ValueError as exc:
                    raise ValueError(f"{part}: misaligned with the territory grid {window.bounds}: {exc}") from None
                with rasterio.open(part) as src:
                    values = src.read()
                rio_window = RioWindow(cols.start, rows.start, part_window.width, part_window.height)
                current = dst.read(window=rio_window)
                valid = ~_is_nodata(values, part_nodata)
                clash = valid & ~_is_nodata(current, nodata)
                if clash.any():
                    raise ValueError(
                        f"{part}: {int(clash.sum())} cells already have a value from another part "
                        "(overlapping commune parts: cell ownership must be exclusive)"
                    )
                current[valid] = values[valid].astype(dtype, copy=False)
                dst.write(current, window=rio_window)
                valid_cells += int(valid[0].sum())
        with atomic_path(out_path) as tmp:
            rasterio.shutil.copy(
                staging,
                tmp,
                driver="COG",
                COMPRESS="DEFLATE",
                PREDICTOR="YES",
                BLOCKSIZE=512,
                OVERVIEWS="AUTO",
                RESAMPLING=resampling.upper(),
                BIGTIFF="IF_SAFER",
            )
    return {"parts": len(parts), "valid_cells": valid_cells}
