"""The data directory layout (DESIGN.md §3). Everything the platform writes lives under IARBRE_HOME."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def iarbre_home() -> Path:
    return Path(os.environ.get("IARBRE_HOME", Path.cwd() / ".iarbre")).resolve()


@dataclass(frozen=True)
class Layout:
    home: Path

    @classmethod
    def from_env(cls) -> "Layout":
        return cls(iarbre_home())

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    def raw_dir(self, source: str) -> Path:
        return self.raw / source

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    def inbox_dir(self, partner: str) -> Path:
        return self.inbox / partner

    def source_dir(self, source: str) -> Path:
        return self.home / "sources" / source

    def constraint_dir(self, factor: str) -> Path:
        return self.home / "constraints" / factor

    @property
    def score(self) -> Path:
        return self.home / "score"

    @property
    def tiles(self) -> Path:
        return self.home / "tiles"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    @property
    def provenance(self) -> Path:
        return self.home / "provenance"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME", self.home / "dagster")).resolve()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary sibling path to write with any library; renamed over `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # libraries such as GDAL want to create the file themselves
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
