"""The commune report (`iarbre report <code>`): class histogram, top factors and the sources used.

Reads only the published dbt marts (schema `marts` of IARBRE_HOME/warehouse.duckdb), read-only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from iarbre_assets.catalog import load_catalog
from iarbre_assets.warehouse.duck import WarehouseMissingError, connect

MARTS_SCHEMA = "marts"
REQUIRED_MARTS = ("commune_plantability", "factor_contribution", "run_provenance")


class ReportError(RuntimeError):
    """The report cannot be produced; the message says why and what to do."""


class MartsNotBuiltError(ReportError):
    pass


class UnknownCommuneError(ReportError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _rows(con, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def commune_report(code: str, warehouse: Path, top: int = 5, catalogue_path: str | None = None) -> dict[str, Any]:
    """Everything the CLI prints for one commune, as plain data.

    Keys: commune, name, cell_count, area_m2, mean_score, cells_blocked, classes (list of {class, label,
    colour, cells, area_m2, share}), top_factors (up to `top`, by |contribution|), latest_run (or None),
    inputs (source versions read by that run), warehouse.
    Raises MartsNotBuiltError when the warehouse or its marts do not exist yet, UnknownCommuneError
    (listing some valid codes) when `code` is not a commune of the territory.
    """
    path = Path(warehouse).resolve()
    try:
        con = connect(path, read_only=True, spatial=False)
    except WarehouseMissingError:
        raise MartsNotBuiltError(f"{path}: no warehouse yet; run `iarbre run` first to build the marts") from None
    try:
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [MARTS_SCHEMA]
            ).fetchall()
        }
        missing = [m for m in REQUIRED_MARTS if m not in present]
        if missing:
            raise MartsNotBuiltError(
                f"{path}: marts {', '.join(f'{MARTS_SCHEMA}.{m}' for m in missing)} do not exist yet; "
                "run `iarbre run` first (the dbt marts are built after the score)"
            )
        found = _rows(con, f"SELECT * FROM {MARTS_SCHEMA}.commune_plantability WHERE commune = ?", [code])
        if not found:
            known = _rows(
                con, f"SELECT commune, commune_name FROM {MARTS_SCHEMA}.commune_plantability ORDER BY commune"
            )
            sample = ", ".join(f"{r['commune']} ({r['commune_name']})" for r in known[:8])
            more = f" and {len(known) - 8} more" if len(known) > 8 else ""
            if not known:
                raise UnknownCommuneError(f"commune {code!r}: the marts hold no commune yet; run `iarbre run` first")
            raise UnknownCommuneError(f"commune {code!r} is not in the warehouse; known communes: {sample}{more}")
        row = found[0]
        factors = _rows(
            con,
            f"SELECT contribution_rank AS rank, factor, factor_label AS label, meta, effect, weight, blocking, "
            f"covered_cells, covered_area_m2, weighted_contribution, contribution_share AS share "
            f"FROM {MARTS_SCHEMA}.factor_contribution WHERE commune = ? AND abs_contribution > 0 "
            f"ORDER BY contribution_rank LIMIT ?",
            [code, top],
        )
        runs = _rows(
            con,
            f"SELECT DISTINCT run_id, materialised_at, code_version, catalogue_version, catalogue_sha256, "
            f"territory, cells FROM {MARTS_SCHEMA}.run_provenance WHERE commune = ? AND is_latest_run",
            [code],
        )
        latest = runs[0] if runs else None
        inputs = []
        if latest is not None:
            inputs = _rows(
                con,
                f"SELECT source, source_label, partner, partner_name, origin, version, version_short, "
                f"normalised_sha256, version_fetched_at AS fetched_at, version_accepted_at AS accepted_at, "
                f"licence FROM {MARTS_SCHEMA}.run_provenance "
                f"WHERE commune = ? AND run_id = ? AND source IS NOT NULL ORDER BY source",
                [code, latest["run_id"]],
            )
    finally:
        con.close()

    catalogue = load_catalog(catalogue_path)
    classes = []
    for cdef in sorted(catalogue.classes, key=lambda c: c.class_):
        c = cdef.class_
        classes.append({
            "class": c,
            "label": cdef.label,
            "colour": cdef.colour,
            "cells": int(row.get(f"cells_class_{c}") or 0),
            "area_m2": float(row.get(f"area_m2_class_{c}") or 0.0),
            "share": float(row.get(f"share_class_{c}") or 0.0),
        })
    return {
        "commune": row["commune"],
        "name": row["commune_name"],
        "cell_count": int(row["cell_count"]),
        "area_m2": float(row["area_m2"]),
        "mean_score": None if row["mean_score"] is None else float(row["mean_score"]),
        "cells_blocked": int(row["cells_blocked"]),
        "classes": classes,
        "top_factors": factors,
        "latest_run": latest,
        "inputs": inputs,
        "warehouse": str(path),
    }


def _num(value: float, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}".replace(",", " ")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "-" if value is None else str(value)


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        text = "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return text.rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_commune_report(report: dict[str, Any]) -> str:
    """Plain-text rendering of `commune_report(...)`."""
    out = [f"Commune {report['commune']} - {report['name']}"]
    mean = "-" if report["mean_score"] is None else f"{report['mean_score']:.2f}"
    out.append(
        f"Scored cells: {_num(report['cell_count'])} ({_num(report['area_m2'])} m2)   "
        f"mean score: {mean}   blocked cells: {_num(report['cells_blocked'])}"
    )
    out.append("")
    out += _table(
        ["Class", "Label", "Cells", "Area (m2)", "Share"],
        [[str(c["class"]), c["label"], _num(c["cells"]), _num(c["area_m2"]), f"{100 * c['share']:.1f} %"]
         for c in report["classes"]],
        right={0, 2, 3, 4},
    )
    out.append("")
    if report["top_factors"]:
        out.append("Factors driving the score (largest absolute contribution first)")
        out += _table(
            ["#", "Factor", "Effect", "Weight", "Covered (m2)", "Contribution", "Share"],
            [[str(f["rank"]), f"{f['label']} ({f['factor']})", f["effect"], f"{f['weight']:+g}",
              _num(f["covered_area_m2"]), f"{f['weighted_contribution']:+.1f}", f"{100 * f['share']:.1f} %"]
             for f in report["top_factors"]],
            right={0, 3, 4, 5, 6},
        )
    else:
        out.append("Factors driving the score: none covers this commune")
    out.append("")
    run = report["latest_run"]
    if run is None:
        out.append("Latest score run: none recorded")
    else:
        out.append(
            f"Latest score run {run['run_id']} at {_when(run['materialised_at'])} UTC "
            f"(code {run['code_version']}, catalogue {run['catalogue_version']}, territory {run['territory']})"
        )
        if report["inputs"]:
            out += _table(
                ["Source", "Partner", "Version", "Fetched (UTC)", "Origin"],
                [[i["source"], i["partner"], i["version_short"], _when(i["fetched_at"]), i["origin"]]
                 for i in report["inputs"]],
                right=set(),
            )
        else:
            out.append("  (no input source versions recorded)")
    return "\n".join(out) + "\n"
