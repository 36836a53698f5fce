"""The whole platform on the demo territory: every asset materialised, outputs consistent and seamless."""

from __future__ import annotations

import hashlib
import json

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.features import rasterize

from iarbre_assets.geo.score import CLASS_NODATA, SCORE_NODATA
from iarbre_assets.store import Export


def test_every_asset_materialised_and_every_check_passed(demo_run):
    outcome = demo_run.outcome
    assert outcome.success
    assert not outcome.failed_checks
    platform = demo_run.platform
    n_sources, n_communes = len(platform.sources), len(platform.commune_codes)
    assert outcome.materialised["raw"] == n_sources
    assert outcome.materialised["source"] == n_sources
    assert outcome.materialised["footprint"] == len(platform.factors) * n_communes
    assert outcome.materialised["coverage"] == len(platform.scored_factors) * n_communes
    for key in ("plantability_score", "plantability_class", "tiles"):
        assert outcome.materialised[key] == n_communes
    for key in ("plantability_score_cog", "plantability_class_cog", "class_polygons_gpkg", "marts"):
        assert outcome.materialised[key] >= 1


def _owner_raster(platform) -> np.ndarray:
    """Independent centre rule: rasterise the communes at 5 m over the territory grid, lowest code wins."""
    window = platform.territory_window
    shapes = [(geom, i + 1) for i, geom in reversed(list(enumerate(platform.communes.geometry)))]
    return rasterize(shapes, out_shape=window.shape, transform=window.transform, fill=0, dtype="int32") - 1


def test_mosaics_are_seamless_with_one_value_per_commune_cell(demo_run):
    platform = demo_run.platform
    owner = _owner_raster(platform)
    inside = owner >= 0
    with rasterio.open(platform.store.export(Export.SCORE_COG)) as src:
        assert src.crs.to_epsg() == 2154 and src.transform == platform.territory_window.transform
        assert src.profile.get("tiled") and src.overviews(1)  # cloud-optimised layout
        score = src.read(1)
    with rasterio.open(platform.store.export(Export.CLASS_COG)) as src:
        classes = src.read(1)
    # no gap inside a commune, nothing outside
    assert (score[inside] != SCORE_NODATA).all() and (score[~inside] == SCORE_NODATA).all()
    assert (classes[inside] != CLASS_NODATA).all() and (classes[~inside] == CLASS_NODATA).all()
    assert set(np.unique(classes[inside])) <= {0, 2, 4, 6, 8, 10}
    # each commune's own raster agrees with the mosaic on exactly the cells it owns: no seam, no double count
    total = 0
    for index, code in enumerate(platform.commune_codes):
        with rasterio.open(platform.store.score(code)) as src:
            part = src.read(1)
            row = int(round((platform.territory_window.ymax - src.transform.f) / 5))
            col = int(round((src.transform.c - platform.territory_window.xmin) / 5))
        mine = part != SCORE_NODATA
        window = score[row:row + part.shape[0], col:col + part.shape[1]]
        assert np.array_equal(window[mine], part[mine])
        assert (owner[row:row + part.shape[0], col:col + part.shape[1]][mine] == index).all()
        total += int(mine.sum())
    assert total == int(inside.sum())


def test_tiles_warehouse_and_marts_agree(demo_run):
    platform = demo_run.platform
    warehouse = platform.store.warehouse
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tiles = con.execute("select commune, count(*) n, sum(score) s from iarbre.tiles group by 1 order by 1").df()
        communes = con.execute("select code, cell_count from iarbre.communes order by 1").df()
        mart = con.execute("select * from marts.commune_plantability order by commune").df()
        classes = con.execute('select distinct "class" from iarbre.tiles').fetchall()
        inventory = con.execute("select source, has_current_version, check_status from marts.source_inventory").df()
    finally:
        con.close()
    assert list(tiles["n"]) == list(communes["cell_count"]) == list(mart["cell_count"])
    assert {c[0] for c in classes} <= {0, 2, 4, 6, 8, 10}
    area_cols = [c for c in mart.columns if c.startswith("area_m2_class_")]
    assert (mart[area_cols].sum(axis=1) == mart["cell_count"] * 25).all()
    assert np.allclose(mart["mean_score"], tiles["s"] / tiles["n"], atol=1e-4)
    assert set(inventory["source"]) == set(platform.sources)
    assert inventory["has_current_version"].all()
    assert (inventory["check_status"].isin(["passed", "warning"])).all()
    # the GeoParquet export holds the same rows, as cell-centre points in EPSG:2154
    export = gpd.read_parquet(platform.store.export(Export.TILES_PARQUET))
    assert export.crs.to_epsg() == 2154 and len(export) == int(tiles["n"].sum())
    assert (export.geometry.x == export["x"]).all()


