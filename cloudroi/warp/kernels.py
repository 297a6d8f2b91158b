"""Nearest, bilinear and cubic kernels, vectorised over the pixels of a warp chunk.

Each mirrors a kernel of GDAL's ``gdalwarpkernel.cpp`` (results are float64 values still to be
stored by :func:`store`; ``sw`` is the chunk's source window, the kernels' border):

* :func:`check_offsets` (GWKCheckAndComputeSrcOffsets): a destination pixel is warped only if
  its source position lies in ``[off, off + size]`` of the window on both axes (1e-10 slack at
  the far edge); nearest samples ``int(x + 1e-10)``, pulled back inside at the far edge;
* :func:`bilinear4` (GWKBilinearResampleNoMasks4SampleT / GWKBilinearResample4Sample):
  ``i = floor(x - 0.5)``, weight ``1.5 - (x - i)``; without masks, GDAL's interior formula
  ``(p00 rx + p01 (1 - rx)) ry + (p10 rx + p11 (1 - rx)) (1 - ry)`` wherever the four pixels are
  inside the window, else the weighted sum of the pixels inside (upper left, upper right, lower
  right, lower left) over their weights; with masks, the weighted sum of the valid pixels inside
  (row by row), a left/top neighbour at -1 moved onto 0 with full weight;
* :func:`cubic4` (GWKCubicResample[NoMasks]4Sample): Catmull-Rom (a = -0.5) on 4 x 4 pixels
  from ``int(x - 0.5)`` (truncation), bilinear at the window border (``i - 1 < 0`` or
  ``i + 2 >= size``) and, with masks, wherever one of the 16 pixels is invalid;
* :func:`scaled` (GWKResample / GWKResampleNoMasksT): when downsampling (kernel scale below
  0.95) the kernel is stretched by ``1 / scale``: taps ``1 - R .. R`` around ``floor(x - 0.5)``
  (``((r + 1) % 2) - R ..`` with masks), ``R = ceil(radius / scale)``, clipped to the window,
  weights ``K((i - d) * scale)`` normalised by their sum (over valid taps with masks);
* :func:`store` (GWKRoundValueT / GWKClampValueT and the destination-nodata rule): clamp to the
  type, ``floor(v + 0.5)``, and a value equal to the destination nodata moved one step down
  (to min + 1 at the type minimum).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Window
from .canvas import Canvas, Taps
from .grid import BoolArray, FloatArray, IntArray
from .window import FILTER_RADIUS

__all__ = ["bilinear4", "check_offsets", "cubic4", "scaled", "store"]

#: GDAL's tolerance when testing a source position against the window's far edge.
EDGE_SLACK = 1e-10


def check_offsets(x: FloatArray, y: FloatArray, sw: Window) -> tuple[BoolArray, IntArray, IntArray]:
    """Which positions are warped, and the source pixel nearest samples for each."""
    with np.errstate(invalid="ignore"):
        ok = (
            (x >= sw.col_off)
            & (y >= sw.row_off)
            & (x + EDGE_SLACK <= sw.col_end)
            & (y + EDGE_SLACK <= sw.row_end)
        )
    xi = np.where(ok, x, sw.col_off) + EDGE_SLACK
    yi = np.where(ok, y, sw.row_off) + EDGE_SLACK
    ix = np.minimum(xi.astype(np.intp), sw.col_end - 1)
    iy = np.minimum(yi.astype(np.intp), sw.row_end - 1)
    return ok, ix, iy


def _cubic_weights(d: FloatArray) -> list[FloatArray]:
    """GWKCubicComputeWeights: Catmull-Rom (a = -0.5) weights of taps -1, 0, 1, 2, in GDAL's
    order of operations (in place: ``-1 + v`` is ``v - 1`` exactly)."""
    half = 0.5 * d
    half2 = half * d
    three = 3 * d
    w0 = 2 - d
    w0 *= d
    w0 -= 1
    w0 *= half
    w1 = three - 5
    w1 *= half2
    w1 += 1
    w2 = 4 - three
    w2 *= d
    w2 += 1
    w2 *= half
    w3 = d - 1
    w3 *= half2
    return [w0, w1, w2, w3]


def _filter_row(kind: str, x: FloatArray) -> FloatArray:
    ax = np.abs(x)
    if kind == "bilinear":
        return np.maximum(1.0 - ax, 0.0)
    x2 = x * x
    near = 1.5 * ax
    near -= 2.5
    near *= x2
    near += 1.0  # x2 * (1.5 |x| - 2.5) + 1
    far = -0.5 * ax
    far += 2.5
    far *= x2
    far -= 4.0 * ax
    far += 2.0  # x2 * (-0.5 |x| + 2.5) - 4 |x| + 2
    return np.where(ax <= 1.0, near, np.where(ax <= 2.0, far, 0.0))


def _filter(kind: str, x: FloatArray) -> FloatArray:
    """GWKBilinear / GWKCubic kernel values at ``x`` (taps x pixels), a tap at a time."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = _filter_row(kind, x[i])
    return out


