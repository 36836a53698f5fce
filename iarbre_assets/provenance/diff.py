"""What changed between two versions of the map (two score runs, or labels), per commune.

    diff_runs(store, "before GRDF 2026-12", "latest", commune=None)

For each commune: the class transition matrix, the area gained or lost per class, the sources whose versions
differ and the weights that differ (from the two score records), and the changed cells with their from/to
class, the factors whose coverage changed (from the coverages each run's score read, kept in the history)
and the factors whose weight changed that cover the cell.
`write_changed_cells(diff, path)` writes those cells as a GeoPackage layer of 5 m squares.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..store import read_json


def _read(path: Path):
    from ..store.rasters import read_geotiff

    return read_geotiff(path)


def _stack(files: dict, names: list[str], shape) -> np.ndarray:
    """The coverages the run's score read, in the order of `names` (0 where it kept none)."""
    from ..geo.coverage import COVERAGE_NODATA
    from ..store.rasters import read_band_names

    stack = np.zeros((len(names), *shape), dtype=np.uint8)
    if "coverages" in files:
        bands = _read(files["coverages"])[0].reshape(-1, *shape)
        index = {name: i for i, name in enumerate(read_band_names(files["coverages"]))}
        for i, name in enumerate(names):
            if name in index:
                stack[i] = bands[index[name]]
        return stack
    for i, name in enumerate(names):  # histories written before coverages.tif: one file per factor
        path = files.get(f"coverage/{name}")
        if path is not None:
            array = _read(path)[0]
            stack[i] = np.where(array == COVERAGE_NODATA, 0, array)
    return stack


def _record_diff(before: dict | None, after: dict | None) -> tuple[list[dict], list[dict]]:
    if before is None or after is None:
        return [], []
    old = {s["slug"]: s for s in before["sources"]}
    new = {s["slug"]: s for s in after["sources"]}
    sources = [{"source": slug, "partner": (new.get(slug) or old.get(slug))["partner"],
                "from_version": old[slug]["raw_sha256"] if slug in old else None,
                "to_version": new[slug]["raw_sha256"] if slug in new else None,
                "from_delivered_at": old.get(slug, {}).get("delivered_at"),
                "to_delivered_at": new.get(slug, {}).get("delivered_at")}
               for slug in sorted(set(old) | set(new))
               if (old.get(slug) or {}).get("raw_sha256") != (new.get(slug) or {}).get("raw_sha256")]
    wold = {f["slug"]: f for f in before["factors"]}
    wnew = {f["slug"]: f for f in after["factors"]}
    weights = [{"factor": slug, "from_weight": wold.get(slug, {}).get("weight"), "to_weight": wnew.get(slug, {}).get("weight"),
                "from_blocking": wold.get(slug, {}).get("blocking"), "to_blocking": wnew.get(slug, {}).get("blocking")}
               for slug in sorted(set(wold) | set(wnew))
               if (wold.get(slug, {}).get("weight"), wold.get(slug, {}).get("blocking"))
               != (wnew.get(slug, {}).get("weight"), wnew.get(slug, {}).get("blocking"))]
    return sources, weights


