"""A local HTTP server that serves a directory of wire-format files the way the real services page them.

    with LocalDataServer(root) as server:       # root = a "wire" directory
        url = server.url                         # http://127.0.0.1:<port>, the ${LOCAL_SERVER} of a territory

Layout of `root` and what is answered (anything else: 404 with a plain message):

* WFS 2.0 GetFeature (query SERVICE=WFS & REQUEST=GetFeature, keys in any case, on any path):
  `wfs/<typename with ':' replaced by '__'>.gml`, a complete FeatureCollection written by
  `iarbre_demo.wire.gml_writer.write_feature_collection` in EPSG:2154. Honours STARTINDEX, COUNT and
  BBOX (envelope test), answers numberMatched/numberReturned and a `next` link while more remain; SORTBY
  is accepted and the file order is the (stable) order. RESULTTYPE=hits answers an empty
  wfs:FeatureCollection with numberMatched, numberReturned="0" and timeStamp. Unknown typename, a non-2154
  SRSNAME or BBOX CRS, or a bad number -> ows:ExceptionReport, HTTP 400.
* data-fair: `/data-fair/api/v1/datasets/<id>/lines` from `datafair/<id>.json`
  (`iarbre_demo.wire.datafair_writer.write_dataset_file`). Honours size (<= 10000), qs (field:value
  equality, clauses joined by AND), after (cursor on `_i`); `next` (absolute) on all but the last page.
  `/data-fair/api/v1/datasets/<id>` is the dataset's metadata: id, title, count, dataUpdatedAt, updatedAt,
  finalizedAt (ISO 8601 UTC, from the file's modification time).
* Cartofriches: any path ending in `/cartofriches/geofriches/` from `cartofriches/geofriches.geojson`
  (`iarbre_demo.wire.cartofriches_writer.write_dataset_file`). Filters code_insee, coddep (prefix of
  code_insee) and in_bbox (lon/lat envelope test); page_size + page (1-based); DRF GeoJSON envelope.

Conditional requests, as real services answer them: every WFS and data-fair answer carries a strong `ETag`
(a hash of the served file's bytes and of the request path and query) and `Last-Modified` (the file's
modification time); a matching If-None-Match (or, without one, an If-Modified-Since not older than the file)
gets `304 Not Modified` and no body. The hits timeStamp is the file's modification time too, so one ETag
always names the same bytes.

Each file is indexed once per modification time: a GML file is split into its wfs:member byte ranges and
each member's envelope is computed in one vectorised pass over the coordinates; a page is then a slice of
those byte ranges (no XML re-parse per request).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr

import numpy as np

WFS_NS = b"http://www.opengis.net/wfs/2.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
PLATFORM_SRS = re.compile(
    r"^(EPSG:2154|urn:(x-)?ogc:def:crs:EPSG:[0-9.]*:2154|https?://www\.opengis\.net/def/crs/EPSG/[0-9.]+/2154"
    r"|https?://www\.opengis\.net/gml/srs/epsg\.xml#2154)$", re.I)
DATAFAIR_PATH = re.compile(r"^/data-fair/api/v1/datasets/([A-Za-z0-9_.\-]+)/lines/?$")
DATAFAIR_DATASET_PATH = re.compile(r"^/data-fair/api/v1/datasets/([A-Za-z0-9_.\-]+)/?$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-:]+$")
DATAFAIR_MAX_SIZE = 10_000
CARTOFRICHES_DEFAULT_PAGE = 100


class _BadRequest(Exception):
    def __init__(self, code: str, locator: str, text: str):
        super().__init__(text)
        self.code, self.locator, self.text = code, locator, text


# ----------------------------------------------------------------------------------------------
# File indexes (built once per file version)
# ----------------------------------------------------------------------------------------------
class GmlIndex:
    """Member byte ranges and envelopes of one GML FeatureCollection file."""

    _ROOT = re.compile(rb"<(?![?!])([A-Za-z_][\w.\-]*:)?FeatureCollection\b[^>]*>", re.S)
    _COORDS = re.compile(rb"<(?:[\w.\-]+:)?pos(?:List)?\b([^>]*)>([^<]*)<")
    _CORNERS = re.compile(rb"<(?:[\w.\-]+:)?lowerCorner>([^<]*)</(?:[\w.\-]+:)?lowerCorner>\s*"
                          rb"<(?:[\w.\-]+:)?upperCorner>([^<]*)<")

    def __init__(self, data: bytes):
        self.data = data
        root = self._ROOT.search(data)
        if root is None:
            raise ValueError("no FeatureCollection root element")
        self.root_tag = root.group(0)
        self.root_name = self.root_tag[1:].split(None, 1)[0].rstrip(b"/>")
        prefix = re.search(rb'xmlns:([\w.\-]+)="' + re.escape(WFS_NS) + rb'"', self.root_tag)
        member = (prefix.group(1) + b":member") if prefix else b"member"
        body_start = root.end()
        opens = [m.start() for m in re.compile(rb"<" + re.escape(member) + rb"[\s>]").finditer(data, body_start)]
        closes = [m.end() for m in re.compile(rb"</" + re.escape(member) + rb"\s*>").finditer(data, body_start)]
        if len(opens) != len(closes):
            raise ValueError(f"{len(opens)} <{member.decode()}> but {len(closes)} closing tags")
        self.starts = np.asarray(opens, dtype=np.int64)
        self.ends = np.asarray(closes, dtype=np.int64)
        self.envelopes = self._envelopes()

    def __len__(self) -> int:
        return len(self.starts)

    def _envelopes(self) -> np.ndarray:
        """(n, 4) minx, miny, maxx, maxy per member (NaN for a member without coordinates).

        Uses the features' gml:boundedBy envelopes when every member has one (4 numbers to read instead
        of every coordinate), else the min/max of all pos/posList coordinates of each member.
        """
        n = len(self.starts)
        if n == 0:
            return np.full((0, 4), np.nan)
        quick = self._from_bounded_by()
        return quick if quick is not None else self._from_coordinates()

    def _from_bounded_by(self) -> np.ndarray | None:
        corners, positions = [], []
        for match in self._CORNERS.finditer(self.data, int(self.starts[0]), int(self.ends[-1])):
            corners.append(match.group(1) + b" " + match.group(2))
            positions.append(match.start())
        if not corners:
            return None
        member = np.searchsorted(self.starts, np.asarray(positions), side="right") - 1
        members, first = np.unique(member, return_index=True)
        if len(members) != len(self.starts):
            return None
        try:
            values = np.array(b" ".join(corners[i] for i in first.tolist()).split(), dtype=np.float64)
        except ValueError:
            return None
        if values.size != 4 * len(members):
            return None  # 3-D corners or odd content: take the slow, exact path
        return values.reshape(-1, 4)

    def _from_coordinates(self) -> np.ndarray:
        n = len(self.starts)
        env = np.full((n, 4), np.nan)
        texts, dims, positions = [], [], []
        first, last = int(self.starts[0]), int(self.ends[-1])
        for match in self._COORDS.finditer(self.data, first, last):
            texts.append(match.group(2))
            dims.append(3 if b'srsDimension="3"' in match.group(1) else 2)
            positions.append(match.start())
        if not texts:
            return env
        counts = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
        values = np.array(b" ".join(texts).split(), dtype=np.float64)
        member_of_match = np.searchsorted(self.starts, np.asarray(positions), side="right") - 1
        match_of_value = np.repeat(np.arange(len(texts)), counts)
        offsets = np.arange(values.size) - np.repeat(np.cumsum(counts) - counts, counts)
        axis = offsets % np.repeat(np.asarray(dims), counts)
        member = member_of_match[match_of_value]
        for column, want in ((0, 0), (1, 1)):
            mask = axis == want
            vals, mem = values[mask], member[mask]
            if not vals.size:
                continue
            cuts = np.flatnonzero(np.r_[True, mem[1:] != mem[:-1]])
            env[mem[cuts], column] = np.minimum.reduceat(vals, cuts)
            env[mem[cuts], column + 2] = np.maximum.reduceat(vals, cuts)
        return env

    def select(self, bbox: tuple[float, float, float, float] | None) -> np.ndarray:
        if bbox is None:
            return np.arange(len(self))
        minx, miny, maxx, maxy = bbox
        env = self.envelopes
        with np.errstate(invalid="ignore"):
            keep = (env[:, 0] <= maxx) & (env[:, 2] >= minx) & (env[:, 1] <= maxy) & (env[:, 3] >= miny)
        return np.flatnonzero(keep)

    def hits(self, *, matched: int, timestamp: str) -> bytes:
        """The RESULTTYPE=hits answer: an empty collection with numberMatched, numberReturned="0", timeStamp."""
        head = re.sub(rb'\s(?:numberMatched|numberReturned|next|previous|timeStamp)="[^"]*"', b"", self.root_tag)
        head = head[:-1].rstrip(b"/")
        head += f' numberMatched="{matched}" numberReturned="0" timeStamp={quoteattr(timestamp)}'.encode()
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + head + b"/>\n"

    def page(self, indices: np.ndarray, *, matched: int, next_url: str | None) -> bytes:
        head = re.sub(rb'\s(?:numberMatched|numberReturned|next|previous)="[^"]*"', b"", self.root_tag)
        head = head[:-1].rstrip(b"/")  # an empty collection may be written as a self-closing element
        head += f' numberMatched="{matched}" numberReturned="{len(indices)}"'.encode()
        if next_url:
            head += b" next=" + quoteattr(next_url).encode()
        parts = [b'<?xml version="1.0" encoding="UTF-8"?>\n', head, b">\n"]
        data = self.data
        for start, end in zip(self.starts[indices].tolist(), self.ends[indices].tolist()):
            parts.append(data[start:end])
            parts.append(b"\n")
        parts.append(b"</" + self.root_name + b">\n")
        return b"".join(parts)


class DatafairIndex:
    def __init__(self, data: bytes):
        document = json.loads(data)
        records = document["results"] if isinstance(document, dict) else document
        records = sorted(records, key=lambda r: r["_i"])
        self.records = records
        self.cursor = [int(r["_i"]) for r in records]
        self.encoded = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in records]
        self._filters: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def matching(self, qs: str | None) -> list[int]:
        """Positions (in cursor order) of the records matching a `field:value [AND field:value]` query."""
        if not qs:
            return list(range(len(self.records)))
        with self._lock:
            if qs not in self._filters:
                clauses = []
                for clause in re.split(r"\s+AND\s+", qs.strip()):
                    field, sep, value = clause.partition(":")
                    if not sep or not field:
                        raise _BadRequest("InvalidParameterValue", "qs", f"qs clause {clause!r} is not field:value")
                    clauses.append((field.strip(), value.strip().strip('"')))
                self._filters[qs] = [i for i, r in enumerate(self.records)
                                     if all(_text(r.get(f)) == v for f, v in clauses)]
            return self._filters[qs]


class CartofrichesIndex:
    def __init__(self, data: bytes):
        import shapely

        document = json.loads(data)
        self.features = document["features"]
        self.encoded = [json.dumps(f, ensure_ascii=False, separators=(",", ":")).encode() for f in self.features]
        geometries = shapely.from_geojson(np.array(
            [None if f.get("geometry") is None else json.dumps(f["geometry"]) for f in self.features], dtype=object))
        self.envelopes = shapely.bounds(geometries) if len(self.features) else np.empty((0, 4))
        self.codes = [_text((f.get("properties") or {}).get("code_insee")) for f in self.features]


def _text(value) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class FileVersion:
    """One version of a served file: its index, the SHA-256 of its bytes and its modification time."""

    index: object
    digest: str
    mtime_ns: int

    @property
    def last_modified(self) -> str:
        """The HTTP date (RFC 9110 IMF-fixdate) of the modification time."""
        return formatdate(self.mtime_ns / 1e9, usegmt=True)

    @property
    def iso_time(self) -> str:
        """The modification time in ISO 8601 UTC with milliseconds, as data-fair writes dates."""
        moment = datetime.fromtimestamp(self.mtime_ns // 1_000_000_000, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.mtime_ns // 1_000_000 % 1000:03d}Z"


# ----------------------------------------------------------------------------------------------
# Server
# ----------------------------------------------------------------------------------------------
class LocalDataServer:
    """Serve a wire directory on 127.0.0.1 (a daemon thread); `url` is its base URL."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._cache: dict[tuple[str, Path], tuple[tuple[int, int], FileVersion]] = {}
        self._cache_lock = threading.Lock()
        self._build_locks: dict[Path, threading.Lock] = {}

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> "LocalDataServer":
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            owner = server

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"iarbre-wire-{self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "LocalDataServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- indexes --------------------------------------------------------------------------------
    def index(self, kind: str, path: Path):
        """The index of `path`, rebuilt only when the file's mtime or size changed."""
        return self.version(kind, path).index

    def version(self, kind: str, path: Path) -> FileVersion:
        """The current FileVersion of `path` (index, digest, mtime), rebuilt only when its mtime or size changed."""
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        key = (kind, path)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached and cached[0] == version:
                return cached[1]
            build_lock = self._build_locks.setdefault(path, threading.Lock())
        with build_lock:  # one build per file even when several requests arrive together
            with self._cache_lock:
                cached = self._cache.get(key)
                if cached and cached[0] == version:
                    return cached[1]
            data = path.read_bytes()
            index = {"wfs": GmlIndex, "datafair": DatafairIndex, "cartofriches": CartofrichesIndex}[kind](data)
            entry = FileVersion(index, hashlib.sha256(data).hexdigest(), version[0])
            with self._cache_lock:
                self._cache[key] = (version, entry)
            return entry


