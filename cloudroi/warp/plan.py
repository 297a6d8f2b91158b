"""Planning a warp: which level to read, which windows of it, and every coordinate decided.

A plan holds all the projection math of a warp and no pixels: the level (``gdalwarp -ovr AUTO``
for regions, the WarpedVRT overview rule for tiles), the warp chunks with GDAL's source windows,
kernel scales and approximated coordinates, and the block-aligned windows of the level the
kernels read. The region layer reads ``plan.windows`` of ``plan.level`` (``Image.read`` /
``Image.read_mask``) and hands the arrays to :func:`~.execute.execute`. A plan does not depend
on the bands read, so one plan serves every band (and every band subset) of an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from morecantile import TileMatrixSet

from ..errors import LevelError
from ..types import Window
from .approx import MAX_ERROR
from .chunk import ChunkPlan, plan_chunks
from .coverage import source_windows
from .grid import Grid, WarpError, level_grids
from .overview import gdalwarp_overview_level
from .tiles import tile_grid, tile_level

__all__ = ["RESAMPLINGS", "Resampling", "WarpPlan", "plan_region", "plan_tile"]

Resampling: TypeAlias = Literal["nearest", "bilinear", "cubic", "average"]
RESAMPLINGS: tuple[Resampling, ...] = ("nearest", "bilinear", "cubic", "average")
#: A VRTWarpedDataset's block, the unit GDAL warps WarpedVRT reads in: (rows, cols) at most.
VRT_BLOCK = (128, 512)


@dataclass(frozen=True, slots=True)
class WarpPlan:
    """A warp with all its projection math done: read ``windows`` (block-aligned, in pixels
    of ``level``, whose grid is ``src``) and pass them to :func:`~.execute.execute`, which
    fills ``dst`` with ``resampling``."""

    level: int
    src: Grid
    dst: Grid
    resampling: Resampling
    chunks: tuple[ChunkPlan, ...]
    windows: tuple[Window, ...]


def _check(resampling: str, block_shape: tuple[int, int]) -> None:
    if resampling not in RESAMPLINGS:
        raise WarpError(f"resampling {resampling!r} is not one of {', '.join(RESAMPLINGS)}")
    if len(block_shape) != 2 or min(block_shape) < 1:
        raise WarpError(f"block shape {block_shape} is not (rows, cols) of at least 1")


def plan_region(
    src: Grid,
    levels: Sequence[tuple[int, int]],
    dst: Grid,
    resampling: Resampling = "nearest",
    *,
    block_shape: tuple[int, int] = (256, 256),
    level: int | None = None,
    chunk_shape: tuple[int, int] | None = None,
    max_error: float = MAX_ERROR,
    scale_with_extra: bool = True,
) -> WarpPlan:
    """Plan the reprojected read of the grid ``dst`` from an image whose level 0 is ``src``.

    ``levels`` are the ``(width, height)`` of level 0 then of each overview (``Image.levels``),
    ``block_shape`` the ``(rows, cols)`` of a block (``Image.block_shape``). The level is the
    one ``gdalwarp -ovr AUTO`` would use unless ``level`` is given. The destination is warped
    as one chunk (what ``rasterio.warp.reproject`` does with ``SRC_FILL_RATIO_HEURISTICS=NO``
    and enough warp memory) unless ``chunk_shape`` ``(rows, cols)`` splits it."""
    _check(resampling, block_shape)
    grids = level_grids(src, levels)
    lvl = gdalwarp_overview_level(src, levels, dst) if level is None else level
    if not 0 <= lvl < len(grids):
        raise LevelError(f"level {lvl} is not one of the image's {len(grids)} levels")
    grid = grids[lvl]
    chunks = plan_chunks(grid, dst, resampling, chunk_shape, max_error, scale_with_extra)
    windows = source_windows(chunks, resampling, (grid.width, grid.height), block_shape)
    return WarpPlan(lvl, grid, dst, resampling, chunks, tuple(windows))


def plan_tile(
    src: Grid,
    levels: Sequence[tuple[int, int]],
    tms: TileMatrixSet,
    x: int,
    y: int,
    z: int,
    resampling: Resampling = "nearest",
    *,
    vrt_bands: int = 2,
    tilesize: int = 256,
    block_shape: tuple[int, int] = (256, 256),
    io_resampling: str = "nearest",
    max_error: float = MAX_ERROR,
) -> WarpPlan:
    """Plan tile ``z/x/y`` of ``tms`` (``tilesize`` pixels square) the way rio-tiler's
    ``Reader.tile(x, y, z, reproject_method=resampling, resampling_method=io_resampling)``
    gets it from GDAL 3.10: the level :func:`~.tiles.tile_level` picks, warped straight into
    the tile grid. ``vrt_bands`` is the band count of rio-tiler's WarpedVRT
    (:func:`~.tiles.rio_tiler_vrt_bands`): one band is warped in one chunk, more in the VRT's
    blocks (``min(h, 128)`` rows x ``min(w, 512)`` columns), each with its own source window
    and kernel scale, and with the one-chunk path's scale rule."""
    _check(resampling, block_shape)
    tile = tile_grid(tms, x, y, z, tilesize)
    lvl = tile_level(src, levels, tile, io_resampling)
    one_chunk = vrt_bands == 1
    chunk = None if one_chunk else (min(tile.height, VRT_BLOCK[0]), min(tile.width, VRT_BLOCK[1]))
    return plan_region(
        src,
        levels,
        tile,
        resampling,
        block_shape=block_shape,
        level=lvl,
        chunk_shape=chunk,
        max_error=max_error,
        scale_with_extra=not one_chunk,
    )
