"""GDAL's RasterIO resampling kernels in numpy: bilinear, cubic, average and mode.

Pure and synchronous (reads run it in the thread pool), on the source window and taps that
``resample_plan`` worked out. Each mirrors its kernel in GDAL's ``gcore/overview.cpp``:

* convolution (bilinear, cubic), separable: columns, then rows. With a validity mask each pass
  normalises by the weights of its valid taps (a row left without any is invalid for the next
  pass) and, for cubic (a kernel with negative weights), drops an output whose longest run of
  valid taps is shorter than half its taps;
* average: the coverage-weighted mean of the footprint's valid pixels;
* mode: the most frequent valid value of the footprint (unweighted); ties go to the value GDAL
  keeps: the first to reach the top count, whatever the data type.

Results are stored as GDAL stores them: through float32 for the convolutions of 8/16-bit and
float32 data, clamped to the type, rounded half away from zero; a valid result equal to nodata
becomes the next value (GDAL's replacement value); a result with no valid source pixel gets the
nodata value (0 without one) and is invalid. Validity is per band, as GDAL's band masks are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .resample_plan import AxisPlan, FloatArray, ResamplePlan

__all__ = ["replacement", "resample", "store"]

BoolArray = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------------------------
# the kernels (sync; run in a thread)
# --------------------------------------------------------------------------------------------


def _gather(arr: Any, axis: AxisPlan, origin: int, dim: int) -> Any:
    """``arr`` sampled at the taps of ``axis`` along ``dim``: shape gains a trailing k."""
    return np.take(arr, axis.index - origin, axis=dim)


#: Intermediate values one strip of output rows may hold (strips bound a kernel's memory).
_STRIP_CELLS = 1 << 22


def _strips(plan: ResamplePlan, bands: int) -> list[tuple[slice, AxisPlan]]:
    """The output rows in strips, each with its row taps (so that a strip's source rows times
    the output width stays near ``_STRIP_CELLS``)."""
    m, n = plan.shape
    reach = int(plan.rows.count.max()) if m else 1
    step = max(1, _STRIP_CELLS // max(1, bands * n * reach))
    out = []
    for r0 in range(0, m, step):
        sl = slice(r0, r0 + step)
        out.append((sl, AxisPlan(plan.rows.index[sl], plan.rows.weight[sl], plan.rows.count[sl])))
    return out


#: Outputs per dense band of weights (a banded matrix product in BLAS, group by group).
_GROUP = 64


class _Band:
    """The taps of one axis as dense weight blocks: outputs ``[g0, g1)`` take source
    ``[lo, hi)`` (relative to ``origin``) times ``dense`` (hi - lo, g1 - g0)."""

    def __init__(self, axis: AxisPlan, origin: int, taps: str | None = None) -> None:
        idx = axis.index - origin
        weight = axis.weight
        dtype: type = np.float64
        if taps is not None:  # 1 for each tap of this kind, else 0: counts, exact in float32
            kinds = {"all": True, "pos": weight > 0, "neg": weight < 0, "zero": weight == 0}
            weight = (axis.real & kinds[taps]).astype(np.float64)
            dtype = np.float32
        n = idx.shape[0]
        self.n = n
        self.dtype = dtype
        self.blocks: list[tuple[int, int, int, int, FloatArray]] = []
        for g0 in range(0, n, _GROUP):
            g1 = min(n, g0 + _GROUP)
            part = idx[g0:g1]
            lo, hi = int(part.min()), int(part.max()) + 1
            dense = np.zeros((hi - lo, g1 - g0))
            cols = np.broadcast_to(np.arange(g1 - g0)[:, None], part.shape)
            np.add.at(dense, (part - lo, cols), weight[g0:g1])
            self.blocks.append((g0, g1, lo, hi, dense.astype(dtype, copy=False)))

    def last(self, arr: Any) -> FloatArray:
        """``arr`` (..., L) -> (..., n): the weighted sum over the taps along the last axis."""
        out = np.empty((*arr.shape[:-1], self.n), self.dtype)
        for g0, g1, lo, hi, dense in self.blocks:
            out[..., g0:g1] = np.asarray(arr[..., lo:hi], dtype=self.dtype) @ dense
        return out

    def rows(self, arr: Any) -> FloatArray:
        """``arr`` (..., L, w) -> (..., n, w): the same along the second-last axis."""
        out = np.empty((*arr.shape[:-2], self.n, arr.shape[-1]), self.dtype)
        for g0, g1, lo, hi, dense in self.blocks:
            out[..., g0:g1, :] = dense.T @ np.asarray(arr[..., lo:hi, :], dtype=self.dtype)
        return out


def _tap_sets(axis: AxisPlan, origin: int) -> Callable[[str], _Band]:
    """The tap indicators of one axis by kind, built once each on first use."""

    @functools.cache
    def get(kind: str) -> _Band:
        return _Band(axis, origin, kind)

    return get


@dataclass
class _Odd:
    """Where values are not finite: NaN, +inf and -inf (boolean arrays of one shape; None:
    nowhere, the common case of NaN without infinities)."""

    nan: BoolArray
    pos: BoolArray | None = None
    neg: BoolArray | None = None

    def gated(self, keep: Any) -> _Odd:
        def gate(a: BoolArray | None) -> BoolArray | None:
            return None if a is None else a & keep

        return _Odd(self.nan & keep, gate(self.pos), gate(self.neg))

    def place(self, out: FloatArray) -> None:
        """Write them into ``out`` (NaN wins over an infinity)."""
        if self.pos is not None:
            out[self.pos] = np.inf
        if self.neg is not None:
            out[self.neg] = -np.inf
        out[self.nan] = np.nan


def _finite(block: Any) -> tuple[Any, _Odd | None]:
    """``block`` with NaN and infinities read as 0, and where they were (None: all finite).
    A matrix product would spread one to every output of its weight block (inf or NaN times
    0 is NaN); GDAL's loops carry it only into the outputs that take it as a tap."""
    if block.dtype.kind not in "fc" or block.size == 0:
        return block, None
    if block.dtype.kind == "f" and np.isfinite(block.min()) and np.isfinite(block.max()):
        return block, None  # no mask arrays for finite data
    bad = ~np.isfinite(block)
    if not bad.any():
        return block, None
    nan = np.isnan(block)
    odd = _Odd(nan)
    if block.dtype.kind == "f":
        inf = bad & ~nan
        if inf.any():
            odd.pos = inf & (block > 0)
            odd.neg = inf & (block < 0)
    clean = block.copy()
    clean[bad] = 0
    return clean, odd


