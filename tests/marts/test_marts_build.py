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


# -- provenance, weights, diff and freshness marts --------------------------------------------------------------

def test_run_provenance_records_what_each_run_ran_with(built):
    _, home = built
    got = rows(home, "SELECT * FROM marts.run_provenance ORDER BY run_id, commune, source")
    assert len(got) == 7  # still one row per (run, commune, input source)
    per_run = {}
    for r in got:
        per_run.setdefault((r["run_id"], r["commune"]), []).append(r)
    assert set(per_run) == {(R1, A), (R1, B), (R2, A)}
    oldest_days = {(R1, A): 100, (R1, B): 100, (R2, A): 200}  # ore_gaz v1 was delivered 100 days ago, bati v1 200
    for (run_id, commune), run_rows in per_run.items():
        for r in run_rows:  # the run's columns, repeated on each of its input rows
            assert r["package_version"] == "0.4.0" and r["git_commit"] == GIT_COMMIT
            assert r["blocked_score"] == -5.0
            assert r["class_breaks"] == CLASS_BREAKS
            assert json.loads(r["class_breaks"]) == [[-4.0, 0], [-2.0, 2], [-0.5, 4], [0.5, 6], [2.0, 8]]
            assert r["oldest_input"] == RUN_DETAILS[(run_id, commune)]["oldest_input"]
            assert r["oldest_input_changed_at"] == NOW - timedelta(days=oldest_days[(run_id, commune)])
            assert r["record_sha256"] == sha(f"record {run_id} {commune}")
            assert r["provenance"] == prov_document(run_id, commune)
            prov = json.loads(r["provenance"])
            assert prov["activity"][f"iarbre:run.2F{run_id}.2Fscore.2F{commune}"]["iarbre:run_id"] == run_id
    assert per_run[(R2, A)][0]["oldest_input"] == "batiments_bdtopo"
    assert {r["source"] for r in per_run[(R2, A)]} >= {"batiments_bdtopo"}  # the oldest input is one of its inputs


def test_run_weights_say_which_weights_each_run_used(built):
    _, home = built
    got = rows(home, "SELECT * FROM marts.run_weights ORDER BY run_id, commune, factor")
    assert len(got) == 18  # 6 factors x 3 (run, commune)
    used = {}
    for r in got:
        used.setdefault((r["run_id"], r["commune"]), {})[r["factor"]] = r["weight"]
    # hand values: the bus lines weighed -2 in run one and -1 in run two; the rest did not move
    assert used[(R1, A)] == used[(R1, B)] == {"batiments": -5.0, "strate_basse_pelouse": 3.0, "reseau_gaz": -3.0,
                                               "trace_bus": -2.0, "pistes_cyclables": -1.0,
                                               "parcs_jardins_publics": 2.0}
    assert used[(R2, A)] == {**used[(R1, A)], "trace_bus": -1.0}
    # "which weights did run X use" is one query
    assert rows(home, "SELECT weight FROM marts.run_weights WHERE run_id = ? AND commune = ? AND factor = ?",
                [R1, A, "trace_bus"]) == [{"weight": -2.0}]
    for r in got:
        assert r["blocking"] == (r["factor"] == "batiments")
        assert r["meta"] == FACTOR_META[r["factor"]]
        assert r["materialised_at"] == NOW - timedelta(days=3 if r["run_id"] == R1 else 1)
        assert r["is_latest_run"] == ((r["run_id"], r["commune"]) in {(R2, A), (R1, B)})
        assert r["previous_run_id"] == (R1 if (r["run_id"], r["commune"]) == (R2, A) else None)
    changed = {(r["run_id"], r["commune"], r["factor"]) for r in got if r["weight_changed"]}
    assert changed == {(R2, A, "trace_bus")}
    bus = next(r for r in got if (r["run_id"], r["commune"], r["factor"]) == (R2, A, "trace_bus"))
    assert bus["previous_weight"] == -2.0


def test_score_diff_rows(built):
    _, home = built
    got = rows(home, "SELECT * FROM marts.score_diff ORDER BY commune, from_class NULLS FIRST, to_class")
    assert [(r["commune"], r["from_class"], r["to_class"], r["cells"], r["area_m2"], r["changed"], r["transition"])
            for r in got] == [
        (A, 0, 0, 20, 500.0, False, "unchanged"),
        (A, 2, 2, 25, 625.0, False, "unchanged"),
        (A, 4, 2, 5, 125.0, True, "reclassified"),
        (A, 4, 4, 40, 1000.0, False, "unchanged"),
        (A, 6, 6, 40, 1000.0, False, "unchanged"),
        (A, 8, 6, 10, 250.0, True, "reclassified"),
        (A, 8, 8, 40, 1000.0, False, "unchanged"),
        (A, 8, 10, 5, 125.0, True, "reclassified"),
        (A, 10, 10, 15, 375.0, False, "unchanged"),
        (B, None, 6, 60, 1500.0, True, "newly_scored"),
        (B, None, 8, 40, 1000.0, True, "newly_scored"),
    ]
    assert len(got) == len(DIFF_A) + len(DIFF_B)
    for r in got:
        if r["commune"] == A:
            assert (r["commune_name"], r["from_run"], r["to_run"]) == ("Alpha", R1, R2)
            assert r["from_materialised_at"] == NOW - timedelta(days=3)
            assert r["to_materialised_at"] == NOW - timedelta(days=1)
        else:  # B's first class materialisation
            assert (r["commune_name"], r["from_run"], r["to_run"]) == ("Beta", None, R1)
            assert r["from_materialised_at"] is None and r["to_materialised_at"] == NOW - timedelta(days=3)
    # the "after" side is each commune's published cells
    for commune in (A, B):
        assert sum(r["cells"] for r in got if r["commune"] == commune and r["to_class"] is not None) == \
            EXPECTED["commune"][commune]["cells"]


