"""The storage contract: where every artefact of a home lives, and the only code that writes them.

One `Store` per data directory (IARBRE_HOME). Callers ask for an artefact by name, never build a path:

    store.raw                          content-addressed partner deliveries (store/raw.py)
    store.versions(source)             normalised versions, accepted or rejected (store/versions.py)
    store.inbox(partner)               where a partner drops files
    store.footprint(factor, commune)   footprint polygons (GeoParquet) and .footprint_record(...)
    store.coverage(factor, commune)    5 m percent coverage (GeoTIFF)   and .coverage_record(...)
    store.score(commune)               score (GeoTIFF), .classes(commune), .score_record(commune)
    store.tiles(commune)               one row per cell (GeoParquet)
    store.history                      every score run's outputs, by run id or label (store/history.py)
    store.export(Export.SCORE_COG)     territory-wide exports
    store.warehouse                    DuckDB warehouse;  store.dagster_home  Dagster's instance

Layout on disk (DESIGN.md §3):

    raw/<source>/<sha256>.<ext>              sources/<source>/<version>/data.parquet
    inbox/<partner>/                          constraints/<factor>/<commune>.{tif,json,footprint.parquet,footprint.json}
    score/<commune>.{tif,class.tif,json}      score/history/<run_id>/<commune>/...
    tiles/<commune>.parquet                   exports/, warehouse.duckdb, dagster/, dbt/

No Dagster here: the store is handed to pool workers (it pickles as its home path).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .files import atomic_path, atomic_write_bytes, atomic_write_text, read_json, write_json

__all__ = ["Export", "Store", "atomic_path", "atomic_write_bytes", "atomic_write_text", "read_json", "write_json"]


class Export(enum.Enum):
    """Territory-wide exports, by name. The value is the file's place under the home."""

    SCORE_COG = "score/plantability_score.tif"
    CLASS_COG = "score/plantability_class.tif"
    CLASS_GPKG = "exports/plantability_classes.gpkg"
    TILES_PARQUET = "exports/tiles.parquet"
    CLASS_PREVIEW = "exports/plantability_class_preview.png"

    @property
    def label(self) -> str:
        return {"SCORE_COG": "score (COG)", "CLASS_COG": "classes (COG)",
                "CLASS_GPKG": "class polygons (GeoPackage)", "TILES_PARQUET": "tiles (GeoParquet)",
                "CLASS_PREVIEW": "preview (PNG)"}[self.name]


@dataclass(frozen=True)
class Store:
    home: Path

    def __post_init__(self):
        object.__setattr__(self, "home", Path(self.home).resolve())

    # -- partner deliveries and source versions ----------------------------------------------------
    @cached_property
    def raw(self):
        from .raw import RawStore

        return RawStore(self.home / "raw")

    def versions(self, source: str):
        from .versions import SourceVersions

        return SourceVersions(self.home / "sources" / source, source)

    @property
    def inbox_root(self) -> Path:
        return self.home / "inbox"

    def inbox(self, partner: str) -> Path:
        return self.inbox_root / partner

    @cached_property
    def drops(self):
        """The inbox: scanning, matching drops to sources, and the ledger of what became of each (store/inbox.py)."""
        from .inbox import Inbox

        return Inbox(self.inbox_root, self.inbox_ledger)

    @property
    def inbox_ledger(self) -> Path:
        """Every file seen in the inbox and what became of it (store/inbox.py)."""
        return self.home / "inbox" / ".ledger.jsonl"

    @property
    def poll_state(self) -> Path:
        """The last probe of each remote source (validators to compare next time)."""
        return self.home / "raw" / "polls.json"

    # -- constraints ---------------------------------------------------------------------------------
    def factor_dir(self, factor: str) -> Path:
        return self.home / "constraints" / factor

    def footprint(self, factor: str, commune: str) -> Path:
        return self.factor_dir(factor) / f"{commune}.footprint.parquet"

    def footprint_record(self, factor: str, commune: str) -> Path:
        return self.factor_dir(factor) / f"{commune}.footprint.json"

    def coverage(self, factor: str, commune: str) -> Path:
        return self.factor_dir(factor) / f"{commune}.tif"

    def coverage_record(self, factor: str, commune: str) -> Path:
        return self.factor_dir(factor) / f"{commune}.json"

    # -- score, classes, tiles -----------------------------------------------------------------------
    @property
    def score_dir(self) -> Path:
        return self.home / "score"

    def score(self, commune: str) -> Path:
        return self.score_dir / f"{commune}.tif"

    def classes(self, commune: str) -> Path:
        return self.score_dir / f"{commune}.class.tif"

    def score_record(self, commune: str) -> Path:
        return self.score_dir / f"{commune}.json"

    def tiles(self, commune: str) -> Path:
        return self.home / "tiles" / f"{commune}.parquet"

    def class_polygons(self, commune: str) -> Path:
        """A commune's class polygons (GeoParquet), kept so the GeoPackage is rebuilt without re-polygonising."""
        return self.home / "exports" / "parts" / f"{commune}.classes.parquet"

    @property
    def commune_windows(self) -> Path:
        """Every commune of the territory and its grid window (explain tells outside from never computed)."""
        return self.score_dir / "communes.json"

    @property
    def class_distribution_state(self) -> Path:
        """Class shares of each commune at its last materialisation (the drift check compares with it)."""
        return self.score_dir / "class_distribution.json"

    @cached_property
    def history(self):
        from .history import ScoreHistory

        return ScoreHistory(self.score_dir / "history")

    # -- exports and the rest --------------------------------------------------------------------------
    def export(self, name: Export) -> Path:
        return self.home / name.value

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def dbt_dir(self) -> Path:
        """Per-home dbt profile and run folders (dbt_project/ itself stays read-only)."""
        return self.home / "dbt"

    @property
    def home_config(self) -> Path:
        """What this home was run with (territory, data directory, catalogue): read-only commands need no more."""
        return self.home / "iarbre.json"

    def progress(self, run_id: str) -> Path:
        return self.home / "progress" / f"{run_id}.jsonl"
