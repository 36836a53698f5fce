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
    # In-process by default: per-commune work is already spread over a worker pool, and a process per
    # step would pay the imports at every step (docs/decisions.md). IARBRE_EXECUTOR=multiprocess for
    # deployments that want step isolation.
    if os.environ.get("IARBRE_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor
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


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded lazily by `dagster dev`, `dagster definitions validate` and `dg check defs`."""
    return build_definitions()
