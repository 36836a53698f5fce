"""Score, classes, top factors, meta-factor sums and factor stats, with the published worked examples."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from iarbre_assets.geo.coverage import coverage_percent
from iarbre_assets.geo.footprint import factor_footprint
from iarbre_assets.geo.grid import Window
from iarbre_assets.geo.score import classify, factor_stats, meta_sums, score_cells, top_factors

from geo_helpers import X0, Y0


def _score(scored, coverage, valid=None):
    valid = np.ones(coverage.shape[1:], dtype=bool) if valid is None else valid
    return score_cells(coverage, scored["weights"], scored["blocking"], valid)


def _classes(catalogue, score):
    return classify(score, catalogue.scoring.class_breaks, catalogue.scoring.class_above)


def test_building_blocks_its_cells_and_its_facade_buffer_costs_around(catalogue, scored):
    window = Window(X0 - 10, Y0 + 10, 6, 6)  # the 10 m building is cells (2..3, 2..3)
    building = gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0 - 10, X0 + 10, Y0)], crs="EPSG:2154")
    coverage = np.zeros((len(scored["slugs"]), 6, 6), dtype=np.uint8)
    for slug in ("batiments", "proximite_facade"):
        fp = factor_footprint(building, catalogue.factor(slug))
        coverage[scored["slugs"].index(slug)] = coverage_percent(fp.parts, window)
    result = _score(scored, coverage)
    classes = _classes(catalogue, result.score)
    assert result.score.dtype == np.float32 and classes.dtype == np.uint8
    assert (result.score[2:4, 2:4] == -5).all() and (classes[2:4, 2:4] == 0).all()
    assert result.blocked[2:4, 2:4].all() and result.blocked.sum() == 4
    assert (result.blocking_factor[2:4, 2:4] == scored["slugs"].index("batiments")).all()
    # west neighbour (row 2, col 1): the 2 m facade strip holds 2 of its 5 sub-pixel columns -> 40 %
    assert coverage[scored["slugs"].index("proximite_facade"), 2, 1] == 40
    assert result.score[2, 1] == np.float32(-0.8) and classes[2, 1] == 4
    # two cells away nothing reaches: neutral 0, class 6
    assert (result.score[0, :] == 0).all() and (classes[0, :] == 6).all()
    assert (result.score[:, 5] == 0).all() and (classes[:, 5] == 6).all()


def test_one_subpixel_of_building_blocks_the_cell(catalogue, scored, stack):
    window = Window(X0, Y0, 2, 2)
    corner = shapely.box(X0 + 4.2, Y0 - 14.2, X0 + 14.2, Y0 - 4.2)
    cov = coverage_percent([corner], window)
    assert cov[0, 0] == 4
    coverage = stack((2, 2), {"batiments": cov, "parcs_jardins_publics": 100})
    result = _score(scored, coverage)
    assert result.score[0, 0] == -5 and _classes(catalogue, result.score)[0, 0] == 0


@pytest.mark.parametrize(
    "cell, expected_score, expected_class",
    [
        # published worked examples (method §2.5)
        ({"trace_bus": 40, "reseau_souterrain_enedis": 100, "assainissement": 60, "espaces_artificialises": 100,
          "arbres": 12, "strate_arboree": 20}, -3.68, 2),
        ({"parkings": 100, "strate_arboree": 20}, -1.8, 4),
        ({}, 0.0, 6),  # no data at all: neutral
        ({"parcs_jardins_publics": 100, "strate_basse_pelouse": 80, "strate_arboree": 20}, 4.6, 10),  # not 5: defect #1
        ({"parcs_jardins_publics": 100, "strate_basse_pelouse": 80, "strate_arboree": 20, "batiments": 4}, -5.0, 0),
        # blocking wins over any positive sum; fibre counts +2 as published
        ({"reseau_fibre": 100, "friche_naturelle": 100}, 5.0, 10),
        ({"ponts": 100, "friche_naturelle": 100}, -5.0, 0),
    ],
)
def test_published_worked_examples(catalogue, scored, stack, cell, expected_score, expected_class):
    result = _score(scored, stack((1, 1), cell))
    assert result.score[0, 0] == np.float32(expected_score)
    assert _classes(catalogue, result.score)[0, 0] == expected_class


def test_class_breaks_are_inclusive(catalogue):
    breaks = catalogue.scoring.class_breaks
    at = np.array([-5, -2, -0.75, 0.15, 2.5], dtype=np.float32)
    assert classify(at, breaks, 10).tolist() == [0, 2, 4, 6, 8]
    above = np.nextafter(at, np.float32(np.inf))
    assert classify(above, breaks, 10).tolist() == [2, 4, 6, 8, 10]
    # the same in float64, and extremes
    assert classify(at.astype(np.float64).round(2), breaks, 10).tolist() == [0, 2, 4, 6, 8]
    assert classify(np.array([-33.0, 23.0, -9999.0, np.nan]), breaks, 10).tolist() == [0, 10, 255, 255]
    # plain tuples work too
    assert classify(np.array([1.0]), [(0.0, 1), (2.0, 3)], 7).tolist() == [3]
    with pytest.raises(ValueError, match="strictly increasing"):
        classify(np.array([1.0]), [(2.0, 1), (0.0, 3)], 7)


def test_invalid_cells_are_nodata(catalogue, scored, stack):
    coverage = stack((1, 3), {"batiments": 100, "parkings": 50})
    valid = np.array([[True, False, True]])
    result = _score(scored, coverage, valid)
    assert result.score.tolist() == [[-5.0, -9999.0, -5.0]]
    assert result.blocked.tolist() == [[True, False, True]]
    assert result.blocking_factor[0, 1] == -1
    assert _classes(catalogue, result.score).tolist() == [[0, 255, 0]]


def test_first_blocking_factor_is_reported(scored, stack):
    result = _score(scored, stack((1, 1), {"batiments": 100, "aerodrome": 4, "voies_ferrees": 8}))
    assert result.blocking_factor[0, 0] == scored["slugs"].index("aerodrome")  # first in catalogue order


def test_fractional_weights_are_summed_exactly():
    coverage = np.array([[[40]], [[100]], [[100]]], dtype=np.uint8)
    result = score_cells(coverage, [2.5, -0.75, -5], [False, False, False], np.ones((1, 1), bool))
    assert result.score[0, 0] == np.float32(-4.75)  # 1.0 - 0.75 - 5, no blocking factor
    result = score_cells(coverage[:2], [2.5, -0.75], [False, False], np.ones((1, 1), bool))
    assert result.score[0, 0] == np.float32(0.25)


def test_score_checks_shapes(scored, stack):
    coverage = stack((2, 2), {})
    with pytest.raises(ValueError, match="36 coverage layers but 3 weights"):
        score_cells(coverage, [1, 2, 3], [False] * 3, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="valid mask has shape"):
        score_cells(coverage, scored["weights"], scored["blocking"], np.ones((3, 2), bool))


def _network_group(catalogue, scored):
    groups = {}
    for meta in catalogue.meta_factors:
        if meta.aggregate_in_top:
            members = catalogue.meta_mapping[meta.slug]
            groups[meta.label] = [scored["slugs"].index(s) for s in members]
    return groups


def test_top_factors_published_example_with_network_aggregation(catalogue, scored, stack):
    # method §2.7: raw {Parkings 80, Tracé de bus 40, Rsx gaz 20, Assainissement 100, Plan eau 12, Forêts 8}
    coverage = stack((1, 2), {"parkings": 80, "trace_bus": 40, "reseau_gaz": 20, "assainissement": 100,
                              "plan_eau": 12, "forets": 8})
    coverage[:, 0, 1] = 0
    index, pct, labels = top_factors(coverage, scored["labels"], k=5, groups=_network_group(catalogue, scored))
    assert index.dtype == np.int16 and pct.dtype == np.uint16 and index.shape == (5, 1, 2)
    assert [labels[i] for i in index[:, 0, 0]] == [
        "Réseaux et infrastructures", "Parkings", "Tracé de bus", "Plan eau", "Forêts"]
    assert pct[:, 0, 0].tolist() == [120, 80, 40, 12, 8]
    # no network factor is listed on its own
    assert not {"Rsx gaz", "Assainissement"} & set(labels)
    assert index[:, 0, 1].tolist() == [-1] * 5 and pct[:, 0, 1].tolist() == [0] * 5


def test_top_factors_ties_follow_catalogue_order(catalogue, scored, stack):
    groups = _network_group(catalogue, scored)
    # friches (before the network group's first member, assainissement), the group, parcs (after it)
    coverage = stack((1, 1), {"parcs_jardins_publics": 20, "reseau_gaz": 12, "reseau_fibre": 8, "friches": 20,
                              "trace_bus": 40, "parkings": 40})
    index, pct, labels = top_factors(coverage, scored["labels"], k=6, groups=groups)
    assert [labels[i] if i >= 0 else None for i in index[:, 0, 0]] == [
        "Parkings", "Tracé de bus", "Friches", "Réseaux et infrastructures", "Parcs et jardins publics", None]
    assert pct[:, 0, 0].tolist() == [40, 40, 20, 20, 20, 0]
    # without groups each network factor is its own entry
    index, pct, labels = top_factors(coverage, scored["labels"], k=7)
    assert [labels[i] for i in index[:, 0, 0] if i >= 0][-2:] == ["Rsx gaz", "Réseau Fibre"]
    with pytest.raises(ValueError, match="in two groups"):
        top_factors(coverage, scored["labels"], groups={"a": [0, 1], "b": [1]})


def test_meta_sums_count_the_factors_the_reference_misspelt(catalogue, scored, stack):
    coverage = stack((1, 1), {"parkings": 80, "trace_bus": 40, "reseau_gaz": 20, "assainissement": 100,
                              "plan_eau": 12, "forets": 8, "marches_forains": 30})
    meta_index = {m: [scored["slugs"].index(s) for s in members] for m, members in catalogue.meta_mapping.items()}
    sums = {slug: int(v[0, 0]) for slug, v in meta_sums(coverage, meta_index).items()}
    assert sums == {
        "reseaux_infrastructures": 120,
        "infrastructure_transport": 120,
        "batiments": 0,
        "espaces_verts": 8,  # Forêts counted (the reference's "Forêt" never matched)
        "amenagements_urbains": 30,  # Marchés forains counted ("Marchés forrains")
        "plan_eau": 12,  # Plan eau counted ("Plan d'eau")
        "espaces_artificialises": 0,
    }
    assert meta_sums(coverage, meta_index)["plan_eau"].dtype == np.uint16


def test_factor_stats(scored, stack):
    coverage = stack((1, 3), {"parkings": [[100, 40, 100]], "batiments": [[0, 0, 100]], "strate_arboree": [[20, 0, 0]]})
    result = _score(scored, coverage, valid=np.array([[True, True, True]]))
    stats = factor_stats(coverage, scored["weights"], result.blocked, np.array([[True, True, True]]))
    parkings = stats[scored["slugs"].index("parkings")]
    assert parkings == {"covered_cells": 3, "covered_area_m2": 60.0, "weighted_contribution": pytest.approx(-2.8)}
    batiments = stats[scored["slugs"].index("batiments")]
    assert batiments == {"covered_cells": 1, "covered_area_m2": 25.0, "weighted_contribution": 0.0}
    # contributions of the non-blocked cells add up to their scores
    total = sum(s["weighted_contribution"] for s in stats)
    assert total == pytest.approx(float(result.score[0, :2].sum()))


def test_reference_score_agrees_on_the_formula(reference_method):
    # same formula as ours on the same coverages (the reference's defects are in its grid and coverage)
    buildings = np.array([[0, 4, 100]], dtype=np.uint8)
    parks = np.array([[100, 100, 0]], dtype=np.uint8)
    lawn = np.array([[80, 0, 0]], dtype=np.uint8)
    ref = reference_method.reference_score([buildings, parks, lawn], [-5, 2, 3], [True, False, False])
    ours = score_cells(np.stack([buildings, parks, lawn]), [-5, 2, 3], [True, False, False], np.ones((1, 3), bool))
    assert ref.tolist() == ours.score.tolist() == [[np.float32(4.4), -5.0, -5.0]]
