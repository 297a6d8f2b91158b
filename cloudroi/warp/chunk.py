"""Warp chunks: the unit GDAL warps in, and everything a chunk needs decided before any pixel.

Source window, kernel scale and the approximated coordinates are all per chunk in GDAL, so the
chunking changes results and has to be GDAL's:

* ``rasterio.warp.reproject`` (ChunkAndWarpImage) splits by warp memory and by the source fill
  ratio; with ``SRC_FILL_RATIO_HEURISTICS=NO`` and enough memory it is one chunk, which is what
  :func:`~.plan.plan_region` does by default;
* a WarpedVRT read (rio-tiler's ``tile()``): one chunk for a one-band VRT, otherwise the VRT's
  blocks, ``min(h, 128)`` rows x ``min(w, 512)`` columns (measured with CPL_DEBUG on 3.10).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Window
from .approx import MAX_ERROR, Footprint, corner_footprints, source_footprint
from .average import wraps_x
from .grid import Grid
from .transform import PixelTransform
from .window import SourceProbe, SourceWindow, compute_source_window, kernel_scale

__all__ = ["ChunkPlan", "chunk_windows", "plan_chunks"]


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One warp chunk: its destination window, GDAL's source window for it (None: nothing of
    the chunk maps inside the source), the kernel ``(x, y)`` scale, the source coordinates of
    its pixel centres (and corners, for ``average``) and whether average wraps at 180."""

    dst: Window
    src: SourceWindow | None
    scale: tuple[float, float]
    centres: Footprint
    corners: tuple[Footprint, Footprint] | None
    wrap_x: bool = False


def chunk_windows(dst: Grid, chunk_shape: tuple[int, int] | None) -> list[Window]:
    """The destination split into ``(rows, cols)`` chunks, row by row (one chunk if None)."""
    if chunk_shape is None:
        return [Window(0, 0, dst.width, dst.height)]
    ch, cw = chunk_shape
    return [
        Window(c, r, min(cw, dst.width - c), min(ch, dst.height - r))
        for r in range(0, dst.height, ch)
        for c in range(0, dst.width, cw)
    ]


def exact_near_edges(pt: PixelTransform, win: Window, centres: Footprint, sw: Window) -> Footprint:
    """GWKCheckAndComputeSrcOffsets's second try: a position whose first failed check of the
    source window (left, top, right, bottom, in that order) misses by less than a pixel is
    transformed again, alone, so exactly; the kernel then uses the exact position."""
    x, y = centres.x, centres.y
    with np.errstate(invalid="ignore"):
        fx0, fy0 = x < sw.col_off, y < sw.row_off
        fx1, fy1 = x + 1e-10 > sw.col_end, y + 1e-10 > sw.row_end
        retry = fx0 & (x > sw.col_off - 1)
        retry |= ~fx0 & fy0 & (y > sw.row_off - 1)
        retry |= ~fx0 & ~fy0 & fx1 & (x < sw.col_end + 1)
        retry |= ~fx0 & ~fy0 & ~fx1 & fy1 & (y < sw.row_end + 1)
    if not retry.any():
        return centres
    r, c = np.nonzero(retry)
    cols = (c + win.col_off).astype(np.float64) + 0.5
    ex, ey = pt(cols, (r + win.row_off).astype(np.float64) + 0.5)
    x, y = x.copy(), y.copy()
    x[r, c], y[r, c] = ex, ey
    return Footprint(x, y, centres.exact_points + r.size)


def plan_chunks(
    src: Grid,
    dst: Grid,
    resampling: str,
    chunk_shape: tuple[int, int] | None = None,
    max_error: float = MAX_ERROR,
    scale_with_extra: bool = True,
) -> tuple[ChunkPlan, ...]:
    """Per warp chunk of ``dst``: GDAL's source window and kernel scale in the level ``src``,
    and the approximated source coordinates of its pixel centres (and corners for average)."""
    pt = PixelTransform(dst, src)
    probe = SourceProbe.of(pt)
    out = []
    for win in chunk_windows(dst, chunk_shape):
        sw = compute_source_window(pt, win, resampling, probe)
        if sw is None:
            nan = np.full((win.height, win.width), np.nan)
            out.append(ChunkPlan(win, None, (1.0, 1.0), Footprint(nan, nan), None))
            continue
        scale = kernel_scale(pt, win, sw, with_extra=scale_with_extra)
        centres = source_footprint(pt, win, max_error=max_error)
        corners = None
        if resampling == "average":
            corners = corner_footprints(pt, win, max_error)
        else:
            centres = exact_near_edges(pt, win, centres, sw.window)
        out.append(ChunkPlan(win, sw, scale, centres, corners, wraps_x(src, sw.window)))
    return tuple(out)
