"""Auditors trust, replay and compare: explain from the record, versions kept, diff runs, W3C PROV.

Each test follows one step of docs/audit.md.
"""

from __future__ import annotations


import geopandas as gpd
import pandas as pd
import numpy as np
import pytest
import rasterio
import shapely
import yaml

from iarbre_assets import cli
from iarbre_assets.catalog import DEFAULT_CATALOG
from iarbre_assets.provenance.diff import diff_runs
from iarbre_assets.provenance.explain import ExplainError, explain_point
from integration_helpers import deliver, run_platform

FACTOR = "parcs_jardins_publics"


def _cells(store, commune, n=200):
    return pd.read_parquet(store.tiles(commune), columns=["x", "y", "score", "class", "blocked"]).head(n)


def _covered_cells(store, commune, factor, n=50):
    """Scored cells of the commune where the factor's coverage is not zero (read from its raster)."""
    path = store.coverage(factor, commune)
    if not path.exists():
        return _cells(store, commune, 0)
    with rasterio.open(path) as src:
        band, transform = src.read(1), src.transform
    rows, cols = np.nonzero((band > 0) & (band != (src.nodata if src.nodata is not None else -1)))
    centres = {(round(transform.c + (c + 0.5) * transform.a, 1), round(transform.f + (r + 0.5) * transform.e, 1))
               for r, c in zip(rows, cols)}
    tiles = pd.read_parquet(store.tiles(commune), columns=["x", "y", "score", "class", "blocked"])
    keep = [(round(x, 1), round(y, 1)) in centres for x, y in zip(tiles.x, tiles.y)]
    return tiles[keep].head(n)


def _changed_weight_catalogue(tmp_path, factor=FACTOR, weight=-1.0):
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    for entry in doc["factors"]:
        if entry["slug"] == factor:
            entry["weight"] = weight
    path = tmp_path / "factors.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_explain_reports_what_was_computed_after_a_weight_edit_and_diff_finds_exactly_the_changed_cells(
        demo_copy, tmp_path):
    run = demo_copy
    store = run.store
    catalogue = _changed_weight_catalogue(tmp_path)
    first = store.history.resolve("latest").run_id
    # the weight is edited, nothing is rerun: explain still gives what was computed, and says it differs
    for code in run.platform.commune_codes:
        tiles = pd.concat([_cells(store, code, 100), _covered_cells(store, code, FACTOR)])
        covered = None
        for cell in tiles.itertuples():
            e = explain_point(run.home, cell.x + 1.3, cell.y - 2.1, catalogue_path=str(catalogue))
            assert abs(e["score"] - cell.score) < 1e-4 and e["class"] == cell._4
            if not e["blocked_by"]:
                assert abs(sum(f["contribution"] for f in e["factors"]) - e["score"]) < 1e-3
            weights = {f["factor"]: f["weight"] for f in e["factors"]}
            assert weights[FACTOR] == 2.0  # the recorded weight, not the edited one
            assert any(FACTOR in c and "+2" in c and "-1" in c for c in e["catalogue_changes"])
            if any(f["factor"] == FACTOR and f["coverage_pct"] for f in e["factors"]):
                covered = e
        if covered:
            break
    assert covered, "no cell covered by the edited factor to look at"
    # rerun with the new weight: diff reports exactly the cells whose class changed
    # (the score and what follows, as the automation does after a catalogue edit: no source is fetched again)
    import dagster as dg

    after_score = dg.AssetSelection.assets("plantability_score").downstream().resolve(run.defs.resolve_asset_graph())
    rerun = run_platform(run.home, catalog=str(catalogue), select=sorted(after_score, key=str))
    assert rerun.outcome.success, rerun.outcome.failures
    second = store.history.resolve("latest").run_id
    assert second != first
    diff = diff_runs(store, first, second)
    for entry in diff["communes"]:
        before = store.history.state(first)[entry["commune"]]["classes"]
        after = store.history.state(second)[entry["commune"]]["classes"]
        with rasterio.open(before) as a, rasterio.open(after) as b:
            old, new, transform = a.read(1), b.read(1), a.transform
        rows, cols = np.nonzero(old != new)
        expected = {(round(transform.c + (c + 0.5) * 5, 1), round(transform.f - (r + 0.5) * 5, 1)) for r, c in zip(rows, cols)}
        assert {(round(c["x"], 1), round(c["y"], 1)) for c in entry["cells"]} == expected
        assert entry["changed_cells"] == len(expected)
        assert {w["factor"]: (w["from_weight"], w["to_weight"]) for w in entry["weights_changed"]} == {FACTOR: (2.0, -1.0)}
        assert not entry["sources_changed"]
        if expected:
            assert all(FACTOR in c["reweighted_factors"] and not c["factors"] for c in entry["cells"])
    assert sum(c["changed_cells"] for c in diff["communes"]) > 0
    # and the marts keep both runs' weights queryable
    import duckdb

    con = duckdb.connect(str(store.warehouse), read_only=True)
    try:
        rows = con.execute("SELECT DISTINCT run_id, weight FROM marts.run_weights WHERE factor = ?", [FACTOR]).fetchall()
    finally:
        con.close()
    assert {(r, w) for r, w in rows} >= {(first, 2.0), (second, -1.0)}


