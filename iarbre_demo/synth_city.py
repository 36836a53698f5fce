"""The synthetic city model shared by every generated layer.

A territory (the given communes) gets an urban-intensity field (1 in dense centres, 0 in the countryside),
a river, railway lines and an aerodrome, districts with their own rotated street grid, arterial roads,
and the blocks between streets, each with a land use drawn from the intensity. Layers are then derived
from this one model (synth_layers.py), so trees line streets, networks follow them, parks are parks in
both the public-spaces and the vegetation layers, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely

from .synth_common import CRS, random_points_in, rng_for, rotate_xy

# Street classes and their half widths: right of way (facade to facade) and carriageway.
RURAL, LOCAL, COLLECTOR, ARTERIAL = 0, 1, 2, 3
ROW_HALF = np.array([4.0, 6.0, 9.0, 14.0])
ROAD_HALF = np.array([2.75, 3.0, 5.0, 8.0])

KINDS = ["dense", "collective", "houses", "industrial", "park", "square", "parking", "sport",
         "agri", "forest", "meadow", "friche", "delaisse", "water", "rail", "aero"]
K = {name: i for i, name in enumerate(KINDS)}

# Land-use mix of blocks by intensity band (rural < 0.15 <= suburb < 0.35 <= urban < 0.6 <= core).
_MIX = {
    "core": {"dense": 76, "collective": 6, "park": 7, "square": 4, "parking": 2, "sport": 2, "industrial": 1,
             "friche": 2},
    "urban": {"dense": 22, "collective": 28, "houses": 20, "industrial": 9, "park": 8, "square": 2, "parking": 3,
              "sport": 3, "friche": 2, "meadow": 1, "delaisse": 2},
    "suburb": {"houses": 56, "collective": 7, "industrial": 13, "park": 5, "sport": 3, "parking": 2, "agri": 7,
               "forest": 3, "friche": 2, "meadow": 2},
    "rural": {"agri": 52, "forest": 28, "meadow": 8, "houses": 8, "industrial": 2, "friche": 1, "park": 1},
}
_BANDS = ["rural", "suburb", "urban", "core"]
_BAND_EDGES = np.array([0.15, 0.35, 0.6])
# District themes make land use coherent over a neighbourhood (an industrial estate, a housing estate...).
_THEMES = [None, "industrial", "collective", "houses", "park", "forest", "agri"]


def band_of(u: np.ndarray) -> np.ndarray:
    return np.searchsorted(_BAND_EDGES, u, side="right")


@dataclass
class Territory:
    codes: np.ndarray
    names: np.ndarray
    geoms: np.ndarray
    union: object
    area: float
    contiguous: bool
    cores: np.ndarray  # rows: x, y, amplitude, radius, exponent
    waves: np.ndarray  # rows: kx, ky, phase, weight
    main_centre: tuple[float, float]
    tree: shapely.STRtree = field(repr=False, default=None)
    bounds: np.ndarray = field(repr=False, default=None)

    @property
    def r_eq(self) -> float:
        return float(np.sqrt(self.area / np.pi))

    def intensity(self, x, y) -> np.ndarray:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        u = np.zeros(np.broadcast(x, y).shape)
        for cx, cy, amp, radius, expo in self.cores:
            d = np.hypot(x - cx, y - cy) / radius
            u = np.maximum(u, amp * np.exp(-0.5 * d ** expo))
        noise = np.zeros_like(u)
        for kx, ky, phase, weight in self.waves:
            noise += weight * np.sin(kx * x + ky * y + phase)
        return np.clip(u * (1.0 + 0.25 * noise), 0.0, 1.0)

    def commune_of(self, geoms) -> np.ndarray:
        """Index of the commune holding each geometry's representative point (nearest if outside all)."""
        pts = shapely.point_on_surface(np.asarray(geoms, dtype=object))
        out = np.full(len(pts), -1, dtype=np.int64)
        if len(pts) == 0:
            return out
        x, y = shapely.get_x(pts), shapely.get_y(pts)
        # one vectorised point-in-polygon test per (prepared) commune: communes are few, points many
        for i, geom in enumerate(self.geoms):
            todo = np.flatnonzero(out < 0)
            if len(todo) == 0:
                break
            b = self.bounds[i]
            near = todo[(x[todo] >= b[0]) & (x[todo] <= b[2]) & (y[todo] >= b[1]) & (y[todo] <= b[3])]
            out[near[shapely.contains_xy(geom, x[near], y[near])]] = i
        missing = np.flatnonzero(out < 0)
        if len(missing):  # on a boundary or in a margin: the nearest commune
            _, nearest = self.tree.query_nearest(pts[missing], return_distance=False, all_matches=False)
            out[missing] = nearest
        return out


