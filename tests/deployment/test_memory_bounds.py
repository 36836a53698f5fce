"""What keeps a run's memory bounded: DuckDB's capped buffer pool, workers that drop a step's caches."""

from __future__ import annotations

import duckdb
import pytest

from iarbre_assets.compute import caches, pool
from iarbre_assets.warehouse.dbt import dbt_vars
from iarbre_assets.warehouse.duck import DEFAULT_MEMORY_LIMIT, connect


def _setting_for(limit: str) -> str:
    """How DuckDB reports a memory limit once set (it normalises units)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit='{limit}'")
    value = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    con.close()
    return value


def test_warehouse_connections_cap_duckdbs_buffer_pool(tmp_path):
    con = connect(tmp_path / "w.duckdb", spatial=False)
    try:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == _setting_for(DEFAULT_MEMORY_LIMIT)
    finally:
        con.close()
    con = connect(tmp_path / "w.duckdb", spatial=False, memory_limit="256MB")
    try:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == _setting_for("256MB")
    finally:
        con.close()


def test_the_warehouse_resource_passes_its_memory_limit(tmp_path):
    from iarbre_assets.resources import WarehouseResource

    resource = WarehouseResource(database=str(tmp_path / "w.duckdb"), memory_limit="300MB")
    with resource.get_connection(spatial=False) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == _setting_for("300MB")


def test_dbt_gets_the_same_cap_as_a_var_its_profile_reads(tmp_path):
    import json

    from iarbre_assets.warehouse.dbt import DBT_PROJECT_DIR

    assert json.loads(dbt_vars(tmp_path / "w.duckdb"))["duckdb_memory_limit"] == DEFAULT_MEMORY_LIMIT
    assert json.loads(dbt_vars(tmp_path / "w.duckdb", "2GB"))["duckdb_memory_limit"] == "2GB"
    profile = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    assert "memory_limit: \"{{ var('duckdb_memory_limit'" in profile


def _step_a(x):
    return ("a", x)


def _step_b(x):
    return ("b", x)


@pytest.fixture
def releases(monkeypatch):
    calls = []
    monkeypatch.setattr(caches, "_RELEASERS", [lambda: calls.append("cleared")])
    monkeypatch.setattr(pool, "_LAST_KIND", None)
    return calls


def test_a_worker_keeps_its_caches_within_a_step(releases):
    assert [pool._run_task(_step_a, i) for i in range(3)] == [("a", 0), ("a", 1), ("a", 2)]
    assert releases == []


def test_a_worker_drops_its_caches_when_the_next_step_starts(releases):
    pool._run_task(_step_a, 1)
    pool._run_task(_step_b, 2)
    pool._run_task(_step_b, 3)
    assert releases == ["cleared"]
    pool._run_task(_step_a, 4)
    assert releases == ["cleared", "cleared"]


def test_the_constraint_caches_are_released_between_steps():
    from iarbre_assets.compute import constraints

    owners = [getattr(clear, "__self__", None) for clear in caches._RELEASERS]
    for cache in (constraints._SOURCE_CACHE, constraints._MASK_CACHE, constraints._COMMUNES_CACHE):
        assert any(owner is cache for owner in owners)


def test_resident_bytes_reads_this_process():
    import psutil

    measured = pool.resident_bytes()
    assert measured > 0
    assert abs(measured - psutil.Process().memory_info().rss) < 64 * 1024 * 1024


def test_point_wkb_writes_the_bytes_shapely_writes():
    import numpy as np
    import shapely

    from iarbre_assets.store.geoparquet import point_wkb

    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(8e5, 8.6e5, 1000), rng.uniform(6.5e6, 6.55e6, 1000)
    ours = point_wkb(xs, ys).to_pylist()
    assert ours == list(shapely.to_wkb(shapely.points(xs, ys), output_dimension=2))
    assert shapely.equals(shapely.from_wkb(ours), shapely.points(xs, ys)).all()
    assert point_wkb(np.empty(0), np.empty(0)).to_pylist() == []


def _pid(_):
    import os

    return os.getpid()


def test_after_a_step_every_worker_is_released_once(monkeypatch):
    """Two idle workers, two release tasks: the barrier makes each worker take one (a worker left holding
    the step's peak is what the release exists to prevent)."""
    monkeypatch.setattr(pool, "SMALL_WORK_CELLS", 0)
    monkeypatch.setattr(pool, "_CONFIGURED", 2)
    pool.shutdown()
    try:
        used = set(pool.map_tasks(_pid, range(8), size=lambda _: 1))  # ends with a release
        released = pool.release_workers()
        assert len(released) == 2 and used <= released
    finally:
        pool.shutdown()


def test_the_single_machine_event_log_commits_without_an_fsync_each(tmp_path):
    """WAL + synchronous=NORMAL (D40): an event per commit no longer waits on the disk; a crash of the
    process loses nothing committed. Checked on a real instance that stores and reads back an event."""
    import dagster as dg

    from iarbre_assets.deployment.profiles import write_instance_config

    write_instance_config(tmp_path)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="probe", partition="p1"))
    with instance.event_log_storage._pooled_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
