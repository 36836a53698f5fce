"""The asset graph, as a reviewed snapshot: keys, dependencies, groups, partitions, checks, automation.

A change to the graph shows in review as a diff of graph_snapshot.json. After a deliberate change, rewrite
it with `IARBRE_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/graph/test_graph_snapshot.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("graph_snapshot.json")


def describe(graph) -> dict:
    checks: dict[str, list] = {}
    for key in graph.asset_check_keys:
        node = graph.get(key)
        checks.setdefault(key.asset_key.to_user_string(), []).append(
            f"{key.name}{' (blocking)' if node.blocking else ''}")
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "group": node.group_name,
            "partitioned_by": "commune" if node.partitions_def is not None else None,
            "executable": node.is_executable,
            "automation": condition.get_label() if condition is not None else None,
            "checks": sorted(checks.get(key.to_user_string(), [])),
        }
    return assets


def test_the_asset_graph_is_the_reviewed_one(demo_graph):
    current = describe(demo_graph.resolve())
    if os.environ.get("IARBRE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    added, removed = sorted(set(current) - set(expected)), sorted(set(expected) - set(current))
    assert not added and not removed, f"assets added {added[:10]}, removed {removed[:10]}"
    changed = {k: (expected[k], current[k]) for k in current if current[k] != expected[k]}
    assert not changed, f"{len(changed)} asset(s) changed, e.g. {next(iter(changed.items()))}"


def test_every_partitioned_asset_is_per_commune_and_every_source_is_checked(demo_graph):
    current = describe(demo_graph.resolve())
    for key, node in current.items():
        if key.startswith(("footprint/", "coverage/", "source_by_commune/")) or key in {
                "plantability_score", "plantability_class", "tiles"}:
            assert node["partitioned_by"] == "commune", key
        if key.startswith("source/") and node["executable"]:
            assert "quality_suite (blocking)" in node["checks"], key
        if key.startswith("raw/"):
            assert {"delivery (blocking)", "partner_freshness"} <= set(node["checks"]), key
