"""GDAL's approximate transformer (``GDALApproxTransform``), vectorised across rows.

gdalwarp, WarpedVRT and ``rasterio.warp.reproject`` do not transform every destination pixel
exactly: along each destination row of a warp chunk GDAL transforms the start, middle
(``(n - 1) // 2``) and end points exactly and interpolates linearly between start and end. When
the interpolated middle is off by more than the error threshold (0.125 source pixel,
``|dx| + |dy|``) the span is halved (``[0, mid)`` and ``[mid, n)``) and each half is checked the
same way; a half of 5 points or fewer, and a row whose start, middle or end does not transform,
is transformed point by point. Accepted spans are ``S + (E - S) / (xE - xS) * (x - xS)``.

So the rule is per row span, checked only at its middle (the error elsewhere can exceed 0.125:
up to ~0.2 px on a polar tile). Reproducing the rule itself, rather than any interpolation of
equal accuracy, is what makes nearest-neighbour output identical to GDAL's instead of close.
Here all rows of a chunk advance one halving level per PROJ call, so a 256 x 256 tile costs a
few hundred to a few thousand exact points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..types import Window
from .grid import BoolArray, FloatArray, Grid, IntArray
from .transform import PixelTransform

__all__ = ["MAX_ERROR", "Footprint", "approx_transform", "corner_footprints", "source_footprint"]

#: GDAL's default approximation error, in source pixels (gdalwarp -et, WarpedVRT, reproject).
MAX_ERROR = 0.125
#: Spans of at most this many points are transformed point by point.
_EXACT_SPAN = 5


@dataclass(frozen=True, slots=True)
class Footprint:
    """Source pixel coordinates ``x`` (columns) and ``y`` (rows) of a block of destination
    points, shaped ``(rows, cols)``; NaN where a point does not map (outside the projection's
    domain). ``exact_points`` counts the points transformed exactly."""

    x: FloatArray
    y: FloatArray
    exact_points: int = 0

    @property
    def valid(self) -> BoolArray:
        return np.isfinite(self.x) & np.isfinite(self.y)


def _ramp(counts: IntArray) -> IntArray:
    """``0 .. c-1`` for each count ``c``, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


@dataclass
class _Spans:
    """Spans still being approximated: row, first column index, point count and the exact
    source coordinates (2 x n) at their start, middle and end."""

    r: IntArray
    a: IntArray
    n: IntArray
    s: FloatArray
    m: FloatArray
    e: FloatArray

    def pick(self, keep: BoolArray) -> _Spans:
        return _Spans(
            self.r[keep],
            self.a[keep],
            self.n[keep],
            self.s[:, keep],
            self.m[:, keep],
            self.e[:, keep],
        )


