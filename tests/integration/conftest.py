"""Integration fixtures: real materialisations of the demo territory in a temporary IARBRE_HOME.

The demo run (every asset, all communes, ~1 min) is shared by the integration tests of the session;
tests that change data work on a copy of its home.
"""

from __future__ import annotations

import shutil

import pytest

from integration_helpers import PlatformEnv, PlatformRun, build, run_platform


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("demo_home")
    with PlatformEnv(home):
        run = run_platform(home)
        assert run.outcome.success, run.outcome.failures + run.outcome.failed_checks
        yield run


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A private copy of the demo home, with its own Dagster instance, for tests that change data."""
    home = tmp_path / "home"
    shutil.copytree(demo_run.home, home, symlinks=True)
    # the instance config names its own history directory: point it at the copy
    config = home / "dagster" / "dagster.yaml"
    config.write_text(config.read_text().replace(str(demo_run.home), str(home)))
    with PlatformEnv(home):
        defs, platform, instance = build(home)
        yield PlatformRun(home, defs, platform, instance, None)
