"""Writes of the Python assets into the DuckDB warehouse (schema `iarbre`, see warehouse/schema.py)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from ..geo.grid import cell_owner
from ..platform import Platform
from ..warehouse.duck import connect
from ..warehouse.schema import ensure_schema, replace_partitions, replace_table


def owned_cell_counts(layer: gpd.GeoDataFrame, codes: list[str], platform: Platform) -> dict[str, int]:
    """Cells whose centre lies in each unit (first unit in code order wins), on the territory grid."""
    geoms = list(layer.geometry.values)
    counts = dict.fromkeys(codes, 0)
    window = platform.territory_window
    for tile_rows, tile_cols, tile in window.tiles(2048):
        owner = cell_owner(geoms, tile)
        values, n = np.unique(owner[owner >= 0], return_counts=True)
        for v, c in zip(values, n):
            counts[codes[v]] += int(c)
    return counts


def write_layer_table(platform: Platform, slug: str, normalised: gpd.GeoDataFrame, version: str) -> None:
    """iarbre.communes / iarbre.iris from an accepted layer version, with each unit's cell count."""
    territory = platform.territory
    spec = territory.communes if slug == "communes" else territory.iris
    frame = normalised.sort_values(spec.code_field).reset_index(drop=True)
    codes = frame[spec.code_field].astype(str).tolist()
    counts = owned_cell_counts(frame, codes, platform)
    data = {
        "code": codes,
        "name": frame[spec.name_field].astype(str).tolist(),
        "area_m2": frame.geometry.area.to_numpy(),
        "cell_count": [counts[c] for c in codes],
    }
    if slug == "communes":
        data["source_version"] = version
    else:
        data["commune"] = frame[spec.commune_field].astype(str).tolist()
        data["synthetic"] = bool(spec.synthetic)
    table = gpd.GeoDataFrame(pd.DataFrame(data), geometry=frame.geometry.values, crs=frame.crs)
    with connect() as con:
        ensure_schema(con)
        replace_table(con, slug, table)


def load_tiles(files: list[str], communes: list[str]) -> int:
    """Replace the tiles of these communes with the rows of their GeoParquet files, in one transaction.

    DuckDB reads the files itself (in parallel, columnar): tens of millions of rows load in seconds,
    where going through Python objects would take minutes.
    """
    from ..warehouse.schema import _select_list, table

    tiles = table("tiles")
    with connect() as con:
        ensure_schema(con)
        paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        con.execute(f"CREATE OR REPLACE TEMP VIEW _incoming_tiles AS "
                    f"SELECT * EXCLUDE (geometry) FROM read_parquet([{paths}])")
        stray = con.execute("SELECT DISTINCT commune FROM _incoming_tiles WHERE commune NOT IN (SELECT unnest(?))",
                            [communes]).fetchall()
        if stray:
            raise ValueError(f"tiles files hold communes {[s[0] for s in stray]} outside {communes}")
        select = _select_list(con, tiles, "_incoming_tiles")
        columns = ", ".join(f'"{c}"' for c in tiles.column_names)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {tiles.qualified} WHERE commune IN (SELECT unnest(?))", [communes])
            con.execute(f"INSERT INTO {tiles.qualified} ({columns}) SELECT {select} FROM _incoming_tiles")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return con.execute(f"SELECT count(*) FROM {tiles.qualified} WHERE commune IN (SELECT unnest(?))",
                           [communes]).fetchone()[0]


def write_partitioned(table: str, data, key_column: str, keys: list[str]) -> int:
    with connect() as con:
        ensure_schema(con)
        return replace_partitions(con, table, data, key_column, keys)


def write_table(table: str, data) -> int:
    with connect() as con:
        ensure_schema(con)
        return replace_table(con, table, data)
