"""What stands inside the blocks: buildings, gardens and yards, parks, fields, forests, squares, car parks.

Every function takes the city model and returns plain arrays (geometries + attribute arrays); the layer
tables are assembled in synth_layers.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .synth_city import K, City
from .synth_common import clip_cells, ellipse_polygons, explode, l_polygons, lattice, rect_polygons, rng_for, with_hole


class Parts:
    """Geometries added in chunks with per-chunk attributes; missing attributes become None."""

    def __init__(self):
        self.chunks: list[tuple[np.ndarray, dict]] = []

    def add(self, geoms, **attrs):
        geoms = np.asarray(geoms, dtype=object)
        if len(geoms):
            self.chunks.append((geoms, attrs))

    def __len__(self) -> int:
        return sum(len(g) for g, _ in self.chunks)

    def finish(self):
        if not self.chunks:
            return np.empty(0, dtype=object), {}
        keys = list(dict.fromkeys(k for _, attrs in self.chunks for k in attrs))
        geoms = np.concatenate([g for g, _ in self.chunks])
        columns = {}
        for key in keys:
            parts = []
            for g, attrs in self.chunks:
                value = attrs.get(key)
                parts.append(np.broadcast_to(np.asarray(value, dtype=object), (len(g),)))
            columns[key] = np.concatenate(parts)
        return geoms, columns


def polygons_only(geoms, owner=None):
    """Single polygons of the given geometries (drops points/lines left by overlays), with their owner."""
    parts, idx = explode(geoms, owner)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0.5)
    return parts[keep], idx[keep]


def _thick_enough(geoms, min_area, min_width=2.0):
    area = shapely.area(geoms)
    perim = shapely.length(geoms)
    return (area >= min_area) & (area / np.maximum(perim, 1e-9) > min_width / 2)


@dataclass
class BlockContent:
    buildings: Parts
    eva: Parts  # gl_2015 family per polygon ("tree", "low", "natural", "agri", "forest", "artificial")
    parkings: Parts
    public: Parts  # typeespacepublic per polygon
    markets: Parts
    friches: Parts
    ponds: Parts


def _sel(city: City, *kinds) -> np.ndarray:
    return np.flatnonzero(np.isin(city.blocks.kind, [K[k] for k in kinds]))


def _lots(city: City, idx, lot_w, lot_h, rng, extra_angle=None, min_share=0.55):
    """Lots of a lattice over blocks `idx`, clipped to the buildable area (edge lots kept when big enough).

    Returns owner (position in idx), lot centre x/y, lot angle and the (clipped) lot polygons.
    """
    b = city.blocks
    geoms = b.buildable[idx]
    angle = b.angle[idx] if extra_angle is None else b.angle[idx] + extra_angle
    lot_w = np.broadcast_to(np.asarray(lot_w, dtype=float), (len(idx),))
    lot_h = np.broadcast_to(np.asarray(lot_h, dtype=float), (len(idx),))
    owner, x, y, lx, ly = lattice(geoms, angle, lot_w, lot_h, rng, local=True)
    lots = rect_polygons(x, y, lot_w[owner], lot_h[owner], angle[owner])
    shapely.prepare(geoms)
    hit = shapely.intersects(lots, geoms[owner])
    owner, x, y, lx, ly, lots = owner[hit], x[hit], y[hit], lx[hit], ly[hit], lots[hit]
    whole = shapely.within(lots, geoms[owner])
    clipped = lots.copy()
    part = ~whole
    clipped[part] = clip_cells(geoms[owner[part]], angle[owner[part]], lx[part], ly[part],
                               lot_w[owner[part]], lot_h[owner[part]])
    single = shapely.get_type_id(clipped) == 3
    big = shapely.area(clipped) >= min_share * lot_w[owner] * lot_h[owner]
    keep = whole | (single & big)
    return owner[keep], x[keep], y[keep], angle[owner][keep], clipped[keep]


def _fit(buildings, lots):
    """Only buildings that stand wholly inside their (possibly clipped) lot."""
    ok = np.zeros(len(buildings), dtype=bool)
    has = np.array([g is not None for g in buildings], dtype=bool)
    ok[has] = shapely.within(buildings[has], lots[has])
    return ok


def buildings_and_lots(city: City) -> BlockContent:
    seed = city.seed
    content = BlockContent(buildings=Parts(), eva=Parts(), parkings=Parts(), public=Parts(), markets=Parts(),
                           friches=Parts(), ponds=Parts())
    _dense(city, content, rng_for(seed, "blocks/dense"))
    _houses(city, content, rng_for(seed, "blocks/houses"))
    _collective(city, content, rng_for(seed, "blocks/collective"))
    _industrial(city, content, rng_for(seed, "blocks/industrial"))
    _sport(city, content, rng_for(seed, "blocks/sport"))
    _parks(city, content, rng_for(seed, "blocks/parks"))
    _countryside(city, content, rng_for(seed, "blocks/countryside"))
    _squares_parkings(city, content, rng_for(seed, "blocks/squares"))
    _delaisses(city, content, rng_for(seed, "blocks/delaisses"))
    return content


# ----------------------------------------------------------------------------------------------
def _dense(city: City, c: BlockContent, rng):
    """Courtyard blocks: a ring of terraced buildings along the streets, cut into plots."""
    idx = _sel(city, "dense")
    if len(idx) == 0:
        return
    b = city.blocks
    geoms = b.buildable[idx]
    depth = rng.uniform(10.0, 15.0, len(idx))
    inner = shapely.buffer(geoms, -depth, join_style="mitre")
    ring = shapely.difference(geoms, inner)
    plot = rng.uniform(10.0, 16.5, len(idx))
    angle = b.angle[idx]
    owner, x, y, lx, ly = lattice(geoms, angle, plot, plot, rng, local=True)
    cells = rect_polygons(x, y, plot[owner], plot[owner], angle[owner])
    # only the cells the ring crosses (one tree query), then a fast rectangle cut per cell
    c_idx, r_idx = shapely.STRtree(ring).query(cells, predicate="intersects")
    same = owner[c_idx] == r_idx
    r_idx, c_idx = r_idx[same], c_idx[same]
    pieces = clip_cells(ring[r_idx], angle[r_idx], lx[c_idx], ly[c_idx], plot[r_idx], plot[r_idx])
    pieces, src = polygons_only(pieces, r_idx)
    ok = _thick_enough(pieces, 60.0, 3.5) & (shapely.area(pieces) <= 2000.0)
    ok &= rng.uniform(size=len(pieces)) > 0.06  # passages, gaps between buildings
    pieces, src = pieces[ok], src[ok]
    n = len(pieces)
    usage = rng.choice(["Résidentiel", "Commercial et services", "Résidentiel"], n, p=[0.75, 0.15, 0.10])
    c.buildings.add(pieces, nature="Indifférenciée", usage_1=usage, hauteur=np.round(rng.uniform(10, 26, n), 1),
                    block=idx[src])
    court, court_idx = polygons_only(inner, np.arange(len(idx)))
    ok = _thick_enough(court, 40.0, 4.0)
    court, court_idx = court[ok], court_idx[ok]
    fam = rng.choice(["tree", "low", "artificial"], len(court), p=[0.35, 0.35, 0.30])
    c.eva.add(court, family=fam)


def _place_in_lots(x, y, angle, lot_w, lot_h, bw, bh, rng, l_share=0.0, front=True):
    """Buildings of size bw×bh inside lots (same frame), shifted towards the lot front; some L-shaped."""
    n = len(x)
    slack_h = np.maximum(lot_h - bh - 4.0, 0.0)
    shift = -slack_h / 2 + (rng.uniform(0.0, 0.35, n) * slack_h if front else rng.uniform(0, 1, n) * slack_h)
    slack_w = np.maximum(lot_w - bw - 3.0, 0.0)
    shift_w = (rng.uniform(0, 1, n) - 0.5) * slack_w
    cx = x + shift_w * np.cos(angle) - shift * np.sin(angle)
    cy = y + shift_w * np.sin(angle) + shift * np.cos(angle)
    is_l = rng.uniform(size=n) < l_share
    geoms = np.empty(n, dtype=object)
    if (~is_l).any():
        geoms[~is_l] = rect_polygons(cx[~is_l], cy[~is_l], bw[~is_l], bh[~is_l], angle[~is_l])
    if is_l.any():
        cw = bw[is_l] * rng.uniform(0.35, 0.55, is_l.sum())
        ch = bh[is_l] * rng.uniform(0.35, 0.55, is_l.sum())
        geoms[is_l] = l_polygons(cx[is_l], cy[is_l], bw[is_l], bh[is_l], angle[is_l], cw, ch)
    return geoms


def _houses(city: City, c: BlockContent, rng):
    idx = _sel(city, "houses")
    if len(idx) == 0:
        return
    b = city.blocks
    rural = b.u[idx] < 0.15
    lot_w = np.where(rural, rng.uniform(30, 45, len(idx)), rng.uniform(15, 20, len(idx)))
    lot_h = np.where(rural, rng.uniform(35, 50, len(idx)), rng.uniform(24, 32, len(idx)))
    owner, x, y, angle, lots = _lots(city, idx, lot_w, lot_h, rng)
    n = len(owner)
    lw, lh = lot_w[owner], lot_h[owner]
    occupied = rng.uniform(size=n) < np.where(rural[owner], 0.4, 0.92)
    barn = occupied & rural[owner] & (rng.uniform(size=n) < 0.35)
    bw = np.where(barn, rng.uniform(18, 30, n), rng.uniform(8, 13, n))
    bh = np.where(barn, rng.uniform(10, 16, n), rng.uniform(8, 12, n))
    bw, bh = np.minimum(bw, lw - 4), np.minimum(bh, lh - 6)
    occupied &= (bw * bh) >= 60
    candidates = _place_in_lots(x, y, angle, lw, lh, bw, bh, rng, l_share=0.15)
    occupied &= _fit(candidates, lots)
    houses = candidates[occupied]
    k = int(occupied.sum())
    is_barn = barn[occupied]
    c.buildings.add(houses, nature=np.where(is_barn, "Industriel, agricole ou commercial", "Indifférenciée"),
                    usage_1=np.where(is_barn, "Agricole", "Résidentiel"),
                    hauteur=np.round(np.where(is_barn, rng.uniform(5, 9, k), rng.uniform(4.5, 8.5, k)), 1),
                    block=idx[owner[occupied]])
    gardens = lots.copy()
    gardens[occupied] = with_hole(lots[occupied], houses)
    gardens, g_idx = polygons_only(gardens)
    # EVA has a minimum mapping unit: about a fifth of the private gardens are not in it
    ok = _thick_enough(gardens, 40.0, 3.0) & (rng.uniform(size=len(gardens)) < 0.8)
    gardens = gardens[ok]
    fam = rng.choice(["low", "tree", "low_garden"], len(gardens), p=[0.55, 0.2, 0.25])
    c.eva.add(gardens, family=fam)


def _collective(city: City, c: BlockContent, rng):
    idx = _sel(city, "collective")
    if len(idx) == 0:
        return
    turn = np.where(rng.uniform(size=len(idx)) < 0.5, 0.0, np.pi / 2)
    lot_w = rng.uniform(42, 58, len(idx))
    lot_h = rng.uniform(34, 46, len(idx))
    owner, x, y, angle, lots = _lots(city, idx, lot_w, lot_h, rng, extra_angle=turn)
    n = len(owner)
    lw, lh = lot_w[owner], lot_h[owner]
    form = rng.choice(["bar", "tower", "l"], n, p=[0.6, 0.15, 0.25])
    occupied = rng.uniform(size=n) < 0.75
    bar, tower = form == "bar", form == "tower"
    bw = np.select([bar, tower], [rng.uniform(22, 42, n), rng.uniform(15, 20, n)], rng.uniform(26, 38, n))
    bh = np.select([bar, tower], [rng.uniform(11, 14, n), rng.uniform(15, 20, n)], rng.uniform(22, 30, n))
    bw, bh = np.minimum(bw, lw - 6), np.minimum(bh, lh - 8)
    geoms = np.empty(n, dtype=object)
    plain = occupied & (form != "l")
    geoms[plain] = rect_polygons(x[plain], y[plain], bw[plain], bh[plain], angle[plain])
    ell = occupied & (form == "l")
    arm = rng.uniform(11, 14, n)
    geoms[ell] = l_polygons(x[ell], y[ell], bw[ell], bh[ell], angle[ell], bw[ell] - arm[ell], bh[ell] - arm[ell])
    occupied &= _fit(geoms, lots)
    k = int(occupied.sum())
    c.buildings.add(geoms[occupied], nature="Indifférenciée", usage_1="Résidentiel",
                    hauteur=np.round(np.where(tower[occupied], rng.uniform(30, 55, k), rng.uniform(12, 30, k)), 1),
                    block=idx[owner[occupied]])
    car_park = ~occupied & (rng.uniform(size=n) < 0.35)
    c.parkings.add(shapely.buffer(lots[car_park], -3.0, join_style="mitre"), context="residence")
    surround = lots.copy()
    surround[occupied] = with_hole(lots[occupied], geoms[occupied])
    green = ~car_park
    pieces, _ = polygons_only(surround[green])
    pieces = pieces[_thick_enough(pieces, 40.0, 3.0)]
    c.eva.add(pieces, family=rng.choice(["low", "tree", "artificial"], len(pieces), p=[0.55, 0.25, 0.2]))
    c.eva.add(shapely.buffer(lots[car_park], -3.0, join_style="mitre"), family="artificial")
    # playgrounds between the buildings of some estates
    play = ~occupied & ~car_park & (rng.uniform(size=n) < 0.35)
    k = int(play.sum())
    grounds = rect_polygons(x[play], y[play], rng.uniform(14, 24, k), rng.uniform(10, 18, k), angle[play])
    c.public.add(grounds, type="Aire de jeux", block=idx[owner[play]])


def _industrial(city: City, c: BlockContent, rng, kinds=("industrial",), occupancy=0.8, friche=False):
    idx = _sel(city, *kinds)
    if len(idx) == 0:
        return
    lot_w = rng.uniform(60, 80, len(idx))
    lot_h = rng.uniform(50, 70, len(idx))
    owner, x, y, angle, lots = _lots(city, idx, lot_w, lot_h, rng)
    n = len(owner)
    lw, lh = lot_w[owner], lot_h[owner]
    occupied = rng.uniform(size=n) < occupancy
    bw = np.minimum(rng.uniform(28, 55, n), lw - 8)
    bh = np.minimum(rng.uniform(22, 38, n), lh - 10)
    scale = np.sqrt(np.minimum(1.0, 1950.0 / (bw * bh)))
    bw, bh = bw * scale, bh * scale
    geoms = _place_in_lots(x, y, angle, lw, lh, bw, bh, rng, l_share=0.1, front=False)
    occupied &= _fit(geoms, lots)
    k = int(occupied.sum())
    usage = rng.choice(["Industriel", "Commercial et services"], k, p=[0.6, 0.4])
    c.buildings.add(geoms[occupied], nature="Industriel, agricole ou commercial", usage_1=usage,
                    hauteur=np.round(rng.uniform(6, 14, k), 1), block=idx[owner[occupied]])
    yard = lots.copy()
    yard[occupied] = with_hole(lots[occupied], geoms[occupied])
    car_park = ~occupied & (rng.uniform(size=n) < (0.1 if friche else 0.35))
    c.parkings.add(shapely.buffer(lots[car_park], -3.0, join_style="mitre"), context="activity")
    pieces, _ = polygons_only(yard[~car_park])
    pieces = pieces[_thick_enough(pieces, 40.0, 3.0)]
    fam = rng.choice(["natural", "low"], len(pieces), p=[0.7, 0.3]) if friche else \
        rng.choice(["artificial", "low", "tree"], len(pieces), p=[0.75, 0.17, 0.08])
    c.eva.add(pieces, family=fam)
    c.eva.add(shapely.buffer(lots[car_park], -3.0, join_style="mitre"), family="artificial")


def _sport(city: City, c: BlockContent, rng):
    idx = _sel(city, "sport")
    if len(idx) == 0:
        return
    owner, x, y, angle, lots = _lots(city, idx, 60.0, 60.0, rng)
    n = len(owner)
    gym = rect_polygons(x, y, rng.uniform(25, 40, n), rng.uniform(20, 32, n), angle)
    fits = _fit(gym, lots)
    # one gymnasium per block (its first lot that can hold it), sports grounds elsewhere
    cand = np.flatnonzero(fits)
    first = np.zeros(n, dtype=bool)
    first[cand[np.r_[True, owner[cand][1:] != owner[cand][:-1]]] if len(cand) else []] = True
    c.buildings.add(gym[first], nature="Indifférenciée", usage_1="Sportif",
                    hauteur=np.round(rng.uniform(8, 12, int(first.sum())), 1), block=idx[owner[first]])
    c.eva.add(with_hole(lots[first], gym[first]), family="artificial")
    c.eva.add(lots[~first], family="lawn")


def _points_inside(geoms, counts, rng):
    """Random points inside each polygon (vectorised rejection sampling); returns owner, x, y."""
    geoms = np.asarray(geoms, dtype=object)
    counts = np.asarray(counts, dtype=np.int64)
    b = shapely.bounds(geoms)
    ratio = np.clip(shapely.area(geoms) / np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9), 0.02, 1.0)
    shapely.prepare(geoms)
    need = counts.copy()
    owners, xs, ys = [], [], []
    for _ in range(30):
        want = np.ceil(need / ratio * 1.5).astype(np.int64) + np.where(need > 0, 2, 0)
        owner = np.repeat(np.arange(len(geoms)), want)
        x = rng.uniform(b[owner, 0], b[owner, 2])
        y = rng.uniform(b[owner, 1], b[owner, 3])
        ok = shapely.contains_xy(geoms[owner], x, y)
        owner, x, y = owner[ok], x[ok], y[ok]
        # keep at most need[i] per polygon
        per = np.bincount(owner, minlength=len(geoms))
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)
        keep = rank < need[owner]
        owners.append(owner[keep]); xs.append(x[keep]); ys.append(y[keep])
        need = need - np.bincount(owner[keep], minlength=len(geoms))
        if not need.any():
            break
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    return owner[order], np.concatenate(xs)[order], np.concatenate(ys)[order]


def _mosaic(geoms, n_cells, rng):
    """Split each polygon into Voronoi patches (vegetation mosaics of parks and gardens)."""
    owner, x, y = _points_inside(geoms, n_cells, rng)
    if len(owner) == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    mp = shapely.multipoints(np.column_stack([x, y]), indices=owner)
    holders = np.unique(owner)
    env = shapely.buffer(shapely.envelope(geoms[holders]), 50.0)
    vor = shapely.voronoi_polygons(mp, extend_to=env)
    cells, cell_idx = shapely.get_parts(vor, return_index=True)
    parent = holders[cell_idx]
    pieces = shapely.intersection(cells, geoms[parent])
    return polygons_only(pieces, parent)


def _ponds(geoms, share, rng, min_area):
    """Ponds inside some polygons; returns the pond polygons and the polygons minus their pond."""
    geoms = np.asarray(geoms, dtype=object)
    pick = (shapely.area(geoms) > min_area) & (rng.uniform(size=len(geoms)) < share)
    idx = np.flatnonzero(pick)
    if len(idx) == 0:
        return np.empty(0, dtype=object), geoms
    owner, x, y = _points_inside(geoms[idx], np.ones(len(idx), dtype=np.int64), rng)
    a = rng.uniform(15, 55, len(owner))
    ponds = ellipse_polygons(x, y, a, a * rng.uniform(0.4, 0.8, len(owner)), rng.uniform(0, np.pi, len(owner)))
    inside = shapely.within(ponds, geoms[idx[owner]])
    ponds, holder = ponds[inside], idx[owner[inside]]
    rest = geoms.copy()
    rest[holder] = shapely.difference(geoms[holder], ponds)
    return ponds, rest


def _parks(city: City, c: BlockContent, rng):
    idx = _sel(city, "park")
    if len(idx) == 0:
        return
    b = city.blocks
    parks = b.buildable[idx]
    ponds, land = _ponds(parks, 0.3, rng, 20_000.0)
    c.ponds.add(ponds, nature="Étang")
    area = shapely.area(land)
    # a playground in most parks, carved out of the park like the real data's interior rings
    play = (area > 4000.0) & (rng.uniform(size=len(idx)) < 0.6)
    owner, x, y = _points_inside(land[play], np.ones(play.sum(), dtype=np.int64), rng)
    p_idx = np.flatnonzero(play)[owner]
    grounds = rect_polygons(x, y, rng.uniform(16, 30, len(owner)), rng.uniform(12, 22, len(owner)), b.angle[idx][p_idx])
    inside = shapely.within(grounds, land[p_idx])
    grounds, p_idx = grounds[inside], p_idx[inside]
    land_public = land.copy()
    land_public[p_idx] = shapely.difference(land[p_idx], grounds)
    c.public.add(land_public, type="Parc / jardin public / square", block=idx)
    c.public.add(grounds, type="Aire de jeux", block=idx[p_idx])
    cells, _ = _mosaic(land, np.clip(area / 3000.0, 2, 30).astype(np.int64), rng)
    c.eva.add(cells, family=rng.choice(["tree", "lawn", "low", "natural"], len(cells), p=[0.45, 0.3, 0.15, 0.1]))


def _countryside(city: City, c: BlockContent, rng):
    b = city.blocks
    # Fields: a lattice of parcels cut by the block outline.
    idx = _sel(city, "agri")
    if len(idx):
        ponds, land = _ponds(b.buildable[idx], 0.05, rng, 60_000.0)
        c.ponds.add(ponds, nature="Retenue")
        pw, ph = rng.uniform(120, 260, len(idx)), rng.uniform(70, 180, len(idx))
        ang = b.angle[idx]
        owner, _, _, lx, ly = lattice(land, ang, pw, ph, rng, local=True)
        pieces, _ = polygons_only(clip_cells(land[owner], ang[owner], lx, ly, pw[owner], ph[owner]))
        pieces = pieces[_thick_enough(pieces, 200.0, 6.0)]
        c.eva.add(pieces, family="agri")
    idx = _sel(city, "forest")
    if len(idx):
        ponds, land = _ponds(b.buildable[idx], 0.1, rng, 40_000.0)
        c.ponds.add(ponds, nature="Étang")
        s = rng.uniform(220, 380, len(idx))
        ang = b.angle[idx] + 0.3
        owner, _, _, lx, ly = lattice(land, ang, s, s, rng, local=True)
        pieces, _ = polygons_only(clip_cells(land[owner], ang[owner], lx, ly, s[owner], s[owner]))
        pieces = pieces[_thick_enough(pieces, 200.0, 6.0)]
        c.eva.add(pieces, family="forest")
    idx = _sel(city, "meadow")
    if len(idx):
        pieces, _ = polygons_only(b.buildable[idx])
        c.eva.add(pieces, family=rng.choice(["natural", "low"], len(pieces), p=[0.6, 0.4]))
    # Brownfields: a few derelict buildings, spontaneous vegetation, and a Cartofriches site.
    _industrial(city, c, rng, kinds=("friche",), occupancy=0.3, friche=True)
    idx = _sel(city, "friche")
    extra = _sel(city, "industrial")
    extra = extra[rng.uniform(size=len(extra)) < 0.04]
    sites = np.concatenate([idx, extra])
    c.friches.add(b.buildable[sites], block=sites, reused=np.isin(sites, extra))


def _squares_parkings(city: City, c: BlockContent, rng):
    b = city.blocks
    idx = _sel(city, "square")
    if len(idx):
        geoms = b.buildable[idx]
        kind = rng.choice(["Place", "Espace piétonnier", "Parvis", "Esplanade", "Aire de jeux"], len(idx),
                          p=[0.4, 0.35, 0.1, 0.08, 0.07])
        c.public.add(geoms, type=kind, block=idx)
        c.eva.add(geoms, family="artificial")
        market = rng.uniform(size=len(idx)) < 0.25
        c.markets.add(shapely.buffer(geoms[market], -3.0, join_style="mitre"), block=idx[market])
    idx = _sel(city, "parking")
    if len(idx):
        geoms = b.buildable[idx]
        c.parkings.add(geoms, context="block", block=idx)
        public = rng.uniform(size=len(idx)) < 0.5
        c.public.add(geoms[public], type="Parking", block=idx[public])
        c.eva.add(geoms, family="artificial")


def _delaisses(city: City, c: BlockContent, rng):
    b = city.blocks
    idx = _sel(city, "delaisse")
    if len(idx) == 0:
        return
    geoms = b.buildable[idx]
    area = shapely.area(geoms)
    ok = area >= 30.0
    idx, geoms = idx[ok], geoms[ok]
    public = rng.uniform(size=len(idx)) < 0.7
    c.public.add(geoms[public], type="Délaissé / Ilot végétalisé", block=idx[public])
    green = rng.uniform(size=len(idx)) < 0.7
    c.eva.add(geoms[green], family=rng.choice(["low", "natural", "tree"], green.sum(), p=[0.5, 0.3, 0.2]))
