"""Agence ORE data-fair and CEREMA Cartofriches connectors against real local servers."""

from __future__ import annotations

import json

import pytest
import shapely

from connectors_helpers import (
    COMMUNE_BBOXES,
    GAS_DATASET,
    cartofriches_source,
    datafair_source,
    friches_frame,
    gas_frame,
)
from connectors_fakeserver import Reply, ScriptedServer
from iarbre_assets.connectors import ConnectorError, HttpClient, MalformedResponse, fetch_payload, parse_payload
from iarbre_assets.connectors.cartofriches import wgs84_bbox
from iarbre_demo.wire.datafair_writer import write_dataset_file

CLIENT = dict(timeout_s=2, retries=1, backoff_s=0.01)


def dataset_url(server) -> str:
    return f"{server.url}/data-fair/api/v1/datasets/{GAS_DATASET}/lines"


# -- data-fair --------------------------------------------------------------------------------------
def test_datafair_follows_next_and_keeps_attributes(local_server, client):
    source = datafair_source(dataset_url(local_server), page_size=4)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    # 9 lines match code_epci:200046977; size 4 -> 4 + 4 + 1, `next` absent on the last page
    assert payload.details["pages"] == 3 and payload.details["total"] == 9 and payload.ext == "zip"
    assert [("after=" in r["url"]) for r in payload.requests] == [False, True, True]
    assert "qs=code_epci%3A200046977" in payload.requests[0]["url"] and "size=4" in payload.requests[0]["url"]
    frame = parse_payload(source, payload.data, payload.ext)
    assert frame.crs == "EPSG:4326" and len(frame) == 9
    assert frame["materiau"].tolist() == [f"PE{i}" for i in range(9)]
    assert frame["diametre"].tolist() == [63.0 + i for i in range(9)]  # JSON numbers stay numbers
    assert set(frame["code_epci"]) == {"200046977"}
    expected = gas_frame().iloc[:9].to_crs("EPSG:4326")
    assert all(a.equals_exact(b, 1e-12) for a, b in zip(frame.geometry, expected.geometry))


def test_datafair_single_page_without_next(local_server, client):
    source = datafair_source(dataset_url(local_server), page_size=100, qs=None)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    assert payload.ext == "json" and json.loads(payload.data)["total"] == 12 and "next" not in json.loads(payload.data)
    assert len(parse_payload(source, payload.data, payload.ext)) == 12


def test_datafair_total_mismatch_is_malformed():
    page = {"total": 5, "results": [{"_i": 1, "geometry": '{"type":"Point","coordinates":[4.8,45.7]}'}]}
    with ScriptedServer([Reply(200, json.dumps(page).encode(), "application/json")]) as server:
        source = datafair_source(server.url + "/lines")
        with pytest.raises(MalformedResponse, match="received 1 records in 1 pages but 'total' is 5"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=HttpClient(**CLIENT))


@pytest.mark.parametrize("body, reason", [
    (b"<html>oops</html>", "not JSON"),
    (b'{"total": 3}', "expected an object with a 'results' list"),
    (b'[1, 2]', "expected an object"),
    (b'{"total": "many", "results": []}', "'total' is 'many'"),
])
def test_datafair_wrong_shapes_are_malformed(body, reason):
    with ScriptedServer([Reply(200, body, "application/json")]) as server:
        source = datafair_source(server.url + "/lines")
        with pytest.raises(MalformedResponse, match=reason):
            fetch_payload(source, data_dir=None, url=source.location.url, client=HttpClient(**CLIENT))


def test_datafair_next_loop_is_detected():
    base = {}

    def same_next_every_time(path, query):
        page = {"total": 10, "results": [{"_i": 1}], "next": f"{base['url']}/lines?after=1"}
        return Reply(200, json.dumps(page).encode(), "application/json")

    with ScriptedServer(same_next_every_time) as server:
        base["url"] = server.url
        source = datafair_source(server.url + "/lines")
        with pytest.raises(MalformedResponse, match="points back to an earlier page"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=HttpClient(**CLIENT))
    assert len(server.requests) == 2  # first page, its `next` once; the same `next` again is refused


def _fresh_cursors(results_of):
    """A server that always answers with a new `next` cursor; `results_of(n)` gives page n's records."""
    base = {}

    def endless(path, query):
        after = int(query.get("after", "0"))
        page = {"total": 424, "results": results_of(after), "next": f"{base['url']}/lines?after={after + 1}"}
        return Reply(200, json.dumps(page).encode(), "application/json")

    return base, endless


@pytest.mark.parametrize("results_of, reason, requests", [
    # new records on every page, beyond the 424 declared: stopped once past `total` (5 pages of 100)
    (lambda n: [{"_id": f"r{n}-{i}"} for i in range(100)], "received 500 records by page 5, more than the 424", 5),
    # the same records again under fresh cursors (no _id)
    (lambda n: [{"gid": i} for i in range(10)], "page 2 repeats the records of page 1", 2),
    # records already received, mixed with new ones
    (lambda n: [{"_id": f"r{n}"}, {"_id": "r0"}] if n else [{"_id": "r0"}], "already received .*_id 'r0'", 2),
])
def test_datafair_paging_that_never_ends_is_stopped_at_total_or_repeated_records(results_of, reason, requests):
    base, endless = _fresh_cursors(results_of)
    with ScriptedServer(endless) as server:
        base["url"] = server.url
        source = datafair_source(server.url + "/lines")
        with pytest.raises(MalformedResponse, match=reason):
            fetch_payload(source, data_dir=None, url=source.location.url, client=HttpClient(**CLIENT))
    assert len(server.requests) == requests


