"""Files dropped by partners: GeoJSON, GeoPackage, Shapefile (alone or zipped), GML, GeoParquet.

fetch: the file's bytes as they are; a .shp is bundled with its .shx/.dbf/.prj/.cpg siblings in a
deterministic zip (a shapefile is several files). parse: from those bytes only, through a private
temporary directory (OGR formats with pyogrio, GML with our parser, GeoParquet with geopandas).

CRS: the CRS the file declares is used; when it declares none, `FileLocation.crs`; else MissingCRS. A
GeoJSON without a "crs" member is WGS84 by RFC 7946 only if its coordinates look like longitude/latitude;
a crs-less GeoJSON in metres (a common partner export) is refused unless `crs` is configured.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from .errors import FetchError, MissingCRS, UnreadableFile
from .gml import parse_feature_collection
from .payload import DAMAGED_ZIP, Payload, ReadBudget, deterministic_zip, open_zip
from .wkb import geometries_closing_rings

SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
EXTENSIONS = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".shp": "zip", ".zip": "zip",
              ".gml": "gml", ".xml": "gml", ".parquet": "parquet", ".geoparquet": "parquet"}
DATASET_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".gml", ".xml", ".parquet", ".geoparquet")


def resolve_path(loc, data_dir: Path | None) -> Path:
    path = Path(loc.path).expanduser()
    if not path.is_absolute():
        if data_dir is None:
            raise ValueError(f"relative file path {loc.path!r} needs a data directory")
        path = Path(data_dir) / path
    return path


def fetch(source_def, *, data_dir: Path | None, **_ignored) -> Payload:
    loc = source_def.location
    source = source_def.slug
    try:
        path = resolve_path(loc, data_dir)
    except ValueError as exc:
        raise FetchError(source, loc.path, str(exc)) from None
    if not path.is_file():
        raise FetchError(source, str(path), "no such file")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise UnreadableFile(source, str(path), f"unknown format {suffix!r}; supported: {sorted(EXTENSIONS)}")
    stat = path.stat()
    if stat.st_size == 0:
        raise UnreadableFile(source, str(path), "empty file (0 bytes)")
    details = {"path": str(path), "size": stat.st_size, "layer": loc.layer,
               "modified": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat()}
    if suffix == ".shp":
        parts = _shapefile_parts(path, source)
        data = deterministic_zip([(p.name, p.read_bytes()) for p in parts])
        details["files"] = [p.name for p in parts]
    else:
        data = path.read_bytes()
    return Payload(data=data, ext=EXTENSIONS[suffix], origin=str(path), kind="file", details=details)


def _shapefile_parts(path: Path, source: str) -> list[Path]:
    siblings = {p.suffix.lower(): p for p in path.parent.iterdir()
                if p.is_file() and p.stem == path.stem and p.suffix.lower() in SHAPEFILE_PARTS}
    siblings[".shp"] = path
    missing = [s for s in (".shx", ".dbf") if s not in siblings]
    if missing:
        raise UnreadableFile(source, str(path), f"shapefile without its {' and '.join(missing)} file(s)")
    return [siblings[s] for s in SHAPEFILE_PARTS if s in siblings]


def parse(source_def, data: bytes, ext: str, budget: ReadBudget | None = None) -> gpd.GeoDataFrame:
    loc = source_def.location
    source = source_def.slug
    budget = budget or ReadBudget(source)
    where = loc.path
    if not data:
        raise UnreadableFile(source, where, "empty file (0 bytes)")
    if ext == "gml":
        page = parse_feature_collection(data, source=source, location=where, budget=budget)
        return _with_crs(page.features, page.crs, loc, source, where)
    if ext == "parquet":
        frame = _read_parquet(data, loc, source, where)
        budget.add_frame(frame, where)
        return frame
    if ext not in {"geojson", "gpkg", "zip"}:
        raise UnreadableFile(source, where, f"unknown format {ext!r}; supported: geojson, gpkg, zip, gml, parquet")
    tmp = Path(tempfile.mkdtemp(prefix="iarbre-file-"))
    try:
        if ext == "zip":
            path = _extract_dataset(data, tmp, loc, source, where, budget)
            where = f"{where}!{path.relative_to(tmp).as_posix()}"
            layer = loc.layer if path.suffix.lower() == ".gpkg" else None
            if path.suffix.lower() == ".gpkg" and loc.layer and loc.layer == path.stem:
                layer = None
        else:
            path = tmp / f"data.{ext}"
            path.write_bytes(data)
            layer = loc.layer
        return _read_file(path, layer, loc, source, where, budget)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_dataset(data: bytes, tmp: Path, loc, source: str, where: str, budget: ReadBudget) -> Path:
    """Extract a zip inside `tmp` (names and sizes checked first) and return the one dataset file it holds."""
    root = tmp.resolve()
    with open_zip(data, source=source, location=where, limits=budget.limits) as archive:
        for info in archive.infolist():
            target = (root / info.filename.replace("\\", "/")).resolve()
            if not target.is_relative_to(root):  # belt and braces after check_zip_entry
                from .errors import UnsafeInput

                raise UnsafeInput(source, where, f"zip entry {info.filename!r} leaves the extraction directory")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except DAMAGED_ZIP as exc:
                raise UnreadableFile(source, where, f"damaged zip archive: entry {info.filename!r}: "
                                                    f"{type(exc).__name__}: {exc}") from None
    candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DATASET_SUFFIXES
                        and "__MACOSX" not in p.parts and not p.name.startswith("."))
    names = [p.relative_to(root).as_posix() for p in candidates]
    if loc.layer:
        chosen = [p for p, n in zip(candidates, names) if loc.layer in {p.stem, n}]
        if len(chosen) == 1:
            return chosen[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UnreadableFile(source, where, "the zip holds no dataset (.shp, .gpkg, .geojson, .gml, .parquet); "
                             f"entries: {sorted(p.relative_to(root).as_posix() for p in root.rglob('*'))[:20]}")
    raise UnreadableFile(source, where, f"the zip holds several datasets {names}; set `layer` to one of them")


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """GDAL hands text over as is, and GeoJSON and GML must be UTF-8: say which byte is not."""
    return f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at {exc.start}); ask the partner for UTF-8"


def _read_file(path: Path, layer: str | None, loc, source: str, where: str, budget: ReadBudget) -> gpd.GeoDataFrame:
    import pyogrio
    from pyogrio.errors import DataSourceError, DataLayerError

    try:
        layers = [str(name) for name, _geom in pyogrio.list_layers(path)]
    except DataSourceError as exc:
        raise UnreadableFile(source, where, f"not a readable {path.suffix.lstrip('.')} dataset: {_gdal(exc)}") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(source, where, f"layer names {_not_utf8(exc)}") from None
    if layer is not None and layer not in layers:
        raise UnreadableFile(source, where, f"no layer {layer!r}; available layers: {layers}")
    if layer is None and len(layers) > 1:
        raise UnreadableFile(source, where, f"several layers and none configured; available layers: {layers}")
    try:
        # GDAL's feature count where it is cheap (-1 otherwise): refused before anything is read
        budget.check_features(max(0, pyogrio.read_info(path, layer=layer or layers[0]).get("features", -1)), where)
        try:
            frame = pyogrio.read_dataframe(path, layer=layer or layers[0])
        except shapely.errors.GEOSException:  # GDAL read a ring GEOS refuses (not closed): repair and count
            frame = _read_closing_rings(path, layer or layers[0], source, where)
    except (DataSourceError, DataLayerError) as exc:
        raise UnreadableFile(source, where, f"cannot read layer {layer or layers[0]!r}: {_gdal(exc)}") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(source, where, f"layer {layer or layers[0]!r} {_not_utf8(exc)}") from None
    if not isinstance(frame, gpd.GeoDataFrame):
        raise UnreadableFile(source, where, f"layer {layer or layers[0]!r} has no geometry column")
    budget.add_frame(frame, where)
    declared = None if frame.crs is None else frame.crs
    if path.suffix.lower() in {".geojson", ".json"}:
        declared = _geojson_crs(path, frame, loc, source, where)
        if declared == "configured":
            return frame.set_crs(loc.crs, allow_override=True)
    return _with_crs(frame, declared, loc, source, where)


def _read_closing_rings(path: Path, layer: str, source: str, where: str) -> gpd.GeoDataFrame:
    """The layer read again as WKB: open rings closed and counted (frame attrs `rings_closed`), a geometry
    still unreadable refused naming its feature."""
    import pyogrio

    attributes = pyogrio.read_dataframe(path, layer=layer, read_geometry=False)
    meta, _fids, wkb, _fields = pyogrio.raw.read(path, layer=layer, columns=[])
    geometry, repaired, unreadable = geometries_closing_rings(wkb)
    if len(unreadable):
        names = ", ".join(f"feature {i + 1}" for i in unreadable[:5])
        raise UnreadableFile(source, where, f"{len(unreadable)} feature(s) have geometries GEOS cannot read, "
                                            f"e.g. {names}")
    frame = gpd.GeoDataFrame(attributes, geometry=gpd.GeoSeries(geometry, index=attributes.index), crs=meta["crs"])
    frame.attrs["rings_closed"] = repaired
    return frame


def _geojson_crs(path: Path, frame: gpd.GeoDataFrame, loc, source: str, where: str):
    """The CRS a GeoJSON declares ("crs" member), or the RFC 7946 default when it looks like lon/lat."""
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFile(source, where, f"not JSON: {exc}") from None
    if isinstance(document, dict) and document.get("crs") is not None:
        return frame.crs
    if loc.crs:
        return "configured"
    bounds = frame.total_bounds if len(frame) and not frame.geometry.isna().all() else None
    if bounds is None or (np.isfinite(bounds).all() and -180 <= bounds[0] and bounds[2] <= 180
                          and -90 <= bounds[1] and bounds[3] <= 90):
        return "EPSG:4326"
    raise MissingCRS(source, where, f"GeoJSON without a 'crs' member whose coordinates are not longitude/latitude "
                     f"(bounds {[round(float(b), 2) for b in bounds]}); set `crs` in the location")


def _read_parquet(data: bytes, loc, source: str, where: str) -> gpd.GeoDataFrame:
    try:
        frame = gpd.read_parquet(io.BytesIO(data))
    except ValueError as exc:
        raise UnreadableFile(source, where, f"not GeoParquet: {exc}") from None
    except Exception as exc:  # pyarrow raises its own error types for non-parquet bytes
        raise UnreadableFile(source, where, f"not a readable Parquet file: {exc}") from None
    return _with_crs(frame, frame.crs, loc, source, where)


def _with_crs(frame: gpd.GeoDataFrame, declared, loc, source: str, where: str) -> gpd.GeoDataFrame:
    if declared is not None:
        return frame if frame.crs is not None and frame.crs == declared else frame.set_crs(declared,
                                                                                            allow_override=True)
    if loc.crs:
        return frame.set_crs(loc.crs, allow_override=True)
    raise MissingCRS(source, where, "the file declares no CRS; set `crs` in the location to say which it is")


def _gdal(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
