"""Assemble the 29 source layers of the catalogue from the synthetic city model, with real-looking schemas."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import synth_streets as ss
from .synth_blocks import buildings_and_lots, polygons_only
from .synth_city import ARTERIAL, COLLECTOR, K, City
from .synth_common import ensure_values, frame, null_text, rect_polygons, rng_for, text_column

EPCI_CODE = "200046977"
EPCI_NAME = "Métropole de Lyon"

# The 38 attributes of the real public-spaces file, in its order.
ESPACE_PUBLIC_FIELDS = [
    "accessibilite", "anneelivraison", "codefuv1", "codefuv2", "commentairemateriaux", "commune1", "commune2",
    "conventiongestion", "datelivraison", "detailconvention", "directionmoa", "doma", "estvalide",
    "gvscommentaire", "gvsniveauqualite", "gvssurface", "gvstypeintervenant", "idespacepublic", "idmetier",
    "maitreoeuvre", "nbabaissement", "nbbandepodotactile", "nbbarriere", "nbpotelet", "nbtraverseepietonne",
    "nbtraverseeprotegee", "nettoiementmecanise", "nom", "observation", "prioritevoirie", "revetementprincipal",
    "revetementsecondaire", "strategiemobilier", "surface", "surfacecalc", "surfacepermeable", "typeespacepublic",
    "typemobiliermajoritaire",
]

# Genus -> (species, French name, weight). Real street-tree genera of French cities.
GENERA = {
    "Platanus": ("x hispanica", "Platane commun", 18), "Acer": ("platanoides", "Erable plane", 14),
    "Tilia": ("tomentosa", "Tilleul argenté", 11), "Celtis": ("australis", "Micocoulier de Provence", 8),
    "Fraxinus": ("excelsior", "Frêne commun", 7), "Prunus": ("serrulata", "Cerisier du Japon", 7),
    "Quercus": ("robur", "Chêne pédonculé", 5), "Pinus": ("nigra", "Pin noir d'Autriche", 4),
    "Carpinus": ("betulus", "Charme commun", 5), "Styphnolobium": ("japonicum", "Sophora du Japon", 4),
    "Gleditsia": ("triacanthos", "Févier d'Amérique", 3), "Liquidambar": ("styraciflua", "Copalme d'Amérique", 3),
    "Pyrus": ("calleryana", "Poirier de Chine", 3), "Ginkgo": ("biloba", "Arbre aux quarante écus", 2),
    "Betula": ("pendula", "Bouleau verruqueux", 2), "Aesculus": ("hippocastanum", "Marronnier d'Inde", 3),
    "Robinia": ("pseudoacacia", "Robinier faux-acacia", 2), "Koelreuteria": ("paniculata", "Savonnier", 1),
    "Zelkova": ("serrata", "Zelkova du Japon", 1), "Ulmus": ("resistant", "Orme résistant", 2),
}
FREE_SPOT, STUMP = "Emplacement libre", "Souche"
NAME_PARTS = ["des Tilleuls", "des Platanes", "du Moulin", "de la Source", "des Lilas", "du Marché", "de la Gare",
              "des Écoles", "du Stade", "des Cèdres", "de l'Église", "des Vignes", "du Château", "des Peupliers",
              "de la Fontaine", "des Acacias", "du Lavoir", "des Jardins", "de la Poste", "des Marronniers"]

# How each layer's features are identified (the writer pages WFS layers by gid; BD TOPO by cleabs).
ID_FIELDS = {"batiments_bdtopo": "cleabs", "espaces_publics": "idespacepublic",
             "parkings_surfaciques": "idparkingsurfacique"}


def _names(rng, prefixes, n) -> np.ndarray:
    pre = rng.choice(np.asarray(prefixes, dtype=object), n)
    suf = rng.choice(np.asarray(NAME_PARTS, dtype=object), n)
    return np.array([f"{a} {b}" for a, b in zip(pre, suf)], dtype=object)


def _multi(geoms) -> np.ndarray:
    """Each polygon as a one-part MultiPolygon (like the voirie service's files)."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms
    single = shapely.get_type_id(geoms) == 3
    out = geoms.copy()
    out[single] = shapely.multipolygons(geoms[single], indices=np.arange(single.sum()))
    return out


def _multiline(geoms) -> np.ndarray:
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms
    single = shapely.get_type_id(geoms) == 1
    out = geoms.copy()
    out[single] = shapely.multilinestrings(geoms[single], indices=np.arange(single.sum()))
    return out


class Builder:
    def __init__(self, city: City, catalogue):
        self.city = city
        self.cat = catalogue
        self.t = city.territory
        self.layers: dict[str, gpd.GeoDataFrame] = {}

    def rng(self, name):
        return rng_for(self.city.seed, f"layer/{name}")

    def communes(self, geoms):
        idx = self.t.commune_of(geoms)
        return self.t.codes[idx], self.t.names[idx]

    # ------------------------------------------------------------------------------------------
    def build(self) -> dict[str, gpd.GeoDataFrame]:
        content = buildings_and_lots(self.city)
        self.content = content
        self.trees = ss.tree_rows(self.city, self.rng("trees_rows"))
        self.graph = ss.StreetGraph(self.city)
        steps = [
            self.arbres_alignement, self.aerodromes, self.parkings_surfaciques, self.entrees_parking,
            self.slt_materiel, self.stations_velov, self.transit, self.batiments_bdtopo, self.cartofriches,
            self.networks, self.espaces_publics, self.marches_forains, self.amenagements_cyclables,
            self.plans_eau, self.ponts, self.voies_ferrees, self.eva_2015, self.places_pmr,
            self.stations_autopartage, self.qpv,
        ]
        for step in steps:
            step()
        self.ensure_filter_values()
        return {slug: self.layers[slug] for slug in self.cat.sources}

    # ------------------------------------------------------------------------------------------
    def arbres_alignement(self):
        rng = self.rng("arbres_alignement")
        tr = self.trees
        n = len(tr.points)
        if n == 0:  # a territory without any tree-lined street still gets one tree
            st = self.city.streets
            s = int(np.argmax(st.u))
            tr.points = np.array([shapely.line_interpolate_point(st.geoms[s], 0.5, normalized=True)], dtype=object)
            tr.segment, tr.row = np.array([s]), np.array([0])
            n = 1
        genera = list(GENERA)
        weights = np.array([GENERA[g][2] for g in genera], dtype=float)
        row_genus = rng.choice(len(genera), tr.row.max() + 1, p=weights / weights.sum())
        genus_idx = row_genus[tr.row]
        mixed = rng.uniform(size=n) < 0.12  # replanted trees are not always the row's species
        genus_idx[mixed] = rng.choice(len(genera), mixed.sum(), p=weights / weights.sum())
        genre = np.array(genera, dtype=object)[genus_idx]
        espece = np.array([GENERA[g][0] for g in genera], dtype=object)[genus_idx]
        french = np.array([GENERA[g][1] for g in genera], dtype=object)[genus_idx]
        draw = rng.uniform(size=n)
        free, stump = draw < 0.05, (draw >= 0.05) & (draw < 0.07)
        genre[free], genre[stump] = FREE_SPOT, STUMP
        espece[free | stump] = None
        french[free], french[stump] = FREE_SPOT, STUMP
        year = rng.integers(1955, 2025, n)
        age = 2025 - year
        circ = np.clip(rng.normal(25 + 3.2 * age, 12 + 0.4 * age), 12, 420)
        height = np.clip(2.5 + circ / 11 + rng.normal(0, 1.5, n), 2, 35)
        crown = np.clip(1 + circ / 28 + rng.normal(0, 0.8, n), 1, 20)
        circ = np.round(circ, 0)
        draw = rng.uniform(size=n)
        circ[draw < 0.03] = np.nan  # not measured
        circ[(draw >= 0.03) & (draw < 0.04)] = 0.0  # measured as 0 in the inventory
        huge = (draw >= 0.04) & (draw < 0.041)  # typing errors beyond any real trunk
        circ[huge] = rng.uniform(1000, 1500, huge.sum()).round()
        height[free] = np.nan
        crown[free] = np.nan
        year_col = pd.array(np.where(free, 0, year), dtype="Int64")
        year_col[free] = pd.NA
        insee, nom = self.communes(tr.points)
        self.layers["arbres_alignement"] = frame({
            "identifiant": np.arange(1, n + 1) + 100000,
            "genre": text_column(genre), "espece": text_column(espece), "essencefrancais": text_column(french),
            "circonference_cm": circ.astype(float), "hauteurtotale_m": np.round(height, 1),
            "diametrecouronne_m": np.round(crown, 1), "anneeplantation": year_col,
            "codeinsee": text_column(insee), "commune": text_column(nom),
        }, tr.points)

    def aerodromes(self):
        geom = self.city.structures.aerodrome
        parts, _ = polygons_only(np.array([geom], dtype=object))
        geom = parts[np.argmax(shapely.area(parts))] if len(parts) else geom
        insee, nom = self.communes([geom])
        self.layers["aerodromes"] = frame({
            "nom": text_column([f"Aérodrome synthétique de {nom[0]}"]), "typeaerodrome": text_column(["Aérodrome"]),
            "insee": text_column(insee), "commune": text_column(nom),
        }, np.array([geom], dtype=object))

    def parkings_surfaciques(self):
        rng = self.rng("parkings_surfaciques")
        geoms, attrs = self.content.parkings.finish()
        geoms, _ = polygons_only(geoms)
        geoms = geoms[shapely.area(geoms) >= 100.0]
        if len(geoms) == 0:
            geoms = self._fallback_square(rng, 40.0, 25.0)
        n = len(geoms)
        _, nom = self.communes(geoms)
        names = [f"Parking {p}" for p in _names(rng, ["de la Place", "du Centre", "Rue", "Avenue"], n)]
        valid = rng.choice(["En cours de mise à jour", "Validé"], n, p=[0.7, 0.3])
        self.layers["parkings_surfaciques"] = frame({
            "idparkingsurfacique": np.arange(1, n + 1, dtype=np.int64) + 2000,
            "nom": text_column(names), "idmetier": text_column([f"P{k}" for k in rng.integers(100, 999, n)]),
            "estvalide": text_column(valid),
        }, _multi(geoms), gid=False)

    def _fallback_square(self, rng, w, h):
        """A last-resort feature on the busiest street corner (tiny territories must not leave a layer empty)."""
        st = self.city.streets
        s = int(np.argmax(st.u))
        p = shapely.line_interpolate_point(st.geoms[s], 0.5, normalized=True)
        d = st.dir_a[s]
        off = st.row_half[s] + h / 2 + 1
        return rect_polygons([p.x - d[1] * off], [p.y + d[0] * off], [w], [h], [np.arctan2(d[1], d[0])])

    def entrees_parking(self):
        rng = self.rng("entrees_parking")
        b = self.city.blocks
        st = self.city.streets
        idx = np.flatnonzero((b.kind == K["parking"]) & (b.u > 0.3))
        ring = shapely.boundary(b.buildable[idx])
        pts_block = shapely.line_interpolate_point(ring, rng.uniform(0, 1, len(idx)), normalized=True)
        p = np.where((st.u > 0.55) & (st.cls >= COLLECTOR), 0.015 * st.u, 0.0)
        if not len(idx) and not (p > 0).any():
            p = np.where(st.u == st.u.max(), 1.0, 0.0)
        _, pts_under = ss.sidewalk_points(self.city, p, rng, extra=0.5)
        pts = np.concatenate([pts_block, pts_under])
        kind = np.concatenate([np.full(len(pts_block), "Entrée/Sortie"),
                               rng.choice(["Entrée", "Sortie", "Entrée/Sortie"], len(pts_under))])
        if len(pts) == 0:
            pts = np.array([self._fallback_square(rng, 2, 2)[0].centroid], dtype=object)
            kind = np.array(["Entrée"], dtype=object)
        n = len(pts)
        insee, nom = self.communes(pts)
        self.layers["entrees_parking"] = frame({
            "nom": text_column([f"Parking {k}" for k in _names(rng, ["Saint-Pierre", "Gare", "Centre", "Halles"], n)]),
            "typeentree": text_column(kind), "idparking": rng.integers(1, 300, n),
            "insee": text_column(insee), "commune": text_column(nom),
        }, pts)

    def slt_materiel(self):
        rng = self.rng("slt_materiel")
        pts, junction, kind = ss.traffic_lights(self.city, rng)
        if len(pts) == 0:
            st = self.city.streets
            node = st.node_a[int(np.argmax(st.u))]
            pts = shapely.points(st.nodes[[node]] + 8.0)
            junction, kind = np.array([node]), np.array(["Feu tricolore"], dtype=object)
        insee, nom = self.communes(pts)
        self.layers["slt_materiel"] = frame({
            "typemateriel": text_column(kind), "idcarrefour": junction.astype(np.int64) + 1,
            "etat": text_column(np.full(len(pts), "En service")), "insee": text_column(insee),
            "commune": text_column(nom),
        }, pts)

    def stations_velov(self):
        rng = self.rng("stations_velov")
        st = self.city.streets
        p = np.where(st.u > 0.45, 0.03 * np.clip((st.u - 0.45) / 0.55, 0, 1) ** 0.7, 0.0) * ~st.bridge
        if not (p > 0).any():
            p = np.where(st.u == st.u.max(), 1.0, 0.0)
        _, pts = ss.sidewalk_points(self.city, p, rng)
        if len(pts) == 0:
            s = int(np.argmax(p))
            pts = np.array([shapely.line_interpolate_point(st.geoms[s], 0.5, normalized=True)], dtype=object)
        n = len(pts)
        insee, nom = self.communes(pts)
        ids = np.arange(1, n + 1) + 10000
        self.layers["stations_velov"] = frame({
            "idstation": ids,
            "nom": text_column([f"{i} - {x}" for i, x in zip(ids, _names(rng, ["Place", "Rue", "Avenue"], n))]),
            "nbbornettes": rng.integers(12, 40, n), "code_insee": text_column(insee), "commune": text_column(nom),
        }, pts)

    def transit(self):
        rng = self.rng("transit")
        area_km2 = self.t.area / 1e6
        counts = {"metro": max(1, int(round(area_km2 / 130))), "tram": max(1, int(round(area_km2 / 75))),
                  "bus": max(2, int(round(0.24 * area_km2)))}
        names = {"metro": list("ABCDEFGH"), "tram": [f"T{k}" for k in range(1, 20)]}
        for mode in ("metro", "tram", "bus"):
            lines = ss.routes(self.city, self.graph, mode, counts[mode], self.rng(f"routes/{mode}"))
            if not lines:  # a street network too small to walk: the longest street is the line
                st = self.city.streets
                lines = [st.geoms[int(np.argmax(st.length * (1 + st.cls)))]]
            n = len(lines)
            if mode == "bus":
                code = [f"C{k}" if k <= max(1, n // 10) else str(k) for k in range(1, n + 1)]
            else:
                code = names[mode][:n] + [f"{mode[0].upper()}{k}" for k in range(len(names[mode]) + 1, n + 1)]
            origin = _names(rng, ["Gare", "Place", "Parc", "Centre"], n)
            dest = _names(rng, ["Gare", "Place", "Parc", "Hôpital"], n)
            geoms = np.array(lines, dtype=object)
            self.layers[f"lignes_{mode}"] = frame({
                "ligne": text_column(code), "code_trace": text_column([f"{c}A" for c in code]),
                "sens": text_column(np.full(n, "Aller")), "nom_origine": text_column(origin),
                "nom_destination": text_column(dest),
                "famille_transport": text_column(np.full(n, {"metro": "METRO", "tram": "TRAM", "bus": "BUS"}[mode])),
                "longueur": np.round(shapely.length(geoms), 1),
            }, geoms)
        points, serves = [], []
        for mode, spacing, offset in (("metro", 750.0, 4.5), ("tram", 500.0, 4.5), ("bus", 320.0, 4.5)):
            layer = self.layers[f"lignes_{mode}"]
            owner, pts = ss.stops_along(layer.geometry.to_numpy(), spacing, offset, self.rng(f"stops/{mode}"))
            points.append(pts)
            serves.append(layer["ligne"].to_numpy(dtype=object)[owner])
        pts = np.concatenate(points)
        serves = np.concatenate(serves)
        # lines sharing a stop: keep one stop every ~35 m
        key = np.round(shapely.get_coordinates(pts) / 35.0).astype(np.int64)
        _, first = np.unique(key, axis=0, return_index=True)
        first = np.sort(first)
        pts, serves = pts[first], serves[first]
        n = len(pts)
        insee, nom = self.communes(pts)
        self.layers["arrets_tcl"] = frame({
            "id": np.arange(1, n + 1) + 30000, "nom": text_column(_names(rng, ["Arrêt", "Place", "Gare", "Rue"], n)),
            "desserte": text_column([f"{s}:A" for s in serves]), "pmr": rng.uniform(size=n) < 0.8,
            "ascenseur": rng.uniform(size=n) < 0.05, "escalator": rng.uniform(size=n) < 0.03,
            "insee": text_column(insee), "commune": text_column(nom),
        }, pts)

    def batiments_bdtopo(self):
        rng = self.rng("batiments_bdtopo")
        geoms, attrs = self.content.buildings.finish()
        area = shapely.area(geoms)
        ok = (shapely.get_type_id(geoms) == 3) & (area >= 60.0) & (area <= 2000.0) & shapely.is_valid(geoms)
        geoms = geoms[ok]
        attrs = {k: v[ok] for k, v in attrs.items()}
        n = len(geoms)
        if n == 0:
            geoms = self._fallback_square(rng, 12.0, 10.0)
            attrs = {"nature": np.array(["Indifférenciée"], dtype=object),
                     "usage_1": np.array(["Résidentiel"], dtype=object), "hauteur": np.array([7.0], dtype=object)}
            n = 1
        ids = 312_000_000 + np.cumsum(rng.integers(1, 40, n))
        hauteur = attrs["hauteur"].astype(float)
        floors = np.maximum(1, np.round(hauteur / 3.0)).astype(np.int64)
        self.layers["batiments_bdtopo"] = frame({
            "cleabs": text_column([f"BATIMENT{v:016d}" for v in ids]),
            "nature": text_column(attrs["nature"]), "usage_1": text_column(attrs["usage_1"]),
            "usage_2": null_text(n), "construction_legere": np.zeros(n, dtype=bool),
            "hauteur": hauteur, "nombre_d_etages": floors,
            "etat_de_l_objet": text_column(np.full(n, "En service")),
        }, geoms, gid=False)

    def cartofriches(self):
        rng = self.rng("cartofriches")
        geoms, attrs = self.content.friches.finish()
        geoms, _ = polygons_only(geoms)
        geoms = geoms[shapely.area(geoms) >= 200.0]
        if len(geoms) == 0:
            b = self.city.blocks
            usable = [K[k] for k in ("industrial", "houses", "agri", "meadow", "collective")]
            cand = np.flatnonzero(np.isin(b.kind, usable))
            cand = cand if len(cand) else np.arange(len(b.kind))
            pick = cand[np.argmin(np.abs(shapely.area(b.buildable[cand]) - 8000.0))]
            geoms, _ = polygons_only(np.array([b.buildable[pick]], dtype=object))
            geoms = geoms[:1]
        n = len(geoms)
        insee, nom = self.communes(geoms)
        site_type = rng.choice(["friche industrielle", "friche commerciale", "friche d'habitat", "friche ferroviaire",
                                "friche logistique"], n, p=[0.45, 0.2, 0.15, 0.1, 0.1])
        self.layers["cartofriches"] = frame({
            "site_id": text_column([f"{c}_{k:04d}" for c, k in zip(insee, range(1, n + 1))]),
            "site_nom": text_column([f"Friche synthétique {k}" for k in range(1, n + 1)]),
            "code_insee": text_column(insee), "comm_nom": text_column(nom),
            "surface": np.round(shapely.area(geoms)).astype(np.int64), "site_type": text_column(site_type),
            "site_statut": text_column(
                rng.choice(["friche sans projet", "friche avec projet", "friche potentielle"], n)),
        }, _multi(geoms))

    def networks(self):
        city = self.city
        specs = [
            ("assainissement", "sanitation"), ("ore_gaz", "gas"), ("ore_bt_souterrain", "lv_underground"),
            ("ore_bt_aerien", "lv_aerial"), ("reseau_fibre_thd", "fibre"), ("fibre_genie_civil", "fibre_civil"),
            ("reseau_chaleur", "heat"),
        ]
        for slug, name in specs:
            rng = self.rng(slug)
            _, lines = ss.network(city, name, rng)
            if len(lines) == 0:  # every layer non-empty: the busiest street carries it
                s = int(np.argmax(city.streets.u * (city.streets.cls + 1)))
                lines = ss.offset_lines(city, np.array([s]), np.array([1.0]))
            n = len(lines)
            insee, nom = self.communes(lines)
            length = np.round(shapely.length(lines), 2)
            if slug == "assainissement":
                kind = rng.choice(["Unitaire", "Eaux usées", "Eaux pluviales"], n, p=[0.6, 0.22, 0.18])
                cols = {"typereseau": text_column(kind),
                        "diametre": rng.choice([200, 300, 400, 500, 600, 800, 1000, 1200], n),
                        "materiau": text_column(rng.choice(["Béton", "Grès", "Fonte", "PVC", "Maçonnerie"], n)),
                        "insee": text_column(insee), "longueur": length}
                lines = _multiline(lines)
            elif slug.startswith("ore_"):
                cols = {"code_insee": text_column(insee), "nom_commune": text_column(nom),
                        "code_epci": text_column(np.full(n, EPCI_CODE)), "nom_epci": text_column(np.full(n, EPCI_NAME)),
                        "code_departement": text_column([c[:2] for c in insee])}
                if slug == "ore_gaz":
                    material = rng.choice(["PE", "Acier", "Fonte ductile", "Cuivre"], n, p=[0.6, 0.25, 0.1, 0.05])
                    cols.update(materiau=text_column(material),
                                diametre=rng.choice([40, 63, 110, 160, 200], n),
                                pression=text_column(rng.choice(["BP", "MPB", "MPC"], n, p=[0.3, 0.6, 0.1])))
                else:
                    cols.update(tension=text_column(np.full(n, "BT")),
                                nature=text_column(np.full(n, "Aérien" if slug == "ore_bt_aerien" else "Souterrain")))
                    if slug == "ore_bt_aerien":
                        cols["type_conducteur"] = text_column(rng.choice(["Torsadé", "Nu"], n, p=[0.8, 0.2]))
            elif slug == "reseau_chaleur":
                cols = {"reseau": text_column(np.full(n, "Réseau de chaleur synthétique")),
                        "diametre": rng.choice([80, 100, 150, 200, 300, 400], n),
                        "typecanalisation": text_column(rng.choice(["Aller", "Retour", "Aller/Retour"], n)),
                        "insee": text_column(insee), "longueur": length}
            else:
                owner = "Grand Lyon THD" if slug == "reseau_fibre_thd" else "Métropole de Lyon"
                infra = rng.choice(["Fourreau", "Chambre-fourreau", "Aérien"], n, p=[0.7, 0.2, 0.1])
                cols = {"proprietaire": text_column(np.full(n, owner)), "typeinfra": text_column(infra),
                        "insee": text_column(insee), "longueur": length}
            self.layers[slug] = frame(cols, lines)

    def espaces_publics(self):
        rng = self.rng("espaces_publics")
        city = self.city
        st = city.streets
        geoms, attrs = self.content.public.finish()
        kinds = attrs.get("type", np.empty(0, dtype=object))
        extra_g, extra_k = [], []
        # roundabouts at busy suburban junctions
        ends = np.concatenate([st.node_a, st.node_b])
        seg = np.concatenate([np.arange(len(st.geoms))] * 2)
        degree = np.bincount(ends, minlength=len(st.nodes))
        top = np.zeros(len(st.nodes), dtype=np.int64)
        np.maximum.at(top, ends, st.cls[seg])
        node_u = np.zeros(len(st.nodes))
        np.maximum.at(node_u, ends, st.u[seg])
        pick = (degree >= 4) & (top >= COLLECTOR) & (node_u > 0.1) & (node_u < 0.8)
        pick &= rng.uniform(size=len(st.nodes)) < 0.5
        if not pick.any():
            pick[np.argmax(np.where(degree >= 3, top + node_u, -1))] = True
        radius = np.where(top[pick] >= ARTERIAL, rng.uniform(10, 16, pick.sum()), rng.uniform(6, 10, pick.sum()))
        rounds = shapely.buffer(shapely.points(st.nodes[pick]), radius, quad_segs=8)
        extra_g.append(rounds)
        extra_k.append(np.full(len(rounds), "Giratoire", dtype=object))
        self.roundabouts = rounds
        # pedestrian streets in the centres
        ped = (st.cls == 1) & (st.u > 0.6) & ~st.bridge & (rng.uniform(size=len(st.geoms)) < 0.12)
        if not ped.any():
            ped[np.argmax(np.where(st.cls == 1, st.u, -1))] = True
        ped_g = shapely.buffer(st.geoms[ped], st.row_half[ped] - 0.5, cap_style="flat", join_style="mitre")
        extra_g.append(ped_g)
        extra_k.append(rng.choice(np.array(["Voie piétonne", "Espace piétonnier"], dtype=object), len(ped_g)))
        self.pedestrian = ped_g
        geoms = np.concatenate([geoms] + extra_g)
        kinds = np.concatenate([kinds] + extra_k)
        geoms, src = polygons_only(geoms)
        kinds = kinds[src]
        keep = shapely.area(geoms) >= 20.0
        geoms, kinds = geoms[keep], kinds[keep]
        n = len(geoms)
        _, nom = self.communes(geoms)
        prefix = {"Parc / jardin public / square": ["Parc", "Square", "Jardin"], "Place": ["Place"],
                  "Espace piétonnier": ["Place", "Mail", "Passage"], "Voie piétonne": ["Rue"], "Parvis": ["Parvis"],
                  "Esplanade": ["Esplanade"], "Aire de jeux": ["Aire de jeux"], "Giratoire": ["Giratoire"],
                  "Parking": ["Parking"], "Délaissé / Ilot végétalisé": ["Ilot"]}
        names = np.empty(n, dtype=object)
        for kind, pre in prefix.items():
            sel = kinds == kind
            names[sel] = _names(rng, pre, sel.sum())
        names[pd.isna(names)] = "Espace public"
        data = {f: null_text(n) for f in ESPACE_PUBLIC_FIELDS}
        data.update({
            "codefuv1": text_column(rng.integers(10000, 39999, n).astype(str)),
            "commune1": text_column([str(x).upper() for x in nom]),
            "doma": text_column(rng.choice(["Métropole", "Commune"], n, p=[0.85, 0.15])),
            "idespacepublic": text_column((np.arange(1, n + 1)).astype(str)),
            "idmetier": text_column((np.arange(1, n + 1) + 300).astype(str)),
            "nom": text_column(names),
            "surfacecalc": text_column([f"{a:.2f}" for a in shapely.area(geoms)]),
            "typeespacepublic": text_column(kinds),
        })
        self.layers["espaces_publics"] = frame(data, _multi(geoms), gid=False)

    def marches_forains(self):
        rng = self.rng("marches_forains")
        geoms, _ = self.content.markets.finish()
        geoms, _ = polygons_only(geoms)
        st = self.city.streets
        # street markets on some pedestrian streets and main streets of the centres
        street = (st.u > 0.55) & (st.cls >= 1) & ~st.bridge & (rng.uniform(size=len(st.geoms)) < 0.004)
        street_g = shapely.buffer(st.geoms[street], st.road_half[street], cap_style="flat")
        geoms = np.concatenate([geoms, street_g])
        if len(geoms) == 0:
            geoms = self.pedestrian[:1] if len(self.pedestrian) else self._fallback_square(rng, 40.0, 20.0)
        n = len(geoms)
        insee, nom = self.communes(geoms)
        days = ["mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
        jours = [", ".join(sorted(rng.choice(days, rng.integers(1, 3), replace=False), key=days.index))
                 for _ in range(n)]
        self.layers["marches_forains"] = frame({
            "nom": text_column([f"Marché {x}" for x in _names(rng, ["de la Place", "du Quai", "du Cours"], n)]),
            "jours": text_column(jours),
            "typemarche": text_column(rng.choice(["Alimentaire", "Forain", "Alimentaire et manufacturé", "Bio"], n)),
            "insee": text_column(insee), "commune": text_column(nom),
        }, geoms)

    def amenagements_cyclables(self):
        rng = self.rng("amenagements_cyclables")
        idx, side, lines = ss.cycle_lanes(self.city, rng)
        st = self.city.streets
        if len(lines) == 0:
            s = int(np.argmax(st.u * (st.cls + 1)))
            idx, lines = np.array([s]), ss.offset_lines(self.city, np.array([s]), np.array([2.0]))
        n = len(lines)
        cls = st.cls[idx]
        main = rng.choice(["Piste cyclable", "Bande cyclable", "Couloir bus-vélo"], n, p=[0.5, 0.3, 0.2])
        minor = rng.choice(["Bande cyclable", "Double sens cyclable", "Piste cyclable"], n)
        kind = np.where(cls >= ARTERIAL, main, np.where(cls == 0, "Voie verte", minor))
        insee, nom = self.communes(lines)
        self.layers["amenagements_cyclables"] = frame({
            "nom": text_column(_names(rng, ["Rue", "Avenue", "Boulevard", "Chemin"], n)),
            "typeamenagement": text_column(kind),
            "sens": text_column(rng.choice(["Unidirectionnel", "Bidirectionnel"], n, p=[0.7, 0.3])),
            "insee": text_column(insee), "commune": text_column(nom), "longueur": np.round(shapely.length(lines), 1),
        }, lines)

    def plans_eau(self):
        s = self.city.structures
        t = self.t
        river = s.river
        pieces = np.empty(0, dtype=object)
        if not river.is_empty:  # one feature per commune crossed, like the real layer's sections
            pieces = shapely.intersection(np.full(len(t.geoms), river, dtype=object), t.geoms)
        pieces, src = polygons_only(pieces)
        ok = shapely.area(pieces) > 10.0
        pieces = pieces[ok]
        ponds, pattrs = self.content.ponds.finish()
        geoms = np.concatenate([pieces, ponds])
        nature = np.concatenate([np.full(len(pieces), "Cours d'eau", dtype=object),
                                 pattrs.get("nature", np.empty(0, dtype=object))])
        names = np.concatenate([np.full(len(pieces), "Fleuve synthétique", dtype=object),
                                np.array([f"Plan d'eau {k}" for k in range(1, len(ponds) + 1)], dtype=object)])
        insee, nom = self.communes(geoms)
        self.layers["plans_eau"] = frame({
            "nom": text_column(names), "nature": text_column(nature), "insee": text_column(insee),
            "commune": text_column(nom),
        }, geoms)

    def ponts(self):
        st = self.city.streets
        s = self.city.structures
        idx = np.flatnonzero(st.bridge)
        road = shapely.buffer(st.geoms[idx], st.row_half[idx], cap_style="square", join_style="mitre")
        rail = np.empty(0, dtype=object)
        if not s.river.is_empty and s.rail_lines:
            spans = shapely.get_parts(shapely.intersection(np.array(s.rail_lines, dtype=object), s.river))
            spans = spans[(shapely.get_type_id(spans) == 1) & (shapely.length(spans) > 0)]
            rail = shapely.buffer(spans, 7.0, cap_style="square")
        geoms = np.concatenate([road, rail])
        kind = np.concatenate([np.full(len(road), "Pont routier", dtype=object),
                               np.full(len(rail), "Pont ferroviaire", dtype=object)])
        if len(geoms) == 0 and not s.river.is_empty:  # a footbridge where the river is closest to the centre
            line = s.river_lines[0]
            cx, cy = self.t.main_centre
            d = line.project(shapely.Point(cx, cy))
            p0, p1 = line.interpolate(d), line.interpolate(d + 1.0)
            ang = np.arctan2(p1.y - p0.y, p1.x - p0.x)
            width = 2 * np.sqrt(s.river.area / max(sum(g.length for g in s.river_lines), 1.0)) + 20.0
            geoms = rect_polygons([p0.x], [p0.y], [5.0], [width * 2], [ang])
            geoms = shapely.intersection(geoms, self.t.union.buffer(0.0))
            kind = np.array(["Passerelle"], dtype=object)
        elif len(geoms) == 0:
            geoms = self._fallback_square(self.rng("ponts"), 20.0, 8.0)
            kind = np.array(["Pont routier"], dtype=object)
        n = len(geoms)
        insee, nom = self.communes(geoms)
        self.layers["ponts"] = frame({
            "nom": text_column([f"Pont synthétique {k}" for k in range(1, n + 1)]), "typeouvrage": text_column(kind),
            "insee": text_column(insee), "commune": text_column(nom),
        }, geoms)

    def voies_ferrees(self):
        s = self.city.structures
        t = self.t
        tracks = []
        for line in s.rail_lines:
            for part in shapely.get_parts(line):
                if part.geom_type != "LineString" or part.length < 1:
                    continue
                for off in (-2.25, 2.25):
                    moved = shapely.offset_curve(part, off, join_style="round")
                    tracks.extend(shapely.get_parts(moved))
        tracks = np.array([g for g in tracks if not g.is_empty], dtype=object)
        # one feature per track and commune, like the real layer's sections
        ti, ci = t.tree.query(tracks, predicate="intersects")
        pieces = shapely.intersection(tracks[ti], t.geoms[ci])
        pieces, _ = shapely.get_parts(pieces, return_index=True)
        pieces = pieces[(shapely.get_type_id(pieces) == 1) & (shapely.length(pieces) > 1.0)]
        if len(pieces) == 0:
            st = self.city.streets
            pieces = st.geoms[[int(np.argmax(st.length))]]
        n = len(pieces)
        insee, nom = self.communes(pieces)
        self.layers["voies_ferrees"] = frame({
            "nature": text_column(np.full(n, "Voie principale")), "electrifiee": text_column(np.full(n, "Oui")),
            "etat": text_column(np.full(n, "En service")), "insee": text_column(insee), "commune": text_column(nom),
        }, pieces)

    def eva_2015(self):
        rng = self.rng("eva_2015")
        geoms, attrs = self.content.eva.finish()
        family = attrs.get("family", np.empty(0, dtype=object)).astype(object)
        # canopies of the street trees, one strip per row
        rows = self.trees.rows_geom
        if len(rows):
            seg = np.zeros(len(rows), dtype=np.int64)
            seg[self.trees.row] = self.trees.segment
            st = self.city.streets
            room = st.row_half[seg] - (st.road_half[seg] + 1.6) + 1.5
            radius = np.clip(np.minimum(rng.uniform(2.5, 4.5, len(rows)), room), 1.5, None)
            canopies = shapely.buffer(rows, radius, quad_segs=4)
            geoms = np.concatenate([geoms, canopies])
            family = np.concatenate([family, np.full(len(canopies), "tree", dtype=object)])
        # roundabout islands are lawns
        if len(self.roundabouts):
            isl = shapely.buffer(self.roundabouts, -1.0)
            geoms = np.concatenate([geoms, isl])
            family = np.concatenate([family, np.full(len(isl), "lawn", dtype=object)])
        geoms, src = polygons_only(geoms)
        family = family[src]
        codes = self.eva_codes(family, rng)
        self.layers["eva_2015"] = frame({"gl_2015": codes.astype(np.int64),
                                         "surface": np.round(shapely.area(geoms), 1)}, geoms)

    def eva_codes(self, family, rng) -> np.ndarray:
        known = [int(v) for v in self.cat.sources["eva_2015"].known_values.get("gl_2015", [])]
        groups = {
            "tree": [c for c in known if c == 11], "artificial": [c for c in known if c == 15],
            "lawn": [c for c in known if c in (12, 13)], "low": [c for c in known if c in (12, 13, 14)],
            "low_garden": [c for c in known if c in (14, 16, 17)],
            "natural": [c for c in known if 300 <= c < 400 and c // 10 == 36] + [c for c in known if c in (16, 17)],
            "agri": [c for c in known if 200 <= c < 300],
            "forest": [c for c in known if c >= 300 and c // 10 != 36],
        }
        codes = np.zeros(len(family), dtype=np.int64)
        for fam, values in groups.items():
            sel = family == fam
            if not sel.any():
                continue
            if not values:
                raise ValueError(f"synthetic generator: the catalogue's eva_2015 known_values have no {fam} code")
            weights = np.ones(len(values))
            if fam == "agri":
                weights[0] = 6.0  # mostly arable land
            if fam == "forest":
                weights[: min(3, len(values))] = 4.0
            codes[sel] = rng.choice(values, sel.sum(), p=weights / weights.sum())
        return codes

    def places_pmr(self):
        rng = self.rng("places_pmr")
        idx, geoms, count = ss.bays(self.city, rng, "pmr")
        if len(geoms) == 0:
            geoms = self._fallback_square(rng, 5.0, 2.5)
        n = len(geoms)
        insee, nom = self.communes(geoms)
        self.layers["places_pmr"] = frame({
            "nbplaces": np.ones(n, dtype=np.int64), "insee": text_column(insee), "commune": text_column(nom),
        }, geoms)

    def stations_autopartage(self):
        rng = self.rng("stations_autopartage")
        idx, geoms, count = ss.bays(self.city, rng, "carsharing")
        if len(geoms) == 0:
            geoms, count = self._fallback_square(rng, 10.0, 2.5), np.array([2])
        n = len(geoms)
        insee, nom = self.communes(geoms)
        self.layers["stations_autopartage"] = frame({
            "nom": text_column([f"Autopartage {x}" for x in _names(rng, ["Place", "Rue"], n)]),
            "operateur": text_column(rng.choice(["Opérateur A", "Opérateur B"], n)),
            "nbplaces": np.asarray(count, dtype=np.int64), "insee": text_column(insee), "commune": text_column(nom),
        }, geoms)

    def qpv(self):
        b = self.city.blocks
        t = self.t
        n_qpv = max(1, int(round(t.area / 20e6)))
        coll = b.kind == K["collective"]
        dense = b.kind == K["dense"]
        pool = coll if coll.any() else dense if dense.any() else b.u >= np.quantile(b.u, 0.8)
        share = np.bincount(b.district[pool], weights=shapely.area(b.geoms[pool]),
                            minlength=len(self.city.districts.geoms))
        districts = np.argsort(-share, kind="stable")[:n_qpv]
        districts = districts[share[districts] > 0]
        geoms = []
        for dist in districts:
            faces = b.geoms[pool & (b.district == dist)]
            merged = shapely.union_all(faces).buffer(15.0, join_style="mitre").buffer(-15.0, join_style="mitre")
            merged = shapely.intersection(merged, t.union)
            parts, _ = polygons_only(np.array([merged], dtype=object))
            if len(parts):
                polygonal = merged.geom_type in ("Polygon", "MultiPolygon")
                geoms.append(merged if polygonal else shapely.multipolygons(parts))
        geoms = np.array(geoms, dtype=object)
        n = len(geoms)
        insee, nom = self.communes(geoms)
        self.layers["qpv"] = frame({
            "code_qp": text_column([f"QN99{k:03d}S" for k in range(1, n + 1)]),
            "nom_qp": text_column([f"Quartier prioritaire synthétique {k}" for k in range(1, n + 1)]),
            "insee": text_column(insee), "commune": text_column(nom),
        }, _multi(geoms))

    # ------------------------------------------------------------------------------------------
    def ensure_filter_values(self):
        """Every value a catalogue filter names appears at least once in its column."""
        rng = self.rng("ensure")
        required: dict[tuple[str, str], list] = {}
        for factor in self.cat.factors:
            for source in factor.sources:
                for cond in factor.where:
                    required.setdefault((source, cond.field), [])
                    for v in cond.values:
                        if v not in required[(source, cond.field)]:
                            required[(source, cond.field)].append(v)
        for (source, column), values in required.items():
            layer = self.layers.get(source)
            if layer is None or column not in layer.columns:
                raise ValueError(f"synthetic generator: layer {source!r} has no column {column!r}, "
                                 "which the catalogue filters on")
            current = layer[column].to_numpy(dtype=object)
            series = pd.Series(current)
            repeated = series.map(series.value_counts()).to_numpy() > 1
            eligible = repeated & ~series.isin(values).to_numpy()
            if not eligible.any():
                eligible = repeated
            fixed = ensure_values(current, values, eligible, rng)
            if not np.array_equal(fixed, current):
                dtype = layer[column].dtype
                layer[column] = pd.Series(fixed, index=layer.index).astype(dtype)


def generate(city: City, catalogue) -> dict[str, gpd.GeoDataFrame]:
    return Builder(city, catalogue).build()
