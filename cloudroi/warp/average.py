"""The average kernel (GDAL's ``GWKAverageOrMode`` for GRA_Average).

Each destination pixel averages the source pixels under the bounding box of its two transformed
corners, ``(x, y)`` and ``(x + 1, y + 1)`` (each approximated on its own row, see
:func:`~.approx.corner_footprints`):

* the box is floored/ceiled with 1e-10 slack and clamped to the chunk's source window; edge
  pixels are weighted by the fraction of them inside the box (GDAL computes it after clamping,
  so an edge weight can exceed 1), interior pixels 1, invalid pixels left out;
* the pixel is warped when its box overlaps the window (GDAL 3.7+, PR #7740; the older "corner
  within one pixel" rule is gone);
* a geographic source spanning 360 degrees read over its full width (:func:`wraps_x`): a box
  wider than half the source *whose pixel centre maps left of it* is taken the short way round,
  across the antimeridian (PR #6482 / #10894). Measured, not read, in GDAL 3.10: the centre
  condition; when the centre maps right of the box GDAL averages the full-width box.

Boxes of up to 4 x 4 source pixels are summed tap by tap like GDAL (grouped by box shape, so
every group is one rectangle per pixel); larger ones (polar caps, strong downsampling) through
a summed-area table in constant time per pixel.
"""

from __future__ import annotations

import numpy as np

from ..types import Window
from .approx import Footprint
from .canvas import Canvas, Taps
from .grid import BoolArray, FloatArray, Grid, IntArray
from .transform import is_geographic

__all__ = ["average", "average_box", "average_corners", "wraps_x"]

#: Boxes up to this many source pixels per axis are summed tap by tap.
AVERAGE_DIRECT_SPAN = 4
#: GDAL's slack when flooring/ceiling the corner box.
_SLACK = 1e-10


def wraps_x(src: Grid, sw: Window) -> bool:
    """Whether the average kernel treats the chunk's source columns as wrapping around: a
    north-up geographic source spanning 360 degrees of longitude, read over its full width."""
    gt = src.transform
    return (
        is_geographic(src.crs)
        and gt[2] == 0.0
        and abs(abs(gt[1]) * src.width - 360.0) < abs(gt[1])
        and sw.col_off == 0
        and sw.width == src.width
    )


