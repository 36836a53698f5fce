"""Timings of the geo kernels on realistic synthetic inputs, for extrapolation to the whole Métropole.

    .venv/bin/python benchmarks/geo_kernels.py            # a 40 km² commune-sized window (~1 min)
    .venv/bin/python benchmarks/geo_kernels.py --km2 10   # smaller, quicker

The window holds a jittered street grid, buildings lining the blocks, networks following the streets in
short pieces (like Agence ORE lines), street trees and a detailed vegetation tessellation (like EVA 2015),
all synthetic and deterministic. Densities are those of the whole Métropole (534 km²: ~250 000 buildings,
~100 000 trees, ~12 000 km of network lines, ~200 000 vegetation polygons) scaled to the window, and every
kernel time is extrapolated linearly to the Métropole at the end. Nothing here is used by the platform.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import shapely.ops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iarbre_assets.catalog import load_catalog  # noqa: E402
from iarbre_assets.geo.coverage import coverage_percent  # noqa: E402
from iarbre_assets.geo.footprint import factor_footprint  # noqa: E402
from iarbre_assets.geo.grid import Window, cell_owner  # noqa: E402
from iarbre_assets.geo.preview import class_preview_png  # noqa: E402
from iarbre_assets.geo.raster_io import mosaic_to_cog, write_geotiff  # noqa: E402
from iarbre_assets.geo.score import classify, factor_stats, meta_sums, score_cells, top_factors  # noqa: E402
from iarbre_assets.geo.vectorise import class_polygons  # noqa: E402

METRO_KM2 = 534.0
METRO = {"buildings": 250_000, "trees": 100_000, "lines_km": 12_000.0, "vegetation": 200_000}

# ------------------------------------------------------------------------------------------------
# Synthetic city
# ------------------------------------------------------------------------------------------------
ORIGIN = (840_000.0, 6_522_000.0)  # lower-left corner, near Lyon


def street_grid(size_m: tuple[float, float], spacing_m: float = 120.0, seed: int = 0) -> list[np.ndarray]:
    """Polylines (arrays of xy) of a jittered street grid: vertices every ~20 m, gentle wiggles."""
    rng = np.random.default_rng(seed)
    w, h = size_m
    x0, y0 = ORIGIN
    streets = []
    for horizontal in (True, False):
        length = w if horizontal else h
        across = h if horizontal else w
        for base in np.arange(spacing_m / 2, across, spacing_m):
            t = np.arange(0.0, length + 1e-9, 20.0)
            offset = base + np.cumsum(rng.normal(0, 0.8, len(t)))
            xy = np.column_stack([t, offset]) if horizontal else np.column_stack([offset, t])
            streets.append(xy + (x0, y0))
    return streets


def network_lines(streets: list[np.ndarray], total_km: float, piece_m: float = 60.0, side_m: float = 3.0,
                  seed: int = 1) -> np.ndarray:
    """Lines following the streets at a lateral offset, cut into pieces of ~piece_m metres."""
    rng = np.random.default_rng(seed)
    lines = []
    total = 0.0
    order = rng.permutation(len(streets))
    k = 0
    while total < total_km * 1000:
        xy = streets[order[k % len(streets)]]
        side = side_m * (1 if (k // len(streets)) % 2 == 0 else -1) + rng.normal(0, 0.3)
        k += 1
        line = shapely.offset_curve(shapely.linestrings(xy), side)
        n = max(1, int(shapely.length(line) // piece_m))
        cuts = np.linspace(0, 1, n + 1)
        for a, b in zip(cuts[:-1], cuts[1:]):
            piece = shapely.ops.substring(line, a, b, normalized=True)
            lines.append(piece)
            total += piece.length
            if total >= total_km * 1000:
                break
    return np.array(lines, dtype=object)


def buildings(streets: list[np.ndarray], n: int, size_m: tuple[float, float], seed: int = 2) -> np.ndarray:
    """Rotated rectangles 8-25 m lining the streets, often touching or overlapping their neighbours."""
    rng = np.random.default_rng(seed)
    w, h = size_m
    x0, y0 = ORIGIN
    pts = []
    for xy in streets:
        seg = np.diff(xy, axis=0)
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        for (x, y), (dx, dy), length in zip(xy[:-1], seg, lengths):
            for t in np.arange(0, length, 14.0):
                ux, uy = dx / length, dy / length
                for side in (-1, 1):
                    off = side * rng.uniform(9, 16)
                    pts.append((x + ux * t - uy * off, y + uy * t + ux * off, np.arctan2(uy, ux)))
    pts = np.array(pts)
    pts = pts[(pts[:, 0] > x0) & (pts[:, 0] < x0 + w) & (pts[:, 1] > y0) & (pts[:, 1] < y0 + h)]
    pick = rng.choice(len(pts), size=min(n, len(pts)), replace=False)
    cx, cy, ang = pts[pick].T
    half_l = rng.uniform(4, 12.5, len(cx))
    half_w = rng.uniform(4, 9, len(cx))
    corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)], dtype=float)
    ca, sa = np.cos(ang), np.sin(ang)
    lx = corners[None, :, 0] * half_l[:, None]
    ly = corners[None, :, 1] * half_w[:, None]
    xs = cx[:, None] + lx * ca[:, None] - ly * sa[:, None]
    ys = cy[:, None] + lx * sa[:, None] + ly * ca[:, None]
    return shapely.polygons(np.stack([xs, ys], axis=-1))


def trees(streets: list[np.ndarray], n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Points along streets (3.5 m to the side) and circumferences in cm (some null)."""
    rng = np.random.default_rng(seed)
    lines = shapely.offset_curve(shapely.linestrings(streets), 3.5)
    which = rng.integers(0, len(lines), n)
    frac = rng.uniform(0, 1, n)
    pts = shapely.line_interpolate_point(lines[which], frac, normalized=True)
    circ = rng.uniform(20, 300, n)
    circ[rng.uniform(size=n) < 0.05] = np.nan
    return pts, circ


