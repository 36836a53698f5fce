"""Agence ORE open data (data-fair): the `.../lines` endpoint, following `next` until it is absent.

Page body: {"total": N, "results": [record, ...], "next": "<absolute url>"}. Each record carries its
geometry as a GeoJSON *string* (EPSG:4326) in `geometry_field`; every other attribute is kept (the
reference dropped them, and with them the network type and depth).

Paging stops, refused, as soon as it cannot be right: more records than `total`, a page of records
already received (same `_id`, or the same page again under a fresh cursor), a `next` seen before, an
empty page with a `next`, or a `total` that changes. A server minting fresh cursors forever is stopped
after `total` records, not after MAX_PAGES pages.
"""

from __future__ import annotations

import hashlib
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .errors import MalformedResponse
from .http import HttpClient, redact_url, url_with_params
from .payload import Payload, ReadBudget, bundle_pages, concat_frames, read_bundle

CRS = "EPSG:4326"
MAX_PAGES = 99_999  # page names have five digits


def _page(body: bytes, *, source: str, location: str) -> dict:
    try:
        page = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponse(source, location, f"not JSON: {exc}") from None
    if not isinstance(page, dict) or not isinstance(page.get("results"), list):
        kind = type(page).__name__
        keys = sorted(page)[:10] if isinstance(page, dict) else []
        raise MalformedResponse(source, location, f"expected an object with a 'results' list, got {kind} {keys}")
    total = page.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise MalformedResponse(source, location, f"'total' is {total!r}, not a count")
    next_url = page.get("next")
    if next_url is not None and not isinstance(next_url, str):
        raise MalformedResponse(source, location, f"'next' is {next_url!r}, not a URL")
    return page


def fetch(source_def, *, url: str, client: HttpClient, **_ignored) -> Payload:
    first_request = len(client.requests)
    loc = source_def.location
    source = source_def.slug
    params = {"size": str(loc.page_size)}
    if loc.qs:
        params["qs"] = loc.qs
    params["format"] = "json"
    params.update(loc.params)
    pages: list[bytes] = []
    seen: set[str] = set()
    page_digests: dict[str, int] = {}
    record_ids: set = set()
    total = None
    received = 0
    next_url, next_params = url, params
    while next_url:
        if len(pages) >= MAX_PAGES:
            raise MalformedResponse(source, redact_url(url), f"more than {MAX_PAGES} pages: paging does not end")
        body, final_url, _status = client.get(next_url, next_params, source=source)
        where = redact_url(final_url)
        page = _page(body, source=source, location=where)
        pages.append(body)
        if total is None:
            total = page["total"]
        elif page["total"] != total:
            raise MalformedResponse(source, where, f"'total' changed during paging from {total} to {page['total']}")
        received += len(page["results"])
        next_url, next_params = page.get("next") or None, None
        if next_url:
            if not page["results"]:
                raise MalformedResponse(source, where, "empty page with a 'next' link: paging would not end")
            if next_url in seen:
                raise MalformedResponse(source, where, f"'next' points back to an earlier page: {redact_url(next_url)}")
            seen.add(next_url)
        if received > total:
            raise MalformedResponse(source, where, f"received {received} records by page {len(pages)}, more than "
                                                   f"the {total} 'total' declares: paging does not end")
        digest = hashlib.sha256(json.dumps(page["results"], sort_keys=True).encode()).hexdigest()
        if page["results"] and digest in page_digests:
            raise MalformedResponse(source, where, f"page {len(pages)} repeats the records of page "
                                                   f"{page_digests[digest]}: paging does not end")
        page_digests.setdefault(digest, len(pages))
        ids = [r["_id"] for r in page["results"] if isinstance(r, dict) and isinstance(r.get("_id"), (str, int))]
        again = [i for i in ids if i in record_ids]
        if again:
            raise MalformedResponse(source, where, f"page {len(pages)} returns {len(again)} record(s) already "
                                                   f"received (_id {again[0]!r}): paging does not end")
        record_ids.update(ids)
    if received != total:
        raise MalformedResponse(source, redact_url(url_with_params(url, params)),
                                f"received {received} records in {len(pages)} pages but 'total' is {total}")
    data, ext = bundle_pages(pages, "json")
    details = {"pages": len(pages), "features": received, "total": total, "page_size": loc.page_size, "qs": loc.qs}
    return Payload(data=data, ext=ext, origin=redact_url(url_with_params(url, params)), kind="datafair",
                   requests=client.requests[first_request:], details=details)


def parse(source_def, data: bytes, ext: str, budget: ReadBudget | None = None) -> gpd.GeoDataFrame:
    loc = source_def.location
    source = source_def.slug
    budget = budget or ReadBudget(source)
    frames = []
    for name, body in read_bundle(data, ext, source=source, limits=budget.limits):
        page = _page(body, source=source, location=name)
        budget.add_features(len(page["results"]), name)
        frames.append(_records_frame(page["results"], loc.geometry_field, source=source, location=name))
        budget.add_geometries(frames[-1].geometry.array, name)
    return concat_frames(frames, CRS)


def _records_frame(records: list, geometry_field: str, *, source: str, location: str) -> gpd.GeoDataFrame:
    texts = []
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise MalformedResponse(source, location, f"result {index} is {type(record).__name__}, not an object")
        record = dict(record)
        geometry = record.pop(geometry_field, None)
        if isinstance(geometry, dict):
            geometry = json.dumps(geometry)
        elif geometry is not None and not isinstance(geometry, str):
            raise MalformedResponse(source, location, f"result {index}: {geometry_field!r} is not GeoJSON")
        texts.append(geometry or None)
        rows.append({k: _plain(v) for k, v in record.items()})
    try:
        geometries = shapely.from_geojson(np.array(texts, dtype=object))
    except shapely.errors.GEOSException as exc:
        raise MalformedResponse(source, location, f"{geometry_field!r} holds invalid GeoJSON: {exc}") from None
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometries, index=frame.index), crs=CRS)


def _plain(value):
    """Nested values (objects, arrays) as JSON text, so the frame stays columnar."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value
