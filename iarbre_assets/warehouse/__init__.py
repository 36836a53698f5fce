"""The DuckDB warehouse: connections (spatial loaded offline), the table contract, and the dbt wiring.

Keep this package import-light: the dbt subprocess imports `iarbre_assets.warehouse.dbt_plugin`, so
nothing here may import Dagster (that lives in `warehouse.dbt` and `assets.marts`).
"""

from .duck import WarehouseLockedError, WarehouseMissingError, connect, spatial_extension_path

__all__ = [
    "WarehouseLockedError",
    "WarehouseMissingError",
    "connect",
    "spatial_extension_path",
]
