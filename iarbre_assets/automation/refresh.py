"""After a run that changed data, the run that brings every output up to date (docs/decisions.md D24).

A partner update is the ingest run (the sensor cannot know which communes changed before the data is
normalised and hashed per commune window), then one *refresh run* covering exactly what depends on the
change: the touched communes' footprints and coverages of the factors the source feeds, their score,
classes and tiles, then the territory mosaics, exports, warehouse tables and every dbt model with its tests
(dbt built once). Declarative automation would split that into a run per partitions definition and tick;
this planner reads what the finished run did from the instance's event log and asks for the rest at once.
A Dagster run covers one range of partition keys: when the touched communes are not contiguous, the refresh
is a chain of runs, one per range, the last also carrying the territory-wide assets (`refresh_steps`).

What counts as a change (per asset partition materialised by the run):
    raw/<s>, source/<s>       only when the data version differs from the previous materialisation
    source_by_commune/<s>     reported per commune only when that commune's window content changed
    anything else             always (it was recomputed: what reads it must follow)
A rejected delivery changes nothing downstream, except the inventory stewards read (and its marts).

Propagation: partitioned -> partitioned keeps the communes; unpartitioned -> partitioned means every
commune, except source/<s> -> footprint/<f>, which only orders the run (the per-commune reports carry the
change); partitioned -> unpartitioned means the whole asset. Assets the finished run itself selected are
left out, and not propagated through: what they changed is in the run's own events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import dagster as dg

from ..assets.keys import INVENTORY_KEY

DATA_VERSION_TAG = "dagster/data_version"
REFRESH_TRIGGER = "refresh"
_VERSIONED = {"raw", "source"}


# Runs of a chain an `iarbre` command drives itself (it runs their downstream): the refresh sensor leaves them.
CHAIN_TAG = "iarbre/chain"


@dataclass
class RefreshPlan:
    after_runs: list[str]
    partitioned: dict[dg.AssetKey, set[str]] = field(default_factory=dict)
    unpartitioned: set[dg.AssetKey] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.partitioned and not self.unpartitioned

    @property
    def communes(self) -> set[str]:
        return set().union(*self.partitioned.values()) if self.partitioned else set()

    def merge(self, other: "RefreshPlan") -> None:
        self.after_runs += other.after_runs
        for key, parts in other.partitioned.items():
            self.partitioned.setdefault(key, set()).update(parts)
        self.unpartitioned |= other.unpartitioned
        self.reasons += other.reasons


def _ordering_only(parent: dg.AssetKey, child: dg.AssetKey) -> bool:
    return parent.path[0] == "source" and child.path[0] == "footprint"


def _previous_version(instance, key: dg.AssetKey, partition: str | None, before: int) -> str | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None,
                              before_storage_id=before), limit=1).records
    if not records:
        return None
    return (records[0].asset_materialization.tags or {}).get(DATA_VERSION_TAG)


def changes_of_run(instance, run_id: str) -> tuple[dict[dg.AssetKey, set[str | None]], bool, list[str]]:
    """(asset -> partitions whose data changed, whether a delivery was refused, reasons) for one finished run."""
    from dagster._core.events import DagsterEventType

    changed: dict[dg.AssetKey, set[str | None]] = {}
    reasons, refused = [], False
    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.severity.value == "ERROR" and \
                    evaluation.asset_key.path[0] in _VERSIONED:
                refused = True
                reasons.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name} failed")
            continue
        materialization = event.event_specific_data.materialization
        key, partition = materialization.asset_key, materialization.partition
        if key.path[0] in _VERSIONED:
            version = (materialization.tags or {}).get(DATA_VERSION_TAG)
            if version is not None and version == _previous_version(instance, key, partition, record.storage_id):
                continue
        changed.setdefault(key, set()).add(partition)
        reasons.append(f"{key.to_user_string()}{'[' + partition + ']' if partition else ''} changed")
    return changed, refused, reasons


def plan_after(instance, asset_graph, run_id: str) -> RefreshPlan:
    """What must be recomputed after run `run_id`, and was not in its selection."""
    run = instance.get_run_by_id(run_id)
    attempted = set(run.asset_selection or ()) if run else set()
    changed, refused, reasons = changes_of_run(instance, run_id)
    plan = RefreshPlan(after_runs=[run_id], reasons=reasons)
    all_partitions: dict[dg.AssetKey, set[str]] = {}
    frontier: list[tuple[dg.AssetKey, set[str | None]]] = list(changed.items())
    if refused and INVENTORY_KEY in asset_graph.get_all_asset_keys():
        frontier.append((INVENTORY_KEY, {None}))
        if INVENTORY_KEY not in attempted:
            plan.unpartitioned.add(INVENTORY_KEY)
    seen: dict[dg.AssetKey, set[str | None]] = {}
    while frontier:
        key, partitions = frontier.pop()
        node = asset_graph.get(key)
        for child in sorted(node.child_keys, key=lambda k: k.to_user_string()):
            child_node = asset_graph.get(child)
            if not child_node.is_executable:
                continue
            if child_node.partitions_def is None:
                parts: set[str | None] = {None}
            elif node.partitions_def is not None:
                parts = {p for p in partitions if p is not None}
            elif _ordering_only(key, child):
                continue
            else:
                if child not in all_partitions:
                    all_partitions[child] = set(child_node.partitions_def.get_partition_keys())
                parts = set(all_partitions[child])
            new = parts - seen.get(child, set())
            if not new or child in attempted:  # the run did (or tried) it: what it changed is in its own events
                continue
            seen.setdefault(child, set()).update(new)
            frontier.append((child, new))
            if child_node.partitions_def is None:
                plan.unpartitioned.add(child)
            else:
                plan.partitioned.setdefault(child, set()).update(p for p in new if p is not None)
    return plan


def ranges(parts: set[str], order: list[str]) -> list[tuple[str, str]]:
    """Contiguous runs of partition keys, as (first, last), in partition order."""
    index = sorted(order.index(p) for p in parts)
    out, start = [], None
    for i, position in enumerate(index):
        start = position if start is None else start
        if i + 1 == len(index) or index[i + 1] != position + 1:
            out.append((order[start], order[position]))
            start = None
    return out


@dataclass(frozen=True)
class RefreshStep:
    """One run of a refresh chain: assets, and the commune range of the partitioned ones (None: none)."""

    keys: tuple[dg.AssetKey, ...]
    span: tuple[str, str] | None


def refresh_steps(plan: RefreshPlan, asset_graph, communes: list[str]) -> list[RefreshStep]:
    """The runs that carry out a plan, in dependency order. A Dagster run covers one range of partition keys,
    so: one run per contiguous range of each group of partitioned assets sharing the same communes, the
    territory-wide assets in the last run. The usual update (one range) is one run."""
    if plan.empty:
        return []
    rank = {key: i for i, key in enumerate(asset_graph.toposorted_asset_keys)}
    groups: dict[frozenset[str], set[dg.AssetKey]] = {}
    for key, parts in plan.partitioned.items():
        if parts:
            groups.setdefault(frozenset(parts), set()).add(key)
    steps = [(min(rank[k] for k in keys), communes.index(span[0]), tuple(sorted(keys, key=rank.get)), span)
             for parts, keys in groups.items() for span in ranges(set(parts), communes)]
    steps.sort(key=lambda s: (s[0], s[1]))
    out = [RefreshStep(keys=keys, span=span) for _, _, keys, span in steps]
    territory_wide = tuple(sorted(plan.unpartitioned, key=rank.get))
    if not out:
        return [RefreshStep(keys=territory_wide, span=None)]
    out[-1] = RefreshStep(keys=out[-1].keys + territory_wide, span=out[-1].span)
    return out


def plan_without(plan: RefreshPlan, step: RefreshStep, communes: list[str]) -> RefreshPlan:
    """What is left of `plan` once `step` has run."""
    done: set[str] = set()
    if step.span:
        done = set(communes[communes.index(step.span[0]): communes.index(step.span[1]) + 1])
    rest = RefreshPlan(after_runs=list(plan.after_runs), reasons=list(plan.reasons))
    for key, parts in plan.partitioned.items():
        left = parts - done if key in step.keys else set(parts)
        if left:
            rest.partitioned[key] = left
    rest.unpartitioned = {k for k in plan.unpartitioned if k not in step.keys}
    return rest


def plan_to_json(plan: RefreshPlan) -> dict:
    return {"after_runs": plan.after_runs,
            "partitioned": {k.to_user_string(): sorted(v) for k, v in plan.partitioned.items()},
            "unpartitioned": sorted(k.to_user_string() for k in plan.unpartitioned)}


def plan_from_json(data: dict | None) -> RefreshPlan:
    data = data or {}
    return RefreshPlan(after_runs=list(data.get("after_runs", [])),
                       partitioned={dg.AssetKey.from_user_string(k): set(v)
                                    for k, v in data.get("partitioned", {}).items()},
                       unpartitioned={dg.AssetKey.from_user_string(k) for k in data.get("unpartitioned", [])})


def step_request(step: RefreshStep, plan: RefreshPlan, number: int, total: int,
                 tags: dict | None = None) -> dg.RunRequest:
    """The run request of step `number` of `total` of the refresh chain carrying out `plan`."""
    after = ",".join(r[:8] for r in plan.after_runs)
    partition_tags = ({"dagster/asset_partition_range_start": step.span[0],
                       "dagster/asset_partition_range_end": step.span[1]} if step.span else {})
    return dg.RunRequest(
        asset_selection=list(step.keys),
        run_key=f"refresh-{hashlib.sha256(after.encode()).hexdigest()[:16]}-{number}",
        tags={"iarbre/trigger": REFRESH_TRIGGER, "iarbre/after_runs": after[:200],
              "iarbre/refresh_step": f"{number}/{total}", **partition_tags, **(tags or {})})
