"""Synthetic territories for the demo, the tests and the full-scale benchmark.

    from iarbre_demo.synth import demo_communes, synthetic_iris, generate_layers
    communes = demo_communes()                       # 3 contiguous communes, ~5 km², near Lyon
    iris = synthetic_iris(communes)                  # 2-8 IRIS-like parts per commune, tiling it
    layers = generate_layers(communes)               # {source slug: GeoDataFrame in EPSG:2154}

Everything is generated, nothing is real: INSEE codes use the never-real department 99 ("99101"...).
The same seed and inputs give identical outputs. Densities are per km² of the given communes, so real
communes get plausible counts too; `scale` only names the expected size of the territory ("small": a
demo of a few km², "full": a metropole of ~534 km²) and is checked, not used to thin anything out.
Only GeoDataFrames are produced; writing them in the partners' wire formats is done elsewhere.
"""

from __future__ import annotations

import geopandas as gpd

from .synth_city import build_city
from .synth_layers import ESPACE_PUBLIC_FIELDS, ID_FIELDS
from .synth_territory import demo_communes, synthetic_iris

__all__ = ["ESPACE_PUBLIC_FIELDS", "ID_FIELDS", "SCALES", "demo_communes", "generate_layers", "synthetic_iris"]

SCALES = ("small", "full")


def generate_layers(communes: gpd.GeoDataFrame, seed: int = 2154, scale: str = "small",
                    code_field: str = "insee", catalogue=None) -> dict[str, gpd.GeoDataFrame]:
    """One GeoDataFrame (EPSG:2154) per catalogue source, generated inside the given communes.

    `communes` may be the synthetic ones or real ones (any CRS, polygons, a `code_field` column and
    optionally `nom`). Keys are the catalogue's source slugs, in catalogue order. Every layer has a
    unique integer `gid` 1..n except BD TOPO buildings (`cleabs`) and the two voirie files that keep
    their real schemas (`idespacepublic`, `idparkingsurfacique`); see ID_FIELDS.
    """
    if scale not in SCALES:
        raise ValueError(f"generate_layers: scale must be one of {SCALES}, got {scale!r}")
    from iarbre_assets.catalog import load_catalog

    from .synth_layers import Builder

    catalogue = catalogue or load_catalog()
    city = build_city(communes, seed, scale, code_field)
    builder = Builder(city, catalogue)
    missing = [slug for slug in catalogue.sources if not hasattr(builder, slug) and slug not in _BUILT_TOGETHER]
    if missing:
        raise ValueError(f"generate_layers: no synthetic generator for catalogue source(s) {missing}")
    return builder.build()


# sources produced by a shared step rather than a method named after them
_BUILT_TOGETHER = {"arrets_tcl", "lignes_metro", "lignes_tram", "lignes_bus", "assainissement", "ore_gaz",
                   "ore_bt_souterrain", "ore_bt_aerien", "reseau_fibre_thd", "fibre_genie_civil", "reseau_chaleur"}
