"""The ingest op: fetch and/or normalise the selected sources, in parallel, as one subsettable multi-asset.

Every source is its own asset (owners, kinds, checks, versions); one op ingests the selected ones together,
spread over the worker pool, so a refresh of one partner touches only that partner. A rejected version is
not materialised: nothing downstream runs from it and the last accepted version stays (docs/decisions.md D3).
"""

from datetime import datetime

import dagster as dg
import geopandas as gpd
from dagster import AssetExecutionContext

from ..automation.conditions import CODE_CHANGED
from ..automation.polls import forget_validators
from ..catalog import SourceDef
from ..compute.ingest import IngestResult, IngestTask, run_ingest
from ..compute.pool import map_tasks
from ..geo.footprint import factor_columns
from ..geo.grid import PLATFORM_CRS, owned_cell_counts
from ..platform import Platform
from ..provenance.freshness import OK, source_freshness
from ..resources import TerritoryResource, WarehouseResource
from ..store.inbox import Drop, as_file_source
from ..warehouse import writes
from ..warehouse.schema import contract
from .keys import GROUP_SOURCES, STEWARDS, WAREHOUSE_POOL, by_commune_key, raw_key, source_key, stable_hash
from .source_metadata import delivery_text, raw_metadata, source_result, suite_metadata
from .source_specs import by_commune_spec, check_specs, inbox_spec, raw_spec, source_spec


def _accepted_communes(platform: Platform):
    """(the accepted communes layer the coverages use, its normalised sha256), or (None, None) before its
    first accepted version."""
    from .constraints import communes_layer

    current = platform.store.versions("communes").current()
    return (None, None) if current is None else (communes_layer(platform), current.normalised_sha256)


def windows_signature(platform: Platform, halo: float, communes_sha256: str | None, columns: list[str]) -> str:
    """What the per-commune hashes depend on besides the data: windows, halo, the communes' cells and the
    attributes the factors read."""
    return stable_hash({code: list(w.bounds) for code, w in platform.windows.items()}
                       | {"halo": halo, "extent": "owned-cells", "communes": communes_sha256, "columns": columns})


def _task(platform: Platform, source: SourceDef, fetch: bool, normalise: bool, drop: Drop | None,
          communes: tuple) -> IngestTask:
    effective = as_file_source(source, drop) if drop is not None else source
    halo = platform.source_halo_m(source.slug)
    factors = platform.factors_of_source(source.slug)
    layer, communes_sha256 = communes
    return IngestTask(
        source=effective,
        fetch=fetch,
        normalise=normalise,
        store=platform.store,
        data_dir=str(platform.data_dir),
        url=platform.source_url(effective) if fetch and drop is None else None,
        commune_bboxes=[(row.code, tuple(row.geometry.bounds)) for row in platform.communes.itertuples(index=False)],
        windows={c: w.bounds for c, w in platform.windows.items()},
        windows_signature=windows_signature(platform, halo, communes_sha256, factor_columns(factors)),
        halo_m=halo,
        factors=factors,
        territory_bounds=tuple(platform.communes.total_bounds),
        quality=platform.territory.quality,
        limits=platform.territory.limits,
        retention=platform.territory.retention.raw_versions,
        communes=layer,
        cell_m=platform.territory.grid.cell_size_m,
    )


def _drop_for(context, platform: Platform, source: SourceDef) -> Drop | None:
    """The newest pending inbox drop for this source (older pending ones are superseded by it), if any."""
    inbox = platform.store.drops
    pending = inbox.pending(source, platform.sources_by_partner[source.partner])
    for older in pending[:-1]:
        inbox.record(older, "ignored", source=source.slug, run_id=context.run.run_id,
                     reason=f"superseded by the newer drop {pending[-1].path.name}")
    return pending[-1] if pending else None


