"""Quality suites: what a normalised source layer must satisfy before factors may use it.

A suite is a list of `Check`s, each marked blocking (a failure would corrupt the score) or warning.
Most checks are Great Expectations expectations, kept here as (class name, kwargs) so a suite can be
built and inspected without importing GX; a few checks GX cannot express are Python functions.

Everything is derived from the catalogue (source columns and types, known values, the factors' filters
and buffers), the territory (quality thresholds) and the caller (territory bounds, previous row count):
no territory's values are written here. The shared core is in this module, family additions in
`quality.families`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pandas as pd

from iarbre_assets.catalog.models import ColumnBuffer, FactorDef, IgnWfsLocation, SourceDef, WfsLocation
from iarbre_assets.catalog.territory import QualitySpec
from iarbre_assets.geo.normalise import FAMILY_TYPE_NAMES, NormaliseReport

from .frame import BBOX, CRS_COLUMN, GEOM_EMPTY, GEOM_TYPE, GEOM_VALID, PLATFORM_CRS

# dtype names GX's ExpectColumnValuesToBeInTypeList recognises for the normalised column types
TYPE_LISTS: dict[str, list[str]] = {
    "str": ["StringDtype"],
    "int": ["Int64Dtype", "Int32Dtype", "int64", "int32"],
    "float": ["Float64Dtype", "Float32Dtype", "float64", "float32"],
}


@dataclass(frozen=True)
class Check:
    """One expectation of a suite.

    `expectation`/`kwargs`: a `gx.expectations.<expectation>` run by GX; or `evaluate`: a Python check
    `(frame, gdf) -> (success, observed)` for what GX cannot express. `needs`: declared columns the check reads;
    when one is missing or not of its declared type the check is reported failed, not skipped.
    """

    name: str
    column: str | None
    blocking: bool
    description: str
    expectation: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    value_notes: Mapping[Any, str] = field(default_factory=dict)  # value -> what relies on it (for messages)
    evaluate: Callable[[pd.DataFrame, Any], tuple[bool, str]] | None = None

    @property
    def severity(self) -> str:
        return "blocking" if self.blocking else "warning"


@dataclass(frozen=True)
class SuiteContext:
    source: SourceDef
    factors: list[FactorDef]
    territory_bounds: tuple[float, float, float, float]
    quality: QualitySpec
    previous_row_count: int | None = None
    normalise_report: NormaliseReport | None = None

    @property
    def source_factors(self) -> list[FactorDef]:
        """The factors that read this source (as main source or `also_from`)."""
        return [f for f in self.factors if self.source.slug in f.sources]


@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    checks: list[Check]


def build_suite(
    source: SourceDef,
    *,
    factors: list[FactorDef],
    territory_bounds: tuple[float, float, float, float],
    quality: QualitySpec,
    previous_row_count: int | None = None,
    normalise_report: NormaliseReport | None = None,
) -> Suite:
    """The suite of a source: the shared core plus its family's additions."""
    from .families import family_checks

    ctx = SuiteContext(
        source=source,
        factors=list(factors),
        territory_bounds=_checked_bounds(territory_bounds, source.slug),
        quality=quality,
        previous_row_count=previous_row_count,
        normalise_report=normalise_report,
    )
    checks = core_checks(ctx) + family_checks(ctx)
    names = [(c.name, c.column) for c in checks]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"suite of source {source.slug!r} has duplicate checks {sorted(duplicates, key=str)}")
    return Suite(name=source.family, source=source.slug, checks=checks)


def _checked_bounds(bounds, slug: str) -> tuple[float, float, float, float]:
    try:
        minx, miny, maxx, maxy = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"source {slug!r}: territory_bounds must be (minx, miny, maxx, maxy), got {bounds!r}"
        ) from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)) or minx >= maxx or miny >= maxy:
        raise ValueError(f"source {slug!r}: territory_bounds {bounds!r} is not a finite, non-degenerate box")
    return minx, miny, maxx, maxy


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
        *_normalise_report_checks(ctx),
    ]


def _table_checks(ctx: SuiteContext) -> list[Check]:
    checks = [
        Check("table.not_empty", None, True, "at least one feature",
              "ExpectTableRowCountToBeBetween", {"min_value": 1}),
    ]
    previous = ctx.previous_row_count
    if previous is not None:
        band = ctx.quality.row_count_band
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
    for column, kind in ctx.source.columns.items():
        checks.append(Check("schema.column_exists", column, True, "declared column is present",
                            "ExpectColumnToExist", {"column": column}))
        checks.append(Check("schema.column_type", column, True, f"declared type {kind} ({', '.join(TYPE_LISTS[kind])})",
                            "ExpectColumnValuesToBeInTypeList", {"column": column, "type_list": TYPE_LISTS[kind]}))
    return checks


def _crs_and_geometry_checks(ctx: SuiteContext) -> list[Check]:
    share = ctx.quality.min_valid_share
    kind = ctx.source.geometry
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
              "ExpectColumnValuesToBeInSet", {"column": GEOM_TYPE, "value_set": sorted(FAMILY_TYPE_NAMES[kind])}),
    ]


