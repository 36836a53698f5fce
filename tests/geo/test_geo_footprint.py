"""Factor footprints: filters, buffers (fixed and per-feature radius), simplify, union, stats."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely

from iarbre_assets.catalog.models import ColumnBuffer, Where
from iarbre_assets.geo.footprint import (
    QUAD_SEGS,
    buffer_radii,
    factor_footprint,
    polygonal_parts,
    select_features,
    union_parts,
)

from geo_helpers import X0, Y0


def _trees():
    genres = ["Platanus", None, "Acer", "Acer", "Souche", "Emplacement libre", "Tilia"]
    circ = [150.0, 0.0, np.nan, 2500.0, 100.0, 80.0, -3.0]
    points = [shapely.Point(X0 + 100 * i, Y0) for i in range(len(genres))]
    return gpd.GeoDataFrame({"genre": genres, "circonference_cm": circ}, geometry=points, crs="EPSG:2154")


def test_in_filter_never_matches_nulls_and_not_in_keeps_them():
    trees = _trees()
    stumps = select_features(trees, [Where.model_validate({"field": "genre", "in": ["Souche", "Emplacement libre"]})])
    assert stumps["genre"].tolist() == ["Souche", "Emplacement libre"]
    not_stumps = Where.model_validate({"field": "genre", "not_in": ["Souche", "Emplacement libre"]})
    others = select_features(trees, [not_stumps])
    # the null genre is kept by not_in (published pandas ~isin behaviour, docs/decisions.md)
    assert others.index.tolist() == [0, 1, 2, 3, 6]
    assert others["genre"].isna().tolist() == [False, True, False, False, False]
    # conditions are ANDed
    both = select_features(
        trees,
        [
            Where.model_validate({"field": "genre", "not_in": ["Souche"]}),
            Where.model_validate({"field": "genre", "in": ["Acer", "Tilia"]}),
        ],
    )
    assert both["genre"].tolist() == ["Acer", "Acer", "Tilia"]
    with pytest.raises(KeyError, match="'espece' is not a column"):
        select_features(trees, [Where.model_validate({"field": "espece", "in": ["x"]})])


def test_buffer_radii_missing_and_clamped_are_counted_not_dropped():
    spec = ColumnBuffer(radius_from="circonference_cm", unit="cm", missing_m=1.0, max_m=10.0)
    radii, stats = buffer_radii([150, None, np.nan, 0, -3, 2500, 999.0, "abc"], spec)
    # 150 cm -> 1.5 m (circumference in metres used as a radius); null/NaN/0/negative/non-numeric -> 1 m
    assert radii.tolist() == [1.5, 1.0, 1.0, 1.0, 1.0, 10.0, 9.99, 1.0]
    assert stats == {"missing_radius": 5, "clamped_radius": 1}
    metres = ColumnBuffer(radius_from="r", unit="m", missing_m=0.5, max_m=4.0)
    assert buffer_radii(np.array([3.0, 5.0]), metres)[0].tolist() == [3.0, 4.0]


def test_tree_footprint_uses_circumference_as_radius(catalogue):
    arbres = catalogue.factor("arbres")
    fp = factor_footprint(_trees(), arbres)
    assert fp.stats == {
        "features_in": 7,
        "features_selected": 5,  # stumps and free spots excluded, the null genre kept
        "missing_radius": 3,  # 0 cm, NaN, -3 cm
        "clamped_radius": 1,  # 2500 cm -> 25 m > 10 m
        "dropped_no_area": 0,
        "polygons_out": 5,
        "area_m2": pytest.approx(fp.stats["area_m2"]),
    }
    areas = sorted(shapely.area(fp.polygons))
    # 3 trees of 1 m, one of 1.5 m, one clamped to 10 m; 64-gon areas are within 0.2 % of the circle's
    for area, radius in zip(areas, [1.0, 1.0, 1.0, 1.5, 10.0]):
        assert area == pytest.approx(math.pi * radius**2, rel=2e-3)
        assert area == pytest.approx(shapely.Point(0, 0).buffer(radius, quad_segs=QUAD_SEGS).area, rel=1e-9)
    assert fp.stats["area_m2"] == pytest.approx(sum(areas))


def test_stumps_footprint_fixed_buffer_without_union(catalogue):
    fp = factor_footprint(_trees(), catalogue.factor("souches_emplacements_libres"))
    assert fp.stats["features_selected"] == 2
    assert len(fp.polygons) == 2 and len(fp.parts) == 2
    assert shapely.area(fp.polygons) == pytest.approx([math.pi] * 2, rel=2e-3)


def test_union_merges_overlaps_and_keeps_the_parts(catalogue):
    # two overlapping buildings and one far away, 2 m facade buffer with union
    buildings = gpd.GeoDataFrame(
        geometry=[
            shapely.box(X0, Y0, X0 + 10, Y0 + 10),
            shapely.box(X0 + 12, Y0, X0 + 20, Y0 + 10),  # 2 m gap: buffers overlap
            shapely.box(X0 + 100, Y0, X0 + 110, Y0 + 10),
        ],
        crs="EPSG:2154",
    )
    fp = factor_footprint(buildings, catalogue.factor("proximite_facade"))
    assert len(fp.parts) == 3
    assert fp.stats["polygons_out"] == 2
    union = shapely.union_all(fp.parts)
    assert shapely.equals(shapely.union_all(fp.polygons), union)
    assert fp.stats["area_m2"] == pytest.approx(union.area)
    no_union = factor_footprint(buildings, catalogue.factor("proximite_facade"), union=False)
    assert no_union.stats["polygons_out"] == 3


def test_union_parts_equals_union_all_on_random_overlaps():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 500, 400), rng.uniform(0, 500, 400)
    parts = shapely.buffer(shapely.box(x, y, x + rng.uniform(2, 20, 400), y + rng.uniform(2, 20, 400)), 2)
    merged = union_parts(parts)
    reference = shapely.union_all(parts)
    assert shapely.get_type_id(merged).tolist() == [3] * len(merged)
    # same point set, up to the floating-point noise of GEOS overlays (different union order)
    assert shapely.symmetric_difference(shapely.union_all(merged), reference).area < 1e-6
    # the result has no overlaps: areas add up to the union's area
    assert shapely.area(merged).sum() == pytest.approx(reference.area, rel=1e-9)
    assert len(merged) == len(polygonal_parts([reference]))


def test_merge_lines_union_is_the_same_set_and_the_same_coverage(catalogue):
    from iarbre_assets.geo.coverage import coverage_percent
    from iarbre_assets.geo.grid import window_for_bounds

    rng = np.random.default_rng(8)
    # a network in short pieces (shared end points), with a crossing and an overlapping duplicate
    pieces = []
    for row in range(5):
        xs = X0 + np.arange(0, 200, 20.0)
        ys = Y0 + row * 37.3 + rng.normal(0, 1.5, len(xs))
        pieces += [shapely.LineString([(xs[i], ys[i]), (xs[i + 1], ys[i + 1])]) for i in range(len(xs) - 1)]
    pieces += [shapely.LineString([(X0 + 50.3, Y0 - 10), (X0 + 61.7, Y0 + 170)]), pieces[3]]
    lines = gpd.GeoDataFrame(geometry=pieces, crs="EPSG:2154")
    gaz = catalogue.factor("reseau_gaz")
    overlay = factor_footprint(lines, gaz)
    merged = factor_footprint(lines, gaz, union_method="merge_lines")
    a, b = shapely.union_all(overlay.polygons), shapely.union_all(merged.polygons)
    assert len(merged.polygons) == len(overlay.polygons) == 1
    assert shapely.symmetric_difference(a, b).area < 1e-4 * a.area
    window = window_for_bounds(a.bounds)
    assert np.array_equal(coverage_percent(merged.polygons, window), coverage_percent(overlay.parts, window))
    # not applicable (points): falls back to the overlay union
    trees = factor_footprint(_trees(), catalogue.factor("arbres"), union_method="merge_lines")
    assert trees.stats["polygons_out"] == 5
    with pytest.raises(ValueError, match="union_method"):
        factor_footprint(lines, gaz, union_method="fast")


def test_polygonal_parts_explodes_and_drops_non_polygons():
    poly = shapely.box(0, 0, 1, 1)
    mixed = shapely.GeometryCollection([poly, shapely.Point(5, 5), shapely.LineString([(0, 0), (1, 1)]),
                                        shapely.MultiPolygon([shapely.box(2, 2, 3, 3), shapely.box(4, 4, 5, 5)])])
    parts = polygonal_parts([mixed, None, shapely.Polygon(), shapely.MultiPolygon([poly, shapely.box(7, 7, 8, 8)])])
    assert len(parts) == 5
    assert shapely.get_type_id(parts).tolist() == [3] * 5


def test_unbuffered_points_are_counted_when_dropped(catalogue):
    points = gpd.GeoDataFrame(geometry=[shapely.Point(X0, Y0), shapely.box(X0, Y0, X0 + 5, Y0 + 5)], crs="EPSG:2154")
    fp = factor_footprint(points, catalogue.factor("parkings"))
    assert fp.stats["dropped_no_area"] == 1
    assert fp.stats["polygons_out"] == 1


def test_bounds_select_features_within_the_factor_reach(catalogue):
    gaz = catalogue.factor("reseau_gaz")  # 2 m buffer
    bounds = (X0, Y0, X0 + 100, Y0 + 100)
    lines = gpd.GeoDataFrame(
        {"name": ["inside", "1.9 m east", "2.1 m east", "far"]},
        geometry=[
            shapely.LineString([(X0 + 10, Y0 + 10), (X0 + 90, Y0 + 10)]),
            shapely.LineString([(X0 + 101.9, Y0), (X0 + 101.9, Y0 + 100)]),
            shapely.LineString([(X0 + 102.1, Y0), (X0 + 102.1, Y0 + 100)]),
            shapely.LineString([(X0 + 500, Y0), (X0 + 600, Y0)]),
        ],
        crs="EPSG:2154",
    )
    fp = factor_footprint(lines, gaz, bounds=bounds)
    assert fp.stats["features_in"] == 4
    assert fp.stats["features_selected"] == 2  # the line 1.9 m away still reaches into the window
    assert fp.stats["polygons_out"] == 2
    assert factor_footprint(lines, gaz).stats["features_selected"] == 4


def test_simplify_is_applied_before_union(catalogue):
    strate = catalogue.factor("strate_arboree")  # simplify 3 m, no union
    # a square with a 0.5 m bump on one side: simplification at 3 m removes the bump
    bumpy = shapely.Polygon([(X0, Y0), (X0 + 20, Y0), (X0 + 20, Y0 + 10), (X0 + 20.5, Y0 + 10.5),
                             (X0 + 20, Y0 + 11), (X0 + 20, Y0 + 20), (X0, Y0 + 20)])
    eva = gpd.GeoDataFrame(
        {"gl_2015": [11, 12]}, geometry=[bumpy, shapely.box(X0, Y0, X0 + 1, Y0 + 1)], crs="EPSG:2154"
    )
    fp = factor_footprint(eva, strate)
    assert fp.stats["features_selected"] == 1
    assert shapely.equals(fp.polygons[0], shapely.box(X0, Y0, X0 + 20, Y0 + 20))


def test_footprint_refuses_another_crs(catalogue):
    gdf = gpd.GeoDataFrame(geometry=[shapely.Point(1_842_000, 5_175_000)], crs="EPSG:3946")
    with pytest.raises(ValueError, match="EPSG:3946.*expected EPSG:2154"):
        factor_footprint(gdf, catalogue.factor("reseau_gaz"))


# ------------------------------------------------------------------------------------------------
# Selecting the features that can reach a set of cells (a commune's own cells)
# ------------------------------------------------------------------------------------------------
def test_cell_area_finds_boxes_within_reach_of_its_cells():
    from iarbre_assets.geo.footprint import CellArea

    # 10 x 10 cells of 5 m, top-left (X0, Y0); one cell owned: row 4, col 6 -> x in [X0+30, X0+35],
    # y in [Y0-25, Y0-20]
    mask = np.zeros((10, 10), dtype=bool)
    mask[4, 6] = True
    exact = CellArea.from_mask(mask, X0, Y0, 5.0, block=1)
    boxes = np.array([
        [X0 + 31, Y0 - 24, X0 + 32, Y0 - 23],  # inside the cell
        [X0 + 36.9, Y0 - 24, X0 + 40, Y0 - 23],  # 1.9 m east of it
        [X0 + 37.1, Y0 - 24, X0 + 40, Y0 - 23],  # 2.1 m east of it
        [X0 + 10, Y0 - 19, X0 + 28.5, Y0 - 18],  # 1.5 m west and 1 m north (diagonal: box test)
        [X0 + 30, Y0 - 60, X0 + 35, Y0 - 50],  # outside the window, 25 m south
        [np.nan] * 4,  # an empty geometry
    ])
    assert exact.reached_by(boxes, 2.0).tolist() == [True, True, False, True, False, False]
    assert exact.reached_by(boxes, 0.0).tolist() == [True, False, False, False, False, False]
    assert exact.reached_by(boxes, 25.5)[4]
    # blocks of 4 x 4 cells (20 m): a superset, never fewer features
    coarse = CellArea.from_mask(mask, X0, Y0, 5.0, block=4)  # the block rows 4-7, cols 4-7 counts
    assert coarse.reached_by(boxes, 2.0).tolist() == [True, True, True, True, False, False]
    assert not CellArea.from_mask(np.zeros((10, 10), dtype=bool), X0, Y0, 5.0).reached_by(boxes, 100.0).any()


def test_footprint_for_cells_keeps_what_reaches_them_and_covers_them_identically(catalogue):
    from iarbre_assets.geo.coverage import coverage_percent
    from iarbre_assets.geo.footprint import CellArea
    from iarbre_assets.geo.grid import cell_owner, window_for_bounds

    # an L-shaped commune: its window's north-east quarter is not part of it
    commune = shapely.Polygon([(X0, Y0), (X0 + 200, Y0), (X0 + 200, Y0 + 100), (X0 + 100, Y0 + 100),
                               (X0 + 100, Y0 + 200), (X0, Y0 + 200)])
    window = window_for_bounds(commune.bounds)
    owned = cell_owner([commune], window) == 0
    cells = CellArea.from_mask(owned, window.xmin, window.ymax, window.cell)
    rng = np.random.default_rng(12)
    x, y = X0 + rng.uniform(-10, 210, 300), Y0 + rng.uniform(-10, 210, 300)
    pieces = shapely.linestrings(np.stack([np.column_stack([x, y]), np.column_stack([x + 15, y + 4])], axis=1))
    lines = gpd.GeoDataFrame({"kind": ["gas"] * 300}, geometry=pieces, crs="EPSG:2154")
    gaz = catalogue.factor("reseau_gaz")  # 2 m buffer, union
    whole = factor_footprint(lines, gaz, bounds=window.bounds)
    mine = factor_footprint(lines, gaz, bounds=window.bounds, cells=cells)
    assert 0 < mine.stats["features_selected"] < whole.stats["features_selected"]
    # at least every feature whose buffer touches an owned cell is kept
    rows, cols = np.nonzero(owned)
    owned_cells = shapely.box(window.xmin + cols * 5, window.ymax - (rows + 1) * 5,
                              window.xmin + (cols + 1) * 5, window.ymax - rows * 5)
    reaching = np.unique(shapely.STRtree(owned_cells).query(shapely.buffer(pieces, 2.0), predicate="intersects")[0])
    assert len(reaching) <= mine.stats["features_selected"] < whole.stats["features_selected"]
    kept = factor_footprint(lines.iloc[reaching], gaz)
    assert shapely.covers(shapely.union_all(mine.polygons).buffer(1e-6), shapely.union_all(kept.polygons))
    # the same coverage on the owned cells, from the union and from the parts
    full = coverage_percent(whole.polygons, window)
    assert full[owned].any() and full[~owned].any()
    assert np.array_equal(coverage_percent(mine.polygons, window)[owned], full[owned])
    assert np.array_equal(coverage_percent(mine.parts, window, mask=owned)[owned], full[owned])
    # with the commune's outline, the geometry is tested too: fewer features, still every one reaching
    outlined = CellArea.from_mask(owned, window.xmin, window.ymax, window.cell, outline=commune)
    near = factor_footprint(lines, gaz, bounds=window.bounds, cells=outlined)
    assert len(reaching) <= near.stats["features_selected"] <= mine.stats["features_selected"]
    assert np.array_equal(coverage_percent(near.parts, window, mask=owned)[owned], full[owned])
    assert np.array_equal(coverage_percent(near.polygons, window)[owned], full[owned])


def test_a_long_diagonal_line_reaches_only_the_cells_it_comes_near():
    from iarbre_assets.geo.footprint import CellArea

    # one owned cell in the top-left corner of a 100 m x 100 m window; a line from the bottom-left to the
    # top-right corner: its box holds every cell, the line passes 95 / sqrt(2) = 67.18 m from the cell's
    # centre, 67.08 m from the outline (a 0.1 m disc around the centre)
    mask = np.zeros((20, 20), dtype=bool)
    mask[0, 0] = True
    centre = shapely.Point(X0 + 2.5, Y0 - 2.5)
    boxed = CellArea.from_mask(mask, X0, Y0, 5.0, block=1)
    outlined = CellArea.from_mask(mask, X0, Y0, 5.0, block=1, outline=centre.buffer(0.1))
    line = shapely.LineString([(X0, Y0 - 100), (X0 + 100, Y0)])
    short = shapely.LineString([(X0 + 6, Y0 - 1), (X0 + 9, Y0 - 1)])  # 3.5 m east of the centre
    geoms = np.array([line, short, None], dtype=object)
    assert boxed.reaching(geoms, 2.0).tolist() == [True, True, False]
    assert outlined.reaching(geoms, 2.0).tolist() == [False, True, False]  # 3.5 <= 2 + half diagonal 3.54
    assert outlined.reaching(geoms, 64.0).tolist() == [True, True, False]  # 67.08 <= 64 + 3.54
    assert not outlined.reaching(geoms, 63.0)[0]  # 67.08 > 63 + 3.54


def test_footprint_names_the_columns_when_a_filter_field_is_missing(catalogue):
    trees = _trees().drop(columns=["genre"])
    with pytest.raises(KeyError, match="'genre' is not a column.*circonference_cm"):
        factor_footprint(trees, catalogue.factor("arbres"), bounds=(X0, Y0, X0 + 100, Y0 + 100))


def test_footprint_reads_only_the_columns_it_needs_and_keeps_the_frame_index_cache(catalogue):
    trees = _trees().assign(extra=["x"] * 7)
    sindex = trees.sindex
    fp = factor_footprint(trees, catalogue.factor("arbres"), bounds=(X0 - 10, Y0 - 10, X0 + 250, Y0 + 10))
    # Platanus (x = X0), the null genre (X0 + 100), Acer (X0 + 200); not the Acer at X0 + 300, 40 m beyond
    # the 10 m reach, nor the stumps
    assert fp.stats["features_selected"] == 3
    assert trees.sindex is sindex  # the caller's frame, its spatial index untouched
