"""Partner files: every format in a CRS other than Lambert-93, CRS rules, layers, unsafe zips."""

from __future__ import annotations

import os
import stat
import zipfile
from io import BytesIO

import geopandas as gpd
import pytest
from shapely.geometry import box

from connectors_helpers import file_source
from iarbre_assets.connectors import (
    FetchError,
    MissingCRS,
    UnreadableFile,
    UnsafeInput,
    fetch_payload,
    parse_payload,
)
from iarbre_demo.wire.gml_writer import write_feature_collection


def cc46_frame() -> gpd.GeoDataFrame:
    """Three parcels in EPSG:3946 (RGF93 / CC46, the CRS of Lyon's public-space file)."""
    return gpd.GeoDataFrame(
        {"idespace": ["E1", "E2", "E3"], "surface": [100.0, 200.0, 300.0]},
        geometry=[box(1842500 + 100 * i, 5176300, 1842510 + 100 * i, 5176310 + i) for i in range(3)],
        crs="EPSG:3946",
    )


def load(path, **kw):
    source = file_source(path, **kw)
    payload = fetch_payload(source, data_dir=path.parent)
    return payload, parse_payload(source, payload.data, payload.ext)


def assert_cc46(frame):
    expected = cc46_frame()
    assert frame.crs == "EPSG:3946"
    assert frame["idespace"].tolist() == ["E1", "E2", "E3"]
    # shapefiles store rings clockwise: compare normalised geometries
    assert all(a.normalize().equals_exact(b.normalize(), 1e-6) for a, b in zip(frame.geometry, expected.geometry))


def test_geojson_in_cc46(tmp_path):
    path = tmp_path / "espaces.geojson"
    cc46_frame().to_file(path, driver="GeoJSON")
    payload, frame = load(path)
    assert payload.ext == "geojson" and payload.data == path.read_bytes() and payload.origin == str(path)
    assert_cc46(frame)


def test_relative_path_resolves_against_the_data_dir(tmp_path):
    cc46_frame().to_file(tmp_path / "espaces.geojson", driver="GeoJSON")
    source = file_source("espaces.geojson")
    payload = fetch_payload(source, data_dir=tmp_path)
    assert payload.origin == str(tmp_path / "espaces.geojson")


def test_geopackage_with_several_layers(tmp_path):
    path = tmp_path / "voirie.gpkg"
    cc46_frame().to_file(path, layer="pub_patrimoinevoirie.sltmateriel", driver="GPKG")
    cc46_frame().iloc[:1].to_file(path, layer="pub_patrimoinevoirie.emplacementpmr", driver="GPKG")
    payload, frame = load(path, layer="pub_patrimoinevoirie.sltmateriel")
    assert payload.ext == "gpkg"
    assert_cc46(frame)
    source = file_source(path)
    with pytest.raises(UnreadableFile, match="several layers and none configured") as info:
        parse_payload(source, payload.data, payload.ext)
    assert "pub_patrimoinevoirie.emplacementpmr" in str(info.value) and "sltmateriel" in str(info.value)
    with pytest.raises(UnreadableFile, match=r"no layer 'nope'; available layers: \["):
        parse_payload(file_source(path, layer="nope"), payload.data, payload.ext)


def test_shapefile_is_bundled_with_its_siblings_deterministically(tmp_path):
    path = tmp_path / "eva.shp"
    cc46_frame().to_file(path, driver="ESRI Shapefile")
    payload, frame = load(path)
    assert payload.ext == "zip"
    with zipfile.ZipFile(BytesIO(payload.data)) as archive:
        assert sorted(archive.namelist()) == ["eva.cpg", "eva.dbf", "eva.prj", "eva.shp", "eva.shx"]
    assert_cc46(frame)
    os.utime(path, (1e9, 1e9))  # a new modification time changes nothing in the bytes
    again = fetch_payload(file_source(path), data_dir=tmp_path)
    assert again.data == payload.data