def make_territory(communes: gpd.GeoDataFrame, seed: int, code_field: str) -> Territory:
    if communes.crs is None:
        raise ValueError("synthetic generator: the communes layer has no CRS")
    if code_field not in communes.columns:
        raise ValueError(f"synthetic generator: the communes have no {code_field!r} column "
                         f"(columns: {list(communes.columns)})")
    if len(communes) == 0:
        raise ValueError("synthetic generator: the communes layer is empty")
    communes = communes.to_crs(CRS)
    geoms = shapely.make_valid(np.asarray(communes.geometry.values, dtype=object))
    codes = communes[code_field].astype(str).to_numpy(dtype=object)
    names = (communes["nom"].astype(str) if "nom" in communes.columns else communes[code_field].astype(str))
    union = shapely.union_all(geoms)
    area = float(union.area)
    contiguous = union.geom_type == "Polygon"
    rng = rng_for(seed, "territory/intensity")
    r_eq = np.sqrt(area / np.pi)
    cores = []
    centroid = union.centroid
    main = centroid if union.contains(centroid) else union.point_on_surface()
    if contiguous:
        share = np.interp(np.log10(area / 1e6), [np.log10(5), np.log10(534)], [0.42, 0.30])
        cores.append([main.x, main.y, 1.0, share * r_eq, 2.0])
        for g in geoms:
            if g.contains(main):
                continue
            p = g.point_on_surface()
            r_c = np.sqrt(g.area / np.pi)
            cores.append([p.x, p.y, 0.5 + 0.15 * rng.uniform(), 0.35 * r_c, 2.0])
    else:
        for g in geoms:
            p = g.point_on_surface()
            r_c = np.sqrt(g.area / np.pi)
            if g.area < 3e6:  # a small isolated commune is a town district: dense all over
                cores.append([p.x, p.y, 0.95, 1.0 * r_c, 4.0])
            else:
                cores.append([p.x, p.y, 0.75 + 0.1 * rng.uniform(), 0.45 * r_c, 2.0])
    wavelength = np.clip(0.35 * r_eq, 300.0, 4000.0)
    waves = []
    for _ in range(4):
        ang = rng.uniform(0, np.pi)
        k = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.6))
        waves.append([k * np.cos(ang), k * np.sin(ang), rng.uniform(0, 2 * np.pi), 0.5])
    territory = Territory(codes=codes, names=names.to_numpy(dtype=object), geoms=geoms, union=union, area=area,
                          contiguous=contiguous, cores=np.asarray(cores), waves=np.asarray(waves),
                          main_centre=(main.x, main.y))
    territory.tree = shapely.STRtree(geoms)
    territory.bounds = shapely.bounds(geoms)
    shapely.prepare(geoms)
    shapely.prepare(union)
    return territory


