"""A small hand-made warehouse (2 communes, 300 cells, 2 IRIS, 3 sources, 2 score runs) and its expected
marts, computed by hand below rather than by the code under test."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from iarbre_assets.warehouse import schema

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
        for name in schema.meta_columns():
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
        return {"run_id": run_id, "commune": commune, "materialised_at": NOW - timedelta(days=days_ago),
                "code_version": "code-1", "catalogue_version": "2026.1", "catalogue_sha256": sha("catalogue"),
                "territory": "test", "cells": cells}

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


def fill_small_warehouse(con) -> None:
    """Write the hand-made rows through the contract helpers, as the Python assets will."""
    schema.ensure_schema(con)
    tiles = _tiles()
    for commune in (A, B):
        schema.replace_partitions(con, "tiles", tiles[tiles.commune == commune], "commune", [commune])
    schema.replace_table(con, "communes", _communes())
    schema.replace_table(con, "iris", _iris())
    schema.replace_table(con, "source_versions", _source_versions())
    stats = _factor_stats()
    schema.replace_partitions(con, "factor_stats", stats, "commune", [A, B])
    schema.upsert_rows(con, "score_runs", _score_runs())
    schema.upsert_rows(con, "score_run_inputs", _score_run_inputs())


@pytest.fixture(scope="module")
def warehouse_home(tmp_path_factory):
    """An IARBRE_HOME for the module with the small warehouse written (no marts yet)."""
    from iarbre_assets.warehouse.duck import connect

    home = tmp_path_factory.mktemp("iarbre_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IARBRE_HOME", str(home))
        con = connect()
        try:
            fill_small_warehouse(con)
        finally:
            con.close()
        yield home


@pytest.fixture(scope="module")
def built(warehouse_home):
    """`dbt build` of every model through Dagster on the small warehouse; yields (result, home)."""
    import dagster as dg

    from iarbre_assets.assets.marts import dbt_resource, iarbre_dbt_assets

    result = dg.materialize(
        [iarbre_dbt_assets],
        resources={"dbt": dbt_resource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    return result, warehouse_home
