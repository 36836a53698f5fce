"""The generated layers, checked against the factor catalogue and against what a real city looks like."""

from __future__ import annotations

import os
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from iarbre_assets.catalog import load_catalog
from iarbre_demo.synth import ESPACE_PUBLIC_FIELDS, ID_FIELDS, demo_communes, generate_layers


FAMILIES = {"point": {"Point", "MultiPoint"}, "line": {"LineString", "MultiLineString"},
            "polygon": {"Polygon", "MultiPolygon"}}
MARGIN_M = 50.0  # offset lines, bridges and buffered bays may step just past a commune edge
SOURCES = list(load_catalog().sources)


def required_values(catalogue, slug: str) -> dict[str, set]:
    """Every value a factor filter on this source names (in or not_in), per column."""
    out: dict[str, set] = {}
    for factor in catalogue.factors:
        if slug in factor.sources:
            for cond in factor.where:
                out.setdefault(cond.field, set()).update(cond.values)
    return out


def check_dtype(series: pd.Series, kind: str, where: str):
    if kind == "int":
        assert pd.api.types.is_integer_dtype(series), where
    elif kind == "float":
        if pd.api.types.is_float_dtype(series):
            return
        # the voirie files carry numbers as text (e.g. surfacecalc "2260.74"); normalisation parses them
        assert pd.api.types.is_string_dtype(series), where
        assert pd.to_numeric(series, errors="coerce").notna().all(), where
    else:
        assert pd.api.types.is_string_dtype(series), where
        assert series.dropna().map(type).eq(str).all(), where


def extent_of(communes, margin=MARGIN_M):
    extent = shapely.union_all(communes.to_crs(2154).geometry.to_numpy()).buffer(margin)
    shapely.prepare(extent)
    return extent


def check_layer(slug, gdf, catalogue, extent):
    source = catalogue.sources[slug]
    assert isinstance(gdf, gpd.GeoDataFrame), slug
    assert gdf.crs is not None and gdf.crs.to_epsg() == 2154, slug
    assert len(gdf) > 0, f"{slug} is empty"
    geoms = gdf.geometry.to_numpy()
    assert not shapely.is_empty(geoms).any() and shapely.is_valid(geoms).all(), slug
    if source.geometry != "any":
        assert set(gdf.geom_type) <= FAMILIES[source.geometry], (slug, set(gdf.geom_type))
    # every vertex inside the communes (+ margin): a point-in-polygon test per vertex is fast enough
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    outside = np.unique(owner[~shapely.contains_xy(extent, xy[:, 0], xy[:, 1])])
    assert not len(outside), f"{slug}: {len(outside)} feature(s) outside the communes (+{MARGIN_M} m)"
    for column, kind in source.columns.items():
        assert column in gdf.columns, f"{slug} lacks catalogue column {column}"
        check_dtype(gdf[column], kind, f"{slug}.{column}")
    for column, values in required_values(catalogue, slug).items():
        missing = values - set(gdf[column].dropna().tolist())
        assert not missing, f"{slug}.{column} never takes the filtered values {missing}"
    for column, known in source.known_values.items():
        assert set(gdf[column].dropna().tolist()) <= set(known), f"{slug}.{column} outside known_values"
    id_field = ID_FIELDS.get(slug, "gid")
    assert gdf[id_field].is_unique, f"{slug}.{id_field} not unique"
    if id_field == "gid":
        assert gdf["gid"].tolist() == list(range(1, len(gdf) + 1)), slug


def test_every_catalogue_source_is_generated_in_catalogue_order(small_layers, catalogue):
    assert list(small_layers) == list(catalogue.sources)
    assert len(small_layers) == 29


@pytest.mark.parametrize("slug", SOURCES)
def test_small_layer_matches_the_catalogue(slug, small_layers, catalogue, small_communes):
    check_layer(slug, small_layers[slug], catalogue, extent_of(small_communes))


