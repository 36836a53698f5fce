"""Where did a source change? One content hash per commune window (commune bounds + halo).

A partner update that touches features in one commune changes that commune's hash, and the hash of any
neighbour whose halo reaches those features, and nothing else: only those communes are recomputed.
"""

from __future__ import annotations

import hashlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely


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


def window_hashes(gdf: gpd.GeoDataFrame, windows: dict[str, tuple[float, float, float, float]], halo_m: float) -> dict[str, str]:
    """Hash, per window code, the features intersecting the window grown by `halo_m`."""
    digests = row_digests(gdf) if len(gdf) else np.empty(0, dtype="S16")
    tree = shapely.STRtree(gdf.geometry.values) if len(gdf) else None
    result = {}
    for code, (minx, miny, maxx, maxy) in sorted(windows.items()):
        box = shapely.box(minx - halo_m, miny - halo_m, maxx + halo_m, maxy + halo_m)
        hits = tree.query(box, predicate="intersects") if tree is not None else np.empty(0, dtype=int)
        selected = np.sort(digests[hits]) if len(hits) else np.empty(0, dtype="S16")
        result[code] = hashlib.sha256(b"".join(selected.tolist()) + str(len(selected)).encode()).hexdigest()[:32]
    return result


def changed_windows(previous: dict[str, str] | None, current: dict[str, str]) -> list[str]:
    if not previous:
        return sorted(current)
    return sorted(code for code, digest in current.items() if previous.get(code) != digest)