def test_class_polygons_cover_the_communes(demo_run):
    platform = demo_run.platform
    gpkg = gpd.read_file(platform.store.export(Export.CLASS_GPKG), layer="plantability_classes")
    assert gpkg.crs.to_epsg() == 2154
    assert set(gpkg["class"]) <= {0, 2, 4, 6, 8, 10}
    cells = sum(json.loads(platform.store.score_record(c).read_text())["outputs"]["cells"]
                for c in platform.commune_codes)
    assert abs(gpkg["area_m2"].sum() - cells * 25) < 1e-3
    assert not gpkg.duplicated(["commune", "class"]).any()


def test_raw_data_versions_are_content_hashes(demo_run):
    instance, platform = demo_run.instance, demo_run.platform
    store = platform.store.raw
    import dagster as dg

    for slug in ("ore_gaz", "espaces_publics", "batiments_bdtopo"):
        event = instance.get_latest_materialization_event(dg.AssetKey(["raw", slug]))
        version = event.asset_materialization.tags["dagster/data_version"]
        latest = store.latest(slug)
        path = store.path(slug, latest.sha256)
        assert version == latest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_explain_matches_the_published_rasters(demo_run):
    from iarbre_assets.provenance.explain import explain_point

    platform = demo_run.platform
    tiles = pd.read_parquet(platform.store.export(Export.TILES_PARQUET), columns=["x", "y", "score", "class", "blocked"])
    for _, cell in pd.concat([tiles[tiles.blocked].head(2), tiles[~tiles.blocked].nlargest(2, "score")]).iterrows():
        e = explain_point(demo_run.home, cell.x, cell.y)
        assert abs(e["score"] - cell.score) < 1e-4 and e["class"] == cell["class"]
        if cell.blocked:
            assert e["blocked_by"] is not None
        else:
            assert abs(sum(f["contribution"] for f in e["factors"]) - cell.score) < 1e-3
        present = [f for f in e["factors"] if f["coverage_pct"] > 0]
        assert present and all(s["raw_sha256"] and s["partner"] for f in present for s in f["sources"])
        assert e["run_id"] == demo_run.outcome.run_id


def test_normalised_sources_are_geoparquet_1_1_with_bbox_covering(demo_run):
    import pyarrow.parquet as pq

    platform = demo_run.platform
    for slug in platform.sources:
        current = platform.store.versions(slug).current()
        path = current.data_path(platform.store)
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        assert geo["version"] == "1.1.0", slug
        column = geo["columns"][geo["primary_column"]]
        assert "covering" in column and "bbox" in column["covering"], slug
        assert column["crs"]["id"]["code"] == 2154, slug
        frame = gpd.read_parquet(path)
        assert frame.crs.to_epsg() == 2154 and frame.geometry.is_valid.all() and not frame.has_z.any(), slug


def test_tiles_written_in_row_group_slices_equal_the_tiles_of_the_run(demo_copy, monkeypatch):
    """run_tiles builds and writes one row group at a time (bounded memory on large communes): with slices
    of 5 000 rows, every commune's file holds exactly the rows the run wrote in one slice."""
    import math

    import pyarrow.parquet as pq

    from iarbre_assets.assets.tiles import tiles_tasks
    from iarbre_assets.compute import scoring

    platform = demo_copy.platform
    before = {c: pq.read_table(platform.store.tiles(c)) for c in platform.commune_codes}
    run_id = before[platform.commune_codes[0]].column("run_id")[0].as_py()
    monkeypatch.setattr(scoring, "TILES_ROW_GROUP", 5000)
    for task in tiles_tasks(platform, platform.commune_codes, run_id):
        record = scoring.run_tiles(task)
        after = pq.ParquetFile(platform.store.tiles(task.commune))
        assert after.metadata.num_row_groups == math.ceil(record["rows"] / 5000) > 1
        assert after.read().equals(before[task.commune])
        assert after.schema_arrow.metadata[b"geo"] == before[task.commune].schema.metadata[b"geo"]
