"""Source assets, generated from the catalogue: raw/<source> -> source/<source> -> source_by_commune/<source>.

raw/<source>        fetch (WFS, data-fair, IGN, Cartofriches) or pick up the partner's file; keep the bytes
                    in the content-addressed raw store. Data version = SHA-256 of the bytes.
source/<source>     normalise (EPSG:2154, 2-D, repaired, typed) and run the Great Expectations suite.
                    Only a version whose blocking checks pass is accepted; a rejected one fails the step,
                    so nothing downstream runs and the last accepted version stays in use.
source_by_commune/  one partition per commune, reported by source/<source> only for the communes whose
  <source>          window (commune + halo) content changed: partner updates recompute only those.
"""


from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from dagster import AssetExecutionContext
import geopandas as gpd

from ..catalog import SourceDef
from ..catalog.models import FileLocation
from ..paths import atomic_path
from ..platform import Platform
from ..provenance.change_detection import changed_windows, window_hashes
from ..provenance.raw_store import RawStore, utc_now
from ..provenance.source_versions import NORMALISER_VERSION, SourceVersion, SourceVersions, file_sha256, version_id
from .common import (
    EAGER,
    GROUP_SOURCES,
    STEWARDS,
    WAREHOUSE_POOL,
    by_commune_key,
    communes_partitions,
    partner_owner,
    raw_key,
    source_key,
    source_tags,
    stable_hash,
)

REMOTE_KINDS = {"wfs", "ign_wfs", "datafair", "cartofriches"}
# Remote endpoints are polled daily; partner files arrive through the inbox sensor.
POLL_REMOTE = dg.AutomationCondition.on_cron("0 5 * * *", "Europe/Paris")
ROW_GROUP_SIZE = 20_000


def _describe(source: SourceDef, platform: Platform) -> str:
    partner = platform.catalogue.partners.get(source.partner)
    loc = source.location
    where = getattr(loc, "url", None) or getattr(loc, "path", "")
    if getattr(loc, "typename", None):
        where += f" (typename {loc.typename})"
    if getattr(loc, "layer", None):
        where += f" (layer {loc.layer})"
    return (
        f"{source.label}. Partner: {partner.name if partner else source.partner}. "
        f"Origin: {source.connector} {where}. Licence: {source.licence}. Expected cadence: {source.cadence}."
    )


def _inbox_file(platform: Platform, source: SourceDef) -> Path | None:
    """A partner drop for this source: inbox/<partner>/<same file stem>.<any extension>, newest first."""
    if not isinstance(source.location, FileLocation):
        return None
    inbox = platform.layout.inbox_dir(source.partner)
    if not inbox.is_dir():
        return None
    stem = Path(source.location.path).stem
    drops = [p for p in inbox.iterdir() if p.is_file() and p.stem == stem and not p.name.startswith(".")]
    return max(drops, key=lambda p: p.stat().st_mtime_ns) if drops else None


def effective_source(platform: Platform, source: SourceDef) -> SourceDef:
    drop = _inbox_file(platform, source)
    if drop is None:
        return source
    location = source.location.model_copy(update={"path": str(drop)})
    return source.model_copy(update={"location": location})


def _commune_bboxes(platform: Platform) -> list[tuple[str, tuple[float, float, float, float]]]:
    return [(row.code, tuple(row.geometry.bounds)) for row in platform.communes.itertuples(index=False)]


