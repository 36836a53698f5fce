"""Are two homes' outputs the same? (old code against new code, on the same territory)

    .venv/bin/python benchmarks/compare_outputs.py HOME_A HOME_B

Prints and checks, for the two homes' current outputs:
- the territory COGs and every commune's score and class GeoTIFF: byte-identical (SHA-256);
- every mart: row-identical, run ids, times, commit and the local server's port aside
  (tests/integration/integration_helpers.marts_state, the rule the integration tests use);
- the tiles: equal rows per commune, every column but run_id;
- the class GeoPackage: area per (commune, class) within 1 m².
Exit status 1 on any difference.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from integration_helpers import marts_state  # noqa: E402


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_raster(x: Path, y: Path) -> bool:
    import numpy as np
    import rasterio

    with rasterio.open(x) as rx, rasterio.open(y) as ry:
        tags = [{k: v for k, v in r.tags().items() if k != "run_id"} for r in (rx, ry)]
        return rx.profile == ry.profile and tags[0] == tags[1] and np.array_equal(rx.read(), ry.read())


def main() -> int:
    import geopandas as gpd
    import pyarrow.parquet as pq

    a, b = (Path(p).resolve() for p in sys.argv[1:3])
    problems: list[str] = []

    cogs = [Path("score/plantability_score.tif"), Path("score/plantability_class.tif")]
    same = [r for r in cogs if (b / r).exists() and sha(a / r) == sha(b / r)]
    problems += [f"COG differs: {r}" for r in cogs if r not in same]
    print(f"territory COGs byte-identical: {len(same)}/{len(cogs)}")
    parts = sorted(p.relative_to(a) for p in (a / "score").glob("*.tif") if p.name[0].isdigit())
    same = [r for r in parts if (b / r).exists() and same_raster(a / r, b / r)]
    problems += [f"commune raster differs: {r}" for r in parts if r not in same]
    print(f"commune score/class GeoTIFFs identical (pixels, profile, tags but the run id they carry): "
          f"{len(same)}/{len(parts)}")

    marts_a, marts_b = marts_state(a), marts_state(b)
    rows = sum(len(v) for v in marts_a.values())
    differing = [t for t in sorted(set(marts_a) | set(marts_b)) if marts_a.get(t) != marts_b.get(t)]
    problems += [f"mart differs: {t}" for t in differing]
    print(f"marts row-identical: {len(marts_a) - len(differing)}/{len(marts_a)} tables, {rows} rows")

    tiles = sorted(p.name for p in (a / "tiles").glob("*.parquet"))
    tile_rows, tile_diff = 0, []
    for name in tiles:
        ta, tb = pq.read_table(a / "tiles" / name), pq.read_table(b / "tiles" / name)
        ta, tb = ta.drop_columns(["run_id"]), tb.drop_columns(["run_id"])
        tile_rows += ta.num_rows
        if ta.schema != tb.schema or not ta.equals(tb):
            tile_diff.append(name)
    problems += [f"tiles differ: {n}" for n in tile_diff]
    print(f"tiles equal (all columns but run_id): {len(tiles) - len(tile_diff)}/{len(tiles)} communes, {tile_rows} rows")

    def areas(home: Path):
        frame = gpd.read_file(home / "exports" / "plantability_classes.gpkg", layer="plantability_classes")
        return frame.assign(area=frame.geometry.area).groupby(["commune", "class"])["area"].sum()

    area_a, area_b = areas(a), areas(b)
    joined = area_a.to_frame("a").join(area_b.to_frame("b"), how="outer").fillna(0.0)
    worst = float((joined.a - joined.b).abs().max())
    if worst > 1.0:
        problems.append(f"class GeoPackage: area differs by up to {worst:.3f} m²")
    print(f"class GeoPackage: {len(joined)} (commune, class) areas, largest difference {worst:.6f} m² (limit 1 m²)")

    for problem in problems:
        print("DIFFERENT:", problem)
    print("SAME OUTPUTS" if not problems else f"{len(problems)} DIFFERENCES")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
