"""plantability_class, partitioned by commune: classes 0, 2, 4, 6, 8, 10 and what they changed.

Each materialisation also states, per commune, the class transitions from the classes it replaced
(iarbre.score_diff, read by the `score_diff` mart): what a partner update did, in the UI.
"""

import json

import dagster as dg
import pandas as pd
from dagster import AssetExecutionContext

from ..automation.conditions import CODE_CHANGED
from ..compute.pool import map_tasks
from ..compute.scoring import ClassTask, run_class
from ..platform import Platform
from ..resources import TerritoryResource, WarehouseResource
from ..store import atomic_write_text
from ..warehouse import writes
from ..warehouse.schema import contract
from .keys import CLASS_KEY, GROUP_SCORE, SCORE_KEY, SINGLE_RUN, STEWARDS, WAREHOUSE_POOL, communes_partitions, md_table, stable_hash

CLASS_DRIFT_BAND = 0.10  # warn when a class share moves by more than 10 points for the same communes


def valid_classes(platform: Platform) -> list[int]:
    scoring = platform.catalogue.scoring
    return sorted([b.class_ for b in scoring.class_breaks] + [scoring.class_above])


def build_class_asset(platform: Platform) -> dg.AssetsDefinition:
    scoring = platform.catalogue.scoring
    classes = valid_classes(platform)
    checks = [
        dg.AssetCheckSpec("classes_valid", asset=CLASS_KEY, blocking=True,
                          description=f"Every class is one of {classes}."),
        dg.AssetCheckSpec("no_nodata_inside_communes", asset=CLASS_KEY, blocking=True,
                          description="Every cell whose centre lies in a commune has a class."),
        dg.AssetCheckSpec("class_distribution_drift", asset=CLASS_KEY, blocking=False,
                          description=f"No class share moved by more than {CLASS_DRIFT_BAND:.0%} since the "
                                      "previous materialisation of the same communes (warning)."),
    ]

    @dg.asset(
        key=CLASS_KEY,
        deps=[SCORE_KEY],
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_SCORE,
        owners=[STEWARDS],
        kinds={"numpy", "geotiff", "duckdb"},
        description="Plantability class per 5 m cell (uint8, 255 = nodata): " + ", ".join(
            f"S ≤ {b.max:g} → {b.class_}" for b in scoring.class_breaks) + f", above → {scoring.class_above}. "
            "The transitions from the previous classes go to iarbre.score_diff.",
        code_version="class1-" + stable_hash(scoring.model_dump(mode="json", by_alias=True)),
        automation_condition=CODE_CHANGED,
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _class(context: AssetExecutionContext, territory: TerritoryResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        platform = territory.platform
        scoring = platform.catalogue.scoring
        breaks = [(b.max, b.class_) for b in scoring.class_breaks]
        communes = list(context.partition_keys)
        platform.store.history.register_run(context.run.run_id, communes)
        tasks = [ClassTask(commune=code, store=platform.store, class_breaks=breaks, class_above=scoring.class_above,
                           run_id=context.run.run_id) for code in communes]
        with territory.progress(context.run.run_id).stage("classes", len(tasks)) as advance:
            records = map_tasks(run_class, tasks, size=lambda t: platform.windows[t.commune].width
                                * platform.windows[t.commune].height, progress=advance)
        diff = pd.DataFrame([{"commune": r["commune"], "from_run": r["from_run"], "to_run": context.run.run_id, **t}
                             for r in records for t in r["transitions"]],
                            columns=["commune", "from_run", "to_run", "from_class", "to_class", "cells"])
        with warehouse.get_connection() as con:
            writes.write_score_diff(con, contract(platform.catalogue), diff, communes)
        pruned = platform.store.history.prune(platform.territory.retention.score_runs)
        invalid = {r["commune"]: sorted(set(r["counts"]) - set(classes)) for r in records
                   if set(r["counts"]) - set(classes)}
        nodata = {r["commune"]: r["nodata_inside"] for r in records if r["nodata_inside"]}
        drift, drift_table = _class_drift(platform, records, classes)
        totals = {c: sum(r["counts"].get(c, 0) for r in records) for c in classes}
        all_cells = max(sum(totals.values()), 1)
        labels = {c.class_: c.label for c in platform.catalogue.classes}
        dist_rows = [{"class": c, "label": labels[c], "cells": totals[c], "share": f"{totals[c] / all_cells:.1%}"}
                     for c in classes]
        changed = diff[(diff["from_class"].astype("object") != diff["to_class"].astype("object"))
                       & diff["from_run"].notna()]
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "distribution": md_table(dist_rows, ["class", "label", "cells", "share"]),
                "changed_cells": int(changed["cells"].sum()) if len(changed) else 0,
                "transitions": md_table(changed.to_dict("records"), ["commune", "from_class", "to_class", "cells"])
                if len(changed) else dg.MetadataValue.md("no cell changed class"),
                "dagster/uri": dg.MetadataValue.path(str(platform.store.score_dir)),
                "runs_no_longer_kept": dg.MetadataValue.json(pruned),
            },
            check_results=[
                dg.AssetCheckResult(check_name="classes_valid", passed=not invalid,
                                    metadata={"invalid": dg.MetadataValue.json(invalid)}),
                dg.AssetCheckResult(check_name="no_nodata_inside_communes", passed=not nodata,
                                    metadata={"nodata_cells": dg.MetadataValue.json(nodata)}),
                dg.AssetCheckResult(check_name="class_distribution_drift", passed=not drift,
                                    severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"shares": drift_table, "band": CLASS_DRIFT_BAND}),
            ],
        )

    return _class


def _class_drift(platform: Platform, records: list[dict], classes: list[int]):
    """Compare each commune's class shares with the previous materialisation; remember the new ones."""
    path = platform.store.class_distribution_state
    previous = json.loads(path.read_text()) if path.exists() else {}
    rows, drifted = [], []
    current = dict(previous)
    for r in records:
        total = max(sum(r["counts"].values()), 1)
        shares = {str(c): r["counts"].get(c, 0) / total for c in classes}
        before = previous.get(r["commune"])
        if before:
            worst = max(classes, key=lambda c: abs(shares[str(c)] - before.get(str(c), 0.0)))
            delta = shares[str(worst)] - before.get(str(worst), 0.0)
            rows.append({"commune": r["commune"], "class": worst, "before": f"{before.get(str(worst), 0):.1%}",
                         "now": f"{shares[str(worst)]:.1%}", "change": f"{delta:+.1%}"})
            if abs(delta) > CLASS_DRIFT_BAND:
                drifted.append(r["commune"])
        current[r["commune"]] = shares
    atomic_write_text(path, json.dumps(current, indent=1, sort_keys=True))
    columns = ["commune", "class", "before", "now", "change"]
    return drifted, md_table(rows, columns) if rows else dg.MetadataValue.md("first materialisation: no comparison")