class _Handler(BaseHTTPRequestHandler):
    owner: LocalDataServer
    protocol_version = "HTTP/1.1"
    server_version = "iarbre-wire/1.0"

    def log_message(self, format, *args):  # quiet: tests and the demo run print nothing per request
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        upper = {k.upper(): v for k, v in pairs}
        try:
            if upper.get("SERVICE", "").upper() == "WFS":
                self._wfs(parts.path, pairs, upper)
            elif DATAFAIR_PATH.match(parts.path):
                self._datafair(parts.path, DATAFAIR_PATH.match(parts.path).group(1), pairs)
            elif DATAFAIR_DATASET_PATH.match(parts.path):
                self._datafair_dataset(DATAFAIR_DATASET_PATH.match(parts.path).group(1))
            elif parts.path.endswith("/cartofriches/geofriches/"):
                self._cartofriches(parts.path, pairs)
            else:
                self._send(404, b"not found: " + parts.path.encode("utf-8", "replace") + b"\n", "text/plain")
        except BrokenPipeError:
            pass

    # -- helpers --------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _validators(self, version: FileVersion) -> dict:
        """ETag (strong: the file's bytes and this request's path and query) and Last-Modified headers."""
        tag = hashlib.sha256(f"{version.digest}\n{self.path}".encode("utf-8", "surrogateescape")).hexdigest()
        return {"ETag": f'"{tag[:32]}"', "Last-Modified": version.last_modified}

    def _not_modified(self, validators: dict, version: FileVersion) -> bool:
        """Answer 304 (and return True) when the client's copy is current (RFC 9110 §13.2.2 order)."""
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            current = validators["ETag"]
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            fresh = "*" in tags or current in tags  # weak comparison, as GET allows
        else:
            fresh = _not_modified_since(self.headers.get("If-Modified-Since"), version.mtime_ns)
        if fresh:
            self.send_response(304)
            for key, value in validators.items():
                self.send_header(key, value)
            self.end_headers()
        return fresh

    def _json(self, status: int, document) -> None:
        self._send(status, json.dumps(document, ensure_ascii=False).encode(), "application/json")

    def _base(self) -> str:
        return self.owner.url

    def _exception(self, code: str, locator: str, text: str, status: int = 400) -> None:
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<ows:ExceptionReport xmlns:ows="{OWS_NS}" version="2.0.0">'
                f"<ows:Exception exceptionCode={quoteattr(code)} locator={quoteattr(locator)}>"
                f"<ows:ExceptionText>{escape(text)}</ows:ExceptionText></ows:Exception></ows:ExceptionReport>\n")
        self._send(status, body.encode(), "application/xml")

    # -- WFS --------------------------------------------------------------------------------------
    def _wfs(self, path: str, pairs: list, upper: dict) -> None:
        try:
            request = upper.get("REQUEST", "")
            if request.lower() != "getfeature":
                raise _BadRequest("OperationNotSupported", "request", f"request {request!r} is not supported here")
            typename = upper.get("TYPENAMES") or upper.get("TYPENAME")
            if not typename:
                raise _BadRequest("MissingParameterValue", "typeNames", "TYPENAMES is required")
            srs = upper.get("SRSNAME")
            if srs and not PLATFORM_SRS.match(srs):
                raise _BadRequest("InvalidParameterValue", "srsName",
                                  f"srsName {srs!r} is not offered: this server only serves EPSG:2154")
            file = self._wfs_file(typename)
            start = _non_negative(upper.get("STARTINDEX", "0"), "startIndex")
            count = _non_negative(upper["COUNT"], "count") if "COUNT" in upper else None
            bbox = _bbox(upper["BBOX"]) if "BBOX" in upper else None
            result_type = upper.get("RESULTTYPE", "results").lower()
            if result_type not in {"results", "hits"}:
                raise _BadRequest("InvalidParameterValue", "resultType", f"resultType {result_type!r} is neither "
                                  "'results' nor 'hits'")
        except _BadRequest as exc:
            return self._exception(exc.code, exc.locator, exc.text)
        try:
            version = self.owner.version("wfs", file)
        except (OSError, ValueError) as exc:
            return self._exception("OperationProcessingFailed", "typeNames", f"cannot read {file.name}: {exc}", 500)
        validators = self._validators(version)
        if self._not_modified(validators, version):
            return None
        index = version.index
        selected = index.select(bbox)
        matched = len(selected)
        if result_type == "hits":
            return self._send(200, index.hits(matched=matched, timestamp=version.iso_time),
                              "application/gml+xml; version=3.2", validators)
        stop = matched if count is None else min(matched, start + count)
        page = selected[start:stop] if start < matched else selected[:0]
        next_url = None
        if start + len(page) < matched and len(page):
            query = [(k, str(start + len(page)) if k.upper() == "STARTINDEX" else v) for k, v in pairs]
            if not any(k.upper() == "STARTINDEX" for k, _ in query):
                query.append(("STARTINDEX", str(start + len(page))))
            next_url = f"{self._base()}{path}?{urlencode(query, safe=':,')}"
        self._send(200, index.page(page, matched=matched, next_url=next_url),
                   "application/gml+xml; version=3.2", validators)

    def _wfs_file(self, typename: str) -> Path:
        if "," in typename:
            raise _BadRequest("InvalidParameterValue", "typeNames", "one type name per request, please")
        if not SAFE_NAME.match(typename) or ".." in typename:
            raise _BadRequest("InvalidParameterValue", "typeNames", f"feature type {typename!r} is unknown")
        root = self.owner.root / "wfs"
        file = (root / f"{typename.replace(':', '__')}.gml").resolve()
        if not file.is_relative_to(root.resolve()) or not file.is_file():
            raise _BadRequest("InvalidParameterValue", "typeNames", f"feature type {typename!r} is unknown")
        return file

    # -- data-fair ------------------------------------------------------------------------------
    def _datafair(self, path: str, dataset: str, pairs: list) -> None:
        file = self.owner.root / "datafair" / f"{dataset}.json"
        if not file.is_file():
            return self._json(404, {"error": f"dataset {dataset!r} not found"})
        params = dict(pairs)
        try:
            size = _non_negative(params.get("size", "12"), "size")
            if size > DATAFAIR_MAX_SIZE:
                raise _BadRequest("InvalidParameterValue", "size", f"size must be <= {DATAFAIR_MAX_SIZE}")
            after = int(params["after"]) if params.get("after") else None
            if params.get("format", "json") != "json":
                raise _BadRequest("InvalidParameterValue", "format", "only format=json is served here")
            version = self.owner.version("datafair", file)
            index = version.index
            positions = index.matching(params.get("qs"))
        except (_BadRequest, ValueError) as exc:
            return self._json(400, {"error": getattr(exc, "text", str(exc))})
        validators = self._validators(version)
        if self._not_modified(validators, version):
            return None
        cursors = [index.cursor[p] for p in positions]
        begin = 0 if after is None else bisect_right(cursors, after)
        chosen = positions[begin:begin + size]
        body = [b'{"total":', str(len(positions)).encode(), b',"results":[',
                b",".join(index.encoded[p] for p in chosen), b"]"]
        if begin + len(chosen) < len(positions) and chosen:
            query = [(k, v) for k, v in pairs if k != "after"] + [("after", str(index.cursor[chosen[-1]]))]
            body += [b',"next":', json.dumps(f"{self._base()}{path}?{urlencode(query, safe=':,')}").encode()]
        body.append(b"}")
        self._send(200, b"".join(body), "application/json", validators)

    def _datafair_dataset(self, dataset: str) -> None:
        """The dataset's metadata, as data-fair's `GET /datasets/<id>` (the fields a change probe reads)."""
        file = self.owner.root / "datafair" / f"{dataset}.json"
        if not file.is_file():
            return self._json(404, {"error": f"dataset {dataset!r} not found"})
        try:
            version = self.owner.version("datafair", file)
        except (OSError, ValueError) as exc:
            return self._json(500, {"error": f"cannot read dataset {dataset!r}: {exc}"})
        validators = self._validators(version)
        if self._not_modified(validators, version):
            return None
        when = version.iso_time
        document = {"id": dataset, "title": dataset, "count": len(version.index.records), "dataUpdatedAt": when,
                    "updatedAt": when, "finalizedAt": when}
        self._send(200, json.dumps(document, ensure_ascii=False).encode(), "application/json", validators)

    # -- Cartofriches ---------------------------------------------------------------------------
    def _cartofriches(self, path: str, pairs: list) -> None:
        file = self.owner.root / "cartofriches" / "geofriches.geojson"
        if not file.is_file():
            return self._json(404, {"detail": "Not found."})
        params = dict(pairs)
        try:
            page_size = _non_negative(params.get("page_size", str(CARTOFRICHES_DEFAULT_PAGE)), "page_size")
            page_number = _non_negative(params.get("page", "1"), "page")
            box = _bbox(params["in_bbox"], lonlat=True) if params.get("in_bbox") else None
        except _BadRequest as exc:
            return self._json(400, {"detail": exc.text})
        if page_size == 0 or page_number == 0:
            return self._json(404, {"detail": "Invalid page."})
        index = self.owner.index("cartofriches", file)
        keep = np.ones(len(index.features), dtype=bool)
        if params.get("code_insee"):
            keep &= np.array([c == params["code_insee"] for c in index.codes], dtype=bool)
        if params.get("coddep"):
            keep &= np.array([c is not None and c.startswith(params["coddep"]) for c in index.codes], dtype=bool)
        if box is not None and len(index.features):
            env = index.envelopes
            with np.errstate(invalid="ignore"):
                keep &= (env[:, 0] <= box[2]) & (env[:, 2] >= box[0]) & (env[:, 1] <= box[3]) & (env[:, 3] >= box[1])
        selected = np.flatnonzero(keep)
        count = len(selected)
        first = (page_number - 1) * page_size
        if first >= count and page_number > 1:
            return self._json(404, {"detail": "Invalid page."})
        chosen = selected[first:first + page_size].tolist()

        def link(number: int) -> str:
            query = [(k, v) for k, v in pairs if k != "page"] + [("page", str(number))]
            return f"{self._base()}{path}?{urlencode(query, safe=':,')}"

        next_url = link(page_number + 1) if first + len(chosen) < count else None
        previous = link(page_number - 1) if page_number > 1 else None
        head = json.dumps({"type": "FeatureCollection", "count": count, "next": next_url, "previous": previous},
                          ensure_ascii=False)[:-1]
        body = head.encode() + b',"features":[' + b",".join(index.encoded[i] for i in chosen) + b"]}"
        self._send(200, body, "application/json")


