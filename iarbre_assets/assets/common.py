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

AC = dg.AutomationCondition
_GUARDS = ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
_CODE_CHANGED = AC.code_version_changed() & ~AC.in_progress()


def _eager_with(trigger: dg.AutomationCondition) -> dg.AutomationCondition:
    """Dagster's eager() with a chosen trigger, and only once upstream blocking checks passed."""
    return (
        AC.in_latest_time_window()
        & (AC.newly_missing() | trigger).since_last_handled()
        & _GUARDS
        & AC.all_deps_blocking_checks_passed()
    )


# Recompute when an upstream was updated (and passed its blocking checks), or our code/catalogue changed.
EAGER = (_eager_with(AC.any_deps_updated()) | _CODE_CHANGED).with_label("eager")
# Normalise only when the raw bytes changed: an unchanged re-fetch has the same data version.
ON_NEW_DATA = (_eager_with(AC.any_deps_match(AC.data_version_changed())) | _CODE_CHANGED).with_label(
    "when upstream data version changed")


def eager_per_commune(ignored: list[dg.AssetKey]) -> dg.AutomationCondition:
    """Footprints: the unpartitioned sources order the run but do not trigger it; the per-commune
    `source_by_commune` reports do, so only the communes whose data changed are recomputed."""
    trigger = AC.any_deps_updated().ignore(dg.AssetSelection.assets(*ignored))
    return (_eager_with(trigger) | _CODE_CHANGED).with_label("eager, only for communes whose data changed")


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
