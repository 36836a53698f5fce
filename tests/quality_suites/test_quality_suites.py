"""Quality suites with real Great Expectations: good layers pass, each kind of bad layer fails loudly."""

from __future__ import annotations

import time

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from iarbre_assets.catalog.quality_spec import normalise_summary, suite_spec
from iarbre_assets.geo.normalise import normalise
from quality import build_suite, run_quality_suite
from quality.families import FAMILIES
from quality_layers import BOUNDS, QUALITY, good_layer, raw_layer

# one source per family, chosen to exercise that family's filters, codes, ids and geometry kinds
FAMILY_SOURCES = {
    "trees": "arbres_alignement",
    "public_spaces": "espaces_publics",
    "vegetation": "eva_2015",
    "street_services": "places_pmr",
    "networks": "ore_gaz",
    "transport": "lignes_tram",
    "buildings": "batiments_bdtopo",
    "land_features": "plans_eau",
    "boundaries": "communes",
}


def run(layer, source, catalogue, quality=QUALITY, bounds=BOUNDS, previous_row_count=None, normalise_report=None):
    """The suite of `source` as the product runs it: spec from the catalogue, summary from the report."""
    spec = suite_spec(source, catalogue.factors, quality, bounds)
    summary = normalise_summary(normalise_report) if normalise_report is not None else None
    return run_quality_suite(layer, spec, previous_row_count=previous_row_count, normalise_summary=summary)


def failed(result, name, column=None):
    """The failed outcomes of check `name` (on `column`)."""
    return [o for o in result.outcomes if not o.success and o.name == name and (column is None or o.column == column)]


def test_every_family_of_the_catalogue_has_a_suite(catalogue, sources):
    families = {s.family for s in catalogue.sources.values()} | {s.family for s in sources.values()}
    assert families == set(FAMILY_SOURCES) and families <= set(FAMILIES)
    for source in sources.values():  # builds without GX
        suite = build_suite(suite_spec(source, catalogue.factors, QUALITY, BOUNDS))
        assert suite.name == source.family
        assert {"crs.platform", "bounds.within_territory"} <= {c.name for c in suite.checks}


@pytest.mark.parametrize("family", sorted(FAMILY_SOURCES))
def test_good_layer_of_each_family_passes(family, catalogue, sources):
    source = sources[FAMILY_SOURCES[family]]
    result = run(good_layer(source, catalogue.factors), source, catalogue, previous_row_count=60)
    assert result.passed, result.failure_message()
    assert result.warnings == [] and result.suite_name == family
    # nothing passed by not looking: every check was evaluated, by GX unless it is a Python check
    assert all(o.expectation not in ("", "not evaluated") for o in result.outcomes)
    names = {o.name for o in result.outcomes}
    assert {"table.not_empty", "crs.platform", "geometry.valid_share", "geometry.types", "bounds.within_territory",
            "table.row_count_vs_previous"} <= names
    for column in source.columns:
        checked = {(o.name, o.column) for o in result.outcomes}
        assert {("schema.column_exists", column), ("schema.column_type", column)} <= checked
    assert result.statistics["evaluated"] == len(result.outcomes) == result.statistics["successful"]


def test_family_specific_expectations_are_present(catalogue, sources):
    def checks(slug):
        source = sources[slug]
        suite = build_suite(suite_spec(source, catalogue.factors, QUALITY, BOUNDS))
        return {(c.name, c.column): c for c in suite.checks}

    trees = checks("arbres_alignement")
    radius = trees[("values.radius_plausible", "circonference_cm")]
    assert (radius.kwargs["min_value"], radius.kwargs["max_value"], radius.kwargs["mostly"]) == (0, 2000, 0.99)
    assert trees[("id.unique", "gid")].blocking and trees[("filter_values.present", "genre")].kwargs["value_set"] == [
        "Emplacement libre", "Souche"]
    assert checks("batiments_bdtopo")[("id.unique", "cleabs")].blocking
    assert checks("batiments_bdtopo")[("geometry.min_area", "geom_measure")].kwargs["min_value"] == 1
    assert checks("ore_gaz")[("geometry.measure_positive", "geom_measure")].kwargs["strict_min"] is True
    assert len(checks("eva_2015")[("known_values.in_set", "gl_2015")].kwargs["value_set"]) == 33
    assert checks("communes")[("id.code_unique", "insee")].blocking


