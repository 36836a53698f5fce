"""Source specs, generated from the catalogue: raw/<source> -> source/<source> -> source_by_commune/<source>.

raw/<source>        what a partner dropped or an endpoint returned, kept byte for byte (data version =
                    SHA-256 of the bytes), with owners, licence, origin and a freshness policy from the cadence.
source/<source>     normalised (EPSG:2154, 2-D, repaired, typed) and accepted only when its blocking Great
                    Expectations suite passes.
source_by_commune/  one partition per commune, reported by the ingest for the communes whose window
  <source>          (commune + halo) content changed: a partner update recomputes only those.
"""

import dagster as dg

from ..automation.conditions import CODE_CHANGED
from ..catalog import SourceDef
from ..catalog.models import location_summary
from ..platform import Platform
from ..store.versions import NORMALISER_VERSION
from .keys import (
    GROUP_SOURCES,
    STEWARDS,
    by_commune_key,
    communes_partitions,
    inbox_key,
    partner_owner,
    raw_key,
    source_key,
    source_tags,
    stable_hash,
)

REMOTE_KINDS = {"wfs", "ign_wfs", "datafair", "cartofriches"}


def _describe(source: SourceDef, platform: Platform) -> str:
    partner = platform.catalogue.partners.get(source.partner)
    where = location_summary(source.location)
    return (
        f"{source.label}. Partner: {partner.name if partner else source.partner}. "
        f"Origin: {source.connector} {where}. Licence: {source.licence}. Expected cadence: {source.cadence}."
    )


def source_code_version(platform: Platform, source: SourceDef) -> str:
    """What changes a normalised version: normaliser, source schema, quality settings, filters checked."""
    factors = platform.factors_of_source(source.slug)
    return f"{NORMALISER_VERSION}-" + stable_hash({
        "source": source.model_dump(mode="json", exclude={"location"}),
        "quality": platform.territory.quality.model_dump(),
        "factors": [f.model_dump(mode="json", by_alias=True, include={"slug", "where"}) for f in factors],
    })


# ------------------------------------------------------------------------------------------------
def inbox_spec(platform: Platform, partner: str, sources: list[SourceDef]) -> dg.AssetSpec:
    """A partner's inbox folder (external): what was dropped and what became of each file are its observations."""
    info = platform.catalogue.partners.get(partner)
    return dg.AssetSpec(
        key=inbox_key(partner), group_name=GROUP_SOURCES, owners=[partner_owner(sources[0]), STEWARDS],
        kinds={"folder"},
        description=f"Files {info.name if info else partner} drops in inbox/{partner}/: each is matched to one of "
                    f"{', '.join(s.slug for s in sources)} (docs/operations.md), or set aside with its reason.")


def raw_spec(platform: Platform, source: SourceDef) -> dg.AssetSpec:
    cadence = source.cadence_delta
    return dg.AssetSpec(
        key=raw_key(source.slug),
        deps=[inbox_key(source.partner)],
        group_name=GROUP_SOURCES,
        owners=[partner_owner(source), STEWARDS],
        tags=source_tags(source),
        kinds={source.connector, "raw"},
        description="Raw delivery, byte for byte. " + _describe(source, platform),
        code_version="raw-1",
        # materialised exactly when new bytes are accepted: Dagster's freshness = provenance/freshness.py
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=cadence),
        metadata={"partner": source.partner, "licence": source.licence, "cadence": source.cadence},
        skippable=True,
    )


def source_spec(platform: Platform, source: SourceDef) -> dg.AssetSpec:
    deps = [raw_key(source.slug)] + ([] if source.slug == "communes" else [source_key("communes")])
    return dg.AssetSpec(
        key=source_key(source.slug),
        deps=deps,
        group_name=GROUP_SOURCES,
        owners=[partner_owner(source), STEWARDS],
        tags=source_tags(source),
        kinds={"geopandas", "parquet"},
        description="Normalised layer (EPSG:2154, 2-D, repaired, typed), accepted only when its blocking "
        "quality checks pass. " + _describe(source, platform),
        code_version=source_code_version(platform, source),
        automation_condition=CODE_CHANGED,
        metadata={"partner": source.partner, "family": source.family},
        skippable=True,
    )


def check_specs(source: SourceDef) -> list[dg.AssetCheckSpec]:
    raw, norm = raw_key(source.slug), source_key(source.slug)
    return [
        dg.AssetCheckSpec("delivery", asset=raw, blocking=True,
                          description="The endpoint or partner file delivered readable bytes (HTTP status, paging "
                                      "completeness, exception reports, archive safety)."),
        dg.AssetCheckSpec("partner_freshness", asset=raw, blocking=False,
                          description=f"The partner published new content within its expected cadence "
                                      f"({source.cadence})."),
        dg.AssetCheckSpec("quality_suite", asset=norm, blocking=True,
                          description=f"Great Expectations suite '{source.family}': blocking expectations "
                                      "(schema, CRS, geometry, bounds, filter values)."),
        dg.AssetCheckSpec("quality_warnings", asset=norm, blocking=False,
                          description="Non-blocking expectations (row count against the previous version, ...)."),
    ]


def by_commune_spec(platform: Platform, source: SourceDef) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=by_commune_key(source.slug),
        deps=[source_key(source.slug)],
        group_name=GROUP_SOURCES,
        partitions_def=communes_partitions(platform.commune_codes),
        owners=[STEWARDS],
        tags=source_tags(source),
        kinds={"geopandas"},
        description=(
            f"{source.label}, per commune window (commune + {platform.source_halo_m(source.slug):.0f} m halo). "
            "Reported by source/" + source.slug + " for the communes whose window content changed, so a partner "
            "update recomputes only those communes."
        ),
    )
