"""Why does a cell have its score? Answered from the record of the score run that computed it.

    explain_point(home, x, y, run="latest")    # x, y in EPSG:2154, any point (not only cell centres)

The cell is the 5 m cell containing the point; it belongs to the commune containing its centre, which is
the one commune whose score raster has a value there (ownership is written into the rasters). Weights,
blocking flags, class breaks and the source versions come from that commune's score record of the run; the
coverages from the coverage rasters that run read (kept in the score history), so the contributions always
sum to the score on disk, whatever the catalogue says today. When the current catalogue differs from the
recorded weights, the answer says so and names the differences.

Light on purpose (the CLI answers in under a second): no Dagster, no geopandas, no pyproj, and the
catalogue is parsed only when its bytes differ from the run's. Three files per cell (score, classes, and
the run's multi-band coverages), opened once per process and kept (keyed by path and modification time).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path


class ExplainError(ValueError):
    pass


def _read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=256)
def _dataset(path: str, _mtime_ns: int):
    import rasterio

    return rasterio.open(path)


def _open(path: Path):
    return _dataset(str(path), Path(path).stat().st_mtime_ns)


def _value(path: Path, row: int, col: int):
    """The raster value at (row, col) of its own grid, or None for nodata / outside."""
    import numpy as np
    from rasterio.windows import Window

    src = _open(path)
    if not (0 <= row < src.height and 0 <= col < src.width):
        return None
    value = src.read(1, window=Window(col, row, 1, 1))[0, 0]
    if src.nodata is not None and (value == src.nodata or (isinstance(value, np.floating) and np.isnan(value))):
        return None
    return value.item()


def _coverages(files: dict, slugs: list[str], row: int, col: int) -> dict[str, int | None]:
    """slug -> coverage % the score read at (row, col); None for a factor the run kept no coverage of."""
    if "coverages" in files:  # one file, one block read for every factor
        from rasterio.windows import Window

        src = _open(files["coverages"])
        values = src.read(window=Window(col, row, 1, 1))[:, 0, 0]
        by_name = dict(zip(src.descriptions, (int(v) for v in values)))
        return {slug: by_name.get(slug) for slug in slugs}
    # histories written before coverages.tif: one file per factor
    return {slug: (_value(files[f"coverage/{slug}"], row, col) or 0) if f"coverage/{slug}" in files else None
            for slug in slugs}


class _History:
    """The score history of a home, cached per (home, newest run manifest)."""

    def __init__(self, home: Path):
        from ..store import Store

        self.store = Store(home)
        self.history = self.store.history

    @property
    def stamp(self) -> tuple:
        root = self.history.root
        manifests = list(root.glob("*/run.json")) if root.is_dir() else []
        labels = root / "labels.json"
        return (len(manifests), max((m.stat().st_mtime_ns for m in manifests), default=0),
                labels.stat().st_mtime_ns if labels.exists() else 0)


_CACHE: dict = {}


def _state(home: Path, run: str):
    history = _History(home)
    key = (str(home), run, history.stamp)
    if key not in _CACHE:
        entry = history.history.resolve(run)
        state = history.history.state(entry.run_id)
        records = {c: _read_json(files["record"]) for c, files in state.items() if "record" in files}
        _CACHE.clear()
        _CACHE[key] = (history, entry, state, records)
    return _CACHE[key]


def _cell(x: float, y: float, size: float) -> tuple[int, int, float, float]:
    ix, iy = math.floor(x / size), math.floor(y / size)
    return ix, iy, (ix + 0.5) * size, (iy + 0.5) * size


def explain_point(home: str | Path, x: float, y: float, run: str = "latest", catalogue_path: str | None = None) -> dict:
    """Explain the cell containing (x, y) in EPSG:2154, as computed by run `run` (id, prefix, label, latest)."""
    from ..store.history import UnknownRunError

    home = Path(home).resolve()
    try:
        history, entry, state, records = _state(home, run)
    except UnknownRunError as exc:
        raise ExplainError(str(exc)) from None
    if not records:
        raise ExplainError(f"{home}: no commune has a score as of run {entry.run_id}")
    size = next(iter(records.values()))["grid"]["cell_size_m"]
    ix, iy, cx, cy = _cell(x, y, size)
    candidates = []
    for code, record in sorted(records.items()):
        x0, y0, x1, y1 = record["grid"]["window"]
        if x0 <= cx < x1 and y0 <= cy < y1:
            candidates.append((code, record, int((y1 - cy) // size), int((cx - x0) // size)))
    owner = None
    for code, record, row, col in candidates:
        score = _value(state[code]["score"], row, col)
        if score is not None:
            owner = (code, record, row, col, score)
            break
    if owner is None:
        where = f"point ({x:.1f}, {y:.1f}) EPSG:2154, cell centre ({cx:.1f}, {cy:.1f})"
        windows = _windows(home)
        never = [c for c, (x0, y0, x1, y1) in windows.items() if c not in records and x0 <= cx < x1 and y0 <= cy < y1]
        if never:
            raise ExplainError(f"{where}: commune {', '.join(never)} has never been computed as of run "
                               f"{entry.run_id[:8]}; run `iarbre run` (or materialise its partitions)")
        if not candidates:
            bounds = _bounds(windows or {c: r["grid"]["window"] for c, r in records.items()})
            raise ExplainError(f"{where} is outside the territory (its communes span {bounds})")
        raise ExplainError(f"{where} lies in no commune of the territory (it is within the windows of "
                           f"{', '.join(c for c, *_ in candidates)} but no commune owns that cell)")
    code, record, row, col, score = owner
    files = state[code]
    scoring = record["scoring"]
    cls = _value(files["classes"], row, col) if "classes" in files else None
    factors, blocking = [], None
    by_slug = {s["slug"]: s for s in record["sources"]}
    coverages = _coverages(files, [f["slug"] for f in record["factors"]], row, col)
    for factor in record["factors"]:
        pct = coverages[factor["slug"]]
        if pct is None:
            raise ExplainError(f"run {entry.run_id} kept no coverage of {factor['slug']} for commune {code}")
        if factor["blocking"] and pct > 0 and blocking is None:
            blocking = factor["slug"]
        factors.append({
            "factor": factor["slug"], "label": factor["label"], "weight": factor["weight"],
            "blocking": factor["blocking"], "meta": factor["meta"], "coverage_pct": int(pct),
            "contribution": 0.0 if factor["blocking"] else factor["weight"] * pct / 100.0,
            "catalogue_entry": factor.get("catalogue_entry"), "coverage_sha256": factor.get("coverage_sha256"),
            "sources": [by_slug[s] for s in factor["sources"] if s in by_slug],
        })
    if blocking is not None:
        for f in factors:
            f["contribution"] = 0.0
    total = sum(f["contribution"] for f in factors)
    for f in factors:
        f["contribution"] = round(f["contribution"], 4)
    catalogue = catalogue_path or _remembered_catalogue(home) or record["code"].get("catalogue_file")
    labels = {int(k): v for k, v in scoring["class_labels"].items()} if "class_labels" in scoring \
        else _class_labels(catalogue)
    return {
        "point": {"x": x, "y": y, "crs": record["grid"]["crs"]},
        "cell": {"id": ix * 10_000_000 + iy, "centre": [cx, cy], "size_m": size},
        "commune": {"code": code, "name": record.get("commune_name")},
        "territory": record["territory"]["name"],
        "score": round(float(score), 4),
        "class": cls,
        "class_label": labels.get(cls),
        "blocked_by": blocking,
        "blocked_score": scoring["blocked_score"],
        "class_breaks": scoring["class_breaks"],
        "factors": [f for f in factors if f["coverage_pct"] > 0] + [f for f in factors if f["coverage_pct"] == 0],
        "check_sum": round(total, 4) if blocking is None else None,
        "run_id": record["run_id"],
        "run_labels": list(entry.labels) if entry.run_id == record["run_id"] else [],
        "as_of_run": entry.run_id,
        "materialised_at": record["materialised_at"],
        "code": record["code"],
        "sources": record["sources"],
        "catalogue_changes": catalogue_changes(record, catalogue),
        "home": str(home),
    }


def _windows(home: Path) -> dict:
    path = home / "score" / "communes.json"
    return _read_json(path)["communes"] if path.exists() else {}


def _bounds(windows: dict) -> tuple:
    values = list(windows.values())
    return (round(min(v[0] for v in values)), round(min(v[1] for v in values)),
            round(max(v[2] for v in values)), round(max(v[3] for v in values)))


def _remembered_catalogue(home: Path) -> str | None:
    path = home / "iarbre.json"
    return _read_json(path).get("catalog") if path.exists() else None


@lru_cache(maxsize=4)
def _catalogue(path: str | None, _mtime_ns: int):
    from ..catalog import load_catalog

    return load_catalog(path)


def _current_catalogue(path: str | None):
    from ..catalog import DEFAULT_CATALOG

    file = Path(path) if path else DEFAULT_CATALOG
    return _catalogue(str(file), file.stat().st_mtime_ns) if file.exists() else None


def _class_labels(path: str | None) -> dict:
    catalogue = _current_catalogue(path)
    return {c.class_: c.label for c in catalogue.classes} if catalogue else {}


@lru_cache(maxsize=4)
def _sha256(path: str, _mtime_ns: int) -> str:
    from ..store.files import file_sha256

    return file_sha256(Path(path))


def catalogue_changes(record: dict, path: str | None) -> list[str]:
    """What today's catalogue would compute differently from what the run recorded (empty: nothing).

    The same bytes as the run's catalogue (same sha256) change nothing: no need to parse and validate it."""
    if path and Path(path).is_file() and \
            _sha256(str(path), Path(path).stat().st_mtime_ns) == record["code"].get("catalogue_sha256"):
        return []
    catalogue = _current_catalogue(path)
    if catalogue is None:
        return [f"the catalogue {path} no longer exists"]
    current = {f.slug: f for f in catalogue.factors if not f.display_only}
    changes = []
    for factor in record["factors"]:
        now = current.pop(factor["slug"], None)
        if now is None:
            changes.append(f"{factor['slug']}: no longer in the catalogue")
            continue
        if now.weight != factor["weight"]:
            changes.append(f"{factor['slug']}: weight {factor['weight']:+g} recorded, {now.weight:+g} in the catalogue")
        if now.blocking != factor["blocking"]:
            changes.append(f"{factor['slug']}: blocking {factor['blocking']} recorded, {now.blocking} in the catalogue")
    changes += [f"{slug}: new in the catalogue (weight {f.weight:+g})" for slug, f in sorted(current.items())]
    scoring = catalogue.scoring
    breaks = [[b.max, b.class_] for b in scoring.class_breaks]
    if breaks != record["scoring"]["class_breaks"] or scoring.class_above != record["scoring"]["class_above"]:
        changes.append(f"class breaks {record['scoring']['class_breaks']} recorded, {breaks} in the catalogue")
    if scoring.blocked_score != record["scoring"]["blocked_score"]:
        changes.append(f"blocked score {record['scoring']['blocked_score']} recorded, {scoring.blocked_score} "
                       "in the catalogue")
    return changes


