"""Cheap change probes of remote sources: has the endpoint's content changed since the last probe?

    probe = probe_source(source_def, url=expanded_url, previous=last_probe.validators)   # one small request
    if probe.changed is not False: fetch it                                              # True or None
    keep probe.validators for next time

* WFS / IGN WFS: the fetch's GetFeature (same TYPENAMES, SRSNAME and location params; no paging, no SORTBY)
  with RESULTTYPE=hits, which answers numberMatched without any feature, sent with If-None-Match /
  If-Modified-Since from the previous ETag / Last-Modified. 304 -> unchanged; another numberMatched ->
  changed; same numberMatched and same ETag (or Last-Modified) -> unchanged; same numberMatched and no
  validator to compare -> undecided (a count alone does not prove that no feature was edited). The IGN
  connector queries commune boxes; its probe counts the whole layer, a change of which may lie elsewhere.
* data-fair: the dataset's metadata (the `.../lines` URL without `/lines`), with the same conditional
  headers: `count`, `dataUpdatedAt` and `finalizedAt` are compared; 304 -> unchanged.
* Cartofriches: no cheap check exists (no count, no validators): undecided, without any request.
* File sources are not probed (their drops are watched): ValueError.

`changed` is True (certainly changed), False (certainly unchanged) or None (nothing to compare: a full fetch
is needed); a first probe (`previous` None or empty) is None. Transport errors raise the connectors' usual
ConnectorError subclasses (FetchError, ServiceExceptionReport, MalformedResponse) naming source and URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .errors import ConnectorError, MalformedResponse
from .gml import scan_feature_collection
from .http import HttpClient, HttpResponse, redact_url
from .wfs import base_params

__all__ = ["Probe", "probe_source"]


@dataclass(frozen=True)
class Probe:
    """What one probe found. `validators` are JSON-able: pass them back as `previous` next time."""

    source: str
    changed: bool | None  # True: certainly changed; False: certainly unchanged; None: a full fetch is needed
    validators: dict      # {"etag", "last_modified", "number_matched" | "count", "data_updated_at", ...}
    detail: str           # one human line
    requests: list[dict]  # every HTTP attempt, as HttpClient.requests records them


def probe_source(source_def, *, url: str, previous: dict | None, client: HttpClient | None = None) -> Probe:
    """Probe one remote source at `url` (the location URL with ${VARS} expanded) against `previous`
    (the `validators` of the last probe, or None). Raises ValueError for a file source."""
    loc = source_def.location
    kind = loc.kind
    if kind == "file":
        raise ValueError(f"{source_def.slug}: file sources are not probed (partner drops are watched instead)")
    if kind == "cartofriches":
        return Probe(source_def.slug, None, {}, "Cartofriches offers no cheap change check (no count, no "
                     "ETag/Last-Modified): a full fetch is needed; no request made", [])
    try:
        probe = _PROBES[kind]
    except KeyError:
        raise ConnectorError(source_def.slug, "-", f"unknown connector kind {kind!r}") from None
    url = url or loc.url
    if "${" in url:
        raise ConnectorError(source_def.slug, url, "URL still holds a ${VARIABLE}; expand it with "
                             "iarbre_assets.catalog.expand_url before probing")
    client = client or HttpClient(timeout_s=loc.timeout_s, retries=loc.retries)
    first_request = len(client.requests)
    changed, validators, detail = probe(source_def, url, previous or {}, client)
    return Probe(source_def.slug, changed, validators, detail, client.requests[first_request:])


# ----------------------------------------------------------------------------------------------
# per kind: (changed, validators, detail)
# ----------------------------------------------------------------------------------------------
def _probe_wfs(source_def, url: str, previous: dict, client: HttpClient) -> tuple[bool | None, dict, str]:
    source = source_def.slug
    params = {k: v for k, v in base_params(source_def.location, sort_by=None, source=source).items()
              if k.upper() != "RESULTTYPE"}
    params["RESULTTYPE"] = "hits"
    response = client.get_response(url, params, source=source, headers=_conditional(previous))
    scope = "the whole layer (the fetch queries commune boxes)" if source_def.location.kind == "ign_wfs" else None
    if response.status == 304:
        return False, _refreshed(previous, response), _with_scope("WFS hits: 304 Not Modified", scope)
    where = redact_url(response.url)
    if response.status != 200:
        raise MalformedResponse(source, where, f"HTTP {response.status} to a WFS hits request (expected 200 or 304)")
    page = scan_feature_collection(response.body, source=source, location=where)
    validators = _clean({"number_matched": page.number_matched, **_http_validators(response)})
    changed, detail = _decide(previous, validators, shown=("number_matched",), changes=("number_matched",))
    return changed, validators, _with_scope(f"WFS hits: {detail}", scope)


def _probe_datafair(source_def, url: str, previous: dict, client: HttpClient) -> tuple[bool | None, dict, str]:
    source = source_def.slug
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/lines"):
        raise ConnectorError(source, redact_url(url), "a data-fair URL ends in /lines; the dataset's metadata "
                             "URL cannot be derived from this one")
    meta_url = urlunsplit(parts._replace(path=path[: -len("/lines")]))
    params = dict(source_def.location.params) or None
    response = client.get_response(meta_url, params, source=source, headers=_conditional(previous))
    if response.status == 304:
        return False, _refreshed(previous, response), "data-fair metadata: 304 Not Modified"
    where = redact_url(response.url)
    if response.status != 200:
        raise MalformedResponse(source, where, f"HTTP {response.status} to the dataset metadata (expected 200 "
                                "or 304)")
    try:
        document = json.loads(response.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponse(source, where, f"dataset metadata is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedResponse(source, where, f"dataset metadata is {type(document).__name__}, not an object")
    count = document.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise MalformedResponse(source, where, f"'count' is {count!r}, not a count")
    for key in ("dataUpdatedAt", "finalizedAt"):
        if document.get(key) is not None and not isinstance(document[key], str):
            raise MalformedResponse(source, where, f"{key!r} is {document[key]!r}, not a date")
    validators = _clean({"count": count, "data_updated_at": document.get("dataUpdatedAt"),
                         "finalized_at": document.get("finalizedAt"), **_http_validators(response)})
    changed, detail = _decide(previous, validators, shown=("count", "data_updated_at"),
                              changes=("count", "data_updated_at"), hints=("finalized_at",),
                              settled_by=("data_updated_at",))
    return changed, validators, f"data-fair metadata: {detail}"


_PROBES = {"wfs": _probe_wfs, "ign_wfs": _probe_wfs, "datafair": _probe_datafair}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
_NAMES = {"number_matched": "numberMatched", "count": "count", "data_updated_at": "dataUpdatedAt",
          "finalized_at": "finalizedAt", "etag": "ETag", "last_modified": "Last-Modified"}


def _conditional(previous: dict) -> dict[str, str]:
    headers = {}
    if previous.get("etag"):
        headers["If-None-Match"] = str(previous["etag"])
    if previous.get("last_modified"):
        headers["If-Modified-Since"] = str(previous["last_modified"])
    return headers


def _http_validators(response: HttpResponse) -> dict:
    return {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}


def _clean(validators: dict) -> dict:
    return {k: v for k, v in validators.items() if v is not None and v != ""}


def _refreshed(previous: dict, response: HttpResponse) -> dict:
    """After a 304: the previous validators, with any ETag / Last-Modified the 304 restates."""
    return {**previous, **_clean(_http_validators(response))}


def _with_scope(detail: str, scope: str | None) -> str:
    return f"{detail} ({scope})" if scope else detail


def _decide(previous: dict, current: dict, *, shown: tuple[str, ...], changes: tuple[str, ...],
            hints: tuple[str, ...] = (), settled_by: tuple[str, ...] = ()) -> tuple[bool | None, str]:
    """Compare the validators of two probes, in this order: nothing before -> None; a key of `changes`
    that differs -> True; one present on one side only -> None; a key of `hints` that differs -> None; a
    key of `settled_by` equal on both sides -> False; then ETag, else Last-Modified: equal -> False,
    different -> None; no validator at all -> None (equal counts alone prove nothing)."""
    state = ", ".join(f"{_NAMES[k]} {current[k]}" for k in shown if k in current) or "no count"
    if not previous:
        return None, f"{state}; first probe, nothing to compare: a full fetch is needed"
    for key in changes:
        if key in previous and key in current and previous[key] != current[key]:
            return True, f"{_NAMES[key]} changed from {previous[key]} to {current[key]}"
    for key in changes:
        if (key in previous) != (key in current):
            return None, f"{state}; {_NAMES[key]} known on one side only: a full fetch is needed"
    for key in hints:
        if key in previous and key in current and previous[key] != current[key]:
            return None, (f"{state} unchanged but {_NAMES[key]} changed from {previous[key]} to {current[key]}: "
                          "a full fetch is needed to tell")
    for key in settled_by:
        if key in previous and key in current:
            return False, f"{state}, unchanged"
    for key in ("etag", "last_modified"):
        if key in previous and key in current:
            if previous[key] == current[key]:
                return False, f"{state}, {_NAMES[key]} unchanged"
            return None, f"{state} unchanged but the {_NAMES[key]} differs: a full fetch is needed to tell"
    return None, (f"{state} unchanged, but the server gives no ETag/Last-Modified: a count alone does not prove "
                  "that nothing changed, a full fetch is needed")
