"""WFS 2.0 and IGN connectors end to end: LocalDataServer paging, scripted faults, payload round trips."""

from __future__ import annotations

import zipfile
from io import BytesIO

import pandas as pd
import pytest

from connectors_helpers import (
    COMMUNE_BBOXES,
    TREE_TYPENAME,
    buildings_frame,
    ign_source,
    trees_frame,
    wfs_source,
)
from connectors_fakeserver import Reply, ScriptedServer
from iarbre_assets.connectors import (
    ConnectorError,
    FetchError,
    HttpClient,
    MalformedResponse,
    ServiceExceptionReport,
    UnsafeInput,
    fetch_payload,
    parse_payload,
)
from iarbre_demo.wire.gml_writer import write_feature_collection
from test_connectors_gml import EXCEPTION


def gml(frame, matched="unknown"):
    return write_feature_collection(frame, TREE_TYPENAME, id_field="gid", number_matched=matched)


def fast_client(**kw) -> HttpClient:
    return HttpClient(**{"timeout_s": 2, "retries": 1, "backoff_s": 0.01, **kw})


def test_multi_page_fetch_bundles_pages_and_round_trips(local_server, client):
    source = wfs_source(local_server.url + "/geoserver/metropole-de-lyon/ows", page_size=5)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    # 23 trees, COUNT=5: 5+5+5+5+3, the last page reaches numberMatched: no extra empty request
    assert payload.kind == "wfs" and payload.ext == "zip"
    assert payload.details["pages"] == 5 and payload.details["features"] == 23
    assert payload.details["number_matched"] == 23
    starts = [r["url"].split("STARTINDEX=")[1] for r in payload.requests]
    assert starts == ["0", "5", "10", "15", "20"]
    assert all("SORTBY=gid" in r["url"] and "COUNT=5" in r["url"] for r in payload.requests)
    assert "STARTINDEX" not in payload.origin and "TYPENAMES=metropole-de-lyon:abr_arbres" in payload.origin
    with zipfile.ZipFile(BytesIO(payload.data)) as archive:
        assert archive.namelist() == [f"page-0000{i}.gml" for i in range(1, 6)]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert str(local_server.url.split(":")[-1]).encode() not in b"".join(i.filename.encode() + i.extra
                                                                             for i in archive.infolist())
    frame = parse_payload(source, payload.data, payload.ext)
    expected = trees_frame()
    assert frame.crs == "EPSG:2154" and len(frame) == 23
    assert frame["gid"].tolist() == [str(g) for g in expected["gid"]]
    assert frame["essence"].tolist() == [None if pd.isna(v) else v for v in expected["essence"]]
    assert frame["hauteur"].tolist() == [repr(h) for h in expected["hauteur"]]
    assert all(a.equals_exact(b, 0) for a, b in zip(frame.geometry, expected.geometry))


def test_two_fetches_give_identical_bytes(local_server, client):
    source = wfs_source(local_server.url + "/ows", page_size=5)
    first = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    second = fetch_payload(source, data_dir=None, url=source.location.url, client=HttpClient(backoff_s=0.01))
    assert first.data == second.data and first.ext == second.ext
    assert len(second.requests) == 5  # only this fetch's requests, not the shared client's history
    ign = ign_source(local_server.url + "/wfs/ows")
    a = fetch_payload(ign, data_dir=None, url=ign.location.url, commune_bboxes=COMMUNE_BBOXES, client=client)
    b = fetch_payload(ign, data_dir=None, url=ign.location.url, commune_bboxes=list(reversed(COMMUNE_BBOXES)),
                      client=client)
    assert a.data == b.data  # boxes are queried in INSEE order whatever the caller's order


def test_single_page_is_stored_as_plain_gml(local_server, client):
    source = wfs_source(local_server.url + "/ows", page_size=100)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    assert payload.ext == "gml" and payload.data.startswith(b"<?xml")
    assert len(parse_payload(source, payload.data, payload.ext)) == 23


def test_empty_last_page_ends_paging_when_number_matched_is_unknown():
    frame = trees_frame().iloc[:6]
    pages = [Reply(200, gml(frame.iloc[:3])), Reply(200, gml(frame.iloc[3:6])), Reply(200, gml(frame.iloc[:0]))]
    with ScriptedServer(pages) as server:
        source = wfs_source(server.url + "/ows", page_size=3)
        payload = fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())
    assert [q["STARTINDEX"] for _, q in server.requests] == ["0", "3", "6"]
    assert payload.details == {**payload.details, "pages": 3, "features": 6, "number_matched": None}
    assert parse_payload(source, payload.data, payload.ext)["gid"].tolist() == ["1", "2", "3", "4", "5", "6"]


