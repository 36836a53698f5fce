"""dbt-duckdb plugin: LOAD the spatial extension from its wheel on every dbt connection (no network).

Named in dbt_project/profiles.yml (`plugins: - module: iarbre_assets.warehouse.dbt_plugin`); dbt imports
it in its own process, so the iarbre package must be installed in dbt's environment (`pip install -e .`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from iarbre_assets.warehouse.duck import CONNECT_CONFIG, load_spatial


class Plugin(BasePlugin):
    def update_connection_config(self, creds: Any, config: dict[str, Any]) -> None:
        for key, value in CONNECT_CONFIG.items():
            config.setdefault(key, value)
        path = getattr(creds, "path", None)
        if path and path != ":memory:" and "://" not in str(path):
            # duckdb creates the file but not its directory (fresh IARBRE_HOME)
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def configure_connection(self, conn) -> None:
        load_spatial(conn)
