"""Typed, validated models of the factor catalogue and of source locations.

The catalogue is data (factors.yaml); these models are what a steward's edit is checked against:
unknown fields, unknown sources or meta-factors, duplicate slugs and out-of-range weights are refused.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG_PATTERN = r"^[a-z][a-z0-9_]*$"
Slug = Annotated[str, Field(pattern=SLUG_PATTERN, max_length=64)]
ColumnType = Literal["str", "int", "float"]
GeometryKind = Literal["point", "line", "polygon", "any"]
ConnectorKind = Literal["wfs", "ign_wfs", "datafair", "cartofriches", "file"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------------------------
# Locations: where one source is read from (catalogue default, overridden by a territory)
# ----------------------------------------------------------------------------------------------
class _Remote(Strict):
    url: str
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    params: dict[str, str] = Field(default_factory=dict, description="extra query parameters")
    poll_every: str | None = Field(None, description="ISO 8601 duration between two probes of the endpoint "
                                   "(default: the source's cadence / 30, between 1 hour and 1 day)")

    @field_validator("poll_every")
    @classmethod
    def _poll_every(cls, value: str | None) -> str | None:
        if value is not None:
            duration_to_timedelta(value)
        return value


class WfsLocation(_Remote):
    kind: Literal["wfs"] = "wfs"
    typename: str
    sort_by: str | None = None
    page_size: int = Field(1000, gt=0)
    srs: str = "EPSG:2154"


class IgnWfsLocation(_Remote):
    kind: Literal["ign_wfs"] = "ign_wfs"
    typename: str
    id_field: str = "cleabs"
    page_size: int = Field(5000, gt=0)
    srs: str = "EPSG:2154"


class DatafairLocation(_Remote):
    kind: Literal["datafair"] = "datafair"
    qs: str | None = Field(None, description="data-fair query-string filter, e.g. code_epci:200046977")
    page_size: int = Field(10000, gt=0)
    geometry_field: str = "geometry"


class CartofrichesLocation(_Remote):
    kind: Literal["cartofriches"] = "cartofriches"
    coddep: str
    page_size: int = Field(1000, gt=0)


class FileLocation(Strict):
    kind: Literal["file"] = "file"
    path: str = Field(description="file name, relative to the territory's data directory, or absolute")
    layer: str | None = None
    crs: str | None = Field(None, description="CRS to assume only when the file declares none")

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str | None) -> str | None:
        if value is not None:
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(value)
            except CRSError:
                raise ValueError(f"unknown CRS {value!r}") from None
        return value


Location = Annotated[
    Union[WfsLocation, IgnWfsLocation, DatafairLocation, CartofrichesLocation, FileLocation],
    Field(discriminator="kind"),
]


# ----------------------------------------------------------------------------------------------
# Catalogue
# ----------------------------------------------------------------------------------------------
_ISO_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


_ISO_TIME = re.compile(r"^P(?:(\d+)D)?T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


def duration_to_timedelta(value: str) -> timedelta:
    """An ISO 8601 duration: a cadence (P1M, P6M, P1Y) or a time (PT6H, PT30M, P1DT12H)."""
    match = _ISO_TIME.match(value)
    if match and any(match.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    return cadence_to_timedelta(value)


def cadence_to_timedelta(cadence: str) -> timedelta:
    match = _ISO_DURATION.match(cadence)
    if not match or not any(match.groups()):
        raise ValueError(f"cadence {cadence!r} is not an ISO 8601 duration like P1M, P6M, P1Y")
    years, months, weeks, days = (int(g or 0) for g in match.groups())
    return timedelta(days=365 * years + 30 * months + 7 * weeks + days)


def _valid_cadence(value: str) -> str:
    cadence_to_timedelta(value)
    return value


# How often a partner is expected to publish, as an ISO 8601 duration (P1M, P6M, P1Y...).
Cadence = Annotated[str, AfterValidator(_valid_cadence)]


class ClassBreak(Strict):
    max: float
    class_: int = Field(alias="class")


class Scoring(Strict):
    blocked_score: float
    weight_min: float
    weight_max: float
    class_breaks: list[ClassBreak]
    class_above: int
    top_factors: int = Field(5, ge=1, le=10)

    @model_validator(mode="after")
    def _breaks_increase(self) -> "Scoring":
        maxima = [b.max for b in self.class_breaks]
        if maxima != sorted(maxima) or len(set(maxima)) != len(maxima):
            raise ValueError("class_breaks must have strictly increasing `max` values")
        return self


class ClassDef(Strict):
    class_: int = Field(alias="class")
    label: str
    colour: str = Field(pattern=r"^#[0-9A-Fa-f]{6}$")


class MetaFactor(Strict):
    slug: Slug
    label: str
    aggregate_in_top: bool = False


class Partner(Strict):
    name: str
    kind: Literal["public_service", "water_service", "operator", "transport_authority", "network_operator",
                  "national_agency", "synthetic"]


class SourceDef(Strict):
    slug: Slug
    label: str
    partner: Slug
    family: Slug
    geometry: GeometryKind
    connector: ConnectorKind
    location: Location
    columns: dict[str, ColumnType] = Field(default_factory=dict)
    known_values: dict[str, list[Union[int, float, str]]] = Field(default_factory=dict)
    split_multipart: bool = False
    cadence: Cadence
    licence: str

    @model_validator(mode="after")
    def _consistent(self) -> "SourceDef":
        if self.location.kind != self.connector:
            raise ValueError(f"location kind {self.location.kind!r} does not match connector {self.connector!r}")
        for column in self.known_values:
            if column not in self.columns:
                raise ValueError(f"known_values names column {column!r}, which is not in `columns`")
        return self

    @property
    def cadence_delta(self) -> timedelta:
        return cadence_to_timedelta(self.cadence)


class Where(Strict):
    field: str
    in_: list[Union[int, float, str]] | None = Field(None, alias="in")
    not_in: list[Union[int, float, str]] | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> "Where":
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("a filter needs exactly one of `in` or `not_in`")
        return self

    @property
    def values(self) -> list:
        """The listed values, text in Unicode NFC (as normalisation stores source text)."""
        listed = self.in_ if self.in_ is not None else self.not_in
        return [unicodedata.normalize("NFC", v) if isinstance(v, str) else v for v in listed]

    @property
    def negated(self) -> bool:
        return self.not_in is not None


def location_summary(location) -> str:
    """A one-line description of where a source is read: URL or file, with typename, layer, filter."""
    where = getattr(location, "url", None) or getattr(location, "path", "")
    if getattr(location, "typename", None):
        where += f" (typename {location.typename})"
    if getattr(location, "layer", None):
        where += f" (layer {location.layer})"
    if getattr(location, "qs", None):
        where += f" (qs {location.qs})"
    return where


class FixedBuffer(Strict):
    distance_m: float = Field(gt=0)


class ColumnBuffer(Strict):
    radius_from: str
    unit: Literal["m", "cm"]
    missing_m: float = Field(ge=0, description="radius for features with no usable value")
    max_m: float = Field(gt=0, description="values above this radius are clamped and counted")

    @property
    def to_metres(self) -> float:
        return 0.01 if self.unit == "cm" else 1.0


class FactorDef(Strict):
    slug: Slug
    label: str
    weight: float
    blocking: bool = False
    display_only: bool = False
    meta: Slug | None = None
    source: Slug
    also_from: list[Slug] = Field(default_factory=list)
    where: list[Where] = Field(default_factory=list)
    buffer: FixedBuffer | ColumnBuffer | None = None
    union: bool = False
    simplify_m: float | None = Field(None, gt=0)

    @property
    def sources(self) -> list[str]:
        return [self.source, *self.also_from]

    @property
    def halo_m(self) -> float:
        """How far outside a window a feature can still reach into it."""
        if isinstance(self.buffer, FixedBuffer):
            return self.buffer.distance_m
        if isinstance(self.buffer, ColumnBuffer):
            return max(self.buffer.max_m, self.buffer.missing_m)
        return 0.0


class Catalogue(Strict):
    version: str
    scoring: Scoring
    classes: list[ClassDef]
    meta_factors: list[MetaFactor]
    partners: dict[Slug, Partner]
    sources: dict[Slug, SourceDef]
    factors: list[FactorDef]

    @model_validator(mode="before")
    @classmethod
    def _inject_source_slugs(cls, data):
        # sources are keyed by slug in the file; the connector kind names the location's type
        if isinstance(data, dict) and isinstance(data.get("sources"), dict):
            sources = {}
            for slug, body in data["sources"].items():
                if isinstance(body, dict):
                    body = dict(body)
                    body.setdefault("slug", slug)
                    if isinstance(body.get("location"), dict) and "kind" not in body["location"]:
                        body["location"] = {"kind": body.get("connector"), **body["location"]}
                sources[slug] = body
            data = {**data, "sources": sources}
        return data

    @model_validator(mode="after")
    def _cross_references(self) -> "Catalogue":
        errors: list[str] = []
        seen: set[str] = set()
        meta_slugs = {m.slug for m in self.meta_factors}
        for index, factor in enumerate(self.factors):
            where = f"factors[{index}] (slug {factor.slug!r})"
            if factor.slug in seen:
                errors.append(f"{where}.slug: duplicate slug {factor.slug!r}")
            seen.add(factor.slug)
            if not self.scoring.weight_min <= factor.weight <= self.scoring.weight_max:
                errors.append(
                    f"{where}.weight: {factor.weight} is outside "
                    f"[{self.scoring.weight_min}, {self.scoring.weight_max}]"
                )
            if factor.blocking and factor.weight != self.scoring.blocked_score:
                errors.append(f"{where}.weight: a blocking factor must weigh {self.scoring.blocked_score}")
            if factor.display_only and (factor.weight != 0 or factor.blocking or factor.meta):
                errors.append(f"{where}: a display-only factor has weight 0, no meta-factor and does not block")
            if not factor.display_only and factor.meta is None:
                errors.append(f"{where}.meta: missing (only display-only factors have no meta-factor)")
            if factor.meta is not None and factor.meta not in meta_slugs:
                errors.append(f"{where}.meta: unknown meta-factor {factor.meta!r}; known: {sorted(meta_slugs)}")
            for source_slug in factor.sources:
                source = self.sources.get(source_slug)
                if source is None:
                    errors.append(f"{where}.source: unknown source {source_slug!r}")
                    continue
                for cond in factor.where:
                    if cond.field not in source.columns:
                        errors.append(
                            f"{where}.where: field {cond.field!r} is not a declared column of source {source_slug!r}"
                        )
                        continue
                    wanted = source.columns[cond.field]
                    for value in cond.values:
                        if not _value_matches(value, wanted):
                            errors.append(
                                f"{where}.where: value {value!r} of {cond.field!r} is not of type {wanted}"
                            )
                    known = source.known_values.get(cond.field)
                    if known is not None:
                        unknown = [v for v in cond.values if v not in known]
                        if unknown:
                            errors.append(f"{where}.where: values {unknown} are not in known_values of {cond.field!r}")
                if isinstance(factor.buffer, ColumnBuffer):
                    if source.columns.get(factor.buffer.radius_from) not in {"int", "float"}:
                        errors.append(
                            f"{where}.buffer.radius_from: {factor.buffer.radius_from!r} is not a numeric column "
                            f"of source {source_slug!r}"
                        )
                # Un-buffered points or lines have no area: the reference silently dropped them.
                if factor.buffer is None and source.geometry in {"point", "line"} and not factor.display_only:
                    errors.append(f"{where}.buffer: source {source_slug!r} has {source.geometry} geometries, "
                                  "which cover no cell without a buffer")
        for slug, source in self.sources.items():
            if source.partner not in self.partners:
                errors.append(f"sources.{slug}.partner: unknown partner {source.partner!r}")
        class_codes = [b.class_ for b in self.scoring.class_breaks] + [self.scoring.class_above]
        if sorted(c.class_ for c in self.classes) != sorted(class_codes):
            errors.append(f"classes: must describe exactly the classes {class_codes}")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    # -- convenient views ------------------------------------------------------------------
    def factor(self, slug: str) -> FactorDef:
        for factor in self.factors:
            if factor.slug == slug:
                return factor
        raise KeyError(f"unknown factor {slug!r}")

    @property
    def scored_factors(self) -> list[FactorDef]:
        """The factors that are rasterised and scored (all but display-only ones)."""
        return [f for f in self.factors if not f.display_only]

    @property
    def blocking_factors(self) -> list[FactorDef]:
        return [f for f in self.factors if f.blocking]

    @property
    def meta_mapping(self) -> dict[str, list[str]]:
        """meta-factor slug -> factor slugs, derived from the factors themselves (no second spelling)."""
        mapping: dict[str, list[str]] = {m.slug: [] for m in self.meta_factors}
        for factor in self.scored_factors:
            mapping[factor.meta].append(factor.slug)
        return mapping

    @property
    def score_bounds(self) -> tuple[float, float]:
        """Lowest and highest score a cell can get under these weights."""
        additive = [f for f in self.scored_factors if not f.blocking]
        low = sum(f.weight for f in additive if f.weight < 0)
        high = sum(f.weight for f in additive if f.weight > 0)
        if self.blocking_factors:
            low = min(low, self.scoring.blocked_score)
        return low, high

    @property
    def halo_m(self) -> float:
        """Largest distance a factor footprint can reach from its features (fixed buffer or radius cap)."""
        return max((f.halo_m for f in self.scored_factors), default=0.0)

    def class_colours(self) -> dict[int, str]:
        return {c.class_: c.colour for c in self.classes}


def _value_matches(value, wanted: str) -> bool:
    if wanted == "str":
        return isinstance(value, str)
    if wanted == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)