def test_short_page_is_malformed():
    frame = trees_frame()
    pages = [Reply(200, gml(frame.iloc[:4], matched=10)), Reply(200, gml(frame.iloc[4:7], matched=10))]
    with ScriptedServer(pages) as server:
        source = wfs_source(server.url + "/ows", page_size=4)
        with pytest.raises(MalformedResponse, match=r"short page: 3 features at STARTINDEX=4 with COUNT=4, but "
                                                    r"numberMatched=10 says 3 more remain"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())


def test_total_below_number_matched_is_malformed():
    frame = trees_frame()
    pages = [Reply(200, gml(frame.iloc[:4], matched=9)), Reply(200, gml(frame.iloc[:0], matched=9))]
    with ScriptedServer(pages) as server:
        source = wfs_source(server.url + "/ows", page_size=4)
        with pytest.raises(MalformedResponse, match="received 4 features in 2 pages but numberMatched=9"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())


def test_http_500_mid_paging_names_the_url_and_returns_nothing():
    frame = trees_frame()
    pages = [Reply(200, gml(frame.iloc[:5], matched=23))] + [Reply(500, b"db down", "text/plain")] * 2
    with ScriptedServer(pages) as server:
        source = wfs_source(server.url + "/ows", page_size=5)
        with pytest.raises(FetchError) as info:
            fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())
    assert info.value.source == "arbres"
    assert info.value.location.startswith(server.url + "/ows?") and "STARTINDEX=5" in info.value.location
    assert "HTTP 500" in info.value.reason and "(2 attempts)" in info.value.reason


@pytest.mark.parametrize("status", [200, 400])
def test_exception_report_body_raises_service_exception_report(status):
    with ScriptedServer([Reply(status, EXCEPTION)]) as server:
        source = wfs_source(server.url + "/ows")
        with pytest.raises(ServiceExceptionReport, match="InvalidParameterValue.*typeName.*sytral:nope unknown"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client(retries=3))
    assert len(server.requests) == 1


def test_truncated_gml_page_is_malformed():
    body = gml(trees_frame(), matched=23)
    with ScriptedServer([Reply(200, body[:700])]) as server:
        source = wfs_source(server.url + "/ows", page_size=50)
        with pytest.raises(MalformedResponse, match="not well-formed at line"):
            fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())


