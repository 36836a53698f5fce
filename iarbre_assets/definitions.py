"""The one Definitions object of the iarbre code location.

The territory comes from IARBRE_TERRITORY (default: the built-in demo, generated on first load) and the
data directory from IARBRE_HOME. Assets are generated from the catalogue:

    raw/<source> -> source/<source> -> source_by_commune/<source> -> footprint/<factor> -> coverage/<factor>
    -> plantability_score -> plantability_class -> tiles -> dbt marts ; exports (COGs, GeoPackage, preview)
"""

from __future__ import annotations

import os

import dagster as dg

from .assets.constraints import build_constraint_defs
from .assets.exports import build_export_defs
from .assets.inventory import build_inventory_asset
from .assets.score import build_score_defs
from .assets.sources import build_source_defs
from .automation.sensors import build_sensors
from .platform import Platform


def _executor():
    # In-process by default: per-commune work is already spread over a worker pool, and one process per
    # step would pay the imports ~150 times per run (docs/decisions.md).
    if os.environ.get("IARBRE_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor.configured({"max_concurrent": 2})
    return dg.in_process_executor


def build_definitions(return_platform: bool = False):
    from .cli import ensure_demo_data
    from .warehouse.dbt import dbt_resource
    from .assets.marts import iarbre_dbt_assets

    ensure_demo_data(quiet=True)
    platform = Platform.from_env()
    assets = [
        *build_source_defs(platform),
        build_inventory_asset(platform),
        *build_constraint_defs(platform),
        *build_score_defs(platform),
        *build_export_defs(platform),
        iarbre_dbt_assets,
    ]
    defs = dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("materialise_all", selection=dg.AssetSelection.all(),
                                  description="Every asset of the territory, all communes, in one run.")],
        sensors=build_sensors(platform),
        resources={"dbt": dbt_resource()},
        executor=_executor(),
    )
    return (defs, platform) if return_platform else defs


defs, platform = build_definitions(return_platform=True)


def all_assets_job():
    """The whole graph as a job, as a module-level target for out-of-process (multiprocess) execution."""
    return defs.resolve_job_def("materialise_all")