def _interior_bilinear(
    canvas: Canvas, ix: IntArray, iy: IntArray, rx: FloatArray, ry: FloatArray
) -> FloatArray:
    """GDAL's no-mask interior formula, in its order of operations (all four pixels inside)."""
    taps = Taps.rect(canvas, iy, ix, 2, 2)
    top = np.take(canvas.data, taps.row(0), axis=1)
    bottom = np.take(canvas.data, taps.row(1), axis=1)
    ax = 1.0 - rx
    # (p00 rx + p01 ax) ry + (p10 rx + p11 ax) (1 - ry), in place, operation for operation
    upper: FloatArray = np.multiply(top[:, 0], rx)
    tmp = np.multiply(top[:, 1], ax)
    upper += tmp
    lower = np.multiply(bottom[:, 0], rx)
    np.multiply(bottom[:, 1], ax, out=tmp)
    lower += tmp
    upper *= ry
    lower *= 1.0 - ry
    upper += lower
    return upper


_NO_MASK_ORDER = ((0, 0), (0, 1), (1, 1), (1, 0))  # UL, UR, LR, LL
_MASK_ORDER = ((0, 0), (0, 1), (1, 0), (1, 1))  # UL, UR, LL, LR


def _weighted_bilinear(
    canvas: Canvas, ix: IntArray, iy: IntArray, rx: FloatArray, ry: FloatArray, sw: Window
) -> tuple[FloatArray, BoolArray]:
    """The weighted sum of the 2 x 2 pixels inside the window (and valid), over their weights;
    pixels whose weights sum below 1e-5 are invalid."""
    if canvas.masked:
        fx, fy = ix == sw.col_off - 1, iy == sw.row_off - 1
        ix, rx = np.where(fx, sw.col_off, ix), np.where(fx, 1.0, rx)
        iy, ry = np.where(fy, sw.row_off, iy), np.where(fy, 1.0, ry)
    acc = np.zeros((canvas.bands, ix.size))
    div = np.zeros(ix.size)
    for dy, dx in _MASK_ORDER if canvas.masked else _NO_MASK_ORDER:
        rr, cc = iy + dy, ix + dx
        use = (rr >= sw.row_off) & (rr < sw.row_end) & (cc >= sw.col_off) & (cc < sw.col_end)
        rr = np.clip(rr, sw.row_off, sw.row_end - 1)
        v, ok = canvas.take(rr, np.clip(cc, sw.col_off, sw.col_end - 1))
        wx = rx if dx == 0 else 1.0 - rx
        wy = ry if dy == 0 else 1.0 - ry
        w = np.where(use & ok, wx * wy, 0.0)
        if canvas.nonfinite:  # a pixel outside the window is no tap (its clipped stand-in is)
            acc += np.where(use, v * w, 0.0)
        else:
            acc += v * w
        div += w
    good = div >= 1e-5
    return np.where(good, acc / np.where(good, div, 1.0), 0.0), good


