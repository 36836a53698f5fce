"""Synthetic communes and IRIS: irregular polygons that tile a territory exactly.

Tiling is exact by construction: the outer boundary and the (wobbled) Voronoi edges are noded together and
polygonized once, so neighbouring units share the very same edge coordinates (no gap, no overlap).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon

from .synth_common import CRS, frame, random_points_in, rng_for, text_column

# Lyon Part-Dieu, for scale: x=844 600, y=6 519 560 (Lambert-93).
LYON_CENTRE = (844_600.0, 6_519_560.0)
# The small demo sits ~6 km east-south-east of the Part-Dieu, where the real suburbs are.
SMALL_CENTRE = (850_300.0, 6_517_400.0)
SMALL_AREA_M2 = 5.0e6
FULL_AREA_M2 = 534.0e6
FULL_COMMUNES = 59
SMALL_NAMES = ["Arbreville", "Tilleul-les-Bains", "Val-Platane"]


def blob(cx: float, cy: float, area: float, rng: np.random.Generator, roughness: float = 0.12,
         stretch: float = 1.0, n: int = 720) -> Polygon:
    """A star-shaped irregular polygon of exactly `area` m² around (cx, cy)."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 30):
        amp = roughness * rng.uniform(0.3, 1.0) / k ** (1.1 if k < 8 else 1.6)
        r += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.55, None)
    x, y = r * np.cos(theta), r * np.sin(theta) * stretch
    poly = Polygon(np.column_stack([x, y]))
    scale = np.sqrt(area / poly.area)
    return Polygon(np.column_stack([cx + x * scale, cy + y * scale]))