def test_datafair_dataset_file_is_deterministic_geojson_strings():
    data = write_dataset_file(gas_frame())
    assert data == write_dataset_file(gas_frame())
    record = json.loads(data)["results"][0]
    assert record["_i"] == 1 and isinstance(record["geometry"], str)
    assert json.loads(record["geometry"])["type"] == "LineString"
    lon, lat = json.loads(record["geometry"])["coordinates"][0]
    assert 4 < lon < 6 and 45 < lat < 47  # EPSG:4326, lon/lat


# -- Cartofriches -------------------------------------------------------------------------------------
def test_cartofriches_pages_per_commune(local_server, client):
    source = cartofriches_source(local_server.url + "/cartofriches/geofriches/", page_size=2)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, commune_bboxes=COMMUNE_BBOXES,
                            client=client)
    communes = {c["commune"]: (c["features"], c["pages"]) for c in payload.details["communes"]}
    # 69001: no site (1 page); 69002: 5 sites -> 2 + 2 + 1; 69003: 1 site
    assert communes == {"69001": (0, 1), "69002": (5, 3), "69003": (1, 1)}
    first = payload.requests[0]["url"]
    assert "coddep=69" in first and "code_insee=69001" in first and "page_size=2" in first and "in_bbox=" in first
    frame = parse_payload(source, payload.data, payload.ext)
    assert frame.crs == "EPSG:4326" and sorted(frame["site_id"]) == sorted(friches_frame()["site_id"])
    assert frame.loc[frame["site_id"] == "69003_0", "code_insee"].item() == "69003"
    expected = friches_frame().to_crs("EPSG:4326").set_index("site_id").geometry
    assert all(g.equals_exact(expected[s], 1e-12) for s, g in zip(frame["site_id"], frame.geometry))


def test_cartofriches_dedups_sites_returned_for_two_communes():
    def feature(fid):
        return {"type": "Feature", "id": fid, "geometry": {"type": "Point", "coordinates": [4.8, 45.7 + fid / 100]},
                "properties": {"site_id": f"S{fid}", "code_insee": "69001"}}

    def page(features, nxt=None):
        return Reply(200, json.dumps({"type": "FeatureCollection", "count": len(features), "next": nxt,
                                      "previous": None, "features": features}).encode(), "application/json")

    with ScriptedServer([page([feature(1), feature(2)]), page([feature(2), feature(3)])]) as server:
        source = cartofriches_source(server.url + "/cartofriches/geofriches/")
        payload = fetch_payload(source, data_dir=None, url=source.location.url,
                                commune_bboxes=COMMUNE_BBOXES[:2], client=HttpClient(**CLIENT))
    assert payload.details["features_with_duplicates"] == 4
    frame = parse_payload(source, payload.data, payload.ext)
    assert frame["site_id"].tolist() == ["S1", "S2", "S3"] and frame["id"].tolist() == [1, 2, 3]


def test_cartofriches_count_mismatch_is_malformed():
    body = json.dumps({"type": "FeatureCollection", "count": 3, "next": None, "features": []}).encode()
    with ScriptedServer([Reply(200, body, "application/json")]) as server:
        source = cartofriches_source(server.url + "/cartofriches/geofriches/")
        with pytest.raises(MalformedResponse, match="commune 69001: received 0 features but 'count' is 3"):
            fetch_payload(source, data_dir=None, url=source.location.url, commune_bboxes=COMMUNE_BBOXES[:1],
                          client=HttpClient(**CLIENT))


def test_cartofriches_needs_commune_boxes(local_server, client):
    source = cartofriches_source(local_server.url + "/cartofriches/geofriches/")
    with pytest.raises(ConnectorError, match="bounding boxes"):
        fetch_payload(source, data_dir=None, url=source.location.url, client=client)


def test_wgs84_box_contains_the_commune():
    from pyproj import Transformer

    bbox = COMMUNE_BBOXES[0][1]
    lonlat = shapely.box(*wgs84_bbox(bbox))
    to_wgs = Transformer.from_crs("EPSG:2154", "EPSG:4326", always_xy=True)
    corners = [to_wgs.transform(x, y) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])]
    assert all(lonlat.covers(shapely.Point(c)) for c in corners)
    assert 4.6 < lonlat.bounds[0] < 4.8 and 45.6 < lonlat.bounds[1] < 45.8  # 840 km E, 6510 km N: south of Lyon


def test_feature_limit_counts_across_datafair_pages_and_stops_at_the_page_that_crosses_it(local_server, client):
    from iarbre_assets.connectors import LimitExceeded, ReadingLimits

    source = datafair_source(dataset_url(local_server), page_size=4)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)  # 4 + 4 + 1
    assert len(parse_payload(source, payload.data, payload.ext, limits=ReadingLimits(max_features=9))) == 9
    with pytest.raises(LimitExceeded, match=r"^ore_gaz: page-00002\.json: more than 7 features"):
        parse_payload(source, payload.data, payload.ext, limits=ReadingLimits(max_features=7))
