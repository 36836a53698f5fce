"""Atomic file writes: readers never see half a file, and a failed write leaves the old file in place."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temporary name in the same directory, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: Path, obj, *, fsync: bool = False, **dump) -> None:
    """A JSON record beside a data file. Not fsync'ed by default: the data files next to it are not either,
    and at two records per (factor, commune) the fsyncs alone would cost more than small factors' work."""
    dump.setdefault("ensure_ascii", False)
    dump.setdefault("default", str)
    atomic_write_text(path, json.dumps(obj, **dump), fsync=fsync)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary sibling path to write with any library; renamed over `path` on success."""
    path = Path(path)
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


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (raw deliveries can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
