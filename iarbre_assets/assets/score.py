"""Score assets, partitioned by commune: plantability_score -> plantability_class -> tiles.

plantability_score  float32 GeoTIFF per commune (nodata -9999): -5 where a blocking factor covers the cell,
                    otherwise the weighted sum of coverages. Writes factor statistics and the run's
                    provenance (which source versions, weights and code) to the warehouse.
plantability_class  uint8 GeoTIFF per commune (255 = nodata): classes 0, 2, 4, 6, 8, 10.
tiles               one row per cell (GeoParquet per commune + iarbre.tiles in DuckDB): score, class,
                    blocking factor, top factors, meta-factor sums, IRIS, display-only layers (QPV).
"""


import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext

from ..compute.constraints import coverage_paths, footprint_paths
from ..compute.pool import map_tasks
from ..compute.scoring import (
    CLASS_NODATA,
    ClassTask,
    FactorInput,
    ScoreTask,
    TilesTask,
    run_class,
    run_score,
    run_tiles,
    score_paths,
)
from ..geo.preview import class_preview_png, paste_samples, preview_lattice, sample_on_lattice
from ..geo.raster_io import read_geotiff
from ..paths import atomic_write_text
from ..platform import Platform
from ..provenance.source_versions import SourceVersions
from .common import (
    EAGER,
    GROUP_SCORE,
    STEWARDS,
    WAREHOUSE_POOL,
    communes_partitions,
    coverage_key,
    footprint_key,
    source_key,
    stable_hash,
)
from .constraints import SINGLE_RUN, _table, communes_layer
from .warehouse_tables import load_tiles, write_partitioned

SCORE_KEY = dg.AssetKey(["plantability_score"])
CLASS_KEY = dg.AssetKey(["plantability_class"])
TILES_KEY = dg.AssetKey(["tiles"])
CLASS_DRIFT_BAND = 0.10  # warn when a class share moves by more than 10 points for the same communes


def scoring_code_version(platform: Platform) -> str:
    """Weights, blocking and class thresholds: change one in the catalogue and the score is recomputed."""
    catalogue = platform.catalogue
    return "score1-" + stable_hash({
        "factors": [(f.slug, f.weight, f.blocking) for f in platform.scored_factors],
        "scoring": catalogue.scoring.model_dump(mode="json", by_alias=True),
    })


def score_bounds(platform: Platform) -> tuple[float, float]:
    additive = [f for f in platform.scored_factors if not f.blocking]
    low = sum(f.weight for f in additive if f.weight < 0)
    high = sum(f.weight for f in additive if f.weight > 0)
    if any(f.blocking for f in platform.scored_factors):
        low = min(low, platform.catalogue.scoring.blocked_score)
    return low, high


def factor_inputs(platform: Platform, commune: str) -> list[FactorInput]:
    return [
        FactorInput(slug=f.slug, label=f.label, weight=f.weight, blocking=f.blocking, meta=f.meta,
                    coverage_path=str(coverage_paths(str(platform.layout.constraint_dir(f.slug)), commune)[0]))
        for f in platform.scored_factors
    ]


def commune_provenance(platform: Platform, commune: str) -> dict:
    """Per factor: the footprint and coverage hashes and the exact source versions behind them."""
    factors = {}
    for factor in platform.scored_factors:
        out_dir = str(platform.layout.constraint_dir(factor.slug))
        footprint = json.loads(footprint_paths(out_dir, commune)[1].read_text())
        coverage = json.loads(coverage_paths(out_dir, commune)[1].read_text())
        factors[factor.slug] = {
            "weight": factor.weight,
            "blocking": factor.blocking,
            "catalogue_entry": footprint["catalogue_entry"],
            "footprint_sha256": footprint["sha256"],
            "coverage_sha256": coverage["coverage_sha256"],
            "footprint_code_version": footprint.get("code_version"),
            "sources": footprint["sources"],
        }
    return {"catalogue_version": platform.catalogue.version, "factors": factors}


def catalogue_sha256(platform: Platform) -> str:
    import hashlib
    import os

    from ..catalog import DEFAULT_CATALOG

    path = Path(os.environ.get("IARBRE_CATALOG") or DEFAULT_CATALOG)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def preview_markdown(png: bytes, caption: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})\n\n{caption}")