def test_after_a_partner_update_diff_and_explain_name_the_source_versions(demo_copy, tmp_path):
    run = demo_copy
    store, platform = run.store, run.platform
    store.history.label("before GRDF 2026-12")
    old = store.versions("ore_gaz").current().raw_sha256
    frame = gpd.read_parquet(store.versions("ore_gaz").current().data_path(store))
    first = platform.commune_codes[0]
    window = shapely.box(*platform.windows[first].bounds).buffer(-300)
    inside = frame[frame.geometry.within(window)].index[:3]
    assert len(inside)
    frame.loc[inside, "geometry"] = frame.loc[inside, "geometry"].translate(xoff=4.0)
    ingest, refresh = deliver(run, "grdf", "ore_gaz.geojson", frame)
    assert ingest.success and refresh.success
    new = store.versions("ore_gaz").current().raw_sha256
    assert new != old
    diff = diff_runs(store, "before GRDF 2026-12", "latest")
    touched = {c["commune"] for c in diff["communes"] if c["sources_changed"]}
    assert first in touched
    for entry in diff["communes"]:
        if entry["commune"] in touched:
            assert entry["sources_changed"] == [{**entry["sources_changed"][0], "source": "ore_gaz",
                                                 "from_version": old, "to_version": new}]
        else:
            assert entry["changed_cells"] == 0 and not entry["sources_changed"]
    # explain: the new hash in the touched commune, the old one elsewhere
    for code in platform.commune_codes:
        cell = _cells(store, code, 1).iloc[0]
        e = explain_point(run.home, cell.x, cell.y)
        version = {s["slug"]: s["raw_sha256"] for s in e["sources"]}["ore_gaz"]
        assert version == (new if code in touched else old), code
    # the CLI gives the same from --home alone, and writes the changed cells
    assert cli.main(["diff", "--home", str(run.home), "--from", "before GRDF 2026-12", "--to", "latest",
                     "--gpkg", str(tmp_path / "diff.gpkg")]) == 0
    layer = gpd.read_file(tmp_path / "diff.gpkg", layer="changed_cells")
    assert len(layer) == sum(c["changed_cells"] or 0 for c in diff["communes"])
    assert set(layer["commune"]) <= touched


def test_prov_json_of_a_commune_validates_and_round_trips(demo_run, capsys):
    from prov.model import ProvDocument

    from iarbre_assets.provenance.prov import commune_prov

    code = demo_run.platform.commune_codes[0]
    assert cli.main(["provenance", "--home", str(demo_run.home), "--commune", code]) == 0
    text = capsys.readouterr().out
    document = ProvDocument.deserialize(content=text, format="json")
    record = demo_run.store.history.record("latest", code)
    assert document == commune_prov([record])
    assert ProvDocument.deserialize(content=document.serialize(format="json"), format="json") == document
    from prov.model import ProvAgent

    agents = {str(a.identifier) for a in document.get_records(ProvAgent)}
    assert any("grdf" in a for a in agents) and any(a.endswith("iarbre") for a in agents)


def test_explain_answers_off_the_lattice_and_across_commune_edges(demo_run):
    platform, store = demo_run.platform, demo_run.store
    communes = platform.communes.set_index("code")
    found = 0
    for code in platform.commune_codes:
        tiles = pd.read_parquet(store.tiles(code), columns=["x", "y"])
        others = communes.drop(index=code).geometry
        for cell in tiles.itertuples():
            square = shapely.box(cell.x - 2.5, cell.y - 2.5, cell.x + 2.5, cell.y + 2.5)
            for other in others:
                part = square.intersection(other)
                if part.area > 0.5:  # a point of this cell that lies in another commune
                    point = part.representative_point()
                    e = explain_point(demo_run.home, point.x, point.y)
                    assert e["commune"]["code"] == code and e["cell"]["centre"] == [cell.x, cell.y]
                    found += 1
                    break
            if found >= 3:
                break
    assert found, "no cell straddling two communes in the demo"


def test_explain_errors_are_clear(demo_run, tmp_path):
    x0, y0, x1, y1 = platform_bounds = tuple(demo_run.platform.communes.total_bounds)
    with pytest.raises(ExplainError, match="outside the territory"):
        explain_point(demo_run.home, x0 - 5000, y0 - 5000)
    with pytest.raises(ExplainError, match="unknown run or label 'no-such-run'"):
        explain_point(demo_run.home, (x0 + x1) / 2, (y0 + y1) / 2, run="no-such-run")
    assert platform_bounds
    # a commune never computed: a copy of the home whose history lost one commune
    import shutil

    home = tmp_path / "partial"
    shutil.copytree(demo_run.home, home, symlinks=True)
    code = demo_run.platform.commune_codes[-1]
    for folder in (home / "score" / "history").glob(f"*/{code}"):
        shutil.rmtree(folder)
    cell = pd.read_parquet(demo_run.store.tiles(code), columns=["x", "y"]).iloc[0]
    with pytest.raises(ExplainError, match=f"commune {code} has never been computed"):
        explain_point(home, cell.x, cell.y)
    assert cli.main(["explain", "--home", str(home), str(x0 - 5000), str(y0)]) == 2