def bilinear4(
    canvas: Canvas, x: FloatArray, y: FloatArray, sw: Window
) -> tuple[FloatArray, BoolArray]:
    """4-sample bilinear values ``(bands, n)`` and validity at source positions ``x``, ``y``."""
    ix = np.floor(x - 0.5).astype(np.intp)
    iy = np.floor(y - 0.5).astype(np.intp)
    rx = 1.5 - (x - ix)
    ry = 1.5 - (y - iy)
    if canvas.masked:
        return _weighted_bilinear(canvas, ix, iy, rx, ry, sw)
    inner = (ix >= sw.col_off) & (ix + 1 < sw.col_end) & (iy >= sw.row_off) & (iy + 1 < sw.row_end)
    if inner.all():
        return _interior_bilinear(canvas, ix, iy, rx, ry), np.ones(x.size, np.bool_)
    out = np.zeros((canvas.bands, x.size))
    i, b = np.flatnonzero(inner), np.flatnonzero(~inner)
    if i.size:
        out[:, i] = _interior_bilinear(canvas, ix[i], iy[i], rx[i], ry[i])
    out[:, b] = _weighted_bilinear(canvas, ix[b], iy[b], rx[b], ry[b], sw)[0]
    return out, np.ones(x.size, np.bool_)


def _cubic_interior(
    canvas: Canvas, x: FloatArray, y: FloatArray, ix: IntArray, iy: IntArray
) -> tuple[FloatArray, BoolArray | None]:
    """Catmull-Rom over 4 x 4 pixels, and whether all 16 are valid (None without masks)."""
    wx = _cubic_weights(x - 0.5 - ix)
    wy = _cubic_weights(y - 0.5 - iy)
    t = Taps.rect(canvas, iy - 1, ix - 1, 4, 4)
    acc = np.zeros((canvas.bands, x.size))
    row = np.empty_like(acc)
    tmp = np.empty_like(acc)
    valid = canvas.valid if canvas.masked else None
    all_valid = None if valid is None else np.ones(x.size, np.bool_)
    # Without masks GDAL evaluates the cubic as a polynomial of differences of the taps: one
    # NaN or infinity among a pixel's 16 makes it NaN (inf - inf), whatever its weight
    odd = None  # (float32 and float16, which GDAL reads as float32; float64 keeps infinities)
    if canvas.nonfinite and not canvas.masked and canvas.dtype.itemsize <= 4:
        odd = np.zeros((canvas.bands, x.size), np.bool_)
    for ty in range(4):
        f = t.row(ty)
        v = np.take(canvas.data, f, axis=1)
        np.multiply(v[:, 0], wx[0], out=row)
        for tx in range(1, 4):
            np.multiply(v[:, tx], wx[tx], out=tmp)
            row += tmp
        row *= wy[ty]
        acc += row
        if odd is not None:
            odd |= ~np.isfinite(v).all(axis=1)
        if all_valid is not None and valid is not None:
            all_valid &= valid[f].all(axis=0)
    if odd is not None:
        acc[odd] = np.nan
    return acc, all_valid


def cubic4(
    canvas: Canvas, x: FloatArray, y: FloatArray, sw: Window
) -> tuple[FloatArray, BoolArray]:
    """4-sample cubic values ``(bands, n)`` and validity at source positions ``x``, ``y``."""
    ix = np.trunc(x - 0.5).astype(np.intp)
    iy = np.trunc(y - 0.5).astype(np.intp)
    lx, ly = ix - sw.col_off, iy - sw.row_off
    use4 = (lx - 1 >= 0) & (lx + 2 < sw.width) & (ly - 1 >= 0) & (ly + 2 < sw.height)
    good = np.ones(x.size, np.bool_)
    if use4.all():
        out, all_valid = _cubic_interior(canvas, x, y, ix, iy)
        if all_valid is None or all_valid.all():
            return out, good
        use4 = all_valid
    else:
        out = np.zeros((canvas.bands, x.size))
        i = np.flatnonzero(use4)
        if i.size:
            out[:, i], all_valid = _cubic_interior(canvas, x[i], y[i], ix[i], iy[i])
            if all_valid is not None:
                use4[i[~all_valid]] = False
    fb = np.flatnonzero(~use4)
    vb, g = bilinear4(canvas, x[fb], y[fb], sw)
    out[:, fb] = vb
    good[fb] = g
    return out, good


