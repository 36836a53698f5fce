"""The platform for one territory: catalogue, territory, storage, communes and their grid windows.

Pure (no Dagster, no environment): `Platform.load(home, territory, data_dir=None, catalog=None)` is what
the territory resource (resources.py), the CLI's read-only commands and the tests build.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import geopandas as gpd

from .catalog import DEFAULT_CATALOG, Catalogue, FactorDef, SourceDef, Territory, expand_url, load_catalog, load_territory
from .catalog.models import FileLocation
from .store import Store
from .store.files import file_sha256

DEFAULT_TERRITORY = "demo"


class PlatformError(RuntimeError):
    pass


@dataclass
class Platform:
    catalogue: Catalogue
    territory: Territory
    store: Store
    data_dir: Path
    catalogue_path: Path = DEFAULT_CATALOG
    url_secrets: dict = field(default_factory=dict, repr=False)
    _server_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, home: str | Path, territory: str | Path = DEFAULT_TERRITORY, data_dir: str | Path | None = None,
             catalog: str | Path | None = None, url_secrets: dict | None = None) -> "Platform":
        """The platform of `territory` (a shipped name or a YAML file) writing under `home`.

        `url_secrets`: values for ${NAME} in the territory's URLs (API keys); the caller reads them.
        """
        catalogue_path = Path(catalog).resolve() if catalog else DEFAULT_CATALOG
        catalogue = load_catalog(catalogue_path)
        loaded = load_territory(territory, catalogue)
        store = Store(Path(home))
        return cls(catalogue, loaded, store, loaded.data_dir_path(store.home, data_dir), catalogue_path,
                   dict(url_secrets or {}))

    @cached_property
    def catalogue_sha256(self) -> str:
        return _file_sha256(str(self.catalogue_path), self.catalogue_path.stat().st_mtime_ns)

    @property
    def crs(self) -> str:
        return self.territory.grid.crs

    # -- sources and factors -----------------------------------------------------------------------
    @cached_property
    def sources(self) -> dict[str, SourceDef]:
        return self.territory.source_defs(self.catalogue)

    @cached_property
    def factors(self) -> list[FactorDef]:
        """Every factor of the territory, display-only ones included."""
        return self.territory.selected_factors(self.catalogue)

    @cached_property
    def scored_factors(self) -> list[FactorDef]:
        return [f for f in self.factors if not f.display_only]

    @cached_property
    def sources_by_partner(self) -> dict[str, list[SourceDef]]:
        out: dict[str, list[SourceDef]] = {}
        for source in self.sources.values():
            out.setdefault(source.partner, []).append(source)
        return out

    def factors_of_source(self, source: str) -> list[FactorDef]:
        return [f for f in self.factors if source in f.sources]

    def source_halo_m(self, source: str) -> float:
        """How far a feature of this source can reach into a neighbouring window."""
        reach = [f.halo_m + (f.simplify_m or 0.0) for f in self.factors_of_source(source)]
        return max(reach, default=0.0) + self.territory.grid.cell_size_m

    @property
    def factor_sources(self) -> list[str]:
        return [slug for slug in self.sources if self.factors_of_source(slug)]

    # -- communes and grid -------------------------------------------------------------------------
    @cached_property
    def communes(self) -> gpd.GeoDataFrame:
        """The communes layer as declared by the territory: code, name, geometry (EPSG:2154), sorted by code."""
        from .connectors import fetch_payload, parse_payload

        spec = self.territory.communes
        if not isinstance(spec.location, FileLocation):
            raise PlatformError(
                f"{self.territory.file}: communes.location must be a local file so that commune partitions "
                "are known when the definitions load"
            )
        source = self.sources["communes"]
        path = self.resolve_path(spec.location.path)
        if not path.exists():
            raise PlatformError(
                f"territory {self.territory.name!r}: communes layer {path} does not exist "
                f"(data directory {self.data_dir}); generate the demo with `iarbre-demo` or pass --data-dir"
            )
        payload = fetch_payload(source, data_dir=self.data_dir, url=None)
        gdf = parse_payload(source, payload.data, payload.ext, limits=self.territory.limits).to_crs(self.crs)
        missing = [c for c in (spec.code_field, spec.name_field) if c not in gdf.columns]
        if missing:
            raise PlatformError(f"{path}: communes layer has no field(s) {missing}; it has {list(gdf.columns)}")
        out = gpd.GeoDataFrame(
            {"code": gdf[spec.code_field].astype(str), "name": gdf[spec.name_field].astype(str)},
            geometry=gdf.geometry.values,
            crs=gdf.crs,
        )
        if out["code"].duplicated().any():
            dupes = sorted(out.loc[out["code"].duplicated(), "code"].unique())
            raise PlatformError(f"{path}: duplicate commune codes {dupes}")
        return out.sort_values("code").reset_index(drop=True)

    @cached_property
    def commune_codes(self) -> list[str]:
        return list(self.communes["code"])

    @cached_property
    def windows(self) -> dict:
        """Commune code -> grid Window covering the commune, on the territory's absolute 5 m lattice."""
        from .geo.grid import window_for_bounds

        cell = self.territory.grid.cell_size_m
        return {
            row.code: window_for_bounds(row.geometry.bounds, cell=cell)
            for row in self.communes.itertuples(index=False)
        }

    @cached_property
    def territory_window(self):
        from .geo.grid import window_for_bounds

        return window_for_bounds(tuple(self.communes.total_bounds), cell=self.territory.grid.cell_size_m)

    # -- paths and endpoints -----------------------------------------------------------------------
    def resolve_path(self, path: str) -> Path:
        candidate = Path(os.path.expandvars(path))
        return candidate if candidate.is_absolute() else self.data_dir / candidate

    _server = None
    _server_root = None

    def url_variables(self) -> dict[str, str]:
        """Values for ${...} in URLs; starts the territory's local wire server (a plugin) on first use, unless
        the configuration names one already running (LOCAL_SERVER, e.g. a stand-in for the partners in its
        own process)."""
        if self.territory.local_server is None or "LOCAL_SERVER" in self.url_secrets:
            return dict(self.url_secrets)
        with self._server_lock:
            if Platform._server is None or Platform._server_root != self._wire_root:
                if Platform._server is not None:
                    Platform._server.stop()
                server = _start_local_server(_server_class(self.territory.local_server.kind), self._wire_root)
                Platform._server, Platform._server_root = server, self._wire_root
                atexit.register(server.stop)
        return {**self.url_secrets, "LOCAL_SERVER": Platform._server.url}

    @property
    def _wire_root(self) -> Path:
        return self.resolve_path(self.territory.local_server.root)

    def source_url(self, source: SourceDef) -> str | None:
        url = getattr(source.location, "url", None)
        return expand_url(url, self.url_variables()) if url else None


def _server_class(kind: str):
    """The local wire server registered under `kind` (entry point group `iarbre.local_servers`)."""
    from importlib.metadata import entry_points

    found = entry_points(group="iarbre.local_servers", name=kind)
    if not found:
        raise PlatformError(f"no local data server {kind!r} is installed (entry point group iarbre.local_servers); "
                            "the demo's is in the iarbre_demo package, installed by `python3 tasks.py demo`")
    return next(iter(found)).load()


@lru_cache(maxsize=8)
def _file_sha256(path: str, _mtime_ns: int) -> str:
    return file_sha256(Path(path))


def local_server_port(root: Path | str) -> int:
    """The port a local wire server for `root` prefers: derived from its path, so paged `next` links (kept
    byte for byte in the raw store) are the same from one run to the next."""
    import hashlib

    return 20000 + int(hashlib.sha256(str(root).encode()).hexdigest(), 16) % 20000


def _start_local_server(server_class, root: Path):
    """Serve `root` on its preferred port (local_server_port); any free port if that one is taken."""
    for port in (local_server_port(root), 0):
        server = server_class(root, port=port)
        try:
            server.start()
            return server
        except OSError:
            continue
    raise PlatformError(f"cannot start the local data server for {root}")