@dataclass
class _RowApprox:
    """State of one approximation: the output arrays and the exact points still to compute."""

    pt: PixelTransform
    cols: FloatArray
    rows: FloatArray
    max_error: float
    out_x: FloatArray = field(init=False)
    out_y: FloatArray = field(init=False)
    exact_r: list[IntArray] = field(default_factory=list)
    exact_c: list[IntArray] = field(default_factory=list)
    exact_count: int = 0

    def __post_init__(self) -> None:
        shape = (self.rows.size, self.cols.size)
        self.out_x = np.full(shape, np.nan)
        self.out_y = np.full(shape, np.nan)

    def transform(self, r: IntArray, c: IntArray) -> FloatArray:
        """Exact source coordinates (2 x n) of points ``(rows[r], cols[c])``."""
        self.exact_count += r.size
        x, y = self.pt(self.cols[c], self.rows[r])
        return np.stack([x, y])

    def put(self, r: IntArray, c: IntArray, xy: FloatArray) -> None:
        self.out_x[r, c] = xy[0]
        self.out_y[r, c] = xy[1]

    def queue_exact(self, r: IntArray, start: IntArray, count: IntArray) -> None:
        """Queue ``count`` points from column ``start`` of each row ``r`` to transform exactly."""
        keep = count > 0
        r, start, count = r[keep], start[keep], count[keep]
        if r.size:
            self.exact_r.append(np.repeat(r, count))
            self.exact_c.append((np.repeat(start, count) + _ramp(count)).astype(np.intp))

    def first_spans(self) -> _Spans:
        """Whole rows: transform start, middle and end; rows where one fails go exact."""
        m, n = self.rows.size, self.cols.size
        all_rows = np.arange(m, dtype=np.intp)
        sme = np.array([0, (n - 1) // 2, n - 1], dtype=np.intp)
        xy = self.transform(np.repeat(all_rows, 3), np.tile(sme, m)).reshape(2, m, 3)
        ok = np.isfinite(xy).all(axis=(0, 2))
        bad = int((~ok).sum())
        self.queue_exact(all_rows[~ok], np.zeros(bad, np.intp), np.full(bad, n, np.intp))
        r = all_rows[ok]
        return _Spans(
            r, np.zeros(r.size, np.intp), np.full(r.size, n, np.intp), *xy[:, ok].transpose(2, 0, 1)
        )

    def accept(self, sp: _Spans, slope: FloatArray) -> None:
        """Fill the accepted spans by linear interpolation from their start, as GDAL does."""
        if sp.r.size and bool((sp.n == self.cols.size).all()):  # whole rows: broadcast
            dist = self.cols - self.cols[0]
            rows = slice(None) if sp.r.size == self.rows.size else sp.r  # sorted, unique
            self.out_x[rows] = sp.s[0][:, None] + slope[0][:, None] * dist
            self.out_y[rows] = sp.s[1][:, None] + slope[1][:, None] * dist
            return
        ci = np.repeat(sp.a, sp.n) + _ramp(sp.n)
        dist = self.cols[ci] - np.repeat(self.cols[sp.a], sp.n)
        xy = np.repeat(sp.s, sp.n, axis=1) + np.repeat(slope, sp.n, axis=1) * dist
        self.put(np.repeat(sp.r, sp.n), ci, xy)

    def check(self, sp: _Spans) -> BoolArray:
        """Accept the spans whose interpolated middle is within the error; return which to split."""
        c0 = self.cols[sp.a]
        slope = (sp.e - sp.s) / (self.cols[sp.a + sp.n - 1] - c0)
        dist = self.cols[sp.a + (sp.n - 1) // 2] - c0
        err = np.abs(sp.s + slope * dist - sp.m).sum(axis=0)
        split: BoolArray = err > self.max_error
        if not split.all():
            self.accept(sp.pick(~split), slope[:, ~split])
        return split

    def middles(self, sp: _Spans, h1: IntArray, h2: IntArray) -> tuple[FloatArray, ...]:
        """Exact middle and end of each first half and middle of each second half, for the
        halves that will be approximated further (NaN for the others)."""
        need1, need2 = h1 > _EXACT_SPAN, h2 > _EXACT_SPAN
        q1, e1, q2 = (np.full((2, sp.r.size), np.nan) for _ in range(3))
        if need1.any():
            r, a, h = sp.r[need1], sp.a[need1], h1[need1]
            xy = self.transform(
                np.concatenate([r, r]), np.concatenate([a + (h - 1) // 2, a + h - 1])
            )
            q1[:, need1], e1[:, need1] = xy[:, : r.size], xy[:, r.size :]
        if need2.any():
            a, h, k = sp.a[need2], h1[need2], h2[need2]
            q2[:, need2] = self.transform(sp.r[need2], a + h + (k - 1) // 2)
        return q1, e1, q2

    def split(self, sp: _Spans) -> _Spans:
        """Halve the spans: keep the halves still to approximate, settle the rest."""
        h1 = (sp.n - 1) // 2
        h2 = sp.n - h1
        q1, e1, q2 = self.middles(sp, h1, h2)
        base1, base2 = h1 <= _EXACT_SPAN, h2 <= _EXACT_SPAN
        fail = (base1 & base2) | (~base1 & ~np.isfinite(np.concatenate([q1, e1])).all(0))
        fail |= ~base2 & ~np.isfinite(q2).all(0)
        # start, middle and end are known exactly wherever a half is not approximated further
        k1, k2 = fail | base1, fail | base2
        self.put(sp.r[k1], sp.a[k1], sp.s[:, k1])
        self.put(sp.r[k2], (sp.a + h1)[k2], sp.m[:, k2])
        self.put(sp.r[k2], (sp.a + sp.n - 1)[k2], sp.e[:, k2])
        # a failed span: every other point exactly; a half of <= 5 points: its inner points
        b1, b2 = fail | base1, fail | base2
        self.queue_exact(sp.r[b1], sp.a[b1] + 1, h1[b1] - 1)
        self.queue_exact(sp.r[b2], (sp.a + h1)[b2] + 1, h2[b2] - 2)
        go1, go2 = ~base1 & ~fail, ~base2 & ~fail
        return _Spans(
            np.concatenate([sp.r[go1], sp.r[go2]]),
            np.concatenate([sp.a[go1], (sp.a + h1)[go2]]),
            np.concatenate([h1[go1], h2[go2]]),
            np.concatenate([sp.s[:, go1], sp.m[:, go2]], axis=1),
            np.concatenate([q1[:, go1], q2[:, go2]], axis=1),
            np.concatenate([e1[:, go1], sp.e[:, go2]], axis=1),
        )

    def run(self) -> Footprint:
        sp = self.first_spans()
        while sp.r.size:
            split = self.check(sp)
            if not split.any():
                break
            sp = self.split(sp.pick(split))
        if self.exact_r:
            r, c = np.concatenate(self.exact_r), np.concatenate(self.exact_c)
            self.put(r, c, self.transform(r, c))
        return Footprint(self.out_x, self.out_y, self.exact_count)


def approx_transform(
    pt: PixelTransform, cols: FloatArray, rows: FloatArray, max_error: float = MAX_ERROR
) -> Footprint:
    """Source pixel coordinates of the destination points ``cols`` x ``rows`` (one row of
    points per entry of ``rows``; result shaped ``(rows, cols)``), approximated per row as
    ``GDALApproxTransform`` does (module docstring). ``max_error <= 0``: exact."""
    cols = np.asarray(cols, np.float64)
    rows = np.asarray(rows, np.float64)
    n, m = cols.size, rows.size
    if n == 0 or m == 0:
        empty = np.full((m, n), np.nan)
        return Footprint(empty, empty.copy(), 0)
    if max_error <= 0.0 or n <= _EXACT_SPAN:
        x, y = pt(np.tile(cols, m), np.repeat(rows, n))
        return Footprint(x.reshape(m, n), y.reshape(m, n), n * m)
    return _RowApprox(pt, cols, rows, max_error).run()


def source_footprint(
    pt: PixelTransform,
    window: Window | None = None,
    *,
    max_error: float = MAX_ERROR,
    offset: float = 0.5,
) -> Footprint:
    """Source pixel coordinates of the destination pixels of ``window`` (all of ``pt.dst`` by
    default) at ``offset`` within each pixel (0.5: centres; 0: top-left corners). GDAL
    approximates along each row of the warp chunk, so ``window`` should be the chunk."""
    dst: Grid = pt.dst
    win = window or Window(0, 0, dst.width, dst.height)
    cols = win.col_off + np.arange(win.width, dtype=np.float64) + offset
    rows = win.row_off + np.arange(win.height, dtype=np.float64) + offset
    return approx_transform(pt, cols, rows, max_error)


def corner_footprints(
    pt: PixelTransform, win: Window, max_error: float = MAX_ERROR
) -> tuple[Footprint, Footprint]:
    """Top-left and bottom-right corners of each destination pixel of ``win``, as GDAL's
    average kernel transforms them: two separate rows of points, ``x`` and ``x + 1`` at ``y``
    and ``y + 1``, each approximated on its own."""
    cols = win.col_off + np.arange(win.width, dtype=np.float64)
    rows = win.row_off + np.arange(win.height, dtype=np.float64)
    return (
        approx_transform(pt, cols, rows, max_error),
        approx_transform(pt, cols + 1.0, rows + 1.0, max_error),
    )
