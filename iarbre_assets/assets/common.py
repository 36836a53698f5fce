"""Shared asset vocabulary: keys, groups, owners, partitions, automation conditions."""

from __future__ import annotations

import hashlib
import json

import warnings

import dagster as dg

# The APIs we rely on (backfill policies, automation conditions, freshness) are beta in Dagster 1.13;
# the pinned version is tested, so the per-definition warnings are noise.
for _category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.filterwarnings("ignore", category=_category)

from ..catalog import SourceDef

GROUP_SOURCES = "sources"
GROUP_CONSTRAINTS = "constraints"
GROUP_SCORE = "score"
GROUP_MARTS = "marts"
GROUP_EXPORTS = "exports"

STEWARDS = "team:data-stewards"
WAREHOUSE_POOL = "warehouse"

# Recompute when an upstream changed, once its blocking checks passed, or when our code/catalogue changed.
EAGER = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
) | (dg.AutomationCondition.code_version_changed() & ~dg.AutomationCondition.in_progress())


def raw_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", source])


def source_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["source", source])


def by_commune_key(source: str) -> dg.AssetKey:
    return dg.AssetKey(["source_by_commune", source])


def footprint_key(factor: str) -> dg.AssetKey:
    return dg.AssetKey(["footprint", factor])


def coverage_key(factor: str) -> dg.AssetKey:
    return dg.AssetKey(["coverage", factor])


def partner_owner(source: SourceDef) -> str:
    return f"team:{source.partner.replace('_', '-')}"


def source_tags(source: SourceDef) -> dict[str, str]:
    return {"partner": source.partner, "family": source.family, "connector": source.connector}


def stable_hash(obj) -> str:
    """Short hash of a JSON-able object (catalogue entries, weights) used as a code version."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def communes_partitions(codes: list[str]) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(list(codes))
