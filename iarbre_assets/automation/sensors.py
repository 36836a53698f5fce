"""Automation: partner-data refresh runs by itself.

- `partner_inbox` watches $IARBRE_HOME/inbox/<partner>/: a new or changed drop requests a run of the raw
  and normalised assets of the sources it feeds.
- `iarbre_automation` evaluates the declarative automation conditions: remote sources are polled daily,
  and everything downstream is recomputed when (and only where) its inputs changed and passed their
  blocking checks. Both sensors are RUNNING by default.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from ..assets.common import raw_key, source_key
from ..assets.sources import inbox_file
from ..catalog.models import FileLocation
from ..platform import Platform


def inbox_fingerprints(platform: Platform) -> dict[str, str]:
    """source slug -> fingerprint of its current partner drop (name, size, mtime)."""
    out = {}
    for slug, source in platform.sources.items():
        if not isinstance(source.location, FileLocation):
            continue
        drop = inbox_file(platform, source)
        if drop is not None:
            stat = drop.stat()
            out[slug] = f"{drop.name}:{stat.st_size}:{stat.st_mtime_ns}"
    return out


def build_sensors(platform: Platform) -> list:
    file_sources = [s for s, d in platform.sources.items() if isinstance(d.location, FileLocation)]
    targets = [raw_key(s) for s in file_sources] + [source_key(s) for s in file_sources]

    @dg.sensor(
        name="partner_inbox",
        description="New partner drops in $IARBRE_HOME/inbox/<partner>/ trigger ingestion of the sources they feed.",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=targets,
    )
    def partner_inbox(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        current = inbox_fingerprints(platform)
        changed = sorted(slug for slug, fp in current.items() if seen.get(slug) != fp)
        if not changed:
            return dg.SkipReason("no new partner drop")
        run_key = hashlib.sha256(json.dumps({s: current[s] for s in changed}, sort_keys=True).encode()).hexdigest()[:20]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=run_key,
                asset_selection=[raw_key(s) for s in changed] + [source_key(s) for s in changed],
                tags={"iarbre/trigger": "partner_inbox", "iarbre/sources": ",".join(changed)[:200]},
            )],
            cursor=json.dumps(current, sort_keys=True),
        )

    automation = dg.AutomationConditionSensorDefinition(
        "iarbre_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Polls remote sources daily and recomputes what depends on changed data, only where it changed.",
    )
    return [partner_inbox, automation]
