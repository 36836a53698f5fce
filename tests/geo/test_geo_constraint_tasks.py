"""Per-commune constraint tasks (compute/constraints.py): owned cells, in-memory coverage, footprint files."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

from iarbre_assets.compute import constraints as C
from iarbre_assets.geo.coverage import coverage_percent
from iarbre_assets.geo.footprint import factor_footprint
from iarbre_assets.geo.grid import cell_owner, window_for_bounds
from iarbre_assets.store import Store
from iarbre_assets.store.geoparquet import write_polygons
from iarbre_assets.store.rasters import read_geotiff

from geo_helpers import X0, Y0

CODES = ("001", "002", "003")


def _communes():
    """001: an L (its window's north-east quarter is not part of it); 002: east of 001, overlapping it by
    2 m (the overlap belongs to 001, first in code order); 003: far away."""
    west = shapely.Polygon([(X0, Y0), (X0 + 200, Y0), (X0 + 200, Y0 + 100), (X0 + 100, Y0 + 100),
                            (X0 + 100, Y0 + 200), (X0, Y0 + 200)])
    east = shapely.box(X0 + 198, Y0, X0 + 300, Y0 + 100)
    far = shapely.box(X0 + 5000, Y0, X0 + 5100, Y0 + 100)
    return [west, east, far]


@pytest.fixture
def setting(tmp_path, catalogue):
    communes = _communes()
    layer_path = tmp_path / "communes.parquet"
    gpd.GeoDataFrame({"code": list(CODES)}, geometry=communes, crs="EPSG:2154").to_parquet(layer_path)
    layer = C.CommuneLayer(path=str(layer_path), codes=CODES, code_field="code")
    rng = np.random.default_rng(5)
    x, y = X0 + rng.uniform(-10, 310, 250), Y0 + rng.uniform(-10, 210, 250)
    pieces = shapely.linestrings(np.stack([np.column_stack([x, y]), np.column_stack([x + 14, y + 5])], axis=1))
    # one line in the L's missing quarter, more than 2 m from any cell of 001 or 002
    pieces = np.append(pieces, shapely.LineString([(X0 + 150, Y0 + 150), (X0 + 190, Y0 + 160)]))
    source_path = tmp_path / "gas.parquet"
    gpd.GeoDataFrame({"id": np.arange(len(pieces))}, geometry=pieces, crs="EPSG:2154").to_parquet(source_path)
    source = C.SourceInput(slug="ore_gaz", version="v1", raw_sha256="r" * 64, normalised_sha256="n" * 64,
                           partner="agence_ore", origin="test", path=str(source_path))
    C._SOURCE_CACHE.clear()
    C._MASK_CACHE.clear()
    C._COMMUNES_CACHE.clear()
    return {"communes": communes, "layer": layer, "source": source, "factor": catalogue.factor("reseau_gaz"),
            "tmp": tmp_path}


def _task(setting, code, out_dir, extent="commune", coverage=True):
    window = window_for_bounds(setting["communes"][CODES.index(code)].bounds)
    fp = C.FootprintTask(factor=setting["factor"], commune=code, window=window, sources=[setting["source"]],
                         store=Store(out_dir), communes=setting["layer"] if extent == "commune" else None)
    cov = None
    if coverage:
        cov = C.CoverageTask(factor=setting["factor"].slug, commune=code, window=window,
                             communes=setting["layer"], store=Store(out_dir))
    return C.ConstraintTask(footprint=fp, coverage=cov)


def test_commune_mask_is_cell_owner_over_all_communes(setting):
    communes = setting["communes"]
    for index, code in enumerate(CODES):
        window = window_for_bounds(communes[index].bounds)
        mask = C.commune_mask(setting["layer"], code, window)
        assert np.array_equal(mask, cell_owner(communes, window) == index)
        assert mask.any()
    # the 2 m overlap: 002's window starts at x = X0 + 195; its first column's centres (x = X0 + 197.5) lie
    # in both communes and belong to 001, first in code order; the next column (X0 + 202.5) is 002's
    east = C.commune_mask(setting["layer"], "002", window_for_bounds(communes[1].bounds))
    assert not east[:, 0].any() and east[:, 1].all()
    west_window = window_for_bounds(communes[0].bounds)
    assert not C.commune_mask(setting["layer"], "001", west_window)[:20, 20:].any()  # the missing quarter
    # a copy: changing it changes nothing for the next caller
    mask = C.commune_mask(setting["layer"], "001", west_window)
    mask[:] = False
    assert C.commune_mask(setting["layer"], "001", west_window).any()


def test_in_memory_coverage_equals_the_coverage_of_the_footprint_file(setting):
    a, b = setting["tmp"] / "a", setting["tmp"] / "b"
    task = _task(setting, "001", a)
    result = C.run_constraint(task)
    factor = setting["factor"].slug
    Store(b).footprint(factor, "001").parent.mkdir(parents=True)
    Store(b).footprint(factor, "001").write_bytes(Store(a).footprint(factor, "001").read_bytes())
    from_file = C.run_coverage(C.CoverageTask(**{**task.coverage.__dict__, "store": Store(b)}))
    assert result["coverage"] == from_file
    tif_a, window, nodata = read_geotiff(Store(a).coverage(setting["factor"].slug, "001"))
    tif_b, _, _ = read_geotiff(Store(b).coverage(setting["factor"].slug, "001"))
    assert np.array_equal(tif_a, tif_b) and nodata == 255
    assert result["coverage"]["footprint_sha256"] == result["footprint"]["sha256"]
    assert json.loads(Store(a).coverage_record(setting["factor"].slug, "001").read_text()) == result["coverage"]
    # no temporary file left behind by the atomic writes
    written = sorted(p.name for p in Store(a).factor_dir(factor).iterdir())
    assert written == ["001.footprint.json", "001.footprint.parquet", "001.json", "001.tif"]


def test_coverage_file_and_record_describe_the_owned_cells(setting):
    out = setting["tmp"] / "out"
    record = C.run_constraint(_task(setting, "001", out))["coverage"]
    tif, window, _ = read_geotiff(Store(out).coverage(setting["factor"].slug, "001"))
    owned = cell_owner(setting["communes"], window) == 0
    polygons = gpd.read_parquet(Store(out).footprint(setting["factor"].slug, "001")).geometry.values
    expected = coverage_percent(polygons, window)
    assert np.array_equal(tif[owned], expected[owned]) and (tif[~owned] == 255).all()
    values = expected[owned]
    assert record["cells"] == int(owned.sum())
    assert record["covered_cells"] == int((values > 0).sum()) > 0
    assert record["covered_area_m2"] == pytest.approx(values.sum() / 100 * 25)
    assert record["max"] == int(values.max()) and record["values_ok"] and record["outside_is_nodata"]
    with rasterio.open(Store(out).coverage(setting["factor"].slug, "001")) as src:
        assert src.compression.name.lower() == "zstd" and src.nodata == 255


def test_footprint_of_a_commune_holds_the_features_that_reach_it_with_the_same_coverage(setting):
    commune, window = setting["tmp"] / "commune", setting["tmp"] / "window"
    by_commune = C.run_constraint(_task(setting, "001", commune, "commune"))
    by_window = C.run_constraint(_task(setting, "001", window, "window"))
    assert by_commune["footprint"]["extent"] == "commune" and by_window["footprint"]["extent"] == "window"
    assert 0 < by_commune["footprint"]["stats"]["features_selected"] < by_window["footprint"]["stats"]["features_selected"]
    # the line in the missing quarter is in the window's footprint only
    probe = shapely.Point(X0 + 170, Y0 + 155)
    assert gpd.read_parquet(Store(window).footprint(setting["factor"].slug, "001")).intersects(probe).any()
    assert not gpd.read_parquet(Store(commune).footprint(setting["factor"].slug, "001")).intersects(probe).any()
    # the same coverage of the commune's cells, hence the same file content
    a, _, _ = read_geotiff(Store(commune).coverage(setting["factor"].slug, "001"))
    b, _, _ = read_geotiff(Store(window).coverage(setting["factor"].slug, "001"))
    assert np.array_equal(a, b)
    assert by_commune["coverage"]["coverage_sha256"] == by_window["coverage"]["coverage_sha256"]


def test_footprint_only_task_and_a_commune_with_nothing_reaching_it(setting):
    out = setting["tmp"] / "out"
    result = C.run_constraint(_task(setting, "003", out, coverage=False))
    assert list(result) == ["footprint"] and result["footprint"]["stats"]["polygons_out"] == 0
    assert len(gpd.read_parquet(Store(out).footprint(setting["factor"].slug, "003"))) == 0
    record = C.run_coverage(_task(setting, "003", out).coverage)
    assert record["covered_cells"] == 0 and record["footprint_in_commune"] == 0 and record["values_ok"]


def test_write_footprint_writes_what_geopandas_writes(tmp_path):
    rng = np.random.default_rng(1)
    polygons = shapely.buffer(shapely.points(X0 + rng.uniform(0, 500, 40), Y0 + rng.uniform(0, 500, 40)), 3.0)
    polygons = np.append(polygons, shapely.box(X0, Y0, X0 + 10, Y0 + 10).difference(shapely.box(X0 + 2, Y0 + 2, X0 + 4, Y0 + 4)))
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    write_polygons(ours, polygons)
    gpd.GeoDataFrame(geometry=gpd.GeoSeries(polygons, crs="EPSG:2154"), crs="EPSG:2154").to_parquet(
        theirs, schema_version="1.1.0", write_covering_bbox=True, compression="zstd")
    a, b = gpd.read_parquet(ours), gpd.read_parquet(theirs)
    assert a.crs == b.crs and a.crs.to_epsg() == 2154 and list(a.columns) == ["geometry"]
    assert shapely.to_wkb(a.geometry.values).tolist() == shapely.to_wkb(b.geometry.values).tolist()
    meta = lambda p: json.loads(pq.ParquetFile(p).schema_arrow.metadata[b"geo"])  # noqa: E731
    assert meta(ours) == meta(theirs)
    assert pq.read_table(ours, columns=["bbox"]).equals(pq.read_table(theirs, columns=["bbox"]))
    # and a read restricted by the covering bbox works
    assert len(gpd.read_parquet(ours, bbox=(X0, Y0, X0 + 20, Y0 + 20))) >= 1
    write_polygons(tmp_path / "empty.parquet", np.empty(0, dtype=object))
    empty = gpd.read_parquet(tmp_path / "empty.parquet")
    assert len(empty) == 0 and empty.crs.to_epsg() == 2154
    assert meta(tmp_path / "empty.parquet")["columns"]["geometry"]["geometry_types"] == []


def test_footprint_area_in_the_window_equals_the_overlay_intersection(setting):
    window = window_for_bounds((X0, Y0, X0 + 100, Y0 + 100))
    task = C.CoverageTask(factor="x", commune="001", window=window, communes=setting["layer"],
                          store=Store(setting["tmp"]))
    polygons = np.array([
        shapely.box(X0 + 10, Y0 + 10, X0 + 20, Y0 + 30),  # inside: 200 m²
        shapely.Point(X0 + 100, Y0 + 50).buffer(10, quad_segs=16),  # half inside
        shapely.box(X0 - 5, Y0 - 5, X0 + 5, Y0 + 105).difference(shapely.box(X0 - 1, Y0 + 40, X0 + 1, Y0 + 60)),
        shapely.box(X0 + 100, Y0, X0 + 120, Y0 + 10),  # touches the east edge only
        shapely.box(X0 + 300, Y0, X0 + 320, Y0 + 10),  # outside
    ], dtype=object)
    # 200 m² + half the 64-gon (32 triangles of 10 x 10 x sin(pi / 32) / 2) + the 5 m strip minus its hole
    half_disc = 32 * 100 * np.sin(np.pi / 32) / 2
    assert C._footprint_reaches(polygons, task) == round(200 + half_disc + (5 * 100 - 1 * 20)) == 837
    box = shapely.box(*window.bounds)
    assert C._footprint_reaches(polygons, task) == round(float(shapely.area(shapely.intersection(polygons, box)).sum()))
    assert C._footprint_reaches(np.empty(0, dtype=object), task) == 0


def test_every_factor_unions_by_overlay(catalogue):
    for factor in catalogue.factors:
        assert C.union_method_for(factor, "line") == C.union_method_for(factor, "polygon") == "overlay"


def test_masks_are_computed_once_per_commune_and_window(setting):
    window = window_for_bounds(setting["communes"][0].bounds)
    first = C._owned_cells(setting["layer"], "001", window)
    assert C._owned_cells(setting["layer"], "001", window) is first
    assert not first.flags.writeable
    area = C.owned_area(setting["layer"], "001", window)
    assert C.owned_area(setting["layer"], "001", window) is area
    # the footprint selection uses it: only features reaching the owned cells
    frame = C.read_source(setting["source"].path)
    fp = factor_footprint(frame, setting["factor"], bounds=window.bounds, cells=area)
    assert fp.stats["features_selected"] < len(frame)