def diff_runs(store, from_ref: str, to_ref: str, commune: str | None = None) -> dict:
    from ..geo.diff import changed_cell_mask, class_transitions, coverage_changes
    from ..geo.score import CLASS_NODATA
    from ..store.history import UnknownRunError

    history = store.history
    a, b = history.resolve(from_ref), history.resolve(to_ref)
    before, after = history.state(a.run_id), history.state(b.run_id)
    communes = sorted(set(before) | set(after))
    if commune is not None:
        if commune not in communes:
            raise UnknownRunError(f"commune {commune!r} has no score in run {a.run_id[:8]} nor {b.run_id[:8]}; "
                                  f"communes: {', '.join(communes)}")
        communes = [commune]
    out = {"from": {"run_id": a.run_id, "at": a.at, "labels": list(a.labels)},
           "to": {"run_id": b.run_id, "at": b.at, "labels": list(b.labels)}, "communes": []}
    for code in communes:
        old, new = before.get(code, {}), after.get(code, {})
        rec_old = read_json(old["record"]) if "record" in old else None
        rec_new = read_json(new["record"]) if "record" in new else None
        sources, weights = _record_diff(rec_old, rec_new)
        entry = {"commune": code, "commune_name": (rec_new or rec_old or {}).get("commune_name"),
                 "from_run": rec_old["run_id"] if rec_old else None, "to_run": rec_new["run_id"] if rec_new else None,
                 "sources_changed": sources, "weights_changed": weights}
        if "classes" not in old or "classes" not in new:
            entry.update(transitions=[], area_change_m2={}, changed_cells=None, cells=[],
                         note="the commune has classes in only one of the two runs")
            out["communes"].append(entry)
            continue
        if os.path.samefile(old["classes"], new["classes"]):
            entry.update(transitions=[], area_change_m2={}, changed_cells=0, cells=[], classes=None)
            out["communes"].append(entry)
            continue
        x_old, window, _ = _read(old["classes"])
        x_new, window_new, _ = _read(new["classes"])
        if window != window_new:
            raise ValueError(f"commune {code}: its window moved between the two runs; compare the mosaics instead")
        classes = sorted({c for _, c in rec_new["scoring"]["class_breaks"]} | {rec_new["scoring"]["class_above"]})
        transitions = class_transitions(x_old, x_new, classes, CLASS_NODATA)
        mask = changed_cell_mask(x_old, x_new, CLASS_NODATA)
        names = [f["slug"] for f in rec_new["factors"]]
        new_stack = _stack(new, names, window.shape)
        factors = coverage_changes(_stack(old, names, window.shape), new_stack, names, mask, CLASS_NODATA)
        rows, cols = np.nonzero(mask)
        # a weight change moves a class without moving any coverage: name the re-weighted factors covering the cell
        reweighted = [names.index(w["factor"]) for w in weights if w["factor"] in names]
        covering = new_stack[reweighted][:, rows, cols] > 0 if reweighted else np.zeros((0, len(rows)), bool)
        weighted = [[names[reweighted[j]] for j in np.nonzero(covering[:, n])[0]] for n in range(len(rows))]
        xs, ys = window.cell_centres()
        ids = window.cell_ids()
        entry.update(
            transitions=[r for r in transitions.as_rows() if r["cells"]],
            area_change_m2=transitions.area_change_m2(window.cell ** 2),
            changed_cells=int(mask.sum()),
            cells=[{"cell_id": int(ids[r, c]), "x": float(xs[r, c]), "y": float(ys[r, c]),
                    "from_class": None if x_old[r, c] == CLASS_NODATA else int(x_old[r, c]),
                    "to_class": None if x_new[r, c] == CLASS_NODATA else int(x_new[r, c]), "factors": f,
                    "reweighted_factors": w}
                   for r, c, f, w in zip(rows.tolist(), cols.tolist(), factors, weighted)],
            cell_size_m=window.cell,
        )
        out["communes"].append(entry)
    return out


def write_changed_cells(diff: dict, path: Path, crs: str = "EPSG:2154") -> int:
    """The changed cells of `diff` as 5 m squares in a GeoPackage layer `changed_cells`. Returns the count."""
    import geopandas as gpd
    import shapely

    rows = [{**cell, "commune": c["commune"], "factors": ",".join(cell["factors"]),
             "reweighted_factors": ",".join(cell.get("reweighted_factors", [])),
             "from_run": c["from_run"], "to_run": c["to_run"], "half": c.get("cell_size_m", 5.0) / 2}
            for c in diff["communes"] for cell in c.get("cells", [])]
    if rows:
        half = np.array([r.pop("half") for r in rows])
        x, y = np.array([r["x"] for r in rows]), np.array([r["y"] for r in rows])
        geometry = shapely.box(x - half, y - half, x + half, y + half)
    else:
        geometry = []
    frame = gpd.GeoDataFrame(rows, geometry=geometry, crs=crs) if rows else gpd.GeoDataFrame(
        {"cell_id": [], "commune": [], "from_class": [], "to_class": [], "factors": [], "reweighted_factors": []},
        geometry=[], crs=crs)
    from ..store import atomic_path

    with atomic_path(Path(path)) as tmp:
        frame.to_file(tmp, driver="GPKG", layer="changed_cells", engine="pyogrio")
    return len(rows)


def format_diff(diff: dict) -> str:
    def run(side):
        labels = f" ({', '.join(side['labels'])})" if side["labels"] else ""
        return f"{side['run_id'][:8]}{labels} at {side['at'][:19]}"

    lines = [f"From run {run(diff['from'])} to run {run(diff['to'])}"]
    for c in diff["communes"]:
        lines.append("")
        lines.append(f"Commune {c['commune']} {c['commune_name'] or ''}: "
                     + ("unchanged" if c["changed_cells"] == 0 and not c["sources_changed"] and not c["weights_changed"]
                        else f"{c['changed_cells']} cell(s) changed class"))
        if c.get("note"):
            lines.append(f"  {c['note']}")
        for s in c["sources_changed"]:
            lines.append(f"  source {s['source']} ({s['partner']}): {str(s['from_version'])[:12]} -> {str(s['to_version'])[:12]}")
        for w in c["weights_changed"]:
            lines.append(f"  weight {w['factor']}: {w['from_weight']} -> {w['to_weight']}"
                         + (f" (blocking {w['from_blocking']} -> {w['to_blocking']})"
                            if w["from_blocking"] != w["to_blocking"] else ""))
        moved = [t for t in c["transitions"] if t["from_class"] != t["to_class"]]
        if moved:
            lines.append("  class transitions (cells): " + ", ".join(
                f"{t['from_class']}->{t['to_class']}: {t['cells']}" for t in moved))
            lines.append("  area change per class (m²): " + ", ".join(
                f"{k}: {v:+.0f}" for k, v in sorted(c["area_change_m2"].items())))
    return "\n".join(lines)
