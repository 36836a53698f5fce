"""Constraint assets, generated from the catalogue, partitioned by commune.

footprint/<factor>  filter -> buffer -> union -> polygons, per commune window (+ the factor's reach),
                    from the accepted versions of the factor's sources.
coverage/<factor>   5 m percent coverage on the territory grid (uint8 GeoTIFF per commune; 255 outside).

Every step handles all the communes of its run in one go (single-run backfills), spread over the worker
pool, and records per-commune provenance next to the files (see compute/constraints.py).
"""


import dagster as dg
from dagster import AssetExecutionContext

from ..catalog import FactorDef
from ..compute.constraints import (
    CommuneLayer,
    CoverageTask,
    FootprintTask,
    SourceInput,
    coverage_paths,
    footprint_paths,
    run_coverage,
    run_footprint,
    union_method_for,
)
from ..compute.pool import map_tasks
from ..platform import Platform
from ..provenance.source_versions import SourceVersions
from .common import (
    EAGER,
    GROUP_CONSTRAINTS,
    STEWARDS,
    by_commune_key,
    communes_partitions,
    coverage_key,
    footprint_key,
    source_key,
    stable_hash,
)

SINGLE_RUN = dg.BackfillPolicy.single_run()


def accepted_inputs(platform: Platform, slugs: list[str]) -> list[SourceInput]:
    inputs = []
    for slug in slugs:
        current = SourceVersions(platform.layout, slug).current()
        if current is None:
            raise dg.Failure(description=f"source/{slug} has no accepted version yet: materialise it first")
        inputs.append(SourceInput(slug=slug, version=current.version, raw_sha256=current.raw_sha256,
                                  normalised_sha256=current.normalised_sha256, partner=current.partner,
                                  origin=current.origin, path=str(current.data_path(platform.layout))))
    return inputs


def communes_layer(platform: Platform) -> CommuneLayer:
    current = SourceVersions(platform.layout, "communes").current()
    if current is None:
        raise dg.Failure(description="source/communes has no accepted version yet: materialise it first")
    return CommuneLayer(path=str(current.data_path(platform.layout)), codes=tuple(platform.commune_codes))


def _window_size(task) -> float:
    return task.window.width * task.window.height


def _table(rows: list[dict], columns: list[str]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:80]:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    if len(rows) > 80:
        lines.append(f"| … {len(rows) - 80} more | " + " | " * (len(columns) - 1))
    return dg.MetadataValue.md("\n".join(lines))


def factor_code_version(factor: FactorDef) -> str:
    """What changes a footprint: filters, buffer, union, simplify, sources. Not the weight."""
    return "fp1-" + stable_hash(factor.model_dump(mode="json", by_alias=True, exclude={"weight", "label", "meta"}))


def build_footprint_asset(platform: Platform, factor: FactorDef) -> dg.AssetsDefinition:
    key = footprint_key(factor.slug)
    source_defs = [platform.sources[s] for s in factor.sources]
    code_version = factor_code_version(factor)
    description = (
        f"Footprint of « {factor.label} » (weight {factor.weight:+g}{', blocking' if factor.blocking else ''}"
        f"{', display only' if factor.display_only else ''}): features of {', '.join(factor.sources)} "
        f"filtered, buffered and united as the catalogue says, per commune window."
    )

    @dg.asset(
        key=key,
        deps=[by_commune_key(s) for s in factor.sources] + [source_key("communes")],
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_CONSTRAINTS,
        owners=[STEWARDS],
        tags={"factor": factor.slug, "meta": factor.meta or "none"},
        kinds={"geopandas", "parquet"},
        description=description,
        code_version=code_version,
        automation_condition=EAGER,
        metadata={"catalogue_entry": dg.MetadataValue.json(factor.model_dump(mode="json", by_alias=True,
                                                                             exclude_none=True))},
    )
    def _footprint(context: AssetExecutionContext) -> dg.MaterializeResult:
        inputs = accepted_inputs(platform, factor.sources)
        out_dir = str(platform.layout.constraint_dir(factor.slug))
        union_method = union_method_for(factor, source_defs[0].geometry)
        tasks = [
            FootprintTask(factor=factor, commune=code, window=platform.windows[code], sources=inputs,
                          out_dir=out_dir, union_method=union_method, code_version=code_version)
            for code in context.partition_keys
        ]
        records = map_tasks(run_footprint, tasks, largest_first=_window_size)
        rows = [{"commune": r["commune"], "selected": r["stats"]["features_selected"],
                 "polygons": r["stats"]["polygons_out"], "area_m2": round(r["stats"]["area_m2"], 1),
                 "missing_radius": r["stats"].get("missing_radius", 0),
                 "clamped_radius": r["stats"].get("clamped_radius", 0),
                 "sha256": r["sha256"][:12]} for r in records]
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "per_commune": _table(rows, list(rows[0]) if rows else ["commune"]),
                "polygons": sum(r["stats"]["polygons_out"] for r in records),
                "area_m2": round(sum(r["stats"]["area_m2"] for r in records), 1),
                "missing_radius": sum(r["stats"].get("missing_radius", 0) for r in records),
                "clamped_radius": sum(r["stats"].get("clamped_radius", 0) for r in records),
                "union_method": union_method,
                "sources": dg.MetadataValue.json([
                    {"source": i.slug, "version": i.version, "raw_sha256": i.raw_sha256,
                     "normalised_sha256": i.normalised_sha256, "partner": i.partner, "origin": i.origin}
                    for i in inputs]),
                "dagster/uri": dg.MetadataValue.path(out_dir),
            }
        )

    return _footprint


