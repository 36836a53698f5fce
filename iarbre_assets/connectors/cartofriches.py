"""CEREMA Cartofriches API (geofriches): one query per commune, DRF GeoJSON pagination via `next`.

Query: coddep, code_insee (kept as text: "2A004" and leading zeros survive), in_bbox=minlon,minlat,maxlon,
maxlat (the commune box in EPSG:2154, transformed to WGS84 with densified edges and rounded outwards to
1e-7 degree so it still contains the commune), page_size. Body:
{"type": "FeatureCollection", "count": N, "next": url|null, "previous": url|null, "features": [...]}.
Each commune's features must add up to its `count`. Sites near a commune edge can be returned for two
communes: `parse` keeps the first feature of each identifier -- the GeoJSON feature `id`, or the
`site_id` property when a feature has no `id`.
"""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .errors import ConnectorError, MalformedResponse
from .http import HttpClient, redact_url, url_with_params
from .payload import Payload, ReadBudget, bundle_pages, concat_frames, read_bundle

CRS = "EPSG:4326"
ID_PROPERTY = "site_id"
MAX_PAGES = 99_999  # page names have five digits


def wgs84_bbox(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A Lambert-93 box as a lon/lat box that contains it (rounded outwards to 1e-7 degree)."""
    from pyproj import Transformer

    transformer = Transformer.from_crs("EPSG:2154", CRS, always_xy=True)
    minx, miny, maxx, maxy = transformer.transform_bounds(*bbox, densify_pts=21)
    scale = 1e7
    return (math.floor(minx * scale) / scale, math.floor(miny * scale) / scale,
            math.ceil(maxx * scale) / scale, math.ceil(maxy * scale) / scale)


def _features_of(page) -> list | None:
    if not isinstance(page, dict):
        return None
    if isinstance(page.get("features"), list):
        return page["features"]
    results = page.get("results")  # DRF pagination wrapping a FeatureCollection
    if isinstance(results, dict) and isinstance(results.get("features"), list):
        return results["features"]
    return None


def _page(body: bytes, *, source: str, location: str) -> dict:
    try:
        page = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponse(source, location, f"not JSON: {exc}") from None
    if _features_of(page) is None:
        raise MalformedResponse(source, location, "expected a GeoJSON FeatureCollection with 'features'")
    count = page.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise MalformedResponse(source, location, f"'count' is {count!r}, not a count")
    if page.get("next") is not None and not isinstance(page["next"], str):
        raise MalformedResponse(source, location, f"'next' is {page['next']!r}, not a URL")
    return page


def fetch(source_def, *, url: str, client: HttpClient, commune_bboxes=(), **_ignored) -> Payload:
    first_request = len(client.requests)
    loc = source_def.location
    source = source_def.slug
    if not commune_bboxes:
        raise ConnectorError(source, url, "the Cartofriches connector needs the communes' bounding boxes (none given)")
    pages: list[bytes] = []
    communes = []
    for code, bbox in sorted(commune_bboxes, key=lambda item: str(item[0])):
        box = wgs84_bbox(bbox)
        params = {"coddep": loc.coddep, "code_insee": str(code), "in_bbox": ",".join(repr(v) for v in box),
                  "page_size": str(loc.page_size), **loc.params}
        first = url_with_params(url, params)
        next_url, next_params = url, params
        count = None
        received = 0
        seen: set[str] = set()
        n_pages = 0
        while next_url:
            if len(pages) >= MAX_PAGES:
                raise MalformedResponse(source, redact_url(first), f"more than {MAX_PAGES} pages")
            body, final_url, _status = client.get(next_url, next_params, source=source)
            where = redact_url(final_url)
            page = _page(body, source=source, location=where)
            pages.append(body)
            n_pages += 1
            features = _features_of(page)
            received += len(features)
            if page.get("count") is not None:
                if count is not None and page["count"] != count:
                    raise MalformedResponse(source, where, f"'count' changed during paging from {count} to "
                                            f"{page['count']}")
                count = page["count"]
            next_url, next_params = page.get("next") or None, None
            if next_url:
                if not features:
                    raise MalformedResponse(source, where, "empty page with a 'next' link: paging would not end")
                if next_url in seen:
                    raise MalformedResponse(source, where, "'next' points back to an earlier page")
                seen.add(next_url)
        if count is not None and received != count:
            raise MalformedResponse(source, redact_url(first),
                                    f"commune {code}: received {received} features but 'count' is {count}")
        communes.append({"commune": str(code), "in_bbox": params["in_bbox"], "pages": n_pages, "features": received})
    data, ext = bundle_pages(pages, "geojson")
    details = {"pages": len(pages), "features_with_duplicates": sum(c["features"] for c in communes),
               "communes": communes, "page_size": loc.page_size, "coddep": loc.coddep}
    origin = redact_url(url_with_params(url, {"coddep": loc.coddep, **loc.params}))
    return Payload(data=data, ext=ext, origin=origin, kind="cartofriches", requests=client.requests[first_request:],
                   details=details)


def parse(source_def, data: bytes, ext: str, budget: ReadBudget | None = None) -> gpd.GeoDataFrame:
    source = source_def.slug
    budget = budget or ReadBudget(source)
    frames = []
    seen: set = set()
    for name, body in read_bundle(data, ext, source=source, limits=budget.limits):
        page = _page(body, source=source, location=name)
        rows, texts = [], []
        features = _features_of(page)
        budget.add_features(len(features), name)
        for index, feature in enumerate(features):
            if not isinstance(feature, dict) or not isinstance(feature.get("properties") or {}, dict):
                raise MalformedResponse(source, name, f"feature {index} is not a GeoJSON Feature")
            properties = dict(feature.get("properties") or {})
            key = feature.get("id")
            if key is None:
                key = properties.get(ID_PROPERTY)
            if key is not None:
                key = json.dumps(key)  # 12 and "12" are different identifiers; both hashable
                if key in seen:
                    continue
                seen.add(key)
            if feature.get("id") is not None and "id" not in properties:
                properties = {"id": feature["id"], **properties}
            geometry = feature.get("geometry")
            texts.append(None if geometry is None else json.dumps(geometry))
            rows.append({k: (json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, (dict, list)) else v)
                         for k, v in properties.items()})
        try:
            geometries = shapely.from_geojson(np.array(texts, dtype=object))
        except shapely.errors.GEOSException as exc:
            raise MalformedResponse(source, name, f"invalid GeoJSON geometry: {exc}") from None
        budget.add_geometries(geometries, name)
        frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
        frames.append(gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometries, index=frame.index), crs=CRS))
    return concat_frames(frames, CRS)
