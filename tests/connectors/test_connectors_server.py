"""LocalDataServer: WFS paging/BBOX/next, exception reports, data-fair and Cartofriches paging, caching."""

from __future__ import annotations

import os
import re
import threading

import geopandas as gpd
import numpy as np
import pytest
import requests
import shapely
from shapely.geometry import LineString

from connectors_helpers import BUILDING_TYPENAME, GAS_DATASET, TREE_TYPENAME, buildings_frame, trees_frame
from iarbre_assets.connectors.gml import parse_feature_collection
from iarbre_assets.connectors.ows import exception_report
from iarbre_demo.server import GmlIndex, LocalDataServer
from iarbre_demo.wire.gml_writer import write_feature_collection


def wfs(server, path="/ows", **params):
    query = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", **params}
    return requests.get(server.url + path, params=query, timeout=5)


def page_of(response):
    return parse_feature_collection(response.content, source="t", location=response.url)


def test_pages_and_next_link(local_server):
    response = wfs(local_server, TYPENAMES=TREE_TYPENAME, COUNT="10", STARTINDEX="0", SORTBY="gid")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/gml+xml")
    page = page_of(response)
    assert (page.number_matched, page.number_returned) == (23, 10)
    assert page.features["gid"].tolist() == [str(i) for i in range(1, 11)]
    assert page.next_url.startswith(local_server.url + "/ows?") and "STARTINDEX=10" in page.next_url
    second = page_of(requests.get(page.next_url, timeout=5))
    assert second.features["gid"].tolist() == [str(i) for i in range(11, 21)]
    last = page_of(requests.get(second.next_url, timeout=5))
    assert last.number_returned == 3 and last.next_url is None
    beyond = page_of(wfs(local_server, TYPENAMES=TREE_TYPENAME, COUNT="10", STARTINDEX="40"))
    assert (beyond.number_matched, beyond.number_returned, beyond.next_url) == (23, 0, None)


def test_keys_are_case_insensitive_and_any_path_works(local_server):
    response = requests.get(local_server.url + "/some/where", timeout=5, params={
        "service": "wfs", "request": "getfeature", "typeNames": TREE_TYPENAME, "count": "2", "srsName":
        "urn:ogc:def:crs:EPSG::2154"})
    assert page_of(response).number_returned == 2


def test_bbox_filters_on_envelopes(local_server):
    response = wfs(local_server, TYPENAMES=BUILDING_TYPENAME, BBOX="840900,6510000,842000,6511000,EPSG:2154")
    page = page_of(response)
    # k = 9..19 and the building straddling x = 842000 (see conftest)
    assert page.number_matched == 12
    assert sorted(page.features["cleabs"]) == sorted([f"BATIMENT{k:016d}" for k in list(range(9, 20)) + [30]])
    response = wfs(local_server, TYPENAMES=BUILDING_TYPENAME, BBOX="0,0,10,10")  # no CRS: the SRSNAME's
    assert page_of(response).number_matched == 0


@pytest.mark.parametrize("params, code, locator", [
    ({"TYPENAMES": "sytral:nope"}, "InvalidParameterValue", "typeNames"),
    ({"TYPENAMES": "../datafair/x"}, "InvalidParameterValue", "typeNames"),
    ({"TYPENAMES": TREE_TYPENAME, "SRSNAME": "EPSG:4326"}, "InvalidParameterValue", "srsName"),
    ({"TYPENAMES": TREE_TYPENAME, "BBOX": "4.8,45.7,4.9,45.8,EPSG:4326"}, "InvalidParameterValue", "bbox"),
    ({"TYPENAMES": TREE_TYPENAME, "STARTINDEX": "-1"}, "InvalidParameterValue", "startIndex"),
    ({"TYPENAMES": TREE_TYPENAME, "COUNT": "many"}, "InvalidParameterValue", "count"),
    ({}, "MissingParameterValue", "typeNames"),
    ({"REQUEST": "GetCapabilities"}, "OperationNotSupported", "request"),
])
def test_bad_requests_get_ows_exception_reports(local_server, params, code, locator):
    response = wfs(local_server, **params)
    assert response.status_code == 400
    reports = exception_report(response.content)
    assert reports[0]["exceptionCode"] == code and reports[0]["locator"] == locator