def test_external_entity_in_a_page_is_refused_and_never_fetched(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-b41d")
    with ScriptedServer([]) as trap:  # an entity pointing here must never cause a request
        body = f"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY a SYSTEM "file://{secret}"><!ENTITY b SYSTEM "{trap.url}/steal">]>
<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" xmlns:gml="http://www.opengis.net/gml/3.2"
 xmlns:t="urn:t" numberMatched="1" numberReturned="1">
<wfs:member><t:f gml:id="f.1"><t:v>&a;&b;</t:v></t:f></wfs:member></wfs:FeatureCollection>""".encode()
        with ScriptedServer([Reply(200, body)]) as server:
            source = wfs_source(server.url + "/ows")
            with pytest.raises(UnsafeInput, match="DTD/entity declarations are refused") as info:
                fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())
        assert "SECRET-b41d" not in str(info.value)
        with pytest.raises(UnsafeInput):
            parse_payload(source, body, "gml")
        assert trap.requests == []


def test_external_dtd_reference_is_refused_and_never_fetched():
    with ScriptedServer([]) as trap:
        body = (f'<?xml version="1.0"?>\n<!DOCTYPE wfs:FeatureCollection SYSTEM "{trap.url}/wfs.dtd">\n'
                '<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0" numberMatched="0" '
                'numberReturned="0"/>').encode()
        with pytest.raises(UnsafeInput, match="DTD/entity declarations are refused"):
            parse_payload(wfs_source("http://unused"), body, "gml")
        assert trap.requests == []


def test_location_params_are_sent_and_paging_params_refused(local_server, client):
    source = wfs_source(local_server.url + "/ows", page_size=50, params={"OUTPUTFORMAT": "GML32"})
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    assert "OUTPUTFORMAT=GML32" in payload.requests[0]["url"]
    bad = wfs_source(local_server.url + "/ows", params={"startIndex": "10"})
    with pytest.raises(ConnectorError, match="set by the connector"):
        fetch_payload(bad, data_dir=None, url=bad.location.url, client=client)


def test_unexpanded_url_is_refused():
    source = wfs_source("${LOCAL_SERVER}/ows")
    with pytest.raises(ConnectorError, match="expand_url"):
        fetch_payload(source, data_dir=None)


def test_empty_layer_parses_with_the_requested_crs():
    with ScriptedServer([Reply(200, gml(trees_frame().iloc[:0], matched=0))]) as server:
        source = wfs_source(server.url + "/ows")
        payload = fetch_payload(source, data_dir=None, url=source.location.url, client=fast_client())
    frame = parse_payload(source, payload.data, payload.ext)
    assert len(frame) == 0 and frame.crs == "EPSG:2154"


# -- IGN BD TOPO ----------------------------------------------------------------------------------
def test_ign_pages_each_commune_box_and_dedups_by_cleabs(local_server, client):
    source = ign_source(local_server.url + "/wfs/ows", page_size=4)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, commune_bboxes=COMMUNE_BBOXES,
                            client=client)
    # box 69001: k = 0..9 (10); 69002: k = 9..19 + the straddling one (12); 69003: k = 20..29 + it (11)
    boxes = {b["commune"]: (b["features"], b["pages"]) for b in payload.details["boxes"]}
    assert boxes == {"69001": (10, 3), "69002": (12, 3), "69003": (11, 3)}
    assert payload.details["features_with_duplicates"] == 33 and payload.details["pages"] == 9
    assert all("BBOX=" in r["url"] and "SRSNAME=EPSG%3A2154" in r["url"] for r in payload.requests)
    assert "BBOX=840000.0%2C6510000.0%2C841000.0%2C6511000.0%2CEPSG%3A2154" in payload.requests[0]["url"]
    frame = parse_payload(source, payload.data, payload.ext)
    assert len(frame) == 31 and frame["cleabs"].is_unique
    expected = buildings_frame()
    assert sorted(frame["cleabs"]) == sorted(expected["cleabs"])
    by_id = dict(zip(frame["cleabs"], frame.geometry))
    assert all(by_id[c].equals_exact(g, 0) for c, g in zip(expected["cleabs"], expected.geometry))


def test_ign_needs_commune_boxes(local_server, client):
    source = ign_source(local_server.url + "/wfs/ows")
    with pytest.raises(ConnectorError, match="bounding boxes"):
        fetch_payload(source, data_dir=None, url=source.location.url, client=client)


def test_ign_type_unknown_to_the_server(local_server, client):
    from iarbre_assets.catalog.models import IgnWfsLocation

    from connectors_helpers import make_source

    source = make_source(IgnWfsLocation(url=local_server.url + "/wfs/ows", typename="BDTOPO_V3:nope"))
    with pytest.raises(ServiceExceptionReport, match="BDTOPO_V3:nope"):
        fetch_payload(source, data_dir=None, url=source.location.url, commune_bboxes=COMMUNE_BBOXES, client=client)


def test_pages_with_different_attributes_are_united():
    from iarbre_assets.connectors.payload import deterministic_zip

    frame = trees_frame()
    first = gml(frame.iloc[:2])
    second = write_feature_collection(frame.iloc[2:4].drop(columns="essence").assign(extra="e"), TREE_TYPENAME,
                                      id_field="gid")
    bundle = deterministic_zip([("page-00002.gml", second), ("page-00001.gml", first)])
    got = parse_payload(wfs_source("http://unused"), bundle, "zip")
    assert list(got.columns) == ["gml_id", "gid", "essence", "hauteur", "extra", "geometry"]
    assert got["gid"].tolist() == ["1", "2", "3", "4"]  # page order, whatever the order zipped
    assert got["essence"].tolist() == ["Platanus 1 & <x>", "Platanus 2 & <x>", None, None]
    assert got["extra"].tolist() == [None, None, "e", "e"]


def test_demo_territory_source_defs_work_with_the_local_server(local_server, client):
    from iarbre_assets.catalog import expand_url, load_catalog, load_territory

    defs = load_territory("demo").source_defs(load_catalog())
    variables = {"LOCAL_SERVER": local_server.url}
    trees = defs["arbres_alignement"]
    payload = fetch_payload(trees, data_dir=None, url=expand_url(trees.location.url, variables), client=client)
    assert payload.ext == "gml" and payload.details["features"] == 23  # page_size 500: one page
    assert len(parse_payload(trees, payload.data, payload.ext)) == 23
    buildings = defs["batiments_bdtopo"]
    payload = fetch_payload(buildings, data_dir=None, url=expand_url(buildings.location.url, variables),
                            commune_bboxes=COMMUNE_BBOXES, client=client)
    assert len(parse_payload(buildings, payload.data, payload.ext)) == 31


def test_feature_and_vertex_limits_count_across_wfs_pages(local_server, client):
    from iarbre_assets.connectors import LimitExceeded, ReadingLimits

    source = wfs_source(f"{local_server.url}/geoserver/metropole-de-lyon/ows", page_size=5)
    payload = fetch_payload(source, data_dir=None, url=source.location.url, client=client)
    frame = parse_payload(source, payload.data, payload.ext)
    points = len(frame)  # trees: one vertex each
    assert points > 5
    with pytest.raises(LimitExceeded, match=r"page-00002\.gml: more than 6 features \(limits\.max_features\)"):
        parse_payload(source, payload.data, payload.ext, limits=ReadingLimits(max_features=6))
    with pytest.raises(LimitExceeded, match=rf"more than {points - 1} vertices"):
        parse_payload(source, payload.data, payload.ext, limits=ReadingLimits(max_vertices=points - 1))
