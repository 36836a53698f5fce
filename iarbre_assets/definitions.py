"""The one Definitions object of the iarbre code location.

    inbox/<partner> -> raw/<source> -> source/<source> -> source_by_commune/<source> -> footprint/<factor>
    -> coverage/<factor> -> plantability_score -> plantability_class -> tiles -> dbt marts ; exports

Everything is built from one territory resource (catalogue, territory file, store), read once from the
configuration `dagster dev` or `iarbre` hands over (IARBRE_HOME, IARBRE_TERRITORY, ...). Loading writes
nothing and runs nothing: the demo data and the dbt manifest are prepared by explicit commands.
"""

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
from .assets.keys import SINGLE_RUN
from .deployment.profiles import backfill_policy_for, executor_for, load_profile
from .resources import TerritoryResource, build_resources

MATERIALISE_ALL = "materialise_all"


def build_definitions(territory: TerritoryResource) -> dg.Definitions:
    """The home's deployment profile picks the executor (in-process, or Celery on the cluster) and how a
    backfill batches the communes (one run, or a run per batch on the cluster)."""
    platform = territory.platform
    profile = load_profile(platform.store.dagster_home)
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
    policy = backfill_policy_for(profile)
    assets = [a.with_attributes(backfill_policy=policy) if getattr(a, "backfill_policy", None) == SINGLE_RUN else a
              for a in assets]
    return dg.Definitions(
        assets=assets,
        asset_checks=[marts_match_outputs],
        jobs=[dg.define_asset_job(MATERIALISE_ALL, selection=dg.AssetSelection.all(),
                                  description="Every asset of the territory, all communes, in one run.")],
        sensors=build_sensors(),
        resources=build_resources(territory),
        executor=executor_for(profile),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev`, `dagster definitions validate` and `dg check defs`: the configuration is read
    (never written) from the environment here, and only here."""
    return build_definitions(TerritoryResource.from_env())
