"""plantability_score, partitioned by commune: the score raster, its record, and what the run used.

-5 where a blocking factor covers the cell, otherwise Σ weight × coverage / 100 (geo/score.py). Each
commune's *score record* (schema iarbre.score-record/1) states everything the score was computed from:
weights, blocking flags, class breaks, grid, code, catalogue and package versions, git commit, the source
versions behind every factor and the input materialisations. `explain`, `diff` and the W3C PROV export read
that record, never today's catalogue. The warehouse gets the same, per run (score_runs, score_run_inputs,
score_run_weights, factor_stats).
"""

import base64
import json
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from dagster import AssetExecutionContext

from ..automation.conditions import CODE_CHANGED
from ..compute.pool import map_tasks
from ..compute.scoring import FactorInput, ScoreTask, run_score
from ..geo.preview import class_preview_png, paste_samples, preview_lattice, sample_on_lattice
from ..geo.score import CLASS_NODATA
from ..platform import Platform
from ..provenance.freshness import source_freshness
from ..provenance.prov import SCHEMA, prov_json
from ..resources import TerritoryResource, WarehouseResource
from ..store import read_json, write_json
from ..store.rasters import read_geotiff
from ..version import git_commit, package_version
from ..warehouse import writes
from ..warehouse.schema import contract
from .constraints import communes_layer
from .keys import (
    GROUP_SCORE,
    SCORE_KEY,
    SINGLE_RUN,
    STEWARDS,
    WAREHOUSE_POOL,
    communes_partitions,
    coverage_key,
    md_table,
    source_key,
    stable_hash,
)


def scoring_code_version(platform: Platform) -> str:
    """Weights, blocking and class thresholds: change one in the catalogue and the score is recomputed."""
    return "score1-" + stable_hash({
        "factors": [(f.slug, f.weight, f.blocking) for f in platform.scored_factors],
        "scoring": platform.catalogue.scoring.model_dump(mode="json", by_alias=True),
    })


def score_bounds(platform: Platform) -> tuple[float, float]:
    additive = [f for f in platform.scored_factors if not f.blocking]
    low = sum(f.weight for f in additive if f.weight < 0)
    high = sum(f.weight for f in additive if f.weight > 0)
    if any(f.blocking for f in platform.scored_factors):
        low = min(low, platform.catalogue.scoring.blocked_score)
    return low, high


def factor_inputs(platform: Platform) -> list[FactorInput]:
    return [FactorInput(slug=f.slug, label=f.label, weight=f.weight, blocking=f.blocking, meta=f.meta)
            for f in platform.scored_factors]


def score_record_base(platform: Platform, commune: str, run_id: str, at: str) -> dict:
    """What a score materialisation of `commune` uses, read from the files the constraints wrote."""
    store, scoring, grid = platform.store, platform.catalogue.scoring, platform.territory.grid
    factors, sources, inputs = [], {}, []
    for factor in platform.scored_factors:
        footprint = read_json(store.footprint_record(factor.slug, commune))
        coverage = read_json(store.coverage_record(factor.slug, commune))
        factors.append({
            "slug": factor.slug, "label": factor.label, "weight": factor.weight, "blocking": factor.blocking,
            "meta": factor.meta, "catalogue_entry": footprint["catalogue_entry"],
            "footprint_sha256": footprint["sha256"], "coverage_sha256": coverage["coverage_sha256"],
            "footprint_code_version": footprint.get("code_version"),
            "sources": [s["slug"] for s in footprint["sources"]],
        })
        inputs.append({"asset_key": f"coverage/{factor.slug}", "partition": commune,
                       "run_id": coverage.get("run_id"), "coverage_sha256": coverage["coverage_sha256"]})
        for used in footprint["sources"]:
            sources.setdefault(used["slug"], used)
    source_rows = []
    for slug, used in sorted(sources.items()):
        definition = platform.sources[slug]
        partner = platform.catalogue.partners.get(definition.partner)
        try:
            raw = store.raw.version(slug, used["raw_sha256"])
            delivered, connector = raw.first_seen_at, raw.connector
        except FileNotFoundError:
            delivered, connector = None, definition.connector
        accepted = store.versions(slug).current()
        source_rows.append({
            "slug": slug, "label": definition.label, "partner": definition.partner,
            "partner_name": partner.name if partner else definition.partner, "origin": used["origin"],
            "connector": connector, "raw_sha256": used["raw_sha256"], "normalised_sha256": used["normalised_sha256"],
            "version": used["version"], "delivered_at": delivered, "licence": definition.licence,
            "accepted_at": accepted.accepted_at if accepted and accepted.version == used["version"] else None,
        })
    dated = [s for s in source_rows if s["delivered_at"]]
    oldest = min(dated, key=lambda s: s["delivered_at"]) if dated else None
    return {
        "schema": SCHEMA,
        "commune_name": str(platform.communes.set_index("code").loc[commune, "name"]),
        "materialised_at": at,
        "territory": {"name": platform.territory.name, "file": platform.territory.file},
        "grid": {"crs": grid.crs, "cell_size_m": grid.cell_size_m, "subpixel_m": grid.subpixel_m,
                 "window": list(platform.windows[commune].bounds)},
        "scoring": {"blocked_score": scoring.blocked_score,
                    "class_breaks": [[b.max, b.class_] for b in scoring.class_breaks],
                    "class_above": scoring.class_above, "top_factors": scoring.top_factors,
                    "class_labels": {str(c.class_): c.label for c in platform.catalogue.classes}},
        "code": {"score_code_version": scoring_code_version(platform),
                 "catalogue_version": platform.catalogue.version, "catalogue_sha256": platform.catalogue_sha256,
                 "catalogue_file": str(platform.catalogue_path), "package_version": package_version(), "git_commit": git_commit()},
        "factors": factors,
        "sources": source_rows,
        "inputs": inputs,
        "oldest_input": {"source": oldest["slug"], "delivered_at": oldest["delivered_at"]} if oldest else None,
    }