def test_zipped_shapefile(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    cc46_frame().to_file(folder / "new_all_eva.shp", driver="ESRI Shapefile")
    archive_path = tmp_path / "new_all_eva.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for part in sorted(folder.iterdir()):
            archive.write(part, f"new_all_eva/{part.name}")
    payload, frame = load(archive_path)
    assert payload.ext == "zip" and payload.data == archive_path.read_bytes()
    assert_cc46(frame)


def test_zip_with_two_datasets_needs_a_layer(tmp_path):
    archive_path = tmp_path / "two.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for name in ("a", "b"):
            buffer = BytesIO()
            cc46_frame().to_file(buffer, driver="GeoJSON")
            archive.writestr(f"{name}.geojson", buffer.getvalue())
    with pytest.raises(UnreadableFile, match=r"several datasets \['a.geojson', 'b.geojson'\]"):
        load(archive_path)
    _, frame = load(archive_path, layer="b")
    assert_cc46(frame)


def test_gml_file_in_cc46(tmp_path):
    path = tmp_path / "espaces.gml"
    path.write_bytes(write_feature_collection(cc46_frame(), "ns:espaces", srs_name="urn:ogc:def:crs:EPSG::3946"))
    payload, frame = load(path)
    assert payload.ext == "gml"
    assert frame["surface"].tolist() == ["100.0", "200.0", "300.0"]
    assert_cc46(frame)


def test_geoparquet_in_cc46(tmp_path):
    path = tmp_path / "espaces.parquet"
    cc46_frame().to_parquet(path)
    payload, frame = load(path)
    assert payload.ext == "parquet"
    assert_cc46(frame)
    assert frame["surface"].tolist() == [100.0, 200.0, 300.0]


def test_plain_parquet_is_not_geoparquet(tmp_path):
    path = tmp_path / "table.parquet"
    cc46_frame().drop(columns="geometry").to_parquet(path)
    with pytest.raises(UnreadableFile, match="not GeoParquet"):
        load(path)


def test_lyon_public_spaces_keep_their_cc46_crs(lyon_dir):
    _, frame = load(lyon_dir / "espacepublic2025.geojson")
    assert frame.crs == "EPSG:3946" and len(frame) == 5
    assert frame["typeespacepublic"].value_counts().to_dict() == {"Espace piétonnier": 4, "Parking": 1}
    assert (frame.geometry.geom_type == "MultiPolygon").all()
    assert sorted(round(a, 1) for a in frame.geometry.area) == [213.6, 2010.5, 2055.9, 2260.7, 7403.3]


# -- CRS rules ------------------------------------------------------------------------------------------
def test_shapefile_without_prj_needs_a_configured_crs(tmp_path):
    path = tmp_path / "noprj.shp"
    cc46_frame().to_file(path, driver="ESRI Shapefile")
    (tmp_path / "noprj.prj").unlink()
    with pytest.raises(MissingCRS, match=r"partner_file: .*noprj.shp: the file declares no CRS; set `crs`"):
        load(path)
    _, frame = load(path, crs="EPSG:3946")
    assert_cc46(frame)


def test_geojson_in_metres_without_crs_member(tmp_path):
    path = tmp_path / "bare.geojson"
    frame = cc46_frame()
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        frame.set_crs(None, allow_override=True).to_file(path, driver="GeoJSON")
    assert b'"crs"' not in path.read_bytes()
    with pytest.raises(MissingCRS, match="not longitude/latitude"):
        load(path)
    _, got = load(path, crs="EPSG:3946")
    assert_cc46(got)


def test_geojson_in_lon_lat_without_crs_member_is_wgs84(tmp_path):
    path = tmp_path / "wgs.geojson"
    path.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"a":1},'
                    '"geometry":{"type":"Point","coordinates":[4.85,45.76]}}]}')
    _, frame = load(path)
    assert frame.crs == "EPSG:4326" and (frame.geometry[0].x, frame.geometry[0].y) == (4.85, 45.76)


def test_declared_crs_wins_over_the_configured_one(tmp_path):
    path = tmp_path / "espaces.gpkg"
    cc46_frame().to_file(path, driver="GPKG")
    _, frame = load(path, crs="EPSG:2154")
    assert frame.crs == "EPSG:3946"


def test_gml_without_srs_name(tmp_path):
    path = tmp_path / "bare.gml"
    text = write_feature_collection(cc46_frame(), "ns:x", bounded_by=False).decode()
    path.write_text(text.replace(' srsName="urn:ogc:def:crs:EPSG::2154"', ""))
    with pytest.raises(MissingCRS):
        load(path)
    _, frame = load(path, crs="EPSG:3946")
    assert frame.crs == "EPSG:3946"


def test_geoparquet_with_null_crs(tmp_path):
    path = tmp_path / "nocrs.parquet"
    cc46_frame().set_crs(None, allow_override=True).to_parquet(path)
    with pytest.raises(MissingCRS):
        load(path)


# -- unreadable and unsafe input ------------------------------------------------------------------------
def test_empty_file(tmp_path):
    path = tmp_path / "empty.geojson"
    path.write_bytes(b"")
    with pytest.raises(UnreadableFile, match="empty file"):
        load(path)
    with pytest.raises(UnreadableFile, match="empty file"):
        parse_payload(file_source(path), b"", "geojson")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FetchError, match="no such file"):
        load(tmp_path / "absent.geojson")
    csv = tmp_path / "points.csv"
    csv.write_text("x,y\n1,2\n")
    with pytest.raises(UnreadableFile, match="unknown format '.csv'"):
        load(csv)


def test_corrupt_geopackage(tmp_path):
    path = tmp_path / "broken.gpkg"
    path.write_bytes(b"this is not sqlite")
    with pytest.raises(UnreadableFile, match="not a readable gpkg dataset"):
        load(path)


def _zip_with(tmp_path, name: str, info: zipfile.ZipInfo | None = None):
    path = tmp_path / "evil.zip"
    buffer = BytesIO()
    cc46_frame().to_file(buffer, driver="GeoJSON")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.geojson", buffer.getvalue())
        archive.writestr(info or name, b"gotcha")
    return path


