"""GML 3.2 (WFS 2.0) FeatureCollections for the demo: a deterministic writer (the demo's wire files).

    data = write_feature_collection(gdf, "ns:layer", id_field="gid")     # bytes, same input -> same bytes

The product only reads GML (iarbre_assets.connectors.gml); writing it is the demo's and the tests' job.
Coordinates are written with Python's `repr(float)`: the shortest text that reads back to the same float,
so a write/parse round trip is exact. Axis order follows the srsName as the parser reads it
(`iarbre_assets.connectors.gml.parse_srs_name`): URN/URI forms of a latitude-first CRS are written lat/lon.
Throughput on the 2-core build machine: ~20 MB/s (float repr dominates).
"""

from __future__ import annotations

import math
import re
from xml.sax.saxutils import escape, quoteattr

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from iarbre_assets.connectors.gml import GML_NS, WFS_NS, XSI_NS, parse_srs_name

__all__ = ["write_feature_collection"]

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def write_feature_collection(
    gdf: gpd.GeoDataFrame,
    typename: str,
    *,
    srs_name: str = "urn:ogc:def:crs:EPSG::2154",
    number_matched: int | str | None = None,
    number_returned: int | None = None,
    next_url: str | None = None,
    timestamp: str | None = None,
    id_field: str | None = None,
    geometry_name: str = "geom",
    namespace_uri: str | None = None,
    bounded_by: bool = True,
) -> bytes:
    """A wfs:FeatureCollection (WFS 2.0 / GML 3.2) of `gdf`, one wfs:member per row, deterministic bytes.

    The coordinates are written as they are in `gdf` (no reprojection): `srs_name` must describe them
    (for a URN/URI 4326 they are written lat/lon). gml:id is "<local typename>.<id_field value>" (or
    ".<row number>"). Null attribute values are empty elements with xsi:nil="true"; null or empty
    geometries likewise. timeStamp is written only when given, so the same data gives the same bytes.
    With `bounded_by` each feature carries its gml:boundedBy envelope (as GeoServer writes it), which lets
    the demo server index a file without parsing every coordinate.
    Geometry types: (Multi)Point, (Multi)LineString -> gml:MultiCurve, (Multi)Polygon -> gml:MultiSurface.
    """
    prefix, local = typename.split(":", 1) if ":" in typename else ("ns", typename)
    for name in (prefix, local, geometry_name):
        if not _NCNAME.match(name) or ":" in name:
            raise ValueError(f"{name!r} (from typename {typename!r}) is not a valid XML name")
    namespace_uri = namespace_uri or f"urn:x-iarbre:{prefix}"
    _, swap = parse_srs_name(srs_name)
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    for column in columns:
        if not isinstance(column, str) or not _NCNAME.match(column):
            raise ValueError(f"column {column!r} is not a valid XML element name")
    count = len(gdf)
    matched = count if number_matched is None else number_matched
    returned = count if number_returned is None else number_returned

    head = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<wfs:FeatureCollection xmlns:wfs="{WFS_NS}" xmlns:gml="{GML_NS}" xmlns:xsi="{XSI_NS}" ',
        f"xmlns:{prefix}={quoteattr(namespace_uri)} numberMatched=\"{matched}\" numberReturned=\"{returned}\"",
    ]
    if timestamp:
        head.append(f" timeStamp={quoteattr(timestamp)}")
    if next_url:
        head.append(f" next={quoteattr(next_url)}")
    head.append(">\n")

    if id_field:
        fids = [f"{local}.{_id_text(v)}" for v in gdf[id_field].tolist()]
        if len(set(fids)) != len(fids):
            raise ValueError(f"id_field {id_field!r} is not unique: gml:id values would repeat")
    else:
        fids = [f"{local}.{i}" for i in range(1, count + 1)]
    rendered = [_render_column(prefix, c, gdf[c].tolist()) for c in columns]
    geom_open, geom_close = f"<{prefix}:{geometry_name}>", f"</{prefix}:{geometry_name}>"
    geom_nil = f'<{prefix}:{geometry_name} xsi:nil="true"/>'
    geometry_array = np.asarray(gdf.geometry.array)
    geometry_xml = _render_geometries(geometry_array, fids, quoteattr(srs_name), swap)
    envelopes = _render_envelopes(geometry_array, quoteattr(srs_name), swap) if bounded_by else [""] * count
    element = f"{prefix}:{local}"
    out = ["".join(head)]
    for i in range(count):
        geometry = geometry_xml[i]
        out.append("".join([
            f"<wfs:member><{element} gml:id=\"{fids[i]}\">",
            envelopes[i],
            *(values[i] for values in rendered),
            geom_nil if geometry is None else geom_open + geometry + geom_close,
            f"</{element}></wfs:member>\n",
        ]))
    out.append("</wfs:FeatureCollection>\n")
    return "".join(out).encode("utf-8")