def _carry(
    odd: _Odd,
    taps: Callable[[str], _Band],
    last: bool,
    valid: Any = None,
    wsum: FloatArray | None = None,
) -> _Odd:
    """Where one separable pass (along the last axis, else the second-last) makes NaN or an
    infinity, as GDAL's sum of value x weight x mask does: a NaN, or an infinity times 0 (a
    tap of weight 0, or masked: ``valid`` False), gives NaN; an infinity times a weight gives
    an infinity of their sign, and two of opposite signs NaN. ``taps(kind)``: the pass's tap
    indicators ("all", "pos", "neg", "zero" weights); ``wsum``: the weights the pass divides
    by (a negative one flips signs)."""

    def hit(kind: str, flags: BoolArray) -> BoolArray:
        band = taps(kind)
        return (band.last(flags) if last else band.rows(flags)) > 0

    if odd.pos is None and odd.neg is None:
        return _Odd(hit("all", odd.nan))
    pos = odd.pos if odd.pos is not None else np.zeros_like(odd.nan)
    neg = odd.neg if odd.neg is not None else np.zeros_like(odd.nan)
    dead = odd.nan
    if valid is not None:
        dead = dead | ((pos | neg) & ~valid)
        pos, neg = pos & valid, neg & valid
    nan = hit("all", dead) | hit("zero", pos | neg)
    up = hit("pos", pos) | hit("neg", neg)
    down = hit("pos", neg) | hit("neg", pos)
    if wsum is not None:
        flip = wsum < 0
        if flip.any():
            up, down = np.where(flip, down, up), np.where(flip, up, down)
    both = up & down
    return _Odd(nan | both, up & ~both, down & ~both)


