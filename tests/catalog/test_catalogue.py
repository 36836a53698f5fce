"""The factor catalogue loads, matches the published method, and refuses bad edits clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iarbre_assets.catalog import DEFAULT_CATALOG, ConfigFileError, load_catalog

# Published weights (plantability-method.md §1.2), keyed by the published French label.
PUBLISHED_WEIGHTS = {
    "Souches ou emplacements libres": 3, "Arbres": 1, "Aerodrome": -5, "Parkings": -2,
    "Entrée parking": -5, "Signalisation tricolore et lumineuse matériel": -2, "Station velov": -1,
    "Arrêts transport en commun": -2, "Proximité façade": -2, "Bâtiments": -5, "Friches": 2,
    "Assainissement": -1, "Parcs et jardins publics": 2, "Giratoires": 2, "Espaces jeux et pietonnier": 1,
    "Friche naturelle": 3, "Réseau Fibre": 2, "Marchés forains": 1, "Pistes cyclable": -1, "Plan eau": -5,
    "Ponts": -5, "Réseau de chaleur urbain": -3, "Voies ferrées": -5, "Strate arborée": 1,
    "Strate basse et pelouse": 3, "Espaces agricoles": 1, "Forêts": 1, "Espaces artificialisés": -2,
    "Tracé de métro": -2, "Tracé de tramway": -2, "Tracé de bus": -1, "Rsx gaz": -3,
    "Rsx souterrains ERDF": -1, "Rsx aériens ERDF": -2, "PMR": -4, "Auto-partage": -2, "QPV": 0,
}
PUBLISHED_BUFFERS_M = {
    "Souches ou emplacements libres": 1, "Entrée parking": 5, "Signalisation tricolore et lumineuse matériel": 2,
    "Station velov": 6, "Arrêts transport en commun": 2.5, "Proximité façade": 2, "Assainissement": 1,
    "Réseau Fibre": 2, "Pistes cyclable": 2, "Plan eau": 0.1, "Ponts": 2, "Réseau de chaleur urbain": 2,
    "Voies ferrées": 1, "Tracé de métro": 25, "Tracé de tramway": 3.5, "Tracé de bus": 1.5, "Rsx gaz": 2,
    "Rsx souterrains ERDF": 2, "Rsx aériens ERDF": 1, "PMR": 3, "Auto-partage": 3,
}


def test_catalogue_has_the_37_published_factors_with_their_weights():
    catalogue = load_catalog()
    assert len(catalogue.factors) == 37
    assert {f.label: f.weight for f in catalogue.factors} == PUBLISHED_WEIGHTS
    assert len({f.slug for f in catalogue.factors}) == 37
    assert all(f.slug.isascii() for f in catalogue.factors)


def test_six_blocking_factors():
    blocking = {f.label for f in load_catalog().factors if f.blocking}
    assert blocking == {"Aerodrome", "Entrée parking", "Bâtiments", "Plan eau", "Ponts", "Voies ferrées"}


def test_factor_api_exposes_label_slug_weight_blocking_meta_source():
    factor = load_catalog().factor("reseau_gaz")
    assert (factor.label, factor.weight, factor.blocking, factor.meta, factor.source) == (
        "Rsx gaz", -3, False, "reseaux_infrastructures", "ore_gaz")
    assert load_catalog().sources["ore_gaz"].partner == "grdf"


def test_published_buffers_and_tree_radius_rule():
    catalogue = load_catalog()
    for factor in catalogue.factors:
        if factor.label in PUBLISHED_BUFFERS_M:
            assert factor.buffer.distance_m == PUBLISHED_BUFFERS_M[factor.label], factor.label
    trees = catalogue.factor("arbres").buffer
    assert (trees.radius_from, trees.unit, trees.to_metres) == ("circonference_cm", "cm", 0.01)


def test_meta_mapping_counts_the_factors_the_reference_misspelt():
    mapping = load_catalog().meta_mapping
    assert "forets" in mapping["espaces_verts"]
    assert "marches_forains" in mapping["amenagements_urbains"]
    assert mapping["plan_eau"] == ["plan_eau"]
    # every scored factor is in exactly one group; QPV (display only) in none
    grouped = [slug for slugs in mapping.values() for slug in slugs]
    assert sorted(grouped) == sorted(f.slug for f in load_catalog().scored_factors)
    assert "qpv" not in grouped


def test_score_bounds_and_weight_sums():
    catalogue = load_catalog()
    assert catalogue.score_bounds == (-33, 23)
    assert len(catalogue.scored_factors) == 36


def _mutated(tmp_path: Path, name: str, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _factor(data, slug):
    return next(f for f in data["factors"] if f["slug"] == slug)


BAD_CATALOGUES = {
    "unknown_source": (lambda d: _factor(d, "reseau_gaz").update(source="grdf_gaz"), "source", "unknown source 'grdf_gaz'"),
    "duplicate_slug": (lambda d: _factor(d, "arbres").update(slug="aerodrome"), "slug", "duplicate slug 'aerodrome'"),
    "missing_weight": (lambda d: _factor(d, "ponts").pop("weight"), "weight", "Field required"),
    "weight_wrong_type": (lambda d: _factor(d, "ponts").update(weight="very negative"), "weight", "valid number"),
    "weight_out_of_range": (lambda d: _factor(d, "friches").update(weight=12), "weight", "outside [-5.0, 5.0]"),
    "unknown_field": (lambda d: _factor(d, "friches").update(wieght=2), "wieght", "Extra inputs are not permitted"),
    "unknown_meta": (lambda d: _factor(d, "forets").update(meta="foret"), "meta", "unknown meta-factor 'foret'"),
    "filter_on_undeclared_column": (
        lambda d: _factor(d, "giratoires")["where"][0].update(field="typeespace"), "where", "'typeespace'"),
    "unbuffered_points": (lambda d: _factor(d, "station_velov").pop("buffer"), "buffer", "cover no cell"),
    "unknown_partner": (lambda d: d["sources"]["ore_gaz"].update(partner="gdf"), "partner", "unknown partner 'gdf'"),
    "bad_cadence": (lambda d: d["sources"]["ore_gaz"].update(cadence="yearly"), "cadence", "ISO 8601"),
}


@pytest.mark.parametrize("case", sorted(BAD_CATALOGUES))
def test_bad_catalogue_fails_naming_file_and_field(tmp_path, case):
    mutate, field, message = BAD_CATALOGUES[case]
    path = _mutated(tmp_path, case, mutate)
    with pytest.raises(ConfigFileError) as excinfo:
        load_catalog(path)
    text = str(excinfo.value)
    assert str(path) in text
    assert field in text
    assert message in text


def test_duplicate_yaml_key_is_refused(tmp_path):
    text = DEFAULT_CATALOG.read_text(encoding="utf-8")
    anchor = "  aerodromes:\n"
    path = tmp_path / "dup_key.yaml"
    block = text[text.index(anchor):text.index("  parkings_surfaciques:\n")]
    path.write_text(text.replace(anchor, block + anchor, 1), encoding="utf-8")
    with pytest.raises(ConfigFileError, match=r"duplicate key 'aerodromes'") as excinfo:
        load_catalog(path)
    assert str(path) in str(excinfo.value)


def test_rendered_catalogue_documentation_is_up_to_date():
    from iarbre_assets.catalog.render import render_catalogue_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "catalogue.md"
    assert doc.read_text(encoding="utf-8") == render_catalogue_markdown(load_catalog()), \
        "docs/catalogue.md is stale: run `iarbre catalogue`"
    assert "| 37 | QPV |" in doc.read_text(encoding="utf-8")
