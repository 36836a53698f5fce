"""The raw store keeps deliveries byte for byte, content-addressed, with manifests and retention."""

from __future__ import annotations

import hashlib
import json

from iarbre_assets.geo.change_detection import changed_windows, window_hashes
from iarbre_assets.store import Store


def _put(store, data: bytes, origin="https://example.test/ows?typename=x", when=None):
    return store.put("ore_gaz", data, "zip", origin=origin, partner="grdf", licence="Licence Ouverte 2.0",
                     connector="datafair", requests=[{"url": origin, "status": 200, "bytes": len(data)}],
                     observed_at=when)


def test_identical_bytes_make_no_new_version(tmp_path):
    store = Store(tmp_path).raw
    first = _put(store, b"page one", when="2026-01-01T00:00:00+00:00")
    again = _put(store, b"page one", when="2026-02-01T00:00:00+00:00")
    assert first.is_new and not again.is_new
    assert first.version.sha256 == hashlib.sha256(b"page one").hexdigest()
    assert [v.sha256 for v in store.versions("ore_gaz")] == [first.version.sha256]
    version = store.version("ore_gaz", first.version.sha256)
    assert (version.first_seen_at, version.last_seen_at, version.seen_count) == (
        "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00", 2)
    assert (version.partner, version.licence, version.size) == ("grdf", "Licence Ouverte 2.0", 8)
    assert store.read("ore_gaz", first.version.sha256) == b"page one"
    log = (tmp_path / "raw" / "ore_gaz" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["new_version"] for line in log] == [True, False]


def test_a_new_content_is_a_new_version_and_latest_follows(tmp_path):
    store = Store(tmp_path).raw
    a = _put(store, b"v1", when="2026-01-01T00:00:00+00:00")
    b = _put(store, b"v2", when="2026-01-02T00:00:00+00:00")
    assert a.version.sha256 != b.version.sha256
    assert store.latest("ore_gaz").sha256 == b.version.sha256
    assert len(store.versions("ore_gaz")) == 2


def test_retention_never_deletes_the_protected_version(tmp_path):
    store = Store(tmp_path).raw
    shas = [_put(store, f"v{i}".encode(), when=f"2026-01-0{i + 1}T00:00:00+00:00").version.sha256 for i in range(5)]
    deleted = store.prune("ore_gaz", keep=2, protect={shas[0]})
    assert set(deleted) == set(shas[1:3])
    assert [v.sha256 for v in store.versions("ore_gaz")] == [shas[0], shas[3], shas[4]]
    assert store.read("ore_gaz", shas[0]) == b"v0"


def test_corruption_is_detected(tmp_path):
    store = Store(tmp_path).raw
    put = _put(store, b"original")
    put.path.write_bytes(b"tampered")
    try:
        store.read("ore_gaz", put.version.sha256)
    except ValueError as exc:
        assert "corrupted" in str(exc)
    else:
        raise AssertionError("a tampered raw file must not be read")


def test_window_hashes_change_only_where_features_changed():
    import geopandas as gpd
    from shapely.geometry import LineString

    frame = gpd.GeoDataFrame({"gid": [1, 2]}, geometry=[LineString([(5, 5), (8, 5)]), LineString([(105, 5), (108, 5)])],
                             crs="EPSG:2154")
    windows = {"A": (0, 0, 50, 50), "B": (100, 0, 150, 50)}
    before = window_hashes(frame, windows, halo_m=10)
    moved = frame.copy()
    moved.loc[1, "geometry"] = LineString([(105, 6), (108, 6)])
    after = window_hashes(moved, windows, halo_m=10)
    assert changed_windows(before, after) == ["B"]
    assert changed_windows(None, after) == ["A", "B"]
    # a feature within the halo of a neighbour changes that neighbour too
    near = frame.copy()
    near.loc[0, "geometry"] = LineString([(45, 5), (92, 5)])  # now reaches into B's halo too
    assert changed_windows(before, window_hashes(near, windows, halo_m=10)) == ["A", "B"]
    edge = frame.copy()
    edge.loc[1, "geometry"] = LineString([(95, 5), (99, 5)])
    assert changed_windows(before, window_hashes(edge, windows, halo_m=10)) == ["B"]


def test_a_commune_hash_ignores_features_in_its_bounding_box_that_cannot_reach_its_cells():
    """An L-shaped commune's box covers its neighbour's corner: a change there is not the L's change."""
    import geopandas as gpd
    import numpy as np
    from shapely.geometry import LineString

    from iarbre_assets.geo.footprint import CellArea

    # A owns the left column and the bottom row of a 100 m x 100 m window (5 m cells); B owns the rest.
    owned = np.zeros((20, 20), dtype=bool)
    owned[:, :4] = True
    owned[16:, :] = True
    cells = {"A": CellArea.from_mask(owned, 0, 100, 5), "B": CellArea.from_mask(~owned, 0, 100, 5)}
    windows = {"A": (0, 0, 100, 100), "B": (20, 20, 100, 100)}
    frame = gpd.GeoDataFrame({"gid": [1, 2]}, geometry=[LineString([(70, 70), (75, 70)]), LineString([(2, 50), (2, 60)])],
                             crs="EPSG:2154")
    before = window_hashes(frame, windows, halo_m=3, cells=cells)
    moved = frame.copy()
    moved.loc[0, "geometry"] = LineString([(72, 70), (77, 70)])  # deep in B, far from A's cells
    assert changed_windows(before, window_hashes(moved, windows, halo_m=3, cells=cells)) == ["B"]
    # without the cells, A's box alone would have counted it
    assert changed_windows(window_hashes(frame, windows, halo_m=3), window_hashes(moved, windows, halo_m=3)) == ["A", "B"]
    # a change within the halo of A's cells is A's too
    near = frame.copy()
    near.loc[0, "geometry"] = LineString([(70, 21), (75, 21)])  # 1 m above A's bottom row (y < 20)
    assert changed_windows(before, window_hashes(near, windows, halo_m=3, cells=cells)) == ["A", "B"]
