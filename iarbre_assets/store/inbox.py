"""Partner drops: `inbox/<partner>/<file>`, matched to a source of that partner, and what became of each.

Matching rule (docs/operations.md): a dropped file is a candidate version of source S of the same partner
when the file's *name key* equals one of S's names. The name key is the file stem in Unicode NFC, case-folded,
with spaces, dots and dashes as underscores, and a copy marker dropped (`name (1)`, `name_copy`,
`name - Copie`). S's names are: its slug (`ore_gaz`), the stem of its file location (`assainissement`), the
last part of its WFS typename (`abrarbre`) and its data-fair dataset id (`infrastructures_reseau_gaz`).
A partner with a single source also takes any data file. This holds for every source, remote ones too:
a drop of GRDF's gas network is a candidate version even though ore_gaz is normally fetched.

States (the ledger, `inbox/.ledger.jsonl`, one line per event, keyed by the file's SHA-256):
    requested    an ingest run was asked for this file (the sensor)
    accepted     it became the source's version in use (or equals the version in use)
    rejected     its delivery or quality checks failed, with the reason
    ignored      not a delivery: a document (PDF, README...) or a hidden file
    quarantined  a data file matching no source of this partner, or a link/device the inbox refuses
Nothing is deleted from the inbox: a steward releases a quarantined file by renaming it after a source.
An ingest of a source reads its newest pending drop (the older pending ones are recorded as superseded),
or, with none, its usual location.
"""

from __future__ import annotations

import json
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..catalog import SourceDef
from .files import file_sha256
from .raw import utc_now

DATA_SUFFIXES = {".geojson", ".json", ".gpkg", ".zip", ".gml", ".xml", ".parquet", ".fgb", ".shp"}
FINAL_STATES = {"accepted", "rejected", "ignored", "quarantined"}
_COPY_MARKER = re.compile(r"(\s*\(\d+\)|[_\s-]+(copy|copie|kopie)(\s*\d+)?|\s*-\s*copie(\s*\(\d+\))?)$", re.I)


def name_key(name: str) -> str:
    stem = unicodedata.normalize("NFC", Path(name).stem if "." in name else name).casefold().strip()
    stem = _COPY_MARKER.sub("", stem)
    return re.sub(r"[\s.\-]+", "_", stem).strip("_")


def source_names(source: SourceDef) -> set[str]:
    """The names a drop for `source` may carry (see the module docstring)."""
    loc = source.location
    names = {source.slug}
    if getattr(loc, "path", None):
        names.add(Path(loc.path).stem)
    if getattr(loc, "typename", None):
        names.add(re.split(r"[:.]", loc.typename)[-1])
    if loc.kind == "datafair" and getattr(loc, "url", None):
        parts = [p for p in loc.url.rstrip("/").split("/") if p]
        if "datasets" in parts and parts.index("datasets") + 1 < len(parts):
            names.add(parts[parts.index("datasets") + 1])
    if getattr(loc, "layer", None):
        names.add(loc.layer)
    return {name_key(n) for n in names}


@dataclass(frozen=True)
class Drop:
    partner: str
    path: Path
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Verdict:
    """Where a dropped file goes: a source (candidate version), or a final state with a reason."""

    drop: Drop
    source: str | None
    state: str  # "candidate" | "ignored" | "quarantined"
    reason: str


def classify(partner: str, path: Path, sources: list[SourceDef], drop: Drop) -> Verdict:
    """Match one inbox file to the sources of its partner."""
    if path.name.startswith(".") or path.suffix.lower() not in DATA_SUFFIXES:
        return Verdict(drop, None, "ignored", f"{path.name}: not a delivery (a {path.suffix or 'file without extension'}"
                                              " is not a data format the connectors read)")
    key = name_key(path.name)
    matches = [s.slug for s in sources if key in source_names(s)]
    if not matches and len(sources) == 1:
        matches = [sources[0].slug]
    if len(matches) == 1:
        return Verdict(drop, matches[0], "candidate", f"{path.name} matches source {matches[0]}")
    if not matches:
        names = "; ".join(f"{s.slug}: {', '.join(sorted(source_names(s)))}" for s in sources) or "none"
        return Verdict(drop, None, "quarantined",
                       f"{path.name}: matches no source of partner {partner!r} (name key {key!r}); names accepted: {names}")
    return Verdict(drop, None, "quarantined", f"{path.name}: matches several sources {matches}; rename it after one")


