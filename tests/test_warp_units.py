"""The pure parts of cloudroi.warp: the approximation's error, CRS handling, plans shared by
bands, typed errors for bad input, GDAL's storing rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudroi import warp as W
from cloudroi.errors import CloudROIError, LevelError, WindowError
from cloudroi.warp import kernels, transform
from tests.warp_data import TMS, open_source

UTM = W.Grid("EPSG:32633", (480000.0, 10.0, 0.0, 5050000.0, 0.0, -10.0), 2048, 2048)
LEVELS = [(2048, 2048), (1024, 1024), (512, 512), (256, 256)]


@pytest.mark.parametrize(
    ("key", "zxy", "max_exact"),
    [
        ("utm", (13, 4433, 2932), 2000),  # nearly affine: a few exact points per row
        ("polar", (2, 1, 3), 256 * 256 // 2),  # curved around the pole: many more
    ],
)
def test_approximation_error_is_bounded(
    warp_files: dict[str, Path], key: str, zxy: tuple[int, int, int], max_exact: int
) -> None:
    src = open_source(warp_files[key]).grid
    dst = W.tile_grid(TMS, zxy[1], zxy[2], zxy[0])
    pt = W.PixelTransform(dst, src)
    cols = np.arange(256) + 0.5
    approx = W.approx_transform(pt, cols, cols)
    ex, ey = pt(np.tile(cols, 256), np.repeat(cols, 256))
    err = np.abs(approx.x.ravel() - ex) + np.abs(approx.y.ravel() - ey)
    ok = np.isfinite(err)
    assert ok.mean() > 0.5
    # GDAL checks each span at its middle only, so elsewhere the error may exceed 0.125 a bit
    assert np.max(err[ok]) <= 2 * W.MAX_ERROR
    assert approx.exact_points <= max_exact
    exact = W.approx_transform(pt, cols, cols, max_error=0.0)
    assert exact.exact_points == 256 * 256
    assert np.array_equal(exact.x.ravel()[ok], ex[ok])


def test_center_long_wraps_only_files_beyond_180() -> None:
    beyond = W.Grid("EPSG:4326", (170.0, 0.02, 0.0, 0.0, 0.0, -0.02), 1000, 1000)
    world = W.Grid("EPSG:4326", (-180.0, 0.36, 0.0, 90.0, 0.0, -0.36), 1000, 500)
    assert transform.center_long(beyond) == 180.0
    assert transform.center_long(world) is None
    assert transform.center_long(UTM) is None
    # a web-mercator point at 175 W is read 15 degrees east of 170 E, inside the file
    x = -175.0 * 20037508.342789244 / 180.0
    dst = W.Grid.from_bounds("EPSG:3857", (x - 1, -1000.0, x + 1, 0.0), 1, 1)
    col, _ = W.PixelTransform(dst, beyond)(np.array([0.5]), np.array([0.5]))
    assert col[0] == pytest.approx((185.0 - 170.0) / 0.02)


def test_transformers_are_cached_by_crs_pair() -> None:
    transform.transformer.cache_clear()
    for _ in range(3):
        W.plan_tile(UTM, LEVELS, TMS, 8867, 5864, 14, "bilinear")
    info = transform.transformer.cache_info()
    assert info.misses <= 3  # 3857 -> 32633, its inverse, and the probes' pair
    assert info.hits > info.misses
    assert info.maxsize is not None
    assert info.maxsize <= 128


def test_one_plan_serves_every_band(warp_files: dict[str, Path]) -> None:
    src = open_source(warp_files["utm"])
    for kernel in W.RESAMPLINGS:
        plan = W.plan_tile(src.grid, src.levels, TMS, 2216, 1466, 12, kernel)
        rgb = W.execute(plan, src.blocks(plan))
        for band in range(3):
            one = [W.SourceBlock(b.window, b.data[band : band + 1]) for b in src.blocks(plan)]
            single = W.execute(plan, one)
            assert np.array_equal(single.data[0], rgb.data[band])
            assert np.array_equal(single.mask, rgb.mask)


def test_warp_of_a_whole_level_equals_execute(warp_files: dict[str, Path]) -> None:
    src = open_source(warp_files["wgs84"])
    dst = W.Grid.from_bounds("EPSG:32632", (300000, 3900000, 700000, 4300000), 200, 200)
    plan = W.plan_region(src.grid, src.levels, dst, "bilinear", level=1)
    res = W.warp(src.arrays[1], plan.src, dst, "bilinear", src_nodata=src.nodata)
    planned = W.execute(plan, src.blocks(plan), src_nodata=src.nodata)
    assert res.mask.any()
    assert np.array_equal(res.mask, planned.mask)
    assert np.array_equal(res.data, planned.data)


def test_grids_from_bounds_and_resolution() -> None:
    g = W.Grid.from_resolution("EPSG:32633", UTM.bounds, 30.0)
    assert (g.width, g.height) == (683, 683)  # int((20480 + 15) / 30), as gdalwarp -tr
    assert g.transform == (480000.0, 30.0, 0.0, 5050000.0, 0.0, -30.0)
    b = W.Grid.from_bounds("EPSG:4326", (10.0, 40.0, 12.0, 41.0), 200, 100)
    assert b.bounds == (10.0, 40.0, 12.0, 41.0)
    assert b.resolution == pytest.approx((0.01, 0.01))
    assert UTM.overview(1024, 1024).transform == (480000.0, 20.0, 0.0, 5050000.0, 0.0, -20.0)
    # GDALInvGeoTransform's north-up case: edges land on integers
    c, r = UTM.to_pixel(np.array([480000.0 + 7 * 10.0]), np.array([5050000.0 - 3 * 10.0]))
    assert (c[0], r[0]) == (7.0, 3.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: W.Grid("EPSG:4326", (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), 0, 10),
        lambda: W.Grid("EPSG:4326", (0.0, 0.0, 0.0, 0.0, 0.0, -1.0), 10, 10),
        lambda: W.Grid("EPSG:4326", (0.0, float("nan"), 0.0, 0.0, 0.0, -1.0), 10, 10),
        lambda: W.Grid("", (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), 10, 10),
        lambda: W.Grid.from_bounds("EPSG:4326", (1.0, 0.0, 0.0, 1.0), 10, 10),
        lambda: W.Grid.from_resolution("EPSG:4326", (0.0, 0.0, 1.0, 1.0), -0.1),
        lambda: W.plan_region(
            UTM, LEVELS, W.Grid.from_bounds("EPSG:999999", (0, 0, 1, 1), 8, 8), "nearest"
        ),
        lambda: W.plan_region(UTM, LEVELS, UTM, "lanczos"),  # type: ignore[arg-type]
        lambda: W.plan_region(UTM, [(100, 100)], UTM, "nearest"),
        lambda: W.plan_region(UTM, LEVELS, UTM, "nearest", block_shape=(0, 256)),
    ],
)
def test_bad_input_is_a_typed_error(make: object) -> None:
    with pytest.raises(W.WarpError) as info:
        make()  # type: ignore[operator]
    assert isinstance(info.value, WindowError)
    assert isinstance(info.value, CloudROIError)


def test_bad_levels_and_blocks_are_typed_errors() -> None:
    with pytest.raises(LevelError):
        W.plan_region(UTM, LEVELS, UTM, "nearest", level=4)
    plan = W.plan_region(UTM, LEVELS, UTM.overview(512, 512), "nearest", level=0)
    ok = np.zeros((1, 256, 256), np.uint8)
    with pytest.raises(W.WarpError):
        W.execute(plan, [])
    with pytest.raises(W.WarpError):  # data shape does not fit the window
        W.execute(plan, [W.SourceBlock(W.Window(0, 0, 256, 128), ok)])
    with pytest.raises(W.WarpError):  # outside the level
        W.execute(plan, [W.SourceBlock(W.Window(1920, 0, 256, 256), ok)])
    mixed = [W.SourceBlock(W.Window(0, 0, 256, 256), ok)]
    mixed.append(W.SourceBlock(W.Window(256, 0, 256, 256), ok.astype(np.uint16)))
    with pytest.raises(W.WarpError):
        W.execute(plan, mixed)


def test_store_rounds_clamps_and_moves_the_destination_nodata() -> None:
    def v() -> np.ndarray:
        return np.array([[-3.0, 0.49, 0.5, 1.5, 254.5, 300.0, 7.2]])

    assert kernels.store(v(), np.dtype(np.uint8), None).tolist() == [[0, 0, 1, 2, 255, 255, 7]]
    # a value equal to the destination nodata moves one step (to min + 1 at the minimum)
    assert kernels.store(v(), np.dtype(np.uint8), 7).tolist() == [[0, 0, 1, 2, 255, 255, 6]]
    assert kernels.store(v(), np.dtype(np.uint8), 0).tolist() == [[1, 1, 1, 2, 255, 255, 7]]
    # signed types round half up too: floor(v + 0.5)
    signed = kernels.store(np.array([[-2.5, -1.6, -0.5, 0.5]]), np.dtype(np.int16), None)
    assert signed.tolist() == [[-2, -2, 0, 1]]
    f = kernels.store(v(), np.dtype(np.float32), None)
    assert f.dtype == np.float32
    assert np.allclose(f, v())
    # nearest's values keep their type, only the nodata moves
    near = np.array([[0, 5, 7]], np.uint8)
    assert kernels.store(near, np.dtype(np.uint8), 7).tolist() == [[0, 5, 6]]
    assert near.tolist() == [[0, 5, 7]]
