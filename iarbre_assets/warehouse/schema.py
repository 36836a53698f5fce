"""The warehouse contract: the tables the Python assets write in schema `iarbre`, read by dbt.

Each table has one writer asset (its Dagster key is the dbt source's `meta.dagster.asset_key`, see
dbt_project/models/staging/sources.yml):

    iarbre.tiles             ["tiles"]               one row per 5 m cell, replaced per commune
    iarbre.communes          ["source", "communes"]  commune outlines, EPSG:2154
    iarbre.iris              ["source", "iris"]      IRIS outlines (table always exists, may be empty)
    iarbre.source_versions   ["source_inventory"]    every (source, version) ever seen
    iarbre.source_freshness  ["source_inventory"]    one row per source: the freshness every view reports
    iarbre.factor_stats      ["plantability_score"]  per commune and factor, replaced per commune
    iarbre.score_runs        ["plantability_score"]  one row per (run, commune): code, catalogue, thresholds
    iarbre.score_run_inputs  ["plantability_score"]  the source versions a (run, commune) used
    iarbre.score_run_weights ["plantability_score"]  the weights and blocking flags a (run, commune) used
    iarbre.score_diff        ["plantability_class"]  class transitions of a commune between its last two runs

The tile columns (meta-factor sums, display-only layers, top factors) follow the catalogue the run loaded:
`contract(catalogue)` builds the tables for it.

Conventions: geometries in EPSG:2154 (plain GEOMETRY: DuckDB 1.5 does not persist a CRS in the type);
TIMESTAMP columns are naive UTC; versions are hex SHA-256 of the raw bytes.

Uniqueness is not declared as PRIMARY KEY: an ART index over 20 M Lyon cells costs memory and slows
delete+insert; dbt tests (blocking asset checks) enforce it instead. NOT NULL is declared (cheap).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import duckdb

from iarbre_assets.geo.grid import PLATFORM_CRS

SCHEMA = "iarbre"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    asset_key: tuple[str, ...]
    key: tuple[str, ...]  # the natural key the dbt tests hold unique
    description: str

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.qualified} has no column {name!r}; columns: {self.column_names}")

    def ddl(self) -> str:
        cols = ",\n  ".join(
            f'"{c.name}" {c.type}{"" if c.nullable else " NOT NULL"}' for c in self.columns
        )
        return f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  {cols}\n)"


def _c(name: str, type_: str, nullable: bool = False) -> Column:
    return Column(name, type_, nullable)


def meta_columns(catalogue) -> list[str]:
    """`meta_<slug>` for each meta-factor of the catalogue, in catalogue order."""
    return [f"meta_{m.slug}" for m in catalogue.meta_factors]


def display_columns(catalogue) -> list[str]:
    """`in_<slug>` for each display-only factor (e.g. QPV): the cell centre lies in its footprint."""
    return [f"in_{f.slug}" for f in catalogue.factors if f.display_only]


def top_columns(catalogue) -> list[str]:
    """top1..topN then top1_pct..topN_pct, N = catalogue scoring.top_factors (5)."""
    n = catalogue.scoring.top_factors
    return [f"top{i}" for i in range(1, n + 1)] + [f"top{i}_pct" for i in range(1, n + 1)]


def _tables(catalogue) -> dict[str, Table]:
    n_top = catalogue.scoring.top_factors
    tiles = Table(
        "tiles",
        (
            _c("cell_id", "BIGINT"),
            _c("commune", "VARCHAR"),
            _c("iris", "VARCHAR", True),
            _c("x", "DOUBLE"),
            _c("y", "DOUBLE"),
            _c("score", "REAL"),
            _c("class", "UTINYINT"),
            _c("blocked", "BOOLEAN"),
            _c("blocking_factor", "VARCHAR", True),
            *(_c(f"top{i}", "VARCHAR", True) for i in range(1, n_top + 1)),
            *(_c(f"top{i}_pct", "USMALLINT", True) for i in range(1, n_top + 1)),
            *(_c(name, "USMALLINT") for name in meta_columns(catalogue)),
            *(_c(name, "BOOLEAN", True) for name in display_columns(catalogue)),
            _c("run_id", "VARCHAR"),
        ),
        ("tiles",),
        ("cell_id",),
        "One row per 5 m cell (centre x, y in EPSG:2154): score, class, blocking, top factors, meta sums.",
    )
    communes = Table(
        "communes",
        (
            _c("code", "VARCHAR"),
            _c("name", "VARCHAR"),
            _c("area_m2", "DOUBLE"),
            _c("cell_count", "BIGINT"),
            _c("source_version", "VARCHAR"),
            _c("geom", "GEOMETRY"),
        ),
        ("source", "communes"),
        ("code",),
        "Communes (INSEE code) with their outline in EPSG:2154 and the number of cells whose centre they hold.",
    )
    iris = Table(
        "iris",
        (
            _c("code", "VARCHAR"),
            _c("name", "VARCHAR"),
            _c("commune", "VARCHAR"),
            _c("area_m2", "DOUBLE"),
            _c("cell_count", "BIGINT"),
            _c("synthetic", "BOOLEAN"),
            _c("geom", "GEOMETRY"),
        ),
        ("source", "iris"),
        ("code",),
        "IRIS with their outline in EPSG:2154 (empty when the territory declares none).",
    )
    source_versions = Table(
        "source_versions",
        (
            _c("source", "VARCHAR"),
            _c("label", "VARCHAR"),
            _c("partner", "VARCHAR"),
            _c("partner_name", "VARCHAR"),
            _c("family", "VARCHAR"),
            _c("connector", "VARCHAR"),
            _c("origin", "VARCHAR"),
            _c("version", "VARCHAR"),
            _c("normalised_sha256", "VARCHAR", True),
            _c("fetched_at", "TIMESTAMP"),
            _c("accepted_at", "TIMESTAMP", True),
            _c("size_bytes", "BIGINT"),
            _c("licence", "VARCHAR"),
            _c("rows_raw", "BIGINT", True),
            _c("rows_normalised", "BIGINT", True),
            _c("rows_dropped", "BIGINT", True),
            _c("rows_repaired", "BIGINT", True),
            _c("check_status", "VARCHAR"),
            _c("checks_failed", "INTEGER"),
            _c("is_current", "BOOLEAN"),
            _c("cadence", "VARCHAR"),
            _c("cadence_days", "INTEGER"),
        ),
        ("source_inventory",),
        ("source", "version"),
        "Every (source, version) ever seen; version = SHA-256 of the raw bytes; is_current = accepted version in use.",
    )
    factor_stats = Table(
        "factor_stats",
        (
            _c("commune", "VARCHAR"),
            _c("factor", "VARCHAR"),
            _c("label", "VARCHAR"),
            _c("weight", "DOUBLE"),
            _c("blocking", "BOOLEAN"),
            _c("meta", "VARCHAR", True),
            _c("covered_cells", "BIGINT"),
            _c("covered_area_m2", "DOUBLE"),
            _c("weighted_contribution", "DOUBLE"),
            _c("run_id", "VARCHAR"),
        ),
        ("plantability_score",),
        ("commune", "factor"),
        "Per commune and factor: coverage and weighted contribution to the score.",
    )
    score_runs = Table(
        "score_runs",
        (
            _c("run_id", "VARCHAR"),
            _c("commune", "VARCHAR"),
            _c("materialised_at", "TIMESTAMP"),
            _c("code_version", "VARCHAR"),
            _c("catalogue_version", "VARCHAR"),
            _c("catalogue_sha256", "VARCHAR"),
            _c("territory", "VARCHAR"),
            _c("cells", "BIGINT"),
            _c("package_version", "VARCHAR", True),
            _c("git_commit", "VARCHAR", True),
            _c("blocked_score", "DOUBLE", True),
            _c("class_breaks", "VARCHAR", True),
            _c("grid", "VARCHAR", True),
            _c("mean_score", "DOUBLE", True),
            _c("oldest_input", "VARCHAR", True),
            _c("oldest_input_changed_at", "TIMESTAMP", True),
            _c("record_sha256", "VARCHAR", True),
            _c("provenance", "VARCHAR", True),
        ),
        ("plantability_score",),
        ("run_id", "commune"),
        "One row per score materialisation of a commune: code and catalogue versions, thresholds, grid, the "
        "oldest input it read, and its W3C PROV record (PROV-JSON).",
    )
    score_run_weights = Table(
        "score_run_weights",
        (
            _c("run_id", "VARCHAR"),
            _c("commune", "VARCHAR"),
            _c("factor", "VARCHAR"),
            _c("weight", "DOUBLE"),
            _c("blocking", "BOOLEAN"),
            _c("meta", "VARCHAR", True),
        ),
        ("plantability_score",),
        ("run_id", "commune", "factor"),
        "The weight and blocking flag of every factor a score materialisation of a commune used.",
    )
    score_diff = Table(
        "score_diff",
        (
            _c("commune", "VARCHAR"),
            _c("from_run", "VARCHAR", True),
            _c("to_run", "VARCHAR"),
            _c("from_class", "UTINYINT", True),
            _c("to_class", "UTINYINT", True),
            _c("cells", "BIGINT"),
        ),
        ("plantability_class",),
        ("commune", "from_class", "to_class"),
        "Per commune, the class transitions between its previous and its latest classes (NULL class: the cell "
        "was or became unscored; from_run NULL: first materialisation).",
    )
    source_freshness = Table(
        "source_freshness",
        (
            _c("source", "VARCHAR"),
            _c("partner", "VARCHAR"),
            _c("current_version", "VARCHAR", True),
            _c("content_changed_at", "TIMESTAMP", True),
            _c("last_fetch_at", "TIMESTAMP", True),
            _c("cadence", "VARCHAR"),
            _c("cadence_days", "INTEGER"),
            _c("age_days", "INTEGER", True),
            _c("status", "VARCHAR"),
            _c("last_rejected_version", "VARCHAR", True),
            _c("last_rejected_at", "TIMESTAMP", True),
            _c("last_rejected_reason", "VARCHAR", True),
            _c("as_of", "TIMESTAMP"),
        ),
        ("source_inventory",),
        ("source",),
        "One row per source: the freshness every view reports (provenance/freshness.py), as of `as_of`.",
    )
    score_run_inputs = Table(
        "score_run_inputs",
        (
            _c("run_id", "VARCHAR"),
            _c("commune", "VARCHAR"),
            _c("source", "VARCHAR"),
            _c("version", "VARCHAR"),
            _c("normalised_sha256", "VARCHAR", True),
            _c("partner", "VARCHAR"),
            _c("origin", "VARCHAR"),
        ),
        ("plantability_score",),
        ("run_id", "commune", "source"),
        "The source versions (raw SHA-256) a score materialisation of a commune read.",
    )
    return {t.name: t for t in (tiles, communes, iris, source_versions, source_freshness, factor_stats, score_runs,
                                score_run_inputs, score_run_weights, score_diff)}


@dataclass(frozen=True)
class Contract:
    """The warehouse tables for one catalogue."""

    tables: dict

    def table(self, name: str) -> Table:
        bare = name.split(".", 1)[1] if name.startswith(f"{SCHEMA}.") else name
        try:
            return self.tables[bare]
        except KeyError:
            raise KeyError(f"{name!r} is not a warehouse contract table; known: {sorted(self.tables)}") from None


def contract(catalogue) -> Contract:
    """The contract for `catalogue`: table name -> Table (columns, writer asset key, natural key)."""
    return Contract(_tables(catalogue))


def contract_asset_keys() -> dict[str, tuple[str, ...]]:
    """Table name -> the Dagster asset key of the Python asset that writes it (the same for any catalogue)."""
    from iarbre_assets.catalog import load_catalog

    return {name: t.asset_key for name, t in _tables(load_catalog()).items()}


class SchemaMismatchError(RuntimeError):
    """An existing warehouse table disagrees with the contract in a way we will not fix silently."""


def ensure_schema(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create schema `iarbre` and every contract table if missing (idempotent).

    A column the contract gained since the table was created (e.g. a new meta-factor) is added as
    nullable; a column whose type changed raises SchemaMismatchError naming it. Needs spatial loaded
    (GEOMETRY columns): use `warehouse.duck.connect()`.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for t in contract.tables.values():
        con.execute(t.ddl())
        existing = {
            name: dtype
            for name, dtype in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [SCHEMA, t.name],
            ).fetchall()
        }
        problems = []
        for col in t.columns:
            if col.name not in existing:
                con.execute(f'ALTER TABLE {t.qualified} ADD COLUMN "{col.name}" {col.type}')
            elif not _same_type(existing[col.name], col.type):
                problems.append(f"{col.name}: is {existing[col.name]}, the contract says {col.type}")
        if problems:
            raise SchemaMismatchError(
                f"{t.qualified} in the warehouse does not match the contract "
                f"(iarbre_assets/warehouse/schema.py): {'; '.join(problems)}. "
                f"Drop the table (it is rebuilt by asset {list(t.asset_key)}) or migrate it."
            )


def _same_type(actual: str, wanted: str) -> bool:
    aliases = {"REAL": "FLOAT", "FLOAT4": "FLOAT", "INT": "INTEGER", "INT4": "INTEGER", "INT8": "BIGINT"}
    a, w = actual.upper(), wanted.upper()
    if w == "GEOMETRY":
        return a.startswith("GEOMETRY")
    return aliases.get(a, a) == aliases.get(w, w)


# -- writing -----------------------------------------------------------------------------------

def _prepare_incoming(data: Any):
    """Return something DuckDB can scan: a GeoDataFrame's geometry becomes WKB (after a CRS check)."""
    try:
        import geopandas as gpd
    except ImportError:  # pragma: no cover - geopandas is a pinned dependency
        gpd = None
    if gpd is not None and isinstance(data, gpd.GeoDataFrame):
        crs = data.crs
        if crs is None or f"EPSG:{crs.to_epsg()}" != PLATFORM_CRS:
            raise ValueError(f"geometries must be in {PLATFORM_CRS} for the warehouse, got {crs}")
        geom_name = data.geometry.name
        frame = data.to_wkb()
        return frame.rename(columns={geom_name: "geom"}) if geom_name != "geom" else frame
    return data