def _bounds_checks(ctx: SuiteContext) -> list[Check]:
    # Each feature's bounding box must lie in the territory box grown by the margin: a layer in the
    # wrong CRS (declared 2154, really 3946: ~1000 km off) or with swapped axes lands outside.
    minx, miny, maxx, maxy = ctx.territory_bounds
    m = ctx.quality.bounds_margin_m
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
    for factor in ctx.source_factors:
        for cond in factor.where:
            per_value = wanted.setdefault(cond.field, {})
            for value in cond.values:
                label = f"{'excluded' if cond.negated else 'selected'} by {factor.slug}"
                per_value.setdefault(value, [])
                if label not in per_value[value]:
                    per_value[value].append(label)
    return wanted


def _filter_value_checks(ctx: SuiteContext) -> list[Check]:
    # A partner renaming a category ("Giratoire" -> "Rond-point") silently empties a factor (or, for a
    # `not_in` value, silently lets excluded features in): every value a filter names must still exist.
    blocking = ctx.quality.filter_values == "blocking"
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
            f"at least {ctx.quality.min_valid_share:.1%} non-null (a null value matches no `in` filter)",
            "ExpectColumnValuesToNotBeNull", {"column": column, "mostly": ctx.quality.min_valid_share},
            needs=(column,),
        ))
    return checks


def _known_value_checks(ctx: SuiteContext) -> list[Check]:
    # A closed nomenclature: an unknown code matches no filter, so its features vanish from every factor.
    # No `mostly`: a new code means the nomenclature changed and the catalogue must be updated first.
    checks = []
    for column, known in ctx.source.known_values.items():
        checks.append(Check(
            "known_values.in_set", column, True, f"every non-null value in the catalogue's {len(known)} known values",
            "ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(known)}, needs=(column,),
        ))
    return checks


def _radius_checks(ctx: SuiteContext) -> list[Check]:
    # Per-feature radius columns: beyond twice the radius cap the unit has probably changed (cm -> mm).
    checks = []
    seen = set()
    for factor in ctx.source_factors:
        buffer = factor.buffer
        if not isinstance(buffer, ColumnBuffer) or buffer.radius_from in seen:
            continue
        if buffer.radius_from in ctx.source.columns:
            seen.add(buffer.radius_from)
            high = 2 * buffer.max_m / buffer.to_metres
            share = ctx.quality.min_valid_share
            checks.append(Check(
                "values.radius_plausible", buffer.radius_from, True,
                f"at least {share:.1%} of values within [0, {high:g}] {buffer.unit} (twice the {buffer.max_m:g} m "
                f"radius cap of factor {factor.slug})",
                "ExpectColumnValuesToBeBetween",
                {"column": buffer.radius_from, "min_value": 0, "max_value": high, "mostly": share},
                needs=(buffer.radius_from,),
            ))
    return checks


# Identifier columns by family when the location does not name one (a file location has no paging key).
FAMILY_ID_COLUMNS: dict[str, tuple[str, ...]] = {"trees": ("gid",), "buildings": ("cleabs",)}


def id_column(source: SourceDef) -> str | None:
    """The feature identifier: the WFS paging key or IGN id field when declared, else the family's."""
    location = source.location
    candidates = []
    if isinstance(location, IgnWfsLocation):
        candidates.append(location.id_field)
    if isinstance(location, WfsLocation) and location.sort_by:
        candidates.append(location.sort_by)
    candidates.extend(FAMILY_ID_COLUMNS.get(source.family, ()))
    return next((c for c in candidates if c in source.columns), None)


def _id_checks(ctx: SuiteContext) -> list[Check]:
    # Duplicated or missing ids betray a broken download (overlapping pages or bounding boxes).
    column = id_column(ctx.source)
    if column is None:
        return []
    return [
        Check("id.unique", column, True, "feature identifier unique", "ExpectColumnValuesToBeUnique",
              {"column": column}, needs=(column,)),
        Check("id.not_null", column, True, "feature identifier present on every feature",
              "ExpectColumnValuesToNotBeNull", {"column": column}, needs=(column,)),
    ]


def _normalise_report_checks(ctx: SuiteContext) -> list[Check]:
    """What normalisation dropped or could not type, when the caller passes its report."""
    report = ctx.normalise_report
    if report is None:
        return []
    tolerance = 1 - ctx.quality.min_valid_share
    checks = []
    dropped = report.dropped_total
    dropped_share = dropped / report.rows_in if report.rows_in else 0.0
    reasons = ", ".join(f"{reason}: {n}" for reason, n in report.dropped.items()) or "none"

    def dropped_ok(_frame, _gdf, share=dropped_share, n=dropped, reasons=reasons):
        return share <= tolerance, f"{n} of {report.rows_in} features dropped ({share:.2%}) — {reasons}"

    checks.append(Check("normalise.dropped_share", None, True,
                        f"normalisation dropped at most {tolerance:.1%} of the features", evaluate=dropped_ok))
    typed = report.rows_in - dropped  # values are typed once per kept feature, before any split
    for column, failures in report.cast_failures.items():
        share = failures / typed if typed else 0.0
        kind = ctx.source.columns.get(column, "?")

        def cast_ok(_frame, _gdf, share=share, failures=failures, kind=kind):
            return share <= tolerance, f"{failures} of {typed} values not convertible to {kind} ({share:.2%})"

        checks.append(Check("normalise.cast_failures", column, True,
                            f"at most {tolerance:.1%} of values fail conversion to the declared type",
                            evaluate=cast_ok))
    return checks
