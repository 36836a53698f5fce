"""Why does this point have this score? (`iarbre explain X Y`, and a Python API for auditors.)

For the 5 m cell containing a point: its score and class, the blocking factor if any, and for every factor
its coverage, weight and contribution, with the exact source versions (partner, file or URL, SHA-256,
delivery date) and the Dagster run that produced the score. Everything is read back from the files the
assets wrote (score sidecars, coverage rasters, raw manifests), not recomputed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window as RioWindow

from ..paths import Layout
from .raw_store import RawStore


class ExplainError(ValueError):
    pass


def _read_cell(path: Path, x: float, y: float):
    with rasterio.open(path) as src:
        row, col = src.index(x, y)
        if not (0 <= row < src.height and 0 <= col < src.width):
            return None
        value = src.read(1, window=RioWindow(col, row, 1, 1))[0, 0]
        return None if src.nodata is not None and value == src.nodata else value.item()


def explain_point(x: float, y: float, platform=None) -> dict:
    """Explain the cell containing (x, y) in EPSG:2154."""
    from ..compute.constraints import coverage_paths
    from ..compute.scoring import score_paths
    from ..geo.grid import cell_id_to_xy, xy_to_cell_id

    if platform is None:
        from ..platform import Platform

        platform = Platform.from_env()
    layout: Layout = platform.layout
    point = shapely.Point(x, y)
    communes = platform.communes
    hits = communes[communes.geometry.contains(point)]
    if hits.empty:
        raise ExplainError(f"point ({x:.1f}, {y:.1f}) EPSG:2154 is in none of the {len(communes)} communes of "
                           f"territory {platform.territory.name!r} (bounds {tuple(round(v) for v in communes.total_bounds)})")
    cell = int(xy_to_cell_id(np.array([x]), np.array([y]), platform.territory.grid.cell_size_m)[0])
    cx, cy = (float(v[0]) for v in cell_id_to_xy(np.array([cell]), platform.territory.grid.cell_size_m, centre=True))
    owner = None
    for code in sorted(hits["code"]):
        score_path, class_path, sidecar = score_paths(str(layout.score), code)
        if score_path.exists() and _read_cell(score_path, cx, cy) is not None:
            owner = code
            break
    if owner is None:
        raise ExplainError(f"cell {cell} has no score yet: run `iarbre run` (territory {platform.territory.name!r})")
    score_path, class_path, sidecar = score_paths(str(layout.score), owner)
    record = json.loads(sidecar.read_text())
    score = _read_cell(score_path, cx, cy)
    cls = _read_cell(class_path, cx, cy) if class_path.exists() else None
    labels = {c.class_: c.label for c in platform.catalogue.classes}
    provenance = record.get("provenance", {}).get("factors", {})
    store = RawStore(layout)
    factors, blocking = [], None
    for factor in platform.scored_factors:
        pct = _read_cell(coverage_paths(str(layout.constraint_dir(factor.slug)), owner)[0], cx, cy) or 0
        info = provenance.get(factor.slug, {})
        sources = []
        for src in info.get("sources", []):
            delivered = None
            try:
                delivered = store.version(src["slug"], src["raw_sha256"]).first_seen_at
            except FileNotFoundError:
                pass
            sources.append({"source": src["slug"], "partner": src["partner"], "origin": src["origin"],
                            "raw_sha256": src["raw_sha256"], "normalised_sha256": src["normalised_sha256"],
                            "version": src["version"], "delivered_at": delivered})
        entry = {"factor": factor.slug, "label": factor.label, "weight": factor.weight, "blocking": factor.blocking,
                 "meta": factor.meta, "coverage_pct": int(pct),
                 "contribution": round(factor.weight * pct / 100.0, 4) if not factor.blocking else 0.0,
                 "catalogue_entry": info.get("catalogue_entry"), "coverage_sha256": info.get("coverage_sha256"),
                 "sources": sources}
        if factor.blocking and pct > 0 and blocking is None:
            blocking = factor.slug
        factors.append(entry)
    blocked = blocking is not None
    if blocked:
        for entry in factors:
            entry["contribution"] = 0.0
    return {
        "point": {"x": x, "y": y, "crs": "EPSG:2154"},
        "cell": {"id": cell, "centre": [cx, cy], "size_m": platform.territory.grid.cell_size_m},
        "commune": {"code": owner, "name": str(communes.set_index("code").loc[owner, "name"])},
        "territory": platform.territory.name,
        "score": None if score is None else round(float(score), 4),
        "class": cls,
        "class_label": labels.get(cls),
        "blocked_by": blocking,
        "factors": [f for f in factors if f["coverage_pct"] > 0] + [f for f in factors if f["coverage_pct"] == 0],
        "run_id": record.get("run_id"),
        "catalogue_version": record.get("provenance", {}).get("catalogue_version"),
        "score_file": str(score_path),
        "check_sum": round(sum(f["contribution"] for f in factors), 4) if not blocked else None,
        "home": os.environ.get("IARBRE_HOME"),
    }


def format_explanation(e: dict) -> str:
    lines = [
        f"Cell {e['cell']['id']} (centre {e['cell']['centre'][0]:.1f}, {e['cell']['centre'][1]:.1f} EPSG:2154) "
        f"in {e['commune']['name']} ({e['commune']['code']}), territory {e['territory']}",
        f"Score {e['score']}  ->  class {e['class']} « {e['class_label']} »"
        + (f"  (blocked by {e['blocked_by']})" if e["blocked_by"] else f"  (= sum of contributions {e['check_sum']})"),
        f"Produced by Dagster run {e['run_id']} with catalogue {e['catalogue_version']}",
        "",
        f"{'factor':32s} {'weight':>6s} {'cover %':>7s} {'contrib':>8s}  sources (partner, version, delivered)",
    ]
    for f in e["factors"]:
        if f["coverage_pct"] == 0:
            continue
        srcs = "; ".join(f"{s['source']} ({s['partner']}, {s['raw_sha256'][:12]}, {s['delivered_at'] or '?'})"
                         for s in f["sources"])
        flag = " BLOCKING" if f["blocking"] else ""
        lines.append(f"{f['label'][:32]:32s} {f['weight']:+6g} {f['coverage_pct']:7d} {f['contribution']:+8.3f}  {srcs}{flag}")
    zero = [f["label"] for f in e["factors"] if f["coverage_pct"] == 0]
    lines.append("")
    lines.append(f"Not present in this cell ({len(zero)}): " + ", ".join(zero))
    return "\n".join(lines)