def _not_modified_since(value: str | None, mtime_ns: int) -> bool:
    """True when an If-Modified-Since date is not older than the file (HTTP dates have whole seconds)."""
    if not value:
        return False
    try:
        since = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as RFC 9110 asks
    if since.tzinfo is None:
        return False
    return mtime_ns // 1_000_000_000 <= since.timestamp()


def _non_negative(value: str, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _BadRequest("InvalidParameterValue", name, f"{name}={value!r} is not an integer") from None
    if number < 0:
        raise _BadRequest("InvalidParameterValue", name, f"{name}={value!r} is negative")
    return number


def _bbox(value: str, *, lonlat: bool = False) -> tuple[float, float, float, float]:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 5 and not lonlat:
        if not PLATFORM_SRS.match(parts[4]):
            raise _BadRequest("InvalidParameterValue", "bbox",
                              f"BBOX CRS {parts[4]!r} is not offered: this server only serves EPSG:2154")
        parts = parts[:4]
    if len(parts) != 4:
        raise _BadRequest("InvalidParameterValue", "bbox", f"bbox {value!r} needs minx,miny,maxx,maxy")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise _BadRequest("InvalidParameterValue", "bbox", f"bbox {value!r} is not numeric") from None
    if not (minx <= maxx and miny <= maxy):
        raise _BadRequest("InvalidParameterValue", "bbox", f"bbox {value!r} is inverted")
    return minx, miny, maxx, maxy
