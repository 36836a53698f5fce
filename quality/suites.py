"""Quality suites: what a normalised source layer must satisfy before factors may use it.

A suite is a list of `Check`s, each marked blocking (a failure would corrupt the score) or warning.
Most checks are Great Expectations expectations, kept here as (class name, kwargs) so a suite can be
built and inspected without importing GX; a few checks GX cannot express are Python functions.

Everything is derived from the `SuiteSpec` (source columns and types, known values, the factors' filters
and buffers, territory bounds and quality thresholds) and the caller (previous row count, normalisation
summary): no territory's values are written here. The shared core is in this module, family additions in
`quality.families`.
"""

from __future__ import annotations

import math
from typing import Any

from .checks import Check, Suite, SuiteContext
from .families import family_checks
from .frame import BBOX, CRS_COLUMN, GEOM_EMPTY, GEOM_TYPE, GEOM_VALID, PLATFORM_CRS
from .spec import TYPE_LISTS, NormaliseSummary, SuiteSpec

__all__ = ["Check", "Suite", "SuiteContext", "TYPE_LISTS", "build_suite", "core_checks", "filter_values", "id_column"]


def build_suite(
    spec: SuiteSpec,
    *,
    previous_row_count: int | None = None,
    normalise_summary: NormaliseSummary | None = None,
) -> Suite:
    """The suite of a source: the shared core plus its family's additions."""
    if not isinstance(spec, SuiteSpec):
        raise TypeError(f"build_suite needs a quality.spec.SuiteSpec, not {type(spec).__name__}")
    ctx = SuiteContext(spec=spec, previous_row_count=previous_row_count,
                       normalise_summary=NormaliseSummary.coerce(normalise_summary))
    checks = core_checks(ctx) + family_checks(ctx)
    names = [(c.name, c.column) for c in checks]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"suite of source {spec.source!r} has duplicate checks {sorted(duplicates, key=str)}")
    return Suite(name=spec.family, source=spec.source, checks=checks)


# ----------------------------------------------------------------------------------------------
# Shared core
# ----------------------------------------------------------------------------------------------
def core_checks(ctx: SuiteContext) -> list[Check]:
    return [
        *_table_checks(ctx),
        *_schema_checks(ctx),
        *_crs_and_geometry_checks(ctx),
        *_bounds_checks(ctx),
        *_filter_value_checks(ctx),
        *_known_value_checks(ctx),
        *_radius_checks(ctx),
        *_id_checks(ctx),
        *_normalise_summary_checks(ctx),
    ]


def _table_checks(ctx: SuiteContext) -> list[Check]:
    checks = [
        Check("table.not_empty", None, True, "at least one feature",
              "ExpectTableRowCountToBeBetween", {"min_value": 1}),
    ]
    previous = ctx.previous_row_count
    if previous is not None:
        band = ctx.thresholds.row_count_band
        low, high = math.ceil(previous * (1 - band)), math.floor(previous * (1 + band))
        checks.append(Check(
            "table.row_count_vs_previous", None, False,
            f"row count within ±{band:.0%} of the previous accepted version ({previous} rows): "
            f"[{max(low, 0)}, {high}]",
            "ExpectTableRowCountToBeBetween", {"min_value": max(low, 0), "max_value": high},
        ))
    return checks


def _schema_checks(ctx: SuiteContext) -> list[Check]:
    checks = []
    for column, kind in ctx.spec.columns.items():
        checks.append(Check("schema.column_exists", column, True, "declared column is present",
                            "ExpectColumnToExist", {"column": column}))
        checks.append(Check("schema.column_type", column, True, f"declared type {kind} ({', '.join(TYPE_LISTS[kind])})",
                            "ExpectColumnValuesToBeInTypeList", {"column": column, "type_list": TYPE_LISTS[kind]}))
    return checks


