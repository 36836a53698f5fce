"""The metadata the ingest records on raw/<source> and source/<source>: what a steward reads in the UI."""

import dagster as dg

from ..catalog import SourceDef
from ..compute.ingest import IngestResult
from ..geo.grid import PLATFORM_CRS
from .keys import source_key


def requests_table(requests: list[dict]) -> dg.MetadataValue:
    lines = ["| # | URL | status | bytes | seconds |", "|---|---|---|---|---|"]
    for i, req in enumerate(requests[:50], 1):
        lines.append(f"| {i} | {req.get('url', '')} | {req.get('status', '')} | {req.get('bytes', '')} | "
                     f"{req.get('elapsed_s', '')} |")
    if len(requests) > 50:
        lines.append(f"| … | {len(requests) - 50} more | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def delivery_text(result: IngestResult) -> str:
    version = result.raw
    if result.raw_is_new:
        return f"new bytes {version.short} delivered ({len(version.requests) or 1} request(s)), refused by their checks"
    return f"{len(version.requests) or 1} request(s) / file read without error; same bytes as version {version.short}"


def raw_metadata(source: SourceDef, result: IngestResult) -> dict:
    version = result.raw
    return {
        "sha256": version.sha256,
        "new_version": result.raw_is_new,
        "origin": version.origin,
        "partner": source.partner,
        "licence": source.licence,
        "size_bytes": version.size,
        "first_seen_at": version.first_seen_at,
        "fetched_at": version.last_seen_at,
        "requests": len(version.requests),
        "request_log": requests_table(version.requests),
        "pruned_versions": result.pruned,
        "dagster/uri": dg.MetadataValue.path(result.raw_path),
    }


def suite_metadata(suite) -> dict:
    return {
        "suite": suite.suite_name,
        "results": dg.MetadataValue.md(suite.to_markdown()),
        "evaluated": int(suite.statistics.get("evaluated", 0)),
        "successful": int(suite.statistics.get("successful", 0)),
        "gx_version": suite.gx_version,
    }


def source_result(source: SourceDef, result: IngestResult) -> dg.MaterializeResult:
    record = result.record
    key = source_key(source.slug)
    report = record.report or {}
    metadata = {
        "version": record.version,
        "status": result.status,
        "raw_sha256": record.raw_sha256,
        "normalised_sha256": record.normalised_sha256,
        "origin": record.origin,
        "partner": source.partner,
        "licence": source.licence,
        "accepted_at": record.accepted_at,
        "previous_version": result.previous_version,
        "dagster/row_count": record.rows or 0,
        "rows_in": report.get("rows_in"),
        "rows_dropped": sum((report.get("dropped") or {}).values()),
        "dropped_reasons": dg.MetadataValue.json(report.get("dropped") or {}),
        "rows_repaired": report.get("repaired"),
        "flattened_3d": report.get("flattened_3d"),
        "parts_added": report.get("parts_added"),
        "cast_failures": dg.MetadataValue.json(report.get("cast_failures") or {}),
        "crs_in": str(report.get("crs_in")),
        "crs": str(report.get("crs_out")),
        "bounds": dg.MetadataValue.json([round(v, 2) for v in report["bounds"]]) if report.get("bounds") else None,
        "communes_changed": dg.MetadataValue.json(result.changed_communes),
        "dagster/uri": dg.MetadataValue.path(result.data_path),
        "dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(name, kind) for name, kind in source.columns.items()
        ] + [dg.TableColumn("geometry", f"{source.geometry} ({PLATFORM_CRS})")]),
    }
    if result.suite is not None:
        suite = result.suite
        checks = [
            dg.AssetCheckResult(asset_key=key, check_name="quality_suite", passed=True, metadata=suite_metadata(suite)),
            dg.AssetCheckResult(asset_key=key, check_name="quality_warnings", passed=not suite.warnings,
                                severity=dg.AssetCheckSeverity.WARN, metadata=suite_metadata(suite),
                                description="; ".join(suite.warnings) or "no warning"),
        ]
    else:  # unchanged: the same version already passed
        warnings = record.quality.get("warnings") or []
        checks = [
            dg.AssetCheckResult(asset_key=key, check_name="quality_suite", passed=True,
                                description=f"version {record.version} already passed its checks"),
            dg.AssetCheckResult(asset_key=key, check_name="quality_warnings", passed=not warnings,
                                severity=dg.AssetCheckSeverity.WARN, description="; ".join(warnings) or "no warning"),
        ]
    return dg.MaterializeResult(asset_key=key, data_version=dg.DataVersion(record.normalised_sha256),
                                metadata={k: v for k, v in metadata.items() if v is not None}, check_results=checks)
