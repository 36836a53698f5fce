"""What a quality suite is built from: plain, frozen values, no catalogue models.

`quality` knows nothing of the product (`iarbre_assets`) nor of Dagster. The product maps its catalogue,
territory and normalisation report onto these classes (`iarbre_assets.catalog.quality_spec.suite_spec`),
and the suites read nothing else:

    spec = SuiteSpec(source="ore_gaz", label="Réseau de gaz", family="networks", geometry="line",
                     geometry_types=frozenset({"LineString", "LinearRing", "MultiLineString"}),
                     columns={"materiau": "str"}, territory_bounds=(840000.0, 6515000.0, 846000.0, 6521000.0))
    run_quality_suite(gdf, spec, previous_row_count=None, normalise_summary=None)

Each class checks its own values on construction, so a suite is never built from a spec it cannot honour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Union

Value = Union[int, float, str]

# dtype names GX's ExpectColumnValuesToBeInTypeList recognises for the normalised column types
TYPE_LISTS: dict[str, list[str]] = {
    "str": ["StringDtype"],
    "int": ["Int64Dtype", "Int32Dtype", "int64", "int32"],
    "float": ["Float64Dtype", "Float32Dtype", "float64", "float32"],
}
GEOMETRY_KINDS = ("point", "line", "polygon", "any")
FILTER_VALUES_MODES = ("blocking", "warn")


@dataclass(frozen=True)
class Thresholds:
    """How strict the suite is (a territory's `quality:` block).

    `row_count_band`: allowed relative change of the row count against the previous accepted version;
    `filter_values`: whether a value a factor filter names but the layer lacks blocks or only warns;
    `bounds_margin_m`: how far outside the territory box a feature may reach; `min_valid_share`: the
    share of features that must pass the per-feature checks (validity, measure, radius, non-null codes).
    """

    row_count_band: float = 0.5
    filter_values: str = "blocking"
    bounds_margin_m: float = 2000.0
    min_valid_share: float = 0.99

    def __post_init__(self) -> None:
        if not (isinstance(self.row_count_band, (int, float)) and self.row_count_band > 0):
            raise ValueError(f"row_count_band must be > 0, got {self.row_count_band!r}")
        if self.filter_values not in FILTER_VALUES_MODES:
            raise ValueError(f"filter_values must be one of {FILTER_VALUES_MODES}, got {self.filter_values!r}")
        if not (isinstance(self.bounds_margin_m, (int, float)) and self.bounds_margin_m >= 0):
            raise ValueError(f"bounds_margin_m must be >= 0, got {self.bounds_margin_m!r}")
        if not (isinstance(self.min_valid_share, (int, float)) and 0 <= self.min_valid_share <= 1):
            raise ValueError(f"min_valid_share must be within [0, 1], got {self.min_valid_share!r}")


@dataclass(frozen=True)
class FilterSpec:
    """One `where` clause of a factor reading the source: the values of `column` it selects (or, when
    `negated`, excludes). A value the layer no longer holds silently empties (or floods) the factor."""

    factor: str
    column: str
    values: tuple[Value, ...]
    negated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class BufferSpec:
    """A factor's per-feature radius read from `column`, in `unit` (`metres_per_unit` metres each);
    features without a usable value get `missing_m`, radii above `max_m` are clamped."""

    factor: str
    column: str
    unit: str
    metres_per_unit: float
    missing_m: float
    max_m: float

    def __post_init__(self) -> None:
        if not self.metres_per_unit > 0 or not self.max_m > 0 or not self.missing_m >= 0:
            raise ValueError(f"buffer of factor {self.factor!r} on {self.column!r}: "
                             f"metres_per_unit and max_m must be > 0 and missing_m >= 0")


@dataclass(frozen=True)
class SuiteSpec:
    """Everything a source's suite is derived from.

    `columns`: the declared attributes and their types ("str", "int", "float"), in declaration order
    (a boundary layer declares its code field first); `known_values`: closed nomenclatures per column;
    `geometry`: the declared kind and `geometry_types` the type names normalisation keeps for it;
    `filters`/`buffers`: what the factors reading this source rely on; `connector` and `paging_key`: how
    the layer is downloaded (a WFS paging key or IGN id field is the feature identifier); `territory_bounds`:
    the communes' total bounds (minx, miny, maxx, maxy) in EPSG:2154.
    """

    source: str
    label: str
    family: str
    geometry: str
    geometry_types: frozenset[str]
    territory_bounds: tuple[float, float, float, float]
    columns: Mapping[str, str] = field(default_factory=dict)
    known_values: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    filters: tuple[FilterSpec, ...] = ()
    buffers: tuple[BufferSpec, ...] = ()
    connector: str | None = None
    paging_key: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        slug = self.source
        set_ = object.__setattr__
        set_(self, "territory_bounds", _checked_bounds(self.territory_bounds, slug))
        if self.geometry not in GEOMETRY_KINDS:
            raise ValueError(f"source {slug!r}: geometry must be one of {GEOMETRY_KINDS}, got {self.geometry!r}")
        set_(self, "geometry_types", frozenset(self.geometry_types))
        if not self.geometry_types:
            raise ValueError(f"source {slug!r}: no geometry type names for kind {self.geometry!r}")
        set_(self, "columns", dict(self.columns))
        unknown = {c: k for c, k in self.columns.items() if k not in TYPE_LISTS}
        if unknown:
            raise ValueError(f"source {slug!r}: column types {unknown} not among {sorted(TYPE_LISTS)}")
        set_(self, "known_values", {c: tuple(v) for c, v in self.known_values.items()})
        undeclared = sorted(set(self.known_values) - set(self.columns))
        if undeclared:
            raise ValueError(f"source {slug!r}: known_values name undeclared columns {undeclared}")
        set_(self, "filters", tuple(self.filters))
        set_(self, "buffers", tuple(self.buffers))
        if not isinstance(self.thresholds, Thresholds):
            raise TypeError(f"source {slug!r}: thresholds must be a quality.spec.Thresholds")


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


@dataclass(frozen=True)
class NormaliseSummary:
    """What normalisation did that the suite checks: features in, features dropped (per reason), and
    values per declared column that could not be converted to its type."""

    rows_in: int
    dropped: Mapping[str, int] = field(default_factory=dict)
    cast_failures: Mapping[str, int] = field(default_factory=dict)
    dropped_examples: Mapping[str, list] = field(default_factory=dict)  # reason -> a few feature ids

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", {str(k): int(v) for k, v in self.dropped.items()})
        object.__setattr__(self, "dropped_examples", {str(k): [str(i) for i in v][:5]
                                                      for k, v in self.dropped_examples.items()})
        object.__setattr__(self, "cast_failures", {str(k): int(v) for k, v in self.cast_failures.items()})

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "NormaliseSummary":
        """From a report's dict (e.g. `NormaliseReport.as_dict()`); other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def coerce(cls, value: "NormaliseSummary | Mapping[str, Any] | None") -> "NormaliseSummary | None":
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_mapping(value)
        raise TypeError(f"normalise_summary must be a NormaliseSummary, a mapping or None, not {type(value).__name__}")
