"""Territory files load, bind every source, and refuse bad files naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iarbre_assets.catalog import ConfigFileError, load_catalog, load_territory, territory_path
from iarbre_assets.catalog.models import DatafairLocation, FileLocation, WfsLocation


def test_shipped_territories_load():
    catalogue = load_catalog()
    for name in ("demo", "lyon"):
        territory = load_territory(name)
        sources = territory.source_defs(catalogue)
        # every factor source, plus the communes layer, has a location
        needed = {s for f in territory.selected_factors(catalogue) for s in f.sources}
        assert needed | {"communes"} <= set(sources)
        assert territory.grid.cell_size_m == 5 and territory.grid.factor == 5


def test_lyon_carries_the_reference_endpoints():
    sources = load_territory("lyon").source_defs(load_catalog())
    trees = sources["arbres_alignement"].location
    assert isinstance(trees, WfsLocation)
    assert trees.url == "https://data.grandlyon.com/geoserver/metropole-de-lyon/ows"
    assert trees.typename == "metropole-de-lyon:abr_arbres_alignement.abrarbre"
    gas = sources["ore_gaz"].location
    assert isinstance(gas, DatafairLocation) and gas.qs == "code_epci:200046977"
    assert gas.url.endswith("/datasets/infrastructures-reseau-gaz/lines")
    assert sources["batiments_bdtopo"].location.typename == "BDTOPO_V3:batiment"
    assert sources["slt_materiel"].location == FileLocation(path="voirie.gpkg", layer="pub_patrimoinevoirie.sltmateriel")


def test_demo_serves_its_remote_layers_locally():
    territory = load_territory("demo")
    assert territory.local_server is not None
    for slug, location in territory.sources.items():
        url = getattr(location, "url", None)
        if url:
            assert url.startswith("${LOCAL_SERVER}/"), slug
    assert territory.iris is not None and territory.iris.synthetic


def _write_variant(tmp_path: Path, name: str, mutate) -> Path:
    data = yaml.safe_load(territory_path("demo").read_text(encoding="utf-8"))
    mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


BAD_TERRITORIES = {
    "unknown_source": (lambda d: d["sources"].update(grdf_gaz={"kind": "file", "path": "gaz.geojson"}),
                       "sources.grdf_gaz", "unknown source 'grdf_gaz'"),
    "missing_source": (lambda d: d["sources"].pop("ore_gaz"), "sources", "no location for source 'ore_gaz'"),
    "unknown_crs": (lambda d: d["sources"]["assainissement"].update(crs="EPSG:999999"), "crs", "unknown CRS"),
    "grid_not_lambert93": (lambda d: d["grid"].update(crs="EPSG:3946"), "grid.crs", "must be in EPSG:2154"),
    "cell_not_multiple": (lambda d: d["grid"].update(cell_size_m=5.5), "grid", "whole multiple"),
    "wrong_type": (lambda d: d["grid"].update(cell_size_m="five"), "grid.cell_size_m", "valid number"),
    "unknown_factor": (lambda d: d.update(factors=["arbres", "baobabs"]), "factors", "unknown factor 'baobabs'"),
    "unknown_field": (lambda d: d.update(comunes=d["communes"]), "comunes", "Extra inputs are not permitted"),
    "bad_connector_kind": (lambda d: d["sources"]["ore_gaz"].update(kind="ftp"), "sources.ore_gaz", "kind"),
    "missing_code_field": (lambda d: d["communes"].pop("code_field"), "communes.code_field", "Field required"),
    "unknown_limit": (lambda d: d.update(limits={"max_files": 3}), "limits.max_files", "Unexpected keyword"),
    "limit_not_positive": (lambda d: d.update(limits={"max_vertices": 0}), "limits", "max_vertices must be positive"),
}


@pytest.mark.parametrize("case", sorted(BAD_TERRITORIES))
def test_bad_territory_fails_naming_file_and_field(tmp_path, case):
    mutate, field, message = BAD_TERRITORIES[case]
    path = _write_variant(tmp_path, case, mutate)
    with pytest.raises(ConfigFileError) as excinfo:
        load_territory(path)
    text = str(excinfo.value)
    assert str(path) in text and field in text and message in text, text


def test_unknown_territory_name_lists_the_shipped_ones():
    with pytest.raises(ConfigFileError, match=r"shipped territories are \['demo', 'lyon'\]"):
        load_territory("atlantis")


def test_data_dir_resolution_ignores_the_environment(tmp_path, monkeypatch):
    territory = load_territory("demo")
    assert territory.data_dir_path(tmp_path) == (tmp_path / "data" / "demo").resolve()
    assert territory.data_dir_path(tmp_path, override=tmp_path / "x") == (tmp_path / "x").resolve()
    # configuration reaches the code as arguments (the territory resource), never through the environment
    monkeypatch.setenv("IARBRE_DATA_DIR", str(tmp_path / "env"))
    assert territory.data_dir_path(tmp_path) == (tmp_path / "data" / "demo").resolve()


def test_reading_limits_default_and_change_per_territory(tmp_path):
    from iarbre_assets.connectors import READING_LIMITS

    assert load_territory(territory_path("demo")).limits == READING_LIMITS
    path = _write_variant(tmp_path, "small_limits", lambda d: d.update(limits={"max_features": 1000}))
    limits = load_territory(path).limits
    assert limits.max_features == 1000 and limits.max_vertices == READING_LIMITS.max_vertices