# ----------------------------------------------------------------------------------------------
# Structures: river, railway, aerodrome
# ----------------------------------------------------------------------------------------------
def _wavy_line(px, py, angle, half_len, amp, wavelength, rng, step=25.0, curvature=0.0, start=None):
    """A meandering line through (px, py); from -half_len to half_len along `angle` (or from `start`)."""
    t = np.arange(-half_len if start is None else start, half_len + step, step)
    lateral = curvature * t ** 2
    for j in range(3):
        lam = wavelength * rng.uniform(0.6, 1.6)
        wave = amp / (j + 1) * np.sin(2 * np.pi * t / lam + rng.uniform(0, 2 * np.pi))
        lateral = lateral + (wave - wave[0] if start is not None else wave)
    x = px + t * np.cos(angle) - lateral * np.sin(angle)
    y = py + t * np.sin(angle) + lateral * np.cos(angle)
    return shapely.LineString(np.column_stack([x, y]))


@dataclass
class Structures:
    river: object  # (multi)polygon, clipped to the territory
    river_lines: list
    rail_lines: list  # railway centrelines, clipped
    corridor: object  # railway right of way (no building, no block)
    aerodrome: object


def make_structures(t: Territory, seed: int) -> Structures:
    rng = rng_for(seed, "territory/structures")
    union, r_eq = t.union, t.r_eq
    bx = shapely.bounds(union)
    half_len = float(np.hypot(bx[2] - bx[0], bx[3] - bx[1]))
    big = sorted(range(len(t.geoms)), key=lambda i: -t.geoms[i].area)
    # River: crosses part of the territory, away from the very centre.
    width = float(np.clip(0.012 * np.sqrt(t.area), 35.0, 200.0))
    if t.contiguous:
        a = rng.uniform(0, 2 * np.pi)
        px, py = t.main_centre[0] + 0.22 * r_eq * np.cos(a), t.main_centre[1] + 0.22 * r_eq * np.sin(a)
    else:
        p = t.geoms[big[0]].point_on_surface()
        px, py = p.x, p.y
    river_angle = rng.uniform(0, np.pi)
    centre = _wavy_line(px, py, river_angle, half_len, 0.05 * r_eq, 0.45 * r_eq, rng)
    river_lines = [centre]
    river = centre.buffer(width / 2, cap_style="flat")
    if t.area > 100e6:  # a tributary joins the main river near the centre
        trib_angle = river_angle + rng.choice([-1, 1]) * rng.uniform(0.6, 1.1)
        tx, ty = px + 0.1 * r_eq * np.cos(river_angle), py + 0.1 * r_eq * np.sin(river_angle)
        trib = _wavy_line(tx, ty, trib_angle, half_len, 0.04 * r_eq, 0.35 * r_eq, rng, start=0.0)
        if not trib.is_empty:
            river_lines.append(trib)
            river = river.union(trib.buffer(0.6 * width / 2, cap_style="flat"))
    river = shapely.intersection(river, union)
    # Railways: through (or near) the centre, at an angle to the river.
    n_rail = 3 if t.area > 100e6 else 1
    rail_lines = []
    for k in range(n_rail):
        ang = river_angle + np.pi / 2 + rng.uniform(-0.5, 0.5) + k * np.pi / (n_rail + 0.5)
        if t.contiguous:
            rx, ry = t.main_centre[0] + 0.08 * r_eq * rng.normal(), t.main_centre[1] + 0.08 * r_eq * rng.normal()
        else:
            p = t.geoms[big[min(1, len(big) - 1)] if k == 0 else big[k % len(big)]].point_on_surface()
            rx, ry = p.x, p.y
        # branches start at the central station instead of crossing it
        line = _wavy_line(rx, ry, ang, half_len, 0.0, 1.0, rng, step=50.0,
                          curvature=rng.uniform(-1, 1) * 0.15 / max(r_eq, 1.0), start=0.0 if k > 0 else None)
        line = shapely.intersection(line, union)
        if not line.is_empty:
            rail_lines.append(line)
    corridor = shapely.union_all([shapely.buffer(line, 11.0, cap_style="flat") for line in rail_lines])
    corridor = shapely.intersection(corridor, union)
    aerodrome = _place_aerodrome(t, river, corridor, rng)
    return Structures(river=river, river_lines=river_lines, rail_lines=rail_lines, corridor=corridor,
                      aerodrome=aerodrome)


