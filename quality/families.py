"""Family additions to the shared core suite, one builder per source family of the catalogue.

Every family a spec names (`SuiteSpec.family`) must have a builder here: a source of an unknown
family fails loudly rather than being checked by a partial suite. This module depends on the shared
types (`quality.checks`) only; `quality.suites` imports it, never the other way round.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import shapely

from .checks import Check, SuiteContext
from .frame import GEOM_MEASURE

FamilyBuilder = Callable[[SuiteContext], list[Check]]
FAMILIES: dict[str, FamilyBuilder] = {}


def family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    def register(builder: FamilyBuilder) -> FamilyBuilder:
        FAMILIES[name] = builder
        return builder

    return register


def family_checks(ctx: SuiteContext) -> list[Check]:
    builder = FAMILIES.get(ctx.spec.family)
    if builder is None:
        raise KeyError(
            f"source {ctx.spec.source!r}: no quality suite for family {ctx.spec.family!r}; "
            f"known families: {sorted(FAMILIES)} (add one in quality/families.py)"
        )
    return builder(ctx)


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------
def measure_positive(ctx: SuiteContext) -> list[Check]:
    """Polygons have an area, lines a length (points have no measure and are not concerned)."""
    kind = ctx.spec.geometry
    if kind == "point":
        return []
    what = {"polygon": "area > 0 m²", "line": "length > 0 m", "any": "area or length > 0 (points excepted)"}[kind]
    share = ctx.thresholds.min_valid_share
    return [Check(
        "geometry.measure_positive", GEOM_MEASURE, True, f"at least {share:.1%} of features with {what}",
        "ExpectColumnValuesToBeBetween", {"column": GEOM_MEASURE, "min_value": 0, "strict_min": True, "mostly": share},
    )]


# ----------------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------------
@family("trees")
def trees(ctx: SuiteContext) -> list[Check]:
    # Core already covers: gid unique/not null, circumference within [0, 2 x radius cap], genre values.
    # Trees without a usable radius get the factor's `missing_m`; if most lose it, the partner probably
    # renamed or emptied the column: worth a look, not a wrong score.
    checks = []
    for buffer in ctx.spec.buffers:
        if buffer.column in ctx.spec.columns:
            checks.append(Check(
                "values.radius_present", buffer.column, False,
                f"at least half the features have a {buffer.column} (others get {buffer.missing_m:g} m)",
                "ExpectColumnValuesToNotBeNull", {"column": buffer.column, "mostly": 0.5},
                needs=(buffer.column,),
            ))
            break
    return checks


@family("buildings")
def buildings(ctx: SuiteContext) -> list[Check]:
    # Core covers the identifier (cleabs: unique, not null). Footprints under 1 m² are slivers or a unit
    # error; a few are tolerated.
    share = ctx.thresholds.min_valid_share
    return [Check(
        "geometry.min_area", GEOM_MEASURE, True, f"at least {share:.1%} of footprints with area > 1 m²",
        "ExpectColumnValuesToBeBetween", {"column": GEOM_MEASURE, "min_value": 1, "strict_min": True, "mostly": share},
    )]


@family("networks")
def networks(ctx: SuiteContext) -> list[Check]:
    return measure_positive(ctx)


@family("transport")
def transport(ctx: SuiteContext) -> list[Check]:
    return measure_positive(ctx)


@family("public_spaces")
def public_spaces(ctx: SuiteContext) -> list[Check]:
    return measure_positive(ctx)


@family("land_features")
def land_features(ctx: SuiteContext) -> list[Check]:
    return measure_positive(ctx)


@family("street_services")
def street_services(ctx: SuiteContext) -> list[Check]:
    # Mixed layers (geometry "any"): the core already restricts types; lines and polygons need a measure.
    return measure_positive(ctx)


@family("vegetation")
def vegetation(ctx: SuiteContext) -> list[Check]:
    # A null class code matches no stratum filter: the polygon silently counts for nothing.
    share = ctx.thresholds.min_valid_share
    checks = measure_positive(ctx)
    for column in ctx.spec.known_values:
        checks.append(Check(
            "values.code_not_null", column, True, f"at least {share:.1%} of features carry a class code",
            "ExpectColumnValuesToNotBeNull", {"column": column, "mostly": share}, needs=(column,),
        ))
    return checks


def boundary_code_column(ctx: SuiteContext) -> str | None:
    """The code field of a boundary layer: its first declared column (Territory._layer_def puts the
    layer's `code_field` first); None when the source declares no columns (e.g. QPV)."""
    return next(iter(ctx.spec.columns), None)


@family("boundaries")
def boundaries(ctx: SuiteContext) -> list[Check]:
    # Communes and IRIS partition the territory: codes are keys, and overlaps would put a cell in two units.
    checks = measure_positive(ctx)
    code = boundary_code_column(ctx)
    if code is not None:
        checks += [
            Check("id.code_unique", code, True, "unit code unique", "ExpectColumnValuesToBeUnique",
                  {"column": code}, needs=(code,)),
            Check("id.code_not_null", code, True, "every unit has a code", "ExpectColumnValuesToNotBeNull",
                  {"column": code}, needs=(code,)),
        ]
        names = list(ctx.spec.columns)[1:2]
        for name in names:
            checks.append(Check("values.name_not_null", name, False, "every unit has a name",
                                "ExpectColumnValuesToNotBeNull", {"column": name}, needs=(name,)))
    checks.append(Check("geometry.no_overlap", None, True,
                        "units do not overlap (shared area below 0.1 % of the total area)",
                        evaluate=_no_overlap))
    return checks


def _no_overlap(frame, gdf) -> tuple[bool, str]:
    geoms = np.asarray(gdf.geometry.array, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    geoms = geoms[shapely.is_valid(geoms)]  # invalid ones are the valid-share check's business
    total = float(shapely.area(geoms).sum())
    if len(geoms) < 2 or total == 0:
        return True, f"{len(geoms)} unit(s), nothing to overlap"
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    left, right = left[pairs], right[pairs]
    shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    overlap = float(shared.sum())
    worst = int(np.count_nonzero(shared > 1.0))
    observed = f"{overlap:.1f} m² shared by {worst} pair(s) over 1 m² ({overlap / total:.3%} of {total:.0f} m²)"
    return overlap <= 0.001 * total, observed
