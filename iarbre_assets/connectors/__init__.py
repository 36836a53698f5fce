"""Data connectors: bytes in, GeoDataFrame out, in two stages (no Dagster here).

    payload = fetch_payload(source_def, data_dir=..., url=expanded_url, commune_bboxes=[...])
    frame = parse_payload(source_def, payload.data, payload.ext)   # later, from the stored bytes only

`fetch_payload` returns what was delivered, byte for byte (several pages in a deterministic zip), with
the requests made; `parse_payload` rebuilds the GeoDataFrame in the CRS the data declares (no
reprojection: normalisation does that).

    probe = probe_source(source_def, url=expanded_url, previous=validators_of_the_last_probe)

`probe_source` asks a remote endpoint, with one small request, whether its content changed (probe.py).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from . import cartofriches, datafair, files, ign, wfs
from .errors import (
    ConnectorError,
    FetchError,
    LimitExceeded,
    MalformedResponse,
    MissingCRS,
    ServiceExceptionReport,
    UnreadableFile,
    UnsafeInput,
)
from .http import HttpClient
from .payload import READING_LIMITS, Payload, ReadBudget, ReadingLimits
from .probe import Probe, probe_source

__all__ = [
    "ConnectorError",
    "FetchError",
    "HttpClient",
    "LimitExceeded",
    "MalformedResponse",
    "MissingCRS",
    "Payload",
    "Probe",
    "READING_LIMITS",
    "ReadingLimits",
    "ServiceExceptionReport",
    "UnreadableFile",
    "UnsafeInput",
    "fetch_payload",
    "parse_payload",
    "probe_source",
]

_MODULES = {"wfs": wfs, "ign_wfs": ign, "datafair": datafair, "cartofriches": cartofriches, "file": files}


def _module(source_def):
    kind = source_def.location.kind
    try:
        return _MODULES[kind]
    except KeyError:
        raise ConnectorError(source_def.slug, "-", f"unknown connector kind {kind!r}") from None


def fetch_payload(
    source_def,
    *,
    data_dir: Path | None,
    url: str | None = None,
    commune_bboxes: list[tuple[str, tuple[float, float, float, float]]] = (),
    client: HttpClient | None = None,
) -> Payload:
    """Fetch one source's raw bytes as delivered.

    `url` is the location URL with ${VARS} already expanded (defaults to the location's own URL);
    `commune_bboxes` are (INSEE code, (minx, miny, maxx, maxy) in EPSG:2154), needed by the IGN and
    Cartofriches connectors; `client` defaults to one built from the location's timeout and retries.
    Raises a ConnectorError subclass; never returns a partial payload.
    """
    module = _module(source_def)
    loc = source_def.location
    if loc.kind == "file":
        return module.fetch(source_def, data_dir=Path(data_dir) if data_dir is not None else None)
    url = url or loc.url
    if "${" in url:
        raise ConnectorError(source_def.slug, url, "URL still holds a ${VARIABLE}; expand it with "
                             "iarbre_assets.catalog.expand_url before fetching")
    client = client or HttpClient(timeout_s=loc.timeout_s, retries=loc.retries)
    return module.fetch(source_def, url=url, client=client, commune_bboxes=list(commune_bboxes or ()))


def parse_payload(source_def, data: bytes, ext: str, *, limits: ReadingLimits = READING_LIMITS) -> gpd.GeoDataFrame:
    """Rebuild the GeoDataFrame of a stored payload (no network), in the CRS the data declares.

    Raises LimitExceeded as soon as the payload goes past one of `limits` (the territory's)."""
    return _module(source_def).parse(source_def, data, ext, budget=ReadBudget(source_def.slug, limits))
