"""What follows the streets: trees, networks, cycle lanes, street furniture, bus/tram/metro routes and stops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .synth_city import ARTERIAL, COLLECTOR, LOCAL, RURAL, City
from .synth_common import rect_polygons


def offset_lines(city: City, idx: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Street segments `idx` shifted sideways by `offset` metres (left > 0, right < 0)."""
    lines = city.streets.geoms[idx]
    moved = shapely.offset_curve(lines, offset, join_style="mitre", mitre_limit=2.0)
    bad = (shapely.get_type_id(moved) != 1) | shapely.is_empty(moved)
    moved[bad] = lines[bad]  # offset of a sharp wavy line can split: keep the centreline there
    return moved


def sides(city: City, prob_left: np.ndarray, prob_right: np.ndarray, rng):
    """(segment index, side ±1) pairs drawn with the given per-segment probabilities."""
    n = len(city.streets.geoms)
    left = rng.uniform(size=n) < prob_left
    right = rng.uniform(size=n) < prob_right
    idx = np.concatenate([np.flatnonzero(left), np.flatnonzero(right)])
    side = np.concatenate([np.ones(left.sum()), -np.ones(right.sum())])
    order = np.lexsort((side, idx))
    return idx[order], side[order]


def points_along(lines: np.ndarray, spacing: np.ndarray, trim: np.ndarray, rng, jitter: float = 0.0):
    """Regularly spaced points along lines, `trim` metres away from each end. Returns owner, points, angle."""
    length = shapely.length(lines)
    usable = np.maximum(length - 2 * trim, 0.0)
    count = np.where(length > 2 * trim, np.floor(usable / spacing).astype(np.int64) + 1, 0)
    owner = np.repeat(np.arange(len(lines)), count)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    start = trim + (usable - (count - 1) * spacing) / 2  # centre the row on the segment
    dist = start[owner] + k * spacing[owner]
    if jitter:
        dist = np.clip(dist + rng.uniform(-jitter, jitter, len(dist)), 0, length[owner])
    pts = shapely.line_interpolate_point(lines[owner], dist)
    ahead = shapely.line_interpolate_point(lines[owner], np.minimum(dist + 0.5, length[owner]))
    behind = shapely.line_interpolate_point(lines[owner], np.maximum(dist - 0.5, 0.0))
    angle = np.arctan2(shapely.get_y(ahead) - shapely.get_y(behind), shapely.get_x(ahead) - shapely.get_x(behind))
    return owner, pts, angle


# ----------------------------------------------------------------------------------------------
# Trees along streets
# ----------------------------------------------------------------------------------------------
@dataclass
class TreeRows:
    points: np.ndarray
    segment: np.ndarray
    row: np.ndarray  # row id (one per street side), used for canopies and same-species rows
    rows_geom: np.ndarray  # the sidewalk line of each row (between its first and last tree)


def tree_rows(city: City, rng) -> TreeRows:
    st = city.streets
    base = np.array([0.02, 0.13, 0.28, 0.37])[st.cls]
    p = base * np.clip(0.25 + 1.05 * st.u, 0.0, 1.0) * ~st.bridge
    idx, side = sides(city, p, p, rng)
    lines = offset_lines(city, idx, side * (st.road_half[idx] + 1.6))
    spacing = rng.uniform(7.0, 11.0, len(idx))
    trim = st.row_half[idx] + 3.0
    owner, pts, _ = points_along(lines, spacing, trim, rng, jitter=0.6)
    rows_with_trees = np.unique(owner)
    length = shapely.length(lines)
    count = np.bincount(owner, minlength=len(idx))
    used = (count - 1) * spacing
    start = trim + (np.maximum(length - 2 * trim, 0) - used) / 2
    r = rows_with_trees
    row_geom = _substrings(lines[r], start[r], start[r] + used[r])
    remap = np.full(len(idx), -1)
    remap[rows_with_trees] = np.arange(len(rows_with_trees))
    return TreeRows(points=pts, segment=idx[owner], row=remap[owner], rows_geom=row_geom)


def _substrings(lines, start, end):
    """Parts of lines between two distances (vectorised via interpolated points; lines are short)."""
    n_pts = 6
    frac = np.linspace(0.0, 1.0, n_pts)
    dist = start[:, None] + (end - start)[:, None] * frac[None, :]
    pts = shapely.line_interpolate_point(np.repeat(lines, n_pts), dist.ravel())
    xy = shapely.get_coordinates(pts).reshape(len(lines), n_pts, 2)
    same = np.all(np.abs(xy[:, -1] - xy[:, 0]) < 1e-6, axis=1)
    xy[same, -1] += 0.01  # a one-tree row still needs a (tiny) line
    return shapely.linestrings(xy)