def _wobble(lines: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Bend straight edges smoothly; the ends stay put so edges still meet at their nodes."""
    out = []
    for line in lines:
        coords = np.asarray(line.coords)
        p0, p1 = coords[0], coords[-1]
        length = float(np.hypot(*(p1 - p0)))
        if length < 1.0 or amplitude <= 0:
            out.append(line)
            continue
        k = int(np.clip(length / 40.0, 4, 120))
        t = np.linspace(0.0, 1.0, k + 1)
        offset = np.zeros_like(t)
        amp = min(amplitude, 0.08 * length)
        for j in (1, 2, 3, 5):
            offset += amp * rng.normal(0, 1.0 / j) * np.sin(j * np.pi * t)
        normal = np.array([-(p1 - p0)[1], (p1 - p0)[0]]) / length
        pts = p0[None, :] + t[:, None] * (p1 - p0)[None, :] + offset[:, None] * normal[None, :]
        pts[0], pts[-1] = p0, p1
        out.append(shapely.LineString(pts))
    return np.array(out, dtype=object)


def tessellate(outer, seeds: np.ndarray, rng: np.random.Generator, wobble: float = 0.0) -> np.ndarray:
    """One polygon per seed, tiling `outer` exactly (Voronoi cells with optionally bent edges)."""
    seeds = np.asarray(seeds, dtype=float)
    if len(seeds) == 1:
        return np.array([outer], dtype=object)
    env = shapely.box(*outer.bounds).buffer(outer.length)
    edges = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env, only_edges=True)
    # edges overshoot the boundary a little so noding cuts it exactly (the dangling tips form no face)
    inner = shapely.get_parts(shapely.intersection(edges, outer.buffer(2.0)))
    inner = inner[shapely.get_type_id(inner) == 1]
    for attempt in range(5):
        amp = wobble / (2 ** attempt) if attempt < 4 else 0.0
        bent = _wobble(inner, amp, rng) if amp > 0 else inner
        result = _polygonize_assign(outer, bent, seeds)
        if result is not None:
            return result
    raise RuntimeError("synthetic generator: could not tessellate the territory")


def _polygonize_assign(outer, lines: np.ndarray, seeds: np.ndarray):
    linework = shapely.union_all(np.concatenate([[outer.boundary], lines]))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(linework)))
    rep = shapely.point_on_surface(faces)
    if not shapely.within(rep, outer).all():
        return None  # a bent edge left the territory
    tree = shapely.STRtree(faces)
    seed_pts = shapely.points(seeds)
    s_idx, f_idx = tree.query(seed_pts, predicate="within")
    owner = np.full(len(faces), -1)
    owner[f_idx] = s_idx
    if len(np.unique(f_idx)) != len(seeds) or len(f_idx) != len(seeds):
        return None  # two seeds in one face, or a seed on an edge
    orphan = np.flatnonzero(owner < 0)
    if len(orphan):
        rx, ry = shapely.get_x(rep[orphan]), shapely.get_y(rep[orphan])
        d = (rx[:, None] - seeds[None, :, 0]) ** 2 + (ry[:, None] - seeds[None, :, 1]) ** 2
        owner[orphan] = np.argmin(d, axis=1)
    cells = np.empty(len(seeds), dtype=object)
    for i in range(len(seeds)):
        parts = faces[owner == i]
        cells[i] = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    if not shapely.is_valid(cells).all():
        return None
    if abs(shapely.area(cells).sum() - outer.area) > 1e-6 * outer.area:
        return None
    return cells


def _dart_seeds(outer, n: int, density, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """n seeds inside `outer`, denser where `density` (0..1) is high, never closer than the local spacing."""
    minx, miny, maxx, maxy = outer.bounds
    shapely.prepare(outer)
    pts: list[np.ndarray] = []
    for tries in range(200_000):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if not shapely.contains_xy(outer, x, y):
            continue
        dens = density(x, y)
        if rng.uniform() > dens:
            continue
        relax = 0.999 ** (tries / 50)
        d_min = spacing / np.sqrt(dens) * relax
        if pts:
            arr = np.asarray(pts)
            if np.min(np.hypot(arr[:, 0] - x, arr[:, 1] - y)) < d_min:
                continue
        pts.append(np.array([x, y]))
        if len(pts) == n:
            return np.asarray(pts)
    raise RuntimeError("synthetic generator: could not place the commune seeds")


def demo_communes(seed: int = 2154, scale: str = "small") -> gpd.GeoDataFrame:
    """Synthetic contiguous communes (INSEE codes in the never-real department 99), EPSG:2154."""
    rng = rng_for(seed, f"communes/{scale}")
    if scale == "small":
        outer = blob(*SMALL_CENTRE, SMALL_AREA_M2, rng, roughness=0.10, stretch=1.1)
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        radius = 0.45 * np.sqrt(SMALL_AREA_M2 / np.pi)
        seeds = np.column_stack([SMALL_CENTRE[0] + radius * np.cos(angles), SMALL_CENTRE[1] + radius * np.sin(angles)])
        cells = tessellate(outer, seeds, rng, wobble=60.0)
        names = SMALL_NAMES
    elif scale == "full":
        outer = blob(*LYON_CENTRE, FULL_AREA_M2, rng, roughness=0.14, stretch=1.3)
        r_eq = np.sqrt(FULL_AREA_M2 / np.pi)
        cx, cy = LYON_CENTRE
        n_merge = 12
        n_seeds = FULL_COMMUNES + n_merge

        def density(x, y):
            d = np.hypot(x - cx, y - cy) / r_eq
            return 0.18 + 0.82 * np.exp(-((d / 0.45) ** 2))

        seeds = _dart_seeds(outer, n_seeds, density, rng, spacing=0.55 * np.sqrt(FULL_AREA_M2 / n_seeds) * 0.45)
        cells = tessellate(outer, seeds, rng, wobble=350.0)
        cells = _merge_cells(cells, seeds, n_merge, LYON_CENTRE, rng)
        names = None
    else:
        raise ValueError(f"demo_communes: scale must be 'small' or 'full', got {scale!r}")
    # Codes and names in a stable reading order: from the centre outwards.
    centroids = shapely.centroid(cells)
    ref = SMALL_CENTRE if scale == "small" else LYON_CENTRE
    order = np.argsort(np.hypot(shapely.get_x(centroids) - ref[0], shapely.get_y(centroids) - ref[1]), kind="stable")
    cells = cells[order]
    codes = [f"99{101 + i:03d}" for i in range(len(cells))]
    if names is None:
        names = [f"Commune synthétique {i + 1:02d}" for i in range(len(cells))]
    cells = np.array([_as_polygon(c) for c in cells], dtype=object)
    return frame({"insee": text_column(codes), "nom": text_column(names)}, cells, gid=False)


def _as_polygon(geom):
    """Communes are single polygons (like the real file); the biggest part wins if a merge made two."""
    if geom.geom_type == "Polygon":
        return geom
    parts = shapely.get_parts(geom)
    return parts[np.argmax(shapely.area(parts))]


def _merge_cells(cells: np.ndarray, seeds: np.ndarray, n_merge: int, centre, rng) -> np.ndarray:
    """Merge neighbouring cells so a few communes are much larger than the others (like a central city)."""
    cells = list(cells)
    alive = list(range(len(cells)))
    d_centre = np.hypot(seeds[:, 0] - centre[0], seeds[:, 1] - centre[1])
    central = int(np.argmin(d_centre))
    merges_central = 3
    for m in range(n_merge):
        arr = np.array([cells[i] for i in alive], dtype=object)
        tree = shapely.STRtree(arr)
        if m < merges_central:
            a = alive.index(central)
        else:
            a = int(rng.integers(len(alive)))
        neigh = tree.query(arr[a], predicate="touches")
        shared = shapely.length(shapely.intersection(arr[neigh], arr[a].boundary))
        neigh = neigh[(shared > 200.0) & (neigh != a)]
        if len(neigh) == 0:
            continue
        b = int(neigh[np.argmin(shapely.area(arr[neigh]))])
        ia, ib = alive[a], alive[b]
        cells[ia] = shapely.union_all([cells[ia], cells[ib]])
        alive.remove(ib)
    return np.array([cells[i] for i in alive], dtype=object)


def _kmeans_seeds(geom, k: int, rng: np.random.Generator) -> np.ndarray:
    pts = random_points_in(geom, 60 * k, rng)
    centres = pts[rng.choice(len(pts), k, replace=False)]
    for _ in range(20):
        d = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        lab = np.argmin(d, axis=1)
        new = np.array([pts[lab == j].mean(axis=0) if np.any(lab == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    # a centroid of a non-convex commune may fall outside it: use the nearest sample point instead
    d = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    return pts[np.argmin(d, axis=0)]


def iris_count(area_m2: float) -> int:
    return int(np.clip(round(1.5 + 1.2 * np.sqrt(area_m2 / 1e6)), 2, 8))


def synthetic_iris(communes: gpd.GeoDataFrame, seed: int = 2154, code_field: str = "insee") -> gpd.GeoDataFrame:
    """An IRIS-like subdivision (2 to 8 parts per commune, by area) tiling each commune exactly."""
    if code_field not in communes.columns:
        raise ValueError(f"synthetic_iris: the communes have no {code_field!r} column "
                         f"(columns: {list(communes.columns)})")
    if communes.crs is None:
        raise ValueError("synthetic_iris: the communes layer has no CRS")
    communes = communes.to_crs(CRS)
    names = communes["nom" if "nom" in communes.columns else code_field].astype(str).tolist()
    geoms, codes, iris_names, insee = [], [], [], []
    for code, name, geom in zip(communes[code_field].astype(str), names, communes.geometry.values):
        rng = rng_for(seed, f"iris/{code}")
        k = iris_count(geom.area)
        seeds = _kmeans_seeds(geom, k, rng)
        if geom.geom_type == "MultiPolygon":
            cells = _tessellate_multi(geom, seeds, rng)
        else:
            cells = tessellate(geom, seeds, rng, wobble=0.03 * np.sqrt(geom.area / k))
        rep = shapely.centroid(cells)
        order = np.lexsort((shapely.get_x(rep), -shapely.get_y(rep)))
        for j, cell in enumerate(cells[order]):
            geoms.append(cell)
            codes.append(f"{code}{j + 1:04d}")
            iris_names.append(f"IRIS synthétique {name} {j + 1}")
            insee.append(code)
    return frame({"code_iris": text_column(codes), "nom_iris": text_column(iris_names), "insee": text_column(insee)},
                 np.array(geoms, dtype=object), gid=False)


def _tessellate_multi(geom, seeds, rng) -> np.ndarray:
    """Voronoi split of a multipart commune: each part is split on its own, parts without a seed join the nearest."""
    env = shapely.box(*geom.bounds).buffer(geom.length)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env, ordered=True))
    pieces = shapely.intersection(cells, geom)
    return np.array([p for p in pieces], dtype=object)