def _requests_table(requests: list[dict]) -> dg.MetadataValue:
    lines = ["| # | URL | status | bytes | seconds |", "|---|---|---|---|---|"]
    for i, req in enumerate(requests[:50], 1):
        lines.append(f"| {i} | {req.get('url', '')} | {req.get('status', '')} | {req.get('bytes', '')} | "
                     f"{req.get('elapsed_s', '')} |")
    if len(requests) > 50:
        lines.append(f"| … | {len(requests) - 50} more | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def build_raw_asset(platform: Platform, source: SourceDef) -> dg.AssetsDefinition:
    slug = source.slug
    key = raw_key(slug)
    cadence = source.cadence_delta
    freshness_check = dg.AssetCheckSpec(
        "partner_freshness", asset=key, blocking=False,
        description=f"The partner published new content within its expected cadence ({source.cadence}).",
    )

    @dg.asset(
        key=key,
        group_name=GROUP_SOURCES,
        owners=[partner_owner(source), STEWARDS],
        tags=source_tags(source),
        kinds={source.connector, "raw"},
        description="Raw delivery, byte for byte. " + _describe(source, platform),
        code_version="raw-1",
        automation_condition=POLL_REMOTE if source.connector in REMOTE_KINDS else None,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=cadence * 2, warn_window=cadence),
        check_specs=[freshness_check],
        metadata={"partner": source.partner, "licence": source.licence, "cadence": source.cadence},
    )
    def _raw(context: AssetExecutionContext) -> dg.MaterializeResult:
        from ..connectors import ConnectorError, fetch_payload

        store = RawStore(platform.layout)
        effective = effective_source(platform, source)
        try:
            url = platform.source_url(effective)
            payload = fetch_payload(
                effective, data_dir=platform.data_dir, url=url, commune_bboxes=_commune_bboxes(platform)
            )
        except (ConnectorError, KeyError, OSError) as exc:
            kept = store.latest(slug)
            raise dg.Failure(
                description=f"raw/{slug}: delivery failed, nothing stored; the previous raw version "
                f"{kept.sha256[:16] if kept else '(none)'} is kept. {exc}",
                metadata={"source": slug, "partner": source.partner},
            ) from exc
        put = store.put(
            slug, payload.data, payload.ext, origin=payload.origin, partner=source.partner,
            licence=source.licence, connector=payload.kind, requests=payload.requests, details=payload.details,
        )
        accepted = SourceVersions(platform.layout, slug).current()
        pruned = store.prune(slug, keep=platform.territory.retention.raw_versions,
                             protect={accepted.raw_sha256} if accepted else set())
        version = put.version
        first_seen = datetime.fromisoformat(version.first_seen_at)
        age = datetime.now(timezone.utc) - first_seen
        fresh = age <= cadence
        context.log.info(f"{slug}: {'new' if put.is_new else 'unchanged'} version {version.short} from {payload.origin}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version.sha256),
            metadata={
                "sha256": version.sha256,
                "new_version": put.is_new,
                "origin": payload.origin,
                "partner": source.partner,
                "licence": source.licence,
                "size_bytes": version.size,
                "first_seen_at": version.first_seen_at,
                "fetched_at": version.last_seen_at,
                "requests": len(payload.requests),
                "request_log": _requests_table(payload.requests),
                "details": dg.MetadataValue.json(payload.details or {}),
                "pruned_versions": len(pruned),
                "dagster/uri": dg.MetadataValue.path(str(put.path)),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="partner_freshness",
                    passed=fresh,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=f"content first seen {version.first_seen_at}, {age.days} days ago; cadence {source.cadence}",
                    metadata={"content_age_days": age.days, "cadence_days": cadence.days},
                )
            ],
        )

    return _raw


def build_source_asset(platform: Platform, source: SourceDef) -> dg.AssetsDefinition:
    slug = source.slug
    key = source_key(slug)
    factors = platform.factors_of_source(slug)
    partitions_reported = bool(factors)
    checks = [
        dg.AssetCheckSpec("quality_suite", asset=key, blocking=True,
                          description=f"Great Expectations suite '{source.family}': blocking expectations "
                                      "(schema, CRS, geometry, bounds, filter values)."),
        dg.AssetCheckSpec("quality_warnings", asset=key, blocking=False,
                          description="Non-blocking expectations (row count against the previous version, ...)."),
    ]
    deps = [raw_key(slug)] + ([] if slug == "communes" else [source_key("communes")])
    code_version = f"{NORMALISER_VERSION}-" + stable_hash(
        {"source": source.model_dump(mode="json", exclude={"location"}), "quality": platform.territory.quality.model_dump(),
         "factors": [f.model_dump(mode="json", include={"slug", "where"}) for f in factors]}
    )

    @dg.asset(
        key=key,
        deps=deps,
        group_name=GROUP_SOURCES,
        owners=[partner_owner(source), STEWARDS],
        tags=source_tags(source),
        kinds={"geopandas", "parquet"},
        description="Normalised layer (EPSG:2154, 2-D, repaired, typed), accepted only when its blocking "
        "quality checks pass. " + _describe(source, platform),
        code_version=code_version,
        automation_condition=EAGER,
        check_specs=checks,
        pool=WAREHOUSE_POOL if slug in {"communes", "iris"} else None,
        metadata={"partner": source.partner, "family": source.family},
    )
    def _source(context: AssetExecutionContext) -> dg.MaterializeResult:
        return ingest_source(context, platform, source, factors, partitions_reported)

    return _source


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


# ------------------------------------------------------------------------------------------------
def _windows_signature(platform: Platform, halo: float) -> str:
    return stable_hash({code: list(w.bounds) for code, w in platform.windows.items()} | {"halo": halo})


def _suite_metadata(result) -> dict:
    return {
        "suite": result.suite_name,
        "results": dg.MetadataValue.md(result.to_markdown()),
        "evaluated": int(result.statistics.get("evaluated", 0)),
        "successful": int(result.statistics.get("successful", 0)),
        "gx_version": result.gx_version,
    }