def preview_markdown(png: bytes, caption: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})\n\n{caption}")


def class_preview(platform: Platform, communes: list[str], samples=None, max_px: int = 480) -> bytes:
    """A PNG of the class map over the communes' windows, sampled on a coarse lattice (cells, never 1 m).

    `samples` come from the workers (see compute/scoring.run_score); otherwise the class rasters are read.
    """
    extent, step = preview_lattice([platform.windows[c] for c in communes], max_px)
    if samples is None:
        samples = [sample_on_lattice(read_geotiff(platform.store.classes(c))[0], platform.windows[c], extent, step)
                   for c in communes]
    canvas = paste_samples(samples, extent, step, CLASS_NODATA)
    return class_preview_png(canvas, platform.catalogue.class_colours(), nodata=CLASS_NODATA, max_px=max_px)


def _round(value, digits: int = 3):
    return None if value is None else round(float(value), digits)


def build_score_asset(platform: Platform) -> dg.AssetsDefinition:
    low, high = score_bounds(platform)
    checks = [
        dg.AssetCheckSpec("score_within_bounds", asset=SCORE_KEY, blocking=True,
                          description=f"Every score lies in [{low:g}, {high:g}], the range the weights allow."),
        dg.AssetCheckSpec("no_nodata_inside_communes", asset=SCORE_KEY, blocking=True,
                          description="Every cell whose centre lies in a commune has a score."),
    ]

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
            "otherwise Σ weight × coverage / 100 over the scored factors (QPV is display only). Each commune's "
            "score record (weights, thresholds, code and source versions) is kept by run id."
        ),
        code_version=scoring_code_version(platform),
        automation_condition=CODE_CHANGED,
        check_specs=checks,
        pool=WAREHOUSE_POOL,
    )
    def _score(context: AssetExecutionContext, territory: TerritoryResource,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
        platform = territory.platform
        scoring = platform.catalogue.scoring
        run_id = context.run.run_id
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        communes = list(context.partition_keys)
        layer = communes_layer(platform)
        breaks = [(b.max, b.class_) for b in scoring.class_breaks]
        extent, step = preview_lattice([platform.windows[c] for c in communes], 480)
        platform.store.history.register_run(run_id, communes, at=at)
        write_json(platform.store.commune_windows, {"cell_size_m": platform.territory.grid.cell_size_m, "communes": {
            code: list(window.bounds) for code, window in platform.windows.items()}}, indent=1)
        tasks = [
            ScoreTask(commune=code, window=platform.windows[code], factors=factor_inputs(platform), communes=layer,
                      store=platform.store, blocked_score=scoring.blocked_score, run_id=run_id,
                      record=score_record_base(platform, code, run_id, at), class_breaks=breaks,
                      class_above=scoring.class_above, preview=(extent, step))
            for code in communes
        ]
        with territory.progress(run_id).stage("score", len(tasks)) as advance:
            records = map_tasks(run_score, tasks, size=lambda t: t.window.width * t.window.height, progress=advance)
        with warehouse.get_connection() as con:
            writes.write_score_run(con, contract(platform.catalogue), communes, **score_tables(records))
        outputs = [r["outputs"] for r in records]
        out_of_bounds = [r["commune"] for r, o in zip(records, outputs)
                         if o["score_min"] is not None and (o["score_min"] < low - 1e-6 or o["score_max"] > high + 1e-6)]
        nodata = {r["commune"]: o["nodata_inside"] for r, o in zip(records, outputs) if o["nodata_inside"]}
        empty = [r["commune"] for r, o in zip(records, outputs) if o["cells"] == 0]
        rows = [{"commune": r["commune"], "cells": o["cells"], "blocked": o["blocked_cells"],
                 "min": _round(o["score_min"]), "mean": _round(o["score_mean"]), "max": _round(o["score_max"]),
                 "sha256": o["score_sha256"][:12]} for r, o in zip(records, outputs)]
        png = class_preview(platform, communes, [r.pop("preview") for r in records])
        cells = sum(o["cells"] for o in outputs)
        oldest = min((r["oldest_input"] for r in records if r.get("oldest_input")),
                     key=lambda o: o["delivered_at"], default=None)
        freshness = source_freshness(platform.store, platform.sources[oldest["source"]], territory.as_of) \
            if oldest else None
        return dg.MaterializeResult(
            metadata={
                "preview": preview_markdown(png, f"Classes of {len(records)} commune(s), published colours"),
                "communes": len(records),
                "cells": cells,
                "blocked_cells": sum(o["blocked_cells"] for o in outputs),
                "mean_score": _round(sum((o["score_mean"] or 0) * o["cells"] for o in outputs) / max(cells, 1)),
                "per_commune": md_table(rows, list(rows[0]) if rows else ["commune"]),
                "weights": dg.MetadataValue.json({f.slug: f.weight for f in platform.scored_factors}),
                "catalogue_version": platform.catalogue.version,
                "catalogue_sha256": platform.catalogue_sha256,
                "package_version": package_version(),
                "git_commit": git_commit() or "not a git checkout",
                "oldest_input": dg.MetadataValue.json({**oldest, "age_days": freshness.age_days,
                                                       "status": freshness.status} if oldest else {}),
                "score_records": dg.MetadataValue.path(str(platform.store.score_dir)),
                "provenance": dg.MetadataValue.text(
                    f"W3C PROV-JSON per commune: `iarbre provenance --commune CODE --format prov-json` "
                    f"(run {run_id}); loaded into marts.run_provenance"),
                "dagster/uri": dg.MetadataValue.path(str(platform.store.score_dir)),
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


def score_tables(records: list[dict]) -> dict:
    """The warehouse rows of a score run, from its commune records."""
    stats, runs, inputs, weights = [], [], [], []
    for r in records:
        by_slug = {f["slug"]: f for f in r["factors"]}
        for s in r["factor_stats"]:
            f = by_slug[s["slug"]]
            stats.append({"commune": r["commune"], "factor": f["slug"], "label": f["label"], "weight": f["weight"],
                          "blocking": f["blocking"], "meta": f["meta"], "covered_cells": s["covered_cells"],
                          "covered_area_m2": s["covered_area_m2"], "weighted_contribution": s["weighted_contribution"],
                          "run_id": r["run_id"]})
            weights.append({"run_id": r["run_id"], "commune": r["commune"], "factor": f["slug"],
                            "weight": f["weight"], "blocking": f["blocking"], "meta": f["meta"]})
        code, oldest = r["code"], r.get("oldest_input") or {}
        runs.append({
            "run_id": r["run_id"], "commune": r["commune"],
            "materialised_at": datetime.fromisoformat(r["materialised_at"]).replace(tzinfo=None),
            "code_version": code["score_code_version"], "catalogue_version": code["catalogue_version"],
            "catalogue_sha256": code["catalogue_sha256"], "territory": r["territory"]["name"],
            "cells": r["outputs"]["cells"], "package_version": code["package_version"],
            "git_commit": code["git_commit"], "blocked_score": r["scoring"]["blocked_score"],
            "class_breaks": json.dumps(r["scoring"]["class_breaks"]),
            "grid": json.dumps(r["grid"]), "mean_score": r["outputs"]["score_mean"],
            "oldest_input": oldest.get("source"),
            "oldest_input_changed_at": (datetime.fromisoformat(oldest["delivered_at"]).astimezone(timezone.utc)
                                        .replace(tzinfo=None) if oldest.get("delivered_at") else None),
            "record_sha256": stable_hash({k: v for k, v in r.items() if k != "preview"}),
            "provenance": prov_json({k: v for k, v in r.items() if k != "preview"}),
        })
        for s in r["sources"]:
            inputs.append({"run_id": r["run_id"], "commune": r["commune"], "source": s["slug"],
                           "version": s["raw_sha256"], "normalised_sha256": s["normalised_sha256"],
                           "partner": s["partner"], "origin": s["origin"]})
    return {"factor_stats": pd.DataFrame(stats), "runs": pd.DataFrame(runs), "inputs": pd.DataFrame(inputs),
            "weights": pd.DataFrame(weights)}
