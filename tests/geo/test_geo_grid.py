"""The territory grid: snapping, windows, global cell ids, commune ownership."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from iarbre_assets.geo.grid import (
    Window,
    cell_id_to_xy,
    cell_owner,
    snap_bounds,
    window_for_bounds,
    xy_to_cell_id,
)

from geo_helpers import X0, Y0


def test_snap_bounds_rounds_outwards_to_multiples_of_the_cell():
    # defect #14: the reference kept the raw float corner and truncated the east/south edge with int()
    assert snap_bounds((842001.3, 6519002.7, 842013.1, 6519019.99)) == (842000.0, 6519000.0, 842015.0, 6519020.0)
    # already on the lattice: unchanged (float noise of a few nanometres does not add a cell)
    noisy = (842000.0, 6519000.0, 842015.0000000001, 6519020.0)
    assert snap_bounds(noisy) == (842000.0, 6519000.0, 842015.0, 6519020.0)
    # negative coordinates round towards -inf / +inf, not towards zero
    assert snap_bounds((-7.0, -2.0, -1.0, 3.0)) == (-10.0, -5.0, 0.0, 5.0)
    # a point gets one cell
    assert snap_bounds((842002.0, 6519002.0, 842002.0, 6519002.0)) == (842000.0, 6519000.0, 842005.0, 6519005.0)
    assert snap_bounds((842000.0, 6519000.0, 842000.0, 6519000.0)) == (842000.0, 6519000.0, 842005.0, 6519005.0)
    with pytest.raises(ValueError, match="invalid bounds"):
        snap_bounds((1.0, 0.0, 0.0, 1.0))


def test_window_for_bounds_with_halo():
    w = window_for_bounds((842001.3, 6519002.7, 842013.1, 6519019.99), halo_m=30)
    # (842001.3 - 30, 6519002.7 - 30, 842013.1 + 30, 6519019.99 + 30) snapped outwards
    assert (w.xmin, w.ymax, w.width, w.height) == (841970.0, 6519050.0, 15, 16)
    assert w.bounds == (841970.0, 6518970.0, 842045.0, 6519050.0)
    assert w.shape == (16, 15)
    assert w.transform == Affine(5.0, 0.0, 841970.0, 0.0, -5.0, 6519050.0)
    assert w.subpixel_transform(1.0) == Affine(1.0, 0.0, 841970.0, 0.0, -1.0, 6519050.0)
    assert w.subdivision(1.0) == 5
    with pytest.raises(ValueError, match="does not divide"):
        w.subdivision(2.0)


def test_window_refuses_an_origin_off_the_lattice():
    with pytest.raises(ValueError, match="not a whole multiple"):
        Window(842002.5, 6519000.0, 3, 3)
    with pytest.raises(ValueError, match="not a north-up grid"):
        Window.from_transform(Affine(5, 0, X0, 0, 5, Y0), 3, 3)


def test_cell_centres_and_ids_round_trip():
    w = Window(X0, Y0, 3, 2)
    x, y = w.cell_centres()
    assert x.shape == y.shape == (2, 3)
    assert x[0].tolist() == [X0 + 2.5, X0 + 7.5, X0 + 12.5]
    assert y[:, 0].tolist() == [Y0 - 2.5, Y0 - 7.5]
    ids = w.cell_ids()
    assert ids.dtype == np.int64
    # id = floor(x_left / 5) * 10_000_000 + floor(y_bottom / 5)
    assert ids[0, 0] == (842_000 // 5) * 10_000_000 + (6_518_995 // 5)
    assert ids[1, 2] == (842_010 // 5) * 10_000_000 + (6_518_990 // 5)
    left, bottom = cell_id_to_xy(ids)
    assert np.array_equal(left, x - 2.5) and np.array_equal(bottom, y - 2.5)
    cx, cy = cell_id_to_xy(ids, centre=True)
    assert np.array_equal(cx, x) and np.array_equal(cy, y)
    assert np.array_equal(xy_to_cell_id(x, y), ids)
    assert len(np.unique(ids)) == 6


def test_ids_agree_between_overlapping_windows():
    big = Window(X0 - 50, Y0 + 50, 40, 40)
    small = Window(X0, Y0, 4, 3)
    rows, cols = small.slices_in(big)
    assert (rows, cols) == (slice(10, 13), slice(10, 14))
    assert small.offset_in(big) == (10, 10)
    assert np.array_equal(big.cell_ids()[rows, cols], small.cell_ids())
    with pytest.raises(ValueError, match="is not inside"):
        big.slices_in(small)
    with pytest.raises(ValueError, match="cell sizes differ"):
        Window(X0, Y0, 2, 2, cell=10.0).offset_in(big)


def test_tiles_cover_the_window_exactly_once():
    w = Window(X0, Y0, 7, 5)
    seen = np.zeros(w.shape, dtype=int)
    for rows, cols, tile in w.tiles(3):
        seen[rows, cols] += 1
        assert tile.slices_in(w) == (rows, cols)
    assert (seen == 1).all()


def _wiggly_communes(rng):
    """Two communes, west and east, sharing a border wiggling between x = X0+40 and X0+60."""
    ys = np.linspace(Y0, Y0 - 200, 60)
    xs = X0 + 50 + rng.uniform(-10, 10, len(ys))
    border = list(zip(xs, ys))
    west = shapely.Polygon([(X0, Y0), *border, (X0, Y0 - 200)])
    east = shapely.Polygon([*border, (X0 + 100, Y0 - 200), (X0 + 100, Y0)])
    return west, east


def test_cell_owner_partitions_cells_along_a_wiggly_border():
    west, east = _wiggly_communes(np.random.default_rng(7))
    window = window_for_bounds(shapely.union_all([west, east]).bounds, halo_m=10)
    owner = cell_owner([west, east], window)
    assert owner.dtype == np.int32 and owner.shape == window.shape
    x, y = window.cell_centres()
    in_west = shapely.contains_xy(west, x, y)
    in_east = shapely.contains_xy(east, x, y)
    assert not (in_west & in_east).any()
    # each cell whose centre is in a commune belongs to it, exactly once; cells outside both to nobody
    assert np.array_equal(owner == 0, in_west)
    assert np.array_equal(owner == 1, in_east)
    assert np.array_equal(owner == -1, ~(in_west | in_east))
    assert (owner >= 0).sum() == 20 * 40  # 100 m x 200 m = 800 cells, none lost, none doubled


def test_cell_owner_first_commune_wins_an_overlap():
    a = shapely.box(X0, Y0 - 20, X0 + 20, Y0)
    b = shapely.box(X0 + 10, Y0 - 20, X0 + 30, Y0)  # overlaps a on two columns of cells
    window = Window(X0, Y0, 6, 4)
    assert cell_owner([a, b], window)[0].tolist() == [0, 0, 0, 0, 1, 1]
    assert cell_owner([b, a], window)[0].tolist() == [1, 1, 0, 0, 0, 0]
    assert (cell_owner([], window) == -1).all()
