"""Territory files: which communes, which grid, which factors, and where each source comes from."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .models import (
    Cadence,
    Catalogue,
    FactorDef,
    Location,
    Slug,
    SourceDef,
    Strict,
)

from ..connectors.payload import ReadingLimits
from ..geo.crs import PLATFORM_CRS


def _check_crs(value: str) -> str:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(value)
    except CRSError as exc:
        raise ValueError(f"unknown CRS {value!r}: {exc}") from None
    return value


class GridSpec(Strict):
    crs: str = PLATFORM_CRS
    cell_size_m: float = Field(5.0, gt=0)
    subpixel_m: float = Field(1.0, gt=0)

    @field_validator("crs")
    @classmethod
    def _crs(cls, value: str) -> str:
        _check_crs(value)
        from pyproj import CRS

        if CRS.from_user_input(value) != CRS.from_user_input(PLATFORM_CRS):
            raise ValueError(f"the grid must be in {PLATFORM_CRS} (Lambert-93), got {value!r}")
        return value

    @model_validator(mode="after")
    def _subdivides(self) -> "GridSpec":
        ratio = self.cell_size_m / self.subpixel_m
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError("cell_size_m must be a whole multiple of subpixel_m")
        return self

    @property
    def factor(self) -> int:
        """Sub-pixels per cell side (5 for a 5 m cell of 1 m sub-pixels)."""
        return int(round(self.cell_size_m / self.subpixel_m))


class LayerSpec(Strict):
    """A territory-level reference layer (communes, IRIS) that is not a factor source."""

    label: str
    partner: Slug
    location: Location
    code_field: str
    name_field: str
    commune_field: str | None = None
    synthetic: bool = False
    cadence: Cadence = "P1Y"
    licence: str


class LocalServer(Strict):
    """Serve wire-format files (GML, data-fair JSON) from `root` on 127.0.0.1 for `${LOCAL_SERVER}` URLs.

    `kind` names the server plugin (entry point group `iarbre.local_servers`; the demo package provides "demo").
    """

    kind: str = "demo"
    root: str


class QualitySpec(Strict):
    row_count_band: float = Field(0.5, gt=0, description="allowed relative change of the row count")
    filter_values: Literal["blocking", "warn"] = "blocking"
    bounds_margin_m: float = Field(2000.0, ge=0)
    min_valid_share: float = Field(0.99, ge=0, le=1)


class Retention(Strict):
    raw_versions: int = Field(10, ge=1, description="raw versions kept per source (the accepted one always is)")
    score_runs: int = Field(5, ge=1, description="score runs kept addressable (the current map and labelled runs "
                                                 "always are)")


class Territory(Strict):
    name: Slug
    title: str
    description: str = ""
    data_dir: str | None = Field(None, description="where relative file paths resolve; default IARBRE_HOME/data/<name>")
    grid: GridSpec = GridSpec()
    communes: LayerSpec
    iris: LayerSpec | None = None
    local_server: LocalServer | None = None
    factors: Literal["all"] | list[Slug] = "all"
    sources: dict[Slug, Location]
    quality: QualitySpec = QualitySpec()
    retention: Retention = Retention()
    # what one delivery may hold (archive entries and size, compression ratio, features, vertices)
    limits: ReadingLimits = ReadingLimits()
    # set by the loader: the file this territory was read from
    file: str | None = None

    @model_validator(mode="after")
    def _layers(self) -> "Territory":
        if self.iris is not None and not self.iris.commune_field:
            raise ValueError("iris.commune_field: required, the INSEE code of the commune an IRIS belongs to")
        return self

    # -- resolution against the catalogue ----------------------------------------------------
    def check_against(self, catalogue: Catalogue) -> list[str]:
        """Cross-references a territory must satisfy; returns readable error lines."""
        errors = []
        if self.factors != "all":
            for slug in self.factors:
                if slug not in {f.slug for f in catalogue.factors}:
                    errors.append(f"factors: unknown factor {slug!r}")
        for slug in self.sources:
            if slug not in catalogue.sources:
                errors.append(f"sources.{slug}: unknown source {slug!r} (not in the catalogue)")
        if not errors:
            for factor in self.selected_factors(catalogue):
                for source in factor.sources:
                    if source not in self.sources:
                        errors.append(f"sources: no location for source {source!r}, needed by factor {factor.slug!r}")
        return errors

    def selected_factors(self, catalogue: Catalogue) -> list[FactorDef]:
        if self.factors == "all":
            return list(catalogue.factors)
        wanted = set(self.factors)
        return [f for f in catalogue.factors if f.slug in wanted]

    def source_defs(self, catalogue: Catalogue) -> dict[str, SourceDef]:
        """Every source this territory ingests, with its location for this territory.

        Includes the territory layers `communes` (and `iris`), which are ingested like any source.
        """
        used = []
        for factor in self.selected_factors(catalogue):
            for slug in factor.sources:
                if slug not in used:
                    used.append(slug)
        defs: dict[str, SourceDef] = {"communes": self._layer_def("communes", self.communes)}
        if self.iris is not None:
            defs["iris"] = self._layer_def("iris", self.iris)
        for slug in used:
            base = catalogue.sources[slug]
            location = self.sources[slug]
            defs[slug] = base.model_copy(update={"location": location, "connector": location.kind})
        return defs

    @staticmethod
    def _layer_def(slug: str, layer: LayerSpec) -> SourceDef:
        columns = {layer.code_field: "str", layer.name_field: "str"}
        if layer.commune_field:
            columns[layer.commune_field] = "str"
        return SourceDef(
            slug=slug,
            label=layer.label,
            partner=layer.partner,
            family="boundaries",
            geometry="polygon",
            connector=layer.location.kind,
            location=layer.location,
            columns=columns,
            cadence=layer.cadence,
            licence=layer.licence,
        )

    # -- paths and URLs ------------------------------------------------------------------------
    def url_variable_names(self) -> list[str]:
        """The ${NAME}s the source URLs use, but LOCAL_SERVER (the local wire server's address)."""
        names = {n for loc in self.sources.values() for n in url_variable_names(getattr(loc, "url", "") or "")}
        return sorted(names - {"LOCAL_SERVER"})

    def data_dir_path(self, home: Path, override: Path | str | None = None) -> Path:
        if override:
            return Path(override).resolve()
        if self.data_dir:
            path = Path(os.path.expandvars(self.data_dir))
            if not path.is_absolute() and self.file:
                path = Path(self.file).parent / path
            return path.resolve()
        return (Path(home) / "data" / self.name).resolve()


_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def url_variable_names(url: str) -> list[str]:
    return _VAR.findall(url)


def expand_url(url: str, variables: dict[str, str]) -> str:
    """Replace ${NAME} with a value from `variables`; unknown names are an error."""

    def repl(match: re.Match) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        raise KeyError(f"URL {url!r} needs ${{{name}}}, which is not set")

    return _VAR.sub(repl, url)

