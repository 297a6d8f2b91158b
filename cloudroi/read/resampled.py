"""Resampled reads with bilinear, cubic, average or mode: the source window, its validity, the
kernel in the thread pool.

The planner (``resample_plan.plan_read``) says which level and window of it a read needs: the
output's footprint padded by the kernel's reach, and nothing more. Its blocks are read like any
window (only those blocks are fetched and decoded); the validity of its pixels comes the way
GDAL's band masks give it (the internal mask or the alpha band, shared by the bands, the alpha
band itself all valid; or each band's own nodata test; mode honours nodata only), and the kernel
runs off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ResamplingError
from ..types import Window
from .assemble import WindowTarget
from .masks import mask_source, read_mask
from .reader import Budgets, LevelReader
from .resample import resample
from .resample_plan import RESAMPLINGS, ResamplePlan

__all__ = ["BLENDING", "check_resampling", "read_resampled", "read_resampled_mask"]

#: Resamplings that mix values (meaningless on palette indices).
BLENDING = ("bilinear", "cubic", "average")

BoolArray = npt.NDArray[np.bool_]


def check_resampling(name: object, paletted: bool) -> str:
    """``name`` as a resampling this library does, refusing a blending one on a paletted image
    (GDAL falls back to nearest for bilinear and cubic there, and averages the colours for
    average; cloudroi says so instead)."""
    value = name.strip().lower() if isinstance(name, str) else None
    if value not in RESAMPLINGS:
        raise ResamplingError(
            f"resampling must be one of {', '.join(RESAMPLINGS)}, got {str(name)[:20]!r}"
        )
    if paletted and value in BLENDING:
        raise ResamplingError(
            f"resampling {value!r} would blend palette indices of a paletted image; "
            "use nearest or mode"
        )
    return value


def _inside(win: Window, size: tuple[int, int]) -> BoolArray | None:
    """Which pixels of ``win`` lie inside a level of ``size`` (None: all of them)."""
    if win.within(*size):
        return None
    rows = np.arange(win.row_off, win.row_end)
    cols = np.arange(win.col_off, win.col_end)
    inside = ((rows >= 0) & (rows < size[1]))[:, None] & ((cols >= 0) & (cols < size[0]))[None]
    return np.asarray(inside)


def _nodata_valid(band: npt.NDArray[Any], nodata: float | int) -> BoolArray:
    """GDAL's nodata band mask: the pixel differs from nodata (NaN-aware)."""
    if band.dtype.kind == "f" and np.isnan(nodata):
        return np.asarray(~np.isnan(band))
    if band.dtype.kind == "f":
        return np.asarray(band != band.dtype.type(nodata))
    return np.asarray(band != nodata)


def _kernel(
    data: npt.NDArray[Any],
    mask: npt.NDArray[np.uint8] | None,
    per_band: Sequence[bool],
    where: tuple[Window, tuple[int, int]],
    plan: ResamplePlan,
    nodata: float | int | None,
) -> npt.NDArray[Any]:
    """Build each band's validity (pixels outside the level of ``where`` = (window, size)
    are invalid) and resample (in a pool thread)."""
    inside = _inside(*where)
    shared = None if mask is None else mask > 0
    valid: list[BoolArray | None] = []
    base = inside if shared is None else shared if inside is None else shared & inside
    for i, own in enumerate(per_band):
        if own and nodata is not None:
            v = _nodata_valid(data[i], nodata)
            valid.append(v if inside is None else v & inside)
        elif own:
            valid.append(inside)
        else:
            valid.append(base)
    out, _ = resample(data, valid, plan, nodata)
    return out


async def read_resampled(
    lr: LevelReader,
    win: Window,
    plan: ResamplePlan | None,
    samples: Sequence[int],
    fill: Any,
    budgets: Budgets,
) -> npt.NDArray[Any]:
    """``samples`` of ``win`` of ``lr``'s level resampled by ``plan`` (None: ``win`` as it is)."""
    target = WindowTarget(win)
    data = await lr.read(target, samples, fill, budgets)
    if plan is None:
        return data
    base = lr.base
    source, band = mask_source(
        base.samples, base.extra_samples, base.dtype, lr.mask_ifd is not None, lr.nodata is not None
    )
    shared: npt.NDArray[np.uint8] | None = None
    per_band = [True] * len(samples)
    # GDAL's mode honours nodata only: it counts the pixels an internal mask or an alpha band
    # hides (measured against GDAL 3.10), so it gets no mask here either.
    if source in ("mask", "alpha") and plan.kind != "mode":
        shared = await read_mask(lr, target, budgets)
        # the alpha band itself is all valid to GDAL; the others share the mask
        per_band = [source == "alpha" and band is not None and s == band - 1 for s in samples]
    where = (win, (lr.ifd.width, lr.ifd.height))
    nodata = lr.nodata if source in ("nodata", "alpha_nodata") else None
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        lr.reader.executor, _kernel, data, shared, per_band, where, plan, nodata
    )


def _mask_kernel(mask: npt.NDArray[np.uint8], plan: ResamplePlan) -> npt.NDArray[np.uint8]:
    zeros = np.zeros((1, *mask.shape), np.uint8)
    _, ok = resample(zeros, [mask > 0], plan, None)
    if ok is None:
        return np.full(plan.shape, 255, np.uint8)
    return np.where(ok[0], 255, 0).astype(np.uint8)


async def read_resampled_mask(
    lr: LevelReader, win: Window, plan: ResamplePlan | None, budgets: Budgets
) -> npt.NDArray[np.uint8]:
    """The mask of a resampled read: 255 where an output pixel had a valid source pixel under
    its kernel (for cubic: enough of them in a row, as GDAL requires), else 0."""
    target = WindowTarget(win)
    mask = await read_mask(lr, target, budgets)
    if plan is None:
        return mask
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(lr.reader.executor, _mask_kernel, mask, plan)
