"""Planning resampled reads the way GDAL's RasterIO does them (pure: no I/O, no arrays read).

``GDALRasterBand::RasterIOResampled`` keeps the window in floating point on the level read
(offset and size divided by the overview's factor, ``float_window``), takes the ratio ``window
size / output size`` and cuts the output into chunks of at most about a million source pixels.
Each chunk reads its source padded by ``kernel radius x round(ratio)``, clipped to the image, and
a kernel only sees that chunk: ``plan_axis`` gives each output pixel its taps (source indices
and weights) clipped the same way, so the read knows exactly which source window it needs.

* convolution (bilinear, radius 1; cubic, Catmull-Rom a = -0.5, radius 2): taps
  ``floor(c - R + 0.5)`` to ``int(c + R + 0.5)`` around ``c = (i + 0.5) * ratio + offset``,
  with ``R = radius / scale`` and ``scale = min(1, 1 / ratio)`` (the kernel is stretched when
  downsampling), weights ``K((j + 0.5 - c) * scale)`` normalised by their sum;
* average and mode: the footprint ``[int(x0 + 1e-8), ceil(x1 - 1e-8))`` of ``[x0, x1)``; for
  average, a footprint of two or more pixels weighs its first pixel ``1 - (x0 - first)`` and
  its last ``1 - (stop - x1)`` (from the clipped bounds, as GDAL computes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Window
from .plan import choose_overview, level_factors

__all__ = [
    "KERNEL_RADIUS",
    "RESAMPLINGS",
    "AxisPlan",
    "ResamplePlan",
    "float_window",
    "is_copy",
    "plan_axis",
    "plan_read",
    "plan_resample",
]

#: What a resampled read can do; "nearest" is the plain sampling in ``plan.py``.
RESAMPLINGS = ("nearest", "bilinear", "cubic", "average", "mode")
#: GDAL's kernel radius per resampling (``GDALGetResampleFunction``).
KERNEL_RADIUS = {"bilinear": 1, "cubic": 2, "average": 0, "mode": 0}
#: GDAL (>= 3.9) takes an overview at most 1.01x coarser than asked for when the resampling is
#: not nearest (``GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD`` unset: 1.0, nudged against noise).
THRESHOLD = 1.0 + 1e-2
#: Bounds that clip nothing (a boundless read marks the outside invalid instead).
_FAR = 1 << 40
#: GDAL cuts a resampled read into chunks of at most this many source pixels.
CHUNK_PIXELS = 1024 * 1024

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class AxisPlan:
    """One axis of a resampled read: for each output index, taps into the source.

    ``index`` (n, k) are absolute source indices (padding repeats a tap with weight 0),
    ``weight`` (n, k) their weights and ``count`` (n,) how many of the k are real taps.
    """

    index: IntArray
    weight: FloatArray
    count: IntArray

    @property
    def real(self) -> npt.NDArray[np.bool_]:
        """Which of the ``k`` taps of each output are taps (the rest pad)."""
        return np.asarray(np.arange(self.index.shape[1])[None, :] < self.count[:, None])

    @property
    def start(self) -> int:
        return int(self.index.min()) if self.index.size else 0

    @property
    def stop(self) -> int:
        return int(self.index.max()) + 1 if self.index.size else 0


@dataclass(frozen=True, slots=True)
class ResamplePlan:
    """A resampled read: ``kind``, the source ``window`` of the level to read (its pixels;
    outside the image only for a boundless read) and the taps of both axes."""

    kind: str
    window: Window
    rows: AxisPlan
    cols: AxisPlan

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows.index), len(self.cols.index)


@dataclass(frozen=True, slots=True)
class _Axis:
    """GDAL's view of one axis: float offset and size of the window on the level, the integer
    offset it starts chunks from, the output size and the level's size."""

    off: float
    ioff: int
    size: float
    n: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.size / self.n


def _chunk_sizes(x: _Axis, y: _Axis, block_width: int) -> tuple[int, int]:
    """GDAL's output chunk size (columns, rows): halved until the source chunk is at most
    ``CHUNK_PIXELS``, rows first when the read spans whole-width blocks."""
    bw, bh = x.n, y.n
    while True:
        fx = min(3 + int(bw * x.ratio), x.limit)
        fy = min(3 + int(bh * y.ratio), y.limit)
        if (bw == 1 and bh == 1) or fx * fy <= CHUNK_PIXELS:
            return bw, bh
        if fx >= round(x.size) and round(x.size) == block_width and bh > 1:
            bh //= 2
        elif bw > 1 and (fx > fy or bh == 1):
            bw //= 2
        else:
            bh //= 2