def select_list(con, t: Table, incoming: str) -> str:
    incoming_cols = {
        name: dtype for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall()
    }
    unknown = sorted(set(incoming_cols) - set(t.column_names))
    if unknown:
        raise ValueError(f"{t.qualified}: columns {unknown} are not in the contract; expected {t.column_names}")
    missing = [c.name for c in t.columns if c.name not in incoming_cols and not c.nullable]
    if missing:
        raise ValueError(f"{t.qualified}: required columns {missing} are missing from the data")
    exprs = []
    for col in t.columns:
        if col.name not in incoming_cols:
            exprs.append(f'CAST(NULL AS {col.type}) AS "{col.name}"')
        elif col.type == "GEOMETRY" and incoming_cols[col.name].upper() == "BLOB":
            exprs.append(f'ST_GeomFromWKB("{col.name}") AS "{col.name}"')
        else:
            exprs.append(f'CAST("{col.name}" AS {col.type}) AS "{col.name}"')
    return ", ".join(exprs)


def _insert(con, t: Table, incoming: str) -> int:
    select = select_list(con, t, incoming)
    cols = ", ".join(f'"{c}"' for c in t.column_names)
    try:
        con.execute(f"INSERT INTO {t.qualified} ({cols}) SELECT {select} FROM {incoming}")
    except duckdb.Error as exc:
        raise type(exc)(f"{t.qualified}: insert failed: {exc}") from exc
    return con.execute(f"SELECT count(*) FROM {incoming}").fetchone()[0]


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """BEGIN ... COMMIT, or ROLLBACK on any error: the one transaction helper of the warehouse."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _in_transaction(con, fn):
    with transaction(con):
        return fn()


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    t: Table,
    data: Any,
    key_column: str,
    keys: Iterable[str],
) -> int:
    """Delete the rows whose `key_column` is in `keys`, insert `data`, in one transaction.

    `data`: pandas DataFrame, GeoDataFrame (EPSG:2154; geometry -> `geom`), or pyarrow Table, with the
    contract's columns (nullable ones may be omitted). Every row's key must be in `keys`, otherwise a
    later replace would leave duplicates. Returns the number of rows inserted.
    """
    t.column(key_column)
    keys = sorted({str(k) for k in keys})
    incoming = _prepare_incoming(data)
    view = f"_incoming_{t.name}"
    con.register(view, incoming)
    try:
        if keys:
            stray = con.execute(
                f'SELECT DISTINCT CAST("{key_column}" AS VARCHAR) FROM {view} '
                f'WHERE "{key_column}" IS NULL OR CAST("{key_column}" AS VARCHAR) NOT IN (SELECT unnest(?))',
                [keys],
            ).fetchall()
        else:
            stray = con.execute(f'SELECT DISTINCT CAST("{key_column}" AS VARCHAR) FROM {view}').fetchall()
        if stray:
            raise ValueError(
                f"{t.qualified}: rows with {key_column} {[s[0] for s in stray][:10]} are outside the "
                f"replaced keys {keys[:10]}"
            )

        def work():
            if keys:
                con.execute(
                    f'DELETE FROM {t.qualified} WHERE CAST("{key_column}" AS VARCHAR) IN (SELECT unnest(?))',
                    [keys],
                )
            return _insert(con, t, view)

        return _in_transaction(con, work)
    finally:
        con.unregister(view)


@contextmanager
def _incoming(con: duckdb.DuckDBPyConnection, t, data: Any):
    """`data`, prepared for table `t`, registered as a view for the duration; yields the view's name."""
    view = f"_incoming_{t.name}"
    con.register(view, _prepare_incoming(data))
    try:
        yield view
    finally:
        con.unregister(view)


