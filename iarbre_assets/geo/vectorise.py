"""Class raster to polygons (for the GeoPackage export): one dissolved geometry per class.

rasterio.features.shapes traces each 4-connected region of equal class as one polygon (with holes).
Regions of the same class can then only touch at corners, so collecting them in a MultiPolygon is
already a valid dissolve: no costly union is needed.
"""

from __future__ import annotations

import numpy as np
import shapely
from rasterio.features import shapes

from .grid import Window


def class_polygons(class_array: np.ndarray, window: Window, nodata: int = 255) -> list[tuple[int, object]]:
    """[(class, Polygon or MultiPolygon)] in increasing class order, EPSG:2154 metres, nodata cells left out."""
    class_array = np.asarray(class_array)
    if class_array.shape != window.shape:
        raise ValueError(f"class array shape {class_array.shape} does not match window shape {window.shape}")
    if class_array.dtype not in (np.uint8, np.int16, np.uint16, np.int32):
        class_array = class_array.astype(np.int32)
    mask = class_array != nodata
    if not mask.any():
        return []
    # Gather every ring's coordinates in flat lists and build all polygons at once (shapely ragged
    # arrays): constructing them one by one costs several times more than tracing them.
    coords: list = []
    ring_offsets = [0]
    poly_offsets = [0]
    values = []
    for geojson, value in shapes(class_array, mask=mask, connectivity=4, transform=window.transform):
        rings = geojson["coordinates"]
        for ring in rings:
            coords.extend(ring)
            ring_offsets.append(len(coords))
        poly_offsets.append(len(ring_offsets) - 1)
        values.append(int(value))
    polys = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON,
        np.asarray(coords, dtype=np.float64),
        (np.asarray(ring_offsets, dtype=np.int64), np.asarray(poly_offsets, dtype=np.int64)),
    )
    values = np.asarray(values)
    out = []
    for value in np.unique(values):
        members = polys[values == value]
        out.append((int(value), members[0] if len(members) == 1 else shapely.multipolygons(members)))
    return out
