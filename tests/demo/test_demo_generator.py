"""The demo generator writes every source in its wire format, byte-for-byte reproducibly, and every
dataset reads back through the real connectors with the CRS and attributes the catalogue expects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from iarbre_assets.catalog import load_catalog, load_territory
from iarbre_assets.connectors import fetch_payload, parse_payload
from iarbre_demo.generator import datafair_dataset_id, generate_demo, is_generated, wfs_file_name
from iarbre_demo.server import LocalDataServer
from iarbre_assets.catalog.territory import expand_url

CATALOGUE = load_catalog()


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out)
    return out


def test_generation_is_byte_for_byte_reproducible(demo_dir, tmp_path):
    again = tmp_path / "again"
    generate_demo(again)
    assert is_generated(demo_dir) and is_generated(again)
    first, second = _digests(demo_dir), _digests(again)
    assert first == second
    expected = set()  # one file per served layer and per partner file of the demo territory
    for location in load_territory("demo").sources.values():
        if location.kind in {"wfs", "ign_wfs"}:
            expected.add(f"wire/wfs/{wfs_file_name(location.typename)}")
        elif location.kind == "datafair":
            expected.add(f"wire/datafair/{datafair_dataset_id(location.url)}.json")
        elif location.kind == "cartofriches":
            expected.add("wire/cartofriches/geofriches.geojson")
        else:
            expected.add(location.path)
    assert expected | {"communes.geojson", "iris_synthetiques.geojson"} <= set(first)
    other = tmp_path / "other_seed"
    generate_demo(other, seed=7)
    assert _digests(other) != first


def test_every_source_reads_back_through_its_connector(demo_dir):
    territory = load_territory("demo")
    sources = territory.source_defs(CATALOGUE)
    with LocalDataServer(demo_dir / "wire") as server:
        for slug, source in sources.items():
            url = expand_url(source.location.url, {"LOCAL_SERVER": server.url}) if hasattr(source.location, "url") else None
            payload = fetch_payload(source, data_dir=demo_dir, url=url, commune_bboxes=_bboxes(demo_dir))
            frame = parse_payload(source, payload.data, payload.ext)
            assert len(frame) > 0, slug
            assert frame.crs is not None, slug
            for column in source.columns:
                assert column in frame.columns, (slug, column)
    # the real wire formats: GML 3.2 for WFS layers, data-fair records with GeoJSON strings in EPSG:4326
    gml = (demo_dir / "wire" / "wfs" / "BDTOPO_V3__batiment.gml").read_text(encoding="utf-8")
    assert "http://www.opengis.net/gml/3.2" in gml and "numberMatched" in gml
    datafair = (demo_dir / "wire" / "datafair" / "infrastructures-reseau-gaz.json").read_text(encoding="utf-8")
    assert '"geometry":"{\\"type\\":' in datafair
    import geopandas as gpd

    public_spaces = gpd.read_file(demo_dir / "espacepublic2025.geojson")
    assert public_spaces.crs.to_epsg() == 3946  # like the real file
    import pyogrio

    layers = {name for name, _ in pyogrio.list_layers(demo_dir / "voirie.gpkg")}
    assert {"pub_patrimoinevoirie.sltmateriel", "pub_patrimoinevoirie.emplacementpmr",
            "pub_patrimoinevoirie.stationautopartage", "pub_app_patrimoinevoirie.liengeniecivil"} <= layers


def _bboxes(demo_dir: Path):
    import geopandas as gpd

    communes = gpd.read_file(demo_dir / "communes.geojson")
    return [(row.insee, tuple(row.geometry.bounds)) for row in communes.itertuples()]
