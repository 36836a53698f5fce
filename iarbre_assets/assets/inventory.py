"""source_inventory: every source version ever seen, and each source's freshness, in the warehouse.

Read by the dbt mart `source_inventory` (what data stewards watch: partner, version, when it was
delivered and accepted, row counts, check status, and the freshness of provenance/freshness.py, the one
definition `iarbre freshness`, the partner_freshness check and Dagster's freshness policy share).
"""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from dagster import AssetExecutionContext

from ..automation.conditions import DAILY_OR_CODE_CHANGED
from ..platform import Platform
from ..provenance.freshness import territory_freshness
from ..resources import TerritoryResource, WarehouseResource
from ..warehouse import writes
from ..warehouse.schema import contract
from .keys import GROUP_SOURCES, INVENTORY_KEY, STEWARDS, WAREHOUSE_POOL, source_key


def _ts(value: str | None):
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return (parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed).replace(tzinfo=None)


def inventory_rows(platform: Platform) -> list[dict]:
    store = platform.store.raw
    rows = []
    for slug, source in platform.sources.items():
        versions = platform.store.versions(slug)
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
                    "row counts, check status) and each source's freshness (iarbre.source_versions and "
                    "iarbre.source_freshness, for the marts). Rebuilt when a source changes, and daily so the "
                    "freshness stays true while nothing is delivered.",
        code_version="inv2",
        automation_condition=DAILY_OR_CODE_CHANGED,
        pool=WAREHOUSE_POOL,
    )
    def _inventory(context: AssetExecutionContext, territory: TerritoryResource,
                   warehouse: WarehouseResource) -> dg.MaterializeResult:
        platform = territory.platform
        territory.progress(context.run.run_id).emit("source inventory")
        frame = pd.DataFrame(inventory_rows(platform))
        freshness = [f.as_dict() for f in territory_freshness(platform, territory.as_of)]
        fresh = pd.DataFrame([{**f, "content_changed_at": _ts(f["content_changed_at"]),
                               "last_fetch_at": _ts(f["last_fetch_at"]), "last_rejected_at": _ts(f["last_rejected_at"]),
                               "as_of": _ts(f["as_of"])} for f in freshness]).drop(columns=["label"])
        with warehouse.get_connection() as con:
            writes.write_source_inventory(con, contract(platform.catalogue), frame, fresh)
        current = frame[frame["is_current"]] if len(frame) else frame
        late = sorted(f["source"] for f in freshness if f["status"] == "late")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": len(frame),
            "sources": len(platform.sources),
            "sources_with_accepted_version": int(current["source"].nunique()) if len(current) else 0,
            "rejected_versions": int((frame["check_status"] == "failed").sum()) if len(frame) else 0,
            "late_sources": dg.MetadataValue.json(late),
            "freshness_as_of": freshness[0]["as_of"] if freshness else "",
        })

    return _inventory
