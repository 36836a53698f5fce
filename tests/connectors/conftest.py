"""Fixtures of the connector tests (helpers live in connectors_helpers.py, importable by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors_helpers import (
    BUILDING_TYPENAME,
    GAS_DATASET,
    LYON_DIR,
    TREE_TYPENAME,
    buildings_frame,
    friches_frame,
    gas_frame,
    trees_frame,
)
from iarbre_assets.connectors import HttpClient
from iarbre_demo.server import LocalDataServer
from iarbre_demo.wire import cartofriches_writer, datafair_writer
from iarbre_demo.wire.gml_writer import write_feature_collection


@pytest.fixture(scope="session")
def wire_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wire")
    (root / "wfs").mkdir()
    (root / "wfs" / f"{TREE_TYPENAME.replace(':', '__')}.gml").write_bytes(
        write_feature_collection(trees_frame(), TREE_TYPENAME, id_field="gid"))
    (root / "wfs" / f"{BUILDING_TYPENAME.replace(':', '__')}.gml").write_bytes(
        write_feature_collection(buildings_frame(), BUILDING_TYPENAME, id_field="cleabs"))
    (root / "datafair").mkdir()
    (root / "datafair" / f"{GAS_DATASET}.json").write_bytes(datafair_writer.write_dataset_file(gas_frame()))
    (root / "cartofriches").mkdir()
    (root / "cartofriches" / "geofriches.geojson").write_bytes(cartofriches_writer.write_dataset_file(friches_frame()))
    return root


@pytest.fixture(scope="session")
def local_server(wire_dir):
    with LocalDataServer(wire_dir) as server:
        yield server


@pytest.fixture
def client() -> HttpClient:
    return HttpClient(timeout_s=5, retries=2, backoff_s=0.01)


@pytest.fixture
def lyon_dir() -> Path:
    if not (LYON_DIR / "espacepublic2025.geojson").is_file():
        pytest.skip(f"Lyon fixtures not found in {LYON_DIR}")
    return LYON_DIR


# Fuzz budgets (test_connectors_fuzz.py): small and reproducible in the README's test command; benchmarks/fuzz.py
# passes --hypothesis-profile=fuzz-long (pytest's own option, read after this file is loaded).
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("fuzz-ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz-long", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("fuzz-ci")
