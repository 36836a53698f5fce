"""Fixtures of the quality tests: the shipped catalogue, the demo territory's sources, the Lyon files."""

from __future__ import annotations

import sys
from pathlib import Path

# When another test folder is a package (tests/marts/__init__.py), pytest puts tests/ on sys.path and this
# folder would shadow the real `quality` package as an empty namespace package: put the repository first.
_REPO = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_REPO]:
    sys.path.insert(0, _REPO)
if getattr(sys.modules.get("quality"), "__file__", "set") is None:
    del sys.modules["quality"]

import geopandas as gpd  # noqa: E402
import pytest  # noqa: E402

from iarbre_assets.catalog import load_catalog, load_territory  # noqa: E402
from quality_layers import LYON_DIR  # noqa: E402


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
