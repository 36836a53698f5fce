"""The warehouse contract helpers and the DuckDB connection (spatial offline, lock back-off). No dbt."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from iarbre_assets.catalog import load_catalog
from iarbre_assets.warehouse import schema
from iarbre_assets.warehouse.duck import WarehouseLockedError, WarehouseMissingError, connect

from .conftest import A, B, CONTRACT, _tiles

T = CONTRACT.table


@pytest.fixture
def con(tmp_path):
    c = connect(tmp_path / "w.duckdb")
    schema.ensure_schema(c, CONTRACT)
    yield c
    c.close()


def test_ensure_schema_creates_the_contract_idempotently(con):
    schema.ensure_schema(con, CONTRACT)  # second time: no error, nothing duplicated
    cols = dict(con.execute(
        "SELECT table_name, list(column_name ORDER BY ordinal_position) FROM information_schema.columns "
        "WHERE table_schema = 'iarbre' GROUP BY table_name").fetchall())
    assert set(cols) == {"tiles", "communes", "iris", "source_versions", "factor_stats", "score_runs",
                         "score_run_inputs", "score_run_weights", "score_diff", "source_freshness"}
    metas = [f"meta_{m.slug}" for m in load_catalog().meta_factors]
    assert [c for c in cols["tiles"] if c.startswith("meta_")] == metas
    assert metas[0] == "meta_espaces_verts" and len(metas) == 7
    assert [c for c in cols["tiles"] if c.startswith("top")] == (
        [f"top{i}" for i in range(1, 6)] + [f"top{i}_pct" for i in range(1, 6)])
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'iarbre' AND table_name = 'tiles'").fetchall())
    assert types["class"] == "UTINYINT" and types["score"] == "FLOAT" and types["top1_pct"] == "USMALLINT"


def test_ensure_schema_adds_new_columns_and_refuses_type_changes(con):
    con.execute("ALTER TABLE iarbre.tiles DROP COLUMN meta_plan_eau")
    schema.ensure_schema(con, CONTRACT)
    assert "meta_plan_eau" in [r[0] for r in con.execute("DESCRIBE iarbre.tiles").fetchall()]
    con.execute("ALTER TABLE iarbre.communes ALTER COLUMN cell_count TYPE VARCHAR")
    with pytest.raises(schema.SchemaMismatchError, match=r"iarbre\.communes.*cell_count: is VARCHAR"):
        schema.ensure_schema(con, CONTRACT)


def test_replace_partitions_replaces_only_the_given_communes(con):
    tiles = _tiles()
    assert schema.replace_partitions(con, T("tiles"), tiles, "commune", [A, B]) == 300
    smaller = tiles[tiles.commune == A].head(7).copy()
    smaller["score"] = 9.5
    assert schema.replace_partitions(con, T("iarbre.tiles"), smaller, "commune", [A]) == 7
    counts = dict(con.execute("SELECT commune, count(*) FROM iarbre.tiles GROUP BY 1").fetchall())
    assert counts == {A: 7, B: 100}
    assert con.execute("SELECT DISTINCT score FROM iarbre.tiles WHERE commune = ?", [A]).fetchall() == [(9.5,)]
    # an omitted nullable column is NULL; a replace with no rows empties the partition
    assert con.execute("SELECT count(*) FROM iarbre.tiles WHERE top2 IS NULL").fetchone()[0] == 107
    schema.replace_partitions(con, T("tiles"), tiles.iloc[0:0], "commune", [A])
    assert dict(con.execute("SELECT commune, count(*) FROM iarbre.tiles GROUP BY 1").fetchall()) == {B: 100}


def test_replace_partitions_rejects_bad_input_without_touching_the_table(con):
    tiles = _tiles()
    schema.replace_partitions(con, T("tiles"), tiles, "commune", [A, B])
    with pytest.raises(ValueError, match=r"rows with commune \['69902'\] are outside the replaced keys \['69901'\]"):
        schema.replace_partitions(con, T("tiles"), tiles, "commune", [A])
    with pytest.raises(ValueError, match=r"required columns \['score'\] are missing"):
        schema.replace_partitions(con, T("tiles"), tiles.drop(columns="score"), "commune", [A, B])
    with pytest.raises(ValueError, match=r"columns \['colour'\] are not in the contract"):
        schema.replace_partitions(con, T("tiles"), tiles.assign(colour="red"), "commune", [A, B])
    with pytest.raises(duckdb.Error, match=r"iarbre\.tiles: insert failed"):  # 300 does not fit UTINYINT
        schema.replace_partitions(con, T("tiles"), tiles.assign(**{"class": 300}), "commune", [A, B])
    with pytest.raises(KeyError, match="not a warehouse contract table"):
        schema.replace_partitions(con, T("tyles"), tiles, "commune", [A])
    assert con.execute("SELECT count(*) FROM iarbre.tiles").fetchone()[0] == 300  # rolled back


def test_geodataframes_are_stored_as_geometry_in_2154_only(con):
    communes = gpd.GeoDataFrame(
        {"code": [A], "name": ["Alpha"], "area_m2": [5000.0], "cell_count": [200], "source_version": ["v"]},
        geometry=[box(842_000, 6_519_000, 842_100, 6_519_050)], crs="EPSG:2154")
    schema.replace_table(con, T("communes"), communes)
    assert con.execute("SELECT ST_Area(geom), ST_GeometryType(geom)::varchar FROM iarbre.communes").fetchall() == [
        (5000.0, "POLYGON")]
    with pytest.raises(ValueError, match="must be in EPSG:2154"):
        schema.replace_table(con, T("communes"), communes.to_crs("EPSG:3946"))


def test_upsert_and_current_version(con):
    base = {"label": "Gaz", "partner": "grdf", "partner_name": "GRDF", "family": "networks",
            "connector": "datafair", "origin": "https://x.test", "fetched_at": pd.Timestamp("2026-01-01"),
            "size_bytes": 10, "licence": "LO", "check_status": "passed", "checks_failed": 0,
            "cadence": "P3M", "cadence_days": 90}
    v1 = pd.DataFrame([{**base, "source": "ore_gaz", "version": "a" * 64, "is_current": True}])
    v2 = pd.DataFrame([{**base, "source": "ore_gaz", "version": "b" * 64, "is_current": False}])
    schema.upsert_rows(con, T("source_versions"), v1)
    schema.upsert_rows(con, T("source_versions"), v2)
    schema.upsert_rows(con, T("source_versions"), v2.assign(size_bytes=99))  # same key: replaced, not duplicated
    assert con.execute("SELECT version, size_bytes FROM iarbre.source_versions ORDER BY version").fetchall() == [
        ("a" * 64, 10), ("b" * 64, 99)]
    schema.set_current_version(con, "ore_gaz", "b" * 64)
    assert con.execute("SELECT version FROM iarbre.source_versions WHERE is_current").fetchall() == [("b" * 64,)]
    with pytest.raises(KeyError, match="no row for source 'ore_gaz' version 'zzz'"):
        schema.set_current_version(con, "ore_gaz", "zzz")


def test_contract_asset_keys():
    assert schema.contract_asset_keys() == {
        "tiles": ("tiles",), "communes": ("source", "communes"), "iris": ("source", "iris"),
        "source_versions": ("source_inventory",), "factor_stats": ("plantability_score",),
        "score_runs": ("plantability_score",), "score_run_inputs": ("plantability_score",),
        "score_run_weights": ("plantability_score",), "score_diff": ("plantability_class",),
        "source_freshness": ("source_inventory",),
    }


def test_connect_loads_spatial_from_the_wheel_without_network(tmp_path):
    c = connect(tmp_path / "s.duckdb")
    try:
        assert c.execute("SELECT ST_AsText(ST_Envelope(ST_Buffer(ST_Point(0, 0), 1)))").fetchone()[0] == (
            "POLYGON ((-1 -1, 1 -1, 1 1, -1 1, -1 -1))")
        assert c.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone()[0] is False
    finally:
        c.close()
    with pytest.raises(WarehouseMissingError, match="does not exist yet.*iarbre run"):
        connect(tmp_path / "missing.duckdb", read_only=True)


def _hold_lock(path, seconds):
    code = textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_connect_waits_for_another_writer_then_gives_up_clearly(tmp_path):
    path = tmp_path / "locked.duckdb"
    duckdb.connect(str(path)).close()
    holder = _hold_lock(path, 1.0)
    try:
        start = time.monotonic()
        c = connect(path, lock_timeout=30, spatial=False)  # waits until the holder exits
        waited = time.monotonic() - start
        c.close()
        assert 0.3 < waited < 15
    finally:
        holder.wait(timeout=30)
    holder = _hold_lock(path, 20)
    try:
        start = time.monotonic()
        with pytest.raises(WarehouseLockedError, match=r"locked\.duckdb: still locked by another process after 0\.5 s"):
            connect(path, lock_timeout=0.5, spatial=False)
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait(timeout=30)
