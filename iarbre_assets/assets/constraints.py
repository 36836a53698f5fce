"""Constraint assets, generated from the catalogue, partitioned by commune.

footprint/<factor>  filter -> buffer -> union -> polygons, per commune (the features that can reach one
                    of its cells), from the accepted versions of the factor's sources.
coverage/<factor>   5 m percent coverage on the territory grid (uint8 GeoTIFF per commune; 255 outside).

Each factor has its own two assets (code version, automation, checks). One subsettable op computes the
selected ones for the selected communes, spreading (factor, commune) tasks over the worker pool, and
records per-commune provenance next to the files (see compute/constraints.py).
"""

from itertools import groupby

import dagster as dg
from dagster import AssetExecutionContext

from ..catalog import FactorDef
from ..automation.conditions import CODE_CHANGED
from ..compute.constraints import (
    CommuneLayer,
    ConstraintTask,
    CoverageTask,
    FootprintTask,
    SourceInput,
    run_constraint,
    union_method_for,
)
from ..compute.pool import iter_tasks
from ..platform import Platform
from ..resources import TerritoryResource
from .keys import (
    GROUP_CONSTRAINTS,
    SINGLE_RUN,
    STEWARDS,
    by_commune_key,
    communes_partitions,
    coverage_key,
    footprint_key,
    md_table,
    source_key,
    stable_hash,
)


def accepted_inputs(platform: Platform, slugs: list[str]) -> list[SourceInput]:
    inputs = []
    for slug in slugs:
        current = platform.store.versions(slug).current()
        if current is None:
            raise dg.Failure(description=f"source/{slug} has no accepted version yet: materialise it first")
        inputs.append(SourceInput(slug=slug, version=current.version, raw_sha256=current.raw_sha256,
                                  normalised_sha256=current.normalised_sha256, partner=current.partner,
                                  origin=current.origin, path=str(current.data_path(platform.store))))
    return inputs


def communes_layer(platform: Platform) -> CommuneLayer:
    current = platform.store.versions("communes").current()
    if current is None:
        raise dg.Failure(description="source/communes has no accepted version yet: materialise it first")
    return CommuneLayer(path=str(current.data_path(platform.store)), codes=tuple(platform.commune_codes),
                        code_field=platform.territory.communes.code_field)


def factor_code_version(factor: FactorDef) -> str:
    """What changes a footprint: filters, buffer, union, simplify, sources. Not the weight."""
    return "fp2-" + stable_hash(factor.model_dump(mode="json", by_alias=True, exclude={"weight", "label", "meta"}))


def _footprint_spec(platform: Platform, factor: FactorDef) -> dg.AssetSpec:
    # the sources order the run (their accepted version is read); only the per-commune reports trigger it
    ordering = [source_key(s) for s in factor.sources] + [source_key("communes")]
    return dg.AssetSpec(
        key=footprint_key(factor.slug),
        deps=[by_commune_key(s) for s in factor.sources] + ordering,
        partitions_def=communes_partitions(platform.commune_codes),
        group_name=GROUP_CONSTRAINTS,
        owners=[STEWARDS],
        tags={"factor": factor.slug, "meta": factor.meta or "none"},
        kinds={"geopandas", "parquet"},
        description=(
            f"Footprint of « {factor.label} » (weight {factor.weight:+g}{', blocking' if factor.blocking else ''}"
            f"{', display only' if factor.display_only else ''}): features of {', '.join(factor.sources)} "
            f"filtered, buffered and united as the catalogue says, per commune window."
        ),
        code_version=factor_code_version(factor),
        automation_condition=CODE_CHANGED,
        metadata={"catalogue_entry": dg.MetadataValue.json(
            factor.model_dump(mode="json", by_alias=True, exclude_none=True))},
        skippable=True,
    )


def _coverage_spec(platform: Platform, factor: FactorDef) -> dg.AssetSpec:
    grid = platform.territory.grid
    return dg.AssetSpec(
        key=coverage_key(factor.slug),
        deps=[footprint_key(factor.slug)],
        partitions_def=communes_partitions(platform.commune_codes),
        group_name=GROUP_CONSTRAINTS,
        owners=[STEWARDS],
        tags={"factor": factor.slug, "meta": factor.meta or "none"},
        kinds={"rasterio", "geotiff"},
        description=(f"Percent coverage of each {grid.cell_size_m:g} m cell by « {factor.label} »: the share of "
                     f"its {grid.subpixel_m:g} m sub-pixel centres inside the footprint (0, 4, …, 100)."),
        code_version="cov1",
        automation_condition=CODE_CHANGED,
        skippable=True,
    )


def _coverage_checks(factor: FactorDef) -> list[dg.AssetCheckSpec]:
    key = coverage_key(factor.slug)
    return [
        dg.AssetCheckSpec("values_in_range", asset=key, blocking=True,
                          description="Coverage is 0..100 and a multiple of 4 inside the commune, 255 outside."),
        dg.AssetCheckSpec("footprint_is_covered", asset=key, blocking=True,
                          description="A non-empty footprint gives a non-zero coverage somewhere."),
    ]


