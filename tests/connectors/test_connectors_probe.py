"""Change probes (probe_source) against the demo wire server on 127.0.0.1: one cheap request per source
says changed / unchanged / cannot tell, and its validators make the next probe conditional."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from connectors_fakeserver import Reply, ScriptedServer
from connectors_helpers import (
    GAS_DATASET,
    TREE_TYPENAME,
    cartofriches_source,
    datafair_source,
    file_source,
    gas_frame,
    ign_source,
    trees_frame,
    wfs_source,
)
from iarbre_assets.connectors import (
    ConnectorError,
    FetchError,
    HttpClient,
    MalformedResponse,
    Probe,
    ServiceExceptionReport,
    probe_source,
)
from iarbre_demo.server import LocalDataServer
from iarbre_demo.wire.datafair_writer import write_dataset_file
from iarbre_demo.wire.gml_writer import write_feature_collection
from test_connectors_gml import EXCEPTION


def fast_client() -> HttpClient:
    return HttpClient(timeout_s=5, retries=2, backoff_s=0.01)


def probe(source, url, previous=None, client=None) -> Probe:
    return probe_source(source, url=url, previous=previous, client=client or fast_client())


def _touch(path: Path, step: int) -> None:
    """A modification time surely different from the previous one, even on coarse clocks."""
    stamp = 1_700_000_000_000_000_000 + step * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def wire(tmp_path) -> Path:
    """A wire directory of its own (the tests rewrite its files), with one WFS layer and one data-fair dataset."""
    (tmp_path / "wfs").mkdir()
    (tmp_path / "datafair").mkdir()
    (tmp_path / "wfs" / f"{TREE_TYPENAME.replace(':', '__')}.gml").write_bytes(
        write_feature_collection(trees_frame(), TREE_TYPENAME, id_field="gid"))
    (tmp_path / "datafair" / f"{GAS_DATASET}.json").write_bytes(write_dataset_file(gas_frame()))
    _touch(tmp_path / "wfs" / f"{TREE_TYPENAME.replace(':', '__')}.gml", 0)
    _touch(tmp_path / "datafair" / f"{GAS_DATASET}.json", 0)
    return tmp_path


@pytest.fixture
def server(wire):
    with LocalDataServer(wire) as running:
        yield running


def wfs_url(server) -> str:
    return f"{server.url}/geoserver/ows"


def datafair_url(server) -> str:
    return f"{server.url}/data-fair/api/v1/datasets/{GAS_DATASET}/lines"


# ----------------------------------------------------------------------------------------------
# WFS
# ----------------------------------------------------------------------------------------------
def test_first_wfs_probe_cannot_decide_but_returns_the_validators_for_next_time(server):
    result = probe(wfs_source(wfs_url(server)), wfs_url(server))
    assert result.source == "arbres" and result.changed is None
    assert result.validators["number_matched"] == 23
    assert result.validators["etag"].startswith('"') and result.validators["last_modified"].endswith("GMT")
    assert json.loads(json.dumps(result.validators)) == result.validators
    assert "first probe" in result.detail
    assert len(result.requests) == 1 and result.requests[0]["status"] == 200
    assert "RESULTTYPE=hits" in result.requests[0]["url"] and "STARTINDEX" not in result.requests[0]["url"]


def test_unchanged_wfs_layer_is_unchanged_through_a_304(server):
    source = wfs_source(wfs_url(server))
    first = probe(source, wfs_url(server))
    second = probe(source, wfs_url(server), previous=json.loads(json.dumps(first.validators)))
    assert second.changed is False
    assert [r["status"] for r in second.requests] == [304]
    assert second.validators == first.validators  # still holds numberMatched for the probe after
    assert "304" in second.detail


def test_rewritten_wfs_layer_with_another_count_is_changed(server, wire):
    source = wfs_source(wfs_url(server))
    first = probe(source, wfs_url(server))
    layer = wire / "wfs" / f"{TREE_TYPENAME.replace(':', '__')}.gml"
    layer.write_bytes(write_feature_collection(trees_frame().iloc[:4], TREE_TYPENAME, id_field="gid"))
    _touch(layer, 1)
    second = probe(source, wfs_url(server), previous=first.validators)
    assert second.changed is True
    assert second.validators["number_matched"] == 4 and second.validators["etag"] != first.validators["etag"]
    assert "numberMatched changed from 23 to 4" in second.detail
    third = probe(source, wfs_url(server), previous=second.validators)
    assert third.changed is False  # and the new validators settle the next probe


def test_wfs_probe_sends_the_fetch_filters_but_no_paging(server):
    source = wfs_source(wfs_url(server), params={"CQL_FILTER": "gid>0"})
    result = probe(source, wfs_url(server))
    query = dict(parse_qsl(urlsplit(result.requests[0]["url"]).query))
    assert query == {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": TREE_TYPENAME,
                     "SRSNAME": "EPSG:2154", "CQL_FILTER": "gid>0", "RESULTTYPE": "hits"}


def test_ign_probe_counts_the_whole_layer_without_commune_boxes(local_server):
    url = f"{local_server.url}/geoplateforme/wfs"
    result = probe(ign_source(url), url)
    assert result.validators["number_matched"] == 31 and "BBOX" not in result.requests[0]["url"]
    assert "whole layer" in result.detail


# A WFS that gives a count and nothing else: no ETag, no Last-Modified, conditional headers ignored.
class _CountOnlyWfs(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    matched = 5
    seen: list[dict] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        query = {k.upper(): v for k, v in parse_qsl(urlsplit(self.path).query)}
        type(self).seen.append({"query": query, "headers": dict(self.headers.items())})
        body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<wfs:FeatureCollection xmlns:wfs='
                b'"http://www.opengis.net/wfs/2.0" numberMatched="%d" numberReturned="0"/>\n' % self.matched)
        self.send_response(200)
        self.send_header("Content-Type", "application/gml+xml; version=3.2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def count_only_wfs():
    _CountOnlyWfs.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _CountOnlyWfs)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/wfs"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_same_count_from_a_server_without_validators_cannot_decide(count_only_wfs):
    source = wfs_source(count_only_wfs)
    first = probe(source, count_only_wfs)
    assert first.changed is None and first.validators == {"number_matched": 5}
    second = probe(source, count_only_wfs, previous=first.validators)
    assert second.changed is None and "no ETag/Last-Modified" in second.detail
    assert "If-None-Match" not in _CountOnlyWfs.seen[1]["headers"]
    assert _CountOnlyWfs.seen[1]["query"]["RESULTTYPE"] == "hits"


def test_another_count_from_a_server_without_validators_is_changed(count_only_wfs):
    result = probe(wfs_source(count_only_wfs), count_only_wfs, previous={"number_matched": 4})
    assert result.changed is True


def test_previous_validators_become_conditional_headers():
    reply = Reply(304, b"", headers={"ETag": '"abc"'})
    with ScriptedServer([reply]) as scripted:
        url = scripted.url + "/wfs"
        previous = {"number_matched": 7, "etag": '"abc"', "last_modified": "Wed, 01 Jan 2025 00:00:00 GMT"}
        result = probe(wfs_source(url), url, previous=previous)
    assert result.changed is False and result.validators == previous
    sent = scripted.request_headers[0]
    assert sent["If-None-Match"] == '"abc"' and sent["If-Modified-Since"] == "Wed, 01 Jan 2025 00:00:00 GMT"


def test_same_count_and_same_etag_is_unchanged_even_when_the_server_ignores_if_none_match():
    body = (b'<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" numberMatched="7" '
            b'numberReturned="0"/>')
    with ScriptedServer([Reply(200, body, headers={"ETag": '"abc"'})]) as scripted:
        url = scripted.url + "/wfs"
        result = probe(wfs_source(url), url, previous={"number_matched": 7, "etag": '"abc"'})
    assert result.changed is False


def test_empty_previous_counts_as_a_first_probe(server):
    result = probe(wfs_source(wfs_url(server)), wfs_url(server), previous={})
    assert result.changed is None and result.requests[0]["status"] == 200


# ----------------------------------------------------------------------------------------------
# data-fair
# ----------------------------------------------------------------------------------------------
def test_datafair_probe_reads_the_dataset_metadata_not_the_lines(server):
    result = probe(datafair_source(datafair_url(server)), datafair_url(server))
    assert result.changed is None
    assert result.requests[0]["url"] == f"{server.url}/data-fair/api/v1/datasets/{GAS_DATASET}"
    assert result.validators["count"] == 12
    assert result.validators["data_updated_at"] == result.validators["finalized_at"] == "2023-11-14T22:13:20.000Z"
    assert set(result.validators) >= {"etag", "last_modified"}


def test_unchanged_datafair_dataset_is_unchanged_through_a_304(server):
    source = datafair_source(datafair_url(server))
    first = probe(source, datafair_url(server))
    second = probe(source, datafair_url(server), previous=first.validators)
    assert second.changed is False and [r["status"] for r in second.requests] == [304]


def test_rewritten_datafair_dataset_with_another_count_is_changed(server, wire):
    source = datafair_source(datafair_url(server))
    first = probe(source, datafair_url(server))
    dataset = wire / "datafair" / f"{GAS_DATASET}.json"
    dataset.write_bytes(write_dataset_file(gas_frame().iloc[:5]))
    _touch(dataset, 1)
    second = probe(source, datafair_url(server), previous=first.validators)
    assert second.changed is True and second.validators["count"] == 5
    assert "count changed from 12 to 5" in second.detail


def test_datafair_data_update_with_the_same_count_is_changed(server, wire):
    source = datafair_source(datafair_url(server))
    first = probe(source, datafair_url(server))
    dataset = wire / "datafair" / f"{GAS_DATASET}.json"
    dataset.write_bytes(write_dataset_file(gas_frame().assign(materiau="PE")))
    _touch(dataset, 1)
    second = probe(source, datafair_url(server), previous=first.validators)
    assert second.changed is True and "dataUpdatedAt changed" in second.detail


def test_datafair_same_dates_settle_it_even_without_http_validators():
    meta = {"id": "d", "count": 3, "dataUpdatedAt": "2025-01-01T00:00:00Z", "finalizedAt": "2025-01-01T00:01:00Z"}
    with ScriptedServer([Reply(200, json.dumps(meta).encode(), "application/json")] * 2) as scripted:
        url = scripted.url + "/data-fair/api/v1/datasets/d/lines"
        first = probe(datafair_source(url), url)
        second = probe(datafair_source(url), url, previous=first.validators)
    assert first.changed is None and second.changed is False
    assert scripted.requests[0][0] == "/data-fair/api/v1/datasets/d"


def test_datafair_url_without_lines_is_refused():
    with pytest.raises(ConnectorError, match="ends in /lines"):
        probe(datafair_source("http://127.0.0.1:9/data-fair/api/v1/datasets/d"),
              "http://127.0.0.1:9/data-fair/api/v1/datasets/d")


def test_datafair_metadata_that_is_not_json_is_malformed():
    with ScriptedServer([Reply(200, b"<html>maintenance</html>", "text/html")]) as scripted:
        url = scripted.url + "/data-fair/api/v1/datasets/d/lines"
        with pytest.raises(MalformedResponse, match="ore_gaz: .*/datasets/d: dataset metadata is not JSON"):
            probe(datafair_source(url), url)


# ----------------------------------------------------------------------------------------------
# no probe
# ----------------------------------------------------------------------------------------------
def test_cartofriches_cannot_be_probed_and_makes_no_request():
    client = fast_client()
    result = probe(cartofriches_source("http://127.0.0.1:9/cartofriches/geofriches/"),
                   "http://127.0.0.1:9/cartofriches/geofriches/", previous={"count": 3}, client=client)
    assert result.changed is None and result.requests == [] and client.requests == []
    assert "no cheap change check" in result.detail and "no request" in result.detail


def test_file_sources_are_not_probed(tmp_path):
    with pytest.raises(ValueError, match="file sources are not probed"):
        probe_source(file_source(tmp_path / "x.geojson"), url=None, previous=None)


def test_url_with_an_unexpanded_variable_is_refused():
    with pytest.raises(ConnectorError, match=r"\$\{VARIABLE\}"):
        probe(wfs_source("${LOCAL_SERVER}/wfs"), "${LOCAL_SERVER}/wfs")


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
def test_exception_report_is_a_clear_service_exception(server):
    source = wfs_source(wfs_url(server), typename="sytral:nope")
    with pytest.raises(ServiceExceptionReport) as info:
        probe(source, wfs_url(server))
    message = str(info.value)
    assert message.startswith(f"arbres: {wfs_url(server)}?") and "RESULTTYPE=hits" in message
    assert "exceptionCode=InvalidParameterValue" in message and "sytral:nope" in message


def test_exception_report_in_a_200_is_a_clear_service_exception():
    with ScriptedServer([Reply(200, EXCEPTION)]) as scripted:
        url = scripted.url + "/wfs"
        with pytest.raises(ServiceExceptionReport, match="arbres: .*/wfs.*exceptionCode=InvalidParameterValue"):
            probe(wfs_source(url), url)


def test_5xx_is_a_fetch_error_after_bounded_retries():
    with ScriptedServer([Reply(503, b"busy", "text/plain")] * 3) as scripted:
        url = scripted.url + "/data-fair/api/v1/datasets/d/lines"
        with pytest.raises(FetchError) as info:
            probe(datafair_source(url), url)
    assert str(info.value).startswith(f"ore_gaz: {scripted.url}/data-fair/api/v1/datasets/d")
    assert "HTTP 503: busy (3 attempts)" in str(info.value) and len(scripted.requests) == 3


def test_unreachable_server_is_a_fetch_error_naming_source_and_url():
    with pytest.raises(FetchError, match=r"arbres: http://127\.0\.0\.1:9/wfs\?.*connection failed"):
        probe(wfs_source("http://127.0.0.1:9/wfs"), "http://127.0.0.1:9/wfs",
              client=HttpClient(timeout_s=2, retries=0))