def test_identifiers_follow_each_source_convention(small_layers):
    b = small_layers["batiments_bdtopo"]
    assert "gid" not in b.columns
    assert b["cleabs"].str.fullmatch(r"BATIMENT\d{16}").all() and b["cleabs"].is_unique
    assert b["cleabs"].is_monotonic_increasing
    assert (b["etat_de_l_objet"] == "En service").all()
    assert {"nature", "usage_1", "hauteur"} <= set(b.columns)
    ep = small_layers["espaces_publics"]
    assert ep["idespacepublic"].map(int).is_unique
    pk = small_layers["parkings_surfaciques"]
    assert pd.api.types.is_integer_dtype(pk["idparkingsurfacique"]) and pk["idparkingsurfacique"].is_unique


def test_public_spaces_have_the_real_schema_and_values(small_layers, catalogue):
    ep = small_layers["espaces_publics"]
    assert list(ep.columns) == ESPACE_PUBLIC_FIELDS + ["geometry"]
    assert len(ESPACE_PUBLIC_FIELDS) == 38
    assert (ep.geom_type == "MultiPolygon").all()
    # surfacecalc is the area as text with two decimals, like the real file
    assert ep["surfacecalc"].str.fullmatch(r"\d+\.\d{2}").all()
    assert np.allclose(ep["surfacecalc"].astype(float), ep.area, atol=0.01)
    types = set(ep["typeespacepublic"])
    assert required_values(catalogue, "espaces_publics")["typeespacepublic"] <= types
    assert {"Parking", "Place", "Voie piétonne"} <= types  # and values no factor uses
    mostly_null = [f for f in ESPACE_PUBLIC_FIELDS if ep[f].isna().all()]
    assert len(mostly_null) == 30
    pk = small_layers["parkings_surfaciques"]
    assert list(pk.columns) == ["idparkingsurfacique", "nom", "idmetier", "estvalide", "geometry"]
    assert (pk.geom_type == "MultiPolygon").all()


@pytest.mark.lyon
def test_voirie_schemas_equal_the_real_files(small_layers, lyon_file):
    real_ep = gpd.read_file(lyon_file("espacepublic2025.geojson"))
    real_pk = gpd.read_file(lyon_file("parkingsurfacique.geojson"))
    assert sorted(small_layers["espaces_publics"].columns) == sorted(real_ep.columns)
    assert sorted(small_layers["parkings_surfaciques"].columns) == sorted(real_pk.columns)
    assert set(real_ep["typeespacepublic"]) <= set(small_layers["espaces_publics"]["typeespacepublic"])


def test_alignment_trees_look_like_the_inventory(small_layers):
    trees = small_layers["arbres_alignement"]
    n = len(trees)
    assert n > 500
    assert trees["gid"].is_monotonic_increasing
    share = trees["genre"].value_counts(normalize=True)
    assert 0.025 < share["Emplacement libre"] < 0.08
    assert 0.005 < share["Souche"] < 0.04
    real = {"Platanus", "Acer", "Tilia", "Celtis", "Fraxinus", "Prunus", "Quercus", "Pinus"}
    assert real <= set(trees["genre"])
    assert share[list(real)].sum() > 0.55
    circ = trees["circonference_cm"]
    assert 0.015 < circ.isna().mean() < 0.05
    assert 0.003 < (circ == 0).mean() < 0.025
    assert circ.between(30, 250).mean() > 0.75
    assert {"essencefrancais", "hauteurtotale_m", "anneeplantation"} <= set(trees.columns)


def test_buildings_are_realistic_and_never_overlap(small_layers):
    b = small_layers["batiments_bdtopo"]
    area = b.area
    assert area.between(60, 2000).all()
    assert area.median() < 400
    geoms = b.geometry.to_numpy()
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pair = i < j
    assert shapely.area(shapely.intersection(geoms[i[pair]], geoms[j[pair]])).max(initial=0.0) < 0.01
    # some buildings are not rectangles (L-shaped or cut at block corners)
    assert (shapely.get_num_coordinates(geoms) > 5).sum() > 0.05 * len(b)


