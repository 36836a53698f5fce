"""Polling remote sources by their cadence, cheaply (connectors/probe.py): which sources need a fetch now.

Each remote source is probed every `poll_every` (its location's, else its cadence / 30, between 1 hour and
1 day). A probe asks the server whether the content changed (conditional request, WFS `numberMatched`,
data-fair's dataset metadata); only a changed or undecidable answer leads to a fetch. The last probe of
each source, with the validators to send next time, is kept in the store (raw/polls.json).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from ..catalog.models import duration_to_timedelta
from ..store.files import atomic_write_text

REMOTE_KINDS = {"wfs", "ign_wfs", "datafair", "cartofriches"}
MIN_INTERVAL = timedelta(hours=1)
MAX_INTERVAL = timedelta(days=1)


def poll_interval(source) -> timedelta:
    explicit = getattr(source.location, "poll_every", None)
    if explicit:
        return duration_to_timedelta(explicit)
    return min(MAX_INTERVAL, max(MIN_INTERVAL, source.cadence_delta / 30))


def remote_sources(platform) -> list:
    return [s for s in platform.sources.values() if s.location.kind in REMOTE_KINDS]


def read_state(store) -> dict:
    path = store.poll_state
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def due(platform, now: datetime | None = None) -> list:
    """Remote sources whose probe is due. A source never ingested is not polled: `iarbre run` ingests it first."""
    now = now or datetime.now(timezone.utc)
    state = read_state(platform.store)
    out = []
    for source in remote_sources(platform):
        if platform.store.versions(source.slug).current() is None:
            continue
        last = (state.get(source.slug) or {}).get("at")
        if last is None or now - datetime.fromisoformat(last) >= poll_interval(source):
            out.append(source)
    return out


def probe(platform, sources, now: datetime | None = None) -> tuple[list[str], list[dict]]:
    """Probe `sources`; returns (slugs to fetch, one line of detail per source). Records the probes."""
    from ..connectors import ConnectorError, probe_source

    now = now or datetime.now(timezone.utc)
    state = read_state(platform.store)
    to_fetch, details = [], []
    for source in sources:
        previous = (state.get(source.slug) or {}).get("validators")
        try:
            result = probe_source(source, url=platform.source_url(source), previous=previous)
        except ConnectorError as exc:  # the fetch will say it again, with the raw store's "nothing stored"
            to_fetch.append(source.slug)
            details.append({"source": source.slug, "changed": None, "detail": f"probe failed: {exc}"})
            continue
        changed, detail = result.changed, result.detail
        if not previous and _fetched_within(platform, source, poll_interval(source), now):
            # the first probe right after a fetch: what the server says now is what was just fetched
            changed, detail = False, f"first probe, {detail}; validators recorded (fetched within the poll interval)"
        state[source.slug] = {"at": now.isoformat(timespec="seconds"), "validators": result.validators,
                              "changed": changed, "detail": detail}
        details.append({"source": source.slug, "changed": changed, "detail": detail})
        if changed is not False:
            to_fetch.append(source.slug)
    atomic_write_text(platform.store.poll_state, json.dumps(state, indent=1, sort_keys=True))
    return to_fetch, details


def _fetched_within(platform, source, interval: timedelta, now: datetime) -> bool:
    fetches = [e["at"] for e in platform.store.raw.log(source.slug) if "at" in e and not e.get("failed")
               and "pruned" not in e]
    return bool(fetches) and now - max(datetime.fromisoformat(f) for f in fetches) < interval


def forget_validators(platform, slugs) -> None:
    """After a failed fetch the next probe must not answer "unchanged" from validators of bytes never stored."""
    state = read_state(platform.store)
    for slug in slugs:
        if slug in state:
            state[slug]["validators"] = {}
    atomic_write_text(platform.store.poll_state, json.dumps(state, indent=1, sort_keys=True))
