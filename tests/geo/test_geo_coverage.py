"""Percent coverage: hand-computed cells, brute-force equality, no shift (defect #12), the reference's shift."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from iarbre_assets.geo.coverage import coverage_percent
from iarbre_assets.geo.footprint import factor_footprint
from iarbre_assets.geo.grid import Window, window_for_bounds

from geo_helpers import X0, Y0, coverage_bruteforce, random_polygons


def _gdf(*geoms):
    return gpd.GeoDataFrame(geometry=list(geoms), crs="EPSG:2154")


def test_aligned_10m_building_covers_exactly_four_cells():
    window = Window(X0 - 5, Y0 + 5, 4, 4)  # cells x in [X0-5, X0+15], y in [Y0-15, Y0+5]
    building = shapely.box(X0, Y0 - 10, X0 + 10, Y0)
    cov = coverage_percent([building], window)
    expected = np.zeros((4, 4), dtype=np.uint8)
    expected[1:3, 1:3] = 100
    assert cov.dtype == np.uint8
    assert np.array_equal(cov, expected)


def test_building_corner_on_one_subpixel_gives_4_percent():
    window = Window(X0, Y0, 3, 3)
    # only the sub-pixel centred (X0 + 4.5, Y0 - 4.5) of cell (0, 0) is inside
    corner = shapely.box(X0 + 4.2, Y0 - 14.2, X0 + 14.2, Y0 - 4.2)
    cov = coverage_percent([corner], window)
    assert cov[0, 0] == 4
    # cell (0, 1): one row of 5 sub-pixels (y = Y0 - 4.5) -> 20 %; cell (1, 1): fully inside
    assert cov[0, 1] == 20 and cov[1, 0] == 20 and cov[1, 1] == 100
    assert np.array_equal(cov, coverage_bruteforce([corner], window))


def test_gas_line_on_a_cell_edge_buffered_2m_covers_40_percent_on_both_sides(catalogue):
    # A line along the edge x = X0 + 5 between two columns of cells, buffered 2 m: the strip
    # X0+3 <= x <= X0+7. In the western cell the sub-pixel centres X0+3.5 and X0+4.5 are inside
    # (2 columns of 5 sub-pixels = 10/25 = 40 %), in the eastern cell X0+5.5 and X0+6.5 (40 % too).
    # Rows 1..8 lie along the straight part; the round caps only touch rows 0 and 9.
    gas = _gdf(shapely.LineString([(X0 + 5, Y0 - 5), (X0 + 5, Y0 - 45)]))
    fp = factor_footprint(gas, catalogue.factor("reseau_gaz"))
    window = Window(X0 - 5, Y0, 4, 10)
    cov = coverage_percent(fp.parts, window)
    assert (cov[1:9, 1] == 40).all() and (cov[1:9, 2] == 40).all()
    assert (cov[:, 0] == 0).all() and (cov[:, 3] == 0).all()
    assert np.array_equal(cov, coverage_percent(fp.polygons, window))


@pytest.mark.parametrize("tile_cells", [7, 256])
def test_coverage_equals_bruteforce_point_in_polygon(tile_cells):
    rng = np.random.default_rng(11)
    window = Window(X0, Y0, 40, 30)
    polys = random_polygons(rng, window, 30)
    # include a multipolygon and a collection: only their polygons count
    multi = shapely.MultiPolygon([shapely.box(X0 + 1.2, Y0 - 9.7, X0 + 7.3, Y0 - 3.1),
                                  shapely.box(X0 + 150.2, Y0 - 140.3, X0 + 170.9, Y0 - 120.6)])
    collection = shapely.GeometryCollection([shapely.Point(X0, Y0),
                                             shapely.box(X0 + 60.3, Y0 - 80.1, X0 + 71.1, Y0 - 61.9)])
    polys = np.append(polys, [multi, collection])
    cov = coverage_percent(polys, window, tile_cells=tile_cells)
    expected = coverage_bruteforce(polys, window)
    assert np.array_equal(cov, expected)
    assert set(np.unique(cov)) <= set(range(0, 101, 4))
    assert 0 < (cov > 0).mean() < 1


def test_coverage_at_half_metre_subpixels_matches_bruteforce():
    rng = np.random.default_rng(5)
    window = Window(X0, Y0, 12, 10)
    polys = random_polygons(rng, window, 8)
    cov = coverage_percent(polys, window, subpixel=0.5, tile_cells=5)
    assert np.array_equal(cov, coverage_bruteforce(polys, window, subpixel=0.5))
    with pytest.raises(ValueError, match="does not divide"):
        coverage_percent(polys, window, subpixel=2.0)


def test_parts_and_their_union_give_the_same_coverage(catalogue):
    rng = np.random.default_rng(2)
    x, y = X0 + rng.uniform(0, 150, 120), Y0 - rng.uniform(0, 150, 120)
    buildings = _gdf(*shapely.box(x, y, x + rng.uniform(3, 15, 120), y + rng.uniform(3, 15, 120)))
    fp = factor_footprint(buildings, catalogue.factor("proximite_facade"))
    assert len(fp.polygons) < len(fp.parts)
    window = window_for_bounds(shapely.union_all(fp.parts).bounds)
    assert np.array_equal(coverage_percent(fp.parts, window, tile_cells=9), coverage_percent(fp.polygons, window))


def test_empty_and_far_away_footprints_give_zero():
    window = Window(X0, Y0, 5, 5)
    assert not coverage_percent([], window).any()
    assert not coverage_percent([shapely.box(X0 + 1000, Y0, X0 + 1010, Y0 + 10)], window).any()
    assert not coverage_percent([shapely.Point(X0 + 2, Y0 - 2)], window).any()  # no area, no coverage


def test_a_feature_lands_in_its_own_cell_without_shift():
    # A 1 m square whose centre is (X0 + 23.5, Y0 - 12.5): cell column 4 (x in [X0+20, X0+25]),
    # row 2 (y in [Y0-15, Y0-10]) of a window whose corner is (X0, Y0).
    window = Window(X0, Y0, 8, 6)
    square = shapely.box(X0 + 23, Y0 - 13, X0 + 24, Y0 - 12)
    cov = coverage_percent([square], window)
    assert list(zip(*np.nonzero(cov))) == [(2, 4)]
    assert cov[2, 4] == 4
    # the same cell through the window's transform
    assert ~window.transform @ (X0 + 23.5, Y0 - 12.5) == pytest.approx((4.7, 2.5))


def test_reference_convolution_shifts_the_layer_2m_and_ours_does_not(reference_method):
    # The reference grid on a territory whose corner is on the lattice, so only the convolution matters.
    bounds = (X0, Y0 - 10, X0 + 10, Y0)
    window = window_for_bounds(bounds)
    first_cell = shapely.box(X0, Y0 - 5, X0 + 5, Y0)  # fine rows 0-4 x cols 0-4
    ref, ref_transform = reference_method.reference_coverage([first_cell], bounds)
    assert ref_transform == window.transform
    # centred 5x5 sum sampled every 5th pixel: 3x3, 3x2, 2x3, 2x2 burned pixels out of 25
    assert ref.tolist() == [[36, 24], [24, 16]]
    assert coverage_percent([first_cell], window).tolist() == [[100, 0], [0, 0]]
    # one burned sub-pixel at fine (row 3, col 3) lands in coarse cell (1, 1) in the reference: 2 m away
    pixel = shapely.box(X0 + 3, Y0 - 4, X0 + 4, Y0 - 3)
    ref, _ = reference_method.reference_coverage([pixel], bounds)
    assert ref.tolist() == [[0, 0], [0, 4]]
    assert coverage_percent([pixel], window).tolist() == [[4, 0], [0, 0]]


def test_reference_grid_moves_with_the_raw_corner(reference_method):
    # defect #14: with a float corner, the reference grid is not on the lattice; ours always is
    bounds = (X0 + 1.3, Y0 - 20.2, X0 + 23.9, Y0 + 0.7)
    _, ref_transform = reference_method.reference_coverage([shapely.box(X0, Y0 - 5, X0 + 5, Y0)], bounds)
    assert (ref_transform.c, ref_transform.f) == (X0 + 1.3, Y0 + 0.7)
    window = window_for_bounds(bounds)
    assert (window.xmin, window.ymax, window.width, window.height) == (X0, Y0 + 5, 5, 6)


# ------------------------------------------------------------------------------------------------
# Masked coverage (a commune's own cells) and the burn step
# ------------------------------------------------------------------------------------------------
def _blob_mask(window: Window) -> np.ndarray:
    """An irregular set of cells: a disc in the north-west plus a thin strip in the south-east corner."""
    rows, cols = np.indices(window.shape)
    disc = (rows - 8) ** 2 + (cols - 10) ** 2 < 50
    strip = (rows >= window.height - 2) & (cols >= window.width - 6)
    return disc | strip


@pytest.mark.parametrize("tile_cells", [7, 16, 256])
def test_masked_coverage_keeps_every_masked_value_and_skips_unmasked_tiles(tile_cells):
    rng = np.random.default_rng(32)
    window = Window(X0, Y0, 40, 30)
    polys = random_polygons(rng, window, 40)
    mask = _blob_mask(window)
    full = coverage_percent(polys, window, tile_cells=tile_cells)
    masked = coverage_percent(polys, window, tile_cells=tile_cells, mask=mask)
    assert np.array_equal(masked[mask], full[mask])
    assert np.array_equal(masked[mask], coverage_bruteforce(polys, window)[mask])
    assert full[mask].any() and full[~mask].any()
    # a tile holding no masked cell is not rasterised at all: it reads 0 although polygons cover it
    for rows, cols, _ in window.tiles(tile_cells):
        if not mask[rows, cols].any():
            assert not masked[rows, cols].any()
    if tile_cells == 7:
        # the tile holding the disc's eastern end: only the masked cells' bounding rows/cols are rasterised
        assert (masked[0:7, 14:21][:, 4:] == 0).all() and full[0:7, 18:21].any()


def test_masked_coverage_refuses_a_mask_of_another_shape():
    window = Window(X0, Y0, 6, 4)
    with pytest.raises(ValueError, match="mask has shape"):
        coverage_percent([shapely.box(X0, Y0 - 10, X0 + 10, Y0)], window, mask=np.ones((4, 5), dtype=bool))


def test_all_false_mask_rasterises_nothing():
    window = Window(X0, Y0, 6, 4)
    cov = coverage_percent([shapely.box(X0, Y0 - 20, X0 + 30, Y0)], window, mask=np.zeros((4, 6), dtype=bool))
    assert cov.shape == (4, 6) and not cov.any()


def test_burn_step_equals_rasterio_rasterize_including_edges_through_pixel_centres():
    import rasterio
    from rasterio.features import rasterize

    from iarbre_assets.geo.coverage import burn_polygons, geojson_polygons
    from iarbre_assets.geo.footprint import polygonal_parts

    rng = np.random.default_rng(4)
    window = Window(X0, Y0, 12, 10)
    polys = list(random_polygons(rng, window, 25))
    # edges exactly on sub-pixel centres (x or y = .5 m) and on sub-pixel edges, a horizontal edge on a
    # scanline, a hole, and a triangle whose slanted edge passes through centres
    polys += [
        shapely.box(X0 + 3.5, Y0 - 20.5, X0 + 9.5, Y0 - 10.5),
        shapely.box(X0 + 20, Y0 - 30, X0 + 31, Y0 - 21),
        shapely.Polygon([(X0 + 40.5, Y0 - 40.5), (X0 + 50.5, Y0 - 40.5), (X0 + 40.5, Y0 - 30.5)]),
        shapely.box(X0 + 10, Y0 - 45, X0 + 30, Y0 - 35).difference(shapely.box(X0 + 15.5, Y0 - 41.5, X0 + 20.5, Y0 - 38.5)),
    ]
    shapes = geojson_polygons(polygonal_parts(polys))
    fine_shape = (window.height * 5, window.width * 5)
    transform = window.subpixel_transform(1.0)
    expected = rasterize(shapes, out_shape=fine_shape, transform=transform, fill=0, default_value=1,
                         all_touched=False, dtype="uint8")
    burned = np.zeros(fine_shape, dtype=np.uint8)
    with rasterio.Env():
        burn_polygons(shapes, burned, transform)
    assert np.array_equal(burned, expected)
    assert 0 < expected.mean() < 1
