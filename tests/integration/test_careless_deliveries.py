"""What a careless partner can deliver, through the public paths, ends in one visible state and loses nothing.

Each case delivers something a partner can get wrong (issue 13's classes: degenerate geometry, Unicode
forms, archives past their limits, links and devices in the inbox, names and formats, endpoints that page
forever or ask to wait) the way it arrives in production:
- a drop in `inbox/<partner>/`, followed by the `partner_inbox` sensor and the ingest run it requests, then
  the `partner_refresh` sensor, each evaluated on the home's real instance as the daemon does;
- or an endpoint, through `iarbre refresh SOURCE` (`runner.refresh`) on a territory pointing at a server
  this module runs on 127.0.0.1.

And asserts:
- the outcome: accepted as a version of the named source, or rejected / set aside with a reason naming the
  source, the file and the problem; `iarbre inbox --json` shows the drop's state;
- that nothing was lost: the accepted version (record, normalised file, raw bytes), every raw file kept
  before, every raster of the home and every warehouse table are unchanged; a delivery that repairs to the
  same content recomputes no commune (the refresh asks for no partition), and a refused one asks only for
  the inventory (which shows the rejection) and what reads it.
Two cases also execute that refresh and check the rasters and the warehouse's score tables afterwards.
"""

from __future__ import annotations

import io
import json
import os
import threading
import unicodedata
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import duckdb
import geopandas as gpd
import pytest
import shapely
import yaml

from integration_helpers import PlatformRun, build, execute_request, sensor_tick
from iarbre_assets.catalog import territory_path
from iarbre_assets.runner import materialise, summarise
from iarbre_assets.store.files import file_sha256
from iarbre_demo.wire.gml_writer import write_feature_collection

L93 = "urn:ogc:def:crs:EPSG::2154"


# -- what must not change -------------------------------------------------------------------------------
@dataclass
class Snapshot:
    versions: dict
    raw: dict
    rasters: dict
    tables: dict

    @classmethod
    def of(cls, run: PlatformRun) -> "Snapshot":
        store = run.store
        versions, raw = {}, {}
        for slug in run.platform.sources:
            current = store.versions(slug).current()
            if current is not None:
                versions[slug] = (current.version, current.normalised_sha256, current.raw_sha256,
                                  file_sha256(current.data_path(store)))
            for version in store.raw.versions(slug):
                raw[(slug, version.sha256)] = file_sha256(store.raw.path(slug, version.sha256))
        rasters = {str(p.relative_to(run.home)): file_sha256(p) for p in sorted(run.home.rglob("*.tif"))}
        with duckdb.connect(str(store.warehouse), read_only=True) as db:
            names = db.execute("select table_schema, table_name from information_schema.tables "
                               "where table_type = 'BASE TABLE'").fetchall()
            tables = {f"{s}.{t}": db.execute(f'select count(*), sum(hash(x)::HUGEINT) from "{s}"."{t}" as x').fetchone()
                      for s, t in names}
        return cls(versions, raw, rasters, tables)

    def assert_kept_in(self, after: "Snapshot", *, new_version_of: str | None = None,
                       tables: set[str] | None = None) -> None:
        for slug, before in self.versions.items():
            if slug != new_version_of:
                assert after.versions.get(slug) == before, f"accepted version of {slug} changed"
        missing = {k for k in self.raw if after.raw.get(k) != self.raw[k]}
        assert not missing, f"raw deliveries lost or altered: {sorted(missing)}"
        assert after.rasters == self.rasters, "rasters changed: " + ", ".join(
            sorted(k for k in set(self.rasters) | set(after.rasters) if self.rasters.get(k) != after.rasters.get(k)))
        for name in sorted(tables if tables is not None else self.tables):
            assert after.tables.get(name) == self.tables[name], f"warehouse table {name} changed"


# -- the public paths ---------------------------------------------------------------------------------
@dataclass
class Delivered:
    requests: int = 0
    ingest: list = field(default_factory=list)
    refresh: object = None  # the partner_refresh tick after the ingest


