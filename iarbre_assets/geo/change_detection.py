"""Where did a source change? One content hash per commune: the features that can reach its cells.

A partner update that touches features in one commune changes that commune's hash, and the hash of any
neighbour whose halo reaches those features, and nothing else: only those communes are recomputed.

With `cells` (the cells each commune owns, see footprint.CellArea), a commune's features are those that may
come within the halo of one of its cells (`CellArea.reaching`): the rule the footprints use, with the halo
(>= every factor's reach) in place of the reach, so every feature a footprint of the commune can read is
hashed. Without it, the features in the window's bounding box grown by the halo: on real communes
those boxes overlap far more than the communes do (docs/decisions.md D24).
"""

from __future__ import annotations

import hashlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .footprint import CellArea


def row_digests(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """A 16-byte digest per row over its geometry (WKB) and its attributes."""
    wkb = shapely.to_wkb(gdf.geometry.values, output_dimension=2)
    attributes = gdf.drop(columns=gdf.geometry.name)
    if attributes.shape[1]:
        attr_hash = pd.util.hash_pandas_object(attributes.astype("string"), index=False).to_numpy()
    else:
        attr_hash = np.zeros(len(gdf), dtype=np.uint64)
    out = np.empty(len(gdf), dtype="S16")
    for i, (blob, ah) in enumerate(zip(wkb, attr_hash)):
        out[i] = hashlib.blake2b(blob + int(ah).to_bytes(8, "little"), digest_size=16).digest()
    return out


def window_hashes(gdf: gpd.GeoDataFrame, windows: dict[str, tuple[float, float, float, float]], halo_m: float,
                  cells: dict[str, CellArea] | None = None, columns: list[str] | None = None) -> dict[str, str]:
    """Hash, per window code, the features intersecting the window grown by `halo_m` (and, for the codes in
    `cells`, that may come within `halo_m` of one of those cells).

    With `columns` (what the footprints read, `footprint.factor_columns`), a feature's digest covers its
    geometry and those attributes only: an attribute no factor reads (an identifier GML delivers as text
    and GeoJSON as a number, a label) changes no commune."""
    if columns is not None:
        gdf = gdf[[c for c in columns if c in gdf.columns] + [gdf.geometry.name]]
    digests = row_digests(gdf) if len(gdf) else np.empty(0, dtype="S16")
    tree = shapely.STRtree(gdf.geometry.values) if len(gdf) else None
    geoms = gdf.geometry.values
    result = {}
    for code, (minx, miny, maxx, maxy) in sorted(windows.items()):
        box = shapely.box(minx - halo_m, miny - halo_m, maxx + halo_m, maxy + halo_m)
        hits = tree.query(box, predicate="intersects") if tree is not None else np.empty(0, dtype=int)
        if cells is not None and code in cells and len(hits):
            hits = hits[cells[code].reaching(geoms[hits], halo_m)]
        selected = np.sort(digests[hits]) if len(hits) else np.empty(0, dtype="S16")
        result[code] = hashlib.sha256(b"".join(selected.tolist()) + str(len(selected)).encode()).hexdigest()[:32]
    return result


def changed_windows(previous: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    if not previous:
        return sorted(current)
    return sorted(code for code, digest in current.items() if previous.get(code) != digest)