def _runs_ok(valid: Any, axis: AxisPlan, origin: int, last: bool) -> BoolArray:
    """GDAL's rule for kernels with negative weights (cubic) on masked data: an output whose
    longest run of valid taps is shorter than half its taps is dropped."""
    idx = axis.index - origin
    taps = valid if last else np.swapaxes(valid, -1, -2)
    run = np.zeros((*taps.shape[:-1], idx.shape[0]), np.intp)
    best = np.zeros_like(run)
    real = axis.real
    for j in range(idx.shape[1]):
        run = np.where(taps[..., idx[:, j]] & real[:, j], run + 1, 0)
        best = np.maximum(best, run)
    ok = best >= axis.count // 2
    return ok if last else np.swapaxes(ok, -1, -2)


def _convolve(
    src: Any, valid: BoolArray | None, plan: ResamplePlan
) -> tuple[FloatArray, BoolArray | None]:
    """Separable convolution, strip by strip of output rows: columns, then rows; with a mask
    each pass normalises by the weights of its valid taps."""
    win = plan.window
    out = np.zeros((src.shape[0], *plan.shape))
    ok = None if valid is None else np.zeros(plan.shape, bool)
    negative = plan.kind == "cubic"
    cols = _Band(plan.cols, win.col_off)
    col_taps = _tap_sets(plan.cols, win.col_off)
    for sl, row_axis in _strips(plan, src.shape[0]):
        lo, hi = row_axis.start - win.row_off, row_axis.stop - win.row_off
        rows = _Band(row_axis, row_axis.start)
        block, odd = _finite(src[:, lo:hi])
        row_taps = _tap_sets(row_axis, row_axis.start)
        if valid is None:
            out[:, sl] = rows.rows(cols.last(block))
            if odd is not None:
                _carry(_carry(odd, col_taps, True), row_taps, False).place(out[:, sl])
            continue
        assert ok is not None
        v = valid[lo:hi]
        # columns: normalised by the valid weights; a row without any is invalid
        wsum = cols.last(v)
        hvalid = wsum > 0
        if negative:
            hvalid &= _runs_ok(v, plan.cols, win.col_off, True)
        h = np.divide(
            cols.last(block * v),
            wsum,
            out=np.zeros(block.shape[:-1] + wsum.shape[-1:]),
            where=hvalid,
        )
        # rows, over the rows' results that are valid
        wsum2 = rows.rows(hvalid)
        vok = wsum2 > 0
        if negative:
            vok &= _runs_ok(hvalid, row_axis, row_axis.start, False)
        out[:, sl] = np.divide(
            rows.rows(h * hvalid), wsum2, out=np.zeros((src.shape[0], *wsum2.shape)), where=vok
        )
        if odd is not None:
            # GDAL multiplies a masked tap by its weight times 0: a NaN or an infinity reaches
            # a row's result masked or not, unless the row has no valid tap (it holds 0); the
            # rows' pass carries them on over the valid rows
            hodd = _carry(odd, col_taps, True, v, wsum).gated(hvalid)
            _carry(hodd, row_taps, False, None, wsum2).place(out[:, sl])
        ok[sl] = vok
    return out, ok


def _average(
    src: Any, valid: BoolArray | None, plan: ResamplePlan
) -> tuple[FloatArray, BoolArray | None]:
    """Coverage-weighted mean of each footprint's valid pixels (separable sums), strip by
    strip of output rows."""
    win = plan.window
    out = np.zeros((src.shape[0], *plan.shape))
    ok = None if valid is None else np.zeros(plan.shape, bool)
    cols = _Band(plan.cols, win.col_off)
    col_sum = plan.cols.weight.sum(axis=1)
    col_taps = _tap_sets(plan.cols, win.col_off)
    for sl, row_axis in _strips(plan, src.shape[0]):
        lo, hi = row_axis.start - win.row_off, row_axis.stop - win.row_off
        rows = _Band(row_axis, row_axis.start)
        block, odd = _finite(src[:, lo:hi])
        if odd is not None and valid is not None:
            odd = odd.gated(valid[lo:hi])  # GDAL's average skips a masked pixel, whatever it is
        if valid is None:
            num = rows.rows(cols.last(block))
            den = np.outer(row_axis.weight.sum(axis=1), col_sum)
        else:
            v = valid[lo:hi]
            num = rows.rows(cols.last(block * v))
            den = rows.rows(cols.last(v))
        good = den > 0
        out[:, sl] = np.divide(num, den, out=np.zeros_like(num), where=good)
        if odd is not None:
            row_taps = _tap_sets(row_axis, row_axis.start)
            _carry(_carry(odd, col_taps, True), row_taps, False).place(out[:, sl])
        if ok is not None:
            ok[sl] = good
    return out, ok