def drop(run: PlatformRun, partner: str, files: dict[str, object]) -> Delivered:
    """Put `files` (name -> bytes, or a callable creating the entry) in inbox/<partner>/, then follow the
    sensors: partner_inbox, the ingest run it asks for, partner_refresh (not executed here)."""
    cursor = sensor_tick(run, "partner_refresh").cursor
    folder = run.store.inbox(partner)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if callable(content):
            content(folder / name)
        else:
            (folder / name).write_bytes(content)
    tick = sensor_tick(run, "partner_inbox")
    out = Delivered(requests=len(tick.run_requests))
    out.ingest = [execute_request(run, request) for request in tick.run_requests]
    out.refresh = sensor_tick(run, "partner_refresh", cursor)
    return out


def inbox_rows(run: PlatformRun, capsys) -> dict[str, dict]:
    """`iarbre inbox --json` for the home, by file name."""
    from iarbre_assets.cli import main

    capsys.readouterr()
    assert main(["inbox", "--json", "--home", str(run.home)]) == 0
    return {row["file"]: row for row in json.loads(capsys.readouterr().out)}


def refresh_selection(delivered: Delivered) -> tuple[set[str], set]:
    """Assets the refresh asks for, and the commune partitions it covers."""
    keys, spans = set(), set()
    for request in delivered.refresh.run_requests:
        keys |= {k.to_user_string() for k in request.asset_selection}
        tags = dict(request.tags)
        if "dagster/asset_partition_range_start" in tags:
            spans.add((tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]))
        elif request.partition_key:
            spans.add((request.partition_key, request.partition_key))
    return keys, spans


def frame(run: PlatformRun, slug: str) -> gpd.GeoDataFrame:
    return gpd.read_parquet(run.store.versions(slug).current().data_path(run.store))


def geojson(data: gpd.GeoDataFrame) -> bytes:
    doc = json.loads(data.to_json(drop_id=True))
    doc["crs"] = {"type": "name", "properties": {"name": L93}}
    return json.dumps(doc, ensure_ascii=False).encode()


def gml(data: gpd.GeoDataFrame, typename: str, id_field: str | None = None) -> bytes:
    return write_feature_collection(data, typename, srs_name=L93, id_field=id_field)


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def with_marked_extra(run, slug: str, count: int = 1) -> gpd.GeoDataFrame:
    """The source's current features plus `count` extra lines whose first ordinate is 123456.789 (to be
    replaced by NaN or INF in the bytes)."""
    data = frame(run, slug)
    extra = data.head(count).copy()
    extra["gid"] = [900000 + i for i in range(count)]
    extra = extra.set_geometry([shapely.LineString([(123456.789, 6516700 + i), (849500, 6516710 + i)])
                                for i in range(count)], crs=data.crs)
    return gpd.GeoDataFrame(list(data.to_dict("records")) + list(extra.to_dict("records")), crs=data.crs)


# -- assertions by outcome ---------------------------------------------------------------------------
def assert_accepted(run, before: Snapshot, delivered: Delivered, slug: str, capsys, name: str) -> dict:
    assert delivered.requests == 1, delivered
    outcome = summarise(delivered.ingest[0])
    assert outcome.success, outcome.failures + outcome.failed_checks
    row = inbox_rows(run, capsys)[name]
    assert row["state"] == "accepted" and row["source"] == slug, row
    after = Snapshot.of(run)
    before.assert_kept_in(after, new_version_of=slug)
    current = run.store.versions(slug).current()
    assert current.version != before.versions[slug][0]
    # the version it replaced stays in the history, with its raw bytes
    assert (slug, before.versions[slug][2]) in after.raw
    keys, spans = refresh_selection(delivered)
    assert not spans, f"a delivery with the same content recomputes no commune, yet the refresh asks for {spans}"
    return current.report