def replace_table(con: duckdb.DuckDBPyConnection, t: Table, data: Any) -> int:
    """Replace the whole content of a contract table with `data` (one transaction)."""
    with _incoming(con, t, data) as view:
        def work():
            con.execute(f"DELETE FROM {t.qualified}")
            return _insert(con, t, view)

        return _in_transaction(con, work)


def upsert_rows(
    con: duckdb.DuckDBPyConnection, t: Table, data: Any, key_columns: Sequence[str] | None = None
) -> int:
    """Insert `data`, first deleting rows with the same natural key (default: the table's key, e.g.
    (source, version) for source_versions, (run_id, commune) for score_runs). One transaction."""
    key_columns = list(key_columns or t.key)
    for name in key_columns:
        t.column(name)
    match = " AND ".join(f'{t.qualified}."{k}" = i."{k}"' for k in key_columns)
    with _incoming(con, t, data) as view:
        def work():
            con.execute(f"DELETE FROM {t.qualified} WHERE EXISTS (SELECT 1 FROM {view} i WHERE {match})")
            return _insert(con, t, view)

        return _in_transaction(con, work)


def set_current_version(con: duckdb.DuckDBPyConnection, source: str, version: str) -> None:
    """Mark `version` as the one accepted version in use for `source` (and no other)."""
    found = con.execute(
        f"SELECT count(*) FROM {SCHEMA}.source_versions WHERE source = ? AND version = ?", [source, version]
    ).fetchone()[0]
    if not found:
        raise KeyError(f"{SCHEMA}.source_versions has no row for source {source!r} version {version!r}")
    con.execute(
        f"UPDATE {SCHEMA}.source_versions SET is_current = (version = ?) WHERE source = ?", [version, source]
    )
