"""The fetched source blocks as one compact canvas the kernels index into.

The region layer reads the block-aligned windows a plan lists; :class:`Canvas` lays them out in
one array with the gaps between windows squeezed out (an antimeridian read is two narrow strips,
a polar read a ring: the canvas holds only those), plus lookup tables from the level's rows and
columns to the canvas's. Source pixels adjacent in the level stay adjacent in the canvas wherever
both are held, so a kernel footprint that is held entirely is a plain rectangle of the canvas:
:class:`Taps` addresses such footprints by offset from one base index and looks up the rest tap
by tap, counting taps that fall on pixels no block holds (``missing``: 0 when the blocks are
the plan's windows).

Validity is computed once: a mask band (``SourceBlock.valid``) and the source nodata, which is
GDAL's UNIFIED_SRC_NODATA rule (what gdalwarp sets): a pixel is nodata when *every* band equals
the nodata value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Window
from .grid import BoolArray, FloatArray, IntArray, WarpError

__all__ = ["Canvas", "SourceBlock", "SummedArea", "Taps"]


@dataclass(frozen=True, slots=True)
class SourceBlock:
    """Source pixels already read: ``data`` shaped ``(bands, height, width)`` for ``window``
    (pixels of the level being warped, as ``Image.read`` returns it); ``valid`` (``(height,
    width)`` booleans, e.g. ``Image.read_mask(...) > 0``) marks the pixels a mask band says are
    valid, None when there is no mask."""

    window: Window
    data: npt.NDArray[Any]
    valid: BoolArray | None = None


def _segments(
    spans: list[tuple[int, int]], size: int
) -> tuple[IntArray, int, tuple[int, int] | None]:
    """Map each index of an axis of ``size`` to its position on a compacted axis holding only
    the half-open ``spans`` (possibly overlapping), -1 outside them, order kept; and the held
    range ``(start, stop)`` when the held indices are one run (the map is then an offset)."""
    held = np.zeros(size + 1, np.int64)
    for a, b in spans:
        held[max(a, 0)] += 1
        held[min(b, size)] -= 1
    inside = np.cumsum(held[:size]) > 0
    mapping = np.where(inside, np.cumsum(inside) - 1, -1).astype(np.intp)
    count = int(inside.sum())
    first = int(np.argmax(inside))
    run = (first, first + count) if count and bool(inside[first : first + count].all()) else None
    return mapping, count, run


def _check_blocks(blocks: Sequence[SourceBlock], size: tuple[int, int]) -> tuple[int, Any]:
    if not blocks:
        raise WarpError("execute needs at least one source block")
    bands, dtype = blocks[0].data.shape[0], blocks[0].data.dtype
    for b in blocks:
        w = b.window
        if b.data.ndim != 3 or b.data.shape != (bands, w.height, w.width):
            raise WarpError(f"block data {b.data.shape} does not fit {w} with {bands} bands")
        if b.data.dtype != dtype:
            raise WarpError(f"blocks mix dtypes {dtype} and {b.data.dtype}")
        if not w.within(*size) or w.width < 1 or w.height < 1:
            raise WarpError(f"block window {w} is outside the {size[0]} x {size[1]} level")
        if b.valid is not None and b.valid.shape != (w.height, w.width):
            raise WarpError(f"block validity {b.valid.shape} does not fit {w}")
    return int(bands), dtype


def _nonfinite(a: npt.NDArray[Any]) -> bool:
    """Whether float data holds a NaN or an infinity (min and max: no mask array)."""
    if a.dtype.kind != "f" or a.size == 0:
        return False
    return not (np.isfinite(a.min()) and np.isfinite(a.max()))


class Canvas:
    """The blocks of one level as a compact canvas: ``data`` is ``(bands, rows * cols)`` in the
    source dtype, ``valid`` the flat validity (None: all valid), ``row_map``/``col_map`` the
    level -> canvas lookups (-1 where nothing is held)."""

    def __init__(
        self, blocks: Sequence[SourceBlock], nodata: float | None, size: tuple[int, int]
    ) -> None:
        self.bands, self.dtype = _check_blocks(blocks, size)
        width, height = size
        self.missing = 0
        self.col_map, wc, col_run = _segments(
            [(b.window.col_off, b.window.col_end) for b in blocks], width
        )
        self.row_map, hc, row_run = _segments(
            [(b.window.row_off, b.window.row_end) for b in blocks], height
        )
        self.width_c, self.height_c = wc, hc
        canvas = np.zeros((self.bands, hc, wc), self.dtype)
        present = np.zeros((hc, wc), np.bool_)
        valid = np.ones((hc, wc), np.bool_)
        for b in blocks:
            w = b.window
            r0, c0 = self.row_map[w.row_off], self.col_map[w.col_off]
            rows, cols = slice(r0, r0 + w.height), slice(c0, c0 + w.width)
            canvas[:, rows, cols] = b.data
            present[rows, cols] = True
            if b.valid is not None:
                valid[rows, cols] = b.valid
        self.masked = nodata is not None or any(b.valid is not None for b in blocks)
        if nodata is not None:
            nd = np.isnan(canvas) if math.isnan(nodata) else canvas == nodata
            valid &= ~nd.all(axis=0)
        #: NaN or an infinity among the values (float data): the kernels then keep them out
        #: of sums they are not taps of (a product by a weight of 0 is NaN)
        self.nonfinite = _nonfinite(canvas)
        if self.nonfinite and self.masked:
            # GDAL's warper skips invalid pixels: their values must not reach any sum
            canvas[:, ~valid] = 0
            self.nonfinite = _nonfinite(canvas)
        self.data = canvas.reshape(self.bands, -1)
        self.present: BoolArray | None = None if present.all() else present.ravel()
        self._present_sat: npt.NDArray[np.int32] | None = None
        if self.present is not None:
            self._present_sat = np.zeros((hc + 1, wc + 1), np.int32)
            self._present_sat[1:, 1:] = present.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
        #: the held pixels are one rectangle: offsets are plain arithmetic
        self.runs = (row_run, col_run) if row_run and col_run and self.present is None else None
        held = self.masked or self.present is not None
        self.valid: BoolArray | None = (valid & present).ravel() if held else None
        self._sat: SummedArea | None = None

    def summed_area(self) -> SummedArea:
        """Summed-area tables of valid values and of validity (built on first use)."""
        if self._sat is None:
            self._sat = SummedArea(self)
        return self._sat

    def flat(self, rows: IntArray, cols: IntArray) -> IntArray:
        """Canvas offsets of level pixels ``(rows, cols)`` (inside the level); pixels no block
        holds count as missing and read canvas pixel 0."""
        r, c = self.row_map[rows], self.col_map[cols]
        bad = (r < 0) | (c < 0)
        if bad.any():
            self.missing += int(bad.sum())
            r, c = np.where(bad, 0, r), np.where(bad, 0, c)
        f = r * self.width_c + c
        if self.present is not None:
            self.missing += int((~self.present[f]).sum())
        return np.asarray(f, np.intp)

    def take(self, rows: IntArray, cols: IntArray) -> tuple[FloatArray, BoolArray]:
        """Values ``(bands, n)`` and validity ``(n,)`` of level pixels ``(rows, cols)``."""
        f = self.flat(rows, cols)
        ok = np.ones(f.shape, np.bool_) if self.valid is None else self.valid[f]
        return np.take(self.data, f, axis=1), ok

    def held_rect(self, r0: IntArray, c0: IntArray, nr: int, nc: int) -> tuple[IntArray, BoolArray]:
        """Canvas offset of ``(r0, c0)`` and whether the ``nr`` x ``nc`` level rectangle from
        there is held entirely (it is then that rectangle of the canvas)."""
        if self.runs is not None:
            (rs, re), (cs, ce) = self.runs
            ok = (r0 >= rs) & (r0 <= re - nr) & (c0 >= cs) & (c0 <= ce - nc)
            base = (r0 - rs) * self.width_c + (c0 - cs)
            return (base if ok.all() else np.where(ok, base, 0)), ok
        rm, cm = self.row_map, self.col_map
        a, b = rm[r0], rm[np.minimum(r0 + (nr - 1), rm.size - 1)]
        c, d = cm[c0], cm[np.minimum(c0 + (nc - 1), cm.size - 1)]
        ok = (a >= 0) & (c >= 0) & (b - a == nr - 1) & (d - c == nc - 1)
        if self._present_sat is not None:
            s = self._present_sat
            a0, c0_ = np.where(ok, a, 0), np.where(ok, c, 0)
            a1 = np.minimum(a0 + nr, self.height_c)
            c1 = np.minimum(c0_ + nc, self.width_c)
            area = s[a1, c1] - s[a0, c1] - s[a1, c0_] + s[a0, c0_]
            ok &= area == nr * nc
        return np.where(ok, a * self.width_c + c, 0).astype(np.intp), ok


class Taps:
    """Canvas offsets of a kernel footprint per pixel: ``nr`` rows x ``nc`` columns of level
    pixels. Footprints held as a rectangle are addressed from one base offset; the others
    (window borders where taps repeat, the antimeridian seam, pixels not held) tap by tap,
    counting the taps no block holds as missing."""

    def __init__(self, canvas: Canvas, base: IntArray, fast: BoolArray, nr: int, nc: int) -> None:
        self.canvas, self.base, self.nr, self.nc = canvas, base, nr, nc
        self.slow = np.flatnonzero(~fast) if not fast.all() else None
        self.slow_flat: IntArray | None = None

    @classmethod
    def rect(cls, canvas: Canvas, r0: IntArray, c0: IntArray, nr: int, nc: int) -> Taps:
        """The ``nr`` x ``nc`` rectangles from ``(r0, c0)`` (which must lie in the level)."""
        base, held = canvas.held_rect(r0, c0, nr, nc)
        taps = cls(canvas, base, held, nr, nc)
        if taps.slow is not None:
            s = taps.slow
            taps._lookup(r0[s] + np.arange(nr)[:, None], c0[s] + np.arange(nc)[:, None])
        return taps

    @classmethod
    def grid(cls, canvas: Canvas, rows: IntArray, cols: IntArray) -> Taps:
        """Rows ``rows[j]`` x columns ``cols[i]`` (``(nr, n)`` and ``(nc, n)``, level pixels)."""
        nr, nc = rows.shape[0], cols.shape[0]
        straight = (rows[-1] - rows[0] == nr - 1) & (cols[-1] - cols[0] == nc - 1)
        base, held = canvas.held_rect(rows[0], cols[0], nr, nc)
        taps = cls(canvas, base, straight & held, nr, nc)
        if taps.slow is not None:
            taps._lookup(rows[:, taps.slow], cols[:, taps.slow])
        return taps

    def _lookup(self, rows: IntArray, cols: IntArray) -> None:
        nr, nc = self.nr, self.nc
        r = np.repeat(rows[:, None, :], nc, axis=1)
        c = np.repeat(cols[None, :, :], nr, axis=0)
        self.slow_flat = self.canvas.flat(r.ravel(), c.ravel()).reshape(nr, nc, -1)

    def row(self, j: int) -> IntArray:
        """Offsets ``(nc, n)`` of footprint row ``j``."""
        out = self.base + (j * self.canvas.width_c + np.arange(self.nc))[:, None]
        if self.slow is not None and self.slow_flat is not None:
            out[:, self.slow] = self.slow_flat[j]
        return out


class SummedArea:
    """Integral images of value x validity (per band) and of validity over a canvas, so the
    sum over any held rectangle is four lookups. Integer data is summed in int64 (exact),
    floating data in float64."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        hc, wc = canvas.height_c, canvas.width_c
        valid = np.ones(hc * wc, np.bool_) if canvas.valid is None else canvas.valid
        kind = np.int64 if np.issubdtype(canvas.dtype, np.integer) else np.float64
        vals = np.where(valid, canvas.data, 0).astype(kind).reshape(canvas.bands, hc, wc)
        #: per band, an integral image of valid NaNs and infinities (None: none)
        self.nans: npt.NDArray[np.int64] | None = None
        if canvas.nonfinite:
            nan = ~np.isfinite(vals)
            vals[nan] = 0
            self.nans = np.zeros((canvas.bands, hc + 1, wc + 1), np.int64)
            self.nans[:, 1:, 1:] = nan.cumsum(1, dtype=np.int64).cumsum(2)
        self.sums = np.zeros((canvas.bands, hc + 1, wc + 1), kind)
        self.sums[:, 1:, 1:] = vals.cumsum(1).cumsum(2)
        self.count = np.zeros((hc + 1, wc + 1), np.int64)
        self.count[1:, 1:] = valid.reshape(hc, wc).astype(np.int64).cumsum(0).cumsum(1)

    def rect(
        self, r0: IntArray, r1: IntArray, c0: IntArray, c1: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """Sums of valid values ``(bands, n)`` and valid counts over the level rectangles
        ``[r0, r1) x [c0, c1)`` (empty ones give 0); every pixel in them must be held."""
        a, b, c, d = self._corners(r0, r1, c0, c1)
        s = self.sums[:, b, d] - self.sums[:, a, d] - self.sums[:, b, c] + self.sums[:, a, c]
        n = self.count[b, d] - self.count[a, d] - self.count[b, c] + self.count[a, c]
        return s.astype(np.float64), n.astype(np.float64)

    def odd(self, r0: IntArray, r1: IntArray, c0: IntArray, c1: IntArray) -> IntArray:
        """How many NaNs and infinities ``(bands, n)`` the rectangles hold (as ``rect``)."""
        t = self.nans
        if t is None:
            return np.zeros((self.canvas.bands, r0.size), np.int64)
        a, b, c, d = self._corners(r0, r1, c0, c1)
        return np.asarray(t[:, b, d] - t[:, a, d] - t[:, b, c] + t[:, a, c])

    def _corners(
        self, r0: IntArray, r1: IntArray, c0: IntArray, c1: IntArray
    ) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """The integral images' rows ``a``, ``b`` and columns ``c``, ``d`` of the level
        rectangles ``[r0, r1) x [c0, c1)`` (all 0 for an empty one)."""
        empty = (r1 <= r0) | (c1 <= c0)
        rm, cm = self.canvas.row_map, self.canvas.col_map
        a = np.where(empty, 0, rm[np.where(empty, 0, r0)])
        b = np.where(empty, 0, rm[np.where(empty, 0, r1 - 1)] + 1)
        c = np.where(empty, 0, cm[np.where(empty, 0, c0)])
        d = np.where(empty, 0, cm[np.where(empty, 0, c1 - 1)] + 1)
        return a, b, c, d