class Inbox:
    """The inbox of a home: scanning (never following links), matching and the ledger."""

    def __init__(self, root: Path, ledger: Path):
        self.root = Path(root)
        self.ledger_path = Path(ledger)

    def partner_dir(self, partner: str) -> Path:
        return self.root / partner

    # -- scanning ------------------------------------------------------------------------------------
    def scan(self, sources_by_partner: dict[str, list[SourceDef]], known: dict | None = None) -> list[Verdict]:
        """Every file in the partners' inbox folders, classified. `known` maps (path, size, mtime_ns) to a
        SHA-256 already computed (so unchanged files are not hashed again)."""
        known = known or {}
        verdicts = []
        for partner, sources in sorted(sources_by_partner.items()):
            folder = self.partner_dir(partner)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                info = path.lstat()
                if stat.S_ISDIR(info.st_mode):  # never entered: a folder is seen, not read
                    drop = Drop(partner, path, "", 0, info.st_mtime_ns)
                    verdicts.append(Verdict(drop, None, "ignored", f"{path.name}: a folder, not a delivery; drop "
                                                                   "a file (a shapefile's parts zipped together)"))
                    continue
                if not stat.S_ISREG(info.st_mode):
                    what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                    drop = Drop(partner, path, "", 0, info.st_mtime_ns)
                    verdicts.append(Verdict(drop, None, "quarantined",
                                            f"{path.name}: {what}; the inbox reads only files dropped in it"))
                    continue
                fingerprint = f"{path}|{info.st_size}|{info.st_mtime_ns}"
                sha = known.get(fingerprint) or file_sha256(path)
                drop = Drop(partner, path, sha, info.st_size, info.st_mtime_ns)
                verdicts.append(classify(partner, path, sources, drop))
        return verdicts

    # -- the ledger ------------------------------------------------------------------------------------
    def record(self, drop: Drop, state: str, *, source: str | None, reason: str, run_id: str | None = None) -> dict:
        entry = {"at": utc_now(), "partner": drop.partner, "file": drop.path.name, "sha256": drop.sha256,
                 "size": drop.size, "mtime_ns": drop.mtime_ns, "state": state, "source": source, "reason": reason,
                 "run_id": run_id}
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        with self.ledger_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry

    def entries(self) -> list[dict]:
        if not self.ledger_path.exists():
            return []
        return [json.loads(line) for line in self.ledger_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def latest(self) -> dict[tuple[str, str, str], dict]:
        """(partner, file, sha256) -> its latest ledger entry."""
        out = {}
        for entry in self.entries():
            out[(entry["partner"], entry["file"], entry["sha256"])] = entry
        return out

    def known_hashes(self) -> dict[str, str]:
        return {f"{self.partner_dir(e['partner']) / e['file']}|{e['size']}|{e['mtime_ns']}": e["sha256"]
                for e in self.entries() if e.get("sha256")}

    def pending(self, source: SourceDef, partner_sources: list[SourceDef]) -> list[Drop]:
        """Drops that are candidate versions of `source` and have no final state yet, oldest first."""
        latest = self.latest()
        out = []
        for verdict in self.scan({source.partner: partner_sources}, self.known_hashes()):
            if verdict.state != "candidate" or verdict.source != source.slug:
                continue
            drop = verdict.drop
            entry = latest.get((drop.partner, drop.path.name, drop.sha256))
            if entry is None or entry["state"] not in FINAL_STATES:
                out.append(drop)
        return sorted(out, key=lambda d: (d.mtime_ns, d.path.name))


def as_file_source(source: SourceDef, drop: Drop) -> SourceDef:
    """`source` read from a dropped file instead of its usual location (endpoint or data-directory file)."""
    from ..catalog.models import FileLocation

    crs = getattr(source.location, "crs", None)
    layer = getattr(source.location, "layer", None) if drop.path.suffix.lower() == ".gpkg" else None
    location = FileLocation(path=str(drop.path), layer=layer, crs=crs)
    return source.model_copy(update={"location": location, "connector": "file"})