def average_corners(
    tl: Footprint, br: Footprint, centre_x: FloatArray, sw: Window, wrap: bool
) -> tuple[BoolArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """The corner box of each destination pixel, window-relative: ``ok`` (both corners mapped
    and the box overlapping the window) and ``x0 <= x1``, ``y0 <= y1`` (``x1`` past the width
    for a box taken across the antimeridian)."""
    with np.errstate(invalid="ignore"):
        ok = (tl.valid & br.valid).ravel()
        x0 = np.fmin(tl.x, br.x).ravel() - sw.col_off
        x1 = np.fmax(tl.x, br.x).ravel() - sw.col_off
        y0 = np.fmin(tl.y, br.y).ravel() - sw.row_off
        y1 = np.fmax(tl.y, br.y).ravel() - sw.row_off
        ok &= (x1 > 0) & (x0 < sw.width) & (y1 > 0) & (y0 < sw.height)
        if wrap:
            flip = ok & (x1 - x0 > sw.width / 2) & (centre_x.ravel() - sw.col_off < x0)
            x0, x1 = np.where(flip, x1, x0), np.where(flip, x0 + sw.width, x1)
    if ok.all():
        return ok, x0, x1, y0, y1
    z = np.zeros_like(x0)
    return ok, np.where(ok, x0, z), np.where(ok, x1, z), np.where(ok, y0, z), np.where(ok, y1, z)


def average_box(
    x0: FloatArray, x1: FloatArray, y0: FloatArray, y1: FloatArray, sw: Window, wrap: bool
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Source pixel ranges ``[c0, c1) x [r0, r1)`` (window-relative) of the boxes: floor and
    ceil with slack, clamped to the window (columns to twice its width when wrapping), at
    least one pixel when inside the window."""
    width = 2 * sw.width if wrap else sw.width
    c0 = np.maximum(np.floor(x0 + _SLACK), 0).astype(np.intp)
    c1 = np.minimum(np.ceil(x1 - _SLACK), width).astype(np.intp)
    r0 = np.maximum(np.floor(y0 + _SLACK), 0).astype(np.intp)
    r1 = np.minimum(np.ceil(y1 - _SLACK), sw.height).astype(np.intp)
    c1 = np.where((c0 == c1) & (c1 < width), c1 + 1, c1)
    r1 = np.where((r0 == r1) & (r1 < sw.height), r1 + 1, r1)
    return c0, c1, r0, r1


def _edge_weights(
    lo: FloatArray, hi: FloatArray, i0: IntArray, i1: IntArray
) -> tuple[FloatArray, FloatArray]:
    """Weights of the first and last source pixel of each range (1 for a one-pixel range)."""
    single = i0 + 1 == i1
    first = np.where(single, 1.0, 1.0 - (lo - i0))
    last = np.where(single, 1.0, 1.0 - (i1 - hi))
    return first, last


def _pieces(
    i0: IntArray, i1: IntArray, w_first: FloatArray, w_last: FloatArray
) -> list[tuple[IntArray, IntArray, FloatArray]]:
    """Ranges ``[i0, i1)`` split into first pixel, interior and last pixel, with weights."""
    single = i0 + 1 == i1
    one = np.ones_like(w_first)
    return [
        (i0, i0 + 1, w_first),
        (np.minimum(i0 + 1, i1), np.maximum(i1 - 1, i0 + 1), one),
        (np.where(single, i1, i1 - 1), i1, w_last),
    ]


class _Boxes:
    """The boxes of the warped pixels of a chunk: ranges, edge weights and accumulators."""

    def __init__(self, canvas: Canvas, sw: Window, box: tuple[FloatArray, ...], wrap: bool) -> None:
        x0, x1, y0, y1 = box
        self.canvas, self.sw, self.wrap = canvas, sw, wrap
        self.c0, self.c1, self.r0, self.r1 = average_box(x0, x1, y0, y1, sw, wrap)
        self.wx = _edge_weights(x0, x1, self.c0, self.c1)
        self.wy = _edge_weights(y0, y1, self.r0, self.r1)
        self.acc = np.zeros((canvas.bands, x0.size))
        self.wsum = np.zeros(x0.size)

    def direct(self, idx: IntArray, h: int, w: int) -> None:
        """Sum boxes ``idx`` of ``h`` x ``w`` source pixels tap by tap, rows then columns."""
        sw, canvas = self.sw, self.canvas
        rows = self.r0[idx] + np.arange(h)[:, None] + sw.row_off
        cols = (self.c0[idx] + np.arange(w)[:, None]) % sw.width + sw.col_off
        taps = Taps.grid(canvas, rows, cols)
        acc = np.zeros((canvas.bands, idx.size))
        wsum = np.zeros(idx.size)
        wx_first, wx_last = self.wx[0][idx], self.wx[1][idx]
        wy_first, wy_last = self.wy[0][idx], self.wy[1][idx]
        # GDAL sums with compensation: a NaN makes the average NaN, and so does an infinity
        # with any term after it (inf - inf); one summed last stays an infinity
        odd = np.zeros((canvas.bands, idx.size), np.bool_) if canvas.nonfinite else None
        seen = np.zeros_like(odd) if odd is not None else None
        for j in range(h):
            wy = wy_first if j == 0 else (wy_last if j == h - 1 else 1.0)
            f = taps.row(j)
            v = np.take(canvas.data, f, axis=1)
            for i in range(w):
                wx = wx_first if i == 0 else (wx_last if i == w - 1 else 1.0)
                wt = np.asarray(wx * wy, np.float64)
                if canvas.valid is not None:
                    wt = np.where(canvas.valid[f[i]], wt, 0.0)
                acc += v[:, i] * wt
                wsum += wt
                if odd is not None and seen is not None:
                    live = wt != 0
                    odd |= (seen | np.isnan(v[:, i])) & live
                    seen |= np.isinf(v[:, i]) & live
        if odd is not None:
            acc[odd] = np.nan
        self.acc[:, idx] = acc
        self.wsum[idx] = wsum

    def summed(self, idx: IntArray) -> None:
        """Sum boxes ``idx`` through the summed-area table (split at the antimeridian)."""
        sw, sat = self.sw, self.canvas.summed_area()
        rows = _pieces(self.r0[idx], self.r1[idx], *(w[idx] for w in self.wy))
        cols = _pieces(self.c0[idx], self.c1[idx], *(w[idx] for w in self.wx))
        acc = np.zeros((self.canvas.bands, idx.size))
        wsum = np.zeros(idx.size)
        odd = np.zeros((self.canvas.bands, idx.size), np.int64)
        for ra, rb, rw in rows:
            for ca, cb, cw in cols:
                w = rw * cw
                for a, b in (
                    (np.minimum(ca, sw.width), np.minimum(cb, sw.width)),
                    (np.maximum(ca - sw.width, 0), np.maximum(cb - sw.width, 0)),
                ):
                    box = (ra + sw.row_off, rb + sw.row_off, a + sw.col_off, b + sw.col_off)
                    s, n = sat.rect(*box)
                    acc += s * w
                    wsum += n * w
                    if sat.nans is not None:
                        odd += sat.odd(*box)
        if sat.nans is not None and odd.any():
            # as ``direct``: NaN, unless the one odd value is an infinity no valid pixel
            # follows in GDAL's row by row order (a few boxes: looked at pixel by pixel)
            acc = np.where(odd > 0, np.nan, acc)
            for b, j in np.argwhere(odd == 1):
                tail = self._last_infinity(int(idx[j]), int(b))
                if tail is not None:
                    acc[b, j] = tail
        self.acc[:, idx] = acc
        self.wsum[idx] = wsum

    def _last_infinity(self, box: int, band: int) -> float | None:
        """The infinity of box ``box`` in ``band`` if it is the last valid value summed."""
        sw = self.sw
        rows = np.arange(self.r0[box], self.r1[box]) + sw.row_off
        cols = np.arange(self.c0[box], self.c1[box]) % sw.width + sw.col_off
        values, ok = self.canvas.take(np.repeat(rows, cols.size), np.tile(cols, rows.size))
        v = values[band]
        odd = np.flatnonzero(ok & ~np.isfinite(v))
        if odd.size != 1 or not np.isinf(v[odd[0]]) or ok[odd[0] + 1 :].any():
            return None
        return float(v[odd[0]])


def average(
    canvas: Canvas, tl: Footprint, br: Footprint, centre_x: FloatArray, sw: Window, wrap: bool
) -> tuple[FloatArray, BoolArray, IntArray]:
    """Average values ``(bands, k)`` and validity ``(k,)`` of the chunk's pixels ``idx``
    (flat indices into the chunk, the pixels whose box overlaps the window)."""
    ok, *box = average_corners(tl, br, centre_x, sw, wrap)
    idx = np.flatnonzero(ok)
    boxes = _Boxes(canvas, sw, tuple(b if ok.all() else b[idx] for b in box), wrap)
    bw, bh = boxes.c1 - boxes.c0, boxes.r1 - boxes.r0
    span = AVERAGE_DIRECT_SPAN + 1
    # one group per box shape (h, w) of at most 4 x 4 pixels; larger boxes: key span * span
    shape = np.where((bw < span) & (bh < span), bh * span + bw, span * span)
    order = np.argsort(shape, kind="stable")
    counts = np.bincount(shape, minlength=span * span + 1)
    ends = np.cumsum(counts)
    for key in np.flatnonzero(counts):
        group = order[ends[key] - counts[key] : ends[key]]
        if key == span * span:
            boxes.summed(group)
        else:
            boxes.direct(group, *divmod(int(key), span))
    good = boxes.wsum > 0
    values = np.where(good, boxes.acc / np.where(good, boxes.wsum, 1.0), 0.0)
    return values, good, idx
