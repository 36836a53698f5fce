"""Fixtures of the quality tests: the shipped catalogue, the demo territory's sources, the Lyon files."""

from __future__ import annotations

import geopandas as gpd
import pytest

from iarbre_assets.catalog import load_catalog, load_territory
from quality_layers import LYON_DIR


@pytest.fixture(scope="session")
def catalogue():
    return load_catalog()


@pytest.fixture(scope="session")
def sources(catalogue):
    """Every source of the demo territory (catalogue sources plus the `communes` and `iris` layers)."""
    return load_territory("demo", catalogue).source_defs(catalogue)


@pytest.fixture(scope="session")
def lyon_dir():
    if not (LYON_DIR / "communes_gl_2025.geojson").exists():
        pytest.skip(f"real Lyon fixtures not found in {LYON_DIR}")
    return LYON_DIR


@pytest.fixture(scope="session")
def lyon_communes(lyon_dir):
    return gpd.read_file(lyon_dir / "communes_gl_2025.geojson")