def build_coverage_asset(platform: Platform, factor: FactorDef) -> dg.AssetsDefinition:
    key = coverage_key(factor.slug)
    checks = [
        dg.AssetCheckSpec("values_in_range", asset=key, blocking=True,
                          description="Coverage is 0..100 and a multiple of 4 inside the commune, 255 outside."),
        dg.AssetCheckSpec("footprint_is_covered", asset=key, blocking=True,
                          description="A non-empty footprint gives a non-zero coverage somewhere."),
    ]
    grid = platform.territory.grid

    @dg.asset(
        key=key,
        deps=[footprint_key(factor.slug)],
        partitions_def=communes_partitions(platform.commune_codes),
        backfill_policy=SINGLE_RUN,
        group_name=GROUP_CONSTRAINTS,
        owners=[STEWARDS],
        tags={"factor": factor.slug, "meta": factor.meta or "none"},
        kinds={"rasterio", "geotiff"},
        description=(f"Percent coverage of each {grid.cell_size_m:g} m cell by « {factor.label} »: the share of "
                     f"its {grid.subpixel_m:g} m sub-pixel centres inside the footprint (0, 4, …, 100)."),
        code_version="cov1",
        automation_condition=EAGER,
        check_specs=checks,
    )
    def _coverage(context: AssetExecutionContext) -> dg.MaterializeResult:
        out_dir = str(platform.layout.constraint_dir(factor.slug))
        layer = communes_layer(platform)
        tasks = [
            CoverageTask(factor=factor.slug, commune=code, window=platform.windows[code],
                         footprint_path=str(footprint_paths(out_dir, code)[0]), communes=layer, out_dir=out_dir,
                         subpixel_m=grid.subpixel_m)
            for code in context.partition_keys
        ]
        records = map_tasks(run_coverage, tasks, largest_first=_window_size)
        bad_values = [r["commune"] for r in records if not (r["values_ok"] and r["outside_is_nodata"])]
        footprint_area = sum(r["footprint_in_commune"] for r in records)
        covered = sum(r["covered_cells"] for r in records)
        # A footprint of at least a whole cell inside the windows must cover some sub-pixel centre.
        covered_ok = covered > 0 or footprint_area < grid.cell_size_m ** 2
        rows = [{"commune": r["commune"], "cells": r["cells"], "covered_cells": r["covered_cells"],
                 "covered_area_m2": round(r["covered_area_m2"], 1), "max": r["max"],
                 "sha256": r["coverage_sha256"][:12]} for r in records]
        table = _table(rows, list(rows[0]) if rows else ["commune"])
        return dg.MaterializeResult(
            metadata={
                "communes": len(records),
                "per_commune": table,
                "covered_cells": covered,
                "covered_area_m2": round(sum(r["covered_area_m2"] for r in records), 1),
                "dagster/uri": dg.MetadataValue.path(out_dir),
                "files": dg.MetadataValue.json([str(coverage_paths(out_dir, r["commune"])[0]) for r in records[:5]]),
            },
            check_results=[
                dg.AssetCheckResult(check_name="values_in_range", passed=not bad_values,
                                    metadata={"communes_failing": dg.MetadataValue.json(bad_values)}),
                dg.AssetCheckResult(check_name="footprint_is_covered", passed=covered_ok,
                                    metadata={"footprint_area_in_windows_m2": footprint_area,
                                              "covered_cells": covered}),
            ],
        )

    return _coverage


def build_constraint_defs(platform: Platform) -> list:
    defs = []
    for factor in platform.factors:
        defs.append(build_footprint_asset(platform, factor))
        if not factor.display_only:
            defs.append(build_coverage_asset(platform, factor))
    return defs