def test_real_lyon_layers(catalogue, lyon_dir, lyon_communes):
    from iarbre_assets.catalog import load_territory

    lyon = load_territory("lyon", catalogue)
    bounds = tuple(lyon_communes.total_bounds)
    communes_source = lyon.source_defs(catalogue)["communes"]
    communes, _ = normalise(lyon_communes, communes_source)
    result = run(communes, communes_source, catalogue, quality=lyon.quality, bounds=bounds)
    assert result.passed, result.failure_message()
    assert any(o.name == "geometry.no_overlap" and o.success for o in result.outcomes)

    parkings_source = catalogue.sources["parkings_surfaciques"]
    parkings, report = normalise(gpd.read_file(lyon_dir / "parkingsurfacique.geojson"), parkings_source)
    assert report.parts_added == 0 and len(parkings) == 6
    result = run(parkings, parkings_source, catalogue, quality=lyon.quality, bounds=bounds, normalise_report=report)
    assert result.passed, result.failure_message()

    # the real public-spaces extract holds only "Espace piétonnier" and "Parking": the other filter
    # categories are missing, which blocks under `filter_values: blocking` and warns under `warn`
    spaces_source = catalogue.sources["espaces_publics"]
    spaces, report = normalise(gpd.read_file(lyon_dir / "espacepublic2025.geojson"), spaces_source)
    result = run(spaces, spaces_source, catalogue, quality=lyon.quality, bounds=bounds, normalise_report=report)
    assert not result.passed and len(result.blocking_failures) == 1
    assert "'Giratoire' (selected by giratoires)" in result.blocking_failures[0]
    lenient = lyon.quality.model_copy(update={"filter_values": "warn"})
    result = run(spaces, spaces_source, catalogue, quality=lenient, bounds=bounds)
    assert result.passed and len(result.warnings) == 1 and "'Giratoire'" in result.warnings[0]


# ----------------------------------------------------------------------------------------------
# Bad layers
# ----------------------------------------------------------------------------------------------
def test_missing_column_blocks(catalogue, sources):
    source = sources["arbres_alignement"]
    layer = good_layer(source, catalogue.factors).drop(columns=["genre"])
    result = run(layer, source, catalogue)
    assert not result.passed
    exists = failed(result, "schema.column_exists", "genre")
    assert exists and exists[0].blocking and exists[0].observed == "missing"
    assert exists[0].expectation == "expect_column_to_exist"
    # checks reading the column are reported failed, not silently skipped
    assert failed(result, "filter_values.present", "genre")[0].observed == "not evaluated: column 'genre' is missing"
    assert any(line.startswith("schema.column_exists on genre: observed missing") for line in result.blocking_failures)


def test_wrong_column_type_blocks(catalogue, sources):
    source = sources["arbres_alignement"]
    layer = good_layer(source, catalogue.factors)
    layer["circonference_cm"] = layer["circonference_cm"].astype("string")
    result = run(layer, source, catalogue)
    outcome = failed(result, "schema.column_type", "circonference_cm")
    assert not result.passed and outcome and outcome[0].observed == "dtype string"
    assert outcome[0].expectation == "expect_column_values_to_be_in_type_list"
    assert "not evaluated: column 'circonference_cm' has dtype string, not float" in [
        o.observed for o in failed(result, "values.radius_plausible")]


def test_layer_left_in_another_crs_blocks(catalogue, sources):
    source = sources["espaces_publics"]
    layer = good_layer(source, catalogue.factors).to_crs("EPSG:3946")  # never reprojected back
    result = run(layer, source, catalogue)
    crs = failed(result, "crs.platform")
    assert not result.passed and crs and crs[0].observed == "distinct values ['EPSG:3946']"
    assert failed(result, "bounds.within_territory")  # and it lies ~1 000 km away


def test_invalid_share_above_threshold_blocks(catalogue, sources):
    source = sources["plans_eau"]
    bowtie = shapely.Polygon([(841000, 6516000), (841010, 6516010), (841010, 6516000), (841000, 6516010)])

    def with_invalid(count):
        layer = raw_layer(source, catalogue.factors, n=100)  # not normalised: bow-ties stay invalid
        layer.loc[: count - 1, "geometry"] = bowtie
        return run(layer, source, catalogue)

    assert with_invalid(1).passed  # 99 % valid = min_valid_share
    result = with_invalid(2)  # 98 % valid
    outcome = failed(result, "geometry.valid_share")
    assert not result.passed and outcome[0].observed.startswith("2 of 100 unexpected")


def test_wrong_geometry_type_blocks(catalogue, sources):
    source = sources["ore_gaz"]  # lines
    points = raw_layer(sources["stations_velov"], catalogue.factors, n=20)
    result = run(points, source, catalogue)
    outcome = failed(result, "geometry.types")
    assert not result.passed and "20 of 20 unexpected" in outcome[0].observed and "'Point'" in outcome[0].observed


