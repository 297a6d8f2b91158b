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

from ..errors import LimitExceededError, ResamplingError
from ..types import Window
from .assemble import WindowTarget
from .masks import mask_source, read_mask
from .reader import Budgets, LevelReader
from .resample import resample
from .resample_plan import RESAMPLINGS, AxisPlan, ResamplePlan

__all__ = [
    "BLENDING",
    "CHUNK_CELLS",
    "WHOLE_CELLS",
    "check_resampling",
    "kernel_cells",
    "read_resampled",
    "read_resampled_mask",
    "refuse_blending",
]

#: A source window of more cells (pixels x bands) than this is read and resampled in chunks of
#: output pixels whose source windows hold about ``CHUNK_CELLS`` cells each, so a kernel's
#: memory is bounded whatever the window (GDAL cuts its resampled reads in chunks too).
WHOLE_CELLS = 1 << 24
CHUNK_CELLS = 1 << 22

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
    refuse_blending(value, paletted)
    return value


def refuse_blending(name: str, paletted: bool, instead: str = "nearest or mode") -> None:
    """``ResamplingError`` for a blending resampling on a paletted image (its values are
    palette indices; mixing them makes other entries' colours)."""
    if paletted and name in BLENDING:
        raise ResamplingError(
            f"resampling {name!r} would blend palette indices of a paletted image; use {instead}"
        )


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


def kernel_cells(window: Window, bands: int) -> int:
    """Source cells (pixels x bands) a resampled read of ``window`` holds at once."""
    return min(window.width * window.height * max(1, bands), max(WHOLE_CELLS, CHUNK_CELLS))


def _sub_axis(axis: AxisPlan, sl: slice) -> AxisPlan:
    return AxisPlan(axis.index[sl], axis.weight[sl], axis.count[sl])


def _chunks(plan: ResamplePlan, bands: int) -> list[tuple[slice, slice, ResamplePlan]]:
    """The plan as one plan per chunk of output pixels (rows slice, columns slice, plan), each
    chunk's source window holding about ``CHUNK_CELLS`` cells; the plan itself when small."""
    win = plan.window
    m, n = plan.shape
    if win.width * win.height * max(1, bands) <= WHOLE_CELLS or m * n == 0:
        return [(slice(0, m), slice(0, n), plan)]
    side = max(1, int((CHUNK_CELLS / max(1, bands)) ** 0.5))
    rstep = max(1, int(side * m / max(1, win.height)))
    cstep = max(1, int(side * n / max(1, win.width)))
    out = []
    for r0 in range(0, m, rstep):
        rows = _sub_axis(plan.rows, slice(r0, r0 + rstep))
        for c0 in range(0, n, cstep):
            cols = _sub_axis(plan.cols, slice(c0, c0 + cstep))
            sub = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
            part = ResamplePlan(plan.kind, sub, rows, cols)
            out.append((slice(r0, r0 + rstep), slice(c0, c0 + cstep), part))
    return out


async def _check_budgets(
    lr: LevelReader, win: Window, ifd: Any, samples: Sequence[int], budgets: Budgets
) -> None:
    """The budgets of a chunked read, checked once for its whole source window before any
    block is fetched (each chunk then reads without them)."""
    if budgets.max_tiles is None and budgets.max_bytes is None:
        return
    refs = lr.reader.refs(ifd, WindowTarget(win), samples)
    if budgets.max_tiles is not None and len(refs) > budgets.max_tiles:
        raise LimitExceededError("tiles", len(refs), budgets.max_tiles)
    if budgets.max_bytes is not None:
        spans = await lr.reader.locate(ifd, [r.index for r in refs])
        total = sum(s.range.length for s in spans if s is not None)
        if total > budgets.max_bytes:
            raise LimitExceededError("bytes to fetch", total, budgets.max_bytes)


async def read_resampled(
    lr: LevelReader,
    win: Window,
    plan: ResamplePlan | None,
    samples: Sequence[int],
    fill: Any,
    budgets: Budgets,
) -> npt.NDArray[Any]:
    """``samples`` of ``win`` of ``lr``'s level resampled by ``plan`` (None: ``win`` as it is);
    a big source window chunk by chunk (memory bounded, cancellable between chunks)."""
    if plan is None:
        return await lr.read(WindowTarget(win), samples, fill, budgets)
    chunks = _chunks(plan, len(samples))
    if len(chunks) == 1:
        return await _read_chunk(lr, win, plan, samples, fill, budgets)
    await _check_budgets(lr, win, lr.ifd, samples, budgets)
    out = np.empty((len(samples), *plan.shape), lr.ifd.dtype)
    for rows, cols, part in chunks:
        out[:, rows, cols] = await _read_chunk(lr, part.window, part, samples, fill, Budgets())
    return out


async def _read_chunk(
    lr: LevelReader,
    win: Window,
    plan: ResamplePlan,
    samples: Sequence[int],
    fill: Any,
    budgets: Budgets,
) -> npt.NDArray[Any]:
    target = WindowTarget(win)
    data = await lr.read(target, samples, fill, budgets)
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
    its kernel (for cubic: enough of them in a row, as GDAL requires), else 0; chunked like
    ``read_resampled``."""
    if plan is None:
        return await read_mask(lr, WindowTarget(win), budgets)
    chunks = _chunks(plan, 1)
    loop = asyncio.get_running_loop()
    if len(chunks) > 1:
        ifd = lr.mask_ifd if lr.mask_ifd is not None else lr.ifd
        bands = [0] if lr.mask_ifd is not None else list(range(lr.base.samples))
        await _check_budgets(lr, win, ifd, bands, budgets)
        budgets = Budgets()
    out = np.empty(plan.shape, np.uint8)
    for rows, cols, part in chunks:
        mask = await read_mask(lr, WindowTarget(part.window), budgets)
        out[rows, cols] = await loop.run_in_executor(lr.reader.executor, _mask_kernel, mask, part)
    return out
