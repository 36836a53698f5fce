"""dbt build through Dagster on the small hand-made warehouse: tests as checks, mart numbers, the report,
and a broken input stopped by a blocking check."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta

import dagster as dg
import pytest

from iarbre_assets.warehouse.duck import connect
from iarbre_assets.warehouse.dbt import DBT_PROJECT_DIR

from .conftest import (A, B, CLASS_BREAKS, CONTRACT, DIFF_A, DIFF_B, EXPECTED, EXPECTED_DIFF_BY_CLASS, FACTOR_META,
                       FRESHNESS, GIT_COMMIT, NOW, R1, R2, RUN_DETAILS, VERSIONS, build_marts, dbt_assets,
                       prov_document, sha)

CLASSES = [0, 2, 4, 6, 8, 10]
# Severity-warn tests the data is built to trip (stale source, rejected newer version); nothing else may fail.
EXPECTED_WARNINGS = {"source_inventory_sources_are_fresh", "source_inventory_latest_version_in_use"}


def rows(home, sql, params=None):
    con = connect(home / "warehouse.duckdb", read_only=True, spatial=False)
    try:
        cur = con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def test_build_succeeds_and_every_error_check_passes(built):
    result, _ = built
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 60
    failed = {e.check_name: e for e in evaluations if not e.passed}
    assert set(failed) == EXPECTED_WARNINGS
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in failed.values())
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {dg.AssetKey(["marts", m]) for m in
            ("commune_plantability", "iris_plantability", "factor_contribution", "source_inventory",
             "run_provenance", "run_weights", "score_diff", "score_diff_by_class")} <= materialised


def test_commune_plantability_numbers(built):
    _, home = built
    got = {r["commune"]: r for r in rows(home, "SELECT * FROM marts.commune_plantability")}
    assert set(got) == {A, B}
    for code, exp in EXPECTED["commune"].items():
        r = got[code]
        assert r["commune_name"] == exp["name"]
        assert r["cell_count"] == exp["cells"]
        assert r["area_m2"] == exp["cells"] * 25
        assert r["mean_score"] == pytest.approx(exp["mean"], abs=1e-9)
        assert r["cells_blocked"] == exp["blocked"]
        for c in CLASSES:
            assert r[f"cells_class_{c}"] == exp["by_class"][c], (code, c)
            assert r[f"area_m2_class_{c}"] == exp["by_class"][c] * 25
            assert r[f"share_class_{c}"] == pytest.approx(exp["by_class"][c] / exp["cells"], abs=1e-12)
    # hand values, spelled out once: A has 40 class-4 cells = 1000 m2 = 20 %; B has no class 0 (0, not null)
    assert got[A]["area_m2_class_4"] == 1000 and got[A]["share_class_4"] == pytest.approx(0.2)
    assert got[B]["cells_class_0"] == 0 and got[B]["share_class_0"] == 0


def test_iris_plantability_numbers(built):
    _, home = built
    got = {r["iris"]: r for r in rows(home, "SELECT * FROM marts.iris_plantability")}
    assert set(got) == set(EXPECTED["iris"])
    for code, exp in EXPECTED["iris"].items():
        r = got[code]
        assert r["commune"] == exp["commune"] and r["synthetic"] is True
        assert r["cell_count"] == exp["cells"] and r["area_m2"] == exp["cells"] * 25
        assert r["mean_score"] == pytest.approx(exp["mean"], abs=1e-9)
        for c in CLASSES:
            assert r[f"area_m2_class_{c}"] == exp["by_class"][c] * 25
            assert r[f"share_class_{c}"] == pytest.approx(exp["by_class"][c] / exp["cells"], abs=1e-12)


def test_factor_contribution_ranks_and_shares(built):
    _, home = built
    got = rows(home, "SELECT commune, factor, contribution_rank, contribution_share, covered_area_m2, effect "
                     "FROM marts.factor_contribution ORDER BY commune, contribution_rank")
    for commune, expected in EXPECTED["factors"].items():
        mine = [r for r in got if r["commune"] == commune]
        assert [(r["factor"], r["contribution_rank"]) for r in mine] == [(f, k) for f, k, _ in expected]
        assert [r["contribution_share"] for r in mine] == pytest.approx([s for _, _, s in expected])
    effects = {(r["commune"], r["factor"]): r["effect"] for r in got}
    assert effects[(A, "batiments")] == "blocking"
    assert effects[(A, "strate_basse_pelouse")] == "favourable"
    assert effects[(A, "reseau_gaz")] == "constraint"


def test_staging_uses_spatial_inside_dbt(built):
    """stg_communes computes ST_Area in the dbt process: the offline spatial plugin loaded there."""
    _, home = built
    con = connect(home / "warehouse.duckdb", read_only=True)  # the view needs spatial to be read, too
    try:
        got = con.execute("SELECT commune, geom_area_m2 FROM staging.stg_communes ORDER BY 1").fetchall()
    finally:
        con.close()
    assert got == [(A, 5000.0), (B, 2500.0)]


def test_source_inventory(built):
    _, home = built
    got = {r["source"]: r for r in rows(home, "SELECT * FROM marts.source_inventory")}
    assert set(got) == {"communes", "ore_gaz", "batiments_bdtopo"}
    assert got["ore_gaz"]["version"] == VERSIONS["ore_gaz"]["v2"]
    assert got["ore_gaz"]["version_short"] == VERSIONS["ore_gaz"]["v2"][:12]
    assert got["ore_gaz"]["versions_seen"] == 2 and got["communes"]["versions_seen"] == 1
    assert got["ore_gaz"]["age_days"] == 5 and not got["ore_gaz"]["is_stale"]
    bati = got["batiments_bdtopo"]
    assert bati["version"] == VERSIONS["batiments_bdtopo"]["v1"]  # the rejected v2 is not in use
    assert bati["age_days"] == 200 and bati["is_stale"]
    assert bati["newer_version_not_in_use"] and bati["latest_check_status"] == "failed"
    assert all(r["has_current_version"] for r in got.values())


def test_run_provenance(built):
    _, home = built
    got = rows(home, "SELECT run_id, commune, source, version, is_latest_run, version_in_inventory "
                     "FROM marts.run_provenance ORDER BY run_id, commune, source")
    assert len(got) == 7
    assert {(r["run_id"], r["commune"]) for r in got if r["is_latest_run"]} == {(R2, A), (R1, B)}
    latest_a = {r["source"]: r["version"] for r in got if r["run_id"] == R2}
    assert latest_a == {"communes": VERSIONS["communes"]["v1"], "ore_gaz": VERSIONS["ore_gaz"]["v2"],
                        "batiments_bdtopo": VERSIONS["batiments_bdtopo"]["v1"]}
    assert all(r["version_in_inventory"] for r in got)


def test_commune_report(built):
    from iarbre_assets.provenance.report import commune_report, format_commune_report

    _, home = built
    report = commune_report(A, warehouse=home / "warehouse.duckdb")
    assert report["name"] == "Alpha" and report["cell_count"] == 200 and report["area_m2"] == 5000
    assert report["mean_score"] == pytest.approx(-0.65)
    by_class = {c["class"]: c for c in report["classes"]}
    assert by_class[0]["label"] == "Plantation impossible" and by_class[0]["colour"] == "#C4C4C4"
    assert (by_class[6]["cells"], by_class[6]["area_m2"], by_class[6]["share"]) == (50, 1250, pytest.approx(0.25))
    # zero-contribution factors are not "drivers"
    assert [f["factor"] for f in report["top_factors"]] == ["batiments", "strate_basse_pelouse", "reseau_gaz",
                                                            "trace_bus"]
    assert report["latest_run"]["run_id"] == R2
    assert [i["source"] for i in report["inputs"]] == ["batiments_bdtopo", "communes", "ore_gaz"]

    text = format_commune_report(report)
    assert "Commune 69901 - Alpha" in text
    assert "Plantation très favorisée" in text
    assert "1 250" in text and "25.0 %" in text  # class 6 row
    assert R2 in text and VERSIONS["ore_gaz"]["v2"][:12] in text
    assert "mean score: -0.65" in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_report_unknown_commune_lists_valid_codes(built):
    from iarbre_assets.provenance.report import UnknownCommuneError, commune_report

    _, home = built
    with pytest.raises(UnknownCommuneError, match=r"'12345' is not in the warehouse.*69901 \(Alpha\), 69902 \(Beta\)"):
        commune_report("12345", warehouse=home / "warehouse.duckdb")


def test_report_before_marts_exist(tmp_path):
    from iarbre_assets.provenance.report import MartsNotBuiltError, commune_report
    from iarbre_assets.warehouse.schema import ensure_schema

    with pytest.raises(MartsNotBuiltError, match="run `iarbre run` first"):
        commune_report(A, warehouse=tmp_path / "absent.duckdb")
    con = connect(tmp_path / "w.duckdb")
    ensure_schema(con, CONTRACT)  # contract tables but no marts
    con.close()
    with pytest.raises(MartsNotBuiltError, match=r"marts\.commune_plantability.*run `iarbre run` first"):
        commune_report(A, warehouse=tmp_path / "w.duckdb")


def test_bad_class_blocks_the_mart(built):
    """A tile with class 5 fails the blocking accepted_values check on stg_tiles; commune_plantability
    is not rebuilt, so the published numbers stay the last good ones."""
    _, home = built
    con = connect(home / "warehouse.duckdb")
    con.execute("INSERT INTO iarbre.tiles SELECT * REPLACE (999999 AS cell_id, 5 AS class) "
                "FROM iarbre.tiles WHERE commune = ? LIMIT 1", [A])
    con.close()
    try:
        result = build_marts(
            home, selection=[dg.AssetKey(["staging", "stg_tiles"]), dg.AssetKey(["marts", "commune_plantability"])])
        assert not result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        bad = evaluations["stg_tiles_class_is_a_published_class"]
        assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
        assert bad.asset_key == dg.AssetKey(["staging", "stg_tiles"])
        spec = next(s for s in dbt_assets().check_specs if s.name == "stg_tiles_class_is_a_published_class")
        assert spec.blocking
        materialised = {e.asset_key for e in result.get_asset_materialization_events()}
        assert dg.AssetKey(["marts", "commune_plantability"]) not in materialised
        kept = rows(home, "SELECT cell_count, mean_score FROM marts.commune_plantability WHERE commune = ?", [A])
        assert kept == [{"cell_count": 200, "mean_score": pytest.approx(-0.65)}]
    finally:
        con = connect(home / "warehouse.duckdb")
        con.execute("DELETE FROM iarbre.tiles WHERE cell_id = 999999")
        con.close()
