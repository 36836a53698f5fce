"""Write a synthetic territory to disk, every source in its real wire format and schema.

    served mode (the built-in demo): WFS layers as GML 3.2 FeatureCollections and Agence ORE networks as
        data-fair record files under <out>/wire/, paged on 127.0.0.1 by the run's local server;
        Cartofriches as a GeoJSON collection behind its DRF-style API; the services' files as files.
    files mode: every source a local file (GML, GeoParquet, GeoJSON, GeoPackage layers, zipped Shapefile).

The services' files mimic the real deliveries: espacepublic2025.geojson in EPSG:3946, voirie.gpkg with the
four voirie layers, the EVA 2015 layer as a zipped Shapefile. Output is byte-for-byte reproducible.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import pyogrio
import yaml

from iarbre_assets.catalog import load_catalog, territory_path
from iarbre_assets.catalog.models import (
    CartofrichesLocation,
    DatafairLocation,
    FileLocation,
    IgnWfsLocation,
    WfsLocation,
)

from .wire import cartofriches_writer as cartofriches_wire
from .wire import datafair_writer as datafair_wire
from .wire.gml_writer import write_feature_collection

MARKER = ".iarbre-demo.json"
GENERATOR_VERSION = 1
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
# Files keep the CRS their real counterparts have.
FILE_CRS = {"espaces_publics": "EPSG:3946"}


def is_generated(out: Path) -> bool:
    marker = Path(out) / MARKER
    if not marker.exists():
        return False
    try:
        return json.loads(marker.read_text()).get("generator_version") == GENERATOR_VERSION
    except ValueError:
        return False


def wfs_file_name(typename: str) -> str:
    return typename.replace(":", "__") + ".gml"


def datafair_dataset_id(url: str) -> str:
    parts = url.rstrip("/").split("/")
    return parts[parts.index("datasets") + 1]


def generate_demo(
    out: Path,
    *,
    seed: int = 2154,
    scale: str = "small",
    communes_file: Path | None = None,
    mode: str = "served",
    name: str | None = None,
) -> Path:
    """Generate a territory into `out`; returns the territory file to run it with."""
    from .synth import demo_communes, generate_layers, synthetic_iris

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    builtin = communes_file is None and mode == "served" and scale == "small" and name is None

    template = yaml.safe_load(territory_path("demo").read_text(encoding="utf-8"))
    if communes_file is not None:
        communes = _read_communes(Path(communes_file))
    else:
        communes = demo_communes(seed=seed, scale=scale)
    iris = synthetic_iris(communes, seed=seed)
    layers = generate_layers(communes, seed=seed, scale=scale)

    territory = _territory_document(template, name, scale, communes_file, mode)
    departments = {code[:2] for code in communes["insee"].astype(str)}
    carto = territory["sources"].get("cartofriches", {})
    if carto.get("kind") == "cartofriches" and len(departments) == 1:
        carto["coddep"] = departments.pop()
    _write_vector(communes[["insee", "nom", "geometry"]], out / "communes.geojson", "communes")
    _write_vector(iris, out / "iris_synthetiques.geojson", "iris_synthetiques")

    catalogue = load_catalog()
    gpkg_layers: dict[str, list[tuple[str, gpd.GeoDataFrame]]] = {}
    for slug, location in territory["sources"].items():
        gdf = layers[slug]
        kind = location["kind"]
        if kind in ("wfs", "ign_wfs"):
            loc = (WfsLocation if kind == "wfs" else IgnWfsLocation).model_validate(location)
            id_field = "cleabs" if "cleabs" in gdf.columns else ("gid" if "gid" in gdf.columns else None)
            data = write_feature_collection(gdf, loc.typename, id_field=id_field)
            _write_bytes(out / "wire" / "wfs" / wfs_file_name(loc.typename), data)
        elif kind == "datafair":
            loc = DatafairLocation.model_validate(location)
            _write_bytes(out / "wire" / "datafair" / f"{datafair_dataset_id(loc.url)}.json",
                         datafair_wire.write_dataset_file(gdf, geometry_field=loc.geometry_field))
        elif kind == "cartofriches":
            CartofrichesLocation.model_validate(location)
            _write_bytes(out / "wire" / "cartofriches" / "geofriches.geojson", cartofriches_wire.write_dataset_file(gdf))
        else:
            loc = FileLocation.model_validate(location)
            frame = gdf.to_crs(FILE_CRS[slug]) if slug in FILE_CRS else gdf
            if loc.layer:
                gpkg_layers.setdefault(loc.path, []).append((loc.layer, frame))
            else:
                _write_file(frame, out / loc.path, Path(loc.path).stem, catalogue.sources[slug].label)
    for path, entries in gpkg_layers.items():
        _write_geopackage(out / path, entries)

    territory_file = territory_path("demo") if builtin else out / "territory.yaml"
    if not builtin:
        header = ("# Generated by `iarbre-demo`: synthetic layers, nothing real. "
                  f"seed={seed} scale={scale} mode={mode}\n")
        (out / "territory.yaml").write_text(header + yaml.safe_dump(territory, allow_unicode=True, sort_keys=False,
                                                                    width=200), encoding="utf-8")
    marker = {"generator_version": GENERATOR_VERSION, "seed": seed, "scale": scale, "mode": mode,
              "communes": len(communes), "territory_file": str(territory_file),
              "layers": {slug: len(gdf) for slug, gdf in sorted(layers.items())}}
    (out / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
    return Path(territory_file)


# ------------------------------------------------------------------------------------------------
def _read_communes(path: Path) -> gpd.GeoDataFrame:
    gdf = gpd.read_file(path)
    if gdf.crs is None:
        raise ValueError(f"{path}: communes file declares no CRS")
    missing = [c for c in ("insee", "nom") if c not in gdf.columns]
    if missing:
        raise ValueError(f"{path}: communes need the fields insee and nom; missing {missing}")
    gdf = gdf.to_crs("EPSG:2154")
    gdf["insee"] = gdf["insee"].astype(str)
    return gdf.sort_values("insee").reset_index(drop=True)


def _territory_document(template: dict, name: str | None, scale: str, communes_file, mode: str) -> dict:
    doc = json.loads(json.dumps(template))
    if name or communes_file is not None or scale != "small" or mode != "served":
        doc["name"] = name or ("demo_full" if scale == "full" else "demo_custom")
        where = f"on the communes of {Path(communes_file).name}" if communes_file else f"{scale} scale"
        doc["title"] = f"Synthetic demo territory ({where})"
        doc["description"] = "Every dataset generated by iarbre-demo; nothing real except commune boundaries given."
        doc["data_dir"] = "."
    if communes_file is not None:
        doc["communes"]["label"] = f"Communes ({Path(communes_file).name})"
        doc["iris"]["label"] = "IRIS (synthetic subdivision of the given communes, not INSEE IRIS)"
    if mode == "files":
        doc.pop("local_server", None)
        for slug, location in list(doc["sources"].items()):
            kind = location["kind"]
            if kind in ("wfs", "ign_wfs"):
                doc["sources"][slug] = {"kind": "file", "path": f"{slug}.gml"}
            elif kind == "datafair":
                doc["sources"][slug] = {"kind": "file", "path": f"{slug}.parquet"}
            elif kind == "cartofriches":
                doc["sources"][slug] = {"kind": "file", "path": f"{slug}.geojson"}
    return doc


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_vector(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    pyogrio.write_dataframe(gdf, path, driver="GeoJSON", layer=layer)


def _write_file(gdf: gpd.GeoDataFrame, path: Path, layer: str, label: str) -> None:
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        _write_vector(gdf, path, layer)
    elif suffix == ".gml":
        typename = f"iarbre:{layer}"
        id_field = "cleabs" if "cleabs" in gdf.columns else ("gid" if "gid" in gdf.columns else None)
        srs = f"urn:ogc:def:crs:EPSG::{gdf.crs.to_epsg()}"
        _write_bytes(path, write_feature_collection(gdf, typename, srs_name=srs, id_field=id_field))
    elif suffix in (".parquet", ".geoparquet"):
        path.parent.mkdir(parents=True, exist_ok=True)
        gdf.to_crs("EPSG:4326").to_parquet(path, schema_version="1.1.0", write_covering_bbox=True)
    elif suffix == ".zip":
        _write_zipped_shapefile(gdf, path, layer)
    elif suffix == ".shp":
        path.parent.mkdir(parents=True, exist_ok=True)
        pyogrio.write_dataframe(gdf, path, driver="ESRI Shapefile", encoding="UTF-8")
        _fix_dbf_date(path.with_suffix(".dbf"))
    else:
        raise ValueError(f"demo: no writer for {path.name} ({label})")


def _write_geopackage(path: Path, layers: list[tuple[str, gpd.GeoDataFrame]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # GeoPackages carry "last change" timestamps: pin them so the file is reproducible.
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2025-01-01T00:00:00Z"})
    try:
        for layer, frame in sorted(layers, key=lambda item: item[0]):
            pyogrio.write_dataframe(frame, path, driver="GPKG", layer=layer, append=path.exists())
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def _fix_dbf_date(dbf: Path) -> None:
    """The DBF header stores the day it was written (bytes 1-3): pin it for reproducible output."""
    with open(dbf, "r+b") as handle:
        handle.seek(1)
        handle.write(bytes([125, 1, 1]))  # 2025-01-01


def _write_zipped_shapefile(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shp = Path(tmp) / f"{layer}.shp"
        pyogrio.write_dataframe(gdf, shp, driver="ESRI Shapefile", encoding="UTF-8")
        _fix_dbf_date(shp.with_suffix(".dbf"))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for part in sorted(Path(tmp).iterdir()):
                info = zipfile.ZipInfo(part.name, date_time=FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, part.read_bytes())
        _write_bytes(path, buffer.getvalue())


def remove_demo(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
