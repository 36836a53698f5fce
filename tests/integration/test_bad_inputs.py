"""Bad partner deliveries never replace the last accepted version and never reach the constraints.

Each case delivers one bad input (a partner file dropped in the inbox, or an endpoint failing mid-way),
runs the source's ingestion and its factors' footprints in one run, and asserts:
- a clear error naming the source, the file or URL, and what is wrong (a failed blocking check);
- the accepted version is byte-for-byte the one before (hash of its GeoParquet);
- nothing downstream was materialised in that run.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import geopandas as gpd
import pytest
import shapely
import yaml

from integration_helpers import PlatformRun, build
from iarbre_assets.catalog import territory_path
from iarbre_demo.wire.gml_writer import write_feature_collection
from iarbre_assets.runner import materialise
from iarbre_assets.store.files import file_sha256


def _frame(platform, slug: str) -> gpd.GeoDataFrame:
    current = platform.store.versions(slug).current()
    return gpd.read_parquet(current.data_path(platform.store))


def _drop(platform, slug: str, name: str, data: bytes) -> Path:
    partner = platform.sources[slug].partner
    path = platform.store.inbox(partner) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _geojson(frame: gpd.GeoDataFrame, crs_name: str | None, swap: bool = False) -> bytes:
    features = json.loads(frame.to_json(drop_id=True))
    if swap:
        for feature in features["features"]:
            feature["geometry"] = json.loads(shapely.to_geojson(
                shapely.transform(shapely.from_geojson(json.dumps(feature["geometry"])), lambda c: c[:, ::-1])))
    doc = {"type": "FeatureCollection", "features": features["features"]}
    if crs_name:
        doc["crs"] = {"type": "name", "properties": {"name": crs_name}}
    return json.dumps(doc).encode()


def truncated_gml(platform):
    data = write_feature_collection(_frame(platform, "assainissement").head(30), "eau:assainissement",
                                    srs_name="urn:ogc:def:crs:EPSG::2154", id_field=None)
    return "assainissement", _drop(platform, "assainissement", "assainissement.gml", data[: len(data) // 2]), "line"


def wrong_declared_crs(platform):
    frame = _frame(platform, "parkings_surfaciques")  # EPSG:2154 coordinates declared as EPSG:3946
    data = _geojson(frame, "urn:ogc:def:crs:EPSG::3946")
    return "parkings_surfaciques", _drop(platform, "parkings_surfaciques", "parkingsurfacique.geojson", data), "bounds"


def missing_crs(platform):
    data = _geojson(_frame(platform, "parkings_surfaciques"), None)
    return "parkings_surfaciques", _drop(platform, "parkings_surfaciques", "parkingsurfacique.geojson", data), "CRS"


def lat_lon_swapped(platform):
    frame = _frame(platform, "assainissement").to_crs("EPSG:4326")
    data = _geojson(frame, None, swap=True)
    return "assainissement", _drop(platform, "assainissement", "assainissement.geojson", data), "bounds"


def empty_file(platform):
    return "espaces_publics", _drop(platform, "espaces_publics", "espacepublic2025.geojson", b""), "empty"


def three_d_inconsistent(platform):
    """A GML declaring 3-D coordinates whose lists are 2-D: the dimension cannot be trusted."""
    data = write_feature_collection(_frame(platform, "assainissement").head(20), "eau:assainissement",
                                    srs_name="urn:ogc:def:crs:EPSG::2154")
    data = data.replace(b"<gml:posList>", b'<gml:posList srsDimension="3">')
    return "assainissement", _drop(platform, "assainissement", "assainissement.gml", data), "dimension"


def self_intersecting_rings(platform):
    """Rings that double back on themselves: repair leaves no area, so (almost) every car park is dropped."""
    frame = _frame(platform, "parkings_surfaciques")
    xs, ys = frame.geometry.centroid.x, frame.geometry.centroid.y
    frame = frame.set_geometry([shapely.Polygon([(x, y), (x + 20, y + 20), (x + 10, y + 10), (x, y)])
                                for x, y in zip(xs, ys)])
    data = _geojson(frame, "urn:ogc:def:crs:EPSG::2154")
    return "parkings_surfaciques", _drop(platform, "parkings_surfaciques", "parkingsurfacique.geojson", data), "dropped"


def renamed_category(platform):
    frame = _frame(platform, "espaces_publics").to_crs("EPSG:3946")
    frame["typeespacepublic"] = frame["typeespacepublic"].replace({"Giratoire": "Rond-point"})
    data = _geojson(frame, "urn:ogc:def:crs:EPSG::3946")
    return "espaces_publics", _drop(platform, "espaces_publics", "espacepublic2025.geojson", data), "Giratoire"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def missing_column(platform, tmp: Path):
    frame = _frame(platform, "eva_2015").rename(columns={"gl_2015": "code_eva"}).head(200)
    shp = tmp / "new_all_eva.shp"
    frame.to_file(shp, engine="pyogrio")
    data = _zip({p.name: p.read_bytes() for p in tmp.glob("new_all_eva.*")})
    return "eva_2015", _drop(platform, "eva_2015", "new_all_eva.zip", data), "gl_2015"


def zip_slip(platform, tmp: Path):
    frame = _frame(platform, "eva_2015").head(50)
    frame.to_file(tmp / "eva.shp", engine="pyogrio")
    entries = {f"../{p.name}": p.read_bytes() for p in tmp.glob("eva.*")}
    return "eva_2015", _drop(platform, "eva_2015", "new_all_eva.zip", _zip(entries)), ".."


def xml_external_entity(platform, tmp: Path):
    secret = tmp / "secret.txt"
    secret.write_text("TOP-SECRET-PARTNER-PASSWORD")
    data = write_feature_collection(_frame(platform, "assainissement").head(5), "eau:assainissement")
    data = data.replace(b"?>\n", f'?>\n<!DOCTYPE x [<!ENTITY leak SYSTEM "file://{secret}">]>\n'.encode(), 1)
    data = data.replace(b"<eau:gid>", b"<eau:gid>&leak;", 1)
    return "assainissement", _drop(platform, "assainissement", "assainissement.gml", data), "DTD"


CASES = {
    "truncated_gml": truncated_gml,
    "wrong_declared_crs": wrong_declared_crs,
    "missing_crs": missing_crs,
    "lat_lon_swapped": lat_lon_swapped,
    "empty_file": empty_file,
    "three_d_inconsistent": three_d_inconsistent,
    "self_intersecting_rings": self_intersecting_rings,
    "renamed_category": renamed_category,
    "missing_column": missing_column,
    "zip_slip": zip_slip,
    "xml_external_entity": xml_external_entity,
}


def _check_failure(outcome, slug: str) -> str:
    failed = []
    for event in outcome.result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.asset_key.path[-1] == slug and not evaluation.passed and evaluation.severity.value == "ERROR":
            failed.append(evaluation.description or "")
    assert failed, f"no failed blocking check for {slug}"
    return " ".join(failed)


def _assert_rejected(run, slug: str, origin: str, reason: str):
    platform = run.platform
    versions = platform.store.versions(slug)
    before = versions.current()
    before_hash = file_sha256(before.data_path(platform.store))
    factors = [f.slug for f in platform.factors_of_source(slug)]
    keys = [["raw", slug], ["source", slug]] + [["footprint", f] for f in factors] + [["coverage", f] for f in factors]
    outcome = materialise(run.defs, run.territory, run.instance, select=keys)
    materialised = {tuple(e.asset_key.path) for e in outcome.result.get_asset_materialization_events()}
    assert ("source", slug) not in materialised
    assert not any(key[0] in {"footprint", "coverage", "source_by_commune"} for key in materialised), materialised
    message = _check_failure(outcome, slug)
    assert slug in message and reason.lower() in message.lower(), message
    assert Path(origin).name in message or origin in message, message
    after = versions.current()
    assert after.version == before.version
    assert file_sha256(after.data_path(platform.store)) == before_hash
    assert not outcome.success
    return message


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_partner_file_is_rejected(demo_copy, case, tmp_path):
    builder = CASES[case]
    args = (demo_copy.platform, tmp_path) if builder.__code__.co_argcount == 2 else (demo_copy.platform,)
    slug, dropped, reason = builder(*args)
    message = _assert_rejected(demo_copy, slug, str(dropped), reason)
    print(f"{case}: {message[:600]}")
    assert "TOP-SECRET" not in message


class _FailingWfs(BaseHTTPRequestHandler):
    """A WFS that answers the first page and then fails with HTTP 500 (the project's own test server)."""

    pages: dict[int, bytes] = {}

    def do_GET(self):  # noqa: N802
        query = {k.upper(): v for k, v in parse_qsl(urlsplit(self.path).query)}
        start = int(query.get("STARTINDEX", "0"))
        body = self.pages.get(start)
        if body is None:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"Internal Server Error: database connection lost")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gml+xml; version=3.2")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_500_mid_paging_keeps_the_last_raw_and_accepted_versions(demo_copy, tmp_path):
    platform = demo_copy.platform
    trees = _frame(platform, "arbres_alignement")
    page_size = 500
    _FailingWfs.pages = {0: write_feature_collection(trees.head(page_size), "metropole-de-lyon:abr_arbres_alignement.abrarbre",
                                                     number_matched=len(trees), id_field="gid")}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingWfs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/geoserver/metropole-de-lyon/ows"
    try:
        doc = yaml.safe_load(territory_path("demo").read_text())
        doc["name"] = "demo_failing_wfs"
        doc["data_dir"] = str(platform.data_dir)
        doc["sources"]["arbres_alignement"].update(url=url, page_size=page_size, retries=1, timeout_s=5)
        variant = tmp_path / "territory.yaml"
        variant.write_text(yaml.safe_dump(doc, allow_unicode=True))
        defs, resource, instance = build(demo_copy.home, str(variant))
        raw_before = resource.store.raw.latest("arbres_alignement").sha256
        run = PlatformRun(demo_copy.home, defs, resource, instance, None)
        message = _assert_rejected(run, "arbres_alignement", url, "500")
        assert resource.store.raw.latest("arbres_alignement").sha256 == raw_before
        assert "delivery failed" in message
    finally:
        server.shutdown()