def test_swapped_axes_fall_out_of_the_territory(catalogue, sources):
    source = sources["arrets_tcl"]
    layer = good_layer(source, catalogue.factors)
    layer = layer.set_geometry(shapely.points(layer.geometry.y, layer.geometry.x), crs="EPSG:2154")
    result = run(layer, source, catalogue)
    columns = {o.column for o in failed(result, "bounds.within_territory")}
    assert not result.passed and columns == {"bbox_minx", "bbox_maxx", "bbox_miny", "bbox_maxy"}
    minx = next(o for o in result.outcomes if o.column == "bbox_minx")
    assert minx.observed.startswith("60 of 60 unexpected")


def test_cc46_layer_declared_as_lambert93_falls_out_of_the_territory(catalogue, sources):
    source = sources["espaces_publics"]
    cc46 = good_layer(source, catalogue.factors).to_crs("EPSG:3946").set_crs("EPSG:2154", allow_override=True)
    layer, report = normalise(cc46, source)  # nothing to reproject: the wrong label goes unnoticed here
    assert report.crs_in == "EPSG:2154"
    result = run(layer, source, catalogue, normalise_report=report)
    assert not result.passed
    assert [o.name for o in result.outcomes if not o.success] == ["bounds.within_territory"] * 4
    assert "within the territory bounds + 1000 m" in result.blocking_failures[0]


def test_renamed_category_blocks_and_names_the_missing_value(catalogue, sources):
    source = sources["espaces_publics"]
    layer = good_layer(source, catalogue.factors)
    layer["typeespacepublic"] = layer["typeespacepublic"].replace({"Giratoire": "Rond-point"})
    result = run(layer, source, catalogue)
    assert not result.passed and len(result.blocking_failures) == 1
    message = result.blocking_failures[0]
    assert message.startswith(
        "filter_values.present on typeespacepublic: observed missing 'Giratoire' (selected by giratoires);")
    assert "'Rond-point'" in message
    assert "'Giratoire'" in result.failure_message("espaces_publics")
    warn = run(layer, source, catalogue, quality=QUALITY.model_copy(update={"filter_values": "warn"}))
    assert warn.passed and warn.warnings[0].startswith("filter_values.present on typeespacepublic")


def test_renamed_excluded_category_blocks_too(catalogue, sources):
    # "Souche" is excluded from the `arbres` factor: renamed, stumps would silently count as trees
    source = sources["arbres_alignement"]
    layer = good_layer(source, catalogue.factors)
    layer["genre"] = layer["genre"].replace({"Souche": "Souches"})
    result = run(layer, source, catalogue)
    assert not result.passed
    assert "'Souche' (selected by souches_emplacements_libres, excluded by arbres)" in result.blocking_failures[0]


def test_unknown_vegetation_code_blocks(catalogue, sources):
    source = sources["eva_2015"]
    layer = good_layer(source, catalogue.factors)
    layer.loc[5, "gl_2015"] = 99
    result = run(layer, source, catalogue)
    outcome = failed(result, "known_values.in_set", "gl_2015")
    assert not result.passed and outcome[0].observed.startswith("1 of 60 unexpected") and "[99]" in outcome[0].observed


def test_empty_table_blocks(catalogue, sources):
    source = sources["lignes_tram"]
    result = run(good_layer(source, catalogue.factors).iloc[0:0], source, catalogue)
    assert not result.passed and failed(result, "table.not_empty")[0].observed == "0 rows"


def test_row_count_jump_only_warns(catalogue, sources):
    source = sources["lignes_tram"]
    layer = good_layer(source, catalogue.factors)  # 60 rows, band ±50 %
    edge = run(layer, source, catalogue, previous_row_count=40)  # allowed [20, 60]
    assert edge.passed and edge.warnings == []
    jump = run(layer, source, catalogue, previous_row_count=39)  # allowed [20, 58]
    assert jump.passed and jump.blocking_failures == [] and len(jump.warnings) == 1
    assert jump.warnings[0].startswith("table.row_count_vs_previous: observed 60 rows")
    outcome = failed(jump, "table.row_count_vs_previous")[0]
    assert not outcome.blocking and outcome.expectation == "expect_table_row_count_to_be_between"


def test_tree_circumference_unit_change_blocks(catalogue, sources):
    source = sources["arbres_alignement"]
    layer = good_layer(source, catalogue.factors)
    layer["circonference_cm"] = layer["circonference_cm"] * 10  # delivered in mm: 400..3390
    result = run(layer, source, catalogue)
    assert not result.passed and failed(result, "values.radius_plausible", "circonference_cm")


def test_duplicate_building_ids_block(catalogue, sources):
    source = sources["batiments_bdtopo"]
    layer = good_layer(source, catalogue.factors)
    doubled = pd.concat([layer, layer.iloc[:3]], ignore_index=True)  # overlapping pages
    result = run(doubled, source, catalogue)
    assert not result.passed and failed(result, "id.unique", "cleabs")[0].observed.startswith("6 of 63 unexpected")


