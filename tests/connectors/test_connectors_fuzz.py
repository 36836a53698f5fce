"""Fuzz: every file format and every wire parser, fed damaged bytes, ends in a frame or a named error.

Seeds are valid payloads written by the project's own writers; hypothesis truncates them, flips bytes,
re-encodes them, or writes geometries with NaN, huge or no coordinates. Whatever comes in, `parse_payload`
then `normalise` either give a GeoDataFrame or raise the project's own typed errors (ConnectorError,
NormaliseError), never another exception. The budget is small here (README's test command); run
`benchmarks/fuzz.py` for a larger one (`--hypothesis-profile=fuzz-long`).
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from connectors_helpers import cartofriches_source, datafair_source, file_source, wfs_source
from iarbre_assets.connectors import ConnectorError, parse_payload
from iarbre_assets.geo.normalise import NormaliseError, normalise
from iarbre_demo.wire.gml_writer import write_feature_collection



def _frame(geometries) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"gid": list(range(1, len(geometries) + 1)), "nom": ["Espace piétonnier"] * len(geometries)},
                            geometry=list(geometries), crs="EPSG:2154")


VALID = [shapely.box(842000, 6519000, 842010, 6519010), shapely.LineString([(842000, 6519000), (842050, 6519040)]),
         shapely.Point(842100, 6519100)]


def _geojson(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_file(buffer, driver="GeoJSON", engine="pyogrio")
    return buffer.getvalue()


def _parquet(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _zipped(name: str, body: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, body)
    return buffer.getvalue()


def _datafair_page(frame) -> bytes:
    records = [{"_id": f"r{i}", "code_epci": "200046977", "geo_shape": shapely.to_geojson(g)}
               for i, g in enumerate(frame.to_crs(4326).geometry)]
    return json.dumps({"total": len(records), "results": records}).encode()


def _friches_page(frame) -> bytes:
    features = [{"type": "Feature", "properties": {"site_id": f"s{i}"}, "geometry": json.loads(shapely.to_geojson(g))}
                for i, g in enumerate(frame.to_crs(4326).geometry)]
    return json.dumps({"type": "FeatureCollection", "count": len(features), "features": features}).encode()


def _seeds(tmp_dir):
    frame = _frame(VALID)
    gml = write_feature_collection(frame, "a:b", id_field="gid")
    return {
        "file geojson": (file_source(tmp_dir / "d.geojson"), _geojson(frame), "geojson"),
        "file gml": (file_source(tmp_dir / "d.gml"), gml, "gml"),
        "file parquet": (file_source(tmp_dir / "d.parquet"), _parquet(frame), "parquet"),
        "file zip": (file_source(tmp_dir / "d.zip"), _zipped("d.geojson", _geojson(frame)), "zip"),
        "wfs gml": (wfs_source("http://127.0.0.1:9/wfs"), gml, "gml"),
        "datafair json": (datafair_source("http://127.0.0.1:9/lines"), _datafair_page(frame), "json"),
        "cartofriches geojson": (cartofriches_source("http://127.0.0.1:9/friches"), _friches_page(frame), "geojson"),
    }


def _damage(data: bytes, how: str, position: float, flips: list[tuple[float, int]]) -> bytes:
    if how == "truncate":
        return data[: int(position * len(data))]
    if how == "flip":
        out = bytearray(data)
        for where, value in flips:
            out[min(len(out) - 1, int(where * len(out)))] = value
        return bytes(out)
    if how == "utf-16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if how == "latin-1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace")
    return data


BAD_COORDS = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 0.0])


@st.composite
def odd_geometries(draw):
    """Geometries with NaN, infinite or huge ordinates, empty or open rings."""
    kind = draw(st.sampled_from(["point", "line", "ring", "empty", "open"]))
    bad = draw(BAD_COORDS)
    if kind == "point":
        return shapely.Point(842000, bad)
    if kind == "line":
        return shapely.LineString([(842000, 6519000), (bad, 6519010)])
    if kind == "ring":
        return shapely.Polygon([(842000, 6519000), (842010, bad), (842010, 6519010), (842000, 6519000)])
    if kind == "empty":
        return shapely.Polygon()
    return shapely.Polygon([(842000, 6519000), (842010, 6519000), (842010, 6519010)])


def _ends_well(source, data: bytes, ext: str) -> None:
    """A frame, or one of the project's own errors; and the same for its normalisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            frame = parse_payload(source, data, ext)
        except ConnectorError as exc:
            assert str(exc).startswith(f"{source.slug}: "), f"unnamed error: {exc}"
            return
        assert isinstance(frame, gpd.GeoDataFrame)
        try:
            normalise(frame, source)
        except NormaliseError as exc:
            assert source.slug in str(exc)


SEED_NAMES = ["file geojson", "file gml", "file parquet", "file zip", "wfs gml", "datafair json", "cartofriches geojson"]


@pytest.mark.parametrize("seed", SEED_NAMES)
@given(how=st.sampled_from(["truncate", "flip", "utf-16", "latin-1"]), position=st.floats(0, 1),
       flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_damaged_bytes_end_in_a_frame_or_a_named_error(tmp_path_factory, seed, how, position, flips):
    source, data, ext = _seeds(tmp_path_factory.getbasetemp())[seed]
    _ends_well(source, _damage(data, how, position, flips), ext)


@pytest.mark.parametrize("writer", ["gml", "geojson", "parquet", "datafair"])
@given(odd=st.lists(odd_geometries(), min_size=1, max_size=4))
def test_nan_huge_empty_or_open_geometries_end_in_a_frame_or_a_named_error(tmp_path_factory, writer, odd):
    seeds = _seeds(tmp_path_factory.getbasetemp())
    frame = _frame(VALID + odd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = {"gml": lambda: write_feature_collection(frame, "a:b", id_field="gid"),
                    "geojson": lambda: _geojson(frame), "parquet": lambda: _parquet(frame),
                    "datafair": lambda: _datafair_page(frame)}[writer]()
        except (ValueError, shapely.errors.GEOSException):
            return  # a writer that cannot write it: nothing to deliver
    source, _, ext = seeds[{"gml": "file gml", "geojson": "file geojson", "parquet": "file parquet",
                            "datafair": "datafair json"}[writer]]
    _ends_well(source, data, ext)
