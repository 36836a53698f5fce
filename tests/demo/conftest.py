"""Shared fixtures of the synthetic-territory tests: each territory is generated once per session."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from iarbre_assets.catalog import load_catalog
from iarbre_demo.synth import demo_communes, generate_layers, synthetic_iris

LYON_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lyon"


@pytest.fixture(scope="session")
def catalogue():
    return load_catalog()


@pytest.fixture(scope="session")
def small_communes() -> gpd.GeoDataFrame:
    return demo_communes()


@pytest.fixture(scope="session")
def small_iris(small_communes) -> gpd.GeoDataFrame:
    return synthetic_iris(small_communes)


@pytest.fixture(scope="session")
def small_layers(small_communes) -> dict[str, gpd.GeoDataFrame]:
    return generate_layers(small_communes)


def _lyon_file(name: str) -> Path:
    path = LYON_DIR / name
    if not path.exists():
        pytest.skip(f"real Lyon fixtures absent ({path} not found)")
    return path


@pytest.fixture(scope="session")
def lyon_file():
    """Path of one of the real Lyon files; skips the test when the folder is absent."""
    return _lyon_file


@pytest.fixture(scope="session")
def lyon_communes() -> gpd.GeoDataFrame:
    return gpd.read_file(_lyon_file("communes_gl_2025.geojson"))


@pytest.fixture(scope="session")
def lyon_layers(lyon_communes) -> dict[str, gpd.GeoDataFrame]:
    return generate_layers(lyon_communes)