def vegetation(n: int, size_m: tuple[float, float], seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A tessellation of n detailed polygons (Voronoi cells with wiggly 4 m-vertex edges) and EVA codes."""
    rng = np.random.default_rng(seed)
    w, h = size_m
    x0, y0 = ORIGIN
    seeds = shapely.multipoints(np.column_stack([rng.uniform(x0, x0 + w, n), rng.uniform(y0, y0 + h, n)]))
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=shapely.box(x0, y0, x0 + w, y0 + h)))
    cells = shapely.clip_by_rect(cells, x0, y0, x0 + w, y0 + h)
    cells = shapely.segmentize(cells, 4.0)
    coords = shapely.get_coordinates(cells)
    # Jitter vertices by a deterministic function of their position, so shared edges stay shared.
    jitter = np.column_stack([np.sin(coords[:, 1] * 0.37) * 0.8, np.cos(coords[:, 0] * 0.41) * 0.8])
    cells = shapely.set_coordinates(cells.copy(), coords + jitter)
    cells = shapely.make_valid(cells)
    codes = rng.choice([11, 12, 13, 15, 15, 15, 211, 311, 361], size=len(cells))
    return cells, codes


# ------------------------------------------------------------------------------------------------
# Benchmark
# ------------------------------------------------------------------------------------------------
class Timer:
    """Best-of-`repeat` CPU time of each kernel (process time: stable when other jobs share the cores;
    every kernel here is single-threaded, so CPU time is the wall time on an idle core)."""

    def __init__(self):
        self.rows: list[tuple[str, str, float, float]] = []

    def run(self, label: str, inputs: str, scale: float, fn, repeat: int = 1):
        best = None
        result = None
        for _ in range(repeat):
            start = time.process_time()
            result = fn()
            elapsed = time.process_time() - start
            best = elapsed if best is None else min(best, elapsed)
        self.rows.append((label, inputs, best, scale))
        print(f"  {label:<52s} {inputs:<28s} {best:8.3f} s   x{scale:6.1f} -> {best * scale:7.1f} s", flush=True)
        return result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--km2", type=float, default=40.0, help="window area in km² (default 40)")
    parser.add_argument("--reference", action="store_true", help="also time the reference recipe (1 m + convolution)")
    args = parser.parse_args(argv)

    side = round(np.sqrt(args.km2) * 1000 / 5) * 5
    size = (float(side), float(side))
    k = args.km2 / 40.0  # the brief's 40 km² window: 10 000 buildings, 200 km of lines, 5 000 vegetation polygons
    n_buildings, lines_km, n_veg = int(10_000 * k), 200.0 * k, int(5_000 * k)
    n_trees = int(METRO["trees"] * args.km2 / METRO_KM2)
    cells_scale = METRO_KM2 / args.km2
    catalogue = load_catalog()
    window = Window(ORIGIN[0], ORIGIN[1] + side, side // 5, side // 5)
    print(f"window {args.km2:g} km² = {window.width} x {window.height} cells of 5 m "
          f"({window.width * window.height / 1e6:.2f} M cells); Métropole = {METRO_KM2:g} km²")

    start = time.perf_counter()
    streets = street_grid(size)
    b = buildings(streets, n_buildings, size)
    lines = network_lines(streets, lines_km)
    tree_pts, circ = trees(streets, n_trees)
    veg, codes = vegetation(n_veg, size)
    print(f"synthetic data: {len(b)} buildings, {shapely.length(lines).sum() / 1000:.0f} km of lines in "
          f"{len(lines)} pieces, {len(tree_pts)} trees, {len(veg)} vegetation polygons "
          f"({shapely.get_num_coordinates(veg).mean():.0f} vertices each) in {time.perf_counter() - start:.1f} s")

    crs = "EPSG:2154"
    g_buildings = gpd.GeoDataFrame({"cleabs": np.arange(len(b)).astype(str)}, geometry=b, crs=crs)
    g_lines = gpd.GeoDataFrame(geometry=lines, crs=crs)
    genre = np.where(np.arange(len(tree_pts)) % 20 == 0, "Souche", "Platanus")
    g_trees = gpd.GeoDataFrame({"genre": genre, "circonference_cm": circ}, geometry=tree_pts, crs=crs)
    g_veg = gpd.GeoDataFrame({"gl_2015": codes}, geometry=veg, crs=crs)

    s_b = METRO["buildings"] / max(1, len(b))
    s_l = METRO["lines_km"] / lines_km
    s_t = METRO["trees"] / max(1, len(tree_pts))
    s_v = METRO["vegetation"] / max(1, len(veg))
    t = Timer()

    print("\nfootprints (select -> buffer -> simplify -> union)")
    fp_bat = t.run("batiments (no buffer)", f"{len(b)} polygons", s_b,
                   lambda: factor_footprint(g_buildings, catalogue.factor("batiments")))
    fp_fac = t.run("proximite_facade, buffer 2 m + union", f"{len(b)} polygons", s_b,
                   lambda: factor_footprint(g_buildings, catalogue.factor("proximite_facade")))
    t.run("proximite_facade, buffer 2 m, no union", f"{len(b)} polygons", s_b,
          lambda: factor_footprint(g_buildings, catalogue.factor("proximite_facade"), union=False))
    t.run("  (for comparison: plain shapely.union_all)", f"{len(b)} polygons", s_b,
          lambda: shapely.union_all(fp_fac.parts))
    fp_gaz = t.run("reseau_gaz, buffer 2 m + union", f"{lines_km:.0f} km lines", s_l,
                   lambda: factor_footprint(g_lines, catalogue.factor("reseau_gaz")))
    t.run("reseau_gaz, buffer 2 m + union (merge_lines)", f"{lines_km:.0f} km lines", s_l,
          lambda: factor_footprint(g_lines, catalogue.factor("reseau_gaz"), union_method="merge_lines"))
    t.run("reseau_gaz, buffer 2 m, no union", f"{lines_km:.0f} km lines", s_l,
          lambda: factor_footprint(g_lines, catalogue.factor("reseau_gaz"), union=False))
    fp_arb = t.run("arbres, radius from circumference + union", f"{len(tree_pts)} points", s_t,
                   lambda: factor_footprint(g_trees, catalogue.factor("arbres")))
    eva_factors = [f for f in catalogue.scored_factors if f.source == "eva_2015"]
    fp_eva = t.run("EVA: 5 factors, filter + simplify 3 m", f"{len(veg)} polygons", s_v,
                   lambda: [factor_footprint(g_veg, f) for f in eva_factors])

    print("\ncoverage (1 m sub-pixels, 256-cell tiles, block sums)")
    cov_bat = t.run("batiments parts", f"{len(fp_bat.parts)} polygons", s_b,
                    lambda: coverage_percent(fp_bat.parts, window))
    cov_fac = t.run("proximite_facade parts", f"{len(fp_fac.parts)} polygons", s_b,
                    lambda: coverage_percent(fp_fac.parts, window))
    t.run("  (same from the union polygons)", f"{len(fp_fac.polygons)} polygons", s_b,
          lambda: coverage_percent(fp_fac.polygons, window))
    cov_gaz = t.run("reseau_gaz parts", f"{len(fp_gaz.parts)} polygons", s_l,
                    lambda: coverage_percent(fp_gaz.parts, window))
    t.run("  (same from the union polygons)", f"{len(fp_gaz.polygons)} polygons", s_l,
          lambda: coverage_percent(fp_gaz.polygons, window))
    cov_arb = t.run("arbres parts", f"{len(fp_arb.parts)} polygons", s_t,
                    lambda: coverage_percent(fp_arb.parts, window))
    cov_eva = t.run("EVA: 5 factors", f"{sum(len(f.parts) for f in fp_eva)} polygons", s_v,
                    lambda: [coverage_percent(f.parts, window) for f in fp_eva])

    print("\nscore over 36 factors (whole window at once)")
    factors = catalogue.scored_factors
    slugs = [f.slug for f in factors]
    rng = np.random.default_rng(9)
    stack = np.zeros((len(factors), *window.shape), dtype=np.uint8)
    # the factors not generated above: coherent random patches of 40 m blocks over ~5 % of the window
    blocks = (-(-window.height // 8), -(-window.width // 8))
    for f in range(len(factors)):
        patch = np.repeat(np.repeat(rng.random(blocks) < 0.05, 8, axis=0), 8, axis=1)
        stack[f] = np.where(patch[: window.height, : window.width], 100, 0)
    stack[slugs.index("batiments")] = cov_bat
    stack[slugs.index("proximite_facade")] = cov_fac
    stack[slugs.index("reseau_gaz")] = cov_gaz
    stack[slugs.index("arbres")] = cov_arb
    for f, cov in zip(eva_factors, cov_eva):
        stack[slugs.index(f.slug)] = cov
    communes = [shapely.box(*window.bounds).buffer(-20)]
    valid = t.run("cell_owner (1 commune)", f"{window.width * window.height / 1e6:.2f} M cells", cells_scale,
                  lambda: cell_owner(communes, window)) >= 0
    weights = [f.weight for f in factors]
    blocking = [f.blocking for f in factors]
    result = t.run("score_cells", "36 x cells", cells_scale, lambda: score_cells(stack, weights, blocking, valid))
    classes = t.run("classify", "cells", cells_scale,
                    lambda: classify(result.score, catalogue.scoring.class_breaks, catalogue.scoring.class_above))
    groups = {m.label: [slugs.index(s) for s in catalogue.meta_mapping[m.slug]]
              for m in catalogue.meta_factors if m.aggregate_in_top}
    t.run("top_factors k=5 (networks aggregated)", "36 x cells", cells_scale,
          lambda: top_factors(stack, [f.label for f in factors], 5, groups))
    meta_index = {m: [slugs.index(s) for s in members] for m, members in catalogue.meta_mapping.items()}
    t.run("meta_sums", "36 x cells", cells_scale, lambda: meta_sums(stack, meta_index))
    t.run("factor_stats", "36 x cells", cells_scale, lambda: factor_stats(stack, weights, result.blocked, valid))

    print("\noutputs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t.run("write_geotiff score float32", "cells", cells_scale,
              lambda: write_geotiff(tmp / "score.tif", result.score, window, -9999.0))
        t.run("write_geotiff coverage stack (36 bands)", "36 x cells", cells_scale,
              lambda: write_geotiff(tmp / "stack.tif", stack, window, None))
        half_w, half_h = window.width // 2, window.height // 2
        parts = []
        for r0, c0, h, w in [(0, 0, half_h, half_w), (0, half_w, half_h, window.width - half_w),
                             (half_h, 0, window.height - half_h, half_w),
                             (half_h, half_w, window.height - half_h, window.width - half_w)]:
            part_window = Window(window.xmin + 5 * c0, window.ymax - 5 * r0, w, h)
            parts.append(write_geotiff(tmp / f"part{r0}_{c0}.tif", classes[r0:r0 + h, c0:c0 + w], part_window, 255))
        t.run("mosaic_to_cog class (4 parts)", "cells", cells_scale,
              lambda: mosaic_to_cog(parts, window, tmp / "class_cog.tif", np.uint8, 255))
        t.run("class_polygons", "cells", cells_scale, lambda: class_polygons(classes, window))
        t.run("class_preview_png", "cells", 1.0, lambda: class_preview_png(classes, catalogue.class_colours()))

    if args.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from reference_method import reference_coverage

        print("\nreference recipe (whole-window 1 m raster + centred convolution), for comparison")
        t.run("reference_coverage batiments", f"{len(b)} polygons", cells_scale,
              lambda: reference_coverage(list(fp_bat.parts), window.bounds))

    print(f"\npeak resident memory: {peak_rss_mb():.0f} MB")
    print("\nextrapolation to the Métropole (linear in feature counts / km of lines / cells, CPU s on 1 core;")
    print("every line factor counted as reseau_gaz, EVA polygons at this window's size and detail):")
    first: dict[str, float] = {}
    for label, _, sec, scale in t.rows:
        first.setdefault(label, sec * scale)
    common = ["batiments (no buffer)", "arbres, radius from circumference + union",
              "EVA: 5 factors, filter + simplify 3 m"]
    footprints = {
        "published union, overlay (default)": common + ["proximite_facade, buffer 2 m + union",
                                                        "reseau_gaz, buffer 2 m + union"],
        "published union, merge_lines for networks": common + ["proximite_facade, buffer 2 m + union",
                                                               "reseau_gaz, buffer 2 m + union (merge_lines)"],
        "parts only (no union at all)": common + ["proximite_facade, buffer 2 m, no union",
                                                  "reseau_gaz, buffer 2 m, no union"],
    }
    coverage = sum(first[label] for label in ["batiments parts", "proximite_facade parts", "reseau_gaz parts",
                                              "arbres parts", "EVA: 5 factors"])
    scoring = sum(first[label] for label in ["cell_owner (1 commune)", "score_cells", "classify",
                                             "top_factors k=5 (networks aggregated)", "meta_sums", "factor_stats"])
    outputs = sum(first[label] for label in ["write_geotiff score float32", "write_geotiff coverage stack (36 bands)",
                                             "mosaic_to_cog class (4 parts)"])
    print(f"  {'coverage, 36 factors':<50s} {coverage:7.1f} s")
    print(f"  {'score, classes, top-5, meta, stats':<50s} {scoring:7.1f} s")
    print(f"  {'GeoTIFF writes + class COG mosaic':<50s} {outputs:7.1f} s")
    for name, labels in footprints.items():
        fp = sum(first[label] for label in labels)
        total = fp + coverage + scoring + outputs
        print(f"  footprints, {name:<38s} {fp:7.1f} s  -> total {total:6.1f} s CPU, "
              f"~{total / 2 / 60:.1f} min on 2 cores")


if __name__ == "__main__":
    main()
