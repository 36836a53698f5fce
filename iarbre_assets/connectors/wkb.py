"""ISO WKB (little-endian) encoding of coordinate arrays, as the GML parser builds them.

    to_wkb("Polygon", [exterior, hole, ...], dim)      # rings are (n, dim) float arrays
    to_wkb("MultiPolygon", [[exterior, ...], ...], dim)
    to_wkb("GeometryCollection", [(kind, value, dim), ...], dim)

The bytes are read back by `shapely.from_wkb` in one vectorised call (no shapely object per feature).
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["WKB_CODES", "array_bytes", "geometries_closing_rings", "header", "to_wkb"]

def geometries_closing_rings(wkb: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Geometries of WKB blobs (None stays None) in one vectorised call. When GEOS refuses some (a ring
    whose last point is not its first), those rings are closed and counted. Returns (geometries, how many
    were repaired, positions of the blobs GEOS still cannot read: the caller names and refuses them)."""
    import shapely

    wkb = np.asarray(wkb, dtype=object)
    try:
        return shapely.from_wkb(wkb), 0, np.empty(0, dtype=int)
    except shapely.errors.GEOSException:
        pass
    geometry = shapely.from_wkb(wkb, on_invalid="ignore")
    present = np.array([w is not None for w in wkb], dtype=bool)
    broken = np.flatnonzero(shapely.is_missing(geometry) & present)
    fixed = shapely.from_wkb(wkb[broken], on_invalid="fix")
    geometry[broken] = fixed
    unreadable = shapely.is_missing(fixed)
    return geometry, int((~unreadable).sum()), broken[unreadable]


WKB_CODES = {"Point": 1, "LineString": 2, "Polygon": 3, "MultiPoint": 4, "MultiLineString": 5,
             "MultiPolygon": 6, "GeometryCollection": 7}


def header(kind: str, dim: int) -> bytes:
    """Byte order (1: little-endian) and ISO geometry type code (+1000 for Z)."""
    return struct.pack("<BI", 1, WKB_CODES[kind] + (1000 if dim == 3 else 0))


def array_bytes(coords: np.ndarray) -> bytes:
    """The coordinates as little-endian doubles, row after row."""
    return np.ascontiguousarray(coords, dtype="<f8").tobytes()


def to_wkb(kind: str, value, dim: int) -> bytes:
    """ISO WKB, little-endian (read by shapely.from_wkb in one vectorised call)."""
    if kind == "Point":
        return header(kind, dim) + array_bytes(value)
    if kind == "LineString":
        return header(kind, dim) + struct.pack("<I", len(value)) + array_bytes(value)
    if kind == "Polygon":
        body = [header(kind, dim), struct.pack("<I", len(value))]
        for ring in value:
            body += [struct.pack("<I", len(ring)), array_bytes(ring)]
        return b"".join(body)
    if kind == "GeometryCollection":
        return b"".join([header(kind, dim), struct.pack("<I", len(value))]
                        + [to_wkb(k, v, d) for k, v, d in value])
    part = {"MultiPoint": "Point", "MultiLineString": "LineString", "MultiPolygon": "Polygon"}[kind]
    return b"".join([header(kind, dim), struct.pack("<I", len(value))] + [to_wkb(part, v, dim) for v in value])
