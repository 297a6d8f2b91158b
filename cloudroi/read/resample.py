"""GDAL's RasterIO resampling kernels in numpy: bilinear, cubic, average and mode.

Pure and synchronous (reads run it in the thread pool), on the source window and taps that
``resample_plan`` worked out. Each mirrors its kernel in GDAL's ``gcore/overview.cpp``:

* convolution (bilinear, cubic), separable: columns, then rows. With a validity mask each pass
  normalises by the weights of its valid taps (a row left without any is invalid for the next
  pass) and, for cubic (a kernel with negative weights), drops an output whose longest run of
  valid taps is shorter than half its taps;
* average: the coverage-weighted mean of the footprint's valid pixels;
* mode: the most frequent valid value of the footprint (unweighted); ties go to the value GDAL
  keeps (the first to reach the top count for 8-bit data, else the first seen).

Results are stored as GDAL stores them: through float32 for the convolutions of 8/16-bit and
float32 data, clamped to the type, rounded half away from zero; a valid result equal to nodata
becomes the next value (GDAL's replacement value); a result with no valid source pixel gets the
nodata value (0 without one) and is invalid. Validity is per band, as GDAL's band masks are.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def _longest_valid_run(valid: Any, real: Any) -> Any:
    """Longest run of valid taps along the last axis (padding taps end a run)."""
    run = np.zeros(valid.shape[:-1], np.intp)
    best = np.zeros_like(run)
    for k in range(valid.shape[-1]):
        run = np.where(valid[..., k] & real[..., k], run + 1, 0)
        best = np.maximum(best, run)
    return best


def _masked_pass(
    taps: Any, valid: Any, axis: AxisPlan, negative: bool
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """One masked pass: ``taps`` (b, ..., n, k) and ``valid`` (..., n, k) -> the values
    normalised by their valid weights and where any survived. With a kernel with negative
    weights (cubic), GDAL also drops an output whose longest run of valid taps is shorter than
    half its taps."""
    w = axis.weight * valid
    wsum = w.sum(axis=-1)
    num = (taps * w).sum(axis=-1)
    ok = wsum > 0
    if negative:
        real = np.broadcast_to(axis.real, valid.shape)
        ok &= _longest_valid_run(valid, real) >= axis.count // 2
    return np.divide(num, wsum, out=np.zeros_like(num), where=ok), ok


def _convolve(
    src: FloatArray, valid: npt.NDArray[np.bool_] | None, plan: ResamplePlan
) -> tuple[FloatArray, npt.NDArray[np.bool_] | None]:
    """Separable convolution: columns, then rows; with a mask each pass normalises by the
    weights of its valid taps."""
    win = plan.window
    wc, wr = plan.cols.weight, plan.rows.weight
    cols = _gather(src, plan.cols, win.col_off, 2)  # (b, h_src, n, k)
    if valid is None:
        h = np.einsum("bhnk,nk->bhn", cols, wc)
        rows = _gather(h, plan.rows, win.row_off, 1)  # (b, m, k, n)
        return np.einsum("bmkn,mk->bmn", rows, wr), None
    negative = plan.kind == "cubic"
    vc = _gather(valid, plan.cols, win.col_off, 1)  # (h_src, n, k)
    h, hvalid = _masked_pass(cols, vc, plan.cols, negative)
    rows = np.moveaxis(_gather(h, plan.rows, win.row_off, 1), 2, 3)  # (b, m, n, k)
    vr = np.moveaxis(_gather(hvalid, plan.rows, win.row_off, 0), 1, 2)  # (m, n, k)
    row_axis = AxisPlan(plan.rows.index, plan.rows.weight[:, None, :], plan.rows.count[:, None])
    return _masked_pass(rows, vr, row_axis, negative)


def _average(
    src: FloatArray, valid: npt.NDArray[np.bool_] | None, plan: ResamplePlan
) -> tuple[FloatArray, npt.NDArray[np.bool_] | None]:
    """Coverage-weighted mean of each footprint's valid pixels (separable sums)."""
    win = plan.window
    wc, wr = plan.cols.weight, plan.rows.weight
    cols = _gather(src, plan.cols, win.col_off, 2)  # (b, h_src, n, k)
    if valid is None:
        num = np.einsum("bhnk,nk->bhn", cols, wc)
        den = np.broadcast_to(wc.sum(axis=1), num.shape[1:])
    else:
        vc = _gather(valid, plan.cols, win.col_off, 1).astype(np.float64)
        num = np.einsum("bhnk,hnk,nk->bhn", cols, vc, wc)
        den = np.einsum("hnk,nk->hn", vc, wc)
    num2 = np.einsum("bmkn,mk->bmn", _gather(num, plan.rows, win.row_off, 1), wr)
    den2 = np.einsum("mkn,mk->mn", _gather(den, plan.rows, win.row_off, 0), wr)
    ok = den2 > 0
    out = np.divide(num2, den2, out=np.zeros_like(num2), where=ok)
    return out, (ok if valid is not None else None)


def _mode_of(values: Any, real: Any, byte_rule: bool) -> tuple[Any, Any]:
    """Per row of ``values`` (p, m) (row-major footprint order), the mode of its ``real``
    entries and whether it had any."""
    p, m = values.shape
    if m == 0:
        return np.zeros(p, values.dtype), np.zeros(p, bool)
    order = np.lexsort((values, ~real), axis=-1) if m > 1 else np.zeros((p, 1), np.intp)
    sv = np.take_along_axis(values, order, axis=1)
    sr = np.take_along_axis(real, order, axis=1)
    pos = np.broadcast_to(np.arange(m), (p, m))
    new = np.ones((p, m), bool)
    new[:, 1:] = (sv[:, 1:] != sv[:, :-1]) | (sr[:, 1:] != sr[:, :-1])
    run_start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    ends = np.ones((p, m), bool)
    ends[:, :-1] = new[:, 1:]
    run_end = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, m), 1), axis=1), 1)
    count = run_end - run_start + 1
    best = np.where(new & sr, count, 0).max(axis=1)
    # the order position deciding ties: the occurrence reaching the top count (8-bit), or
    # the first occurrence
    reach = run_start + (best[:, None] - 1 if byte_rule else 0)
    tie = np.take_along_axis(order, np.clip(reach, 0, m - 1), axis=1)
    score = np.where(new & sr & (count == best[:, None]), m - tie, -1)
    pick = score.argmax(axis=1)
    return sv[np.arange(p), pick], best > 0


#: Footprint values a mode pass holds at once (it works in strips of output rows).
_MODE_CELLS = 1 << 22


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
        mode, has = _mode_of(flat, flat_real, src.dtype == np.uint8)
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
    values, ok = kernel(src.astype(np.float64), valid, plan)
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