def test_unknown_paths_are_plain_404(local_server):
    response = requests.get(local_server.url + "/nothing/here", timeout=5)
    assert response.status_code == 404 and response.text == "not found: /nothing/here\n"
    assert response.headers["Content-Type"] == "text/plain"


def test_datafair_lines_paging_and_filters(local_server):
    url = f"{local_server.url}/data-fair/api/v1/datasets/{GAS_DATASET}/lines"
    first = requests.get(url, params={"size": "5", "qs": "code_epci:200046977", "format": "json"}, timeout=5).json()
    assert first["total"] == 9 and [r["_i"] for r in first["results"]] == [1, 2, 3, 4, 5]
    assert first["next"].startswith(url + "?") and "after=5" in first["next"]
    second = requests.get(first["next"], timeout=5).json()
    assert [r["_i"] for r in second["results"]] == [6, 7, 8, 9] and "next" not in second
    other = requests.get(url, params={"qs": "code_epci:200000000", "size": "10"}, timeout=5).json()
    assert [r["_i"] for r in other["results"]] == [10, 11, 12]
    assert requests.get(url, params={"size": "10001"}, timeout=5).status_code == 400
    missing = requests.get(f"{local_server.url}/data-fair/api/v1/datasets/nope/lines", timeout=5)
    assert missing.status_code == 404


def test_cartofriches_filters_and_pages(local_server):
    url = f"{local_server.url}/cartofriches/geofriches/"
    first = requests.get(url, params={"code_insee": "69002", "page_size": "2"}, timeout=5).json()
    assert first["count"] == 5 and first["previous"] is None and len(first["features"]) == 2
    assert "page=2" in first["next"]
    second = requests.get(first["next"], timeout=5).json()
    assert "page=1" in second["previous"] and [f["id"] for f in second["features"]] == ["69002_2", "69002_3"]
    box = requests.get(url, params={"in_bbox": "0,0,1,1"}, timeout=5).json()
    assert box["count"] == 0 and box["features"] == []
    assert requests.get(url, params={"page": "9"}, timeout=5).status_code == 404


def test_index_is_rebuilt_when_the_file_changes(tmp_path):
    (tmp_path / "wfs").mkdir()
    target = tmp_path / "wfs" / "a__b.gml"
    target.write_bytes(write_feature_collection(trees_frame(), "a:b"))
    with LocalDataServer(tmp_path) as server:
        assert page_of(wfs(server, TYPENAMES="a:b")).number_matched == 23
        target.write_bytes(write_feature_collection(trees_frame().iloc[:4], "a:b"))
        os.utime(target, ns=(1, 2))  # a different mtime even on coarse clocks
        assert page_of(wfs(server, TYPENAMES="a:b")).number_matched == 4