def _mode_of(values: Any, real: Any) -> tuple[Any, Any]:
    """Per row of ``values`` (p, m) (row-major footprint order), the mode of its ``real``
    entries and whether it had any; a tie goes to the value that reached the top count first
    (GDAL 3.10, every data type: measured on int8 to uint64, float32 and float64)."""
    p, m = values.shape
    if m == 0:
        return np.zeros(p, values.dtype), np.zeros(p, bool)
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 4:
        # one integer key, invalid entries last: a stable sort keeps footprint order in ties
        key = np.where(real, values.astype(np.int64), np.int64(1) << 40)
        order = np.argsort(key, axis=1, kind="stable")
    else:
        order = np.lexsort((values, ~real), axis=-1)
    sv = np.take_along_axis(values, order, axis=1)
    sr = np.take_along_axis(real, order, axis=1)
    pos = np.arange(m)
    new = np.ones((p, m), bool)
    new[:, 1:] = sv[:, 1:] != sv[:, :-1]
    if sv.dtype.kind == "f":  # NaNs count as one value (GDAL's), sorted together last
        new[:, 1:] &= ~(np.isnan(sv[:, 1:]) & np.isnan(sv[:, :-1]))
    # The sort is stable, so the c-th entry of a run of equal values is its c-th occurrence
    # in footprint order (invalid entries sort last and are left out).
    occ = pos - np.maximum.accumulate(np.where(new, pos, 0), axis=1) + 1
    occ = np.where(sr, occ, 0)
    best = occ.max(axis=1)
    top = occ == best[:, None]
    # ties: the value whose top-count occurrence comes first in footprint order
    pick = np.where(top, order, m).argmin(axis=1)
    return sv[np.arange(p), pick], best > 0


#: Footprint values a mode pass holds at once (it works in strips of output rows).
_MODE_CELLS = 1 << 20


