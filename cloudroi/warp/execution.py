"""Executing a plan: the fetched blocks resampled into the destination grid (pure numpy).

The blocks become one :class:`~.canvas.Canvas`; then, chunk by chunk, the kernel runs on the
planned coordinates and the values are stored as GDAL stores them. Validity follows GDAL: an
invalid source pixel *under the position* skips the destination pixel for every kernel but
average (which only leaves invalid pixels out of its box), kernels skip invalid taps, and the
destination mask is where GDAL's destination alpha would be 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Window
from .approx import MAX_ERROR, Footprint
from .average import average
from .canvas import Canvas, SourceBlock
from .chunk import ChunkPlan, plan_chunks
from .grid import BoolArray, FloatArray, Grid, IntArray, WarpError
from .kernels import bilinear4, check_offsets, cubic4, scaled, store
from .plan import RESAMPLINGS, Resampling, WarpPlan
from .window import FOUR_SAMPLE_SCALE

__all__ = ["WarpResult", "execute", "warp"]


@dataclass(frozen=True, slots=True)
class WarpResult:
    """A warped grid: ``data`` ``(bands, height, width)`` in the source dtype (the destination
    nodata where nothing was warped), ``mask`` ``(height, width)`` True where GDAL's
    destination alpha would be 255, and ``missing``, the kernel taps that fell on source pixels
    no block held (0 when the blocks are the plan's windows)."""

    data: npt.NDArray[Any]
    mask: BoolArray
    missing: int = 0


_Values = tuple[npt.NDArray[Any], BoolArray, IntArray | None]
#: Pixels a kernel processes at once.
BATCH = 16384


def _positions(
    canvas: Canvas, chunk: ChunkPlan, sw: Window, single: bool
) -> tuple[FloatArray, FloatArray, IntArray | None, npt.NDArray[Any] | None]:
    """The chunk's warped positions ``x``, ``y`` and their flat indices in the chunk (None:
    all, in order), without the pixels whose centre source pixel is invalid (GDAL skips them
    whatever the kernel); with ``single``, also the centre pixels' values (nearest)."""
    x, y = chunk.centres.x.ravel(), chunk.centres.y.ravel()
    ok, ix, iy = check_offsets(x, y, sw)
    idx: IntArray | None = None
    if not ok.all():
        idx = np.flatnonzero(ok)
        x, y, ix, iy = x[idx], y[idx], ix[idx], iy[idx]
    if not (single or canvas.masked):
        return x, y, idx, None
    values, valid = canvas.take(iy, ix)
    if canvas.masked and not valid.all():
        keep = np.flatnonzero(valid)
        idx = keep if idx is None else idx[keep]
        x, y, values = x[keep], y[keep], values[:, keep]
    return x, y, idx, values


def _average_chunk(canvas: Canvas, chunk: ChunkPlan, sw: Window) -> _Values:
    """The average kernel over the chunk, :data:`BATCH` pixels at a time."""
    assert chunk.corners is not None
    tl, br = (Footprint(f.x.ravel(), f.y.ravel()) for f in chunk.corners)
    cx = chunk.centres.x.ravel()
    parts = []
    for a in range(0, cx.size, BATCH):
        s = slice(a, a + BATCH)
        t, b = Footprint(tl.x[s], tl.y[s]), Footprint(br.x[s], br.y[s])
        values, good, idx = average(canvas, t, b, cx[s], sw, chunk.wrap_x)
        parts.append((values, good, idx + a))
    idx = np.concatenate([p[2] for p in parts])
    return (
        np.concatenate([p[0] for p in parts], axis=1),
        np.concatenate([p[1] for p in parts]),
        None if idx.size == cx.size else idx,
    )


def _warp_chunk(canvas: Canvas, chunk: ChunkPlan, resampling: str) -> _Values:
    """Values ``(bands, k)`` and validity of the chunk's pixels ``idx`` (flat indices into the
    chunk; None: all of them in order). Nearest keeps the source dtype; the others are float64
    still to be stored. Kernels run on :data:`BATCH` pixels at a time: every pixel is
    independent, and smaller temporaries are faster (they stay in the allocator's cache)."""
    if chunk.src is None:
        return np.zeros((canvas.bands, 0)), np.zeros(0, np.bool_), np.zeros(0, np.intp)
    sw = chunk.src.window
    if resampling == "average":
        return _average_chunk(canvas, chunk, sw)
    single = resampling == "nearest" or sw.width == 1 or sw.height == 1
    x, y, idx, centre = _positions(canvas, chunk, sw, single)
    if single:
        assert centre is not None
        return centre, np.ones(x.size, np.bool_), idx
    values = np.empty((canvas.bands, x.size))
    good = np.empty(x.size, np.bool_)
    for a in range(0, x.size, BATCH):
        s = slice(a, a + BATCH)
        if min(chunk.scale) >= FOUR_SAMPLE_SCALE:
            kernel = bilinear4 if resampling == "bilinear" else cubic4
            values[:, s], good[s] = kernel(canvas, x[s], y[s], sw)
        else:
            values[:, s], good[s] = scaled(canvas, x[s], y[s], sw, resampling, chunk.scale)
    return values, good, idx


def execute(
    plan: WarpPlan,
    blocks: Sequence[SourceBlock],
    *,
    src_nodata: float | None = None,
    dst_nodata: float | None = None,
) -> WarpResult:
    """Resample the fetched ``blocks`` (windows of level ``plan.level``, any number of bands,
    one dtype) into ``plan.dst``.

    ``src_nodata`` marks invalid source pixels (a pixel is invalid when all bands equal it,
    GDAL's UNIFIED_SRC_NODATA); ``SourceBlock.valid`` carries a mask band. Destination pixels
    nothing valid reaches are ``dst_nodata`` (default ``src_nodata``, else 0) and False in the
    mask; a computed value equal to the destination nodata is moved one step (GDAL's rule)."""
    if plan.resampling not in RESAMPLINGS:
        raise WarpError(f"resampling {plan.resampling!r} is not one of {RESAMPLINGS}")
    canvas = Canvas(blocks, src_nodata, (plan.src.width, plan.src.height))
    nodata = dst_nodata if dst_nodata is not None else src_nodata
    dtype = canvas.dtype
    fill = 0 if nodata is None else nodata
    data = np.full((canvas.bands, plan.dst.height, plan.dst.width), fill, dtype=dtype)
    mask = np.zeros((plan.dst.height, plan.dst.width), np.bool_)
    for chunk in plan.chunks:
        # infinities in the source make NaN (inf - inf, inf x 0) on purpose, as in GDAL
        with np.errstate(invalid="ignore", over="ignore") if canvas.nonfinite else nullcontext():
            values, good, idx = _warp_chunk(canvas, chunk, plan.resampling)
        win = chunk.dst
        if values.dtype != dtype or nodata is not None:
            values = store(values, dtype, nodata)
        sub = data[:, win.row_off : win.row_end, win.col_off : win.col_end]
        msub = mask[win.row_off : win.row_end, win.col_off : win.col_end]
        if idx is None and good.all():
            sub[...] = values.reshape(canvas.bands, win.height, win.width)
            msub[...] = True
            continue
        flat = (np.arange(win.height * win.width) if idx is None else idx)[good]
        if win.width == plan.dst.width:  # whole rows: flat offsets into the (contiguous) output
            at = flat + win.row_off * win.width
            data.reshape(canvas.bands, -1)[:, at] = values[:, good]
            mask.reshape(-1)[at] = True
            continue
        rr, cc = np.divmod(flat, win.width)
        sub[:, rr, cc] = values[:, good]
        msub[rr, cc] = True
    return WarpResult(data, mask, canvas.missing)


def warp(
    source: npt.NDArray[Any],
    src: Grid,
    dst: Grid,
    resampling: Resampling = "nearest",
    *,
    src_nodata: float | None = None,
    dst_nodata: float | None = None,
    valid: BoolArray | None = None,
    chunk_shape: tuple[int, int] | None = None,
    max_error: float = MAX_ERROR,
) -> WarpResult:
    """Warp a whole in-memory level ``(bands, h, w)`` (or ``(h, w)``) on grid ``src`` into
    ``dst``: what ``rasterio.warp.reproject`` does with ``SRC_FILL_RATIO_HEURISTICS=NO`` and
    the same chunking (one chunk unless ``chunk_shape``)."""
    if resampling not in RESAMPLINGS:
        raise WarpError(f"resampling {resampling!r} is not one of {RESAMPLINGS}")
    arr = source if source.ndim == 3 else source[None]
    chunks = plan_chunks(src, dst, resampling, chunk_shape, max_error)
    plan = WarpPlan(0, src, dst, resampling, chunks, ())
    block = SourceBlock(Window(0, 0, src.width, src.height), arr, valid)
    return execute(plan, [block], src_nodata=src_nodata, dst_nodata=dst_nodata)
