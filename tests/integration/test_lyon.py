"""The pipeline on the 6 real commune boundaries of the Métropole de Lyon, with synthetic layers.

Uses ../shared/data/lyon/communes_gl_2025.geojson (skipped when absent). The territory is written by
`iarbre demo --communes ... --mode files`: every source a local file (GML, GeoParquet, GeoJSON, GeoPackage
layers, zipped Shapefile), run with `iarbre run --territory FILE --data-dir DIR`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize

from iarbre_assets import cli
from integration_helpers import LYON_DIR, PlatformEnv

pytestmark = pytest.mark.lyon
COMMUNES = LYON_DIR / "communes_gl_2025.geojson"


@pytest.fixture(scope="module")
def lyon_home(tmp_path_factory):
    if not COMMUNES.exists():
        pytest.skip(f"the real Lyon fixtures are not here: {LYON_DIR}")
    root = tmp_path_factory.mktemp("lyon6")
    data, home = root / "data", root / "home"
    with PlatformEnv(home, territory="lyon6"):
        assert cli.main(["demo", "--communes", str(COMMUNES), "--mode", "files", "--name", "lyon6",
                         "--out", str(data), "--home", str(home)]) == 0
        # the generated territory names its data dir "."; --data-dir must win anyway
        code = cli.main(["run", "--territory", str(data / "territory.yaml"), "--data-dir", str(data),
                         "--home", str(home)])
        yield home, data, code


def test_every_cell_inside_a_commune_has_a_class(lyon_home):
    home, data, code = lyon_home
    assert code == 0
    import geopandas as gpd

    communes = gpd.read_file(COMMUNES).to_crs(2154).sort_values("insee")
    with rasterio.open(home / "score" / "plantability_class.tif") as src:
        classes = src.read(1)
        shapes = [(g, i + 1) for i, g in reversed(list(enumerate(communes.geometry)))]
        owner = rasterize(shapes, out_shape=classes.shape, transform=src.transform, fill=0, dtype="int32")
    inside = owner > 0
    assert inside.sum() > 2_000_000  # ~61.6 km² of 5 m cells
    assert (classes[inside] != 255).all(), "a cell inside a commune has no class"
    assert (classes[~inside] == 255).all()
    assert set(np.unique(classes[inside])) <= {0, 2, 4, 6, 8, 10}
    assert len(np.unique(classes[inside])) >= 5  # a real spread of classes, not a constant


def test_report_on_a_real_commune(lyon_home, capsys):
    home, data, _ = lyon_home
    with PlatformEnv(home, territory=str(data / "territory.yaml")):
        assert cli.main(["report", "--commune", "69381", "--json", "--home", str(home)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["commune"] == "69381"
    assert "Lyon" in report["name"] and report["classes"]
    with PlatformEnv(home, territory=str(data / "territory.yaml")):
        assert cli.main(["report", "--commune", "69381", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "69381" in text