def _write_geoparquet(gdf: gpd.GeoDataFrame, path: Path) -> None:
    if len(gdf):
        order = gdf.geometry.hilbert_distance().argsort(kind="stable")
        gdf = gdf.iloc[order.to_numpy()].reset_index(drop=True)
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp, schema_version="1.1.0", write_covering_bbox=True, row_group_size=ROW_GROUP_SIZE,
                       compression="zstd")


def ingest_source(context, platform: Platform, source: SourceDef, factors, partitions_reported: bool):
    from ..connectors import ConnectorError, parse_payload
    from ..geo.normalise import normalise
    from quality.runner import run_quality_suite

    slug = source.slug
    store = RawStore(platform.layout)
    versions = SourceVersions(platform.layout, slug)
    raw = store.latest(slug)
    if raw is None:
        raise dg.Failure(description=f"source/{slug}: no raw version yet; materialise raw/{slug} first")
    current = versions.current()
    vid = version_id(raw.sha256)
    halo = platform.source_halo_m(slug)
    signature = _windows_signature(platform, halo)

    if current is not None and current.version == vid:
        return _unchanged(context, platform, source, versions, current, signature, halo, partitions_reported)

    record = SourceVersion(source=slug, version=vid, raw_sha256=raw.sha256, normalised_sha256=None,
                           status="candidate", created_at=utc_now(), origin=raw.origin, partner=source.partner)
    kept = f"The last accepted version {current.version if current else '(none)'} stays in use."
    try:
        parsed = parse_payload(source, store.read(slug, raw.sha256), raw.ext)
        normalised, report = normalise(parsed, source)
    except (ConnectorError, ValueError) as exc:
        record.reason = str(exc)
        versions.reject(record)
        _log_check(context, slug, "quality_suite", False, f"could not read or normalise: {exc}")
        raise dg.Failure(
            description=f"source/{slug}: {raw.origin} (raw sha256 {raw.sha256[:16]}) cannot be used: {exc}. {kept}",
            metadata={"source": slug, "origin": raw.origin, "raw_sha256": raw.sha256},
        ) from exc

    suite = run_quality_suite(
        normalised, source, factors=factors, territory_bounds=tuple(platform.communes.total_bounds),
        quality=platform.territory.quality, previous_row_count=versions.accepted_row_count(),
    )
    record.report = report.as_dict()
    record.rows = len(normalised)
    record.quality = {"passed": suite.passed, "blocking_failures": suite.blocking_failures,
                      "warnings": suite.warnings, "statistics": suite.statistics}
    if not suite.passed:
        record.reason = "; ".join(suite.blocking_failures)
        versions.reject(record)
        for name, passed, severity in (("quality_suite", False, dg.AssetCheckSeverity.ERROR),
                                       ("quality_warnings", not suite.warnings, dg.AssetCheckSeverity.WARN)):
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=source_key(slug), check_name=name, passed=passed, severity=severity,
                metadata=_suite_metadata(suite), description=suite.failure_message(slug)))
        raise dg.Failure(
            description=f"{suite.failure_message(slug)} Origin: {raw.origin} (raw sha256 {raw.sha256[:16]}). {kept}",
            metadata={"source": slug, "origin": raw.origin, "raw_sha256": raw.sha256,
                      "results": dg.MetadataValue.md(suite.to_markdown())},
        )

    path = versions.stage_dir(vid) / "data.parquet"
    _write_geoparquet(normalised, path)
    record.normalised_sha256 = file_sha256(path)
    changed: list[str] = []
    if partitions_reported:
        record.window_hashes = window_hashes(normalised, {c: w.bounds for c, w in platform.windows.items()}, halo)
        record.report["windows_signature"] = signature
        changed = changed_windows(current.window_hashes if current else None, record.window_hashes)
    versions.accept(record)
    _after_accept(platform, source, normalised, record)
    _report_windows(context, source, record, changed, halo)

    return dg.MaterializeResult(
        data_version=dg.DataVersion(record.normalised_sha256),
        metadata={
            "version": vid,
            "raw_sha256": raw.sha256,
            "normalised_sha256": record.normalised_sha256,
            "origin": raw.origin,
            "partner": source.partner,
            "licence": source.licence,
            "fetched_at": raw.last_seen_at,
            "accepted_at": record.accepted_at,
            "dagster/row_count": len(normalised),
            "rows_in": report.rows_in,
            "rows_dropped": sum(report.dropped.values()),
            "dropped_reasons": dg.MetadataValue.json(report.dropped),
            "rows_repaired": report.repaired,
            "flattened_3d": report.flattened_3d,
            "parts_added": report.parts_added,
            "cast_failures": dg.MetadataValue.json(report.cast_failures),
            "crs_in": str(report.crs_in),
            "crs": str(report.crs_out),
            "bounds": dg.MetadataValue.json([round(v, 2) for v in report.bounds]) if report.bounds else None,
            "communes_changed": dg.MetadataValue.json(changed),
            "previous_version": current.version if current else None,
            "dagster/uri": dg.MetadataValue.path(str(path)),
            "dagster/column_schema": dg.TableSchema(columns=[
                dg.TableColumn(name, kind) for name, kind in source.columns.items()
            ] + [dg.TableColumn("geometry", f"{source.geometry} (EPSG:2154)")]),
        },
        check_results=[
            dg.AssetCheckResult(check_name="quality_suite", passed=True, metadata=_suite_metadata(suite)),
            dg.AssetCheckResult(check_name="quality_warnings", passed=not suite.warnings,
                                severity=dg.AssetCheckSeverity.WARN, metadata=_suite_metadata(suite),
                                description="; ".join(suite.warnings) or "no warning"),
        ],
    )


