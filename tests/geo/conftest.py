"""Fixtures of the geo kernel tests: the catalogue, coverage stacks, the reference recipe."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from iarbre_assets.catalog import load_catalog

from geo_helpers import REPO

@pytest.fixture(scope="session")
def catalogue():
    return load_catalog()


@pytest.fixture(scope="session")
def scored(catalogue):
    """The 36 scored factors, in catalogue order, with their weights and blocking flags."""
    factors = catalogue.scored_factors
    return {
        "factors": factors,
        "slugs": [f.slug for f in factors],
        "labels": [f.label for f in factors],
        "weights": np.array([f.weight for f in factors]),
        "blocking": np.array([f.blocking for f in factors]),
    }


@pytest.fixture
def stack(scored):
    """Build a (F, H, W) uint8 coverage stack from {slug: 2-D percent array or scalar}."""

    def build(shape, values: dict):
        out = np.zeros((len(scored["slugs"]), *shape), dtype=np.uint8)
        for slug, value in values.items():
            out[scored["slugs"].index(slug)] = value
        return out

    return build


@pytest.fixture(scope="session")
def reference_method():
    """benchmarks/reference_method.py, loaded by path (benchmarks/ is not a package)."""
    path = REPO / "benchmarks" / "reference_method.py"
    spec = importlib.util.spec_from_file_location("reference_method", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
