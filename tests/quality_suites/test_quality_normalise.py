"""normalise(): canonical EPSG:2154, 2-D, repaired, typed layers, with every change counted."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely import LineString, MultiPolygon, Point, Polygon

from iarbre_assets.geo.normalise import NormaliseError, normalise


def polygon_source(catalogue, **update):
    """espaces_publics (polygons; typeespacepublic: str, surfacecalc: float) with optional overrides."""
    return catalogue.sources["espaces_publics"].model_copy(update=update)


def layer(geoms, crs="EPSG:2154", **columns):
    n = len(geoms)
    data = {"typeespacepublic": ["Giratoire"] * n, "surfacecalc": [1.0] * n}
    data.update(columns)
    return gpd.GeoDataFrame(data, geometry=list(geoms), crs=crs)


SQUARE = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
BOWTIE = Polygon([(0, 0), (2, 2), (2, 0), (0, 2), (0, 0)])  # two triangles of 1 m² meeting at (1, 1)


def test_reprojects_cc46_to_lambert93_preserving_areas(catalogue):
    # 100 m squares near Lyon in EPSG:3946 (CC46); both projections are conformal with scale errors
    # below 0.2 % here, so each square keeps its 10 000 m² within 0.5 %.
    x0, y0 = 1842500.0, 5176000.0
    squares = [shapely.box(x0 + i * 500, y0, x0 + i * 500 + 100, y0 + 100) for i in range(3)]
    out, report = normalise(layer(squares, crs="EPSG:3946"), polygon_source(catalogue))
    assert out.crs.to_epsg() == 2154
    assert report.crs_in == "EPSG:3946" and report.crs_out == "EPSG:2154"
    np.testing.assert_allclose(out.area, 10_000.0, rtol=0.005)
    # CC46 and Lambert-93 false origins differ by ~1 000 km east and ~1 300 km north
    minx, miny, maxx, maxy = report.bounds
    assert 800_000 < minx < maxx < 900_000 and 6_450_000 < miny < maxy < 6_600_000


def test_real_lyon_public_spaces_come_out_in_lambert93(catalogue, lyon_dir):
    raw = gpd.read_file(lyon_dir / "espacepublic2025.geojson")
    assert raw.crs.to_epsg() == 3946
    out, report = normalise(raw, catalogue.sources["espaces_publics"])
    assert out.crs.to_epsg() == 2154 and report.rows_out == 5 and report.dropped == {}
    assert out["surfacecalc"].dtype == "Float64" and isinstance(out["typeespacepublic"].dtype, pd.StringDtype)
    # README: surfacecalc 2260.7, 213.6, 2010.5, 7403.3, 2055.9 m² (numbers delivered as strings)
    assert sorted(out["surfacecalc"].round(1).tolist()) == sorted([2260.7, 213.6, 2010.5, 7403.3, 2055.9])
    np.testing.assert_allclose(out.area.to_numpy(), out["surfacecalc"].to_numpy(dtype=float), rtol=0.005)
    assert sorted(out["typeespacepublic"].tolist()) == ["Espace piétonnier"] * 4 + ["Parking"]
    # inside the Lyon communes' extent (README bounding box, EPSG:2154)
    minx, miny, maxx, maxy = report.bounds
    assert 833681.12 < minx < maxx < 849400.18 and 6508211.97 < miny < maxy < 6539271.80
    assert report.geometry_types == {"MultiPolygon": 5}


def test_3d_geometries_flattened_and_counted(catalogue):
    square_z = Polygon([(0, 0, 5), (10, 0, 5), (10, 10, 6), (0, 10, 6)])
    raw = layer([square_z, SQUARE, square_z])
    out, report = normalise(raw, polygon_source(catalogue))
    assert report.flattened_3d == 2
    assert not shapely.has_z(out.geometry.array).any()
    assert out.geometry.iloc[0].equals(SQUARE)
    assert raw.geometry.has_z.tolist() == [True, False, True]  # the input frame is left untouched


def test_bowtie_repaired_to_polygons_and_counted(catalogue):
    out, report = normalise(layer([BOWTIE, SQUARE]), polygon_source(catalogue))
    assert report.repaired == 1 and report.dropped == {} and report.rows_out == 2
    fixed = out.geometry.iloc[0]
    assert fixed.geom_type == "MultiPolygon" and fixed.is_valid
    assert [part.area for part in fixed.geoms] == [1.0, 1.0]
    assert out.geometry.iloc[1].equals(SQUARE)  # valid features are untouched


def test_repair_discards_lower_dimension_parts(catalogue):
    # a 4x4 square with a 4 m spike: make_valid gives GEOMETRYCOLLECTION(POLYGON, LINESTRING)
    spiked = Polygon([(0, 0), (4, 0), (4, 4), (4, 8), (4, 4), (0, 4)])
    assert shapely.make_valid(spiked).geom_type == "GeometryCollection"
    out, report = normalise(layer([spiked]), polygon_source(catalogue))
    assert report.repaired == 1
    assert out.geometry.iloc[0].geom_type == "Polygon" and out.geometry.iloc[0].area == 16.0


def test_polygon_collapsing_on_repair_is_dropped_with_reason(catalogue):
    flat = Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])  # zero area: repairs to a line only
    out, report = normalise(layer([flat, SQUARE]), polygon_source(catalogue))
    assert report.dropped == {"collapsed on repair": 1} and report.repaired == 0
    assert len(out) == 1 and out.geometry.iloc[0].equals(SQUARE)


def test_null_and_empty_geometries_dropped_with_reasons(catalogue):
    geoms = [None, Polygon(), SQUARE, None, MultiPolygon()]
    out, report = normalise(layer(geoms), polygon_source(catalogue))
    assert report.dropped == {"empty geometry": 2, "null geometry": 2}
    assert report.rows_in == 5 and report.rows_out == 1


def test_other_geometry_family_dropped_and_counted(catalogue):
    source = catalogue.sources["assainissement"]  # line source
    geoms = [LineString([(0, 0), (10, 0)]), Point(1, 1), SQUARE, Point(2, 2)]
    out, report = normalise(gpd.GeoDataFrame(geometry=geoms, crs="EPSG:2154"), source)
    assert report.dropped == {"unexpected geometry type Point": 2, "unexpected geometry type Polygon": 1}
    assert out.geom_type.tolist() == ["LineString"]


def test_multipart_split_only_when_the_source_asks(catalogue):
    parts = MultiPolygon([shapely.box(i * 20, 0, i * 20 + 10, 10) for i in range(3)])
    raw = layer([parts, SQUARE], typeespacepublic=["Parc", "Giratoire"])
    out, report = normalise(raw, polygon_source(catalogue, split_multipart=True))
    assert report.parts_added == 2 and report.rows_out == 4
    assert out["typeespacepublic"].tolist() == ["Parc", "Parc", "Parc", "Giratoire"]
    assert out.geom_type.tolist() == ["Polygon"] * 4 and out.area.tolist() == [100.0] * 4
    kept, report = normalise(raw, polygon_source(catalogue, split_multipart=False))
    assert report.parts_added == 0 and kept.geom_type.tolist() == ["MultiPolygon", "Polygon"]


def test_declared_columns_typed_and_cast_failures_counted(catalogue):
    columns = {"typeespacepublic": "str", "code": "str", "gid": "int", "surfacecalc": "float"}
    source = polygon_source(catalogue, columns=columns)
    raw = layer(
        [SQUARE] * 6,
        typeespacepublic=["  Giratoire ", "giratoire", "   ", None, "Rond-point", 7],
        code=[69123.0, 69381.0, np.nan, 69286.0, 69071.0, 69072.0],  # a code read as float because of a null
        gid=["12", " 7 ", "3.0", "2.5", "abc", None],
        surfacecalc=["12,5", "3.25", 4, "", None, "x"],
    )
    out, report = normalise(raw, source)
    # whitespace stripped, blanks to null, nothing else changed (case and a renamed value stay as delivered)
    assert out["typeespacepublic"].tolist() == ["Giratoire", "giratoire", pd.NA, pd.NA, "Rond-point", "7"]
    assert out["code"].tolist() == ["69123", "69381", pd.NA, "69286", "69071", "69072"]
    assert out["gid"].dtype == "Int64" and out["gid"].tolist() == [12, 7, 3, pd.NA, pd.NA, pd.NA]
    assert out["surfacecalc"].dtype == "Float64"
    assert out["surfacecalc"].tolist() == [pd.NA, 3.25, 4.0, pd.NA, pd.NA, pd.NA]
    assert report.cast_failures == {"typeespacepublic": 0, "code": 0, "gid": 2, "surfacecalc": 2}
    assert report.blank_to_null == {"typeespacepublic": 1, "code": 0, "gid": 0, "surfacecalc": 1}


def test_decomposed_unicode_categories_are_the_same_category_and_counted(catalogue):
    """A desktop tool writing NFD ("e" + U+0301) delivers the same "Espace piétonnier" as one writing NFC."""
    import unicodedata

    from iarbre_assets.geo.footprint import factor_footprint

    nfd = unicodedata.normalize("NFD", "Espace piétonnier")
    assert nfd != "Espace piétonnier"
    out, report = normalise(layer([SQUARE] * 3, typeespacepublic=[nfd, "Espace piétonnier", "Giratoire"]),
                            polygon_source(catalogue))
    assert out["typeespacepublic"].tolist() == ["Espace piétonnier"] * 2 + ["Giratoire"]
    assert report.unicode_normalised["typeespacepublic"] == 1
    footprint = factor_footprint(out, catalogue.factor("espaces_jeux_pietonnier"))
    assert footprint.stats["features_selected"] == 2
    # a catalogue written in NFD matches too
    factor = catalogue.factor("espaces_jeux_pietonnier")
    decomposed = factor.model_copy(update={"where": [w.model_copy(update={"in_": [unicodedata.normalize("NFD", v)
                                                                                    for v in w.values]})
                                                     for w in factor.where]})
    assert factor_footprint(out, decomposed).stats["features_selected"] == 2


def test_large_integer_identifiers_parsed_exactly(catalogue):
    source = polygon_source(catalogue, columns={"gid": "int"})
    out, report = normalise(layer([SQUARE, SQUARE], gid=["9007199254740993", "x"]), source)  # 2**53 + 1
    assert out["gid"].tolist() == [9007199254740993, pd.NA] and report.cast_failures == {"gid": 1}


def test_missing_declared_columns_are_not_invented(catalogue):
    raw = layer([SQUARE]).drop(columns=["surfacecalc"])
    out, report = normalise(raw, polygon_source(catalogue))
    assert "surfacecalc" not in out.columns and report.missing_columns == ["surfacecalc"]


def test_missing_crs_raises_naming_the_source(catalogue):
    raw = gpd.GeoDataFrame({"typeespacepublic": ["Giratoire"]}, geometry=[SQUARE])
    with pytest.raises(NormaliseError, match="espaces_publics.*no CRS"):
        normalise(raw, polygon_source(catalogue))
    assert issubclass(NormaliseError, ValueError)


def test_other_attributes_kept_index_reset_and_report_consistent(catalogue):
    raw = layer([SQUARE, None, BOWTIE, SQUARE], extra=[1, 2, 3, 4], label=["a", "b", "c", "d"])
    raw.index = [40, 30, 20, 10]
    raw = raw.rename_geometry("geom")
    out, report = normalise(raw, polygon_source(catalogue, split_multipart=True))
    assert list(out.index) == list(range(len(out))) and out.geometry.name == "geometry"
    assert out["extra"].tolist() == [1, 3, 3, 4] and out["extra"].dtype == raw["extra"].dtype
    assert report.rows_out == report.rows_in - sum(report.dropped.values()) + report.parts_added
    assert json.loads(json.dumps(report.as_dict()))["geometry_types"] == {"Polygon": 4}
    again, again_report = normalise(raw, polygon_source(catalogue, split_multipart=True))
    assert again_report == report and again.geom_equals_exact(out, tolerance=0).all()
    assert again.drop(columns="geometry").equals(out.drop(columns="geometry"))


def test_fast_on_a_large_polygon_layer(catalogue):
    import time

    n = 100_000
    rng = np.random.default_rng(1)
    x, y = rng.uniform(840_000, 850_000, n), rng.uniform(6_515_000, 6_525_000, n)
    polys = shapely.buffer(shapely.points(x, y), 5, quad_segs=4)  # 17-vertex polygons
    bad = rng.random(n) < 0.01
    corners = [(x, y), (x + 5, y + 5), (x + 5, y), (x, y + 5), (x, y)]  # bow-ties
    polys[bad] = shapely.polygons(np.stack([np.stack(c, 1) for c in corners], 1))[bad]
    attributes = {"typeespacepublic": ["Giratoire"] * n, "surfacecalc": ["78.5"] * n}
    raw = gpd.GeoDataFrame(attributes, geometry=polys, crs="EPSG:2154")
    started = time.perf_counter()
    out, report = normalise(raw, polygon_source(catalogue))
    elapsed = time.perf_counter() - started
    assert report.repaired == int(bad.sum()) and shapely.is_valid(out.geometry.array).all()
    assert elapsed < 5.0, f"normalise took {elapsed:.1f} s for {n} polygons"


DEGENERATE_GML = b"""<wfs:FeatureCollection xmlns:wfs="http://www.opengis.net/wfs/2.0"
 xmlns:gml="http://www.opengis.net/gml/3.2" xmlns:a="urn:a">