def _clip_bounds(a: _Axis, chunk: int, radius: int) -> tuple[IntArray, IntArray]:
    """For each output index, the source interval ``[lo, hi)`` its chunk read (padded by the
    kernel radius times the rounded ratio, clipped to the level)."""
    i = np.arange(a.n)
    first = (i // chunk) * chunk
    count = np.minimum(chunk, a.n - first)
    pad = radius * max(1, int(0.5 + a.ratio))
    lo = a.ioff + (first * a.ratio).astype(np.intp) - pad
    hi = np.minimum(a.ioff + 1 + np.ceil((first + count) * a.ratio).astype(np.intp), a.limit)
    return np.maximum(lo, 0), np.minimum(hi + pad, a.limit)


def _positions(a: _Axis, at: FloatArray) -> FloatArray:
    """Source positions of output coordinates ``at`` as GDAL computes them: on the virtual
    whole-image output grid when the window starts on it, else relative to the integer offset
    plus the fractional remainder."""
    dest = a.off / a.ratio
    if abs(dest - int(dest + 0.5)) < 1e-8:
        return np.asarray((int(dest + 0.5) + at) * a.ratio, dtype=np.float64)
    return np.asarray(at * a.ratio + (a.off - a.ioff) + a.ioff, dtype=np.float64)


def _bilinear(x: FloatArray) -> FloatArray:
    return np.asarray(np.maximum(0.0, 1.0 - np.abs(x)), dtype=np.float64)


def _cubic(x: FloatArray) -> FloatArray:
    ax = np.abs(x)
    ax2 = ax * ax
    near = (1.5 * ax - 2.5) * ax2 + 1.0
    far = ((-0.5 * ax + 2.5) * ax - 4.0) * ax + 2.0
    return np.asarray(np.where(ax <= 1.0, near, np.where(ax < 2.0, far, 0.0)), dtype=np.float64)


_FILTERS = {"bilinear": _bilinear, "cubic": _cubic}


def _taps(lo: IntArray, hi: IntArray, start: IntArray, stop: IntArray) -> tuple[IntArray, Any]:
    """Tap indices ``start .. stop`` clipped to ``[lo, hi)``, padded to a common width; and the
    mask of real taps."""
    start = np.maximum(start, lo)
    stop = np.maximum(np.minimum(stop, hi), start + 1)
    k = int((stop - start).max()) if start.size else 1
    idx = start[:, None] + np.arange(k)[None, :]
    real = idx < stop[:, None]
    return np.where(real, idx, start[:, None]), real


def _convolution_axis(a: _Axis, kind: str, lo: IntArray, hi: IntArray) -> AxisPlan:
    radius = KERNEL_RADIUS[kind]
    scale = min(1.0, 1.0 / a.ratio)
    reach = radius / scale
    centre = _positions(a, np.arange(a.n, dtype=np.float64) + 0.5)
    start = np.floor(centre - reach + 0.5).astype(np.intp)
    stop = (centre + reach + 0.5).astype(np.intp)
    idx, real = _taps(lo, hi, start, stop)
    w = np.where(real, _FILTERS[kind]((idx + 0.5 - centre[:, None]) * scale), 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    return AxisPlan(idx, w, real.sum(axis=1))


def _box_axis(a: _Axis, kind: str, lo: IntArray, hi: IntArray) -> AxisPlan:
    x0 = _positions(a, np.arange(a.n, dtype=np.float64))
    x1 = _positions(a, np.arange(1, a.n + 1, dtype=np.float64))
    start = (x0 + 1e-8).astype(np.intp)
    stop = np.ceil(x1 - 1e-8).astype(np.intp)
    stop = np.where(stop == np.maximum(start, lo), stop + 1, stop)
    idx, real = _taps(lo, hi, start, stop)
    w = real.astype(np.float64)
    if kind == "average":
        # GDAL weighs the first and last pixel of a footprint of two or more pixels by
        # ``1 - (x0 - first)`` and ``1 - (stop - x1)`` (from the clipped bounds, so an edge
        # pixel can weigh more than 1), the others by 1.
        count = real.sum(axis=1)
        first = np.maximum(start, lo)
        last_pos = count - 1
        stop_c = first + count
        cols = np.arange(idx.shape[1])[None, :]
        several = (count > 1)[:, None]
        w = np.where(several & (cols == 0), 1.0 - (x0 - first)[:, None], w)
        w = np.where(several & (cols == last_pos[:, None]), 1.0 - (stop_c - x1)[:, None], w)
        w = np.where(real, w, 0.0)
    return AxisPlan(idx, w, real.sum(axis=1))


def plan_axis(a: _Axis, kind: str, chunk: int, clip: bool = True) -> AxisPlan:
    """The taps of one axis for ``kind`` with output chunks of ``chunk``; without ``clip``
    (a boundless read) taps may lie outside the level."""
    if clip:
        lo, hi = _clip_bounds(a, chunk, KERNEL_RADIUS[kind])
    else:
        lo, hi = np.full(a.n, -_FAR, np.intp), np.full(a.n, _FAR, np.intp)
    if kind in _FILTERS:
        return _convolution_axis(a, kind, lo, hi)
    return _box_axis(a, kind, lo, hi)


def plan_resample(
    kind: str,
    win: tuple[float, float, float, float],
    ioff: tuple[int, int],
    out_shape: tuple[int, int],
    size: tuple[int, int],
    block_width: int,
    clip: bool = True,
) -> ResamplePlan:
    """The resampled read of the float window ``win`` = (col_off, row_off, width, height) of a
    level of ``size`` (width, height) into ``out_shape`` (h, w), chunks starting from the
    integer offsets ``ioff`` (col, row) GDAL keeps next to the float window."""
    x = _Axis(win[0], ioff[0], win[2], out_shape[1], size[0])
    y = _Axis(win[1], ioff[1], win[3], out_shape[0], size[1])
    bw, bh = _chunk_sizes(x, y, block_width)
    cols, rows = plan_axis(x, kind, bw, clip), plan_axis(y, kind, bh, clip)
    window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    return ResamplePlan(kind, window, rows, cols)


def float_window(
    win: Window, factors: tuple[float, float], size: tuple[int, int]
) -> tuple[tuple[float, float, float, float], tuple[int, int], Window]:
    """GDAL's window on an overview ``factors`` times coarser (GDALBandGetBestOverviewLevel2):
    the float window, and the integer window next to it (offsets rounded, sizes rounded and
    clipped to the level of ``size``)."""
    fx, fy = factors
    fwin = (win.col_off / fx, win.row_off / fy, win.width / fx, win.height / fy)
    if factors == (1.0, 1.0):
        return fwin, (win.col_off, win.row_off), win
    col = min(size[0] - 1, int(win.col_off / fx + 0.5))
    row = min(size[1] - 1, int(win.row_off / fy + 0.5))
    w = min(max(1, int(win.width / fx + 0.5)), size[0] - col)
    h = min(max(1, int(win.height / fy + 0.5)), size[1] - row)
    return fwin, (col, row), Window(col, row, w, h)


def is_copy(fwin: Sequence[float], iwin: Window, out_shape: tuple[int, int]) -> bool:
    """Whether GDAL copies the window as it is: integer float window of the output's size."""
    same = (fwin[0], fwin[1], fwin[2], fwin[3]) == (
        iwin.col_off,
        iwin.row_off,
        iwin.width,
        iwin.height,
    )
    return same and out_shape == (iwin.height, iwin.width)


def plan_read(
    levels: Sequence[tuple[int, int]],
    level: int,
    win: Window,
    out_shape: tuple[int, int],
    kind: str,
    block_widths: Sequence[int],
) -> tuple[int, Window, ResamplePlan | None]:
    """A resampled read of ``win`` (pixels of ``level``; level 0 lets GDAL's overview choice
    for non-nearest resampling pick the level) into ``out_shape`` (h, w): the level read, the
    window of it to read, and the plan (None when GDAL copies the window as it is)."""
    chosen = level if level != 0 else choose_overview(levels, win, out_shape, THRESHOLD)
    factors = level_factors(levels, chosen) if level == 0 else (1.0, 1.0)
    size = levels[chosen]
    fwin, ioff, iwin = float_window(win, factors, size)
    inside = win.within(*levels[level])
    if inside and is_copy(fwin, iwin, out_shape):
        return chosen, iwin, None
    plan = plan_resample(kind, fwin, ioff, out_shape, size, block_widths[chosen], inside)
    return chosen, plan.window, plan