def _mode(src: Any, valid: BoolArray | None, plan: ResamplePlan) -> tuple[Any, BoolArray | None]:
    """The mode of each footprint of the single band ``src`` (1, h, w)."""
    win = plan.window
    m, n = plan.shape
    kr, kc = plan.rows.index.shape[1], plan.cols.index.shape[1]
    real_c = plan.cols.real
    out = np.empty((1, m, n), src.dtype)
    ok = np.zeros((m, n), bool)
    cols = _gather(src[0], plan.cols, win.col_off, 1)  # (h, n, kc)
    vcols = None if valid is None else _gather(valid, plan.cols, win.col_off, 1)
    step = max(1, _MODE_CELLS // max(1, n * kr * kc))
    for r0 in range(0, m, step):
        sl = slice(r0, r0 + step)
        rows = AxisPlan(plan.rows.index[sl], plan.rows.weight[sl], plan.rows.count[sl])
        s = len(rows.count)
        real = rows.real[:, :, None, None] & real_c[None, None, :, :]  # (s, kr, n, kc)
        if vcols is not None:
            real = real & _gather(vcols, rows, win.row_off, 0)
        vals = _gather(cols, rows, win.row_off, 0)
        flat = vals.transpose(0, 2, 1, 3).reshape(s * n, kr * kc)
        flat_real = real.transpose(0, 2, 1, 3).reshape(s * n, kr * kc)
        mode, has = _mode_of(flat, flat_real)
        out[0, r0 : r0 + s] = mode.reshape(s, n)
        ok[r0 : r0 + s] = has.reshape(s, n)
    return out, (ok if valid is not None else None)


#: Types GDAL computes a kernel's result in float32 for before storing it.
_FLOAT32_WORK = {"uint8", "int8", "uint16", "int16", "float32"}


def store(values: FloatArray, dtype: np.dtype[Any], work32: bool = True) -> npt.NDArray[Any]:
    """Float results in ``dtype`` as GDAL stores them: through its float32 work type where it
    uses one (``work32``), clamped, rounded half away from zero."""
    if work32 and dtype.name in _FLOAT32_WORK:
        with np.errstate(over="ignore", invalid="ignore"):
            values = values.astype(np.float32).astype(np.float64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        rounded = np.where(values >= 0, np.floor(values + 0.5), np.ceil(values - 0.5))
        clipped: npt.NDArray[Any] = np.clip(np.nan_to_num(rounded), info.min, info.max)
        return clipped.astype(dtype)
    return values.astype(dtype)


def replacement(nodata: float | int, dtype: np.dtype[Any]) -> float | int:
    """The value GDAL stores instead of a computed value equal to nodata (so that it stays
    valid): the next value up, or down at the type's maximum."""
    if dtype.kind in "iu":
        top = int(np.iinfo(dtype).max)
        return top - 1 if nodata == top else int(nodata) + 1
    if nodata == 0:
        return float(np.finfo(dtype).tiny)
    return float(np.nextafter(dtype.type(nodata), dtype.type(np.inf)))


def _one(
    src: npt.NDArray[Any], valid: BoolArray | None, plan: ResamplePlan, nodata: float | int | None
) -> tuple[npt.NDArray[Any], BoolArray | None]:
    """Bands sharing one validity mask (None: all valid)."""
    if plan.kind == "mode":
        outs = [_mode(src[i : i + 1], valid, plan) for i in range(src.shape[0])]
        out = np.concatenate([o for o, _ in outs]) if outs else np.empty((0, *plan.shape))
        return out.astype(src.dtype, copy=False), outs[0][1] if outs else None
    kernel = _average if plan.kind == "average" else _convolve
    values, ok = kernel(src, valid, plan)
    if nodata is not None and kernel is _convolve and src.dtype.kind == "f":
        # GDAL's convolutions with a nodata value store an infinity as the type's largest
        # finite value (with only a mask band they keep it)
        top = float(np.finfo(src.dtype).max)
        np.clip(values, -top, top, out=values)
    out = store(values, src.dtype, plan.kind != "average")
    if nodata is not None and _usable(nodata, src.dtype):
        hit = out == nodata if ok is None else (out == nodata) & ok
        out[hit] = replacement(nodata, src.dtype)
    return out, ok


def resample(
    src: npt.NDArray[Any],
    valid: Sequence[BoolArray | None],
    plan: ResamplePlan,
    nodata: float | int | None,
) -> tuple[npt.NDArray[Any], BoolArray | None]:
    """``src`` (bands, h, w), the plan's source window, resampled to the plan's output shape;
    and the outputs' validity (bands, h, w), None when every source pixel was valid.

    ``valid`` holds each band's mask of valid source pixels (None: all valid; the same array
    for bands sharing one). Outputs without a valid source pixel get ``nodata`` (or 0)."""
    b = src.shape[0]
    out = np.empty((b, *plan.shape), src.dtype)
    ok_all = np.ones((b, *plan.shape), bool)
    masked = False
    done = [False] * b
    for i in range(b):
        if done[i]:
            continue
        group = [j for j in range(i, b) if not done[j] and valid[j] is valid[i]]
        res, ok = _one(src[group], valid[i], plan, nodata)
        out[group] = res
        if ok is not None:
            masked = True
            ok_all[group] = ok
            fill = nodata if nodata is not None and _usable(nodata, src.dtype) else 0
            for j in group:
                out[j][~ok] = fill
        for j in group:
            done[j] = True
    return out, (ok_all if masked else None)


def _usable(value: float | int, dtype: np.dtype[Any]) -> bool:
    """Whether ``value`` can be stored in ``dtype`` as it is."""
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max
