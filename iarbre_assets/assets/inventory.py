"""source_inventory: every source version ever seen, accepted or rejected, in the warehouse.

Read by the dbt mart `source_inventory` (what data stewards watch: partner, version, when it was
delivered and accepted, row counts, check status, age against the expected cadence).
"""


from datetime import datetime

import dagster as dg
from dagster import AssetExecutionContext
import pandas as pd

from ..platform import Platform
from ..provenance.raw_store import RawStore
from ..provenance.source_versions import SourceVersions
from .common import EAGER, GROUP_SOURCES, STEWARDS, WAREHOUSE_POOL, source_key
from .warehouse_tables import write_table

INVENTORY_KEY = dg.AssetKey(["source_inventory"])


def _ts(value: str | None):
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=None)


def inventory_rows(platform: Platform) -> list[dict]:
    store = RawStore(platform.layout)
    rows = []
    for slug, source in platform.sources.items():
        versions = SourceVersions(platform.layout, slug)
        current = versions.current()
        history = {h["raw_sha256"]: h for h in versions.history()}  # last record per raw version wins
        partner = platform.catalogue.partners.get(source.partner)
        for raw in store.versions(slug):
            record = history.get(raw.sha256)
            status = "not_checked"
            checks_failed = 0
            if record:
                quality = record.get("quality_summary") or {}
                failures = quality.get("blocking_failures") or []
                warnings = quality.get("warnings") or []
                status = "failed" if record["status"] == "rejected" else ("warning" if warnings else "passed")
                checks_failed = len(failures) if record["status"] == "rejected" else 0
            report = (current.report if current and current.raw_sha256 == raw.sha256 else {}) or {}
            rows.append({
                "source": slug,
                "label": source.label,
                "partner": source.partner,
                "partner_name": partner.name if partner else source.partner,
                "family": source.family,
                "connector": raw.connector,
                "origin": raw.origin,
                "version": raw.sha256,
                "normalised_sha256": record.get("normalised_sha256") if record else None,
                "fetched_at": _ts(raw.last_seen_at),
                "accepted_at": _ts(record.get("accepted_at")) if record and record["status"] == "accepted" else None,
                "size_bytes": raw.size,
                "licence": source.licence,
                "rows_raw": report.get("rows_in"),
                "rows_normalised": record.get("rows") if record else None,
                "rows_dropped": sum((report.get("dropped") or {}).values()) if report else None,
                "rows_repaired": report.get("repaired"),
                "check_status": status,
                "checks_failed": checks_failed,
                "is_current": bool(current and current.raw_sha256 == raw.sha256),
                "cadence": source.cadence,
                "cadence_days": source.cadence_delta.days,
            })
    return rows


def build_inventory_asset(platform: Platform) -> dg.AssetsDefinition:
    @dg.asset(
        key=INVENTORY_KEY,
        deps=[source_key(slug) for slug in platform.sources],
        group_name=GROUP_SOURCES,
        owners=[STEWARDS],
        kinds={"duckdb"},
        description="Every raw version of every source (partner, origin, hash, delivery and acceptance times, "
                    "row counts, check status), loaded into iarbre.source_versions for the marts.",
        code_version="inv1",
        automation_condition=EAGER,
        pool=WAREHOUSE_POOL,
    )
    def _inventory(context: AssetExecutionContext) -> dg.MaterializeResult:
        rows = inventory_rows(platform)
        frame = pd.DataFrame(rows)
        write_table("source_versions", frame)
        current = frame[frame["is_current"]] if len(frame) else frame
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(frame),
            "sources": len(platform.sources),
            "sources_with_accepted_version": int(current["source"].nunique()) if len(current) else 0,
            "rejected_versions": int((frame["check_status"] == "failed").sum()) if len(frame) else 0,
        })

    return _inventory