<wfs:member><a:b gml:id="b.1"><a:typeespacepublic>Giratoire</a:typeespacepublic><a:geom>
 <gml:Polygon srsName="EPSG:2154"><gml:exterior><gml:LinearRing>
 <gml:posList>0 0 10 0 10 10 0 10 0 0</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></a:geom></a:b></wfs:member>
<wfs:member><a:b gml:id="b.2"><a:typeespacepublic>Giratoire</a:typeespacepublic><a:geom>
 <gml:Polygon srsName="EPSG:2154"><gml:exterior><gml:LinearRing>
 <gml:posList>20 0 30 0 30 10 20 10</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></a:geom></a:b></wfs:member>
<wfs:member><a:b gml:id="b.3"><a:typeespacepublic>Giratoire</a:typeespacepublic><a:geom>
 <gml:Polygon srsName="EPSG:2154"><gml:exterior><gml:LinearRing>
 <gml:posList>40 0 50 0 NaN 10 40 10 40 0</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></a:geom></a:b></wfs:member>
<wfs:member><a:b gml:id="b.4"><a:typeespacepublic>Giratoire</a:typeespacepublic><a:geom>
 <gml:Polygon srsName="EPSG:2154"><gml:exterior><gml:LinearRing>
 <gml:posList>60 0 INF 0 70 10 60 10 60 0</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></a:geom></a:b></wfs:member>
</wfs:FeatureCollection>"""


def test_unclosed_rings_are_closed_and_nan_or_inf_ordinates_dropped_naming_the_features(catalogue):
    """The two GEOS crashes of a careless delivery: repaired or dropped, counted, and named."""
    from iarbre_assets.connectors.gml import parse_feature_collection

    parsed = parse_feature_collection(DEGENERATE_GML, source="espaces_publics", location="page.gml").features
    assert len(parsed) == 4 and parsed.attrs["rings_closed"] == 1
    assert parsed.geometry[1].equals(Polygon([(20, 0), (30, 0), (30, 10), (20, 10)]))
    out, report = normalise(parsed, polygon_source(catalogue))
    assert out["gml_id"].tolist() == ["b.1", "b.2"] and out.geometry.area.tolist() == [100.0, 100.0]
    assert report.rings_closed == 1
    assert report.dropped == {"non-finite coordinates": 2}
    assert report.dropped_examples["non-finite coordinates"] == ["gml_id b.3", "gml_id b.4"]
