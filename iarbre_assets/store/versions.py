"""Normalised source versions: staged, then accepted or rejected. Only an accepted version is ever read.

    sources/<source>/<version>/data.parquet   normalised GeoParquet 1.1 (bbox covering), EPSG:2154
    sources/<source>/<version>/record.json    what produced it: raw hash, normalisation report, checks, status
    sources/<source>/current.json             the accepted version in use (replaced atomically)
    sources/<source>/history.jsonl            every candidate, accepted or rejected, with the reason

A rejected candidate never touches current.json, so downstream keeps reading the last good version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import atomic_write_text
from .raw import utc_now

# Bump when normalisation changes what it produces from the same raw bytes.
# n2: text in NFC, NaN/Inf ordinates dropped, parser-closed rings counted; n3: undeclared text columns too
NORMALISER_VERSION = "n3"


@dataclass
class SourceVersion:
    source: str
    version: str
    raw_sha256: str
    normalised_sha256: str | None
    status: str  # "accepted" | "rejected"
    created_at: str
    accepted_at: str | None = None
    origin: str = ""
    partner: str = ""
    rows: int | None = None
    report: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    window_hashes: dict = field(default_factory=dict)
    reason: str = ""

    def data_path(self, store) -> Path:
        """The normalised GeoParquet of this version in `store` (a Store)."""
        return store.versions(self.source).data_path(self.version)


def version_id(raw_sha256: str) -> str:
    return f"{raw_sha256[:16]}-{NORMALISER_VERSION}"


class SourceVersions:
    def __init__(self, root: Path, source: str):
        self.source = source
        self.root = Path(root)

    def data_path(self, version: str) -> Path:
        return self.root / version / "data.parquet"

    def stage_dir(self, version: str) -> Path:
        path = self.root / version
        path.mkdir(parents=True, exist_ok=True)
        return path

    def current(self) -> SourceVersion | None:
        pointer = self.root / "current.json"
        if not pointer.exists():
            return None
        return SourceVersion(**json.loads(pointer.read_text(encoding="utf-8")))

    def require_current(self) -> SourceVersion:
        current = self.current()
        if current is None:
            raise FileNotFoundError(
                f"{self.source}: no accepted version yet; materialise source/{self.source} first"
            )
        return current

    def accept(self, record: SourceVersion) -> None:
        record.status = "accepted"
        record.accepted_at = record.accepted_at or utc_now()
        body = json.dumps(asdict(record), indent=1, ensure_ascii=False, default=str)
        atomic_write_text(self.root / record.version / "record.json", body)
        atomic_write_text(self.root / "current.json", body)
        self._history(record)

    def reject(self, record: SourceVersion) -> None:
        record.status = "rejected"
        body = json.dumps(asdict(record), indent=1, ensure_ascii=False, default=str)
        atomic_write_text(self.root / record.version / "record.json", body)
        self._history(record)

    def _history(self, record: SourceVersion) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {k: v for k, v in asdict(record).items() if k not in {"window_hashes", "report", "quality"}}
        entry["quality_summary"] = {k: record.quality.get(k) for k in ("passed", "blocking_failures", "warnings")}
        with (self.root / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def history(self) -> list[dict]:
        path = self.root / "history.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def accepted_row_count(self) -> int | None:
        current = self.current()
        return current.rows if current else None
