"""Helpers of the integration tests: a home with the demo territory, its definitions, instance and runs.

Everything is built from resources on a temporary home; nothing swaps the environment.
"""

from __future__ import annotations

import shutil
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