def format_explanation(e: dict) -> str:
    code = e["code"]
    labels = f" ({', '.join(e['run_labels'])})" if e["run_labels"] else ""
    lines = [
        f"Cell {e['cell']['id']} (centre {e['cell']['centre'][0]:.1f}, {e['cell']['centre'][1]:.1f} {e['point']['crs']}) "
        f"in {e['commune']['name']} ({e['commune']['code']}), territory {e['territory']}",
        f"Score {e['score']}  ->  class {e['class']} « {e['class_label']} »"
        + (f"  (blocked by {e['blocked_by']}: {e['blocked_score']:g})" if e["blocked_by"]
           else f"  (= sum of contributions {e['check_sum']})"),
        f"Computed by run {e['run_id']}{labels} at {e['materialised_at']}",
        f"  code {code['score_code_version']}, catalogue {code['catalogue_version']} "
        f"(sha256 {code['catalogue_sha256'][:12]}), iarbre {code['package_version']}, "
        f"commit {code['git_commit'] or 'unknown (not a git checkout)'}",
        f"  class breaks {e['class_breaks']}",
        "",
        f"{'factor':32s} {'weight':>6s} {'cover %':>7s} {'contrib':>8s}  sources (partner, version, delivered)",
    ]
    for f in e["factors"]:
        if f["coverage_pct"] == 0:
            continue
        srcs = "; ".join(f"{s['slug']} ({s['partner']}, {s['raw_sha256'][:12]}, {s.get('delivered_at') or '?'})"
                         for s in f["sources"])
        flag = " BLOCKING" if f["blocking"] else ""
        lines.append(f"{f['label'][:32]:32s} {f['weight']:+6g} {f['coverage_pct']:7d} {f['contribution']:+8.3f}  {srcs}{flag}")
    zero = [f["label"] for f in e["factors"] if f["coverage_pct"] == 0]
    lines += ["", f"Not present in this cell ({len(zero)}): " + ", ".join(zero)]
    if e["catalogue_changes"]:
        lines += ["", "The catalogue has changed since this run (the score above is what was computed):"]
        lines += [f"  - {c}" for c in e["catalogue_changes"]]
    return "\n".join(lines)