def assert_refused(run, before: Snapshot, delivered: Delivered, slug: str, capsys, name: str | None,
                   *words: str) -> str:
    assert delivered.requests == 1 and not summarise(delivered.ingest[0]).success
    failures = [e.event_specific_data.description or "" for e in delivered.ingest[0].all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
                and e.event_specific_data.asset_key.path[-1] == slug]
    message = " ".join(failures)
    assert slug in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    materialised = {tuple(e.asset_key.path) for e in delivered.ingest[0].get_asset_materialization_events()}
    assert ("source", slug) not in materialised
    if name is not None:
        row = inbox_rows(run, capsys)[name]
        assert row["state"] == "rejected" and row["source"] == slug and name in row["reason"], row
        assert name in message, message
    before.assert_kept_in(Snapshot.of(run))
    keys, spans = refresh_selection(delivered)
    assert not spans and not any(k.split("/")[0] in {"footprint", "coverage", "plantability_score", "tiles"}
                                 for k in keys), keys
    return message


def assert_set_aside(run, before: Snapshot, delivered: Delivered, capsys, name: str, state: str, *words: str):
    assert delivered.requests == 0 and not delivered.refresh.run_requests
    row = inbox_rows(run, capsys)[name]
    assert row["state"] == state, row
    for word in words:
        assert word.lower() in row["reason"].lower(), row
    after = Snapshot.of(run)
    before.assert_kept_in(after)
    assert after.raw == before.raw, "nothing set aside reaches the raw store"
    return row