def _crs_and_geometry_checks(ctx: SuiteContext) -> list[Check]:
    share = ctx.thresholds.min_valid_share
    kind = ctx.spec.geometry
    return [
        Check("crs.platform", CRS_COLUMN, True, f"layer CRS is {PLATFORM_CRS}",
              "ExpectColumnDistinctValuesToEqualSet", {"column": CRS_COLUMN, "value_set": [PLATFORM_CRS]}),
        Check("geometry.not_null", GEOM_TYPE, True, "every feature has a geometry",
              "ExpectColumnValuesToNotBeNull", {"column": GEOM_TYPE}),
        Check("geometry.not_empty", GEOM_EMPTY, True, "no empty geometry",
              "ExpectColumnValuesToBeInSet", {"column": GEOM_EMPTY, "value_set": [False]}),
        Check("geometry.valid_share", GEOM_VALID, True, f"at least {share:.1%} of geometries valid",
              "ExpectColumnValuesToBeInSet", {"column": GEOM_VALID, "value_set": [True], "mostly": share}),
        Check("geometry.types", GEOM_TYPE, True, f"geometry types of the declared kind {kind!r}",
              "ExpectColumnValuesToBeInSet", {"column": GEOM_TYPE, "value_set": sorted(ctx.spec.geometry_types)}),
    ]


def _bounds_checks(ctx: SuiteContext) -> list[Check]:
    # Each feature's bounding box must lie in the territory box grown by the margin: a layer in the
    # wrong CRS (declared 2154, really 3946: ~1000 km off) or with swapped axes lands outside.
    minx, miny, maxx, maxy = ctx.spec.territory_bounds
    m = ctx.thresholds.bounds_margin_m
    lo_x, hi_x, lo_y, hi_y = minx - m, maxx + m, miny - m, maxy + m
    text = (f"feature bounding box within the territory bounds + {m:g} m: "
            f"x [{lo_x:.1f}, {hi_x:.1f}], y [{lo_y:.1f}, {hi_y:.1f}]")
    checks = []
    for key, column in BBOX.items():
        low, high = (lo_x, hi_x) if key.endswith("x") else (lo_y, hi_y)
        checks.append(Check("bounds.within_territory", column, True, text,
                            "ExpectColumnValuesToBeBetween", {"column": column, "min_value": low, "max_value": high}))
    return checks


def filter_values(ctx: SuiteContext) -> dict[str, dict[Any, list[str]]]:
    """field -> value -> how factors use it ("selected by giratoires"), from `in` and `not_in` lists."""
    wanted: dict[str, dict[Any, list[str]]] = {}
    for cond in ctx.spec.filters:
        per_value = wanted.setdefault(cond.column, {})
        for value in cond.values:
            label = f"{'excluded' if cond.negated else 'selected'} by {cond.factor}"
            per_value.setdefault(value, [])
            if label not in per_value[value]:
                per_value[value].append(label)
    return wanted


def _filter_value_checks(ctx: SuiteContext) -> list[Check]:
    # A partner renaming a category ("Giratoire" -> "Rond-point") silently empties a factor (or, for a
    # `not_in` value, silently lets excluded features in): every value a filter names must still exist.
    blocking = ctx.thresholds.filter_values == "blocking"
    checks = []
    for column, values in filter_values(ctx).items():
        checks.append(Check(
            "filter_values.present", column, blocking,
            f"each of the {len(values)} values the catalogue filters name occurs at least once: "
            + ", ".join(repr(v) for v in values),
            "ExpectColumnDistinctValuesToContainSet", {"column": column, "value_set": list(values)},
            needs=(column,), value_notes={v: ", ".join(f) for v, f in values.items()},
        ))
        checks.append(Check(
            "filter_values.not_null", column, False,
            f"at least {ctx.thresholds.min_valid_share:.1%} non-null (a null value matches no `in` filter)",
            "ExpectColumnValuesToNotBeNull", {"column": column, "mostly": ctx.thresholds.min_valid_share},
            needs=(column,),
        ))
    return checks