def test_score_diff_by_class_rows(built):
    _, home = built
    got = rows(home, "SELECT * FROM marts.score_diff_by_class ORDER BY commune, class")
    assert [(r["commune"], r["class"]) for r in got] == [(c, k) for c in (A, B) for k in CLASSES]
    for r in got:
        before, after = EXPECTED_DIFF_BY_CLASS[r["commune"]][r["class"]]
        assert (r["cells_before"], r["cells_after"]) == (before, after), (r["commune"], r["class"])
        assert r["area_before_m2"] == before * 25 and r["area_after_m2"] == after * 25
        assert r["area_change_m2"] == (after - before) * 25
        assert (r["from_run"], r["to_run"]) == ((R1, R2) if r["commune"] == A else (None, R1))
    change = {(r["commune"], r["class"]): r["area_change_m2"] for r in got}
    # hand values: A's class 8 lost 15 cells (375 m2) to classes 6 and 10; every A cell was scored both times,
    # so its gains and losses cancel; B was scored for the first time: +2 500 m2 in all
    assert change[(A, 8)] == -375 and change[(A, 6)] == 250 and change[(A, 2)] == 125 and change[(A, 4)] == -125
    assert sum(v for (c, _), v in change.items() if c == A) == 0
    assert sum(v for (c, _), v in change.items() if c == B) == 2500


def test_source_inventory_freshness_is_the_platforms(built):
    """Staleness, age and dates come from iarbre.source_freshness (one definition, computed in Python)."""
    _, home = built
    got = {r["source"]: r for r in rows(home, "SELECT * FROM marts.source_inventory")}
    table = {r["source"]: r for r in rows(home, "SELECT * FROM iarbre.source_freshness")}
    assert set(table) == set(FRESHNESS)
    for source, r in got.items():
        fresh = FRESHNESS[source]
        assert r["freshness_status"] == fresh["status"] == table[source]["status"]
        assert r["is_stale"] == (table[source]["status"] == "late")
        assert r["age_days"] == fresh["age_days"]
        assert r["content_changed_at"] == fresh["content_changed_at"]
        assert r["last_fetch_at"] == fresh["last_fetch_at"]
        assert r["last_rejected_version"] == fresh["last_rejected_version"]
        assert r["last_rejected_at"] == fresh["last_rejected_at"]
        assert r["last_rejected_reason"] == fresh["last_rejected_reason"]
        assert r["freshness_as_of"] == NOW
    assert {s for s, r in got.items() if r["is_stale"]} == {"batiments_bdtopo"}
    bati = got["batiments_bdtopo"]
    assert bati["freshness_status"] == "late"
    assert bati["last_rejected_version_short"] == VERSIONS["batiments_bdtopo"]["v2"][:12]
    assert bati["last_rejected_reason"] == "refused by its checks: 2 failed"
    # a re-delivery of the same bytes is a fetch, not a content change
    assert got["communes"]["last_fetch_at"] == NOW - timedelta(days=1)
    assert got["communes"]["content_changed_at"] == NOW - timedelta(days=10)
    # a source that never delivered a readable version has a freshness ('never') but no inventory row
    assert "reseau_chaleur" not in got
    never = rows(home, "SELECT * FROM staging.stg_source_freshness WHERE source = 'reseau_chaleur'")
    assert [(r["status"], r["current_version"], r["age_days"], r["last_rejected_reason"]) for r in never] == [
        ("never", None, None, "fetch failed: HTTP 503")]


def test_marts_never_read_the_clock():
    """Freshness is computed once, in Python: no dbt model computes ages or staleness against now()."""
    clock = re.compile(r"\b(now|current_timestamp|current_date|today|get_current_time|localtimestamp)\b", re.I)
    for path in sorted((DBT_PROJECT_DIR / "models").rglob("*.sql")):
        code = re.sub(r"--[^\n]*|\{#.*?#\}", "", path.read_text(), flags=re.S)
        assert not clock.search(code), f"{path.name} reads the clock"


