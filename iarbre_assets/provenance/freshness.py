"""One definition of a source's freshness, read by every view (check, Dagster policy, mart, `iarbre freshness`).

    content_changed_at  when the partner last changed the content in use: the first time the platform saw the
                        raw bytes of the accepted version (re-deliveries of the same bytes do not count)
    last_fetch_at       the last time the platform fetched the endpoint or read a drop, or probed the endpoint
    status              never: no accepted version;  late: now - content_changed_at > cadence;  ok otherwise
    last rejected       the newest delivery that failed (unreadable, refused by a blocking check, or a failed
                        fetch), with the reason

Dagster's own freshness policy on `raw/<source>` says the same: raw is materialised exactly when new bytes are
accepted, with `fail_window` = the cadence (assets/source_specs.py), so PASS = ok, FAIL = late, UNKNOWN = never.
`now` is a parameter everywhere: tests and `iarbre freshness --as-of` inject the clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

OK, LATE, NEVER = "ok", "late", "never"


@dataclass(frozen=True)
class Freshness:
    source: str
    label: str
    partner: str
    current_version: str | None
    content_changed_at: str | None
    last_fetch_at: str | None
    cadence: str
    cadence_days: int
    age_days: int | None
    status: str
    last_rejected_version: str | None
    last_rejected_at: str | None
    last_rejected_reason: str | None
    as_of: str

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        if self.status == NEVER:
            return f"{self.source}: never accepted a version (cadence {self.cadence})"
        return (f"{self.source}: {self.status}, content {self.age_days} days old (changed {self.content_changed_at}, "
                f"cadence {self.cadence} = {self.cadence_days} days), last fetch {self.last_fetch_at}")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def utc(now: datetime | str | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if isinstance(now, str):
        return _parse(now)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def source_freshness(store, source, now: datetime | str | None = None) -> Freshness:
    """The freshness of `source` (a SourceDef) in `store`, as of `now` (default: the current time)."""
    now = utc(now)
    slug = source.slug
    cadence = source.cadence_delta
    current = store.versions(slug).current()
    content_at = None
    if current is not None:
        try:
            content_at = store.raw.version(slug, current.raw_sha256).first_seen_at
        except FileNotFoundError:  # pruned raw bytes: the acceptance is the best date left
            content_at = current.accepted_at
    fetches = [e["at"] for e in store.raw.log(slug) if "at" in e and "pruned" not in e]
    probe = _last_probe(store, slug)
    if probe:
        fetches.append(probe)
    last_fetch = max(fetches, key=_parse) if fetches else None
    rejected = _last_rejected(store, slug)
    age = None if content_at is None else int((now - _parse(content_at)).total_seconds() // 86400)
    if current is None:
        status = NEVER
    else:
        status = LATE if now - _parse(content_at) > cadence else OK
    return Freshness(
        source=slug, label=source.label, partner=source.partner,
        current_version=current.raw_sha256 if current else None,
        content_changed_at=content_at, last_fetch_at=last_fetch, cadence=source.cadence,
        cadence_days=cadence.days, age_days=age, status=status,
        last_rejected_version=rejected.get("version"), last_rejected_at=rejected.get("at"),
        last_rejected_reason=rejected.get("reason"), as_of=now.isoformat(timespec="seconds"),
    )


def _last_probe(store, slug: str) -> str | None:
    path = store.poll_state
    if not path.exists():
        return None
    return (json.loads(path.read_text(encoding="utf-8")).get(slug) or {}).get("at")


def _last_rejected(store, slug: str) -> dict:
    candidates = []
    for entry in store.versions(slug).history():
        if entry.get("status") == "rejected":
            candidates.append({"version": entry.get("raw_sha256"), "at": entry.get("created_at"),
                               "reason": entry.get("reason") or "refused by its checks"})
    for entry in store.raw.log(slug):
        if entry.get("failed"):
            candidates.append({"version": None, "at": entry["at"], "reason": f"fetch failed: {entry.get('error')}"})
    return max(candidates, key=lambda c: _parse(c["at"])) if candidates else {}


def territory_freshness(platform, now: datetime | str | None = None) -> list[Freshness]:
    return [source_freshness(platform.store, source, now) for source in platform.sources.values()]


def oldest_input(store, sources) -> dict | None:
    """Of these SourceDefs, the one whose content in use changed longest ago (the score states it)."""
    dated = []
    for source in sources:
        fresh = source_freshness(store, source)
        if fresh.content_changed_at:
            dated.append((fresh.content_changed_at, source.slug))
    if not dated:
        return None
    at, slug = min(dated, key=lambda d: _parse(d[0]))
    return {"source": slug, "content_changed_at": at}
