"""Which source blocks a warp reads: only the touched ones, in a few compact windows, even across
the antimeridian and around a pole; they hold every pixel the kernels read; and they are what
``Image.read`` serves (a tile read end to end through the range server equals rio-tiler's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cloudroi
from cloudroi import warp as W
from cloudroi.testing import RangeServer
from tests.upstream import Upstream
from tests.warp_data import KERNELS, REGIONS, TMS, open_source, rio_tiler_tile


def _area(ws: tuple[W.Window, ...]) -> int:
    return sum(w.width * w.height for w in ws)


@pytest.mark.parametrize("kernel", KERNELS)
def test_antimeridian_reads_the_two_sides_not_the_whole_width(
    warp_files: dict[str, Path], kernel: W.Resampling
) -> None:
    src = open_source(warp_files["world"])
    dst = REGIONS[0][2]  # UTM 60S across 180
    plan = W.plan_region(src.grid, src.levels, dst, kernel, level=0, block_shape=src.block)
    # GDAL's own read window is the full 4096-pixel width (its 90% rule) ...
    assert all(c.src is not None and c.src.window.width == src.grid.width for c in plan.chunks)
    # ... cloudroi reads a block column at each edge (average: GDAL's boxes of the pixels on
    # 180 itself span the width, so their rows are read across it)
    if kernel != "average":
        assert len(plan.windows) == 2
        assert {w.col_off for w in plan.windows} == {0, src.grid.width - 256}
        assert _area(plan.windows) <= 2 * 256 * 256
    else:
        assert _area(plan.windows) < 0.2 * src.grid.width * src.grid.height


def test_antimeridian_tiles_read_two_windows(warp_files: dict[str, Path]) -> None:
    """A web-mercator tile across 180 from the global file: one window per side."""
    src = open_source(warp_files["world"])
    for x, z in ((0, 2), (3, 2)):
        plan = W.plan_tile(src.grid, src.levels, TMS, x, 1, z, "bilinear")
        assert max(w.width for w in plan.windows) < plan.src.width
    dst = W.Grid.from_bounds("EPSG:3832", (-1000000, -3000000, 7000000, 3000000), 400, 300)
    plan = W.plan_region(src.grid, src.levels, dst, "bilinear", level=0, block_shape=src.block)
    assert len(plan.windows) == 2
    assert min(w.col_off for w in plan.windows) == 0
    assert max(w.col_end for w in plan.windows) == src.grid.width
    assert _area(plan.windows) < 0.5 * src.grid.width * src.grid.height


def test_polar_cap_reads_a_fraction_not_full_width_rows(warp_files: dict[str, Path]) -> None:
    src = open_source(warp_files["world"])
    dst = REGIONS[2][2]  # 3031 with the pole inside
    plan = W.plan_region(src.grid, src.levels, dst, "bilinear", level=0, block_shape=src.block)
    # GDAL reads every row south of ~55 S over the full width; the engine the cap's blocks
    assert _area(plan.windows) < 0.35 * src.grid.width * src.grid.height
    assert len(plan.windows) <= 8


@pytest.mark.parametrize("z", [0, 1, 2, 3])
def test_polar_source_tiles_read_within_their_level(warp_files: dict[str, Path], z: int) -> None:
    src = open_source(warp_files["polar"])
    plan = W.plan_tile(src.grid, src.levels, TMS, 0, 2**z - 1, z, "nearest")
    w, h = src.levels[plan.level]
    assert 0 < _area(plan.windows) <= w * h
    assert all(win.within(w, h) for win in plan.windows)


def test_blocks_to_windows_merges_runs() -> None:
    t = np.zeros((4, 6), bool)
    t[0, 0:2] = t[1, 0:2] = True  # a 2 x 2 block rectangle
    t[0, 5] = t[1, 5] = t[2, 5] = True  # a column on the far right
    t[3, 2:4] = True
    ws = W.blocks_to_windows(t, (256, 256), (1500, 1000))
    assert W.Window(0, 0, 512, 512) in ws
    assert W.Window(1280, 0, 220, 768) in ws  # clipped to the level width
    assert W.Window(512, 768, 512, 232) in ws  # and height
    assert len(ws) == 3


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("key", "zxy"), [("utm", (12, 2216, 1466)), ("world", (1, 0, 0))])
def test_windows_hold_every_tap(
    warp_files: dict[str, Path], kernel: W.Resampling, key: str, zxy: tuple[int, int, int]
) -> None:
    """Executing with only the planned windows gives exactly the result of the whole level."""
    src = open_source(warp_files[key])
    z, x, y = zxy
    plan = W.plan_tile(src.grid, src.levels, TMS, x, y, z, kernel)
    arr = src.arrays[plan.level]
    few = W.execute(plan, src.blocks(plan))
    whole = W.execute(plan, [W.SourceBlock(W.Window(0, 0, arr.shape[2], arr.shape[1]), arr)])
    assert few.missing == 0
    assert np.array_equal(few.data, whole.data)
    assert np.array_equal(few.mask, whole.mask)


def test_a_missing_window_is_counted(warp_files: dict[str, Path]) -> None:
    src = open_source(warp_files["world"])
    plan = W.plan_region(src.grid, src.levels, REGIONS[0][2], "cubic", level=0)
    blocks = src.blocks(plan)
    assert len(blocks) == 2
    assert W.execute(plan, blocks).missing == 0
    assert W.execute(plan, blocks[:1]).missing > 0


async def test_tile_read_through_image_equals_rio_tiler(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    """The region layer's contract: Grid from the Image, plan.windows read with Image.read and
    Image.read_mask at plan.level, execute -> rio-tiler's tile, with no other block fetched."""
    path = warp_files["wgs84"]
    up = Upstream.publish(server, {"w.tif": path.read_bytes()}, "warp")
    z, x, y = 6, 33, 24
    async with cloudroi.open(up.url("w.tif")) as img:
        assert img.crs is not None
        assert img.transform is not None
        src = W.Grid(img.crs.to_string(), img.transform, img.width, img.height)
        bands = W.rio_tiler_vrt_bands(img.count, img.nodata)
        plan = W.plan_tile(
            src, img.levels, TMS, x, y, z, "cubic", vrt_bands=bands, block_shape=img.block_shape
        )
        assert plan.level > 0
        blocks = []
        for w in plan.windows:
            data = await img.read(w, level=plan.level)
            valid = await img.read_mask(w, level=plan.level) > 0
            blocks.append(W.SourceBlock(w, data, valid))
        res = W.execute(plan, blocks, src_nodata=img.nodata)
    ref, ref_mask = rio_tiler_tile(path, z, x, y, "cubic")
    assert res.missing == 0
    assert np.array_equal(res.mask, ref_mask)
    assert np.array_equal(res.data[:, ref_mask], ref[:, ref_mask])