def _log_check(context, slug: str, check: str, passed: bool, description: str) -> None:
    context.log_event(dg.AssetCheckEvaluation(
        asset_key=source_key(slug), check_name=check, passed=passed, description=description,
        severity=dg.AssetCheckSeverity.ERROR))


def _report_windows(context, source: SourceDef, record: SourceVersion, changed: list[str], halo: float) -> None:
    for code in changed:
        context.log_event(dg.AssetMaterialization(
            asset_key=by_commune_key(source.slug),
            partition=code,
            tags={"dagster/data_version": record.window_hashes[code]},
            metadata={"source_version": record.version, "raw_sha256": record.raw_sha256,
                      "normalised_sha256": record.normalised_sha256, "window_hash": record.window_hashes[code],
                      "halo_m": halo},
        ))
    if changed:
        context.log.info(f"{source.slug}: {len(changed)} commune window(s) changed: {', '.join(changed[:20])}")


def _unchanged(context, platform, source, versions, current, signature, halo, partitions_reported):
    """Same raw bytes as the accepted version: nothing to normalise; re-hash windows if the communes moved."""
    changed: list[str] = []
    if partitions_reported and current.report.get("windows_signature") != signature:
        data = gpd.read_parquet(current.data_path(platform.layout))
        hashes = window_hashes(data, {c: w.bounds for c, w in platform.windows.items()}, halo)
        changed = changed_windows(current.window_hashes, hashes)
        current.window_hashes = hashes
        current.report["windows_signature"] = signature
        versions.accept(current)
        _report_windows(context, source, current, changed, halo)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(current.normalised_sha256),
        metadata={"version": current.version, "unchanged": True, "raw_sha256": current.raw_sha256,
                  "normalised_sha256": current.normalised_sha256, "communes_changed": dg.MetadataValue.json(changed),
                  "dagster/row_count": current.rows or 0,
                  "dagster/uri": dg.MetadataValue.path(str(current.data_path(platform.layout)))},
        check_results=[
            dg.AssetCheckResult(check_name="quality_suite", passed=True,
                                description=f"version {current.version} already passed its checks"),
            dg.AssetCheckResult(check_name="quality_warnings", passed=not current.quality.get("warnings"),
                                severity=dg.AssetCheckSeverity.WARN,
                                description="; ".join(current.quality.get("warnings") or []) or "no warning"),
        ],
    )


def _after_accept(platform: Platform, source: SourceDef, normalised: gpd.GeoDataFrame, record: SourceVersion) -> None:
    """The territory layers also feed the warehouse (communes, IRIS) for the dbt marts."""
    if source.slug not in {"communes", "iris"}:
        return
    from .warehouse_tables import write_layer_table

    write_layer_table(platform, source.slug, normalised, record.version)


def build_source_defs(platform: Platform) -> list:
    defs: list = []
    for source in platform.sources.values():
        defs.append(build_raw_asset(platform, source))
        defs.append(build_source_asset(platform, source))
        if platform.factors_of_source(source.slug):
            defs.append(by_commune_spec(platform, source))
    if platform.territory.iris is None:
        defs.append(build_empty_iris_asset(platform))
    return defs


def build_empty_iris_asset(platform: Platform) -> dg.AssetsDefinition:
    """A territory without IRIS still publishes an (empty) IRIS table, so the IRIS mart exists and is empty."""

    @dg.asset(key=source_key("iris"), deps=[source_key("communes")], group_name=GROUP_SOURCES, owners=[STEWARDS],
              kinds={"duckdb"}, code_version="no-iris-1", automation_condition=EAGER, pool=WAREHOUSE_POOL,
              description="This territory declares no IRIS layer: the warehouse's IRIS table is kept empty.")
    def _no_iris(context: AssetExecutionContext) -> dg.MaterializeResult:
        from .warehouse_tables import write_table

        empty = gpd.GeoDataFrame({"code": [], "name": [], "commune": [], "area_m2": [], "cell_count": [],
                                  "synthetic": []}, geometry=[], crs="EPSG:2154")
        write_table("iris", empty)
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "iris_declared": False})

    return _no_iris
