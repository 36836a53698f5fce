"""Every write of the Python assets into the warehouse (schema `iarbre`, contract in warehouse/schema.py).

Each function takes an open read-write connection (from the warehouse resource) and the run's contract,
and does its work in one transaction (`schema.transaction`), so a reader never sees half a write.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .schema import Contract, ensure_schema, replace_partitions, replace_table, select_list, transaction


def _sql_paths(files: list[Path]) -> str:
    return ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)


def write_layer(con: duckdb.DuckDBPyConnection, contract: Contract, slug: str, frame) -> int:
    """iarbre.communes / iarbre.iris: the accepted layer with each unit's cell count (replaced whole)."""
    ensure_schema(con, contract)
    return replace_table(con, contract.table(slug), frame)


def layer_filled(con: duckdb.DuckDBPyConnection, slug: str) -> bool:
    try:
        return con.execute(f"SELECT count(*) FROM iarbre.{slug}").fetchone()[0] > 0
    except duckdb.Error:  # no table yet
        return False


def load_tiles(con: duckdb.DuckDBPyConnection, contract: Contract, files: list[Path], communes: list[str]) -> int:
    """Replace the tiles of these communes with the rows of their GeoParquet files, in one transaction.

    DuckDB reads the files itself (in parallel, columnar): tens of millions of rows load in seconds,
    where going through Python objects would take minutes. Returns the communes' row count.
    """
    ensure_schema(con, contract)
    tiles = contract.table("tiles")
    con.execute(f"CREATE OR REPLACE TEMP VIEW _incoming_tiles AS "
                f"SELECT * EXCLUDE (geometry) FROM read_parquet([{_sql_paths(files)}])")
    stray = con.execute("SELECT DISTINCT commune FROM _incoming_tiles WHERE commune NOT IN (SELECT unnest(?))",
                        [communes]).fetchall()
    if stray:
        raise ValueError(f"tiles files hold communes {[s[0] for s in stray]} outside {communes}")
    select = select_list(con, tiles, "_incoming_tiles")
    columns = ", ".join(f'"{c}"' for c in tiles.column_names)
    with transaction(con):
        con.execute(f"DELETE FROM {tiles.qualified} WHERE commune IN (SELECT unnest(?))", [communes])
        con.execute(f"INSERT INTO {tiles.qualified} ({columns}) SELECT {select} FROM _incoming_tiles")
    return con.execute(f"SELECT count(*) FROM {tiles.qualified} WHERE commune IN (SELECT unnest(?))",
                       [communes]).fetchone()[0]


def write_score_run(con: duckdb.DuckDBPyConnection, contract: Contract, communes: list[str], *, factor_stats,
                    runs, inputs, weights) -> None:
    """What one score run of these communes produced and used, in one transaction.

    factor_stats are replaced per commune (the current map); runs, inputs and weights accumulate (the history
    auditors read); a re-run of the same run id replaces its own rows.
    """
    ensure_schema(con, contract)
    with transaction(con):
        _replace_keys(con, contract, "factor_stats", factor_stats, "commune", communes)
        for name, frame in (("score_runs", runs), ("score_run_inputs", inputs), ("score_run_weights", weights)):
            table = contract.table(name)
            keys = frame[["run_id", "commune"]].drop_duplicates()
            con.register("_keys", keys)
            con.execute(f"DELETE FROM {table.qualified} WHERE (run_id, commune) IN (SELECT run_id, commune FROM _keys)")
            con.unregister("_keys")
            _insert_frame(con, contract, name, frame)


def write_score_diff(con: duckdb.DuckDBPyConnection, contract: Contract, frame, communes: list[str]) -> int:
    """Class transitions of these communes between their previous and latest classes (replaced per commune)."""
    ensure_schema(con, contract)
    return replace_partitions(con, contract.table("score_diff"), frame, "commune", communes)


def write_source_inventory(con: duckdb.DuckDBPyConnection, contract: Contract, versions, freshness) -> None:
    """Every source version ever seen, and each source's freshness, replaced together."""
    ensure_schema(con, contract)
    with transaction(con):
        for name, frame in (("source_versions", versions), ("source_freshness", freshness)):
            con.execute(f"DELETE FROM {contract.table(name).qualified}")
            _insert_frame(con, contract, name, frame)


# -- inside a transaction ------------------------------------------------------------------------------
def _insert_frame(con, contract: Contract, name: str, frame) -> None:
    if frame is None or not len(frame):
        return
    table = contract.table(name)
    con.register("_rows", frame)
    try:
        select = select_list(con, table, "_rows")
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        con.execute(f"INSERT INTO {table.qualified} ({cols}) SELECT {select} FROM _rows")
    finally:
        con.unregister("_rows")


def _replace_keys(con, contract: Contract, name: str, frame, key: str, keys: list[str]) -> None:
    table = contract.table(name)
    con.execute(f'DELETE FROM {table.qualified} WHERE CAST("{key}" AS VARCHAR) IN (SELECT unnest(?))',
                [sorted(set(keys))])
    _insert_frame(con, contract, name, frame)
