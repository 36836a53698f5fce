"""Source assets, generated from the catalogue: raw/<source> -> source/<source> -> source_by_commune/<source>.

raw/<source>        fetch (WFS, data-fair, IGN, Cartofriches) or pick up the partner's file; keep the bytes
                    in the content-addressed raw store. Data version = SHA-256 of the bytes.
source/<source>     normalise (EPSG:2154, 2-D, repaired, typed) and run the Great Expectations suite.
                    Only a version whose blocking checks pass is accepted; a rejected one is not
                    materialised, so nothing downstream runs from it and the last accepted version stays.
source_by_commune/  one partition per commune, reported by source/<source> only for the communes whose
  <source>          window (commune + halo) content changed: partner updates recompute only those.

Every source is its own asset (owners, kinds, checks, versions); one subsettable op ingests the selected
ones together, spread over the worker pool, so a refresh of one partner touches only that partner.
"""

import threading
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import geopandas as gpd
from dagster import AssetExecutionContext

from ..catalog import SourceDef
from ..catalog.models import FileLocation, location_summary
from ..compute.ingest import IngestResult, IngestTask, run_ingest
from ..compute.pool import map_tasks, worker_count
from ..platform import Platform
from ..provenance.source_versions import NORMALISER_VERSION
from .common import (
    EAGER,
    GROUP_SOURCES,
    ON_NEW_DATA,
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


def _describe(source: SourceDef, platform: Platform) -> str:
    partner = platform.catalogue.partners.get(source.partner)
    where = location_summary(source.location)
    return (
        f"{source.label}. Partner: {partner.name if partner else source.partner}. "
        f"Origin: {source.connector} {where}. Licence: {source.licence}. Expected cadence: {source.cadence}."
    )


def inbox_file(platform: Platform, source: SourceDef) -> Path | None:
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
    """The source as it is read now: a partner drop in the inbox takes precedence over the data dir file."""
    drop = inbox_file(platform, source)
    if drop is None:
        return source
    location = source.location.model_copy(update={"path": str(drop)})
    return source.model_copy(update={"location": location})


def _requests_table(requests: list[dict]) -> dg.MetadataValue:
    lines = ["| # | URL | status | bytes | seconds |", "|---|---|---|---|---|"]
    for i, req in enumerate(requests[:50], 1):
        lines.append(f"| {i} | {req.get('url', '')} | {req.get('status', '')} | {req.get('bytes', '')} | "
                     f"{req.get('elapsed_s', '')} |")
    if len(requests) > 50:
        lines.append(f"| … | {len(requests) - 50} more | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def source_code_version(platform: Platform, source: SourceDef) -> str:
    """What changes a normalised version: normaliser, source schema, quality settings, filters checked."""
    factors = platform.factors_of_source(source.slug)
    return f"{NORMALISER_VERSION}-" + stable_hash({
        "source": source.model_dump(mode="json", exclude={"location"}),
        "quality": platform.territory.quality.model_dump(),
        "factors": [f.model_dump(mode="json", by_alias=True, include={"slug", "where"}) for f in factors],
    })


# ------------------------------------------------------------------------------------------------
# specs
# ------------------------------------------------------------------------------------------------
def _raw_spec(platform: Platform, source: SourceDef) -> dg.AssetSpec:
    cadence = source.cadence_delta
    return dg.AssetSpec(
        key=raw_key(source.slug),
        group_name=GROUP_SOURCES,
        owners=[partner_owner(source), STEWARDS],
        tags=source_tags(source),
        kinds={source.connector, "raw"},
        description="Raw delivery, byte for byte. " + _describe(source, platform),
        code_version="raw-1",
        automation_condition=POLL_REMOTE if source.connector in REMOTE_KINDS else None,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=cadence * 2, warn_window=cadence),
        metadata={"partner": source.partner, "licence": source.licence, "cadence": source.cadence},
        skippable=True,
    )


def _source_spec(platform: Platform, source: SourceDef) -> dg.AssetSpec:
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
        automation_condition=ON_NEW_DATA,
        metadata={"partner": source.partner, "family": source.family},
        skippable=True,
    )


