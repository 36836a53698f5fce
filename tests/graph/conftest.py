"""The asset graph of the demo territory, built without running anything (the demo files are generated,
a second; the definitions load from resources on a temporary home)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Graph:
    defs: object
    territory: object

    @property
    def platform(self):
        return self.territory.platform

    def resolve(self):
        return self.defs.resolve_asset_graph()


@pytest.fixture(scope="session")
def demo_graph(tmp_path_factory):
    from iarbre_assets.catalog import load_territory
    from iarbre_assets.definitions import build_definitions
    from iarbre_assets.resources import TerritoryResource
    from iarbre_demo.generator import generate_demo

    home = tmp_path_factory.mktemp("graph_home")
    generate_demo(load_territory("demo").data_dir_path(home))
    territory = TerritoryResource(home=str(home), territory="demo")
    return Graph(build_definitions(territory), territory)