def test_concurrent_first_requests_share_one_index(tmp_path):
    (tmp_path / "wfs").mkdir()
    (tmp_path / "wfs" / "a__b.gml").write_bytes(write_feature_collection(buildings_frame(), "a:b"))
    results = []
    with LocalDataServer(tmp_path) as server:
        threads = [threading.Thread(target=lambda: results.append(page_of(wfs(server, TYPENAMES="a:b",
                                                                              COUNT="7")).number_returned))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len([k for k in server._cache if k[0] == "wfs"]) == 1
    assert results == [7] * 8


def test_envelopes_with_and_without_bounded_by_agree():
    frame = gpd.GeoDataFrame(geometry=[*buildings_frame().geometry, LineString([(0, 0, 5), (3, -4, 6)])],
                             crs="EPSG:2154")
    with_bounds = GmlIndex(write_feature_collection(frame, "a:b"))
    from_coords = GmlIndex(write_feature_collection(frame, "a:b", bounded_by=False))
    expected = shapely.bounds(np.asarray(frame.geometry.array))
    assert np.array_equal(with_bounds.envelopes, expected)
    assert np.array_equal(from_coords.envelopes, expected)  # 3-D posList read with its srsDimension


def test_start_stop_and_url():
    server = LocalDataServer(".")
    with pytest.raises(RuntimeError):
        server.url
    server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert requests.get(server.url + "/x", timeout=5).status_code == 404
    finally:
        server.stop()
    server.stop()  # idempotent


def test_hits_answer_an_empty_collection_with_number_matched_and_timestamp(local_server):
    response = wfs(local_server, TYPENAMES=BUILDING_TYPENAME, RESULTTYPE="hits",
                   BBOX="840900,6510000,842000,6511000,EPSG:2154")
    assert response.status_code == 200 and b"<wfs:member" not in response.content
    page = page_of(response)
    assert (page.number_matched, page.number_returned, page.count, page.next_url) == (12, 0, 0, None)
    assert re.search(rb'timeStamp="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', response.content)
    bad = wfs(local_server, TYPENAMES=BUILDING_TYPENAME, RESULTTYPE="everything")
    assert bad.status_code == 400 and exception_report(bad.content)[0]["locator"] == "resultType"


def test_wfs_and_datafair_answers_carry_strong_validators_and_honour_if_none_match(local_server):
    answers = [wfs(local_server, TYPENAMES=TREE_TYPENAME, COUNT="5"),
               wfs(local_server, TYPENAMES=TREE_TYPENAME, RESULTTYPE="hits"),
               requests.get(f"{local_server.url}/data-fair/api/v1/datasets/{GAS_DATASET}/lines", timeout=5),
               requests.get(f"{local_server.url}/data-fair/api/v1/datasets/{GAS_DATASET}", timeout=5)]
    etags = [a.headers["ETag"] for a in answers]
    assert all(re.fullmatch(r'"[0-9a-f]{32}"', tag) for tag in etags) and len(set(etags)) == 4  # per query
    for answer in answers:
        assert answer.status_code == 200 and answer.headers["Last-Modified"].endswith(" GMT")
        again = requests.get(answer.url, headers={"If-None-Match": answer.headers["ETag"]}, timeout=5)
        assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", answer.headers["ETag"])
        since = requests.get(answer.url, headers={"If-Modified-Since": answer.headers["Last-Modified"]}, timeout=5)
        assert since.status_code == 304
        other = requests.get(answer.url, headers={"If-None-Match": '"0000"'}, timeout=5)
        assert other.status_code == 200 and other.content == answer.content
    assert wfs(local_server, TYPENAMES="sytral:nope").headers.get("ETag") is None  # errors carry none


def test_validators_change_when_the_file_changes(tmp_path):
    (tmp_path / "wfs").mkdir()
    target = tmp_path / "wfs" / "a__b.gml"
    target.write_bytes(write_feature_collection(trees_frame(), "a:b"))
    os.utime(target, ns=(10**18, 10**18))
    with LocalDataServer(tmp_path) as server:
        first = wfs(server, TYPENAMES="a:b", RESULTTYPE="hits")
        target.write_bytes(write_feature_collection(trees_frame().iloc[:4], "a:b"))
        os.utime(target, ns=(10**18 + 10**9, 10**18 + 10**9))
        second = requests.get(first.url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
    assert second.status_code == 200 and page_of(second).number_matched == 4
    assert second.headers["ETag"] != first.headers["ETag"]
    assert (first.headers["Last-Modified"], second.headers["Last-Modified"]) == (
        "Sun, 09 Sep 2001 01:46:40 GMT", "Sun, 09 Sep 2001 01:46:41 GMT")


def test_datafair_dataset_metadata(tmp_path):
    (tmp_path / "datafair").mkdir()
    target = tmp_path / "datafair" / "reseau.json"
    target.write_bytes(b'{"total":2,"results":[{"_i":1,"_id":"line-1"},{"_i":2,"_id":"line-2"}]}')
    os.utime(target, ns=(1_700_000_000_123_456_789,) * 2)
    with LocalDataServer(tmp_path) as server:
        meta = requests.get(f"{server.url}/data-fair/api/v1/datasets/reseau", timeout=5)
        missing = requests.get(f"{server.url}/data-fair/api/v1/datasets/nope", timeout=5)
    assert meta.status_code == 200 and meta.headers["Content-Type"] == "application/json"
    assert meta.json() == {"id": "reseau", "title": "reseau", "count": 2, "dataUpdatedAt": "2023-11-14T22:13:20.123Z",
                           "updatedAt": "2023-11-14T22:13:20.123Z", "finalizedAt": "2023-11-14T22:13:20.123Z"}
    assert missing.status_code == 404