def class_preview(platform: Platform, communes: list[str], samples=None, max_px: int = 480) -> bytes:
    """A PNG of the class map over the communes' windows, sampled on a coarse lattice (cells, never 1 m).

    `samples` come from the workers (see compute/scoring.run_score); otherwise the class rasters are read.
    """
    extent, step = preview_lattice([platform.windows[c] for c in communes], max_px)
    if samples is None:
        samples = [sample_on_lattice(read_geotiff(score_paths(str(platform.layout.score), c)[1])[0],
                                     platform.windows[c], extent, step) for c in communes]
    canvas = paste_samples(samples, extent, step, CLASS_NODATA)
    return class_preview_png(canvas, platform.catalogue.class_colours(), nodata=CLASS_NODATA, max_px=max_px)


# ------------------------------------------------------------------------------------------------
def build_score_asset(platform: Platform) -> dg.AssetsDefinition:
    low, high = score_bounds(platform)
    checks = [
        dg.AssetCheckSpec("score_within_bounds", asset=SCORE_KEY, blocking=True,
                          description=f"Every score lies in [{low:g}, {high:g}], the range the weights allow."),
        dg.AssetCheckSpec("no_nodata_inside_communes", asset=SCORE_KEY, blocking=True,
                          description="Every cell whose centre lies in a commune has a score."),
    ]
    code_version = scoring_code_version(platform)

    @dg.asset(
        key=SCORE_KEY,
        deps=[coverage_key(f.slug) for f in platform.scored_factors] + [source_key("communes")],
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_SCORE,
        owners=[STEWARDS],
        kinds={"numpy", "geotiff", "duckdb"},
        description=(
            "Plantability score per 5 m cell (float32, nodata -9999): "
            f"{platform.catalogue.scoring.blocked_score:g} where a blocking factor covers any 1 m sub-pixel, "
            "otherwise Σ weight × coverage / 100 over the scored factors (QPV is display only)."
        ),
        code_version=code_version,
        automation_condition=EAGER,
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _score(context: AssetExecutionContext) -> dg.MaterializeResult:
        layer = communes_layer(platform)
        out_dir = str(platform.layout.score)
        run_id = context.run.run_id
        breaks = [(b.max, b.class_) for b in platform.catalogue.scoring.class_breaks]
        extent, step = preview_lattice([platform.windows[c] for c in context.partition_keys], 480)
        tasks = [
            ScoreTask(commune=code, window=platform.windows[code], factors=factor_inputs(platform, code),
                      communes=layer, out_dir=out_dir, blocked_score=platform.catalogue.scoring.blocked_score,
                      run_id=run_id, provenance=commune_provenance(platform, code), class_breaks=breaks,
                      class_above=platform.catalogue.scoring.class_above, preview=(extent, step))
            for code in context.partition_keys
        ]
        records = map_tasks(run_score, tasks, size=lambda t: t.window.width * t.window.height)
        _write_score_tables(platform, records, run_id, code_version)
        out_of_bounds = [r["commune"] for r in records
                         if r["score_min"] is not None and (r["score_min"] < low - 1e-6 or r["score_max"] > high + 1e-6)]
        nodata = {r["commune"]: r["nodata_inside"] for r in records if r["nodata_inside"]}
        empty = [r["commune"] for r in records if r["cells"] == 0]
        rows = [{"commune": r["commune"], "cells": r["cells"], "blocked": r["blocked_cells"],
                 "min": _round(r["score_min"]), "mean": _round(r["score_mean"]), "max": _round(r["score_max"]),
                 "sha256": r["score_sha256"][:12]} for r in records]
        png = class_preview(platform, list(context.partition_keys), [r.pop("preview") for r in records])
        cells = sum(r["cells"] for r in records)
        return dg.MaterializeResult(
            metadata={
                "preview": preview_markdown(png, f"Classes of {len(records)} commune(s), published colours"),
                "communes": len(records),
                "cells": cells,
                "blocked_cells": sum(r["blocked_cells"] for r in records),
                "mean_score": _round(sum((r["score_mean"] or 0) * r["cells"] for r in records) / max(cells, 1)),
                "per_commune": _table(rows, list(rows[0]) if rows else ["commune"]),
                "weights": dg.MetadataValue.json({f.slug: f.weight for f in platform.scored_factors}),
                "catalogue_version": platform.catalogue.version,
                "catalogue_sha256": catalogue_sha256(platform),
                "dagster/uri": dg.MetadataValue.path(out_dir),
            },
            check_results=[
                dg.AssetCheckResult(check_name="score_within_bounds", passed=not out_of_bounds,
                                    metadata={"bounds": dg.MetadataValue.json([low, high]),
                                              "communes_out_of_bounds": dg.MetadataValue.json(out_of_bounds)}),
                dg.AssetCheckResult(check_name="no_nodata_inside_communes", passed=not nodata and not empty,
                                    metadata={"nodata_cells": dg.MetadataValue.json(nodata),
                                              "communes_without_cells": dg.MetadataValue.json(empty)}),
            ],
        )

    return _score


def _round(value, digits: int = 3):
    return None if value is None else round(float(value), digits)


def _write_score_tables(platform: Platform, records: list[dict], run_id: str, code_version: str) -> None:
    import pandas as pd

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    communes = [r["commune"] for r in records]
    stats, runs, inputs = [], [], []
    catalogue_hash = catalogue_sha256(platform)
    for r in records:
        for f in r["factors"]:
            stats.append({"commune": r["commune"], "factor": f["slug"], "label": f["label"], "weight": f["weight"],
                          "blocking": f["blocking"], "meta": f["meta"], "covered_cells": f["covered_cells"],
                          "covered_area_m2": f["covered_area_m2"],
                          "weighted_contribution": f["weighted_contribution"], "run_id": run_id})
        runs.append({"run_id": run_id, "commune": r["commune"], "materialised_at": now, "code_version": code_version,
                     "catalogue_version": platform.catalogue.version, "catalogue_sha256": catalogue_hash,
                     "territory": platform.territory.name, "cells": r["cells"]})
        seen = set()
        for factor in r["provenance"]["factors"].values():
            for source in factor["sources"]:
                if source["slug"] in seen:
                    continue
                seen.add(source["slug"])
                inputs.append({"run_id": run_id, "commune": r["commune"], "source": source["slug"],
                               "version": source["raw_sha256"], "normalised_sha256": source["normalised_sha256"],
                               "partner": source["partner"], "origin": source["origin"]})
    write_partitioned("factor_stats", pd.DataFrame(stats), "commune", communes)
    _append_runs(runs, inputs)


def _append_runs(runs: list[dict], inputs: list[dict]) -> None:
    """Score runs accumulate (the history auditors read); a re-run of the same run id replaces its rows."""
    import pandas as pd

    from ..warehouse.duck import connect
    from ..warehouse.schema import ensure_schema

    frame_runs, frame_inputs = pd.DataFrame(runs), pd.DataFrame(inputs)
    with connect() as con:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            for table, frame in (("score_runs", frame_runs), ("score_run_inputs", frame_inputs)):
                keys = frame[["run_id", "commune"]].drop_duplicates()
                con.register("_keys", keys)
                con.execute(f"DELETE FROM iarbre.{table} WHERE (run_id, commune) IN (SELECT run_id, commune FROM _keys)")
                con.unregister("_keys")
                con.register("_rows", frame)
                cols = ", ".join(f'"{c}"' for c in frame.columns)
                con.execute(f"INSERT INTO iarbre.{table} ({cols}) SELECT {cols} FROM _rows")
                con.unregister("_rows")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def build_class_asset(platform: Platform) -> dg.AssetsDefinition:
    scoring = platform.catalogue.scoring
    valid_classes = sorted([b.class_ for b in scoring.class_breaks] + [scoring.class_above])
    checks = [
        dg.AssetCheckSpec("classes_valid", asset=CLASS_KEY, blocking=True,
                          description=f"Every class is one of {valid_classes}."),
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
        kinds={"numpy", "geotiff"},
        description="Plantability class per 5 m cell (uint8, 255 = nodata): " + ", ".join(
            f"S ≤ {b.max:g} → {b.class_}" for b in scoring.class_breaks) + f", above → {scoring.class_above}.",
        code_version="class1-" + stable_hash(scoring.model_dump(mode="json", by_alias=True)),
        automation_condition=EAGER,
        check_specs=checks,
    )
    def _class(context: AssetExecutionContext) -> dg.MaterializeResult:
        out_dir = str(platform.layout.score)
        breaks = [(b.max, b.class_) for b in scoring.class_breaks]
        tasks = [ClassTask(commune=code, score_path=str(score_paths(out_dir, code)[0]), out_dir=out_dir,
                           class_breaks=breaks, class_above=scoring.class_above)
                 for code in context.partition_keys]
        records = map_tasks(run_class, tasks, size=lambda t: _cells(platform, t.commune))
        invalid = {r["commune"]: sorted(set(r["counts"]) - set(valid_classes)) for r in records
                   if set(r["counts"]) - set(valid_classes)}
        nodata = {r["commune"]: r["nodata_inside"] for r in records if r["nodata_inside"]}
        drift, drift_table = _class_drift(platform, records, valid_classes)
        totals = {c: sum(r["counts"].get(c, 0) for r in records) for c in valid_classes}
        all_cells = max(sum(totals.values()), 1)
        labels = {c.class_: c.label for c in platform.catalogue.classes}
        dist_rows = [{"class": c, "label": labels[c], "cells": totals[c], "share": f"{totals[c] / all_cells:.1%}"}
                     for c in valid_classes]
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "distribution": _table(dist_rows, ["class", "label", "cells", "share"]),
                "dagster/uri": dg.MetadataValue.path(out_dir),
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
    path = platform.layout.score / "class_distribution.json"
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
    return drifted, _table(rows, columns) if rows else dg.MetadataValue.md("first materialisation: no comparison")


def build_tiles_asset(platform: Platform) -> dg.AssetsDefinition:
    display = [f for f in platform.factors if f.display_only]
    meta_slugs = [m.slug for m in platform.catalogue.meta_factors]
    deps = [CLASS_KEY, SCORE_KEY] + [coverage_key(f.slug) for f in platform.scored_factors]
    deps += [footprint_key(f.slug) for f in display]
    if platform.territory.iris is not None:
        deps.append(source_key("iris"))
    checks = [dg.AssetCheckSpec("one_row_per_cell", asset=TILES_KEY, blocking=True,
                                description="Each commune has exactly one row per cell it owns.")]

    @dg.asset(
        key=TILES_KEY,
        deps=deps,
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_SCORE,
        owners=[STEWARDS],
        kinds={"parquet", "duckdb"},
        description=("One row per 5 m cell: cell id, centre x/y, commune, IRIS, score, class, blocking factor, "
                     "top factors (networks aggregated), meta-factor sums, display-only layers. GeoParquet per "
                     "commune (cell-centre points) and table iarbre.tiles in the warehouse."),
        code_version="tiles1",
        automation_condition=EAGER,
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _tiles(context: AssetExecutionContext) -> dg.MaterializeResult:
        scoring = platform.catalogue.scoring
        layer = communes_layer(platform)
        names = [f.slug for f in platform.scored_factors]
        index = {slug: i for i, slug in enumerate(names)}
        meta_index = {m: [index[s] for s in platform.catalogue.meta_mapping[m] if s in index] for m in meta_slugs}
        groups = {m.slug: meta_index[m.slug] for m in platform.catalogue.meta_factors
                  if m.aggregate_in_top and meta_index[m.slug]}
        iris = None
        if platform.territory.iris is not None:
            current = SourceVersions(platform.layout, "iris").require_current()
            import geopandas as gpd

            frame = gpd.read_parquet(current.data_path(platform.layout))
            code_field = platform.territory.iris.code_field
            iris = {"path": str(current.data_path(platform.layout)), "code_field": code_field,
                    "codes": sorted(frame[code_field].astype(str))}
        displays = {}
        tasks = []
        for code in context.partition_keys:
            displays = {f.slug: str(footprint_paths(str(platform.layout.constraint_dir(f.slug)), code)[0])
                        for f in display}
            _, class_path, _ = score_paths(str(platform.layout.score), code)
            tasks.append(TilesTask(
                commune=code, window=platform.windows[code], factors=factor_inputs(platform, code),
                score_path=str(score_paths(str(platform.layout.score), code)[0]), class_path=str(class_path),
                out_path=str(platform.layout.tiles / f"{code}.parquet"), communes=layer, meta_index=meta_index,
                top_groups=groups, top_k=scoring.top_factors, run_id=context.run.run_id, iris=iris,
                display_footprints=displays))
        records = map_tasks(run_tiles, tasks, size=lambda t: t.window.width * t.window.height)
        expected = _cells_per_commune(platform, context.partition_keys)
        mismatched = {r["commune"]: (r["rows"], expected.get(r["commune"])) for r in records
                      if r["rows"] != expected.get(r["commune"])}
        loaded = load_tiles([r["path"] for r in records], [r["commune"] for r in records])
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "dagster/row_count": loaded,
                "rows_per_commune": dg.MetadataValue.json({r["commune"]: r["rows"] for r in records}),
                "display_layers": dg.MetadataValue.json(sorted(displays)),
                "dagster/uri": dg.MetadataValue.path(str(platform.layout.tiles)),
                "warehouse_table": "iarbre.tiles",
            },
            check_results=[dg.AssetCheckResult(check_name="one_row_per_cell", passed=not mismatched,
                                               metadata={"mismatched": dg.MetadataValue.json(mismatched)})],
        )

    return _tiles


def _cells(platform: Platform, commune: str) -> int:
    window = platform.windows[commune]
    return window.width * window.height


def _cells_per_commune(platform: Platform, communes) -> dict[str, int]:
    out = {}
    for code in communes:
        sidecar = score_paths(str(platform.layout.score), code)[2]
        out[code] = json.loads(sidecar.read_text())["cells"]
    return out


def build_score_defs(platform: Platform) -> list:
    return [build_score_asset(platform), build_class_asset(platform), build_tiles_asset(platform)]
