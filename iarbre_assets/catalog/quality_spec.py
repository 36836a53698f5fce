"""The catalogue seen by the quality suites: `SourceDef`/`FactorDef`/`QualitySpec` mapped onto `quality.spec`.

`quality` knows nothing of the product; this module is the one place that says which catalogue values a
suite is derived from:

    spec = suite_spec(source, catalogue.factors, territory.quality, tuple(communes.total_bounds))
    run_quality_suite(gdf, spec, previous_row_count=rows, normalise_summary=normalise_summary(report))
"""

from __future__ import annotations

from quality.spec import BufferSpec, FilterSpec, NormaliseSummary, SuiteSpec, Thresholds

from ..geo.normalise import FAMILY_TYPE_NAMES, NormaliseReport
from .models import ColumnBuffer, FactorDef, IgnWfsLocation, SourceDef, WfsLocation
from .territory import QualitySpec

__all__ = ["normalise_summary", "suite_spec", "thresholds"]


def suite_spec(
    source: SourceDef,
    factors: list[FactorDef],
    quality: QualitySpec,
    territory_bounds: tuple[float, float, float, float],
) -> SuiteSpec:
    """What the quality suite of `source` is derived from.

    `factors`: the catalogue's factors (those reading `source`, as main source or `also_from`, are picked
    out, in catalogue order); `quality`: the territory's thresholds; `territory_bounds`: the communes'
    total bounds (minx, miny, maxx, maxy) in EPSG:2154. Raises ValueError on bounds that are not a box.
    """
    reading = [f for f in factors if source.slug in f.sources]
    filters = tuple(
        FilterSpec(factor=f.slug, column=cond.field, values=tuple(cond.values), negated=cond.negated)
        for f in reading for cond in f.where
    )
    buffers = tuple(
        BufferSpec(factor=f.slug, column=f.buffer.radius_from, unit=f.buffer.unit,
                   metres_per_unit=f.buffer.to_metres, missing_m=f.buffer.missing_m, max_m=f.buffer.max_m)
        for f in reading if isinstance(f.buffer, ColumnBuffer)
    )
    return SuiteSpec(
        source=source.slug,
        label=source.label,
        family=source.family,
        geometry=source.geometry,
        geometry_types=FAMILY_TYPE_NAMES[source.geometry],  # what normalisation keeps for the declared kind
        territory_bounds=territory_bounds,
        columns=dict(source.columns),  # order kept: a boundary layer declares its code field first
        known_values={column: tuple(values) for column, values in source.known_values.items()},
        filters=filters,
        buffers=buffers,
        connector=source.connector,
        paging_key=_paging_key(source),
        thresholds=thresholds(quality),
    )


def thresholds(quality: QualitySpec) -> Thresholds:
    return Thresholds(
        row_count_band=quality.row_count_band,
        filter_values=quality.filter_values,
        bounds_margin_m=quality.bounds_margin_m,
        min_valid_share=quality.min_valid_share,
    )


def normalise_summary(report: NormaliseReport) -> NormaliseSummary:
    """What the suite checks of a normalisation report: rows in, drops per reason, cast failures per column."""
    return NormaliseSummary(rows_in=report.rows_in, dropped=dict(report.dropped),
                            cast_failures=dict(report.cast_failures), dropped_examples=dict(report.dropped_examples))


def _paging_key(source: SourceDef) -> str | None:
    """The identifier the download pages on: the IGN id field, or a WFS `sort_by` (None for other connectors)."""
    location = source.location
    if isinstance(location, IgnWfsLocation):
        return location.id_field
    if isinstance(location, WfsLocation):
        return location.sort_by or None
    return None