def _check_specs(source: SourceDef) -> list[dg.AssetCheckSpec]:
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


# ------------------------------------------------------------------------------------------------
# the ingest op
# ------------------------------------------------------------------------------------------------
_GX_WARMING: threading.Thread | None = None


def _warm_quality_suites() -> None:
    """Import Great Expectations in the background while the fetches run (inline runs need it)."""
    global _GX_WARMING
    if _GX_WARMING is None:
        from quality.runner import warm_up

        _GX_WARMING = threading.Thread(target=warm_up, name="gx-warm-up", daemon=True)
        _GX_WARMING.start()


def windows_signature(platform: Platform, halo: float) -> str:
    return stable_hash({code: list(w.bounds) for code, w in platform.windows.items()} | {"halo": halo})


def _task(platform: Platform, source: SourceDef, fetch: bool, normalise: bool) -> IngestTask:
    effective = effective_source(platform, source) if fetch else source
    halo = platform.source_halo_m(source.slug)
    return IngestTask(
        source=effective if fetch else source,
        fetch=fetch,
        normalise=normalise,
        home=str(platform.layout.home),
        data_dir=str(platform.data_dir),
        url=platform.source_url(effective) if fetch else None,
        commune_bboxes=[(row.code, tuple(row.geometry.bounds)) for row in platform.communes.itertuples(index=False)],
        windows={c: w.bounds for c, w in platform.windows.items()},
        windows_signature=windows_signature(platform, halo),
        halo_m=halo,
        factors=platform.factors_of_source(source.slug),
        territory_bounds=tuple(platform.communes.total_bounds),
        quality=platform.territory.quality,
        retention=platform.territory.retention.raw_versions,
    )


def build_ingest_assets(platform: Platform) -> dg.AssetsDefinition:
    specs, checks = [], []
    for source in platform.sources.values():
        specs += [_raw_spec(platform, source), _source_spec(platform, source)]
        checks += _check_specs(source)

    @dg.multi_asset(
        name="ingest_sources",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        pool=WAREHOUSE_POOL,
        description="Fetch and/or normalise the selected sources (one asset each), in parallel.",
    )
    def _ingest(context: AssetExecutionContext):
        selected = context.selected_asset_keys
        tasks = []
        for source in platform.sources.values():
            fetch, normalise = raw_key(source.slug) in selected, source_key(source.slug) in selected
            if fetch or normalise:
                tasks.append(_task(platform, source, fetch, normalise))
        if any(t.normalise for t in tasks) and worker_count() == 1:
            _warm_quality_suites()
        results = map_tasks(run_ingest, tasks)
        failures = []
        for task, result in zip(tasks, results):
            yield from _events(context, platform, task, result, failures)
        if failures:
            context.log.error("sources not updated (the last accepted versions stay in use):\n" + "\n".join(failures))

    return _ingest


def _events(context, platform: Platform, task: IngestTask, result: IngestResult, failures: list[str]):
    source = task.source
    slug = source.slug
    if task.fetch:
        if result.fetch_error:
            failures.append(result.fetch_error)
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=raw_key(slug), check_name="delivery", passed=False, severity=dg.AssetCheckSeverity.ERROR,
                description=result.fetch_error, metadata={"source": slug, "partner": source.partner}))
            return
        yield _raw_result(source, result)
    if not task.normalise:
        return
    if result.status == "rejected":
        failures.append(result.error or f"source/{slug}: rejected")
        metadata = _suite_metadata(result.suite) if result.suite else {}
        context.log_event(dg.AssetCheckEvaluation(
            asset_key=source_key(slug), check_name="quality_suite", passed=False, severity=dg.AssetCheckSeverity.ERROR,
            description=(result.error or "")[:2000], metadata=metadata))
        if result.suite is not None:
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=source_key(slug), check_name="quality_warnings", passed=not result.suite.warnings,
                severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                description="; ".join(result.suite.warnings) or "no warning"))
        return
    record = result.record
    if result.layer_frame is not None and (result.status == "accepted" or not _layer_table_filled(slug)):
        from .warehouse_tables import write_layer_table

        write_layer_table(platform, slug, result.layer_frame, record.version)
    for code in result.changed_communes:
        context.log_event(dg.AssetMaterialization(
            asset_key=by_commune_key(slug), partition=code,
            tags={"dagster/data_version": record.window_hashes[code]},
            metadata={"source_version": record.version, "raw_sha256": record.raw_sha256,
                      "normalised_sha256": record.normalised_sha256, "window_hash": record.window_hashes[code],
                      "halo_m": task.halo_m}))
    if result.changed_communes:
        context.log.info(f"{slug}: {len(result.changed_communes)} commune window(s) changed")
    yield _source_result(source, result)


