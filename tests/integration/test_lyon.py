"""The pipeline on the 6 real commune boundaries of the Métropole de Lyon.

Uses ../shared/data/lyon/ (skipped when absent): the real communes, and the real public spaces (EPSG:3946)
and car parks files read in place for their sources; the other layers are synthetic. The territory is
written by `iarbre-demo --communes ... --mode files`: every source a local file (GML, GeoParquet, GeoJSON,
GeoPackage layers, zipped Shapefile), run with `iarbre run --territory FILE --data-dir DIR`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
import rasterio
from rasterio.features import rasterize

from iarbre_assets import cli
from iarbre_demo import cli as demo_cli
from integration_helpers import LYON_DIR

pytestmark = pytest.mark.lyon
COMMUNES = LYON_DIR / "communes_gl_2025.geojson"


@pytest.fixture(scope="module")
def lyon_home(tmp_path_factory):
    if not COMMUNES.exists():
        pytest.skip(f"the real Lyon fixtures are not here: {LYON_DIR}")
    root = tmp_path_factory.mktemp("lyon6")
    data, home = root / "data", root / "home"
    assert demo_cli.main(["--communes", str(COMMUNES), "--mode", "files", "--name", "lyon6",
                          "--out", str(data), "--home", str(home)]) == 0
    # the real partner files, read where they are; the 5-feature public-spaces extract lacks most of
    # the categories the filters use, so that check is a warning for this territory
    doc = yaml.safe_load((data / "territory.yaml").read_text())
    doc["sources"]["espaces_publics"] = {"kind": "file", "path": str(LYON_DIR / "espacepublic2025.geojson")}
    doc["sources"]["parkings_surfaciques"] = {"kind": "file", "path": str(LYON_DIR / "parkingsurfacique.geojson")}
    doc["quality"]["filter_values"] = "warn"
    (data / "territory.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
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
    assert cli.main(["report", "--commune", "69381", "--json", "--home", str(home)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["commune"] == "69381"
    assert "Lyon" in report["name"] and report["classes"]
    assert cli.main(["report", "--commune", "69381", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "69381" in text


def test_real_partner_files_ingested(lyon_home):
    """The real public spaces (EPSG:3946) come out in EPSG:2154 with areas matching surfacecalc (0.5 %)."""
    import geopandas as gpd

    from iarbre_assets.store import Store

    home, _, _ = lyon_home
    store = Store(home)
    spaces = store.versions("espaces_publics").current()
    assert spaces is not None and spaces.report["crs_in"].endswith("3946")
    frame = gpd.read_parquet(spaces.data_path(store))
    assert frame.crs.to_epsg() == 2154 and len(frame) == 5
    declared = frame["surfacecalc"].astype(float)
    assert ((frame.geometry.area - declared).abs() / declared < 0.005).all()
    assert spaces.quality["warnings"], "the missing filter categories must show as warnings"
    parkings = store.versions("parkings_surfaciques").current()
    assert parkings is not None and parkings.rows == 6