def _place_aerodrome(t: Territory, river, corridor, rng):
    length = float(np.clip(0.095 * np.sqrt(t.area), 400.0, 2200.0))
    width = 0.22 * length
    avoid = shapely.union_all([river.buffer(150.0), corridor.buffer(100.0)])
    pts = random_points_in(t.union, 3000, rng)
    u = t.intensity(pts[:, 0], pts[:, 1])
    order = np.argsort(u, kind="stable")
    inner = t.union.buffer(-0.55 * length)
    for shrink in (1.0, 0.7, 0.5, 0.35):
        lw, ww = length * shrink, width * shrink
        inner_s = t.union.buffer(-0.55 * lw) if shrink != 1.0 else inner
        for i in order[:400]:
            x, y = pts[i]
            if not inner_s.contains(shapely.Point(x, y)):
                continue
            ang = rng.uniform(0, np.pi)
            runway = _rect(x, y, lw, ww * 0.45, ang)
            apron = _rect(x + np.cos(ang + np.pi / 2) * ww * 0.45 - np.cos(ang) * lw * 0.25,
                          y + np.sin(ang + np.pi / 2) * ww * 0.45 - np.sin(ang) * lw * 0.25,
                          lw * 0.35, ww * 0.5, ang)
            poly = shapely.union_all([runway, apron])
            if poly.intersects(avoid) or not t.union.contains(poly):
                continue
            return poly
    # last resort on tiny territories: a small airfield strip wherever it fits
    x, y = pts[order[0]]
    return shapely.intersection(_rect(x, y, 200.0, 40.0, 0.0), t.union)


def _rect(x, y, w, h, ang):
    ux = np.array([-0.5, 0.5, 0.5, -0.5]) * w
    uy = np.array([-0.5, -0.5, 0.5, 0.5]) * h
    rx, ry = rotate_xy(ux, uy, ang)
    return shapely.Polygon(np.column_stack([x + rx, y + ry]))


# ----------------------------------------------------------------------------------------------
# Districts and streets
# ----------------------------------------------------------------------------------------------
@dataclass
class Districts:
    geoms: np.ndarray
    seeds: np.ndarray
    u: np.ndarray
    angle: np.ndarray
    theme: np.ndarray  # index into _THEMES


def _district_area(u):
    return np.interp(u, [0.0, 0.15, 0.35, 0.6, 1.0], [2.2e6, 1.3e6, 0.6e6, 0.32e6, 0.22e6])


def make_districts(t: Territory, seed: int) -> Districts:
    rng = rng_for(seed, "territory/districts")
    probe = random_points_in(t.union, 4000, rng)
    density = 1.0 / _district_area(t.intensity(probe[:, 0], probe[:, 1]))
    n = max(6, int(round(density.mean() * t.area)))
    cand = random_points_in(t.union, n * 12, rng)
    dens = 1.0 / _district_area(t.intensity(cand[:, 0], cand[:, 1]))
    keep = rng.uniform(0, dens.max(), len(cand)) < dens
    seeds = cand[keep][:n]
    env = shapely.box(*t.union.bounds).buffer(1000.0)
    for _ in range(2):  # Lloyd relaxation: rounder districts, no slivers
        cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env, ordered=True))
        clipped = shapely.intersection(cells, t.union)
        ok = ~shapely.is_empty(clipped)
        cen = shapely.point_on_surface(clipped[ok])
        seeds = np.column_stack([shapely.get_x(cen), shapely.get_y(cen)])
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=env, ordered=True))
    geoms = shapely.intersection(cells, t.union)
    ok = ~shapely.is_empty(geoms) & (shapely.area(geoms) > 1.0)
    geoms, seeds = geoms[ok], seeds[ok]
    u = t.intensity(seeds[:, 0], seeds[:, 1])
    angle = rng.uniform(0, np.pi / 2, len(geoms))
    theme = np.where(rng.uniform(size=len(geoms)) < 0.45, rng.integers(1, len(_THEMES), len(geoms)), 0)
    return Districts(geoms=geoms, seeds=seeds, u=u, angle=angle, theme=theme)