# -- degenerate geometry --------------------------------------------------------------------------------
def test_open_polygon_rings_are_closed_counted_and_accepted(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = gml(frame(run, "parkings_surfaciques"), "voirie:parkingsurfacique")
    rings = data.count(b"<gml:posList>")
    # drop the closing point of every ring: "x1 y1 ... xn yn x1 y1" -> "x1 y1 ... xn yn"
    parts = data.split(b"</gml:posList>")
    data = b"</gml:posList>".join(p.rsplit(b" ", 2)[0] if b"<gml:posList>" in p else p for p in parts)
    delivered = drop(run, "metropole_voirie", {"parkingsurfacique.gml": data})
    report = assert_accepted(run, before, delivered, "parkings_surfaciques", capsys, "parkingsurfacique.gml")
    assert report["rings_closed"] == rings > 0


@pytest.mark.parametrize("bad", ["NaN", "INF"])
def test_a_feature_with_non_finite_ordinates_is_dropped_by_id_and_the_rest_accepted(demo_copy, capsys, bad):
    run = demo_copy
    before = Snapshot.of(run)
    data = gml(with_marked_extra(run, "assainissement"), "eau:assainissement", "gid").replace(b"123456.789", bad.encode())
    delivered = drop(run, "metropole_eau", {"assainissement.gml": data})
    report = assert_accepted(run, before, delivered, "assainissement", capsys, "assainissement.gml")
    assert report["dropped"] == {"non-finite coordinates": 1}, report["dropped"]
    assert "900000" in json.dumps(report["dropped_examples"]), report["dropped_examples"]


def test_too_many_features_with_non_finite_ordinates_refuse_the_delivery(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    extra = len(frame(run, "assainissement")) // 10  # 10 % dropped, the threshold is 1 %
    data = gml(with_marked_extra(run, "assainissement", extra), "eau:assainissement").replace(b"123456.789", b"NaN")
    delivered = drop(run, "metropole_eau", {"assainissement.gml": data})
    assert_refused(run, before, delivered, "assainissement", capsys, "assainissement.gml",
                   "features dropped", "non-finite")


def test_a_ring_that_collapses_refuses_the_delivery_naming_the_feature(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = gml(frame(run, "parkings_surfaciques"), "voirie:parkingsurfacique")
    start = data.index(b"<gml:posList>") + len(b"<gml:posList>")
    end = data.index(b"</gml:posList>", start)
    data = data[:start] + b"849459.1 6516684.9 849404.5 6516713.0" + data[end:]  # a two-point ring
    delivered = drop(run, "metropole_voirie", {"parkingsurfacique.gml": data})
    assert_refused(run, before, delivered, "parkings_surfaciques", capsys, "parkingsurfacique.gml",
                   "collapsed on repair: 1 (e.g. gml_id parkingsurfacique.1)")


# -- text ----------------------------------------------------------------------------------------------
def test_categories_in_decomposed_unicode_are_the_same_categories(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = frame(run, "espaces_publics")
    text = [c for c in data.columns if data[c].dtype == object or str(data[c].dtype).startswith("str")]
    data[text] = data[text].apply(lambda col: col.map(lambda v: unicodedata.normalize("NFD", v)
                                                      if isinstance(v, str) else v))
    assert (data["typeespacepublic"] == unicodedata.normalize("NFD", "Espace piétonnier")).any()
    delivered = drop(run, "metropole_voirie", {"espacepublic2025.geojson": geojson(data)})
    report = assert_accepted(run, before, delivered, "espaces_publics", capsys, "espacepublic2025.geojson")
    assert sum(report["unicode_normalised"].values()) > 0


def test_a_geojson_that_is_not_utf8_is_refused_naming_the_byte(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = geojson(frame(run, "espaces_publics")).decode().encode("latin-1", errors="replace")
    delivered = drop(run, "metropole_voirie", {"espacepublic2025.geojson": data})
    assert_refused(run, before, delivered, "espaces_publics", capsys, "espacepublic2025.geojson", "not UTF-8")


# -- names, formats, companions ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Assainissement.geojson", "assainissement (1).geojson", "ASSAINISSEMENT - Copie.geojson"])
def test_a_delivery_named_with_capitals_or_a_copy_marker_is_a_version_of_its_source(demo_copy, capsys, name):
    run = demo_copy
    before = Snapshot.of(run)
    delivered = drop(run, "metropole_eau", {name: geojson(frame(run, "assainissement"))})
    assert_accepted(run, before, delivered, "assainissement", capsys, name)


def test_a_second_delivery_in_another_format_with_an_older_mtime_is_taken(demo_copy, capsys, tmp_path):
    run = demo_copy
    data = frame(run, "assainissement")
    first = drop(run, "metropole_eau", {"assainissement.geojson": geojson(data)})
    assert first.ingest[0].success
    before = Snapshot.of(run)

    def old_gpkg(path: Path):
        data.to_file(path, driver="GPKG", engine="pyogrio")
        os.utime(path, (978307200, 978307200))  # 2001-01-01: older than the GeoJSON

    delivered = drop(run, "metropole_eau", {"assainissement.gpkg": old_gpkg})
    assert_accepted(run, before, delivered, "assainissement", capsys, "assainissement.gpkg")


def test_a_companion_pdf_is_set_aside_and_the_data_beside_it_accepted(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    delivered = drop(run, "metropole_eau", {"assainissement.geojson": geojson(frame(run, "assainissement")),
                                            "assainissement.pdf": b"%PDF-1.7 notice de livraison"})
    assert_accepted(run, before, delivered, "assainissement", capsys, "assainissement.geojson")
    assert inbox_rows(run, capsys)["assainissement.pdf"]["state"] == "ignored"


@pytest.mark.parametrize("name, make, state, words", [
    ("README.txt", lambda p: p.write_text("livraison de mars"), "ignored", ["not a delivery"]),
    ("shapefile", lambda p: p.mkdir(), "ignored", ["a folder"]),
    ("lignes.geojson", lambda p: p.write_text('{"type": "FeatureCollection", "features": []}'), "quarantined",
     ["matches no source", "ore_bt_aerien", "ore_bt_souterrain"]),
    ("ore_bt_aerien.geojson", lambda p: os.symlink("/etc/passwd", p), "quarantined", ["symbolic link"]),
    ("ore_bt_souterrain.geojson", lambda p: os.mkfifo(p), "quarantined", ["not a regular file"]),
])
def test_what_is_not_a_delivery_is_set_aside_visibly_and_never_read(demo_copy, capsys, name, make, state, words):
    run = demo_copy
    before = Snapshot.of(run)
    delivered = drop(run, "enedis", {name: make})
    assert_set_aside(run, before, delivered, capsys, name, state, *words)
    passwd = Path("/etc/passwd").read_bytes()
    assert not any(p.read_bytes() == passwd for p in run.store.raw.root.rglob("*") if p.is_file())


def test_the_same_bytes_again_under_another_name_make_no_run(demo_copy, capsys):
    run = demo_copy
    current = run.store.versions("assainissement").current()
    raw = run.store.raw.version("assainissement", current.raw_sha256)
    before = Snapshot.of(run)
    name = f"assainissement (2).{raw.ext}"
    delivered = drop(run, "metropole_eau", {name: run.store.raw.read("assainissement", raw.sha256)})
    row = assert_set_aside(run, before, delivered, capsys, name, "accepted", "same bytes")
    assert row["source"] == "assainissement"


# -- archives and limits ---------------------------------------------------------------------------------
def test_a_zip_with_more_entries_than_the_limit_is_refused_before_extraction(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = zipped({f"part-{i:05d}.txt": b"x" for i in range(10_001)})
    delivered = drop(run, "metropole_geomatique", {"new_all_eva.zip": data})
    assert_refused(run, before, delivered, "eva_2015", capsys, "new_all_eva.zip", "10001 entries",
                   "limits.max_archive_entries")


def test_a_zip_bomb_is_refused_from_its_directory(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = zipped({"new_all_eva.shp": bytes(300 * 1024**2)})  # 300 MiB of zeros, about 300 KB zipped
    assert len(data) < 2 * 1024**2
    delivered = drop(run, "metropole_geomatique", {"new_all_eva.zip": data})
    assert_refused(run, before, delivered, "eva_2015", capsys, "new_all_eva.zip", "zip bomb",
                   "limits.max_compression_ratio")
    assert not any(p.stat().st_size > 10 * 1024**2 for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("iarbre-file-*/**/*")
                   if p.is_file())


def test_a_damaged_zip_entry_is_refused_by_name(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = bytearray(run.store.raw.read("eva_2015", run.store.versions("eva_2015").current().raw_sha256))
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    delivered = drop(run, "metropole_geomatique", {"new_all_eva.zip": bytes(data)})
    assert_refused(run, before, delivered, "eva_2015", capsys, "new_all_eva.zip", "damaged zip")


def variant(run: PlatformRun, tmp_path: Path, mutate, name: str) -> PlatformRun:
    """The same home under a copy of the demo territory file changed by `mutate` (what a steward edits)."""
    doc = yaml.safe_load(territory_path("demo").read_text(encoding="utf-8"))
    doc["name"] = name
    doc["data_dir"] = str(run.platform.data_dir)
    mutate(doc)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    defs, resource, instance = build(run.home, str(path))
    return PlatformRun(run.home, defs, resource, instance, None)


@pytest.mark.parametrize("limit, value, words", [
    ("max_features", 100, ["more than 100 features", "limits.max_features"]),
    ("max_vertices", 5000, ["more than 5000 vertices", "limits.max_vertices"]),
    ("max_uncompressed_bytes", 1000, ["inflate to", "limits.max_uncompressed_bytes"]),
])
def test_a_territory_sets_its_own_limits_and_a_delivery_past_one_is_refused(demo_copy, capsys, tmp_path, limit,
                                                                             value, words):
    run = variant(demo_copy, tmp_path, lambda d: d.update(limits={limit: value}), f"demo_{limit}")
    before = Snapshot.of(run)
    lines = frame(run, "assainissement")  # 442 lines, 910 vertices; a vertex every metre: about 50 000
    lines = lines.set_geometry(shapely.segmentize(lines.geometry.array, 1.0))
    data = zipped({"assainissement.geojson": geojson(lines)})
    delivered = drop(run, "metropole_eau", {"assainissement.zip": data})
    assert_refused(run, before, delivered, "assainissement", capsys, "assainissement.zip", *words)


# -- endpoints --------------------------------------------------------------------------------------------
class ScriptedEndpoint(BaseHTTPRequestHandler):
    """Answers each GET with `answer(path, query, count)` -> (status, headers, body)."""

    answer = None
    calls: list = []

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        type(self).calls.append((parts.path, query))
        status, headers, body = type(self).answer(parts.path, query, len(type(self).calls))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    ScriptedEndpoint.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ScriptedEndpoint, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _gas_records(run, start: int, count: int) -> list[dict]:
    data = frame(run, "ore_gaz").to_crs("EPSG:4326")
    field_name = run.platform.sources["ore_gaz"].location.geometry_field
    rows = []
    for i in range(start, start + count):
        row = data.iloc[i % len(data)]
        rows.append({"_id": f"rec-{i}", "materiau": str(row.get("materiau", "PE")),
                     field_name: json.loads(shapely.to_geojson(row.geometry))})
    return rows


def fetch_now(run, slug: str) -> tuple[Snapshot, object, object]:
    """`iarbre run --select 'key:raw/<slug> key:source/<slug>'` (a fetch now), then the refresh sensor."""
    before = Snapshot.of(run)
    cursor = sensor_tick(run, "partner_refresh").cursor
    outcome = materialise(run.defs, run.territory, run.instance, select=[["raw", slug], ["source", slug]])
    return before, outcome, sensor_tick(run, "partner_refresh", cursor)


def _assert_fetch_refused(run, before: Snapshot, outcome, tick, slug: str, *words: str) -> str:
    assert not outcome.success
    failures = [e.event_specific_data.description or "" for e in outcome.result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed]
    message = " ".join(failures)
    for word in (slug, "delivery failed", *words):
        assert word.lower() in message.lower(), message
    before.assert_kept_in(Snapshot.of(run))
    keys, spans = refresh_selection(Delivered(refresh=tick))
    assert not spans and not any(k.split("/")[0] in {"footprint", "coverage", "plantability_score", "tiles"}
                                 for k in keys), keys
    return message


def _endless_datafair(demo_copy, endpoint, tmp_path, total: int, first_record, name: str):
    """A data-fair server that always answers 50 records (from `first_record(n)` for the n-th request)
    with a fresh `next` cursor and `total`, and the demo's gas source pointed at it."""
    handler, base = endpoint

    def answer(path, query, n):
        page = {"total": total, "results": _gas_records(demo_copy, first_record(n), 50),
                "next": f"{base}/lines?after=cursor-{n}&size=50"}
        return 200, {"Content-Type": "application/json"}, json.dumps(page).encode()

    handler.answer = staticmethod(answer)
    return variant(demo_copy, tmp_path, lambda d: d["sources"]["ore_gaz"].update(url=f"{base}/lines", page_size=50),
                   name)


def test_a_datafair_server_minting_fresh_cursors_forever_is_stopped_at_the_repeated_page(demo_copy, endpoint,
                                                                                       tmp_path):
    handler, _base = endpoint
    run = _endless_datafair(demo_copy, endpoint, tmp_path, 424, lambda n: 0, "demo_endless")  # the same 50 again
    before, outcome, tick = fetch_now(run, "ore_gaz")
    _assert_fetch_refused(run, before, outcome, tick, "ore_gaz", "repeats the records of page 1")
    assert len(handler.calls) == 2  # two pages, not 3 000


def test_a_datafair_server_returning_more_records_than_its_total_is_refused(demo_copy, endpoint, tmp_path):
    run = _endless_datafair(demo_copy, endpoint, tmp_path, 60, lambda n: 50 * n, "demo_beyond_total")
    before, outcome, tick = fetch_now(run, "ore_gaz")
    _assert_fetch_refused(run, before, outcome, tick, "ore_gaz", "total")


def _trees_gml(run) -> bytes:
    data = frame(run, "arbres_alignement")
    return write_feature_collection(data, "metropole-de-lyon:abr_arbres_alignement.abrarbre", srs_name=L93,
                                    number_matched=len(data), id_field="gid")


def test_a_wfs_asking_to_wait_is_retried_after_its_retry_after_and_accepted(demo_copy, endpoint, tmp_path):
    handler, base = endpoint
    body = _trees_gml(demo_copy)

    def answer(path, query, n):
        if n == 1:
            return 429, {"Retry-After": "2"}, b"Too Many Requests"
        return 200, {"Content-Type": "application/gml+xml; version=3.2"}, body

    handler.answer = staticmethod(answer)
    run = variant(demo_copy, tmp_path, lambda d: d["sources"]["arbres_alignement"].update(
        url=f"{base}/ows", page_size=100000, retries=2), "demo_retry_after")
    before, outcome, tick = fetch_now(run, "arbres_alignement")
    assert outcome.success, outcome.failures + outcome.failed_checks
    raw = run.store.raw.latest("arbres_alignement")
    waits = [r.get("retry_after_s") for r in raw.requests if r.get("status") == 429]
    assert waits == [2.0], raw.requests
    before.assert_kept_in(Snapshot.of(run), new_version_of="arbres_alignement")
    assert run.store.versions("arbres_alignement").current().raw_sha256 == raw.sha256
    assert not refresh_selection(Delivered(refresh=tick))[1], "the same trees recompute no commune"


def test_a_wfs_asking_to_wait_longer_than_the_cap_is_refused_at_once(demo_copy, endpoint, tmp_path):
    handler, base = endpoint
    handler.answer = staticmethod(lambda path, query, n: (429, {"Retry-After": "3600"}, b"Too Many Requests"))
    run = variant(demo_copy, tmp_path, lambda d: d["sources"]["arbres_alignement"].update(
        url=f"{base}/ows", retries=3), "demo_retry_cap")
    before, outcome, tick = fetch_now(run, "arbres_alignement")
    _assert_fetch_refused(run, before, outcome, tick, "arbres_alignement", "retry after 3600 s", "more than the 60 s")
    assert len(handler.calls) == 1  # refused at once: no retry before the wait


# -- the refresh after a repaired and after a refused delivery, executed ----------------------------------
SCORE_TABLES = {"iarbre.tiles", "iarbre.factor_stats", "iarbre.score_runs", "iarbre.score_run_inputs",
                "marts.commune_plantability", "marts.factor_contribution", "marts.iris_plantability"}


def test_after_a_repaired_delivery_the_refresh_leaves_every_raster_and_score_table_as_it_was(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    data = gml(with_marked_extra(run, "assainissement"), "eau:assainissement", "gid").replace(b"123456.789", b"NaN")
    delivered = drop(run, "metropole_eau", {"assainissement.gml": data})
    assert_accepted(run, before, delivered, "assainissement", capsys, "assainissement.gml")
    for request in delivered.refresh.run_requests:
        assert execute_request(run, request).success
    after = Snapshot.of(run)
    before.assert_kept_in(after, new_version_of="assainissement", tables=SCORE_TABLES - {"iarbre.score_runs",
                                                                                         "iarbre.score_run_inputs"})
    with duckdb.connect(str(run.store.warehouse), read_only=True) as db:
        version = db.execute("select version from marts.source_inventory where source = 'assainissement'").fetchone()
    assert version[0] == run.store.versions("assainissement").current().raw_sha256


def test_after_a_refused_delivery_the_refresh_shows_the_rejection_and_changes_no_score(demo_copy, capsys):
    run = demo_copy
    before = Snapshot.of(run)
    delivered = drop(run, "metropole_eau", {"assainissement.geojson": b'{"type": "FeatureCollection", "feat'})
    assert_refused(run, before, delivered, "assainissement", capsys, "assainissement.geojson", "JSON")
    for request in delivered.refresh.run_requests:
        assert execute_request(run, request).success
    before.assert_kept_in(Snapshot.of(run), tables=SCORE_TABLES)
    with duckdb.connect(str(run.store.warehouse), read_only=True) as db:
        columns = [c[0] for c in db.execute("describe marts.source_inventory").fetchall()]
        row = dict(zip(columns, db.execute("select * from marts.source_inventory where source = 'assainissement'")
                       .fetchone()))
    assert "assainissement.geojson" in json.dumps(row, default=str), row
