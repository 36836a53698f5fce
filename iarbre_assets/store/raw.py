"""Content-addressed store of what partners and endpoints delivered, kept byte for byte.

    raw/<source>/<sha256>.<ext>    the bytes
    raw/<source>/<sha256>.manifest.json  that version's manifest: origin, partner, licence, first/last seen, size
    raw/<source>/log.jsonl         every fetch or drop observed, new version or not (append-only)
    raw/<source>/latest.json       the version most recently delivered (not necessarily accepted)

Re-delivering identical bytes creates no new version; it only updates `last_seen_at`.
Retention keeps the newest N versions and never deletes a protected one (the accepted version).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_bytes, atomic_write_text


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class RawVersion:
    source: str
    sha256: str
    ext: str
    size: int
    origin: str
    partner: str
    licence: str
    connector: str
    first_seen_at: str
    last_seen_at: str
    seen_count: int = 1
    requests: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.sha256[:16]

    @property
    def filename(self) -> str:
        return f"{self.sha256}.{self.ext}"


@dataclass
class PutResult:
    version: RawVersion
    path: Path
    is_new: bool


class RawStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, source: str) -> Path:
        return self.root / source

    def path(self, source: str, sha256: str) -> Path:
        """Where the bytes of one delivery are kept."""
        return self._dir(source) / self.version(source, sha256).filename

    def put(
        self,
        source: str,
        data: bytes,
        ext: str,
        *,
        origin: str,
        partner: str,
        licence: str,
        connector: str,
        requests: list[dict] | None = None,
        details: dict | None = None,
        observed_at: str | None = None,
    ) -> PutResult:
        now = observed_at or utc_now()
        digest = sha256_bytes(data)
        directory = self._dir(source)
        path = directory / f"{digest}.{ext}"
        manifest_path = directory / f"{digest}.manifest.json"
        is_new = not manifest_path.exists()
        if is_new:
            atomic_write_bytes(path, data)
            version = RawVersion(
                source=source, sha256=digest, ext=ext, size=len(data), origin=origin, partner=partner,
                licence=licence, connector=connector, first_seen_at=now, last_seen_at=now,
                requests=list(requests or []), details=dict(details or {}),
            )
        else:
            version = self.version(source, digest)
            version.last_seen_at = now
            version.seen_count += 1
            version.origin = origin
        atomic_write_text(manifest_path, json.dumps(asdict(version), indent=1, ensure_ascii=False))
        atomic_write_text(directory / "latest.json", json.dumps({"sha256": digest, "at": now}))
        self._log(source, {"at": now, "sha256": digest, "new_version": is_new, "origin": origin, "size": len(data)})
        return PutResult(version=version, path=path, is_new=is_new)

    def record_failure(self, source: str, origin: str, error: str, at: str | None = None) -> None:
        """A delivery that brought no usable bytes (HTTP error, timeout, unreadable file): logged, nothing stored."""
        self._log(source, {"at": at or utc_now(), "failed": True, "origin": origin, "error": error[:2000]})

    def log(self, source: str) -> list[dict]:
        path = self._dir(source) / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _log(self, source: str, entry: dict) -> None:
        log = self._dir(source) / "log.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def version(self, source: str, sha256: str) -> RawVersion:
        manifest = self._dir(source) / f"{sha256}.manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{source}: raw version {sha256} is not in the raw store ({manifest})")
        return RawVersion(**json.loads(manifest.read_text(encoding="utf-8")))

    def latest(self, source: str) -> RawVersion | None:
        pointer = self._dir(source) / "latest.json"
        if not pointer.exists():
            return None
        return self.version(source, json.loads(pointer.read_text())["sha256"])

    def read(self, source: str, sha256: str) -> bytes:
        version = self.version(source, sha256)
        data = (self._dir(source) / version.filename).read_bytes()
        if sha256_bytes(data) != sha256:
            raise ValueError(f"{source}: raw version {sha256} is corrupted on disk (hash mismatch)")
        return data

    def versions(self, source: str) -> list[RawVersion]:
        directory = self._dir(source)
        if not directory.exists():
            return []
        found = []
        for manifest in directory.glob("*.manifest.json"):
            found.append(RawVersion(**json.loads(manifest.read_text(encoding="utf-8"))))
        return sorted(found, key=lambda v: (v.first_seen_at, v.sha256))

    def prune(self, source: str, keep: int, protect: set[str] = frozenset()) -> list[str]:
        """Delete all but the newest `keep` versions, never a protected one. Returns the deleted hashes."""
        versions = self.versions(source)
        newest = {v.sha256 for v in versions[-keep:]} if keep > 0 else set()
        deleted = []
        for version in versions:
            if version.sha256 in newest or version.sha256 in protect:
                continue
            (self._dir(source) / version.filename).unlink(missing_ok=True)
            (self._dir(source) / f"{version.sha256}.manifest.json").unlink(missing_ok=True)
            deleted.append(version.sha256)
        if deleted:
            self._log(source, {"at": utc_now(), "pruned": deleted})
        return deleted
