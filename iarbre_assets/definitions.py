"""The one Definitions object of the iarbre code location.

    inbox/<partner> -> raw/<source> -> source/<source> -> source_by_commune/<source> -> footprint/<factor>
    -> coverage/<factor> -> plantability_score -> plantability_class -> tiles -> dbt marts ; exports

Everything is built from one territory resource (catalogue, territory file, store), read once from the
configuration `dagster dev` or `iarbre` hands over (IARBRE_HOME, IARBRE_TERRITORY, ...). Loading writes
nothing and runs nothing: the demo data and the dbt manifest are prepared by explicit commands.
"""

import os

import dagster as dg

from .assets.classes import build_class_asset
from .assets.consistency import marts_match_outputs
from .assets.constraints import build_constraint_defs
from .assets.exports import build_export_defs
from .assets.ingest import build_source_defs
from .assets.inventory import build_inventory_asset
from .assets.marts import build_dbt_assets
from .assets.score import build_score_asset
from .assets.tiles import build_tiles_asset
from .automation.sensors import build_sensors
from .resources import TerritoryResource, build_resources

MATERIALISE_ALL = "materialise_all"


def _executor(kind: str):
    # In-process by default: per-commune work is already spread over a worker pool, and a process per
    # step would pay the imports at every step (docs/decisions.md). "multiprocess" for step isolation.
    return dg.multiprocess_executor if kind == "multiprocess" else dg.in_process_executor


def build_definitions(territory: TerritoryResource, executor: str = "in_process") -> dg.Definitions:
    platform = territory.platform
    assets = [
        *build_source_defs(platform),
        build_inventory_asset(platform),
        *build_constraint_defs(platform),
        build_score_asset(platform),
        build_class_asset(platform),
        build_tiles_asset(platform),
        *build_export_defs(platform),
        build_dbt_assets(),
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=[marts_match_outputs],
        jobs=[dg.define_asset_job(MATERIALISE_ALL, selection=dg.AssetSelection.all(),
                                  description="Every asset of the territory, all communes, in one run.")],
        sensors=build_sensors(),
        resources=build_resources(territory),
        executor=_executor(executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev`, `dagster definitions validate` and `dg check defs`: the configuration is read
    (never written) from the environment here, and only here."""
    return build_definitions(TerritoryResource.from_env(), os.environ.get("IARBRE_EXECUTOR", "in_process"))
