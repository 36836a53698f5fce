"""The graph's vocabulary, named once: asset keys, groups, owners, tags, partitions, pools."""

import hashlib
import json
import warnings

import dagster as dg

from ..catalog import SourceDef

# The APIs we rely on (backfill policies, automation conditions, freshness) are beta in Dagster 1.13;
# the pinned version is tested, so the per-definition warnings are noise.
for _category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.filterwarnings("ignore", category=_category)

GROUP_SOURCES = "sources"
GROUP_CONSTRAINTS = "constraints"
GROUP_SCORE = "score"
GROUP_MARTS = "marts"
GROUP_EXPORTS = "exports"

STEWARDS = "team:data-stewards"
# One writer at a time on the DuckDB warehouse (dagster.yaml limits the pool to 1).
WAREHOUSE_POOL = "warehouse"
SINGLE_RUN = dg.BackfillPolicy.single_run()

SCORE_KEY = dg.AssetKey(["plantability_score"])
CLASS_KEY = dg.AssetKey(["plantability_class"])
TILES_KEY = dg.AssetKey(["tiles"])
INVENTORY_KEY = dg.AssetKey(["source_inventory"])
SCORE_COG_KEY = dg.AssetKey(["plantability_score_cog"])
CLASS_COG_KEY = dg.AssetKey(["plantability_class_cog"])
GPKG_KEY = dg.AssetKey(["class_polygons_gpkg"])
TILES_EXPORT_KEY = dg.AssetKey(["tiles_geoparquet"])
PREVIEW_KEY = dg.AssetKey(["class_map_preview"])


def inbox_key(partner: str) -> dg.AssetKey:
    return dg.AssetKey(["inbox", partner])


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


def md_table(rows: list[dict], columns: list[str], limit: int = 12) -> dg.MetadataValue:
    """A Markdown table for asset metadata (the first `limit` rows, then a count of the rest)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more |" + " |" * (len(columns) - 1))
    return dg.MetadataValue.md("\n".join(lines))