def _render_envelopes(geoms: np.ndarray, srs_attr: str, swap: bool) -> list[str]:
    bounds = shapely.bounds(geoms)
    if swap:
        bounds = bounds[:, [1, 0, 3, 2]]
    out = []
    for row in bounds.tolist():
        if math.isnan(row[0]):
            out.append("")
        else:
            out.append(f'<gml:boundedBy><gml:Envelope srsName={srs_attr} srsDimension="2"><gml:lowerCorner>'
                       f"{row[0]!r} {row[1]!r}</gml:lowerCorner><gml:upperCorner>{row[2]!r} {row[3]!r}"
                       "</gml:upperCorner></gml:Envelope></gml:boundedBy>")
    return out


_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _render_column(prefix: str, column: str, values: list) -> list[str]:
    """`<prefix:column>text</prefix:column>` per value (xsi:nil for nulls)."""
    open_tag, close_tag = f"<{prefix}:{column}>", f"</{prefix}:{column}>"
    nil = f'<{prefix}:{column} xsi:nil="true"/>'
    out = []
    for value in values:
        text = _value_text(value, column)
        out.append(nil if text is None else open_tag + text + close_tag)
    return out


def _value_text(value, column: str) -> str | None:
    kind = type(value)
    if kind is str:
        text = value
    elif value is None or value is pd.NA or value is pd.NaT:
        return None
    elif kind is float or isinstance(value, np.floating):
        if math.isnan(value):
            return None
        return repr(float(value))
    elif kind is bool or isinstance(value, np.bool_):
        return "true" if value else "false"
    elif kind is int or isinstance(value, np.integer):
        return str(int(value))
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value)
    if not text.isprintable() and _INVALID_XML_CHARS.search(text):
        raise ValueError(f"column {column!r}: value {text!r} holds characters XML 1.0 cannot carry")
    if "&" in text or "<" in text or ">" in text:
        text = escape(text)
    return text


def _id_text(value) -> str:
    text = _value_text(value, "id")
    if text is None:
        raise ValueError("id_field holds a null value")
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text)


_MULTI_TAGS = {"MultiPoint": ("MultiPoint", "pointMember"), "MultiLineString": ("MultiCurve", "curveMember"),
               "MultiPolygon": ("MultiSurface", "surfaceMember")}


