"""marts_match_outputs: the published marts say what the files say, or the check fails loudly.

Compared per commune, against the store (the score records and the tiles GeoParquet the marts were built
from): cells, cells per class, mean score, the latest score run, the source versions that run used, and
each source's version in use in the inventory. Blocking (ERROR) on marts/commune_plantability; it runs in
every run that builds the marts, after them.
"""

import dagster as dg
from dagster import AssetCheckExecutionContext

from ..resources import TerritoryResource, WarehouseResource
from ..store import read_json

COMMUNE_MART = dg.AssetKey(["marts", "commune_plantability"])
PROVENANCE_MART = dg.AssetKey(["marts", "run_provenance"])
INVENTORY_MART = dg.AssetKey(["marts", "source_inventory"])
SCORE_TOLERANCE = 1e-4


def compare(platform, con) -> list[str]:
    """Every disagreement between the marts and the store's outputs, as readable lines (empty: consistent)."""
    store = platform.store
    problems = []
    codes = [c for c in platform.commune_codes if store.score_record(c).exists()]
    files = ", ".join("'" + str(store.tiles(c)).replace("'", "''") + "'" for c in codes if store.tiles(c).exists())
    truth = {}
    if files:
        for commune, cls, cells, total in con.execute(
                f'SELECT commune, "class", count(*), sum(score::DOUBLE) FROM read_parquet([{files}]) '
                "GROUP BY ALL").fetchall():
            entry = truth.setdefault(commune, {"cells": 0, "sum": 0.0, "by_class": {}})
            entry["cells"] += cells
            entry["sum"] += total
            entry["by_class"][int(cls)] = cells
    classes = sorted([b.class_ for b in platform.catalogue.scoring.class_breaks] + [platform.catalogue.scoring.class_above])
    columns = ", ".join(f"cells_class_{c}" for c in classes)
    marts = {row[0]: row for row in con.execute(
        f"SELECT commune, cell_count, mean_score, {columns} FROM marts.commune_plantability").fetchall()}
    latest = {}
    for commune, run_id, source, version in con.execute(
            "SELECT commune, run_id, source, version FROM marts.run_provenance WHERE is_latest_run").fetchall():
        entry = latest.setdefault(commune, {"runs": set(), "sources": {}})
        entry["runs"].add(run_id)
        if source is not None:
            entry["sources"][source] = version
    for code in codes:
        record = read_json(store.score_record(code))
        cells = record["outputs"]["cells"]
        tiles = truth.get(code, {"cells": 0, "sum": 0.0, "by_class": {}})
        mart = marts.get(code)
        if mart is None:
            problems.append(f"{code}: missing from marts.commune_plantability")
            continue
        if mart[1] != cells or tiles["cells"] != cells:
            problems.append(f"{code}: cells: score record {cells}, tiles {tiles['cells']}, mart {mart[1]}")
        for cls, mart_cells in zip(classes, mart[3:]):
            if (mart_cells or 0) != tiles["by_class"].get(cls, 0):
                problems.append(f"{code}: class {cls}: tiles {tiles['by_class'].get(cls, 0)} cells, mart {mart_cells}")
        if cells and (mart[2] is None or abs(mart[2] - tiles["sum"] / cells) > SCORE_TOLERANCE):
            problems.append(f"{code}: mean score: tiles {tiles['sum'] / cells:.6f}, mart {mart[2]}")
        info = latest.get(code)
        if info is None or info["runs"] != {record["run_id"]}:
            problems.append(f"{code}: latest run: score record {record['run_id']}, marts.run_provenance "
                            f"{sorted(info['runs']) if info else 'none'}")
            continue
        used = {s["slug"]: s["raw_sha256"] for s in record["sources"]}
        if info["sources"] != used:
            diff = sorted(k for k in set(used) | set(info["sources"]) if used.get(k) != info["sources"].get(k))
            problems.append(f"{code}: source versions differ from the score record for {diff}")
    inventory = dict(con.execute("SELECT source, version FROM marts.source_inventory WHERE has_current_version")
                     .fetchall())
    for slug in platform.sources:
        current = store.versions(slug).current()
        if current is not None and inventory.get(slug) != current.raw_sha256:
            problems.append(f"source {slug}: version in use {current.raw_sha256[:12]}, "
                            f"marts.source_inventory {str(inventory.get(slug))[:12]}")
    return problems


@dg.asset_check(asset=COMMUNE_MART, name="marts_match_outputs", blocking=True,
                additional_deps=[PROVENANCE_MART, INVENTORY_MART],
                description="The marts agree with the tiles and score records they were built from: cells, class "
                            "areas, mean score, latest run per commune and the source versions used.")
def marts_match_outputs(context: AssetCheckExecutionContext, territory: TerritoryResource,
                        warehouse: WarehouseResource) -> dg.AssetCheckResult:
    platform = territory.platform
    with warehouse.get_connection(read_only=True, spatial=False) as con:
        problems = compare(platform, con)
    for line in problems[:20]:
        context.log.error(f"marts diverge from the outputs: {line}")
    return dg.AssetCheckResult(
        passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        description="marts agree with the tiles and score records" if not problems
        else f"{len(problems)} disagreement(s): {problems[0]}",
        metadata={"disagreements": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none"),
                  "communes_checked": len(platform.commune_codes)})
