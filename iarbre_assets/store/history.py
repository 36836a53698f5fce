"""Every score run's outputs, addressable by run id or label, for explain, diff and audits.

    score/history/<run_id>/run.json               when the run scored, which communes, which artefacts
    score/history/<run_id>/<commune>/score.tif    hard links to the files the run wrote (no copy: the
                                     classes.tif  current file is replaced by rename, the link keeps the
                                     tiles.parquet  old inode), and the score record
                                     record.json
                                     coverages.tif  the coverages the score read, one band per factor
                                                    (band description = factor slug), pixel-interleaved:
                                                    one small block read gives a cell's every factor
    score/history/labels.json                     label -> run id ("before GRDF 2026-12"); pinned

A run may touch a few communes only (a partner update). The *map as of run R* is, for each commune and
artefact, the newest entry of a run at or before R. Pruning keeps the newest `keep_runs` runs, every
labelled run, and every entry one of their maps still reads; the current map is always the newest run's.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_text, read_json

SUFFIXES = {"score": ".tif", "classes": ".tif", "coverages": ".tif", "tiles": ".parquet", "record": ".json"}
COVERAGE_BLOCK = 64  # cells per side of a coverages.tif block: explaining one cell inflates 64*64*factors bytes
LATEST = ("latest", "current")
PREVIOUS = "previous"


class UnknownRunError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RunEntry:
    run_id: str
    at: str
    communes: tuple[str, ...]
    labels: tuple[str, ...] = ()
    pruned: bool = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class ScoreHistory:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- writing ------------------------------------------------------------------------------------
    def entry_path(self, run_id: str, commune: str, name: str) -> Path:
        return self.root / run_id / commune / f"{name}{SUFFIXES.get(name.split('/')[0], '.tif')}"

    def keep(self, run_id: str, commune: str, name: str, path: Path) -> None:
        """Keep `path` (just written) as artefact `name` of `commune` in run `run_id`. No run id: not kept."""
        if not run_id:
            return
        target = self.entry_path(run_id, commune, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:  # another filesystem, or no hard links: a copy
            shutil.copy2(path, tmp)
        os.replace(tmp, target)

    def register_run(self, run_id: str, communes, at: str | None = None) -> None:
        """Record (or extend) run `run_id`: its time orders the maps, its communes say what it touched."""
        path = self.root / run_id / "run.json"
        current = read_json(path) if path.exists() else {"run_id": run_id, "at": at or _now(), "communes": []}
        current["communes"] = sorted(set(current["communes"]) | {str(c) for c in communes})
        atomic_write_text(path, json.dumps(current, indent=1))

    # -- reading --------------------------------------------------------------------------------------
    def _labels(self) -> dict[str, str]:
        path = self.root / "labels.json"
        return read_json(path) if path.exists() else {}

    def runs(self, include_pruned: bool = False) -> list[RunEntry]:
        """Score runs, oldest first."""
        if not self.root.is_dir():
            return []
        labels: dict[str, list[str]] = {}
        for label, run_id in self._labels().items():
            labels.setdefault(run_id, []).append(label)
        out = []
        for manifest in self.root.glob("*/run.json"):
            data = read_json(manifest)
            entry = RunEntry(data["run_id"], data["at"], tuple(data["communes"]),
                             tuple(sorted(labels.get(data["run_id"], []))), bool(data.get("pruned")))
            if include_pruned or not entry.pruned:
                out.append(entry)
        return sorted(out, key=lambda r: (r.at, r.run_id))

    def resolve(self, ref: str) -> RunEntry:
        """A run by id (or unique prefix), label, `latest`/`current`, or `previous`."""
        runs = self.runs()
        if not runs:
            raise UnknownRunError("no score run is recorded in this home yet: run `iarbre run` first")
        if ref in LATEST:
            return runs[-1]
        if ref == PREVIOUS:
            if len(runs) < 2:
                raise UnknownRunError("there is no previous score run: only one is recorded")
            return runs[-2]
        labels = self._labels()
        if ref in labels:
            ref = labels[ref]
        matches = [r for r in runs if r.run_id == ref] or [r for r in runs if r.run_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(f"{r.run_id[:8]}{' (' + ', '.join(r.labels) + ')' if r.labels else ''}" for r in runs[-8:])
        if not matches:
            raise UnknownRunError(f"unknown run or label {ref!r}; recorded runs (newest last): {known}")
        raise UnknownRunError(f"{ref!r} matches {len(matches)} runs; give more of the run id")

    def state(self, ref: str) -> dict[str, dict[str, Path]]:
        """The map as of run `ref`: commune -> artefact name -> file (the newest entry at or before it)."""
        target = self.resolve(ref)
        out: dict[str, dict[str, Path]] = {}
        for run in self.runs(include_pruned=True):
            if (run.at, run.run_id) > (target.at, target.run_id):
                break
            for commune in run.communes:
                folder = self.root / run.run_id / commune
                if not folder.is_dir():
                    continue
                entries = out.setdefault(commune, {})
                for path in folder.rglob("*"):
                    if path.is_file() and not path.name.startswith("."):
                        name = str(path.relative_to(folder).with_suffix(""))
                        entries[name] = path
        return out

    def record(self, ref: str, commune: str) -> dict:
        path = self.state(ref).get(commune, {}).get("record")
        if path is None:
            raise UnknownRunError(f"commune {commune} has no score as of run {ref!r}")
        return read_json(path)

    # -- labels and retention ---------------------------------------------------------------------------
    def label(self, label: str, ref: str = "latest") -> RunEntry:
        run = self.resolve(ref)
        labels = self._labels()
        labels[label] = run.run_id
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / "labels.json", json.dumps(labels, indent=1, sort_keys=True, ensure_ascii=False))
        return self.resolve(run.run_id)

    def prune(self, keep_runs: int) -> list[str]:
        """Forget all but the newest `keep_runs` runs and the labelled ones; delete the files no kept map reads.

        Returns the run ids no longer addressable. The newest run (the current map) is always kept.
        """
        runs = self.runs()
        labelled = set(self._labels().values())
        kept = {r.run_id for r in runs[-max(1, keep_runs):]} | labelled
        forgotten = [r.run_id for r in runs if r.run_id not in kept]
        if not forgotten:
            return []
        needed = {p.resolve() for r in runs if r.run_id in kept for entries in self.state(r.run_id).values()
                  for p in entries.values()}
        for run_id in forgotten:
            folder = self.root / run_id
            for path in sorted(folder.rglob("*"), reverse=True):
                if path.is_file() and path.name != "run.json" and path.resolve() not in needed:
                    path.unlink()
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
            manifest = folder / "run.json"
            data = read_json(manifest)
            data["pruned"] = True
            atomic_write_text(manifest, json.dumps(data, indent=1))
        return forgotten