@dataclass
class Streets:
    geoms: np.ndarray  # noded segments (between intersections)
    cls: np.ndarray
    u: np.ndarray
    commune: np.ndarray
    bridge: np.ndarray  # over the river
    node_a: np.ndarray
    node_b: np.ndarray
    nodes: np.ndarray  # (n, 2)
    dir_a: np.ndarray  # unit vector leaving node_a
    dir_b: np.ndarray  # unit vector leaving node_b
    length: np.ndarray

    @property
    def row_half(self) -> np.ndarray:
        return ROW_HALF[self.cls]

    @property
    def road_half(self) -> np.ndarray:
        return ROAD_HALF[self.cls]


def _grid_lines(d: Districts, rng):
    """Parallel street lines in two directions over every district, in its own rotated frame."""
    n = len(d.geoms)
    base = np.interp(d.u, [0.0, 0.15, 0.35, 0.6, 1.0], [300.0, 200.0, 140.0, 105.0, 85.0])
    drop = np.interp(d.u, [0.0, 0.15, 0.35, 0.6], [0.45, 0.25, 0.08, 0.02])
    local = shapely.bounds(_rotate_about(d.geoms, -d.angle, d.seeds))
    owners, lines = [], []
    for family in (0, 1):
        step = base * rng.uniform(0.85, 1.25, n)
        lo = local[:, 0] if family == 0 else local[:, 1]
        hi = local[:, 2] if family == 0 else local[:, 3]
        count = np.floor((hi - lo) / step).astype(np.int64) + 1
        owner = np.repeat(np.arange(n), count)
        k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        pos = lo[owner] + (k + rng.uniform(0.2, 0.8, len(owner))) * step[owner]
        if family == 0:
            x0 = x1 = pos
            y0, y1 = local[owner, 1] - 20.0, local[owner, 3] + 20.0
        else:
            y0 = y1 = pos
            x0, x1 = local[owner, 0] - 20.0, local[owner, 2] + 20.0
        # a slight tilt per line: grid-ish, not a perfect lattice
        tilt = rng.normal(0, 0.006, len(owner))
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        ax, ay = rotate_xy(x0, y0, tilt, mx, my)
        bx, by = rotate_xy(x1, y1, tilt, mx, my)
        keep = rng.uniform(size=len(owner)) >= drop[owner]
        owner, ax, ay, bx, by = owner[keep], ax[keep], ay[keep], bx[keep], by[keep]
        ang = d.angle[owner]
        sx, sy = d.seeds[owner, 0], d.seeds[owner, 1]
        ax, ay = rotate_xy(ax, ay, ang)
        bx, by = rotate_xy(bx, by, ang)
        coords = np.stack([np.column_stack([ax + sx, ay + sy]), np.column_stack([bx + sx, by + sy])], axis=1)
        lines.append(shapely.linestrings(coords) if len(coords) else np.empty(0, dtype=object))
        owners.append(owner)
    owner = np.concatenate(owners)
    lines = shapely.intersection(np.concatenate(lines), d.geoms[owner])
    return lines, owner


