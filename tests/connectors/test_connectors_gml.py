"""GML 3.2 writer and parser: round trips, axis order, 3-D, legacy shapes, exception reports, unsafe XML."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon

from connectors_helpers import trees_frame
from iarbre_assets.connectors import MalformedResponse, ServiceExceptionReport, UnsafeInput
from iarbre_assets.connectors.gml import parse_feature_collection, parse_srs_name, scan_feature_collection
from iarbre_demo.wire.gml_writer import write_feature_collection


def parse(data: bytes):
    return parse_feature_collection(data, source="src", location="page.gml")


def mixed_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"gid": [1, 2, 3, 4, 5, 6], "name": ["a", "b & <c>", None, "é", "x", " spaced "]},
        geometry=[
            Point(843000.1, 6519000.2),
            LineString([(0.1, 0.2), (1.0 / 3, 2.0 / 3), (2.5, 0.5)]),
            Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (3, 2), (3, 3), (2, 2)]]),
            MultiPolygon([Polygon([(0, 0), (1, 0), (1, 1)]), Polygon([(5, 5), (6, 5), (6, 6)])]),
            MultiLineString([[(0, 0, 1.5), (1, 1, 2.5)], [(3, 3, 3), (4, 4, 4)]]),
            MultiPoint([(1, 2), (3, 4)]),
        ],
        crs="EPSG:2154",
    )


def test_round_trip_every_geometry_type_exactly():
    frame = mixed_frame()
    page = parse(write_feature_collection(frame, "ns1:layer", id_field="gid"))
    got = page.features
    assert page.number_matched == 6 and page.number_returned == 6 and page.next_url is None
    assert got.crs == "EPSG:2154"
    assert list(got.columns) == ["gml_id", "gid", "name", "geometry"]
    assert got["gml_id"].tolist() == [f"layer.{i}" for i in range(1, 7)]
    assert got["gid"].tolist() == ["1", "2", "3", "4", "5", "6"]  # attributes come back as text
    assert got["name"].tolist() == ["a", "b & <c>", None, "é", "x", " spaced "]
    for expected, actual in zip(frame.geometry, got.geometry):
        assert expected.geom_type == actual.geom_type
        assert expected.equals_exact(actual, tolerance=0)  # repr-exact coordinates: 1/3 survives
    assert got.geometry.has_z.tolist() == [False, False, False, False, True, False]


def test_writer_is_deterministic_and_shapes_the_document():
    frame = trees_frame()
    first = write_feature_collection(frame, "a:b", id_field="gid", number_matched=40, next_url="http://x/?a=1&b=2")
    assert first == write_feature_collection(frame, "a:b", id_field="gid", number_matched=40,
                                             next_url="http://x/?a=1&b=2")
    text = first.decode()
    assert 'numberMatched="40" numberReturned="23"' in text
    assert 'next="http://x/?a=1&amp;b=2"' in text
    assert text.count("<wfs:member>") == 23
    assert "timeStamp" not in text  # nothing volatile unless asked
    assert '<gml:pos>840010.125 6510003.5</gml:pos>' in text
    assert '<a:essence xsi:nil="true"/>' in text


def test_3d_poslist_is_declared_and_kept():
    frame = gpd.GeoDataFrame(geometry=[LineString([(1, 2, 3), (4, 5, 6)])], crs="EPSG:2154")
    text = write_feature_collection(frame, "a:b").decode()
    assert 'srsDimension="3"' in text and "1.0 2.0 3.0 4.0 5.0 6.0" in text
    got = parse(text.encode()).features.geometry[0]
    assert got.has_z and list(got.coords) == [(1, 2, 3), (4, 5, 6)]


def test_epsg_4326_urn_is_written_and_read_latitude_first():
    frame = gpd.GeoDataFrame({"k": ["v"]}, geometry=[Point(4.85, 45.76)], crs="EPSG:4326")
    text = write_feature_collection(frame, "a:b", srs_name="urn:ogc:def:crs:EPSG::4326").decode()
    assert "<gml:pos>45.76 4.85</gml:pos>" in text  # EPSG axis order: lat, lon
    got = parse(text.encode()).features
    assert got.crs == "EPSG:4326"
    assert (got.geometry[0].x, got.geometry[0].y) == (4.85, 45.76)  # back to x = lon


@pytest.mark.parametrize(
    "srs, expected",
    [("EPSG:2154", ("EPSG:2154", False)), ("urn:ogc:def:crs:EPSG::3946", ("EPSG:3946", False)),
     ("http://www.opengis.net/def/crs/EPSG/0/2154", ("EPSG:2154", False)),
     ("http://www.opengis.net/def/crs/EPSG/0/4326", ("EPSG:4326", True)),
     ("urn:ogc:def:crs:EPSG::4326", ("EPSG:4326", True)), ("EPSG:4326", ("EPSG:4326", False)),
     ("urn:ogc:def:crs:OGC:1.3:CRS84", ("EPSG:4326", False))],
)
def test_srs_name_forms(srs, expected):
    assert parse_srs_name(srs) == expected


HAND_WRITTEN = b"""<?xml version="1.0" encoding="UTF-8"?>
<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:BDTOPO_V3="http://ign/bdtopo"
    numberMatched="unknown" numberReturned="3" next="http://srv/wfs?STARTINDEX=3">
  <wfs:boundedBy><gml:Envelope srsName="EPSG:2154"><gml:lowerCorner>0 0</gml:lowerCorner>
    <gml:upperCorner>9 9</gml:upperCorner></gml:Envelope></wfs:boundedBy>
  <wfs:member>
    <BDTOPO_V3:batiment gml:id="batiment.1">
      <BDTOPO_V3:cleabs>BATIMENT01</BDTOPO_V3:cleabs>
      <BDTOPO_V3:hauteur xsi:nil="true"/>
      <BDTOPO_V3:nature></BDTOPO_V3:nature>
      <BDTOPO_V3:geometrie>
        <gml:Surface gml:id="s1" srsName="http://www.opengis.net/def/crs/EPSG/0/4326" srsDimension="3">
          <gml:patches><gml:PolygonPatch><gml:exterior><gml:LinearRing>
            <gml:posList>45.0 4.0 170 45.0 4.1 171
                         45.1 4.1 172 45.0 4.0 170</gml:posList>
          </gml:LinearRing></gml:exterior></gml:PolygonPatch></gml:patches>
        </gml:Surface>
      </BDTOPO_V3:geometrie>
    </BDTOPO_V3:batiment>
  </wfs:member>
  <wfs:member>
    <BDTOPO_V3:batiment gml:id="batiment.2">
      <BDTOPO_V3:cleabs>BATIMENT02</BDTOPO_V3:cleabs>
      <BDTOPO_V3:geometrie>
        <gml:MultiPolygon srsName="http://www.opengis.net/def/crs/EPSG/0/4326">
          <gml:polygonMember><gml:Polygon><gml:exterior><gml:LinearRing>
            <gml:pos>45.5 4.5</gml:pos><gml:pos>45.5 4.6</gml:pos><gml:pos>45.6 4.6</gml:pos><gml:pos>45.5 4.5</gml:pos>
          </gml:LinearRing></gml:exterior></gml:Polygon></gml:polygonMember>
        </gml:MultiPolygon>
      </BDTOPO_V3:geometrie>
    </BDTOPO_V3:batiment>
  </wfs:member>
  <wfs:member>
    <BDTOPO_V3:batiment gml:id="batiment.3">
      <BDTOPO_V3:cleabs>BATIMENT03</BDTOPO_V3:cleabs>
      <BDTOPO_V3:geometrie>
        <gml:MultiLineString srsName="urn:ogc:def:crs:EPSG::4326">
          <gml:lineStringMember><gml:LineString><gml:coordinates>45.0,4.0 46.0,5.0</gml:coordinates></gml:LineString></gml:lineStringMember>
        </gml:MultiLineString>
      </BDTOPO_V3:geometrie>
    </BDTOPO_V3:batiment>
  </wfs:member>
