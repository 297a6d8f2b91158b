"""Levels, native resolution, zoom range and tile existence against GDAL, rasterio and rio-tiler.

The rules (cloudroi/warp/overview.py, tiles.py) are checked on hand-made cases where the answer
is known, and on the GDAL-written files against the references themselves.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from rasterio.warp import calculate_default_transform

from cloudroi import warp as W
from tests.warp_data import TMS, open_source, quiet


@pytest.mark.parametrize("dst_crs", ["EPSG:3857", "EPSG:4326", "EPSG:3031", "EPSG:32633"])
@pytest.mark.parametrize("key", ["utm", "wgs84", "polar", "antimeridian", "world"])
def test_suggested_output_matches_calculate_default_transform(
    warp_files: dict[str, Path], key: str, dst_crs: str
) -> None:
    """GDALSuggestedWarpOutput2 in full: the polar file going to Web Mercator needs the bounds
    transform's pole, the 170..190 E file the bisection at 180, the world file going to UTM the
    points 180 degrees from the central meridian."""
    g = open_source(warp_files[key]).grid
    with quiet():
        tr, w, h = calculate_default_transform(g.crs, dst_crs, g.width, g.height, *g.bounds)
    mine = W.suggested_warp_output(g, dst_crs)
    x0, dx, _, y0, _, dy = mine.transform
    assert (x0, y0, dx, dy) == pytest.approx((tr.c, tr.f, tr.a, tr.e), rel=1e-9, abs=1e-6)
    assert (mine.width, mine.height) == (w, h)


def _rio_tiler_zooms(path: Path) -> tuple[int, int]:
    from rio_tiler.io import Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Reader(str(path)) as r:
            return int(r.minzoom), int(r.maxzoom)


@pytest.mark.parametrize("key", ["utm", "wgs84", "polar", "antimeridian", "world"])
def test_zoom_range_matches_rio_tiler(warp_files: dict[str, Path], key: str) -> None:
    src = open_source(warp_files[key])
    assert W.zoom_range(TMS, src.grid) == _rio_tiler_zooms(warp_files[key])


@pytest.mark.parametrize("key", ["utm", "wgs84", "polar", "antimeridian"])
def test_tile_exists_matches_rio_tiler(warp_files: dict[str, Path], key: str) -> None:
    from rio_tiler.io import Reader

    src = open_source(warp_files[key])
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Reader(str(warp_files[key])) as r:
            for z in (1, 3, 5):
                step = max(1, 2**z // 8)
                for x in range(0, 2**z, step):
                    for y in range(0, 2**z, step):
                        expected = r.tile_exists(x, y, z)
                        seen.add(expected)
                        assert W.tile_exists(TMS, src.grid, x, y, z) == expected, (x, y, z)
    assert seen == {True, False}


def test_vrt_overview_rule() -> None:
    levels = [(4096, 4096), (2048, 2048), (1024, 1024), (512, 512)]
    # a 5000-pixel VRT read into 256: desired 19.5; factors 2, 4, 8 are all below 19.5 * 1.2
    assert W.vrt_overview_level(levels, (5000, 5000), (256, 256)) == 3
    # desired 1.9: factor 2 is below 1.9 * 1.2 = 2.28 for nearest, not below 1.9 * 1.01
    assert W.vrt_overview_level(levels, (486, 486), (256, 256)) == 1
    assert W.vrt_overview_level(levels, (486, 486), (256, 256), "bilinear") == 0
    assert W.vrt_overview_level(levels, (256, 256), (256, 256)) == 0
    assert W.vrt_overview_level(levels, (100, 100), (256, 256)) == 0  # overzoom


def test_gdalwarp_overview_rule() -> None:
    """gdalwarp 3.10: the coarsest overview whose factor is below ratio + 0.1 (checked against
    gdalwarp itself by test_region_matches_gdalwarp_ovr_auto)."""
    src = W.Grid("EPSG:32633", (480000.0, 10.0, 0.0, 5050000.0, 0.0, -10.0), 2048, 2048)
    levels = [(2048, 2048), (1024, 1024), (512, 512), (256, 256)]

    def level_for(res: float) -> int:
        return W.gdalwarp_overview_level(
            src, levels, W.Grid.from_resolution(src.crs, src.bounds, res)
        )

    assert level_for(10) == 0
    assert level_for(5) == 0  # finer than level 0
    assert level_for(30) == 1  # 3x: the level just finer (2x)
    assert level_for(40) == 2  # exactly 4x
    assert level_for(39.7) == 2  # 3.97x: the 4x overview, within 0.1 (GDAL 3.10, #10873)
    assert level_for(38) == 1  # 3.8x: 4x is not below 3.8 + 0.1
    assert level_for(200) == 3  # coarser than every level: the last
    assert (
        W.gdalwarp_overview_level(src, levels[:1], W.Grid.from_resolution(src.crs, src.bounds, 200))
        == 0
    )


def test_tile_level_matches_the_level_gdal_read(warp_files: dict[str, Path]) -> None:
    """rio-tiler reads the overview GDAL picks; the engine picks the same (tile 12 of the UTM
    file reads the 2x overview, 9 the 8x one, 15 full resolution)."""
    src = open_source(warp_files["utm"])
    picks = {}
    for z in (9, 12, 15):
        t = TMS.tile(14.85, 45.45, z)
        picks[z] = W.tile_level(src.grid, src.levels, W.tile_grid(TMS, t.x, t.y, z))
    assert picks == {9: 3, 12: 1, 15: 0}
