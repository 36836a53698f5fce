"""Full-scale benchmark: the synthetic metropole (~534 km², ~59 communes, ~21 M cells, 36 scored factors).

    .venv/bin/python benchmarks/full_scale.py [--home /tmp/iarbre-full] [--baseline-factors 6]

1. generates the full-scale synthetic metropole (or reuses it) and ingests its sources (normalised,
   checked GeoParquet) — reported, but outside the target;
2. materialises, in one Dagster run on the home's instance, everything from the normalised sources to
   the mosaics: every footprint and coverage of every commune, score, classes, and the two territory COGs;
   prints wall time, CPU time, peak RSS of the whole process tree, cells per second;
3. times the reference-method baseline on the same footprints: each factor rasterised over the whole
   territory at 1 m, a centred 5x5 convolution and stride sampling (benchmarks/reference_method.py, written
   from the published description). It is measured on a subset of factors and extrapolated to all of them
   (it would take well over 30 minutes), and the ratio is printed;
4. optionally (--downstream) also times tiles, GeoPackage, tiles export and the dbt marts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import TreeMemory, measured, report  # noqa: E402

TARGET_KEYS = ["plantability_score", "plantability_class", "plantability_score_cog", "plantability_class_cog"]
BASELINE_DEFAULT = ["batiments", "proximite_facade", "reseau_gaz", "strate_basse_pelouse", "arbres", "trace_bus"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/iarbre-full", help="IARBRE_HOME of the benchmark")
    parser.add_argument("--baseline-factors", default=",".join(BASELINE_DEFAULT),
                        help="factors the reference baseline is measured on (comma-separated), or 'all', or 'none'")
    parser.add_argument("--downstream", action="store_true", help="also time tiles, GeoPackage and marts")
    args = parser.parse_args()

    home = Path(args.home).resolve()
    data = home / "data" / "full"
    territory = data / "territory.yaml"
    results: dict = {}

    from iarbre_assets.cli import write_instance_config
    from iarbre_demo.generator import generate_demo, is_generated

    write_instance_config(home / "dagster")
    if not is_generated(data):
        with measured("generate the full-scale metropole", results):
            generate_demo(data, scale="full")
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    print(f"full-scale territory: {data} ({size / 1e6:.0f} MB)")

    import dagster as dg

    from iarbre_assets.definitions import build_definitions
    from iarbre_assets.progress import ProgressView
    from iarbre_assets.resources import TerritoryResource
    from iarbre_assets.runner import materialise

    resource = TerritoryResource(home=str(home), territory=str(territory))
    resource.remember()
    defs, platform = build_definitions(resource), resource.platform
    instance = dg.DagsterInstance.from_config(str(resource.store.dagster_home))
    view = ProgressView()

    def materialise_all(select):
        return materialise(defs, resource, instance, select=select, view=view)
    cells = int(round(platform.communes.area.sum() / platform.territory.grid.cell_size_m ** 2))
    print(f"{len(platform.commune_codes)} communes, {platform.communes.area.sum() / 1e6:.1f} km², "
          f"{cells / 1e6:.2f} M cells, {len(platform.scored_factors)} scored factors")

    if any(platform.store.versions(s).current() is None for s in platform.sources):
        with measured("ingest every source (outside the target)", results):
            outcome = materialise_all("group:sources")
        assert outcome.success, outcome.failures + outcome.failed_checks

    graph = defs.resolve_asset_graph()
    selection = [k for k in graph.get_all_asset_keys() if k.path[0] in {"footprint", "coverage"}]
    selection += [dg.AssetKey(k) for k in TARGET_KEYS]
    label = "normalised sources -> footprints, coverages, score, classes, COGs"
    with measured(label, results):
        outcome = materialise_all(selection)
    assert outcome.success, outcome.failures + outcome.failed_checks
    ours = results[label]["wall_s"]
    results[label]["cells_per_s"] = f"{cells / ours:,.0f}"
    results[label]["asset_partitions"] = sum(outcome.materialised.values())

    if args.downstream:
        downstream = [dg.AssetKey(["tiles"]), dg.AssetKey(["class_polygons_gpkg"]), dg.AssetKey(["tiles_geoparquet"])]
        with measured("tiles, GeoPackage, tiles GeoParquet (outside the target)", results):
            outcome = materialise_all(downstream)
        assert outcome.success, outcome.failures
        with measured("dbt marts (outside the target)", results):
            outcome = materialise_all("group:marts")
        assert outcome.success, outcome.failures

    print()
    report(results)
    if args.baseline_factors != "none":
        baseline(platform, args.baseline_factors, ours)
    return 0


def baseline(platform, factors_arg: str, ours: float) -> None:
    import geopandas as gpd
    import pandas as pd

    from iarbre_assets.geo.footprint import factor_footprint
    from reference_method import reference_coverage, reference_score

    scored = platform.scored_factors
    chosen = scored if factors_arg == "all" else [platform.catalogue.factor(s) for s in factors_arg.split(",")]
    bounds = tuple(platform.communes.total_bounds)
    print(f"\nreference-method baseline (whole territory at 1 m, centred 5x5 convolution, stride sampling) "
          f"on {len(chosen)} of {len(scored)} factors:")
    per_factor, coverages = {}, []
    sources: dict[str, gpd.GeoDataFrame] = {}
    with TreeMemory() as memory:
        for factor in chosen:
            frames = []
            for slug in factor.sources:
                if slug not in sources:
                    current = platform.store.versions(slug).current()
                    sources[slug] = gpd.read_parquet(current.data_path(platform.store))
                frames.append(sources[slug])
            frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
            start = time.perf_counter()
            # the footprint parts: rasterising them or their union burns the same pixels, and skipping the
            # union only makes the baseline faster (the comparison is in its favour)
            footprint = factor_footprint(frame, factor, union=False)
            coverage, _ = reference_coverage(footprint.parts, bounds)
            per_factor[factor.slug] = time.perf_counter() - start
            coverages.append((coverage, factor))
            print(f"  {factor.slug:28s} {per_factor[factor.slug]:7.1f} s", flush=True)
        start = time.perf_counter()
        reference_score([c for c, _ in coverages], [f.weight for _, f in coverages], [f.blocking for _, f in coverages])
        score_s = time.perf_counter() - start
    measured_s = sum(per_factor.values()) + score_s
    if len(chosen) < len(scored):
        estimate = sum(per_factor.values()) / len(chosen) * len(scored) + score_s * len(scored) / len(chosen)
        print(f"  measured {measured_s:.0f} s on {len(chosen)} factors (peak RSS {memory.peak / 1e9:.2f} GB); "
              f"EXTRAPOLATED to {len(scored)} factors by the mean per factor: {estimate:.0f} s")
    else:
        estimate = measured_s
        print(f"  measured on all factors: {estimate:.0f} s (peak RSS {memory.peak / 1e9:.2f} GB)")
    print(f"\nours {ours:.0f} s vs reference-method baseline {estimate:.0f} s: {estimate / ours:.1f}x faster")


if __name__ == "__main__":
    sys.exit(main())