def _layer_table_filled(slug: str) -> bool:
    from ..warehouse.duck import connect

    try:
        with connect(read_only=True) as con:
            return con.execute(f"SELECT count(*) FROM iarbre.{slug}").fetchone()[0] > 0
    except Exception:  # no warehouse or table yet
        return False


def _raw_result(source: SourceDef, result: IngestResult) -> dg.MaterializeResult:
    version = result.raw
    first_seen = datetime.fromisoformat(version.first_seen_at)
    age = datetime.now(timezone.utc) - first_seen
    cadence = source.cadence_delta
    return dg.MaterializeResult(
        asset_key=raw_key(source.slug),
        data_version=dg.DataVersion(version.sha256),
        metadata={
            "sha256": version.sha256,
            "new_version": result.raw_is_new,
            "origin": version.origin,
            "partner": source.partner,
            "licence": source.licence,
            "size_bytes": version.size,
            "first_seen_at": version.first_seen_at,
            "fetched_at": version.last_seen_at,
            "requests": len(version.requests),
            "request_log": _requests_table(version.requests),
            "pruned_versions": result.pruned,
            "dagster/uri": dg.MetadataValue.path(result.raw_path),
        },
        check_results=[
            dg.AssetCheckResult(asset_key=raw_key(source.slug), check_name="delivery", passed=True,
                                description=f"{len(version.requests) or 1} request(s) / file read without error"),
            dg.AssetCheckResult(
                asset_key=raw_key(source.slug), check_name="partner_freshness", passed=age <= cadence,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"content first seen {version.first_seen_at}, {age.days} days ago; cadence {source.cadence}",
                metadata={"content_age_days": age.days, "cadence_days": cadence.days}),
        ],
    )


def _suite_metadata(suite) -> dict:
    return {
        "suite": suite.suite_name,
        "results": dg.MetadataValue.md(suite.to_markdown()),
        "evaluated": int(suite.statistics.get("evaluated", 0)),
        "successful": int(suite.statistics.get("successful", 0)),
        "gx_version": suite.gx_version,
    }


def _source_result(source: SourceDef, result: IngestResult) -> dg.MaterializeResult:
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
        ] + [dg.TableColumn("geometry", f"{source.geometry} (EPSG:2154)")]),
    }
    if result.suite is not None:
        suite = result.suite
        checks = [
            dg.AssetCheckResult(asset_key=key, check_name="quality_suite", passed=True, metadata=_suite_metadata(suite)),
            dg.AssetCheckResult(asset_key=key, check_name="quality_warnings", passed=not suite.warnings,
                                severity=dg.AssetCheckSeverity.WARN, metadata=_suite_metadata(suite),
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


def build_source_defs(platform: Platform) -> list:
    defs: list = [build_ingest_assets(platform)]
    for source in platform.sources.values():
        if platform.factors_of_source(source.slug):
            defs.append(by_commune_spec(platform, source))
    if platform.territory.iris is None:
        defs.append(build_empty_iris_asset(platform))
    return defs