def _centre_and_radius(communes):
    union = shapely.union_all(communes.geometry.to_numpy())
    return union.centroid, np.sqrt(union.area / np.pi)


def test_city_is_denser_in_the_centre_and_rural_at_the_edges(small_layers, small_communes):
    centre, r_eq = _centre_and_radius(small_communes)
    b = small_layers["batiments_bdtopo"]
    d = b.centroid.distance(centre)
    inner_density = (d < 0.4 * r_eq).sum() / (np.pi * (0.4 * r_eq) ** 2)
    outer_density = (d > 0.8 * r_eq).sum() / (np.pi * r_eq ** 2 * (1 - 0.8 ** 2))
    assert inner_density > 3 * outer_density
    eva = small_layers["eva_2015"]
    d = eva.representative_point().distance(centre)
    code = eva["gl_2015"]
    countryside = code >= 200
    urban_green = code.isin([11, 12, 13])
    assert countryside.sum() > 10
    assert d[countryside].median() > 1.3 * d[urban_green].median()


def test_vegetation_polygons_barely_overlap(small_layers):
    eva = small_layers["eva_2015"].geometry.to_numpy()
    union = shapely.union_all(eva)
    assert shapely.area(eva).sum() < 1.03 * union.area


def test_street_features_stay_out_of_buildings(small_layers):
    buildings = small_layers["batiments_bdtopo"].geometry.to_numpy()
    tree = shapely.STRtree(buildings)
    for slug in ("arbres_alignement", "arrets_tcl", "stations_velov", "slt_materiel"):
        pts = small_layers[slug].geometry.to_numpy()
        inside, _ = tree.query(pts, predicate="within")
        assert len(np.unique(inside)) <= 0.01 * len(pts), slug
    union = shapely.union_all(buildings)
    for slug in ("ore_gaz", "ore_bt_souterrain", "assainissement", "amenagements_cyclables"):
        lines = shapely.union_all(small_layers[slug].geometry.to_numpy())
        assert shapely.intersection(lines, union).length < 0.005 * lines.length, slug


def test_transport_and_water_fit_together(small_layers):
    water = shapely.union_all(small_layers["plans_eau"].geometry.to_numpy())
    bridges = small_layers["ponts"].geometry.to_numpy()
    assert shapely.intersects(bridges, water).all()
    lines = shapely.union_all(np.concatenate([small_layers[s].geometry.to_numpy()
                                              for s in ("lignes_bus", "lignes_tram", "lignes_metro")]))
    stops = small_layers["arrets_tcl"].geometry.to_numpy()
    assert (shapely.distance(stops, lines) < 15.0).all()
    assert len(small_layers["aerodromes"]) == 1
    rail = shapely.union_all(small_layers["voies_ferrees"].geometry.to_numpy())
    assert rail.length > 1000.0
    assert (small_layers["ore_gaz"]["code_epci"] == "200046977").all()
    assert set(small_layers["ore_bt_souterrain"]["code_insee"]) <= set(demo_communes()["insee"])


def test_bays_are_parking_bay_sized(small_layers):
    pmr = small_layers["places_pmr"].area
    assert np.allclose(pmr, 12.5, atol=0.01)
    cs = small_layers["stations_autopartage"]
    assert np.allclose(cs.area, 12.5 * cs["nbplaces"], atol=0.01)


def test_same_seed_same_layers_other_seed_other_layers(small_layers, small_communes):
    again = generate_layers(small_communes, seed=2154)
    assert list(again) == list(small_layers)
    for slug, gdf in small_layers.items():
        other = again[slug]
        assert list(shapely.to_wkb(other.geometry.to_numpy())) == list(shapely.to_wkb(gdf.geometry.to_numpy())), slug
        assert other.drop(columns="geometry").equals(gdf.drop(columns="geometry")), slug
    different = generate_layers(small_communes, seed=99)
    changed = [slug for slug in small_layers
               if len(different[slug]) != len(small_layers[slug])
               or not different[slug].geometry.geom_equals(small_layers[slug].geometry).all()]
    assert len(changed) >= 25  # all but a few one-feature layers pinned by the territory