def _render_geometries(geoms: np.ndarray, fids: list[str], srs_attr: str, swap: bool) -> list[str | None]:
    """GML of every geometry (None for null/empty), built from shapely's ragged arrays per geometry type.

    All coordinates of a group are turned to text in one pass (repr: shortest exact form), then sliced
    per ring, so no shapely call is made per feature.
    """
    out: list[str | None] = [None] * len(geoms)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    type_ids = shapely.get_type_id(geoms)
    has_z = shapely.has_z(geoms)
    for type_id in np.unique(type_ids[present]):
        kind = _TYPE_NAMES.get(int(type_id))
        if kind is None:
            raise ValueError(f"geometry type {shapely.GeometryType(int(type_id)).name} cannot be written as GML")
        for z in (False, True):
            idx = np.flatnonzero(present & (type_ids == type_id) & (has_z == z))
            if len(idx) == 0:
                continue
            _, coords, offsets = shapely.to_ragged_array(geoms[idx], include_z=z)
            offsets = tuple(o.tolist() for o in offsets)
            if not np.isfinite(coords).all():
                raise ValueError("geometries have non-finite coordinates")
            if swap:
                coords = coords.copy()
                coords[:, [0, 1]] = coords[:, [1, 0]]
            dim = 3 if z else 2
            texts = list(map(repr, coords.ravel().tolist()))
            writer = _GroupWriter(texts, dim, srs_attr)
            for position, i in enumerate(idx.tolist()):
                out[i] = writer.render(kind, offsets, position, fids[i] + ".geom")
    return out


_TYPE_NAMES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}


class _GroupWriter:
    def __init__(self, texts: list[str], dim: int, srs_attr: str):
        self.texts = texts
        self.dim = dim
        self.dim_attr = ' srsDimension="3"' if dim == 3 else ""
        self.srs = f" srsName={srs_attr}{self.dim_attr}"

    def span(self, start: int, stop: int) -> str:
        return " ".join(self.texts[start * self.dim:stop * self.dim])

    def point(self, index: int, gid: str, srs: str) -> str:
        return f'<gml:Point gml:id="{gid}"{srs}><gml:pos{self.dim_attr}>{self.span(index, index + 1)}</gml:pos></gml:Point>'

    def line(self, start: int, stop: int, gid: str, srs: str) -> str:
        return (f'<gml:LineString gml:id="{gid}"{srs}><gml:posList{self.dim_attr}>{self.span(start, stop)}'
                "</gml:posList></gml:LineString>")

    def polygon(self, ring_offsets, first_ring: int, last_ring: int, gid: str, srs: str) -> str:
        parts = [f'<gml:Polygon gml:id="{gid}"{srs}>']
        for ring in range(first_ring, last_ring):
            side = "exterior" if ring == first_ring else "interior"
            parts.append(f"<gml:{side}><gml:LinearRing><gml:posList{self.dim_attr}>"
                         f"{self.span(ring_offsets[ring], ring_offsets[ring + 1])}</gml:posList></gml:LinearRing>"
                         f"</gml:{side}>")
        parts.append("</gml:Polygon>")
        return "".join(parts)

    def render(self, kind: str, offsets, j: int, gid: str) -> str:
        srs = self.srs
        if kind == "Point":
            return self.point(j, gid, srs)
        if kind == "LineString":
            return self.line(offsets[0][j], offsets[0][j + 1], gid, srs)
        if kind == "Polygon":
            return self.polygon(offsets[0], offsets[1][j], offsets[1][j + 1], gid, srs)
        tag, member = _MULTI_TAGS[kind]
        parts = [f'<gml:{tag} gml:id="{gid}"{srs}>']
        if kind == "MultiPoint":
            for k, p in enumerate(range(offsets[0][j], offsets[0][j + 1]), start=1):
                parts.append(f"<gml:{member}>{self.point(p, f'{gid}.{k}', '')}</gml:{member}>")
        elif kind == "MultiLineString":
            lines, geoms = offsets
            for k, line in enumerate(range(geoms[j], geoms[j + 1]), start=1):
                parts.append(f"<gml:{member}>{self.line(lines[line], lines[line + 1], f'{gid}.{k}', '')}</gml:{member}>")
        else:
            rings, polygons, geoms = offsets
            for k, polygon in enumerate(range(geoms[j], geoms[j + 1]), start=1):
                parts.append(f"<gml:{member}>"
                             f"{self.polygon(rings, polygons[polygon], polygons[polygon + 1], f'{gid}.{k}', '')}"
                             f"</gml:{member}>")
        parts.append(f"</gml:{tag}>")
        return "".join(parts)
