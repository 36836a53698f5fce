"""The geo kernels on the real Lyon fixtures (../shared/data/lyon), skipped when they are absent."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from iarbre_assets.geo.coverage import coverage_percent
from iarbre_assets.geo.footprint import factor_footprint
from iarbre_assets.geo.grid import cell_owner, window_for_bounds

from geo_helpers import REPO, coverage_bruteforce

LYON = REPO.parent / "shared" / "data" / "lyon"
pytestmark = [
    pytest.mark.lyon,
    pytest.mark.skipif(not LYON.is_dir(), reason=f"Lyon fixtures not found at {LYON}"),
]


def test_real_car_parks_coverage_matches_bruteforce_and_area(catalogue):
    parks = gpd.read_file(LYON / "parkingsurfacique.geojson").to_crs(2154)
    fp = factor_footprint(parks, catalogue.factor("parkings"))
    assert fp.stats["features_selected"] == 6 and fp.stats["polygons_out"] == 6
    for poly in fp.polygons:
        window = window_for_bounds(poly.bounds, halo_m=5)
        cov = coverage_percent([poly], window, tile_cells=16)
        assert np.array_equal(cov, coverage_bruteforce([poly], window))
        # 1 m sampling of a car park: covered area within 3 % of the polygon's area
        assert cov.sum() / 100 * 25 == pytest.approx(poly.area, rel=0.03)


def test_real_public_spaces_filter_and_coverage(catalogue):
    spaces = gpd.read_file(LYON / "espacepublic2025.geojson").to_crs(2154)
    fp = factor_footprint(spaces, catalogue.factor("espaces_jeux_pietonnier"))
    assert fp.stats["features_selected"] == 4  # the 4 "Espace piétonnier"; the car park is not selected
    expected = spaces.loc[spaces["typeespacepublic"] == "Espace piétonnier", "surfacecalc"].astype(float).sum()
    # surfacecalc is measured in CC46 (EPSG:3946); Lambert-93's scale factor there shrinks areas ~0.16 %
    assert fp.stats["area_m2"] == pytest.approx(expected, rel=5e-3)
    window = window_for_bounds(shapely.union_all(fp.polygons).bounds)
    cov = coverage_percent(fp.parts, window)
    assert cov.sum() / 100 * 25 == pytest.approx(expected, rel=0.03)


def test_real_communes_own_each_cell_at_most_once():
    communes = gpd.read_file(LYON / "communes_gl_2025.geojson").sort_values("insee")
    geoms = communes.geometry.to_numpy()
    # a 3 km x 3 km window on Curis-au-Mont-d'Or and its surroundings
    curis = communes.loc[communes["insee"] == "69071", "geometry"].iloc[0]
    cx, cy = curis.centroid.x, curis.centroid.y
    window = window_for_bounds((cx - 1500, cy - 1500, cx + 1500, cy + 1500))
    owner = cell_owner(list(geoms), window)
    x, y = window.cell_centres()
    inside = np.stack([shapely.contains_xy(g, x, y) for g in geoms])
    assert inside.sum(axis=0).max() <= 1  # the real communes do not overlap at cell centres
    expected = np.where(inside.any(axis=0), inside.argmax(axis=0), -1)
    assert np.array_equal(owner, expected)
    assert (owner == list(communes["insee"]).index("69071")).sum() == pytest.approx(curis.area / 25, rel=0.01)
