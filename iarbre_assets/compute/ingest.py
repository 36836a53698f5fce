"""Ingesting one source (no Dagster): fetch into the raw store, then normalise, check and accept.

A rejected version (unreadable, or failing a blocking quality check) is recorded as rejected and never
becomes current: downstream keeps reading the last accepted version. Runs in a pool worker.

Which bytes are normalised: after a fetch, the bytes fetched when they are new; bytes seen before (an
unchanged endpoint, or an endpoint serving again an older version than a partner's drop) never replace the
version in use. Without a fetch (the normaliser or catalogue changed), the bytes of the version in use.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd

from ..catalog import FactorDef, SourceDef
from ..geo.change_detection import changed_windows, window_hashes
from ..geo.footprint import factor_columns
from ..geo.grid import window_for_bounds
from ..store import Store
from ..store.geoparquet import write_source_version
from ..store.raw import RawVersion, utc_now
from ..store.files import file_sha256
from ..store.versions import SourceVersion, SourceVersions, version_id

if TYPE_CHECKING:
    from ..connectors import ReadingLimits
    from .constraints import CommuneLayer


@dataclass
class IngestTask:
    source: SourceDef
    fetch: bool
    normalise: bool
    store: Store
    data_dir: str
    url: str | None
    commune_bboxes: list
    windows: dict[str, tuple[float, float, float, float]]
    windows_signature: str
    halo_m: float
    factors: list[FactorDef]
    territory_bounds: tuple[float, float, float, float]
    quality: object
    retention: int
    limits: "ReadingLimits"
    # the accepted communes layer: a commune's hash covers the features that can reach its cells
    communes: "CommuneLayer | None" = None
    cell_m: float = 5.0


@dataclass
class IngestResult:
    source: str
    # fetch
    fetched: bool = False
    fetch_error: str | None = None
    raw: RawVersion | None = None
    raw_path: str | None = None
    raw_is_new: bool = False
    pruned: int = 0
    # normalisation
    status: str = "not_run"  # accepted | unchanged | rejected | not_run
    error: str | None = None
    record: SourceVersion | None = None
    previous_version: str | None = None
    suite: object | None = None
    report: dict = field(default_factory=dict)
    changed_communes: list[str] = field(default_factory=list)
    data_path: str | None = None
    layer_frame: gpd.GeoDataFrame | None = None  # communes/IRIS, for the warehouse


def run_ingest(task: IngestTask) -> IngestResult:
    result = IngestResult(source=task.source.slug)
    if task.fetch:
        _fetch(task, task.store, result)
        if result.fetch_error:
            return result
    if task.normalise:
        try:
            _normalise(task, task.store, result)
        except Exception as exc:  # an unexpected bug must not look like bad data: report with the traceback
            result.status = "rejected"
            result.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return result


def _fetch(task: IngestTask, home: Store, result: IngestResult) -> None:
    from ..connectors import ConnectorError, fetch_payload

    store = home.raw
    source = task.source
    try:
        payload = fetch_payload(source, data_dir=Path(task.data_dir), url=task.url, commune_bboxes=task.commune_bboxes)
    except (ConnectorError, OSError) as exc:
        kept = store.latest(source.slug)
        result.fetch_error = (f"raw/{source.slug}: delivery failed, nothing stored; the previous raw version "
                              f"{kept.sha256[:16] if kept else '(none)'} is kept. {exc}")
        store.record_failure(source.slug, task.url or str(getattr(source.location, "path", "")), str(exc))
        return
    put = store.put(source.slug, payload.data, payload.ext, origin=payload.origin, partner=source.partner,
                    licence=source.licence, connector=payload.kind, requests=payload.requests, details=payload.details)
    accepted = home.versions(source.slug).current()
    result.pruned = len(store.prune(source.slug, keep=task.retention,
                                    protect={accepted.raw_sha256} if accepted else set()))
    result.fetched, result.raw, result.raw_path, result.raw_is_new = True, put.version, str(put.path), put.is_new


def _normalise(task: IngestTask, home: Store, result: IngestResult) -> None:
    from quality.runner import run_quality_suite

    from ..catalog.quality_spec import normalise_summary, suite_spec

    from ..connectors import ConnectorError, parse_payload
    from ..geo.normalise import normalise

    source = task.source
    slug = source.slug
    store = home.raw
    versions = home.versions(slug)
    current = versions.current()
    result.previous_version = current.version if current else None
    if task.fetch:
        raw = result.raw
        if current is not None and not result.raw_is_new:
            _unchanged(task, home, versions, current, result)  # seen before: the version in use stays
            return
    else:
        raw = store.version(slug, current.raw_sha256) if current is not None else store.latest(slug)
    if raw is None:
        result.status, result.error = "rejected", f"source/{slug}: no raw version yet; materialise raw/{slug} first"
        return
    result.raw = raw
    vid = version_id(raw.sha256)
    if current is not None and current.version == vid:
        _unchanged(task, home, versions, current, result)
        return

    record = SourceVersion(source=slug, version=vid, raw_sha256=raw.sha256, normalised_sha256=None,
                           status="candidate", created_at=utc_now(), origin=raw.origin, partner=source.partner)
    kept = f"The last accepted version {current.version if current else '(none)'} stays in use."
    try:
        parsed = parse_payload(source, store.read(slug, raw.sha256), raw.ext, limits=task.limits)
        normalised, report = normalise(parsed, source)
    except (ConnectorError, ValueError) as exc:
        record.reason = str(exc)
        versions.reject(record)
        result.status, result.record = "rejected", record
        result.error = f"source/{slug}: {raw.origin} (raw sha256 {raw.sha256[:16]}) cannot be used: {exc}. {kept}"
        return

    suite = run_quality_suite(normalised, suite_spec(source, task.factors, task.quality, task.territory_bounds),
                              previous_row_count=versions.accepted_row_count(),
                              normalise_summary=normalise_summary(report))
    record.report = report.as_dict()
    record.rows = len(normalised)
    record.quality = {"passed": suite.passed, "blocking_failures": suite.blocking_failures,
                      "warnings": suite.warnings, "statistics": suite.statistics}
    result.suite, result.report = suite, record.report
    if not suite.passed:
        record.reason = "; ".join(suite.blocking_failures)
        versions.reject(record)
        result.status, result.record = "rejected", record
        result.error = f"{suite.failure_message(slug)} Origin: {raw.origin} (raw sha256 {raw.sha256[:16]}). {kept}"
        return

    versions.stage_dir(vid)
    path = versions.data_path(vid)
    write_source_version(normalised, path)
    record.normalised_sha256 = file_sha256(path)
    if task.factors:
        record.window_hashes = window_hashes(normalised, task.windows, task.halo_m, _reach_cells(task),
                                             factor_columns(task.factors))
        record.report["windows_signature"] = task.windows_signature
        result.changed_communes = changed_windows(current.window_hashes if current else None, record.window_hashes)
    versions.accept(record)
    result.status, result.record, result.data_path = "accepted", record, str(path)
    if slug in {"communes", "iris"}:
        result.layer_frame = normalised


def _unchanged(task: IngestTask, home: Store, versions: SourceVersions, current: SourceVersion,
               result: IngestResult) -> None:
    """Same raw bytes as the accepted version: nothing to check again; re-hash windows if the communes moved."""
    result.status, result.record = "unchanged", current
    result.data_path = str(current.data_path(home))
    if task.factors and current.report.get("windows_signature") != task.windows_signature:
        data = gpd.read_parquet(current.data_path(home))
        hashes = window_hashes(data, task.windows, task.halo_m, _reach_cells(task), factor_columns(task.factors))
        result.changed_communes = changed_windows(current.window_hashes, hashes)
        current.window_hashes = hashes
        current.report["windows_signature"] = task.windows_signature
        versions.accept(current)
    if task.source.slug in {"communes", "iris"}:
        result.layer_frame = gpd.read_parquet(current.data_path(home))


def _reach_cells(task: IngestTask) -> dict | None:
    """The cells each commune owns (cached in the worker, shared with the footprints), or None before the
    communes layer has been accepted (every window then counts as changed anyway)."""
    if task.communes is None:
        return None
    from .constraints import owned_area

    return {code: owned_area(task.communes, code, window_for_bounds(bounds, cell=task.cell_m))
            for code, bounds in task.windows.items()}
