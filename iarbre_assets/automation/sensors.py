"""Automation: partner-data refresh runs by itself (all sensors RUNNING by default).

- `partner_inbox`   a file dropped in $IARBRE_HOME/inbox/<partner>/ that matches a source of that partner
                    (store/inbox.py) requests an ingest run of that source; a drop matching none is
                    quarantined and a document ignored, with the reason in the ledger (`iarbre inbox`) and as
                    an observation on the partner's inbox asset.
- `partner_poll`    probes each remote source when its poll interval (from its cadence) is due, cheaply; a
                    changed endpoint requests an ingest run (automation/polls.py).
- `partner_refresh` after any run that changed data (an ingest, a code change, a manual materialisation),
                    requests the run that brings every output up to date (automation/refresh.py); when the
                    touched communes are not one range, the chain of runs, one at a time (the rest of the
                    chain waits in the cursor).
- `iarbre_automation` declarative automation for what is not data: code or catalogue changes, the daily
                    inventory rebuild.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import dagster as dg

from ..assets.keys import inbox_key, raw_key, source_key
from ..resources import TerritoryResource
from . import polls, refresh

# The sensor daemon loops every 5 s; a minimum interval of 5 s then skips every other loop (the elapsed time
# since the last tick is a little under 5 s), so drops and finished runs waited up to 10 s.
EVERY_DAEMON_LOOP = 1
FINAL_STATES = {"accepted", "rejected", "ignored", "quarantined"}


def scan_inbox(platform, run_id: str | None = None) -> tuple[list, list[dict]]:
    """Candidate drops without a final state yet, and the ledger entries written for files set aside."""
    inbox = platform.store.drops
    latest = inbox.latest()
    candidates, recorded = [], []
    for verdict in inbox.scan(platform.sources_by_partner, inbox.known_hashes()):
        drop = verdict.drop
        entry = latest.get((drop.partner, drop.path.name, drop.sha256))
        if entry is not None and entry["state"] in FINAL_STATES:
            continue
        if verdict.state == "candidate":
            try:  # bytes this source already delivered: nothing to ingest again
                known = platform.store.raw.version(verdict.source, drop.sha256)
            except FileNotFoundError:
                candidates.append(verdict)
                continue
            recorded.append(inbox.record(drop, "accepted", source=verdict.source, run_id=run_id, reason=(
                f"same bytes as the version of {verdict.source} first delivered {known.first_seen_at}: no new version")))
        elif entry is None:
            recorded.append(inbox.record(drop, verdict.state, source=None, reason=verdict.reason, run_id=run_id))
    return candidates, recorded


def ingest_request(sources: list[str], trigger: str, key: str) -> dg.RunRequest:
    run_key = hashlib.sha256(f"{trigger}:{key}".encode()).hexdigest()[:20]
    return dg.RunRequest(run_key=run_key, asset_selection=[raw_key(s) for s in sources] + [source_key(s) for s in sources],
                         tags={"iarbre/trigger": trigger, "iarbre/sources": ",".join(sources)[:200]})


def build_sensors() -> list:
    @dg.sensor(name="partner_inbox", minimum_interval_seconds=EVERY_DAEMON_LOOP, default_status=dg.DefaultSensorStatus.RUNNING,
               target=dg.AssetSelection.all(),
               description="A partner's drop in $IARBRE_HOME/inbox/<partner>/ requests the ingestion of the source it "
                           "matches; a drop matching no source is quarantined with the reason.")
    def partner_inbox(context: dg.SensorEvaluationContext, territory: TerritoryResource):
        platform = territory.platform
        candidates, recorded = scan_inbox(platform)
        events = [dg.AssetObservation(asset_key=inbox_key(e["partner"]), metadata={
            "file": e["file"], "sha256": e["sha256"], "state": e["state"], "reason": e["reason"]}) for e in recorded]
        requested = json.loads(context.cursor) if context.cursor else {}
        pending = {f"{v.drop.partner}/{v.drop.path.name}@{v.drop.sha256}": v.source for v in candidates}
        new = {k: s for k, s in pending.items() if k not in requested}
        cursor = json.dumps(pending, sort_keys=True)  # forget what is no longer pending
        if not new:
            aside = f"; {len(recorded)} file(s) set aside, see `iarbre inbox`" if recorded else ""
            waiting = f"; {len(pending)} drop(s) being ingested" if pending else ""
            return dg.SensorResult(skip_reason=f"no new partner drop{waiting}{aside}", asset_events=events,
                                   cursor=cursor)
        sources = sorted(set(new.values()))
        return dg.SensorResult(run_requests=[ingest_request(sources, "partner_inbox", ",".join(sorted(new)))],
                               asset_events=events, cursor=cursor)

    @dg.sensor(name="partner_poll", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               target=dg.AssetSelection.all(),
               description="Probes each remote source when its poll interval (from its cadence) is due, with a "
                           "conditional request or the server's count; a changed endpoint is fetched.")
    def partner_poll(context: dg.SensorEvaluationContext, territory: TerritoryResource):
        platform = territory.platform
        due = polls.due(platform)
        if not due:
            return dg.SkipReason("no remote source is due for a poll")
        to_fetch, details = polls.probe(platform, due)
        lines = "; ".join(f"{d['source']}: {d['detail']}" for d in details)
        if not to_fetch:
            return dg.SkipReason(f"{len(due)} source(s) probed, none changed: {lines}"[:1000])
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return dg.SensorResult(run_requests=[ingest_request(sorted(to_fetch), "partner_poll", stamp)])

    @dg.sensor(name="partner_refresh", minimum_interval_seconds=EVERY_DAEMON_LOOP, default_status=dg.DefaultSensorStatus.RUNNING,
               target=dg.AssetSelection.all(),
               description="After a run that changed data, requests the one run that recomputes exactly what "
                           "depends on it: touched communes, mosaics, exports, warehouse and marts (dbt once).")
    def partner_refresh(context: dg.SensorEvaluationContext, territory: TerritoryResource):
        instance = context.instance
        busy = instance.get_run_records(dg.RunsFilter(statuses=list(IN_PROGRESS), tags={
            "iarbre/trigger": refresh.REFRESH_TRIGGER}), limit=1)
        if busy:
            return dg.SkipReason(f"refresh run {busy[0].dagster_run.run_id[:8]} in progress")
        cursor = json.loads(context.cursor) if context.cursor else None
        if cursor is None:  # a new sensor does not replay the instance's history
            return dg.SensorResult(skip_reason="started: watching runs from now on",
                                   cursor=json.dumps({"after": datetime.now(timezone.utc).timestamp(), "done": []}))
        after = datetime.fromtimestamp(cursor["after"], timezone.utc)
        records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS,
                                                                   dg.DagsterRunStatus.FAILURE], updated_after=after),
                                           ascending=True)
        # a chain `iarbre run` drives on the cluster runs its own downstream
        records = [r for r in records if r.dagster_run.run_id not in cursor["done"]
                   and refresh.CHAIN_TAG not in r.dagster_run.tags]
        pending = refresh.plan_from_json(cursor.get("pending"))  # the rest of a chain under way
        if not records and pending.empty:
            return dg.SkipReason("no run finished since the last check")
        graph = context.repository_def.asset_graph
        plan = pending
        for record in records:
            plan.merge(refresh.plan_after(instance, graph, record.dagster_run.run_id))
        if records:
            last = max(r.update_timestamp.timestamp() for r in records)
            done = [r.dagster_run.run_id for r in records if r.update_timestamp.timestamp() == last]
        else:
            last, done = cursor["after"], cursor["done"]
        communes = territory.platform.commune_codes
        steps = refresh.refresh_steps(plan, graph, communes)
        if not steps:
            return dg.SensorResult(skip_reason=f"{len(records)} finished run(s) changed nothing downstream",
                                   cursor=json.dumps({"after": last, "done": done}))
        number = cursor.get("step", 0) + 1 if not pending.empty else 1
        rest = refresh.plan_without(plan, steps[0], communes)
        request = refresh.step_request(steps[0], plan, number, number + len(steps) - 1)
        new_cursor = {"after": last, "done": done}
        if not rest.empty:
            new_cursor.update(pending=refresh.plan_to_json(rest), step=number)
        return dg.SensorResult(run_requests=[request], cursor=json.dumps(new_cursor))

    automation = dg.AutomationConditionSensorDefinition(
        "iarbre_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Recomputes an asset when its code or catalogue entry changes, and rebuilds the inventory daily.",
    )
    return [partner_inbox, partner_poll, partner_refresh, automation]


IN_PROGRESS = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED)