def build_constraint_assets(platform: Platform) -> dg.AssetsDefinition:
    specs, checks = [], []
    for factor in platform.factors:
        specs.append(_footprint_spec(platform, factor))
        if not factor.display_only:
            specs.append(_coverage_spec(platform, factor))
            checks += _coverage_checks(factor)

    @dg.multi_asset(
        name="constraints",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        backfill_policy=SINGLE_RUN,
        description="Footprints and coverages of the selected factors for the selected communes.",
    )
    def _constraints(context: AssetExecutionContext, territory: TerritoryResource):
        platform = territory.platform
        selected = context.selected_asset_keys
        factor_rank = {f.slug: i for i, f in enumerate(platform.factors)}
        factors_by_slug = {f.slug: f for f in platform.factors}
        layer = communes_layer(platform)
        grid = platform.territory.grid
        tasks, inputs_by_factor = [], {}
        for factor in platform.factors:
            do_fp = footprint_key(factor.slug) in selected
            do_cov = coverage_key(factor.slug) in selected and not factor.display_only
            if not (do_fp or do_cov):
                continue
            if do_fp:
                inputs_by_factor[factor.slug] = accepted_inputs(platform, factor.sources)
            union_method = union_method_for(factor, platform.sources[factor.source].geometry)
            for code in context.partition_keys:
                window = platform.windows[code]
                fp = FootprintTask(factor=factor, commune=code, window=window, sources=inputs_by_factor[factor.slug],
                                   store=platform.store, union_method=union_method,
                                   code_version=factor_code_version(factor), communes=layer,
                                   run_id=context.run.run_id) if do_fp else None
                cov = CoverageTask(factor=factor.slug, commune=code, window=window, communes=layer,
                                   store=platform.store, subpixel_m=grid.subpixel_m,
                                   run_id=context.run.run_id) if do_cov else None
                tasks.append(ConstraintTask(footprint=fp, coverage=cov))
        # grouped by factor (workers keep the last sources read), the biggest communes first within a factor
        tasks.sort(key=lambda t: -t.size)
        tasks.sort(key=lambda t: factor_rank[t.factor_slug])
        # Each factor's results are recorded as soon as its last commune is done, while the workers go on
        # with the next factors (Dagster's bookkeeping is ~60 events per factor and would otherwise idle them).
        with territory.progress(context.run.run_id).stage("constraints", len(tasks), "factor × commune") as advance:
            results = iter_tasks(run_constraint, tasks, size=lambda t: t.size, keep_order=True, progress=advance)
            by_factor = groupby(zip(tasks, results), key=lambda done: done[0].factor_slug)
            for slug, done in by_factor:
                records: dict[str, list] = {"footprint": [], "coverage": []}
                for _task, result in done:
                    for kind, record in result.items():
                        records[kind].append(record)
                factor = factors_by_slug[slug]
                if records["footprint"]:
                    yield _footprint_result(platform, factor, records["footprint"], inputs_by_factor[slug])
                if records["coverage"]:
                    yield _coverage_result(platform, factor, records["coverage"])

    return _constraints


def _footprint_result(platform: Platform, factor: FactorDef, records: list[dict], inputs: list[SourceInput]):
    rows = [{"commune": r["commune"], "selected": r["stats"]["features_selected"],
             "polygons": r["stats"]["polygons_out"], "area_m2": round(r["stats"]["area_m2"], 1),
             "missing_radius": r["stats"].get("missing_radius", 0),
             "clamped_radius": r["stats"].get("clamped_radius", 0),
             "sha256": r["sha256"][:12]} for r in records]
    return dg.MaterializeResult(
        asset_key=footprint_key(factor.slug),
        metadata={
            "communes": len(records),
            "per_commune": md_table(rows, list(rows[0])),
            "polygons": sum(r["stats"]["polygons_out"] for r in records),
            "area_m2": round(sum(r["stats"]["area_m2"] for r in records), 1),
            "missing_radius": sum(r["stats"].get("missing_radius", 0) for r in records),
            "clamped_radius": sum(r["stats"].get("clamped_radius", 0) for r in records),
            "union_method": records[0]["union_method"],
            "sources": dg.MetadataValue.json([
                {"source": i.slug, "version": i.version, "raw_sha256": i.raw_sha256,
                 "normalised_sha256": i.normalised_sha256, "partner": i.partner, "origin": i.origin}
                for i in inputs]),
            "dagster/uri": dg.MetadataValue.path(str(platform.store.factor_dir(factor.slug))),
        },
    )


def _coverage_result(platform: Platform, factor: FactorDef, records: list[dict]):
    grid = platform.territory.grid
    key = coverage_key(factor.slug)
    bad_values = [r["commune"] for r in records if not (r["values_ok"] and r["outside_is_nodata"])]
    footprint_area = sum(r["footprint_in_commune"] for r in records)
    covered = sum(r["covered_cells"] for r in records)
    # A footprint of at least a whole cell inside the windows must cover some sub-pixel centre.
    covered_ok = covered > 0 or footprint_area < grid.cell_size_m ** 2
    rows = [{"commune": r["commune"], "cells": r["cells"], "covered_cells": r["covered_cells"],
             "covered_area_m2": round(r["covered_area_m2"], 1), "max": r["max"],
             "sha256": r["coverage_sha256"][:12]} for r in records]
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "communes": len(records),
            "per_commune": md_table(rows, list(rows[0])),
            "covered_cells": covered,
            "covered_area_m2": round(sum(r["covered_area_m2"] for r in records), 1),
            "dagster/uri": dg.MetadataValue.path(str(platform.store.factor_dir(factor.slug))),
            "example_file": dg.MetadataValue.path(str(platform.store.coverage(factor.slug, records[0]["commune"]))),
        },
        check_results=[
            dg.AssetCheckResult(asset_key=key, check_name="values_in_range", passed=not bad_values,
                                metadata={"communes_failing": dg.MetadataValue.json(bad_values)}),
            dg.AssetCheckResult(asset_key=key, check_name="footprint_is_covered", passed=covered_ok,
                                metadata={"footprint_area_in_windows_m2": footprint_area, "covered_cells": covered}),
        ],
    )


def build_constraint_defs(platform: Platform) -> list:
    return [build_constraint_assets(platform)]
