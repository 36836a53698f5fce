"""DuckDB connections to a home's warehouse with the spatial extension loaded from its wheel.

`INSTALL spatial` would download from extensions.duckdb.org; the `duckdb-extension-spatial` wheel ships
the signed binary for exactly our duckdb version, so we `LOAD` that file on every new connection.

DuckDB files are single-writer across processes (one read-write process, or any number of read-only
ones). `connect` waits for a conflicting lock with exponential back-off (50 ms doubling to 2 s between
attempts) for up to `lock_timeout` seconds (default 120 s: longer than a dbt build of the demo, shorter
than a Lyon tile write is ever expected to hold it), then fails naming the holder.
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path

import duckdb

DEFAULT_LOCK_TIMEOUT_S = 120.0
_FIRST_WAIT_S = 0.05
_MAX_WAIT_S = 2.0
# Never reach for the network or ~/.duckdb behind our back.
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
# DuckDB's default buffer pool is 80 % of RAM: loading the 21 M tiles rows of the full metropole held 3 GB
# in the run process. Capped, DuckDB spills to its temp directory and loads at the same speed
# (benchmarks/full_scale.py --end-to-end; docs/decisions.md D40).
DEFAULT_MEMORY_LIMIT = "1GB"


class WarehouseLockedError(RuntimeError):
    """Another process held the warehouse file for longer than the lock timeout."""


class WarehouseMissingError(FileNotFoundError):
    """A read-only connection was asked for a warehouse that does not exist yet."""


def spatial_extension_path() -> Path:
    """The spatial extension binary shipped by the `duckdb-extension-spatial` wheel for this duckdb."""
    try:
        root = Path(str(importlib.resources.files("duckdb_extension_spatial")))
    except ModuleNotFoundError:
        raise RuntimeError(
            "the DuckDB spatial extension is not installed: pip install "
            f"duckdb-extension-spatial=={duckdb.__version__} (it must equal the duckdb version)"
        ) from None
    path = root / "extensions" / f"v{duckdb.__version__}" / "spatial.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in (root / "extensions").glob("v*"))
        raise RuntimeError(
            f"{path}: no spatial extension for duckdb {duckdb.__version__}; the installed "
            f"duckdb-extension-spatial wheel ships {shipped}. Install the wheel matching duckdb exactly."
        )
    return path


def load_spatial(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD spatial from the wheel (a no-op if this database instance already has it)."""
    con.execute(f"LOAD '{spatial_extension_path()}'")


def _is_lock_conflict(exc: Exception) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def connect(
    path: str | Path,
    read_only: bool = False,
    *,
    spatial: bool = True,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file `path` with spatial loaded.

    Read-write connections create the file (and its directory); read-only ones require it to exist.
    Waits up to `lock_timeout` seconds while another process holds the file, then raises WarehouseLockedError.
    `memory_limit` caps DuckDB's buffer pool (it spills beyond it).
    """
    path = Path(path).resolve()
    if read_only and not path.exists():
        raise WarehouseMissingError(f"{path}: the warehouse does not exist yet (run `iarbre run` first)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    timeout = lock_timeout
    deadline = time.monotonic() + timeout
    wait = _FIRST_WAIT_S
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={**CONNECT_CONFIG, "memory_limit": memory_limit})
            break
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WarehouseLockedError(
                    f"{path}: still locked by another process after {timeout:g} s "
                    f"(DuckDB allows one writer at a time). DuckDB said: {exc}"
                ) from exc
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, _MAX_WAIT_S)
    if spatial:
        try:
            load_spatial(con)
        except BaseException:
            con.close()
            raise
    return con