def test_overlapping_boundaries_block(catalogue, sources):
    source = sources["communes"]
    layer = good_layer(source, catalogue.factors)
    layer.loc[1, "geometry"] = shapely.affinity.translate(layer.geometry[0], 5, 0)  # half over its neighbour
    layer.loc[2, "insee"] = layer.loc[0, "insee"]
    result = run(layer, source, catalogue)
    assert not result.passed
    assert {o.name for o in result.outcomes if not o.success} == {"geometry.no_overlap", "id.code_unique"}
    assert failed(result, "geometry.no_overlap")[0].observed.startswith("50.0 m² shared by 1 pair(s)")


def test_normalisation_dropping_too_much_blocks(catalogue, sources):
    source = sources["ore_gaz"]
    raw = raw_layer(source, catalogue.factors, n=100)
    raw.loc[:4, "geometry"] = shapely.Point(841000, 6516000)  # 5 % of a line layer are points
    layer, report = normalise(raw, source)
    assert report.dropped == {"unexpected geometry type Point": 5}
    result = run(layer, source, catalogue, normalise_report=report)
    assert not result.passed
    assert failed(result, "normalise.dropped_share")[0].observed == (
        "5 of 100 features dropped (5.00%) — unexpected geometry type Point: 5 (e.g. row 0, row 1, row 2, row 3, "
        "row 4)")


def test_result_rendering(catalogue, sources):
    import great_expectations as gx

    source = sources["espaces_publics"]
    layer = good_layer(source, catalogue.factors)
    layer["typeespacepublic"] = layer["typeespacepublic"].replace({"Giratoire": "Rond-point"})
    result = run(layer, source, catalogue, previous_row_count=10)
    markdown = result.to_markdown().splitlines()
    assert "FAILED" in markdown[0] and markdown[2] == "| expectation | column | severity | result | observed |"
    assert len(markdown) == 4 + len(result.outcomes)
    assert any(line.startswith("| filter_values.present | typeespacepublic | blocking | **FAIL** | missing 'Giratoire'")
               for line in markdown)
    assert any(line.startswith("| table.row_count_vs_previous | — | warning | warn |") for line in markdown)
    message = result.failure_message("espaces_publics")
    assert message.startswith("Source 'espaces_publics' failed its 'public_spaces' quality suite: 1 blocking check(s)")
    assert "1 warning(s): table.row_count_vs_previous" in message
    assert result.gx_version == gx.__version__
    stats = result.statistics
    assert stats["evaluated"] - stats["successful"] == 2
    assert stats["success_percent"] == pytest.approx(100 * stats["successful"] / stats["evaluated"])


def test_per_call_cost_on_a_10000_row_layer(catalogue, sources):
    source = sources["arbres_alignement"]
    layer = good_layer(source, catalogue.factors, n=10_000)
    run(layer, source, catalogue)  # the context exists already; one warm-up run anyway
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        result = run(layer, source, catalogue, previous_row_count=10_000)
        timings.append(time.perf_counter() - started)
    assert result.passed, result.failure_message()
    print(f"\nquality suite 'trees' on 10 000 rows ({len(result.outcomes)} expectations): "
          f"{min(timings):.2f}-{max(timings):.2f} s per call")
    # ~0.3 s on a quiet machine; the bound catches a context rebuilt per call (+5 s) without flaking under load
    assert min(timings) < 2.0


def test_schema_accepts_both_pandas_string_flavours_and_survives_geoparquet(catalogue, sources, tmp_path):
    source = sources["espaces_publics"]
    layer = good_layer(source, catalogue.factors)
    path = tmp_path / "espaces_publics.parquet"
    layer.to_parquet(path)
    reread = gpd.read_parquet(path)
    assert reread["surfacecalc"].dtype == "Float64"
    assert run(reread, source, catalogue).passed
    layer["typeespacepublic"] = layer["typeespacepublic"].astype("str")  # pandas 3 default (NaN-backed)
    assert run(layer, source, catalogue).passed
    layer["typeespacepublic"] = layer["typeespacepublic"].astype(object)  # not normalised: plain objects
    result = run(layer, source, catalogue)
    assert not result.passed and failed(result, "schema.column_type", "typeespacepublic")[0].observed == "dtype object"


def test_bad_territory_bounds_and_unknown_family_are_errors(catalogue, sources):
    source = sources["lignes_tram"]
    layer = good_layer(source, catalogue.factors)
    with pytest.raises(ValueError, match="lignes_tram.*territory_bounds"):
        run(layer, source, catalogue, bounds=(846000.0, 6515000.0, 840000.0, 6521000.0))
    stranger = source.model_copy(update={"family": "water_bodies"})
    with pytest.raises(KeyError, match="no quality suite for family 'water_bodies'"):
        run(layer, stranger, catalogue)
