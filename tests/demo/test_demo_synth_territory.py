"""Synthetic communes and IRIS: plausible place, contiguous, exact tilings, clearly synthetic codes."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from iarbre_demo.synth import demo_communes, synthetic_iris

PART_DIEU = shapely.Point(844_600, 6_519_560)


def assert_tiles_exactly(parts, whole, rel=1e-9):
    """`parts` cover `whole` with no gap and no overlap (areas, then symmetric difference)."""
    area = whole.area
    assert abs(shapely.area(parts).sum() - area) <= rel * area
    union = shapely.union_all(parts)
    assert shapely.area(shapely.symmetric_difference(union, whole)) <= 1e-6 * area
    tree = shapely.STRtree(parts)
    i, j = tree.query(parts, predicate="intersects")
    pairs = i < j
    overlap = shapely.area(shapely.intersection(parts[i[pairs]], parts[j[pairs]])).sum()
    assert overlap <= 1e-6 * area


def test_small_demo_is_three_contiguous_communes_of_about_5_km2_near_lyon(small_communes):
    c = small_communes
    assert c.crs.to_epsg() == 2154
    assert list(c.columns) == ["insee", "nom", "geometry"]
    assert len(c) == 3
    assert (c.geom_type == "Polygon").all() and c.is_valid.all()
    total = c.area.sum() / 1e6
    assert 4.0 <= total <= 6.0
    union = shapely.union_all(c.geometry.to_numpy())
    assert union.geom_type == "Polygon"  # contiguous: one piece
    assert_tiles_exactly(c.geometry.to_numpy(), union)
    # a suburb of Lyon: a few km from the Part-Dieu, not on top of it and not in another region
    assert 2_000 < union.centroid.distance(PART_DIEU) < 15_000
    assert not union.contains(PART_DIEU)


def test_insee_codes_are_clearly_synthetic(small_communes):
    full = demo_communes(scale="full")
    for c in (small_communes, full):
        codes = c["insee"].tolist()
        assert all(len(code) == 5 and code.startswith("99") and code.isdigit() for code in codes)
        assert len(set(codes)) == len(codes)
        assert len(set(c["nom"])) == len(c)


def test_full_territory_is_59_irregular_communes_tiling_534_km2():
    c = demo_communes(scale="full")
    assert len(c) == 59
    assert c.crs.to_epsg() == 2154 and c.is_valid.all() and (c.geom_type == "Polygon").all()
    area = c.area.to_numpy() / 1e6
    assert abs(area.sum() - 534.0) < 1.0
    union = shapely.union_all(c.geometry.to_numpy())
    assert union.geom_type == "Polygon"
    assert_tiles_exactly(c.geometry.to_numpy(), union)
    # around Lyon, a few communes much larger than the typical one
    assert union.contains(PART_DIEU)
    assert area.max() > 3 * np.median(area)
    assert (area > 2 * np.median(area)).sum() >= 3
    # irregular, not a grid: many vertices per boundary
    assert shapely.get_num_coordinates(c.geometry.to_numpy()).min() > 20


def test_demo_communes_are_deterministic_and_seeded(small_communes):
    again = demo_communes(seed=2154)
    assert list(shapely.to_wkb(again.geometry.to_numpy())) == list(shapely.to_wkb(small_communes.geometry.to_numpy()))
    assert again.drop(columns="geometry").equals(small_communes.drop(columns="geometry"))
    other = demo_communes(seed=7)
    assert not other.geometry.geom_equals(small_communes.geometry).all()


def test_demo_communes_refuses_an_unknown_scale():
    with pytest.raises(ValueError, match="scale must be 'small' or 'full'"):
        demo_communes(scale="medium")


def check_iris(communes, iris, code_field="insee"):
    assert iris.crs.to_epsg() == 2154
    assert list(iris.columns) == ["code_iris", "nom_iris", "insee", "geometry"]
    assert iris.is_valid.all()
    assert iris["code_iris"].is_unique
    assert iris["code_iris"].str.fullmatch(r"\d{9}").all()
    assert (iris["code_iris"].str[:5] == iris["insee"]).all()
    assert iris["nom_iris"].str.startswith("IRIS synthétique").all()
    communes = communes.to_crs(2154)
    for code, geom in zip(communes[code_field], communes.geometry.to_numpy()):
        parts = iris.geometry.to_numpy()[(iris["insee"] == code).to_numpy()]
        assert 2 <= len(parts) <= 8, code
        assert_tiles_exactly(parts, geom)


def test_synthetic_iris_tile_each_small_commune_exactly(small_communes, small_iris):
    check_iris(small_communes, small_iris)
    # bigger communes get more parts
    full = demo_communes(scale="full")
    iris = synthetic_iris(full)
    check_iris(full, iris)
    counts = iris.groupby("insee").size()
    areas = full.set_index("insee").area
    assert counts[areas.idxmax()] > counts[areas.idxmin()]


@pytest.mark.lyon
def test_synthetic_iris_tile_the_real_lyon_communes_exactly(lyon_communes):
    iris = synthetic_iris(lyon_communes)
    check_iris(lyon_communes, iris)
    assert set(iris["insee"]) == set(lyon_communes["insee"])


def test_synthetic_iris_is_deterministic(small_communes, small_iris):
    again = synthetic_iris(small_communes)
    assert list(shapely.to_wkb(again.geometry.to_numpy())) == list(shapely.to_wkb(small_iris.geometry.to_numpy()))
    assert not synthetic_iris(small_communes, seed=3).geometry.geom_equals(small_iris.geometry).all()


def test_synthetic_iris_names_the_missing_code_field(small_communes):
    with pytest.raises(ValueError, match="no 'code' column"):
        synthetic_iris(small_communes, code_field="code")
