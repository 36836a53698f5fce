"""Integration fixtures: real materialisations of the demo territory in a temporary home.

The demo run (every asset, all communes, ~40 s) is shared by the integration tests of the session;
tests that change data work on a copy of its home. Everything here materialises: marked slow.
"""

from __future__ import annotations

import pytest

from integration_helpers import copy_home, run_platform


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo_home")
    run = run_platform(home)
    assert run.outcome.success, run.outcome.failures + run.outcome.failed_checks
    yield run


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the demo home, with its own Dagster instance, for tests that change data."""
    yield copy_home(demo_run.home, tmp_path / "home")