</wfs:FeatureCollection>
"""


def test_hand_written_collection_with_surface_patches_legacy_names_and_lat_lon():
    page = parse(HAND_WRITTEN)
    got = page.features
    assert page.number_matched is None and page.number_returned == 3
    assert page.next_url == "http://srv/wfs?STARTINDEX=3"
    assert got.crs == "EPSG:4326"
    assert got["cleabs"].tolist() == ["BATIMENT01", "BATIMENT02", "BATIMENT03"]
    assert got["hauteur"].tolist() == [None, None, None]  # nil, then absent
    assert got["nature"].tolist() == [None, None, None]  # empty element
    surface = got.geometry[0]
    assert surface.geom_type == "Polygon" and surface.has_z
    assert list(surface.exterior.coords) == [(4.0, 45.0, 170.0), (4.1, 45.0, 171.0), (4.1, 45.1, 172.0),
                                             (4.0, 45.0, 170.0)]
    assert got.geometry[1].geom_type == "MultiPolygon"
    assert list(got.geometry[1].geoms[0].exterior.coords)[:2] == [(4.5, 45.5), (4.6, 45.5)]
    assert got.geometry[2].geom_type == "MultiLineString"
    assert list(got.geometry[2].geoms[0].coords) == [(4.0, 45.0), (5.0, 46.0)]


EXCEPTION = b"""<?xml version="1.0" encoding="UTF-8"?>
<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows/1.1" version="2.0.0">
  <ows:Exception exceptionCode="InvalidParameterValue" locator="typeName">
    <ows:ExceptionText>Feature type sytral:nope unknown</ows:ExceptionText>
  </ows:Exception>
