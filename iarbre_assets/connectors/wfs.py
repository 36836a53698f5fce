"""OGC WFS 2.0 GetFeature with STARTINDEX/COUNT paging (GML 3.2 pages).

Paging rule: SORTBY is sent whenever the location names a sort attribute, because paging without an
order is not stable on the server side. Stop on a page holding fewer than COUNT features, on an empty page,
or once STARTINDEX + returned reaches a numeric numberMatched. A page shorter than COUNT while
numberMatched says more remain is an error (the server capped COUNT or the data changed): the total must
equal numberMatched. The `next` link servers may add is not needed and not followed.
"""

from __future__ import annotations

import geopandas as gpd

from .errors import ConnectorError, MalformedResponse, MissingCRS
from .gml import parse_feature_collection, parse_srs_name, scan_feature_collection
from .http import HttpClient, redact_url, url_with_params, without_params
from .payload import Payload, ReadBudget, bundle_pages, concat_frames, read_bundle

PAGING_KEYS = {"STARTINDEX", "COUNT", "BBOX"}
MAX_PAGES = 99_999  # page names have five digits


def base_params(loc, *, sort_by: str | None, source: str) -> dict[str, str]:
    """GetFeature parameters other than paging; location `params` override same-named ones (any case)."""
    params = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": loc.typename,
              "SRSNAME": loc.srs}
    if sort_by:
        params["SORTBY"] = sort_by
    for key, value in loc.params.items():
        upper = key.upper()
        if upper in PAGING_KEYS:
            raise ConnectorError(source, loc.url, f"parameter {key!r} is set by the connector; remove it from params")
        for existing in [k for k in params if k.upper() == upper]:
            del params[existing]
        params[key] = value
    return params


def fetch_pages(client: HttpClient, url: str, params: dict[str, str], page_size: int, *, source: str
                ) -> tuple[list[bytes], dict]:
    """All pages of one GetFeature query; (bodies, summary). Raises rather than return a partial result."""
    pages: list[bytes] = []
    start = 0
    total = 0
    matched: int | None = None
    while True:
        if len(pages) >= MAX_PAGES:
            raise MalformedResponse(source, redact_url(url), f"more than {MAX_PAGES} pages: paging does not end")
        page_params = {**params, "COUNT": str(page_size), "STARTINDEX": str(start)}
        body, final_url, _status = client.get(url, page_params, source=source)
        where = redact_url(final_url)
        page = scan_feature_collection(body, source=source, location=where)
        pages.append(body)
        returned = page.count
        if page.number_matched is not None:
            if matched is not None and page.number_matched != matched:
                raise MalformedResponse(source, where, f"numberMatched changed during paging from {matched} to "
                                        f"{page.number_matched} (data changed on the server?)")
            matched = page.number_matched
        if returned > page_size:
            raise MalformedResponse(source, where, f"page holds {returned} features, more than COUNT={page_size}")
        total += returned
        if returned == 0:
            break
        if matched is not None:
            if start + returned >= matched:
                break
            if returned < page_size:
                raise MalformedResponse(
                    source, where,
                    f"short page: {returned} features at STARTINDEX={start} with COUNT={page_size}, but "
                    f"numberMatched={matched} says {matched - start - returned} more remain (server limit on "
                    "COUNT? lower page_size)")
        elif returned < page_size:
            break
        start += returned
    if matched is not None and total != matched:
        raise MalformedResponse(source, redact_url(url_with_params(url, params)),
                                f"received {total} features in {len(pages)} pages but numberMatched={matched}")
    return pages, {"pages": len(pages), "features": total, "number_matched": matched}


def fetch(source_def, *, url: str, client: HttpClient, **_ignored) -> Payload:
    first_request = len(client.requests)
    loc = source_def.location
    source = source_def.slug
    params = base_params(loc, sort_by=loc.sort_by, source=source)
    pages, summary = fetch_pages(client, url, params, loc.page_size, source=source)
    data, ext = bundle_pages(pages, "gml")
    origin = redact_url(without_params(url_with_params(url, params), PAGING_KEYS))
    details = {**summary, "typename": loc.typename, "page_size": loc.page_size, "sort_by": loc.sort_by,
               "srs": loc.srs}
    return Payload(data=data, ext=ext, origin=origin, kind="wfs", 
                   requests=client.requests[first_request:], details=details)


def parse_pages(source_def, data: bytes, ext: str, budget: ReadBudget | None = None) -> gpd.GeoDataFrame:
    """Every page of a stored WFS payload as one GeoDataFrame in the CRS the pages declare."""
    source = source_def.slug
    budget = budget or ReadBudget(source)
    frames = []
    crs_seen: dict[str, str] = {}
    for name, body in read_bundle(data, ext, source=source, limits=budget.limits):
        page = parse_feature_collection(body, source=source, location=name, budget=budget)
        if len(page.features):
            frames.append(page.features)
            if page.crs is not None:
                crs_seen.setdefault(page.crs, name)
    if len(crs_seen) > 1:
        raise MalformedResponse(source, "bundle", f"pages in different CRSs: {crs_seen}")
    total = sum(len(f) for f in frames)
    if crs_seen:
        crs = next(iter(crs_seen))
    elif total == 0:
        crs = _requested_crs(source_def.location)  # nothing to locate: the CRS asked for is the answer
    else:
        raise MissingCRS(source, "bundle", "the GML geometries carry no srsName")
    return concat_frames(frames, crs)


def _requested_crs(loc) -> str:
    try:
        return parse_srs_name(loc.srs)[0]
    except ValueError:
        return loc.srs


def parse(source_def, data: bytes, ext: str, budget: ReadBudget | None = None) -> gpd.GeoDataFrame:
    return parse_pages(source_def, data, ext, budget)
