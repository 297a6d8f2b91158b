"""Which source pixels, blocks and windows a warp reads.

GDAL reads each chunk's whole source window (:mod:`~.window`), which for an antimeridian or
polar footprint is the full width of the raster (its 90% rule). cloudroi reads less: from the
exact taps each kernel will read (:func:`needed_pixel_ranges`, the same rules as the kernels)
it marks the touched blocks of the level and merges them into rectangles
(:func:`blocks_to_windows`). An antimeridian footprint gives one window per side, a polar cap a
ring of windows, and executing from these windows equals executing from the whole level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..types import Window
from .average import average_box, average_corners
from .chunk import ChunkPlan
from .grid import BoolArray, IntArray
from .kernels import check_offsets
from .window import FILTER_RADIUS

__all__ = ["blocks_to_windows", "needed_pixel_ranges", "source_windows"]

Ranges = tuple[IntArray, IntArray, IntArray, IntArray]


def _average_ranges(chunk: ChunkPlan, sw: Window) -> Ranges:
    """Inclusive column/row ranges of the average boxes (a box across the antimeridian gives
    two ranges, one per side)."""
    assert chunk.corners is not None
    tl, br = chunk.corners
    ok, x0, x1, y0, y1 = average_corners(tl, br, chunk.centres.x, sw, chunk.wrap_x)
    c0, c1, r0, r1 = average_box(x0[ok], x1[ok], y0[ok], y1[ok], sw, chunk.wrap_x)
    c1, r1 = c1 - 1, r1 - 1
    over = c1 >= sw.width  # wrapped: the part past the width starts again at column 0
    c0 = np.concatenate([np.minimum(c0, sw.width - 1), np.zeros(int(over.sum()), np.intp)])
    c1 = np.concatenate([np.minimum(c1, sw.width - 1), c1[over] - sw.width])
    r0 = np.concatenate([r0, r0[over]])
    r1 = np.concatenate([r1, r1[over]])
    return c0 + sw.col_off, c1 + sw.col_off, r0 + sw.row_off, r1 + sw.row_off


def _kernel_ranges(chunk: ChunkPlan, resampling: str, sw: Window) -> Ranges:
    """Inclusive column/row ranges of the nearest/bilinear/cubic taps, clipped to the window."""
    x, y = chunk.centres.x.ravel(), chunk.centres.y.ravel()
    ok, ix, iy = check_offsets(x, y, sw)
    if resampling == "nearest":  # check_offsets keeps ix, iy inside the window: no clip
        c, r = ix[ok], iy[ok]
        return c, c, r, r
    else:
        xs, ys = chunk.scale
        radius = FILTER_RADIUS[resampling]
        xr = radius if xs >= 1 else math.ceil(radius / xs)
        yr = radius if ys >= 1 else math.ceil(radius / ys)
        bx = np.floor(np.where(ok, x, 0) - 0.5).astype(np.intp)
        by = np.floor(np.where(ok, y, 0) - 0.5).astype(np.intp)
        # 4-sample: cubic reads -1..2 (bilinear 0..1); widened kernels -R..R
        lo, hi = (-1, 2) if resampling == "cubic" else (0, 1)
        c0, c1 = bx + min(lo, -xr), bx + max(hi, xr)
        r0, r1 = by + min(lo, -yr), by + max(hi, yr)
    c0 = np.clip(c0[ok], sw.col_off, sw.col_end - 1)
    c1 = np.clip(c1[ok], sw.col_off, sw.col_end - 1)
    r0 = np.clip(r0[ok], sw.row_off, sw.row_end - 1)
    r1 = np.clip(r1[ok], sw.row_off, sw.row_end - 1)
    return c0, c1, r0, r1


def needed_pixel_ranges(chunk: ChunkPlan, resampling: str) -> Ranges:
    """Inclusive source column and row ranges ``(c0, c1, r0, r1)`` (level pixels) the kernel
    reads, one entry per warped destination pixel (two for an average box taken across the
    antimeridian): exactly the pixels :func:`~.execute.execute` will ask for."""
    if chunk.src is None:
        e = np.zeros(0, np.intp)
        return e, e, e, e
    if resampling == "average" and chunk.corners is not None:
        return _average_ranges(chunk, chunk.src.window)
    return _kernel_ranges(chunk, resampling, chunk.src.window)


def blocks_to_windows(
    touched: BoolArray, block_shape: tuple[int, int], size: tuple[int, int]
) -> list[Window]:
    """Merge touched blocks (a ``(block rows, block cols)`` boolean grid) into rectangles: runs
    of touched blocks per block row, stacked while consecutive block rows have the same run;
    windows clipped to the level's ``size`` (width, height), sorted by row then column."""
    bh, bw = block_shape
    width, height = size
    open_runs: dict[tuple[int, int], int] = {}
    out: list[Window] = []

    def close(run: tuple[int, int], start: int, end: int) -> None:
        c0, c1 = run[0] * bw, min(width, (run[1] + 1) * bw)
        r0, r1 = start * bh, min(height, end * bh)
        out.append(Window(c0, r0, c1 - c0, r1 - r0))

    for br in range(touched.shape[0]):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], touched[br].astype(np.int8), [0]])))
        runs = {(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)}
        for run in [r for r in open_runs if r not in runs]:
            close(run, open_runs.pop(run), br)
        for run in runs:
            open_runs.setdefault(run, br)
    for run, start in open_runs.items():
        close(run, start, touched.shape[0])
    return sorted(out, key=lambda w: (w.row_off, w.col_off))


def _mark(touched: BoolArray, ranges: Ranges, block_shape: tuple[int, int]) -> None:
    """Mark the blocks the pixel ranges touch."""
    bh, bw = block_shape
    nbx = touched.shape[1]
    c0, c1, r0, r1 = ranges
    flat = touched.reshape(-1)
    if c0 is c1 and r0 is r1:  # single pixels (nearest): one block each
        flat[(r0 // bh) * nbx + c0 // bw] = True
        return
    b_c0, b_c1, b_r0, b_r1 = c0 // bw, c1 // bw, r0 // bh, r1 // bh
    # a footprint spans at most two blocks per axis unless larger than a block: marking its
    # four corner blocks covers it; larger ones are filled rectangle by rectangle
    small = (b_c1 - b_c0 <= 1) & (b_r1 - b_r0 <= 1)
    if small.all():
        for rr, cc in ((b_r0, b_c0), (b_r0, b_c1), (b_r1, b_c0), (b_r1, b_c1)):
            flat[rr * nbx + cc] = True
    else:
        for rr, cc in ((b_r0, b_c0), (b_r0, b_c1), (b_r1, b_c0), (b_r1, b_c1)):
            flat[(rr * nbx + cc)[small]] = True
    if not small.all():
        rects = np.unique(np.stack([b_r0, b_r1, b_c0, b_c1])[:, ~small], axis=1)
        for a, b, c, d in rects.T:
            touched[a : b + 1, c : d + 1] = True


def source_windows(
    chunks: Sequence[ChunkPlan],
    resampling: str,
    src_size: tuple[int, int],
    block_shape: tuple[int, int],
) -> list[Window]:
    """The block-aligned windows of the level (``src_size`` = width, height; ``block_shape`` =
    rows, cols) holding every pixel the kernels of ``chunks`` read, and no untouched block."""
    bh, bw = block_shape
    width, height = src_size
    touched = np.zeros((-(-height // bh), -(-width // bw)), np.bool_)
    for chunk in chunks:
        ranges = needed_pixel_ranges(chunk, resampling)
        if ranges[0].size:
            _mark(touched, ranges, block_shape)
    return blocks_to_windows(touched, block_shape, src_size)
