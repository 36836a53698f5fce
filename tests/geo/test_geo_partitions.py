"""Commune partitions: per-commune windows with a halo mosaic into exactly the territory-wide result."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from iarbre_assets.geo.coverage import coverage_percent
from iarbre_assets.geo.footprint import factor_footprint
from iarbre_assets.geo.grid import cell_owner, window_for_bounds
from iarbre_assets.store.rasters import mosaic_to_cog, read_geotiff, write_geotiff
from iarbre_assets.geo.score import score_cells

from geo_helpers import X0, Y0


def _communes():
    """West and east communes sharing a border that wiggles between x = X0+89 and X0+111."""
    rng = np.random.default_rng(21)
    ys = np.linspace(Y0, Y0 - 300, 80)
    xs = X0 + 100 + 10 * np.sin((ys - Y0) / 19.0) + rng.uniform(-1, 1, len(ys))
    border = list(zip(xs, ys))
    west = shapely.Polygon([(X0, Y0), *border, (X0, Y0 - 300)])
    east = shapely.Polygon([*border, (X0 + 200, Y0 - 300), (X0 + 200, Y0)])
    return [west, east], border


def test_commune_windows_with_halo_mosaic_into_the_territory_result(catalogue, tmp_path):
    communes, border = _communes()
    gaz = catalogue.factor("reseau_gaz")  # 2 m buffer
    # entirely in the east commune, following the border 1.5 m east of it: its 2 m buffer reaches
    # 0.5 m into cells owned by the west commune
    along = shapely.offset_curve(shapely.LineString(border), 1.5)
    along = shapely.intersection(along, shapely.box(X0, Y0 - 299, X0 + 200, Y0 - 1))
    assert not along.intersects(communes[0]) and along.distance(communes[0]) > 1.4
    lines = gpd.GeoDataFrame(
        geometry=[
            shapely.LineString([(X0 + 20, Y0 - 40), (X0 + 180, Y0 - 260)]),  # crosses the border obliquely
            along,
            shapely.LineString([(X0 + 30, Y0 - 150), (X0 + 70, Y0 - 150)]),
        ],
        crs="EPSG:2154",
    )
    territory = window_for_bounds(shapely.union_all(communes).bounds)
    owner = cell_owner(communes, territory)
    valid = owner >= 0

    # territory-wide, in one go
    whole = coverage_percent(factor_footprint(lines, gaz).parts, territory)
    whole[~valid] = 0

    # per commune: its own window, features read within the factor's reach of its bounds
    parts = []
    for index, commune in enumerate(communes):
        window = window_for_bounds(commune.bounds)
        fp = factor_footprint(lines, gaz, bounds=commune.bounds)
        cov = coverage_percent(fp.parts, window)
        rows, cols = window.slices_in(territory)
        mine = owner[rows, cols] == index
        part = np.where(mine, cov, 255).astype(np.uint8)
        parts.append(write_geotiff(tmp_path / f"{index}.tif", part, window, 255))
    stats = mosaic_to_cog(parts, territory, tmp_path / "coverage.tif", np.uint8, 255)
    assert stats["valid_cells"] == int(valid.sum()) == 40 * 60  # no cell lost, none doubled

    mosaic, window, _ = read_geotiff(tmp_path / "coverage.tif")
    assert window == territory
    assert np.array_equal(np.where(valid, mosaic, 0), whole)
    assert (mosaic[~valid] == 255).all()
    # the east-only line's buffer is counted in cells the west commune owns, from the west window
    west = communes[0]
    only_along = lines.iloc[[1]]
    fp = factor_footprint(only_along, gaz, bounds=west.bounds)
    assert fp.stats["features_selected"] == 1
    window = window_for_bounds(west.bounds)
    rows, cols = window.slices_in(territory)
    cov = coverage_percent(fp.parts, window)
    assert (cov[owner[rows, cols] == 0] > 0).sum() >= 5


def test_commune_scores_mosaic_seamlessly(catalogue, tmp_path):
    communes, _ = _communes()
    factors = catalogue.scored_factors
    buildings = gpd.GeoDataFrame(geometry=[shapely.box(X0 + 95, Y0 - 120, X0 + 105, Y0 - 100)], crs="EPSG:2154")
    territory = window_for_bounds(shapely.union_all(communes).bounds)
    owner = cell_owner(communes, territory)
    parts = []
    for index, commune in enumerate(communes):
        window = window_for_bounds(commune.bounds)
        coverage = np.zeros((len(factors), *window.shape), dtype=np.uint8)
        for f, factor in enumerate(factors):
            if factor.source == "batiments_bdtopo":
                coverage[f] = coverage_percent(factor_footprint(buildings, factor, bounds=commune.bounds).parts, window)
        rows, cols = window.slices_in(territory)
        result = score_cells(coverage, [f.weight for f in factors], [f.blocking for f in factors],
                             owner[rows, cols] == index)
        parts.append(write_geotiff(tmp_path / f"score_{index}.tif", result.score, window, -9999.0))
    mosaic_to_cog(parts, territory, tmp_path / "score.tif", np.float32, -9999.0)
    score, _, _ = read_geotiff(tmp_path / "score.tif")
    # the building straddles the border: 2 x 4 cells blocked whichever commune owns them
    rows = slice(int((Y0 - 100 - territory.ymax) / -5), int((Y0 - 120 - territory.ymax) / -5))
    cols = slice(int((X0 + 95 - territory.xmin) / 5), int((X0 + 105 - territory.xmin) / 5))
    assert (score[rows, cols] == -5).all() and (score == -5).sum() == 8
    assert (score[owner >= 0] != -9999).all() and (score[owner < 0] == -9999).all()