# ----------------------------------------------------------------------------------------------
# Networks under (and over) the streets
# ----------------------------------------------------------------------------------------------
def network(city: City, name: str, rng):
    """(segment index, offset line) of one network, following the streets."""
    st = city.streets
    u, cls = st.u, st.cls
    if name == "sanitation":
        p = np.clip(0.1 + 1.1 * u, 0, 0.95)
        idx, side = sides(city, p, np.zeros_like(p), rng)
        off = rng.uniform(-0.8, 0.8, len(idx))
    elif name == "gas":
        p = np.clip(0.05 + 1.25 * u, 0, 0.95) * np.where(cls == RURAL, 0.5, 1.0)
        idx, side = sides(city, p, np.zeros_like(p), rng)
        off = -(st.road_half[idx] - 1.2)
    elif name == "lv_underground":
        p = np.clip(0.25 + 1.5 * u, 0, 0.98)
        p2 = np.clip(-0.05 + 1.4 * u, 0, 0.95)
        idx, side = sides(city, p, p2, rng)
        off = side * (st.road_half[idx] + 1.0)
    elif name == "lv_aerial":
        p = np.where(u < 0.4, np.clip(0.6 - 1.0 * u, 0.08, 0.55), 0.0) * np.where(cls >= ARTERIAL, 0.2, 1.0)
        idx, side = sides(city, p, np.zeros_like(p), rng)
        off = side * (st.row_half[idx] - 0.6)
    elif name == "fibre":
        p = np.array([0.02, 0.08, 0.35, 0.6])[cls] * np.clip(0.3 + u, 0, 1.2)
        idx, side = sides(city, p, np.zeros_like(p), rng)
        off = st.road_half[idx] + 0.5
    elif name == "fibre_civil":
        p = np.where(cls == LOCAL, 0.03, 0.01) * np.clip(0.3 + u, 0, 1.2)
        idx, side = sides(city, p, np.zeros_like(p), rng)
        off = st.road_half[idx] + 0.8
    elif name == "heat":
        idx = _heat_segments(city, rng)
        off = np.full(len(idx), -1.5)
    else:
        raise ValueError(name)
    return idx, offset_lines(city, idx, off)


