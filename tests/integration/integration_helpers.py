"""Helpers of the integration tests: a home with the demo territory, its definitions, instance and runs.

Everything is built from resources on a temporary home; nothing swaps the environment.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

LYON_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lyon"


@dataclass
class PlatformRun:
    home: Path
    defs: dg.Definitions
    territory: object  # TerritoryResource
    instance: dg.DagsterInstance
    outcome: object

    @property
    def platform(self):
        return self.territory.platform

    @property
    def store(self):
        return self.territory.store


def demo_data(home: Path) -> None:
    """The built-in demo territory's files under `home` (what `iarbre-demo --if-missing` writes)."""
    from iarbre_assets.catalog import load_territory
    from iarbre_demo.generator import generate_demo, is_generated

    data_dir = load_territory("demo").data_dir_path(home)
    if not is_generated(data_dir):
        generate_demo(data_dir)


def build(home: Path, territory: str = "demo", data_dir: str | None = None, workers: int = 0,
          catalog: str | None = None):
    """Definitions, territory resource and instance for a home."""
    from iarbre_assets.cli import write_instance_config
    from iarbre_assets.definitions import build_definitions
    from iarbre_assets.resources import TerritoryResource

    if territory == "demo":
        demo_data(home)
    resource = TerritoryResource(home=str(home), territory=territory, data_dir=data_dir, workers=workers,
                                 catalog=catalog)
    write_instance_config(resource.store.dagster_home)
    resource.remember()
    defs = build_definitions(resource)
    return defs, resource, dg.DagsterInstance.from_config(str(resource.store.dagster_home))


def run_platform(home: Path, territory: str = "demo", select=None, data_dir: str | None = None,
                 catalog: str | None = None) -> PlatformRun:
    from iarbre_assets.runner import materialise

    defs, resource, instance = build(home, territory, data_dir, catalog=catalog)
    outcome = materialise(defs, resource, instance, select=select)
    return PlatformRun(home, defs, resource, instance, outcome)


def copy_home(source: Path, target: Path, territory: str = "demo") -> PlatformRun:
    """A private copy of a home; its instance config is rewritten to point at the copy only."""
    shutil.copytree(source, target, symlinks=True)
    defs, resource, instance = build(target, territory)
    return PlatformRun(target, defs, resource, instance, None)


def sensor_tick(run: PlatformRun, name: str, cursor: str | None = None):
    """One evaluation of a sensor on the run's real instance, as the daemon does it."""
    context = dg.build_sensor_context(instance=run.instance, definitions=run.defs, cursor=cursor,
                                      resources={"territory": run.territory})
    return run.defs.get_sensor_def(name).evaluate_tick(context)


def execute_request(run: PlatformRun, request: dg.RunRequest):
    """Execute a sensor's run request in this process, on the run's instance (what the daemon launches)."""
    job = run.defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=run.instance, asset_selection=list(request.asset_selection),
                                  tags=dict(request.tags), raise_on_error=False)


def deliver(run: PlatformRun, partner: str, name: str, frame) -> tuple:
    """A partner drops `frame` as `name`; the sensors run as the daemon would. Returns (ingest, refresh) results."""
    cursor = sensor_tick(run, "partner_refresh").cursor
    drop = run.store.inbox(partner) / name
    drop.parent.mkdir(parents=True, exist_ok=True)
    frame.to_file(drop, driver="GeoJSON", engine="pyogrio")
    tick = sensor_tick(run, "partner_inbox")
    assert len(tick.run_requests) == 1, tick.skip_message
    ingest = execute_request(run, tick.run_requests[0])
    tick = sensor_tick(run, "partner_refresh", cursor)
    assert len(tick.run_requests) == 1, tick.skip_message
    return ingest, execute_request(run, tick.run_requests[0])


HISTORY_MARTS = {"score_diff", "score_diff_by_class"}  # the last two runs of a commune: a fresh home has one
HISTORY_COLUMNS = ("previous_", "weight_changed", "versions_seen", "oldest_input")


def marts_state(home, carried: set[tuple[str, str]] = frozenset()) -> dict:
    """Every mart's rows as they describe the current state: run ids, times and history aside.

    Rows of earlier runs (is_latest_run false) and the columns comparing with a previous run are history;
    so are the diff marts. A served source's raw bytes name the local server's port (GML `next` links),
    which differs between two homes: its raw version is masked, and paths under the data directory by
    <data>. `carried` (commune, source) rows of run_provenance are left out: communes whose window of the
    updated source did not change keep the score computed from the previous version, and say so."""
    import re

    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        out = {}
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
                                    "ORDER BY 1").fetchall():
            if table in HISTORY_MARTS:
                continue
            frame = con.execute(f"SELECT * FROM marts.{table}").df()
            if "is_latest_run" in frame.columns:
                frame = frame[frame.is_latest_run.astype(bool)]
            drop = [c for c in frame.columns if "run" in c or c.endswith("_at") or c.startswith(HISTORY_COLUMNS) or c in {
                "materialised_at", "inventory_built_at", "freshness_as_of", "provenance", "record_sha256",
                "git_commit", "age_days"}]
            rows = [r for r in frame.drop(columns=drop).to_dict("records")
                    if table != "run_provenance" or (r["commune"], r["source"]) not in carried]
            for row in rows:
                origin = str(row.get("origin") or row.get("location") or "")
                if origin.startswith("http://127.0.0.1"):
                    for column in ("version", "version_short", "latest_version", "latest_version_short", "size_bytes"):
                        if column in row:
                            row[column] = "served"
                for column, value in row.items():
                    if isinstance(value, str):
                        value = re.sub(r"^(<home>|/\S*)/data/demo/", "<data>/", value.replace(str(home), "<home>"))
                        row[column] = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", value)
            out[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
        return out
    finally:
        con.close()


def wait_for(condition, what: str, bound_s: float = 600.0, every_s: float = 0.2):
    """Poll `condition` until it returns something true, and return it; fail after a generous outer bound
    (tests wait on progress, never on a fixed delay)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"gave up waiting ({bound_s:.0f} s) for {what}")