def _known_value_checks(ctx: SuiteContext) -> list[Check]:
    # A closed nomenclature: an unknown code matches no filter, so its features vanish from every factor.
    # No `mostly`: a new code means the nomenclature changed and the catalogue must be updated first.
    checks = []
    for column, known in ctx.spec.known_values.items():
        checks.append(Check(
            "known_values.in_set", column, True, f"every non-null value in the catalogue's {len(known)} known values",
            "ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(known)}, needs=(column,),
        ))
    return checks


def _radius_checks(ctx: SuiteContext) -> list[Check]:
    # Per-feature radius columns: beyond twice the radius cap the unit has probably changed (cm -> mm).
    checks = []
    seen = set()
    for buffer in ctx.spec.buffers:
        if buffer.column in seen:
            continue
        if buffer.column in ctx.spec.columns:
            seen.add(buffer.column)
            high = 2 * buffer.max_m / buffer.metres_per_unit
            share = ctx.thresholds.min_valid_share
            checks.append(Check(
                "values.radius_plausible", buffer.column, True,
                f"at least {share:.1%} of values within [0, {high:g}] {buffer.unit} (twice the {buffer.max_m:g} m "
                f"radius cap of factor {buffer.factor})",
                "ExpectColumnValuesToBeBetween",
                {"column": buffer.column, "min_value": 0, "max_value": high, "mostly": share},
                needs=(buffer.column,),
            ))
    return checks


# Identifier columns by family when the location does not name one (a file location has no paging key).
FAMILY_ID_COLUMNS: dict[str, tuple[str, ...]] = {"trees": ("gid",), "buildings": ("cleabs",)}


def id_column(spec: SuiteSpec) -> str | None:
    """The feature identifier: the WFS paging key or IGN id field when declared, else the family's."""
    candidates = [spec.paging_key] if spec.paging_key else []
    candidates.extend(FAMILY_ID_COLUMNS.get(spec.family, ()))
    return next((c for c in candidates if c in spec.columns), None)


def _id_checks(ctx: SuiteContext) -> list[Check]:
    # Duplicated or missing ids betray a broken download (overlapping pages or bounding boxes).
    column = id_column(ctx.spec)
    if column is None:
        return []
    return [
        Check("id.unique", column, True, "feature identifier unique", "ExpectColumnValuesToBeUnique",
              {"column": column}, needs=(column,)),
        Check("id.not_null", column, True, "feature identifier present on every feature",
              "ExpectColumnValuesToNotBeNull", {"column": column}, needs=(column,)),
    ]


def _normalise_summary_checks(ctx: SuiteContext) -> list[Check]:
    """What normalisation dropped or could not type, when the caller passes its summary."""
    summary = ctx.normalise_summary
    if summary is None:
        return []
    tolerance = 1 - ctx.thresholds.min_valid_share
    checks = []
    dropped = summary.dropped_total
    dropped_share = dropped / summary.rows_in if summary.rows_in else 0.0
    reasons = ", ".join(f"{reason}: {n}" + (f" (e.g. {', '.join(summary.dropped_examples[reason])})"
                                             if summary.dropped_examples.get(reason) else "")
                        for reason, n in summary.dropped.items()) or "none"

    def dropped_ok(_frame, _gdf, share=dropped_share, n=dropped, reasons=reasons):
        return share <= tolerance, f"{n} of {summary.rows_in} features dropped ({share:.2%}) — {reasons}"

    checks.append(Check("normalise.dropped_share", None, True,
                        f"normalisation dropped at most {tolerance:.1%} of the features", evaluate=dropped_ok))
    typed = summary.rows_in - dropped  # values are typed once per kept feature, before any split
    for column, failures in summary.cast_failures.items():
        share = failures / typed if typed else 0.0
        kind = ctx.spec.columns.get(column, "?")

        def cast_ok(_frame, _gdf, share=share, failures=failures, kind=kind):
            return share <= tolerance, f"{failures} of {typed} values not convertible to {kind} ({share:.2%})"

        checks.append(Check("normalise.cast_failures", column, True,
                            f"at most {tolerance:.1%} of values fail conversion to the declared type",
                            evaluate=cast_ok))
    return checks