def _heat_segments(city: City, rng) -> np.ndarray:
    """District heating: a few plants in dense areas, the pipes serve the streets around them."""
    st = city.streets
    t = city.territory
    n_plants = max(1, int(round(t.area / 90e6)))
    dense = np.flatnonzero(st.u > 0.55)
    if len(dense) == 0:
        dense = np.argsort(-st.u)[: max(3, len(st.u) // 50)]
    plants = rng.choice(dense, size=min(n_plants, len(dense)), replace=False)
    mid = shapely.line_interpolate_point(st.geoms, 0.5, normalized=True)
    mx, my = shapely.get_x(mid), shapely.get_y(mid)
    radius = float(np.clip(0.06 * t.r_eq, 300.0, 1800.0))
    chosen = np.zeros(len(st.geoms), dtype=bool)
    for p in plants:
        d = np.hypot(mx - mx[p], my - my[p])
        chosen |= (d < radius) & (st.u > 0.45) & (rng.uniform(size=len(d)) < np.clip(1.1 - d / radius, 0, 0.9))
        chosen[p] = True
    return np.flatnonzero(chosen)


def cycle_lanes(city: City, rng):
    st = city.streets
    p = np.array([0.03, 0.05, 0.35, 0.7])[st.cls] * np.clip(0.4 + st.u, 0, 1.2)
    idx, side = sides(city, p, np.where(st.cls >= COLLECTOR, p * 0.8, 0.0), rng)
    lines = offset_lines(city, idx, side * (st.road_half[idx] - 0.8))
    return idx, side, lines


# ----------------------------------------------------------------------------------------------
# Street furniture and bays
# ----------------------------------------------------------------------------------------------
def traffic_lights(city: City, rng):
    """Signal poles at the corners of busy junctions. Returns points, junction id, pole kind."""
    st = city.streets
    n_nodes = len(st.nodes)
    ends = np.concatenate([st.node_a, st.node_b])
    seg = np.concatenate([np.arange(len(st.geoms)), np.arange(len(st.geoms))])
    direction = np.vstack([st.dir_a, st.dir_b])
    degree = np.bincount(ends, minlength=n_nodes)
    top = np.zeros(n_nodes, dtype=np.int64)
    np.maximum.at(top, ends, st.cls[seg])
    node_u = np.zeros(n_nodes)
    np.maximum.at(node_u, ends, st.u[seg])
    signal = (degree >= 3) & (top >= COLLECTOR) & (node_u > 0.3)
    signal &= rng.uniform(size=n_nodes) < np.clip(0.1 + 0.6 * node_u, 0, 0.6)
    pick = signal[ends]
    ends, seg, direction = ends[pick], seg[pick], direction[pick]
    back = st.row_half[seg] + 0.8
    side = st.road_half[seg] + 0.8
    x = st.nodes[ends, 0] + direction[:, 0] * back - direction[:, 1] * side
    y = st.nodes[ends, 1] + direction[:, 1] * back + direction[:, 0] * side
    kind = rng.choice(["Feu tricolore", "Feu piéton", "Répétiteur"], len(x), p=[0.6, 0.3, 0.1])
    # one controller cabinet per junction
    nodes_sig = np.flatnonzero(signal)
    cx = st.nodes[nodes_sig, 0] + rng.uniform(-12, 12, len(nodes_sig))
    cy = st.nodes[nodes_sig, 1] + rng.uniform(-12, 12, len(nodes_sig))
    pts = shapely.points(np.concatenate([x, cx]), np.concatenate([y, cy]))
    junction = np.concatenate([ends, nodes_sig])
    kind = np.concatenate([kind, np.full(len(nodes_sig), "Contrôleur")])
    order = np.argsort(junction, kind="stable")
    return pts[order], junction[order], kind[order]


def bays(city: City, rng, kind: str):
    """Parking bays (5 m × 2.5 m) along the kerb: single PMR bays, or 2-3 bay car-sharing stations."""
    st = city.streets
    ok = (st.cls >= LOCAL) & (st.cls <= COLLECTOR) & ~st.bridge & (st.length > 30.0)
    if kind == "pmr":
        p = np.where(ok & (st.u > 0.25), 0.11 * st.u, 0.0)
        n_bays = None
    else:
        p = np.where(ok & (st.u > 0.45), 0.03 * st.u, 0.0)
        n_bays = True
    idx, side = sides(city, p, np.zeros_like(p), rng)
    if len(idx) == 0:
        return idx, np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    side = np.where(rng.uniform(size=len(idx)) < 0.5, 1.0, -1.0)
    lines = offset_lines(city, idx, side * (st.road_half[idx] - 1.25))
    where = rng.uniform(0.3, 0.7, len(idx)) * shapely.length(lines)
    centre = shapely.line_interpolate_point(lines, where)
    ahead = shapely.line_interpolate_point(lines, where + 1.0)
    ang = np.arctan2(shapely.get_y(ahead) - shapely.get_y(centre), shapely.get_x(ahead) - shapely.get_x(centre))
    count = rng.integers(2, 4, len(idx)) if n_bays else np.ones(len(idx), dtype=np.int64)
    geoms = rect_polygons(shapely.get_x(centre), shapely.get_y(centre), 5.0 * count, np.full(len(idx), 2.5), ang)
    return idx, geoms, count


def sidewalk_points(city: City, p: np.ndarray, rng, extra: float = 1.5):
    """One point per chosen segment, on a sidewalk, somewhere along the middle of the segment."""
    st = city.streets
    idx, _ = sides(city, p, np.zeros_like(p), rng)
    side = np.where(rng.uniform(size=len(idx)) < 0.5, 1.0, -1.0)
    lines = offset_lines(city, idx, side * (st.road_half[idx] + extra))
    pts = shapely.line_interpolate_point(lines, rng.uniform(0.3, 0.7, len(idx)), normalized=True)
    return idx, pts


# ----------------------------------------------------------------------------------------------
# Public transport routes on the street graph
# ----------------------------------------------------------------------------------------------
class StreetGraph:
    def __init__(self, city: City):
        st = city.streets
        self.st = st
        ends = np.concatenate([st.node_a, st.node_b])
        seg = np.concatenate([np.arange(len(st.geoms)), np.arange(len(st.geoms))])
        other = np.concatenate([st.node_b, st.node_a])
        direction = np.vstack([st.dir_a, st.dir_b])
        forward = np.concatenate([np.ones(len(st.geoms), bool), np.zeros(len(st.geoms), bool)])
        order = np.argsort(ends, kind="stable")
        self.seg, self.other, self.dir, self.forward = seg[order], other[order], direction[order], forward[order]
        counts = np.bincount(ends, minlength=len(st.nodes))
        self.start = np.concatenate([[0], np.cumsum(counts)])

    def walk(self, start_node: int, heading: float, target: float, bonus: np.ndarray, rng, avoid_bridges=False):
        st = self.st
        hx, hy = np.cos(heading), np.sin(heading)
        cur = start_node
        seen = {cur}
        path: list[tuple[int, bool]] = []
        length = 0.0
        turns = 0
        while length < target and len(path) < 5000:
            lo, hi = self.start[cur], self.start[cur + 1]
            best, best_score = -1, -np.inf
            for j in range(lo, hi):
                nxt = self.other[j]
                if nxt in seen:
                    continue
                s = self.seg[j]
                cos = self.dir[j, 0] * hx + self.dir[j, 1] * hy
                score = cos + bonus[st.cls[s]] + rng.normal(0, 0.25)
                if score > best_score:
                    best, best_score = j, score
            if best < 0:
                break
            if self.dir[best, 0] * hx + self.dir[best, 1] * hy < -0.3:
                # blocked (territory edge, river, dead end): turn once in a while rather than stop
                turns += 1
                if turns > 3:
                    break
                heading = float(np.arctan2(self.dir[best, 1], self.dir[best, 0]))
            s = self.seg[best]
            path.append((int(s), bool(self.forward[best])))
            length += st.length[s]
            cur = int(self.other[best])
            seen.add(cur)
            # drift the heading a little so routes bend like real lines
            heading += rng.normal(0, 0.05)
            hx, hy = np.cos(heading), np.sin(heading)
        return path, length

    def geometry(self, path):
        parts = []
        for s, fwd in path:
            xy = shapely.get_coordinates(self.st.geoms[s])
            parts.append(xy if fwd else xy[::-1])
        xy = np.vstack([parts[0]] + [p[1:] for p in parts[1:]])
        return shapely.LineString(xy)


def routes(city: City, graph: StreetGraph, mode: str, count: int, rng):
    """Bus, tram or metro routes: greedy walks on the street graph between busy places."""
    st = city.streets
    r_eq = city.territory.r_eq
    ends = np.concatenate([st.node_a, st.node_b])
    node_u = np.zeros(len(st.nodes))
    np.maximum.at(node_u, ends, np.concatenate([st.u, st.u]))
    degree = np.bincount(ends, minlength=len(st.nodes))
    if mode == "bus":
        bonus = np.array([-0.3, 0.0, 0.25, 0.35])
        weight = (node_u + 0.05) ** 2 * (degree >= 3)
        target = lambda: float(np.clip(rng.normal(12000, 3500), 4000, 22000)) * min(1.0, 1.6 * r_eq / 12000)
    elif mode == "tram":
        bonus = np.array([-1.0, -0.3, 0.3, 1.2])
        weight = node_u ** 4 * (degree >= 3)
        target = lambda: float(np.clip(rng.normal(11000, 2000), 6000, 16000)) * min(1.0, 1.6 * r_eq / 11000)
    else:
        bonus = np.array([-1.0, -0.2, 0.4, 1.0])
        weight = node_u ** 8 * (degree >= 3)
        target = lambda: float(np.clip(rng.normal(8000, 1500), 5000, 12000)) * min(1.0, 1.4 * r_eq / 8000)
    if mode != "bus":  # rail lines start away from the centre and run through it
        cx, cy = city.territory.main_centre
        far = np.hypot(st.nodes[:, 0] - cx, st.nodes[:, 1] - cy) > 0.4 * r_eq
        if (weight * far).sum() > 0:
            weight = weight * far
    if weight.sum() <= 0:
        weight = np.ones(len(st.nodes))
    weight = weight / weight.sum()
    out = []
    for _ in range(count):
        best = None
        for attempt in range(6):
            start = int(rng.choice(len(weight), p=weight))
            want = target()
            sx, sy = st.nodes[start]
            cx, cy = city.territory.main_centre
            radial = mode != "bus" or rng.uniform() < 0.6  # most lines run through the centre
            if radial and np.hypot(cx - sx, cy - sy) > 100.0:
                heading = np.arctan2(cy - sy, cx - sx) + rng.normal(0, 0.4)
            else:
                heading = rng.uniform(0, 2 * np.pi)
            path, length = graph.walk(start, heading, want, bonus, rng)
            if path and (best is None or length > best[1]):
                best = (path, length)
            if length >= 0.6 * want:
                break
        if best is not None:
            out.append(graph.geometry(best[0]))
    return out


def stops_along(lines, spacing: float, offset: float, rng):
    """Stops every `spacing` metres along each route, shifted to the sidewalk; returns owner and points."""
    lines = np.asarray(lines, dtype=object)
    if len(lines) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=object)
    spacings = rng.uniform(0.8, 1.2, len(lines)) * spacing
    owner, pts, angle = points_along(lines, spacings, np.full(len(lines), 30.0), rng, jitter=0.15 * spacing)
    side = np.where(rng.uniform(size=len(owner)) < 0.5, 1.0, -1.0) * offset
    x = shapely.get_x(pts) - np.sin(angle) * side
    y = shapely.get_y(pts) + np.cos(angle) * side
    return owner, shapely.points(x, y)