def test_layers_can_be_written_to_files(small_layers, tmp_path):
    # the tricky dtypes: nullable ints, booleans, all-null columns, text numbers
    for slug in ("arbres_alignement", "arrets_tcl", "espaces_publics", "batiments_bdtopo"):
        gdf = small_layers[slug]
        gdf.to_file(tmp_path / "layers.gpkg", layer=slug)
        back = gpd.read_file(tmp_path / "layers.gpkg", layer=slug)
        assert len(back) == len(gdf) and list(back.columns) == list(gdf.columns), slug


def test_errors_name_the_problem(small_communes):
    with pytest.raises(ValueError, match="scale must be one of"):
        generate_layers(small_communes, scale="huge")
    with pytest.raises(ValueError, match="no 'code' column"):
        generate_layers(small_communes, code_field="code")
    with pytest.raises(ValueError, match="no CRS"):
        generate_layers(small_communes.set_crs(None, allow_override=True))
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_layers(small_communes, seed=-1)


def test_other_crs_and_code_field_are_accepted(small_communes):
    moved = small_communes.rename(columns={"insee": "code"}).to_crs(4326)
    layers = generate_layers(moved, seed=5, code_field="code")
    assert layers["aerodromes"].crs.to_epsg() == 2154
    assert set(layers["arbres_alignement"]["codeinsee"]) <= set(small_communes["insee"])


@pytest.mark.lyon
def test_real_lyon_communes_get_every_layer_inside_them(lyon_layers, lyon_communes, catalogue):
    real_codes = set(lyon_communes["insee"])
    extent = extent_of(lyon_communes)
    for slug, gdf in lyon_layers.items():
        check_layer(slug, gdf, catalogue, extent)
    # attributes name the real communes; densities follow their area
    assert set(lyon_layers["arbres_alignement"]["codeinsee"]) <= real_codes
    assert set(lyon_layers["ore_gaz"]["code_insee"]) == real_codes
    area_km2 = lyon_communes.to_crs(2154).area.sum() / 1e6
    assert 150 < len(lyon_layers["batiments_bdtopo"]) / area_km2 < 1500
    assert 50 < len(lyon_layers["arbres_alignement"]) / area_km2 < 800


# Full scale: the ~534 km² metropole and its target totals (±15 %). Minutes, not seconds: opt-in.
FULL_TARGETS = {"arbres_alignement": 100_000, "batiments_bdtopo": 250_000, "arrets_tcl": 4_000,
                "eva_2015": 200_000, "espaces_publics": 10_000}
FULL_TARGETS_KM = {"ore_gaz": 3_000, "ore_bt_souterrain": 7_000, "ore_bt_aerien": 1_500, "assainissement": 3_000}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("IARBRE_SLOW") != "1", reason="full-scale generation: set IARBRE_SLOW=1")
def test_full_scale_totals(catalogue):
    communes = demo_communes(scale="full")
    layers = generate_layers(communes, scale="full")
    counts = {slug: len(gdf) for slug, gdf in layers.items()}
    for slug, target in FULL_TARGETS.items():
        assert 0.85 * target <= counts[slug] <= 1.15 * target, (slug, counts[slug])
    for slug, target in FULL_TARGETS_KM.items():
        km = shapely.length(layers[slug].geometry.to_numpy()).sum() / 1000
        assert 0.85 * target <= km <= 1.15 * target, (slug, km)
    assert counts["aerodromes"] == 1
    extent = extent_of(communes)
    for slug, gdf in layers.items():
        check_layer(slug, gdf, catalogue, extent)
    assert re.fullmatch(r"99\d{3}", communes["insee"].iloc[0])