@pytest.mark.parametrize("name, reason", [("../escape.txt", "'..' component"), ("a/../../escape.txt", "'..'"),
                                          ("/etc/escape.txt", "absolute path"), ("C:/escape.txt", "absolute path")])
def test_zip_entries_escaping_the_directory_are_refused(tmp_path, name, reason):
    path = _zip_with(tmp_path, name)
    with pytest.raises(UnsafeInput, match=reason):
        load(path)
    assert not (tmp_path.parent / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_zip_symlink_entry_is_refused(tmp_path):
    info = zipfile.ZipInfo("link.geojson")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip_with(tmp_path, "", info)
    with pytest.raises(UnsafeInput, match="symbolic link"):
        load(path)


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tmp_path):
    """300 MiB of zeros packed in ~300 KB, beside a valid layer: refused from the declared sizes."""
    path = tmp_path / "bomb.zip"
    buffer = BytesIO()
    cc46_frame().to_file(buffer, driver="GeoJSON")
    chunk = b" " * (1024 * 1024)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ok.geojson", buffer.getvalue())
        with archive.open("padding.txt", "w", force_zip64=True) as entry:
            for _ in range(300):
                entry.write(chunk)
    assert path.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(UnsafeInput, match=r"^partner_file: .*bomb\.zip: .*inflate .* \(\d+:1.*zip bomb"):
        load(path)
    assert not any(p.stat().st_size > 1024 * 1024 for p in tmp_path.rglob("*") if p.is_file() and p != path)


def test_archive_limits_count_entries_and_total_size():
    from iarbre_assets.connectors.payload import ReadingLimits, deterministic_zip, read_bundle

    bundle = deterministic_zip([(f"page-{i:05d}.json", b"{}" * 100) for i in range(5)])
    assert len(read_bundle(bundle, "zip", source="s")) == 5
    with pytest.raises(UnsafeInput, match="5 entries, more than the 4 accepted"):
        read_bundle(bundle, "zip", source="s", limits=ReadingLimits(max_archive_entries=4))
    with pytest.raises(UnsafeInput, match="inflate to 0.00 GiB, more than"):
        read_bundle(bundle, "zip", source="s", limits=ReadingLimits(max_uncompressed_bytes=999))
    # well-compressed but small: no ratio limit below its threshold
    assert len(read_bundle(bundle, "zip", source="s", limits=ReadingLimits(max_compression_ratio=1.0))) == 5
    with pytest.raises(UnsafeInput, match="zip bomb"):
        read_bundle(bundle, "zip", source="s", limits=ReadingLimits(max_compression_ratio=1.0, ratio_from_bytes=10))


def test_relative_path_without_data_dir_is_a_fetch_error():
    with pytest.raises(FetchError, match="needs a data directory"):
        fetch_payload(file_source("espaces.geojson"), data_dir=None)


def _limited(path, **limits):
    from iarbre_assets.connectors import ReadingLimits

    source = file_source(path)
    payload = fetch_payload(source, data_dir=path.parent)
    return parse_payload(source, payload.data, payload.ext, limits=ReadingLimits(**limits))


@pytest.mark.parametrize("fmt", ["geojson", "gpkg", "gml"])
def test_feature_limit_refuses_a_file_naming_source_file_and_limit(tmp_path, fmt):
    from iarbre_assets.connectors import LimitExceeded

    path = tmp_path / f"espaces.{fmt}"
    if fmt == "gml":
        path.write_bytes(write_feature_collection(cc46_frame(), "eau:espace", srs_name="urn:ogc:def:crs:EPSG::3946"))
    else:
        cc46_frame().to_file(path, driver="GeoJSON" if fmt == "geojson" else "GPKG")
    assert len(_limited(path, max_features=3)) == 3  # at the limit is accepted
    with pytest.raises(LimitExceeded, match=rf"^partner_file: .*espaces\.{fmt}.*: more than 2 features "
                                            r"\(limits\.max_features\); refused"):
        _limited(path, max_features=2)


def test_vertex_limit_counts_every_coordinate(tmp_path):
    from iarbre_assets.connectors import LimitExceeded

    path = tmp_path / "espaces.geojson"
    cc46_frame().to_file(path, driver="GeoJSON")  # three boxes of 5 coordinates each
    assert len(_limited(path, max_vertices=15)) == 3
    with pytest.raises(LimitExceeded, match=r"more than 14 vertices \(limits\.max_vertices\)"):
        _limited(path, max_vertices=14)


def test_a_geojson_ring_left_open_is_closed_and_counted(tmp_path):
    ring = [[1842500, 5176300], [1842510, 5176300], [1842510, 5176310], [1842500, 5176310]]  # no closing point
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3946"}},
           "features": [{"type": "Feature", "properties": {"idespace": "E1"},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    path = tmp_path / "espaces.geojson"
    path.write_text(__import__("json").dumps(doc))
    _payload, frame = load(path)
    assert frame.attrs["rings_closed"] == 1 and frame.crs == "EPSG:3946"
    assert frame.geometry.iloc[0].equals(box(1842500, 5176300, 1842510, 5176310))
