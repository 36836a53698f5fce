"""IGN BD TOPO through the Géoplateforme WFS: one paged GetFeature per commune bounding box.

Boxes of neighbouring communes overlap, so a feature may come in several boxes: the bundle keeps every
page as delivered and `parse` keeps the first occurrence of each `id_field` value (cleabs).
Boxes are queried in INSEE-code order so the same boxes always give the same bundle.
"""

from __future__ import annotations

import geopandas as gpd

from .errors import ConnectorError, MalformedResponse
from .http import HttpClient, redact_url, url_with_params, without_params
from .payload import Payload, bundle_pages
from .wfs import PAGING_KEYS, base_params, fetch_pages, parse_pages


def bbox_param(bbox: tuple[float, float, float, float]) -> str:
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if not (minx < maxx and miny < maxy):
        raise ValueError(f"bounding box {bbox} is empty or inverted")
    return f"{minx!r},{miny!r},{maxx!r},{maxy!r},EPSG:2154"


def fetch(source_def, *, url: str, client: HttpClient, commune_bboxes=(), **_ignored) -> Payload:
    first_request = len(client.requests)
    loc = source_def.location
    source = source_def.slug
    if not commune_bboxes:
        raise ConnectorError(source, url, "the IGN connector needs the communes' bounding boxes (none given)")
    params = base_params(loc, sort_by=None, source=source)
    pages: list[bytes] = []
    boxes = []
    for code, bbox in sorted(commune_bboxes, key=lambda item: str(item[0])):
        try:
            box = bbox_param(bbox)
        except ValueError as exc:
            raise ConnectorError(source, url, f"commune {code}: {exc}") from None
        box_pages, summary = fetch_pages(client, url, {**params, "BBOX": box}, loc.page_size, source=source)
        pages.extend(box_pages)
        boxes.append({"commune": str(code), "bbox": box, **summary})
    data, ext = bundle_pages(pages, "gml")
    origin = redact_url(without_params(url_with_params(url, params), PAGING_KEYS))
    details = {"pages": len(pages), "features_with_duplicates": sum(b["features"] for b in boxes), "boxes": boxes,
               "typename": loc.typename, "page_size": loc.page_size, "id_field": loc.id_field}
    return Payload(data=data, ext=ext, origin=origin, kind="ign_wfs", requests=client.requests[first_request:],
                   details=details)


def parse(source_def, data: bytes, ext: str, budget=None) -> gpd.GeoDataFrame:
    loc = source_def.location
    frame = parse_pages(source_def, data, ext, budget)
    if len(frame) == 0:
        return frame
    if loc.id_field not in frame.columns:
        raise MalformedResponse(source_def.slug, "bundle", f"no attribute {loc.id_field!r} to de-duplicate on; "
                                f"attributes: {[c for c in frame.columns if c != 'geometry']}")
    ids = frame[loc.id_field]
    keep = ~ids.duplicated(keep="first") | ids.isna()
    return frame[keep].reset_index(drop=True)
