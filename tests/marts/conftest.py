"""A small hand-made warehouse (2 communes, 300 cells, 2 IRIS, 3 sources + 1 never delivered, 2 score runs,
their weights, a class diff, the sources' freshness) and its expected marts, computed by hand below rather
than by the code under test."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from iarbre_assets.catalog import load_catalog
from iarbre_assets.warehouse import schema

CATALOGUE = load_catalog()
CONTRACT = schema.contract(CATALOGUE)

NOW = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)  # contract timestamps are UTC
A, B = "69901", "69902"
R1, R2 = "11111111-run-one", "22222222-run-two"
X0, Y0 = 842_000.0, 6_519_000.0
CELL = 5.0
SCORE_OF_CLASS = {0: -5.0, 2: -3.0, 4: -1.0, 6: 0.0, 8: 1.0, 10: 3.0}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


VERSIONS = {
    "communes": {"v1": sha("communes v1")},
    "ore_gaz": {"v1": sha("gaz v1"), "v2": sha("gaz v2")},
    "batiments_bdtopo": {"v1": sha("bati v1"), "v2": sha("bati v2")},
}

# Commune A: 100 m x 50 m = 20 columns x 10 rows = 200 cells; IRIS A1 = columns 0-11 (120 cells),
# IRIS A2 = columns 12-19 (80 cells). Commune B: 50 m x 50 m = 100 cells, no IRIS.
A1_CLASSES = [0] * 20 + [2] * 30 + [4] * 40 + [6] * 30  # 120
A2_CLASSES = [6] * 20 + [8] * 40 + [10] * 20  # 80
B_CLASSES = [6] * 60 + [8] * 40  # 100

EXPECTED = {
    "commune": {
        A: {"name": "Alpha", "cells": 200, "mean": -130 / 200,
            "by_class": {0: 20, 2: 30, 4: 40, 6: 50, 8: 40, 10: 20}, "blocked": 20},
        B: {"name": "Beta", "cells": 100, "mean": 40 / 100,
            "by_class": {0: 0, 2: 0, 4: 0, 6: 60, 8: 40, 10: 0}, "blocked": 0},
    },
    "iris": {
        f"{A}0001": {"commune": A, "cells": 120, "mean": -230 / 120,
                     "by_class": {0: 20, 2: 30, 4: 40, 6: 30, 8: 0, 10: 0}},
        f"{A}0002": {"commune": A, "cells": 80, "mean": 100 / 80,
                     "by_class": {0: 0, 2: 0, 4: 0, 6: 20, 8: 40, 10: 20}},
    },
    # (factor, rank, share) by commune; B's two factors tie on |40| and rank by slug
    "factors": {
        A: [("batiments", 1, 0.5), ("strate_basse_pelouse", 2, 0.3), ("reseau_gaz", 3, 0.15),
            ("trace_bus", 4, 0.05), ("pistes_cyclables", 5, 0.0)],
        B: [("parcs_jardins_publics", 1, 0.5), ("reseau_gaz", 2, 0.5)],
    },
}


# The weights each score run used (iarbre.score_run_weights): R1 weighed the bus lines -2, R2 -1 (the catalogue
# changed between the runs); everything else equal. batiments is the blocking factor (weight = blocked score).
FACTOR_META = {"batiments": "batiments", "strate_basse_pelouse": "espaces_verts",
               "reseau_gaz": "reseaux_infrastructures", "trace_bus": "infrastructure_transport",
               "pistes_cyclables": "infrastructure_transport", "parcs_jardins_publics": "espaces_verts"}
_BASE_WEIGHTS = {"batiments": -5.0, "strate_basse_pelouse": 3.0, "reseau_gaz": -3.0, "trace_bus": None,
                 "pistes_cyclables": -1.0, "parcs_jardins_publics": 2.0}
WEIGHTS = {R1: {**_BASE_WEIGHTS, "trace_bus": -2.0}, R2: {**_BASE_WEIGHTS, "trace_bus": -1.0}}

# iarbre.score_diff. A: R1 -> R2, every cell scored both times; (from_class, to_class) -> cells, the "to" side
# adding up to A's tiles (EXPECTED["commune"][A]["by_class"]), the "from" side to R1's 200 cells.
DIFF_A = {(0, 0): 20, (2, 2): 25, (4, 2): 5, (4, 4): 40, (6, 6): 40, (8, 6): 10, (8, 8): 40, (10, 10): 15,
          (8, 10): 5}
# B: its first class materialisation (from_run NULL), every cell newly scored.
DIFF_B = {6: 60, 8: 40}
EXPECTED_DIFF_BY_CLASS = {  # commune -> class -> (cells before, cells after), worked out from DIFF_A / DIFF_B
    A: {0: (20, 20), 2: (25, 30), 4: (45, 40), 6: (40, 50), 8: (55, 40), 10: (15, 20)},
    B: {0: (0, 0), 2: (0, 0), 4: (0, 0), 6: (0, 60), 8: (0, 40), 10: (0, 0)},
}

# iarbre.source_freshness as the platform computed it (provenance/freshness.py), as of NOW. batiments_bdtopo is
# late (content 200 days old, cadence 90) and its newer delivery was rejected; reseau_chaleur never delivered
# anything readable (its fetch failed), so it has freshness but no version, hence no source_inventory row.
FRESHNESS = {
    "communes": {"partner": "metropole_lyon", "current_version": VERSIONS["communes"]["v1"],
                 "content_changed_at": NOW - timedelta(days=10), "last_fetch_at": NOW - timedelta(days=1),
                 "cadence": "P1Y", "cadence_days": 365, "age_days": 10, "status": "ok",
                 "last_rejected_version": None, "last_rejected_at": None, "last_rejected_reason": None},
    "ore_gaz": {"partner": "grdf", "current_version": VERSIONS["ore_gaz"]["v2"],
                "content_changed_at": NOW - timedelta(days=5), "last_fetch_at": NOW - timedelta(days=5),
                "cadence": "P3M", "cadence_days": 90, "age_days": 5, "status": "ok",
                "last_rejected_version": None, "last_rejected_at": None, "last_rejected_reason": None},
    "batiments_bdtopo": {"partner": "ign", "current_version": VERSIONS["batiments_bdtopo"]["v1"],
                         "content_changed_at": NOW - timedelta(days=200), "last_fetch_at": NOW - timedelta(days=1),
                         "cadence": "P3M", "cadence_days": 90, "age_days": 200, "status": "late",
                         "last_rejected_version": VERSIONS["batiments_bdtopo"]["v2"],
                         "last_rejected_at": NOW - timedelta(days=1),
                         "last_rejected_reason": "refused by its checks: 2 failed"},
    "reseau_chaleur": {"partner": "elm", "current_version": None, "content_changed_at": None,
                       "last_fetch_at": NOW - timedelta(days=2), "cadence": "P1M", "cadence_days": 30,
                       "age_days": None, "status": "never", "last_rejected_version": None,
                       "last_rejected_at": NOW - timedelta(days=2), "last_rejected_reason": "fetch failed: HTTP 503"},
}

# What each (run, commune) ran with (iarbre.score_runs' provenance columns).
RUN_DETAILS = {
    (R1, A): {"mean_score": -0.7, "oldest_input": "ore_gaz", "oldest_days": 100},
    (R1, B): {"mean_score": 0.4, "oldest_input": "ore_gaz", "oldest_days": 100},
    (R2, A): {"mean_score": -0.65, "oldest_input": "batiments_bdtopo", "oldest_days": 200},
}
CLASS_BREAKS = "[[-4.0, 0], [-2.0, 2], [-0.5, 4], [0.5, 6], [2.0, 8]]"
GIT_COMMIT = sha("commit")[:40]


def prov_document(run_id: str, commune: str) -> str:
    """A (small) W3C PROV-JSON document of one (run, commune), written by hand."""
    run = f"iarbre:run.2F{run_id}.2Fscore.2F{commune}"
    score = f"iarbre:score.2F{commune}.2F{run_id}"
    return json.dumps({
        "prefix": {"iarbre": "https://iarbre.example/ns#"},
        "activity": {run: {"iarbre:run_id": run_id, "iarbre:commune": commune,
                           "prov:type": {"$": "iarbre:ScoreRun", "type": "xsd:QName"}}},
        "entity": {score: {"iarbre:run_id": run_id, "iarbre:commune": commune,
                           "prov:type": {"$": "iarbre:PlantabilityScore", "type": "xsd:QName"}}},
        "wasGeneratedBy": {"_:g1": {"prov:entity": score, "prov:activity": run}},
    }, sort_keys=True)


def _tiles() -> pd.DataFrame:
    rows = []
    cell_id = 0

    def add(commune, iris, col, row, klass, run_id, x0):
        nonlocal cell_id
        cell_id += 1
        blocked = klass == 0
        rec = {
            "cell_id": cell_id, "commune": commune, "iris": iris,
            "x": x0 + (col + 0.5) * CELL, "y": Y0 + (row + 0.5) * CELL,
            "score": SCORE_OF_CLASS[klass], "class": klass, "blocked": blocked,
            "blocking_factor": "batiments" if blocked else None,
            "top1": "batiments" if blocked else "reseaux_infrastructures",
            "top1_pct": 100 if blocked else 40,
            "run_id": run_id,
        }
        for name in schema.meta_columns(CATALOGUE):
            rec[name] = 0
        rec["meta_batiments"] = 100 if blocked else 0
        rec["meta_reseaux_infrastructures"] = 0 if blocked else 40
        rows.append(rec)

    # column-major so the first 120 cells of A are its 12 western columns (IRIS A1)
    a_classes = A1_CLASSES + A2_CLASSES
    for i, klass in enumerate(a_classes):
        col, row = divmod(i, 10)
        add(A, f"{A}0001" if col < 12 else f"{A}0002", col, row, klass, R2, X0)
    for i, klass in enumerate(B_CLASSES):
        col, row = divmod(i, 10)
        add(B, None, col, row, klass, R1, X0 + 100)
    return pd.DataFrame(rows)


def _communes() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": [A, B], "name": ["Alpha", "Beta"], "area_m2": [5000.0, 2500.0], "cell_count": [200, 100],
            "source_version": [VERSIONS["communes"]["v1"]] * 2,
        },
        geometry=[box(X0, Y0, X0 + 100, Y0 + 50), box(X0 + 100, Y0, X0 + 150, Y0 + 50)],
        crs="EPSG:2154",
    )


def _iris() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": [f"{A}0001", f"{A}0002"], "name": ["Alpha Ouest", "Alpha Est"], "commune": [A, A],
            "area_m2": [3000.0, 2000.0], "cell_count": [120, 80], "synthetic": [True, True],
        },
        geometry=[box(X0, Y0, X0 + 60, Y0 + 50), box(X0 + 60, Y0, X0 + 100, Y0 + 50)],
        crs="EPSG:2154",
    )


def _source_versions() -> pd.DataFrame:
    def row(source, key, partner, partner_name, days_ago, accepted, current, status, cadence, cadence_days):
        fetched = NOW - timedelta(days=days_ago)
        return {
            "source": source, "label": source.replace("_", " ").title(), "partner": partner,
            "partner_name": partner_name, "family": "test", "connector": "file",
            "origin": f"https://example.test/{source}/{key}", "version": VERSIONS[source][key],
            "normalised_sha256": sha(f"{source} {key} normalised") if accepted else None,
            "fetched_at": fetched, "accepted_at": fetched + timedelta(minutes=5) if accepted else None,
            "size_bytes": 1000, "licence": "Licence Ouverte 2.0", "rows_raw": 10, "rows_normalised": 10,
            "rows_dropped": 0, "rows_repaired": 1, "check_status": status,
            "checks_failed": 0 if status != "failed" else 2, "is_current": current,
            "cadence": cadence, "cadence_days": cadence_days,
        }

    return pd.DataFrame([
        row("communes", "v1", "metropole_lyon", "Métropole de Lyon", 10, True, True, "passed", "P1Y", 365),
        row("ore_gaz", "v1", "grdf", "GRDF", 100, True, False, "passed", "P3M", 90),
        row("ore_gaz", "v2", "grdf", "GRDF", 5, True, True, "warning", "P3M", 90),
        # stale (200 days > 90) and its newer version was rejected: the two expected warnings
        row("batiments_bdtopo", "v1", "ign", "IGN", 200, True, True, "passed", "P3M", 90),
        row("batiments_bdtopo", "v2", "ign", "IGN", 1, False, False, "failed", "P3M", 90),
    ])


def _factor_stats() -> pd.DataFrame:
    def f(commune, factor, label, weight, blocking, meta, cells, contribution, run_id):
        return {"commune": commune, "factor": factor, "label": label, "weight": weight, "blocking": blocking,
                "meta": meta, "covered_cells": cells, "covered_area_m2": cells * 25.0,
                "weighted_contribution": contribution, "run_id": run_id}

    return pd.DataFrame([
        f(A, "batiments", "Bâtiments", -5.0, True, "batiments", 20, -100.0, R2),
        f(A, "strate_basse_pelouse", "Strate basse", 3.0, False, "espaces_verts", 20, 60.0, R2),
        f(A, "reseau_gaz", "Réseau de gaz", -3.0, False, "reseaux_infrastructures", 10, -30.0, R2),
        f(A, "trace_bus", "Tracé bus", -1.0, False, "infrastructure_transport", 10, -10.0, R2),
        f(A, "pistes_cyclables", "Pistes cyclables", -1.0, False, "infrastructure_transport", 0, 0.0, R2),
        f(B, "reseau_gaz", "Réseau de gaz", -3.0, False, "reseaux_infrastructures", 16, -40.0, R1),
        f(B, "parcs_jardins_publics", "Parcs", 2.0, False, "espaces_verts", 20, 40.0, R1),
    ])


def _score_runs() -> pd.DataFrame:
    def r(run_id, commune, days_ago, cells):
        details = RUN_DETAILS[(run_id, commune)]
        return {"run_id": run_id, "commune": commune, "materialised_at": NOW - timedelta(days=days_ago),
                "code_version": "code-1", "catalogue_version": "2026.1", "catalogue_sha256": sha("catalogue"),
                "territory": "test", "cells": cells, "package_version": "0.4.0", "git_commit": GIT_COMMIT,
                "blocked_score": -5.0, "class_breaks": CLASS_BREAKS,
                "grid": json.dumps({"crs": "EPSG:2154", "cell_size_m": 5, "subpixel_m": 1}),
                "mean_score": details["mean_score"], "oldest_input": details["oldest_input"],
                "oldest_input_changed_at": NOW - timedelta(days=details["oldest_days"]),
                "record_sha256": sha(f"record {run_id} {commune}"), "provenance": prov_document(run_id, commune)}

    return pd.DataFrame([r(R1, A, 3, 200), r(R1, B, 3, 100), r(R2, A, 1, 200)])


def _score_run_inputs() -> pd.DataFrame:
    def i(run_id, commune, source, key, partner):
        return {"run_id": run_id, "commune": commune, "source": source, "version": VERSIONS[source][key],
                "normalised_sha256": sha(f"{source} {key} normalised"), "partner": partner,
                "origin": f"https://example.test/{source}/{key}"}

    return pd.DataFrame([
        i(R1, A, "communes", "v1", "metropole_lyon"), i(R1, A, "ore_gaz", "v1", "grdf"),
        i(R1, B, "communes", "v1", "metropole_lyon"), i(R1, B, "ore_gaz", "v1", "grdf"),
        i(R2, A, "communes", "v1", "metropole_lyon"), i(R2, A, "ore_gaz", "v2", "grdf"),
        i(R2, A, "batiments_bdtopo", "v1", "ign"),
    ])


def _score_run_weights() -> pd.DataFrame:
    def w(run_id, commune, factor):
        weight = WEIGHTS[run_id][factor]
        return {"run_id": run_id, "commune": commune, "factor": factor, "weight": weight,
                "blocking": factor == "batiments", "meta": FACTOR_META[factor]}

    return pd.DataFrame([w(run_id, commune, factor) for run_id, commune in ((R1, A), (R1, B), (R2, A))
                         for factor in FACTOR_META])


def _score_diff() -> pd.DataFrame:
    return pd.DataFrame(
        [{"commune": A, "from_run": R1, "to_run": R2, "from_class": f, "to_class": t, "cells": n}
         for (f, t), n in DIFF_A.items()]
        + [{"commune": B, "from_run": None, "to_run": R1, "from_class": None, "to_class": t, "cells": n}
           for t, n in DIFF_B.items()],
        columns=["commune", "from_run", "to_run", "from_class", "to_class", "cells"],
    ).astype({"from_class": "Int64", "to_class": "Int64"})


def _source_freshness() -> pd.DataFrame:
    frame = pd.DataFrame([{"source": source, "as_of": NOW, **row} for source, row in FRESHNESS.items()])
    for column in ("content_changed_at", "last_fetch_at", "last_rejected_at", "as_of"):
        frame[column] = pd.to_datetime(frame[column])
    return frame.astype({"age_days": "Int64"})


def fill_small_warehouse(con) -> None:
    """Write the hand-made rows through the contract helpers, as the Python assets will."""
    schema.ensure_schema(con, CONTRACT)
    t = CONTRACT.table
    tiles = _tiles()
    for commune in (A, B):
        schema.replace_partitions(con, t("tiles"), tiles[tiles.commune == commune], "commune", [commune])
    schema.replace_table(con, t("communes"), _communes())
    schema.replace_table(con, t("iris"), _iris())
    schema.replace_table(con, t("source_versions"), _source_versions())
    schema.replace_table(con, t("source_freshness"), _source_freshness())
    stats = _factor_stats()
    schema.replace_partitions(con, t("factor_stats"), stats, "commune", [A, B])
    schema.upsert_rows(con, t("score_runs"), _score_runs())
    schema.upsert_rows(con, t("score_run_inputs"), _score_run_inputs())
    schema.upsert_rows(con, t("score_run_weights"), _score_run_weights())
    schema.replace_partitions(con, t("score_diff"), _score_diff(), "commune", [A, B])


def dbt_assets():
    """The dbt assets definition (the manifest prepared first, as `iarbre dbt-prepare` does)."""
    from iarbre_assets.assets.marts import build_dbt_assets
    from iarbre_assets.warehouse.dbt import prepare_manifest

    prepare_manifest()
    return build_dbt_assets()


def dbt_resources(home) -> dict:
    """The resources the dbt assets run with on `home` (its warehouse reaches dbt as the warehouse_path var)."""
    from iarbre_assets.resources import TerritoryResource, build_resources

    return build_resources(TerritoryResource(home=str(home), territory="demo"))


def build_marts(home, selection=None):
    """`dbt build` through Dagster on `home`'s warehouse (every model, or `selection`): the run's result."""
    import dagster as dg

    return dg.materialize(
        [dbt_assets()],
        selection=selection,
        resources=dbt_resources(home),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def write_small_warehouse(home) -> None:
    from iarbre_assets.warehouse.duck import connect

    con = connect(home / "warehouse.duckdb")
    try:
        fill_small_warehouse(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory):
    """A home for the module with the small warehouse written (no marts yet)."""
    home = tmp_path_factory.mktemp("iarbre_home")
    write_small_warehouse(home)
    return home


@pytest.fixture(scope="module")
def built(warehouse_home):
    """`dbt build` of every model through Dagster on the small warehouse; yields (result, home)."""
    return build_marts(warehouse_home), warehouse_home
