"""A small palette PNG preview of a class raster (stdlib PNG writer: zlib + struct, no extra dependency)."""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    text = colour.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"colour {colour!r} is not #RRGGBB")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def downsample_mode(indices: np.ndarray, factor: int, n_values: int) -> np.ndarray:
    """Most frequent value of each factor x factor block (ties -> lowest value); edge blocks are partial."""
    if factor == 1:
        return indices
    h, w = indices.shape
    oh, ow = -(-h // factor), -(-w // factor)
    padded = np.full((oh * factor, ow * factor), n_values, dtype=np.uint8)  # n_values = padding, not counted
    padded[:h, :w] = indices
    blocks = padded.reshape(oh, factor, ow, factor)
    best = np.zeros((oh, ow), dtype=np.uint8)
    best_count = np.full((oh, ow), -1, dtype=np.int32)
    for value in range(n_values):
        count = (blocks == value).sum(axis=(1, 3), dtype=np.int32)
        better = count > best_count
        best[better] = value
        best_count[better] = count[better]
    return best


def class_preview_png(
    class_array: np.ndarray, colours: dict[int, str], nodata: int = 255, max_px: int = 512
) -> bytes:
    """PNG bytes: 8-bit palette image, nodata transparent, longer side <= max_px (mode downsampling).

    colours: {class code: "#RRGGBB"}. A cell whose class has no colour is an error (not silently blank).
    """
    class_array = np.asarray(class_array)
    if class_array.ndim != 2 or 0 in class_array.shape:
        raise ValueError(f"expected a non-empty 2-D class array, got shape {class_array.shape}")
    codes = sorted(int(c) for c in colours)
    # palette index 0 = transparent nodata, then one entry per class in increasing code order
    lookup = {code: i + 1 for i, code in enumerate(codes)}
    if len(codes) > 254:
        raise ValueError("a palette PNG holds at most 254 classes besides nodata")
    indices = np.zeros(class_array.shape, dtype=np.uint8)
    valid = class_array != nodata
    present = np.unique(class_array[valid])
    unknown = sorted(set(int(v) for v in present) - set(lookup))
    if unknown:
        raise ValueError(f"class values {unknown} have no colour; colours are given for {codes}")
    for code, index in lookup.items():
        indices[class_array == code] = index
    factor = max(1, -(-max(class_array.shape) // max_px))
    small = downsample_mode(indices, factor, len(codes) + 1)
    height, width = small.shape
    palette = b"\x00\x00\x00" + b"".join(bytes(_hex_rgb(colours[c])) for c in codes)
    alpha = b"\x00" + b"\xff" * len(codes)
    raw = np.zeros((height, width + 1), dtype=np.uint8)  # filter byte 0 (None) on each row
    raw[:, 1:] = small
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)),
            _chunk(b"PLTE", palette),
            _chunk(b"tRNS", alpha),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)),
            _chunk(b"IEND", b""),
        ]
    )


def preview_lattice(windows: Sequence, max_px: int = 512):
    """The extent (a grid Window covering `windows`) and the cell step of a preview at most `max_px` wide."""
    from .grid import window_for_bounds

    xmin, ymax = min(w.xmin for w in windows), max(w.ymax for w in windows)
    xmax, ymin = max(w.xmax for w in windows), min(w.ymin for w in windows)
    extent = window_for_bounds((xmin, ymin, xmax, ymax), cell=windows[0].cell)
    step = max(1, int(np.ceil(max(extent.width, extent.height) / max_px)))
    return extent, step


def sample_on_lattice(values: np.ndarray, window, extent, step: int) -> tuple[int, int, np.ndarray]:
    """Every `step`-th cell of `values` (on `window`) that falls on the preview lattice of `extent`:
    (row, col) of the sample's first cell in the preview canvas, and the sample."""
    row_off, col_off = window.offset_in(extent)
    r0, c0 = (-row_off) % step, (-col_off) % step
    return (row_off + r0) // step, (col_off + c0) // step, values[r0::step, c0::step].copy()


def paste_samples(samples, extent, step: int, nodata: int) -> np.ndarray:
    """Assemble samples from `sample_on_lattice` into one preview canvas (nodata where none)."""
    canvas = np.full(((extent.height + step - 1) // step, (extent.width + step - 1) // step), nodata, np.uint8)
    for row, col, sample in samples:
        target = canvas[row:row + sample.shape[0], col:col + sample.shape[1]]
        sample = sample[: target.shape[0], : target.shape[1]]
        np.copyto(target, sample, where=sample != nodata)
    return canvas