def build_ingest_assets(platform: Platform) -> dg.AssetsDefinition:
    specs, checks = [], []
    for source in platform.sources.values():
        specs += [raw_spec(platform, source), source_spec(platform, source)]
        checks += check_specs(source)

    @dg.multi_asset(
        name="ingest_sources",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        pool=WAREHOUSE_POOL,
        description="Fetch (or take the partner's drop) and/or normalise the selected sources, in parallel.",
    )
    def _ingest(context: AssetExecutionContext, territory: TerritoryResource, warehouse: WarehouseResource):
        platform = territory.platform
        selected = context.selected_asset_keys
        chosen = [(source, raw_key(source.slug) in selected, source_key(source.slug) in selected)
                  for source in platform.sources.values()]
        chosen = [c for c in chosen if c[1] or c[2]]
        # The communes layer first: the other sources' per-commune hashes use the cells it gives each commune.
        layer_first = [c for c in chosen if c[0].slug == "communes"]
        batches = [layer_first, [c for c in chosen if c[0].slug != "communes"]] if layer_first else [chosen]
        tasks, drops, results = [], [], []
        with territory.progress(context.run.run_id).stage("ingest", len(chosen), "sources") as advance:
            for batch in batches:
                batch_drops = [_drop_for(context, platform, source) if fetch else None for source, fetch, _ in batch]
                communes = _accepted_communes(platform)  # after the first batch: the layer it accepted
                batch_tasks = [_task(platform, source, fetch, normalise, drop, communes)
                               for (source, fetch, normalise), drop in zip(batch, batch_drops)]
                results += map_tasks(run_ingest, batch_tasks, progress=advance)
                tasks += batch_tasks
                drops += batch_drops
        failures = []
        for task, drop, result in zip(tasks, drops, results):
            if drop is not None:
                _record_drop(context, platform, drop, task, result)
            yield from _events(context, territory, warehouse, task, result, failures)
        if failures:
            context.log.error("sources not updated (the last accepted versions stay in use):\n" + "\n".join(failures))

    return _ingest


def _record_drop(context, platform: Platform, drop: Drop, task: IngestTask, result: IngestResult) -> None:
    slug = task.source.slug
    if result.fetch_error or result.status == "rejected":
        state, reason = "rejected", result.fetch_error or result.error or "refused by its checks"
    elif result.status == "accepted" or not task.normalise:
        state, reason = "accepted", f"version {result.record.version if result.record else result.raw.short} of {slug}"
    else:
        state, reason = "accepted", f"same content as the version of {slug} in use, or an earlier one"
    platform.store.drops.record(drop, state, source=slug, reason=reason[:2000], run_id=context.run.run_id)
    context.log_event(dg.AssetObservation(asset_key=raw_key(slug), metadata={
        "inbox_file": f"inbox/{drop.partner}/{drop.path.name}", "sha256": drop.sha256, "inbox_state": state,
        "reason": reason[:500]}))


def _freshness_check(territory: TerritoryResource, source: SourceDef) -> dg.AssetCheckResult:
    fresh = source_freshness(territory.store, source, territory.as_of)
    return dg.AssetCheckResult(
        asset_key=raw_key(source.slug), check_name="partner_freshness", passed=fresh.status == OK,
        severity=dg.AssetCheckSeverity.WARN, description=fresh.summary,
        metadata={"status": fresh.status, "content_changed_at": fresh.content_changed_at or "",
                  "content_age_days": -1 if fresh.age_days is None else fresh.age_days,
                  "cadence_days": fresh.cadence_days, "last_fetch_at": fresh.last_fetch_at or ""})


def _check_event(result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=result.asset_key, check_name=result.check_name, passed=result.passed,
                                   severity=result.severity, description=result.description,
                                   metadata=result.metadata)


