"""Dagster resources: the territory (catalogue, territory file, storage) and the warehouse.

Both are built once, from configuration (`TerritoryResource.from_env()` in definitions.py, or explicit
fields in tests), and handed to every asset, check and sensor. Package code never reads its configuration
from the environment after that, and never writes the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from .compute import pool
from .platform import DEFAULT_TERRITORY, Platform
from .warehouse.duck import DEFAULT_MEMORY_LIMIT


class TerritoryResource(dg.ConfigurableResource):
    """The territory a code location serves and the home it writes to.

    home:       the data directory (every artefact; the store owns its layout)
    territory:  a shipped territory name or a territory YAML file
    data_dir:   where the territory's partner files are (default: the territory's own rule)
    catalog:    a factor catalogue file (default: the shipped one)
    workers:    per-commune worker processes (0 = one per CPU, 1 = inline)
    url_secrets: values for ${NAME} in the territory's URLs (API keys)
    as_of:      evaluate freshness as of this ISO time instead of now (an injected clock, for tests and audits)
    """

    home: str
    territory: str = DEFAULT_TERRITORY
    data_dir: Optional[str] = None
    catalog: Optional[str] = None
    workers: int = 0
    url_secrets: dict[str, str] = {}
    as_of: Optional[str] = None
    _platform: Optional[Platform] = PrivateAttr(default=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "TerritoryResource":
        """The configuration `dagster dev` and `iarbre` hand over: IARBRE_HOME, IARBRE_TERRITORY,
        IARBRE_DATA_DIR, IARBRE_CATALOG, IARBRE_WORKERS, any variable a territory URL names and LOCAL_SERVER
        (read only)."""
        home = environ.get("IARBRE_HOME") or str(Path.cwd() / ".iarbre")
        resource = cls(home=str(Path(home).resolve()), territory=environ.get("IARBRE_TERRITORY", DEFAULT_TERRITORY),
                       data_dir=environ.get("IARBRE_DATA_DIR") or None, catalog=environ.get("IARBRE_CATALOG") or None,
                       workers=int(environ.get("IARBRE_WORKERS") or 0))
        # LOCAL_SERVER: a local wire server already running (environment() hands it to child processes)
        names = [*resource.platform.territory.url_variable_names(), "LOCAL_SERVER"]
        secrets = {name: environ[name] for name in names if name in environ}
        return resource.model_copy(update={"url_secrets": secrets}) if secrets else resource

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            pool.configure(self.workers)
            self._platform = Platform.load(self.home, self.territory, self.data_dir, self.catalog, self.url_secrets)
        return self._platform

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        pool.configure(self.workers)

    @property
    def store(self):
        return self.platform.store

    def progress(self, run_id: str):
        """Where this run reports its progress (see progress.py)."""
        from .progress import ProgressLog

        return ProgressLog(self.store.progress(run_id))

    def environment(self) -> dict[str, str]:
        """The variables `from_env` rebuilds this resource from: what a child process serving the same code
        location (dagster dev, a Celery worker) is given."""
        env = {"IARBRE_HOME": self.home, "IARBRE_TERRITORY": self.territory,
               "DAGSTER_HOME": str(self.store.dagster_home), **self.url_secrets}
        for key, value in (("IARBRE_DATA_DIR", self.data_dir), ("IARBRE_CATALOG", self.catalog),
                           ("IARBRE_WORKERS", str(self.workers) if self.workers else None)):
            if value:
                env[key] = value
        return env

    def remember(self) -> None:
        """Write what this home runs with into the home (iarbre.json), for the read-only commands."""
        import json

        from .store import atomic_write_text

        self.store.home.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.store.home_config, json.dumps(self.describe(), indent=1))

    def describe(self) -> dict:
        """What this home runs with; remembered in the home so read-only commands need only `--home`."""
        platform = self.platform
        return {"home": str(platform.store.home), "territory": str(platform.territory.file),
                "territory_name": platform.territory.name, "data_dir": str(platform.data_dir),
                "catalog": str(platform.catalogue_path)}


class WarehouseResource(DuckDBResource):
    """dagster-duckdb's resource on the home's warehouse, with the spatial extension loaded from its wheel,
    read-only connections, and a bounded wait while another process holds DuckDB's single-writer lock."""

    lock_timeout_s: float = 120.0
    # DuckDB's buffer pool, in this process and in dbt's (see warehouse.duck.DEFAULT_MEMORY_LIMIT)
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    @classmethod
    def for_home(cls, home: str | Path) -> "WarehouseResource":
        from .store import Store

        return cls(database=str(Store(Path(home)).warehouse))

    @contextmanager
    def get_connection(self, read_only: bool = False, spatial: bool = True):
        from .warehouse.duck import connect

        con = connect(self.database, read_only=read_only, spatial=spatial, lock_timeout=self.lock_timeout_s,
                      memory_limit=self.memory_limit)
        try:
            yield con
        finally:
            con.close()


def build_resources(territory: TerritoryResource) -> dict:
    """The resources of a code location for one territory resource."""
    from .warehouse.dbt import dbt_resource

    return {"territory": territory, "warehouse": WarehouseResource.for_home(territory.home), "dbt": dbt_resource()}