</ows:ExceptionReport>"""


def test_exception_report_raises_with_code_locator_and_text():
    with pytest.raises(ServiceExceptionReport) as info:
        parse(EXCEPTION)
    message = str(info.value)
    assert message.startswith("src: page.gml: ")
    assert "InvalidParameterValue" in message and "typeName" in message and "sytral:nope unknown" in message
    assert info.value.exceptions == [{"exceptionCode": "InvalidParameterValue", "locator": "typeName",
                                      "text": "Feature type sytral:nope unknown"}]


def test_truncated_document_names_the_line():
    data = write_feature_collection(trees_frame(), "a:b")
    cut = data[: len(data) // 2]
    line = cut.count(b"\n") + 1
    with pytest.raises(MalformedResponse, match=rf"line {line}"):
        parse(cut)
    with pytest.raises(MalformedResponse, match="line"):
        scan_feature_collection(cut, source="src", location="page.gml")


@pytest.mark.parametrize("body", [b"", b"   ", b"not xml at all", b'{"json": true}'])
def test_garbage_is_malformed(body):
    with pytest.raises(MalformedResponse):
        parse(body)


def test_wrong_root_element_is_malformed():
    with pytest.raises(MalformedResponse, match="expected a wfs:FeatureCollection"):
        parse(b"<html><body>maintenance</body></html>")


def test_number_returned_must_match_members():
    data = write_feature_collection(trees_frame(), "a:b", number_returned=22)
    with pytest.raises(MalformedResponse, match="numberReturned=22 but the collection holds 23"):
        parse(data)


def test_external_entity_is_refused_and_never_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9")
    body = f"""<?xml version="1.0"?>
<!DOCTYPE wfs:FeatureCollection [<!ENTITY xxe SYSTEM "file://{secret}">]>
<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
  xmlns:a="urn:a" numberMatched="1" numberReturned="1">
<wfs:member><a:b gml:id="b.1"><a:name>&xxe;</a:name></a:b></wfs:member>
</wfs:FeatureCollection>""".encode()
    for call in (parse, lambda d: scan_feature_collection(d, source="src", location="page.gml")):
        with pytest.raises(UnsafeInput, match="DTD/entity declarations are refused") as info:
            call(body)
        assert "TOP-SECRET" not in str(info.value) and "TOP-SECRET" not in repr(info.value.__dict__)


def test_billion_laughs_is_refused():
    body = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<lolz>&lol2;</lolz>"""
    with pytest.raises(UnsafeInput):
        parse(body)


def test_undeclared_entity_is_malformed_not_resolved():
    body = b"""<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:a="urn:a">
<wfs:member><a:b><a:name>&foo;</a:name></a:b></wfs:member></wfs:FeatureCollection>"""
    with pytest.raises(MalformedResponse, match="line 2"):
        parse(body)


def test_missing_srs_name_gives_no_crs_and_mixed_crs_is_refused():
    frame = gpd.GeoDataFrame(geometry=[Point(1, 2)], crs="EPSG:2154")
    text = write_feature_collection(frame, "a:b", bounded_by=False).decode()
    bare = text.replace(' srsName="urn:ogc:def:crs:EPSG::2154"', "")
    assert parse(bare.encode()).features.crs is None
    two = write_feature_collection(gpd.GeoDataFrame(geometry=[Point(1, 2), Point(3, 4)], crs="EPSG:2154"), "a:b")
    mixed = two.replace(b"EPSG::2154", b"EPSG::3946", 2)  # first feature's envelope and geometry only
    with pytest.raises(MalformedResponse, match="several CRSs"):
        parse(mixed)


def test_empty_collection_parses_to_an_empty_frame():
    page = parse(write_feature_collection(gpd.GeoDataFrame(geometry=[], crs="EPSG:2154"), "a:b"))
    assert page.count == 0 and len(page.features) == 0 and page.number_matched == 0


def test_large_collection_parses_in_reasonable_time():
    n = 20_000
    rng = np.random.default_rng(1)
    frame = gpd.GeoDataFrame({"gid": np.arange(n)},
                             geometry=gpd.points_from_xy(rng.random(n) * 1e4, rng.random(n) * 1e4).buffer(3, 2),
                             crs="EPSG:2154")
    data = write_feature_collection(frame, "a:b", id_field="gid")
    got = parse(data).features
    assert len(got) == n
    assert np.allclose(got.geometry.area, frame.geometry.area, rtol=0, atol=1e-9)


def test_non_geometry_gml_property_is_kept_as_text():
    body = b"""<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
 xmlns:a="urn:a"><wfs:member><a:b gml:id="b.1">
 <a:quand><gml:TimeInstant gml:id="t1"><gml:timePosition>2025-05-06</gml:timePosition></gml:TimeInstant></a:quand>
 <a:geom><gml:Point srsName="EPSG:2154"><gml:pos>1 2</gml:pos></gml:Point></a:geom></a:b></wfs:member>
</wfs:FeatureCollection>"""
    got = parse(body).features
    assert got["quand"].tolist() == ["2025-05-06"] and got.geometry[0].x == 1


def test_unsupported_geometry_is_malformed_and_named():
    body = b"""<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
 xmlns:a="urn:a"><wfs:member><a:b gml:id="b.7"><a:geom><gml:Curve srsName="EPSG:2154"><gml:segments>
 <gml:Arc><gml:posList>0 0 1 1 2 0</gml:posList></gml:Arc></gml:segments></gml:Curve></a:geom></a:b></wfs:member>
</wfs:FeatureCollection>"""
    with pytest.raises(MalformedResponse, match=r"feature b.7, property 'geom': curve segment <Arc>"):
        parse(body)