def _copy_home(built_home, tmp_path):
    """A private home holding a copy of the built warehouse (tables and marts), to break without side effects."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        if (built_home / name).exists():
            shutil.copy2(built_home / name, home / name)
    return home


def _execute(home, sql, params=None):
    con = connect(home / "warehouse.duckdb", spatial=False)
    try:
        con.execute(sql, params or [])
    finally:
        con.close()


STAGING_DIFF, DIFF_MART, DIFF_BY_CLASS = (dg.AssetKey(["staging", "stg_score_diff"]), dg.AssetKey(["marts", "score_diff"]),
                                          dg.AssetKey(["marts", "score_diff_by_class"]))


def test_source_inventory_follows_the_freshness_table_not_the_clock(built, tmp_path):
    """An audit as of a later date (freshness computed with an injected clock): the mart reports that, although
    by today's clock the gas network's version is 5 days old."""
    _, built_home = built
    home = _copy_home(built_home, tmp_path)
    later = NOW + timedelta(days=300)
    _execute(home, "UPDATE iarbre.source_freshness SET as_of = ?, age_days = age_days + 300, "
                   "status = CASE WHEN status = 'never' THEN 'never' "
                   "WHEN age_days + 300 > cadence_days THEN 'late' ELSE 'ok' END", [later])
    result = build_marts(home, selection=[dg.AssetKey(["staging", "stg_source_freshness"]),
                                          dg.AssetKey(["marts", "source_inventory"])])
    assert result.success
    got = {r["source"]: r for r in rows(home, "SELECT * FROM marts.source_inventory")}
    assert {s: (r["age_days"], r["freshness_status"], r["is_stale"]) for s, r in got.items()} == {
        "communes": (310, "ok", False), "ore_gaz": (305, "late", True), "batiments_bdtopo": (500, "late", True)}
    assert all(r["freshness_as_of"] == later for r in got.values())


def test_diff_not_adding_up_to_the_commune_cells_blocks_the_diff_marts(built, tmp_path):
    """One cell too many in A's diff: the blocking check on stg_score_diff fails, score_diff and
    score_diff_by_class are not rebuilt and keep the last good numbers; built anyway, the mart's own check
    fails too."""
    _, built_home = built
    home = _copy_home(built_home, tmp_path)
    _execute(home, "UPDATE iarbre.score_diff SET cells = cells + 1 WHERE commune = ? AND from_class = 6 "
                   "AND to_class = 6", [A])
    result = build_marts(home, selection=[STAGING_DIFF, DIFF_MART, DIFF_BY_CLASS])
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    bad = evaluations["stg_score_diff_cells_add_up_to_commune_cells"]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.asset_key == STAGING_DIFF
    spec = next(s for s in dbt_assets().check_specs if s.name == "stg_score_diff_cells_add_up_to_commune_cells")
    assert spec.blocking
    materialised = {e.asset_key for e in result.get_asset_materialization_events()}
    assert DIFF_MART not in materialised and DIFF_BY_CLASS not in materialised
    kept = rows(home, "SELECT cells FROM marts.score_diff WHERE commune = ? AND from_class = 6 AND to_class = 6", [A])
    assert kept == [{"cells": 40}]
    assert rows(home, "SELECT area_after_m2 FROM marts.score_diff_by_class WHERE commune = ? AND class = 6",
                [A]) == [{"area_after_m2": 1250.0}]

    # the mart's own check is not vacuous: built on its own from the broken view, it fails
    result = build_marts(home, selection=[DIFF_MART])
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    mart_check = evaluations["score_diff_cells_add_up_to_commune_cells"]
    assert not mart_check.passed and mart_check.severity == dg.AssetCheckSeverity.ERROR
    assert mart_check.asset_key == DIFF_MART


def test_diff_before_side_not_matching_the_previous_run_fails_the_class_balance(built, tmp_path):
    """3 cells of A said to have become unscored: A's 'after' side still adds up to its 200 cells, but its
    'before' side now holds 203 cells where run one scored 200: score_diff_by_class's balance check fails
    (the net-change check still holds: -3 cells no longer scored = -75 m2)."""
    _, built_home = built
    home = _copy_home(built_home, tmp_path)
    _execute(home, "INSERT INTO iarbre.score_diff VALUES (?, ?, ?, 4, NULL, 3)", [A, R1, R2])
    result = build_marts(home, selection=[STAGING_DIFF, DIFF_MART, DIFF_BY_CLASS])
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = {name for name, e in evaluations.items() if not e.passed}
    assert failed == {"score_diff_by_class_areas_add_up_to_the_runs_cells"}
    bad = evaluations["score_diff_by_class_areas_add_up_to_the_runs_cells"]
    assert bad.severity == dg.AssetCheckSeverity.ERROR and bad.asset_key == DIFF_BY_CLASS
    assert evaluations["score_diff_by_class_net_change_is_rescored_cells"].passed
    assert evaluations["stg_score_diff_cells_add_up_to_commune_cells"].passed
    net = rows(home, "SELECT sum(area_change_m2) AS net FROM marts.score_diff_by_class WHERE commune = ?", [A])
    assert net == [{"net": -75.0}]