def _scaled_taps(
    kind: str, scale: float, pos: FloatArray, lo: int, hi: int, masked: bool
) -> tuple[IntArray, FloatArray, BoolArray | None]:
    """Source indices ``(taps, n)`` (clipped to ``[lo, hi)``), weights along one axis, and
    which taps are inside ``[lo, hi)`` (None: all)."""
    radius = FILTER_RADIUS[kind]
    r = math.ceil(radius / scale) if scale < 1.0 else radius
    i0 = np.floor(pos - 0.5).astype(np.intp)
    first = ((radius + 1) % 2) - r if masked else 1 - r
    t = np.arange(first, r + 1)[:, None]
    idx = i0 + t
    w = _filter(kind, (t - (pos - 0.5 - i0)) * min(scale, 1.0))
    inside = None
    if idx.min() < lo or idx.max() >= hi:
        inside = (idx >= lo) & (idx < hi)
        w *= inside  # taps outside the window are dropped
        idx = np.clip(idx, lo, hi - 1)
    return idx, w, inside


def scaled(
    canvas: Canvas,
    x: FloatArray,
    y: FloatArray,
    sw: Window,
    kind: str,
    scale: tuple[float, float],
) -> tuple[FloatArray, BoolArray]:
    """Widened bilinear/cubic values ``(bands, n)`` and validity at positions ``x``, ``y``."""
    cx, wx, in_x = _scaled_taps(kind, scale[0], x, sw.col_off, sw.col_end, canvas.masked)
    cy, wy, in_y = _scaled_taps(kind, scale[1], y, sw.row_off, sw.row_end, canvas.masked)
    taps = Taps.grid(canvas, cy, cx)
    valid = canvas.valid if canvas.masked else None
    acc = np.zeros((canvas.bands, x.size))
    wsum = np.zeros(x.size)
    row = np.empty_like(acc)
    tmp = np.empty_like(acc)
    nan = canvas.nonfinite
    for j in range(cy.shape[0]):
        # GDAL takes a tap of weight 0 too (a NaN there gives NaN), but no tap outside
        if not wy[j].any() and not (nan and (in_y is None or in_y[j].any())):
            continue
        f = taps.row(j)
        v = np.take(canvas.data, f, axis=1)
        if nan and (in_x is not None or in_y is not None):
            inside = np.ones(wx.shape, np.bool_) if in_x is None else in_x.copy()
            if in_y is not None:
                inside &= in_y[j]
            v = np.where(inside[None], v, 0.0)
        w = wx
        if valid is not None:
            w = np.where(valid[f], wx, 0.0) * wy[j]
            wsum += w.sum(axis=0)
        np.multiply(v[:, 0], w[0], out=row)
        for k in range(1, w.shape[0]):
            np.multiply(v[:, k], w[k], out=tmp)
            row += tmp
        if valid is None:
            row *= wy[j]
        acc += row
    if valid is not None:
        good = wsum >= 1e-6
        return np.where(good, acc / np.where(good, wsum, 1.0), 0.0), good
    norm = wx.sum(axis=0) * wy.sum(axis=0)
    return acc / np.where(norm == 0, 1.0, norm), np.ones(x.size, np.bool_)


def store(
    values: npt.NDArray[Any], dtype: np.dtype[Any], dst_nodata: float | None
) -> npt.NDArray[Any]:
    """Computed values as GDAL writes them into a ``dtype`` destination (float64 ``values``
    are rounded in place: they are the kernels' scratch arrays)."""
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype)
    info = np.iinfo(dtype)
    if values.dtype == dtype:  # nearest: source values as they are
        out = values.copy()
    else:  # float64 scratch values of the kernels: rounded in place
        np.clip(values, info.min, info.max, out=values)
        values += 0.5
        if info.min < 0:  # floor(v + 0.5); for v + 0.5 >= 0 the cast's truncation is that
            np.floor(values, out=values)
        out = values.astype(dtype)
    if dst_nodata is not None and info.min <= dst_nodata <= info.max:
        hit = out == dst_nodata
        if hit.any():
            out[hit] = info.min + 1 if dst_nodata == info.min else dst_nodata - 1
    return out