def _rotate_about(geoms, angles, centres):
    """Move each geometry so its centre is the origin, then rotate it by its angle."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    x, y = rotate_xy(coords[:, 0] - centres[index, 0], coords[:, 1] - centres[index, 1], angles[index])
    return shapely.set_coordinates(np.array(geoms, dtype=object, copy=True), np.column_stack([x, y]))


def _arterials(t: Territory, rng) -> list:
    lines = []
    r_eq = t.r_eq
    if t.contiguous:
        n_art = int(np.clip(round(0.5 * np.sqrt(t.area / 1e6)), 2, 12))
        start = rng.uniform(0, 2 * np.pi)
        cx, cy = t.main_centre
        for k in range(n_art):
            ang = start + 2 * np.pi * k / n_art + rng.uniform(-0.2, 0.2)
            steps = np.arange(0.0, 2.2 * r_eq, 40.0)
            lateral = np.cumsum(rng.normal(0, 4.0, len(steps)))
            lateral -= lateral[0]
            x = cx + steps * np.cos(ang) - lateral * np.sin(ang)
            y = cy + steps * np.sin(ang) + lateral * np.cos(ang)
            lines.append(shapely.LineString(np.column_stack([x, y])))
        if t.area > 100e6:  # a ring road
            theta = np.linspace(0, 2 * np.pi, 400)
            wobble = 0.06 * np.sin(3 * theta + rng.uniform(0, 6)) + 0.04 * np.sin(5 * theta + rng.uniform(0, 6))
            rad = 0.42 * r_eq * (1 + wobble)
            lines.append(shapely.LineString(np.column_stack([cx + rad * np.cos(theta), cy + rad * np.sin(theta)])))
    else:
        for g in t.geoms:
            p = g.point_on_surface()
            r_c = np.sqrt(g.area / np.pi)
            for k in range(1 + int(g.area > 10e6)):
                ang = rng.uniform(0, np.pi)
                lines.append(_wavy_line(p.x, p.y, ang, 2.5 * r_c, 0.03 * r_c, 0.8 * r_c, rng, step=40.0))
    clipped = shapely.intersection(np.array(lines, dtype=object), t.union)
    return [g for g in shapely.get_parts(clipped) if g.length > 50.0]


def make_streets(t: Territory, s: Structures, d: Districts, seed: int):
    """Noded street segments and the blocks (faces) between streets, water, railway and commune limits."""
    rng = rng_for(seed, "territory/streets")
    env = shapely.box(*t.union.bounds).buffer(1000.0)
    edges = shapely.voronoi_polygons(shapely.multipoints(d.seeds), extend_to=env, only_edges=True)
    d_edges = shapely.get_parts(shapely.intersection(edges, t.union))
    d_edges = d_edges[(shapely.get_type_id(d_edges) == 1) & ~shapely.is_empty(d_edges)]
    mid = shapely.line_interpolate_point(d_edges, 0.5, normalized=True)
    d_cls = np.where(t.intensity(shapely.get_x(mid), shapely.get_y(mid)) >= 0.15, COLLECTOR, RURAL)
    g_lines, g_owner = _grid_lines(d, rng)
    g_parts, g_idx = shapely.get_parts(g_lines, return_index=True)
    g_cls = np.where(d.u[g_owner[g_idx]] >= 0.15, LOCAL, RURAL)
    arts = np.array(_arterials(t, rng), dtype=object)
    src = np.concatenate([d_edges, g_parts, arts])
    cls = np.concatenate([d_cls, g_cls, np.full(len(arts), ARTERIAL)]).astype(np.int64)
    keep = (shapely.get_type_id(src) == 1) & ~shapely.is_empty(src)
    src, cls = src[keep], cls[keep]
    mid = shapely.line_interpolate_point(src, 0.5, normalized=True)
    u_src = t.intensity(shapely.get_x(mid), shapely.get_y(mid))
    # Only some streets cross the river (bridges) or the railway; the others stop at the bank or the track.
    p_bridge = np.array([0.03, 0.04, 0.25, 1.0])[cls] * np.where(cls == ARTERIAL, 1.0, 0.4 + u_src)
    p_rail = np.array([0.4, 0.35, 0.8, 1.0])[cls]
    cut = []
    if not s.river.is_empty:
        cross = shapely.intersects(src, s.river) & (rng.uniform(size=len(src)) >= p_bridge)
        cut.append((cross, s.river))
    if not s.corridor.is_empty:
        cross = shapely.intersects(src, s.corridor) & (rng.uniform(size=len(src)) >= p_rail)
        cut.append((cross, s.corridor))
    for cross, poly in cut:
        src = src.copy()
        src[cross] = shapely.difference(src[cross], poly)
    if not s.corridor.is_empty:
        # streets running alongside the track (not across it) would leave slivers: keep them 30 m away
        near = s.corridor.buffer(30.0)
        along = shapely.length(shapely.intersection(src, near)) > 90.0
        src[along] = shapely.difference(src[along], near)
    hit = shapely.intersects(src, s.aerodrome)
    src[hit] = shapely.difference(src[hit], s.aerodrome)
    src, owner = shapely.get_parts(src, return_index=True)
    cls = cls[owner]
    keep = (shapely.get_type_id(src) == 1) & (shapely.length(src) > 5.0)  # empties have length 0
    src, cls = src[keep], cls[keep]
    # Node everything once: streets and the limits blocks must not straddle.
    limits = [g.boundary for g in t.geoms] + [shapely.boundary(s.river), shapely.boundary(s.corridor),
                                              shapely.boundary(s.aerodrome)]
    limits = [g for g in limits if g is not None and not g.is_empty]
    # snap-rounding union (1 cm grid): robust on real boundaries where plain noding may not converge
    noded = shapely.union_all(np.concatenate([src, np.array(limits, dtype=object)]), grid_size=0.01)
    edges = shapely.get_parts(noded)
    edges = edges[shapely.get_type_id(edges) == 1]
    edges = edges[shapely.length(edges) > 1e-6]
    mid = shapely.line_interpolate_point(edges, 0.5, normalized=True)
    e_idx, s_idx = shapely.STRtree(src).query(mid, predicate="dwithin", distance=0.02)
    e_cls = np.full(len(edges), -1, dtype=np.int64)
    np.maximum.at(e_cls, e_idx, cls[s_idx])
    edges, e_cls = _prune_dead_ends(edges, e_cls)
    faces = shapely.get_parts(shapely.polygonize(edges))
    is_street = e_cls >= 0
    streets = _street_table(t, s, edges[is_street], e_cls[is_street])
    return streets, faces


def _prune_dead_ends(edges, e_cls):
    """Drop street pieces that end nowhere (cut short near the railway, or noding leftovers).

    A dead end would lie inside a block, where nothing keeps buildings off it.
    """
    ends = np.round(np.vstack([shapely.get_coordinates(shapely.get_point(edges, 0)),
                               shapely.get_coordinates(shapely.get_point(edges, -1))]), 2)
    _, node = np.unique(ends, axis=0, return_inverse=True)
    node = node.ravel()
    n = len(edges)
    a, b = node[:n], node[n:]
    alive = np.ones(n, dtype=bool)
    for _ in range(50):
        degree = np.bincount(np.concatenate([a[alive], b[alive]]), minlength=node.max() + 1)
        dead = alive & (e_cls >= 0) & ((degree[a] == 1) | (degree[b] == 1))
        if not dead.any():
            break
        alive &= ~dead
    return edges[alive], e_cls[alive]


def _street_table(t: Territory, s: Structures, geoms, cls) -> Streets:
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    mx, my = shapely.get_x(mid), shapely.get_y(mid)
    u = t.intensity(mx, my)
    bridge = shapely.contains_xy(s.river, mx, my) if not s.river.is_empty else np.zeros(len(geoms), bool)
    first = shapely.get_coordinates(shapely.get_point(geoms, 0))
    second = shapely.get_coordinates(shapely.get_point(geoms, 1))
    last = shapely.get_coordinates(shapely.get_point(geoms, -1))
    before = shapely.get_coordinates(shapely.get_point(geoms, -2))
    keys = np.round(np.vstack([first, last]), 2)
    nodes, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = len(geoms)
    dir_a = second - first
    dir_b = before - last
    dir_a /= np.maximum(np.hypot(dir_a[:, 0], dir_a[:, 1]), 1e-9)[:, None]
    dir_b /= np.maximum(np.hypot(dir_b[:, 0], dir_b[:, 1]), 1e-9)[:, None]
    return Streets(geoms=geoms, cls=cls, u=u, commune=t.commune_of(mid), bridge=bridge,
                   node_a=inverse[:n], node_b=inverse[n:], nodes=nodes, dir_a=dir_a, dir_b=dir_b,
                   length=shapely.length(geoms))


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
@dataclass
class Blocks:
    geoms: np.ndarray  # faces between street centrelines / limits
    kind: np.ndarray
    district: np.ndarray
    commune: np.ndarray
    u: np.ndarray
    angle: np.ndarray
    setback: np.ndarray
    buildable: np.ndarray  # face minus the street right of way


def make_blocks(t: Territory, s: Structures, d: Districts, streets: Streets, faces, seed: int) -> Blocks:
    rng = rng_for(seed, "territory/blocks")
    rep = shapely.point_on_surface(faces)
    rx, ry = shapely.get_x(rep), shapely.get_y(rep)
    inside = shapely.contains_xy(t.union, rx, ry)
    faces, rep, rx, ry = faces[inside], rep[inside], rx[inside], ry[inside]
    n = len(faces)
    kind = np.full(n, -1, dtype=np.int64)
    for poly, name in ((s.river, "water"), (s.corridor, "rail"), (s.aerodrome, "aero")):
        if not poly.is_empty:
            kind[(kind < 0) & shapely.contains_xy(poly, rx, ry)] = K[name]
    f_idx, d_idx = shapely.STRtree(d.geoms).query(rep, predicate="intersects")
    district = np.zeros(n, dtype=np.int64)
    district[f_idx] = d_idx
    commune = t.commune_of(rep)
    u = t.intensity(rx, ry)
    # Setback: the widest street touching the block gives its right of way.
    f_idx, s_idx = shapely.STRtree(streets.geoms).query(faces, predicate="intersects")
    setback = np.full(n, 2.0)
    np.maximum.at(setback, f_idx, streets.row_half[s_idx])
    # real commune limits carry a vertex every metre or so: 1 m simplification keeps blocks cheap to cut
    buildable = shapely.simplify(shapely.buffer(faces, -setback, join_style="mitre"), 0.5)
    area = shapely.area(faces)
    b_area = shapely.area(buildable)
    # Land use: the intensity band's mix, tilted by the district's theme.
    band = band_of(u)
    probs = np.zeros((n, len(KINDS)))
    for b, name in enumerate(_BANDS):
        for kname, weight in _MIX[name].items():
            probs[band == b, K[kname]] = weight
    theme = d.theme[district]
    for ti, tname in enumerate(_THEMES):
        if tname is None:
            continue
        sel = (theme == ti) & (probs[:, K[tname]] > 0)
        probs[sel, K[tname]] *= 6.0
    probs /= probs.sum(axis=1, keepdims=True)
    draw = (rng.uniform(size=n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    todo = kind < 0
    kind[todo] = np.minimum(draw[todo], len(KINDS) - 1)
    # Small or thin leftovers between streets are traffic islands / green leftovers.
    tiny = todo & ((b_area < 900.0) | (area < 2500.0))
    kind[tiny] = K["delaisse"]
    # Big blocks in dense bands are not all courtyards: very large ones become housing estates or parks.
    big_dense = (kind == K["dense"]) & (b_area > 40_000)
    kind[big_dense] = np.where(rng.uniform(size=big_dense.sum()) < 0.7, K["collective"], K["park"])
    buildable = np.where(shapely.is_empty(buildable), faces, buildable)
    angle = d.angle[district]
    return Blocks(geoms=faces, kind=kind, district=district, commune=commune, u=u, angle=angle,
                  setback=setback, buildable=buildable)


@dataclass
class City:
    territory: Territory
    structures: Structures
    districts: Districts
    streets: Streets
    blocks: Blocks
    seed: int
    scale: str


def build_city(communes: gpd.GeoDataFrame, seed: int, scale: str, code_field: str) -> City:
    t = make_territory(communes, seed, code_field)
    s = make_structures(t, seed)
    d = make_districts(t, seed)
    streets, faces = make_streets(t, s, d, seed)
    b = make_blocks(t, s, d, streets, faces, seed)
    return City(territory=t, structures=s, districts=d, streets=streets, blocks=b, seed=seed, scale=scale)
