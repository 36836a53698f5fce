"""GeoTIFF round trip, COG mosaic of commune parts, class polygons, preview PNG."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.io import MemoryFile

from iarbre_assets.geo.grid import Window
from iarbre_assets.geo.preview import class_preview_png
from iarbre_assets.store.rasters import mosaic_to_cog, read_geotiff, write_geotiff
from iarbre_assets.geo.vectorise import class_polygons

from geo_helpers import X0, Y0


def test_geotiff_round_trip_keeps_grid_crs_and_nodata(tmp_path):
    window = Window(X0, Y0, 7, 3)
    score = np.arange(21, dtype=np.float32).reshape(3, 7) - 5
    score[1, 2] = -9999
    path = write_geotiff(tmp_path / "s" / "score.tif", score, window, nodata=-9999.0)
    array, read_window, nodata = read_geotiff(path)
    assert read_window == window and nodata == -9999.0
    assert np.array_equal(array, score) and array.dtype == np.float32
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 2154
        assert src.transform == window.transform
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        # a point in cell (row 1, col 4) reads back that cell
        assert src.index(X0 + 22.5, Y0 - 7.5) == (1, 4)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["score.tif"]  # no temporary left behind
    with pytest.raises(ValueError, match="does not match window shape"):
        write_geotiff(tmp_path / "bad.tif", score, Window(X0, Y0, 3, 3), nodata=None)


def test_mosaic_places_parts_exactly_and_writes_a_cog(tmp_path):
    territory = Window(X0, Y0, 1200, 40)  # wide enough for the COG to get overviews
    # two commune parts on their own windows, each valid only on the cells it owns
    west_w = Window(X0, Y0 - 50, 600, 30)  # rows 10..39, cols 0..599
    east_w = Window(X0 + 5 * 550, Y0, 650, 40)  # rows 0..39, cols 550..1199
    west = np.full(west_w.shape, 255, dtype=np.uint8)
    west[:, :580] = 2
    east = np.full(east_w.shape, 255, dtype=np.uint8)
    east[:, 30:] = 8  # territory cols 580..1199
    east[0, 100] = 10
    parts = [write_geotiff(tmp_path / "w.tif", west, west_w, 255), write_geotiff(tmp_path / "e.tif", east, east_w, 255)]
    out = tmp_path / "exports" / "class.tif"
    stats = mosaic_to_cog(parts, territory, out, np.uint8, 255)
    assert stats == {"parts": 2, "valid_cells": 30 * 580 + 40 * 620}
    array, window, nodata = read_geotiff(out)
    assert window == territory and nodata == 255
    expected = np.full(territory.shape, 255, dtype=np.uint8)
    expected[10:40, 0:580] = 2
    expected[:, 580:] = 8
    expected[0, 650] = 10
    assert np.array_equal(array, expected)
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) == [2, 4]
        assert src.block_shapes[0] == (512, 512)
        assert src.crs.to_epsg() == 2154
    assert sorted(p.name for p in out.parent.iterdir()) == ["class.tif"]


def test_mosaic_refuses_misaligned_and_overlapping_parts(tmp_path):
    territory = Window(X0, Y0, 10, 10)
    ok = write_geotiff(tmp_path / "ok.tif", np.ones((2, 2), np.uint8), Window(X0, Y0, 2, 2), 255)
    # a part whose origin is 2.5 m off the lattice (written by hand, as a foreign tool would)
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8", crs="EPSG:2154",
                       transform=rasterio.Affine(5, 0, X0 + 2.5, 0, -5, Y0), nodata=255) as dst:
        dst.write(np.ones((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="shifted.tif: not on the platform grid"):
        mosaic_to_cog([ok, shifted], territory, tmp_path / "m.tif", np.uint8, 255)
    coarse = write_geotiff(tmp_path / "coarse.tif", np.ones((2, 2), np.uint8), Window(X0, Y0, 2, 2, cell=10.0), 255)
    with pytest.raises(ValueError, match="coarse.tif: misaligned.*cell sizes differ"):
        mosaic_to_cog([coarse], territory, tmp_path / "m.tif", np.uint8, 255)
    outside = write_geotiff(tmp_path / "outside.tif", np.ones((2, 2), np.uint8), Window(X0 + 45, Y0, 2, 2), 255)
    with pytest.raises(ValueError, match="outside.tif: misaligned.*not inside"):
        mosaic_to_cog([outside], territory, tmp_path / "m.tif", np.uint8, 255)
    twice = write_geotiff(tmp_path / "twice.tif", np.ones((2, 2), np.uint8), Window(X0 + 5, Y0, 2, 2), 255)
    with pytest.raises(ValueError, match="twice.tif: 2 cells already have a value"):
        mosaic_to_cog([ok, twice], territory, tmp_path / "m.tif", np.uint8, 255)
    assert not (tmp_path / "m.tif").exists()


def test_class_polygons_cover_each_class_cell_area(tmp_path):
    window = Window(X0, Y0, 6, 5)
    classes = np.array(
        [
            [0, 0, 6, 6, 255, 10],
            [0, 6, 6, 8, 255, 10],
            [8, 8, 8, 8, 8, 10],
            [2, 8, 4, 4, 8, 255],
            [2, 8, 4, 6, 6, 255],
        ],
        dtype=np.uint8,
    )
    result = dict(class_polygons(classes, window))
    assert sorted(result) == [0, 2, 4, 6, 8, 10]
    for value, geom in result.items():
        assert geom.is_valid
        assert geom.area == pytest.approx((classes == value).sum() * 25.0)
    # class 6 is two separate regions, dissolved into one MultiPolygon
    assert result[6].geom_type == "MultiPolygon" and len(result[6].geoms) == 2
    # a class-0 cell centre is inside the class-0 geometry, in map coordinates
    assert result[0].contains(shapely.Point(X0 + 2.5, Y0 - 2.5))
    assert class_polygons(np.full((5, 6), 255, np.uint8), window) == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_preview_png_decodes_with_the_published_colours(catalogue):
    colours = catalogue.class_colours()
    classes = np.full((1000, 600), 6, dtype=np.uint8)
    classes[:500, :300] = 0
    classes[500:, 300:] = 10
    classes[:100, 500:] = 255
    png = class_preview_png(classes, colours, max_px=250)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with MemoryFile(png) as memfile, memfile.open() as src:
        assert src.driver == "PNG"
        assert (src.height, src.width) == (250, 150)  # 1000 x 600 / 4
        cmap = src.colormap(1)
        pixels = src.read(1)
    rgba = {value: cmap[value] for value in np.unique(pixels)}
    hex_of = {v: "#{:02X}{:02X}{:02X}".format(*c[:3]) for v, c in rgba.items() if c[3] == 255}
    assert sorted(hex_of.values()) == sorted([colours[0], colours[6], colours[10]])
    assert "#{:02X}{:02X}{:02X}".format(*cmap[pixels[0, 0]][:3]) == colours[0] == "#C4C4C4"
    assert "#{:02X}{:02X}{:02X}".format(*cmap[pixels[-1, -1]][:3]) == colours[10] == "#025400"
    assert "#{:02X}{:02X}{:02X}".format(*cmap[pixels[-1, 0]][:3]) == colours[6] == "#A6CC4A"
    assert cmap[pixels[0, -1]][3] == 0  # nodata corner is transparent
    with pytest.raises(ValueError, match="class values \\[7\\] have no colour"):
        class_preview_png(np.array([[7]], np.uint8), colours)