def _events(context, territory: TerritoryResource, warehouse: WarehouseResource, task: IngestTask,
            result: IngestResult, failures: list[str]):
    platform = territory.platform
    source = task.source
    slug = source.slug
    if task.fetch:
        if result.fetch_error:
            failures.append(result.fetch_error)
            forget_validators(platform, [slug])  # the next probe must not call the failed content "unchanged"
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=raw_key(slug), check_name="delivery", passed=False, severity=dg.AssetCheckSeverity.ERROR,
                description=result.fetch_error, metadata={"source": slug, "partner": source.partner}))
            context.log_event(_check_event(_freshness_check(territory, source)))
            return
        if result.raw_is_new and result.status != "rejected":
            yield _raw_result(territory, source, result)
        else:  # bytes seen before, or refused: raw is not materialised, so its freshness does not move
            delivery = dg.AssetCheckResult(asset_key=raw_key(slug), check_name="delivery", passed=True,
                                           description=delivery_text(result))
            context.log_event(dg.AssetObservation(asset_key=raw_key(slug), metadata=raw_metadata(source, result)))
            context.log_event(_check_event(delivery))
            context.log_event(_check_event(_freshness_check(territory, source)))
    if not task.normalise:
        return
    if result.status == "rejected":
        failures.append(result.error or f"source/{slug}: rejected")
        metadata = suite_metadata(result.suite) if result.suite else {}
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
    if result.layer_frame is not None:
        with warehouse.get_connection() as con:
            if result.status == "accepted" or not writes.layer_filled(con, slug):
                frame = layer_table(platform, slug, result.layer_frame, record.version)
                writes.write_layer(con, contract(platform.catalogue), slug, frame)
    for code in result.changed_communes:
        context.log_event(dg.AssetMaterialization(
            asset_key=by_commune_key(slug), partition=code,
            tags={"dagster/data_version": record.window_hashes[code]},
            metadata={"source_version": record.version, "raw_sha256": record.raw_sha256,
                      "normalised_sha256": record.normalised_sha256, "window_hash": record.window_hashes[code],
                      "halo_m": task.halo_m}))
    if result.changed_communes:
        context.log.info(f"{slug}: {len(result.changed_communes)} commune window(s) changed")
    yield source_result(source, result)


def layer_table(platform: Platform, slug: str, normalised: gpd.GeoDataFrame, version: str) -> gpd.GeoDataFrame:
    """iarbre.communes / iarbre.iris rows from an accepted layer version, with each unit's cell count."""
    import pandas as pd

    territory = platform.territory
    spec = territory.communes if slug == "communes" else territory.iris
    frame = normalised.sort_values(spec.code_field).reset_index(drop=True)
    codes = frame[spec.code_field].astype(str).tolist()
    counts = owned_cell_counts(list(frame.geometry.values), codes, platform.territory_window)
    data = {"code": codes, "name": frame[spec.name_field].astype(str).tolist(),
            "area_m2": frame.geometry.area.to_numpy(), "cell_count": [counts[c] for c in codes]}
    if slug == "communes":
        data["source_version"] = version
    else:
        data["commune"] = frame[spec.commune_field].astype(str).tolist()
        data["synthetic"] = bool(spec.synthetic)
    return gpd.GeoDataFrame(pd.DataFrame(data), geometry=frame.geometry.values, crs=frame.crs)


def _raw_result(territory: TerritoryResource, source: SourceDef, result: IngestResult) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=raw_key(source.slug),
        data_version=dg.DataVersion(result.raw.sha256),
        metadata={**raw_metadata(source, result),
                  "dagster/last_updated_timestamp": dg.MetadataValue.timestamp(
                      datetime.fromisoformat(result.raw.first_seen_at))},
        check_results=[
            dg.AssetCheckResult(asset_key=raw_key(source.slug), check_name="delivery", passed=True,
                                description=delivery_text(result).replace(", refused by their checks", "")),
            _freshness_check(territory, source),
        ],
    )


def build_empty_iris_asset(platform: Platform) -> dg.AssetsDefinition:
    """A territory without IRIS still publishes an (empty) IRIS table, so the IRIS mart exists and is empty."""

    @dg.asset(key=source_key("iris"), deps=[source_key("communes")], group_name=GROUP_SOURCES, owners=[STEWARDS],
              kinds={"duckdb"}, code_version="no-iris-1", automation_condition=CODE_CHANGED, pool=WAREHOUSE_POOL,
              description="This territory declares no IRIS layer: the warehouse's IRIS table is kept empty.")
    def _no_iris(context: AssetExecutionContext, territory: TerritoryResource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
        empty = gpd.GeoDataFrame({"code": [], "name": [], "commune": [], "area_m2": [], "cell_count": [],
                                  "synthetic": []}, geometry=[], crs=PLATFORM_CRS)
        with warehouse.get_connection() as con:
            writes.write_layer(con, contract(territory.platform.catalogue), "iris", empty)
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "iris_declared": False})

    return _no_iris


def build_source_defs(platform: Platform) -> list:
    defs: list = [build_ingest_assets(platform)]
    defs += [inbox_spec(platform, partner, sources) for partner, sources in sorted(platform.sources_by_partner.items())]
    for source in platform.sources.values():
        if platform.factors_of_source(source.slug):
            defs.append(by_commune_spec(platform, source))
    if platform.territory.iris is None:
        defs.append(build_empty_iris_asset(platform))
    return defs
