"""Band math on region results: an ``Expression`` applied to the bands a read fetched.

A read with an expression fetches only the bands it refers to (for band-interleaved files,
only their blocks). The output is valid where every referenced band is valid, as rio-tiler has
it: the shared validity (internal mask, alpha band, outside a boundless read, or where a warp
reaches nothing) and, when there is a nodata value, each referenced band's own test against it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .data import ImageData, RequestBytes, estimate_region
from .plan import RegionPlan, output_transform
from .stats import BandStatistics, StatisticsOptions, band_statistics

if TYPE_CHECKING:
    from ..image import Image
    from ..warp import SourceBlock, WarpPlan
    from .expression import Expression

__all__ = [
    "apply_expression",
    "estimate_expression",
    "estimate_warped_expression",
    "expression_need",
    "expression_plan",
    "expression_extra",
    "measure_expression",
    "read_expression",
    "read_warped_expression",
]


def _valid(
    data: npt.NDArray[Any], shared: npt.NDArray[np.uint8] | None, nodata: float | int | None
) -> npt.NDArray[np.bool_] | None:
    """Where every band of ``data`` is valid: ``shared`` (0 invalid) and each band's nodata
    test; None when nothing is invalid."""
    valid = None if shared is None else np.asarray(shared > 0)
    if nodata is None:
        return valid
    for band in data:
        if isinstance(nodata, float) and math.isnan(nodata):
            ok = np.asarray(~np.isnan(band)) if band.dtype.kind == "f" else None
        else:
            ok = np.asarray(band != nodata)
        if ok is not None:
            valid = ok if valid is None else np.logical_and(valid, ok, out=valid)
    return valid


def expression_extra(expression: Expression) -> dict[str, Any]:
    """``ImageData.extra`` of an expression's result: each output's text as its description."""
    meta = [{"description": o, "scale": 1.0, "offset": 0.0} for o in expression.outputs]
    return {"alpha_band": None, "band_meta": meta, "expression": expression.text}


def apply_expression(
    expression: Expression,
    data: ImageData,
    nodata: float | int | None,
    shared: npt.NDArray[np.uint8] | None,
    *,
    with_mask: bool = True,
) -> ImageData:
    """``data`` (the referenced bands, in ``expression.bands`` order) through ``expression``:
    float32 (float64 for float64 sources) outputs, valid where all referenced bands are
    (``shared`` and ``nodata`` as in ``_valid``). CPU work: run it in a thread."""
    valid = _valid(data.data, shared, nodata) if with_mask else None
    out = expression.evaluate(data.data)
    mask = None if valid is None else np.where(valid, 255, 0).astype(np.uint8)
    return ImageData(
        data=out,
        mask=mask,
        transform=data.transform,
        crs=data.crs,
        nodata=None,
        bands=data.bands,
        level=data.level,
        window=data.window,
        extra=expression_extra(expression),
        palette=None,
    )


async def read_expression(
    img: Image,
    plan: RegionPlan,
    *,
    with_mask: bool,
    budgets: dict[str, Any],
    executor: Executor | None,
) -> ImageData:
    """``plan`` read on the image's own grid and put through its expression: the referenced
    bands, their shared mask when the image has one (or the read is boundless), the outputs."""
    expression = plan.expression
    assert expression is not None
    kwargs = {
        "out_shape": plan.out_shape,
        "boundless": plan.boundless,
        "resampling": plan.resampling,
        **budgets,
    }
    data = await img.read(plan.window, plan.level, expression.bands, **kwargs)
    shared = None
    if with_mask and (img.has_mask or img.alpha_band is not None or plan.boundless):
        shared = await img.read_mask(plan.window, plan.level, **kwargs)
    read = ImageData(
        data=data,
        mask=None,
        transform=output_transform(img, plan),
        crs=img.crs,
        nodata=img.nodata,
        bands=expression.bands,
        level=plan.level,
        window=plan.window,
    )
    nodata = img.nodata
    return await asyncio.get_running_loop().run_in_executor(
        executor,
        lambda: apply_expression(expression, read, nodata, shared, with_mask=with_mask),
    )


def estimate_expression(
    img: Image,
    expression: Expression,
    height: int,
    width: int,
    rendered: bool,
    mask_band: bool = False,
) -> RequestBytes:
    """What an expression's answer holds at its peak: the referenced bands read, evaluation's
    strips, the validity (and an npy answer's mask band), then the float outputs as a region
    answer."""
    pixels = height * width
    out_size = expression.output_dtype(img.dtype).itemsize
    mask = pixels * (img.dtype.itemsize + 4)
    if mask_band and not rendered:
        mask += 2 * pixels * out_size
    out = estimate_region(
        height=height,
        width=width,
        bands=expression.count,
        itemsize=out_size,
        rendered=rendered,
        mask_bytes=mask,
    )
    read = len(expression.bands) * pixels * img.dtype.itemsize
    work = expression.working_bytes(width, height)
    return RequestBytes(out.data + read + work, out.mask, out.rendering, out.body)


async def measure_expression(
    img: Image,
    plan: RegionPlan,
    opts: StatisticsOptions,
    *,
    nodata: float | int | None = None,
    budgets: dict[str, Any],
) -> dict[str, BandStatistics]:
    """Statistics of each output of ``plan.expression`` over its valid pixels (those where
    every referenced band is valid): {"b1": ..., "b2": ...} in output order, each described
    by its expression."""
    expression = plan.expression
    assert expression is not None
    kwargs = {"out_shape": plan.out_shape, **budgets}
    data = await img.read(plan.window, plan.level, expression.bands, **kwargs)
    nodata = img.nodata if nodata is None else nodata
    shared = None
    if nodata is None and (img.has_mask or img.alpha_band is not None):
        shared = await img.read_mask(plan.window, plan.level, **kwargs)

    def work() -> dict[str, BandStatistics]:
        valid = _valid(data, shared, nodata)
        out = expression.evaluate(data)
        return {
            f"b{k + 1}": band_statistics(out[k], valid, opts, text)
            for k, text in enumerate(expression.outputs)
        }

    return await asyncio.get_running_loop().run_in_executor(img.context.executor, work)


async def read_warped_expression(
    img: Image,
    plan: WarpPlan,
    expression: Expression,
    executor: Executor | None,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
    src_nodata: float | None = None,
) -> ImageData:
    """The bands ``expression`` refers to warped (``georef.read_warped``'s plan and budgets)
    and put through it. Each band is warped on its own with the nodata value, as GDAL warps
    per-band nodata for rio-tiler: a pixel is valid where the warp reached a valid pixel of
    every referenced band."""
    from ..crs import CRS
    from ..types import Window
    from .georef import source_blocks

    expression.check_bands(img.count)
    bands = expression.bands
    nodata = img.nodata if src_nodata is None else src_nodata
    blocks = await source_blocks(img, plan, bands, max_tiles, max_bytes)
    dst = plan.dst

    def work() -> ImageData:
        data, valid = _warp_each(plan, blocks, nodata, len(bands), img.dtype)
        warped = ImageData(
            data=data,
            mask=None,
            transform=dst.transform,
            crs=CRS.from_user_input(dst.crs),
            nodata=nodata,
            bands=bands,
            level=plan.level,
            window=Window(0, 0, plan.src.width, plan.src.height),
        )
        return apply_expression(expression, warped, None, valid)

    return await asyncio.get_running_loop().run_in_executor(executor, work)


def _warp_each(
    plan: WarpPlan,
    blocks: Sequence[SourceBlock],
    nodata: float | int | None,
    count: int,
    dtype: np.dtype[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
    """The bands of ``blocks`` warped, each with its own nodata test: the bands and where all
    of them are valid (0/255). Nearest neighbour copies source values, so one warp without
    nodata and a test of each band after it is the same; other kernels must not blend a band's
    nodata values, so each band is warped on its own."""
    from ..warp import SourceBlock, execute

    shape = (plan.dst.height, plan.dst.width)
    if not blocks:  # nothing of the source under the grid: all invalid
        return np.zeros((count, *shape), dtype), np.zeros(shape, np.uint8)
    if nodata is None or plan.resampling == "nearest":
        result = execute(plan, blocks)
        shared = np.where(result.mask, 255, 0).astype(np.uint8)
        valid = _valid(result.data, shared, nodata)
        assert valid is not None
        return result.data, np.where(valid, 255, 0).astype(np.uint8)
    data = np.empty((count, *shape), dtype)
    every = np.ones(shape, np.bool_)
    for i in range(count):
        one = [SourceBlock(b.window, b.data[i : i + 1], b.valid) for b in blocks]
        result = execute(plan, one, src_nodata=float(nodata))
        data[i] = result.data[0]
        every &= result.mask
    return data, np.where(every, 255, 0).astype(np.uint8)


def estimate_warped_expression(
    img: Image, plan: WarpPlan, fmt: str, bands: int, expression: Expression
) -> RequestBytes:
    """``georef.estimate_warp`` of the warp of the referenced bands, then the expression's
    outputs (``bands`` more than its outputs: an npy answer's mask band)."""
    from ..outputs import RENDERED
    from .georef import estimate_warp

    warped = estimate_warp(img, plan, "npy", len(expression.bands))
    h, w = plan.dst.height, plan.dst.width
    out = estimate_expression(img, expression, h, w, fmt in RENDERED, bands > expression.count)
    return RequestBytes(warped.data + out.data, out.mask, out.rendering, out.body)


def expression_plan(img: Image, plan: RegionPlan, expression: Expression) -> RegionPlan:
    """``plan`` (a statistics read of the whole image) reading the bands ``expression`` names
    and measuring its outputs; ``BandError`` for a band the image lacks."""
    from dataclasses import replace

    expression.check_bands(img.count)
    return replace(plan, bands=expression.bands, expression=expression)


def expression_need(img: Image, plan: RegionPlan, need: RequestBytes) -> RequestBytes:
    """``need`` of a statistics read plus what evaluating ``plan.expression`` holds."""
    assert plan.expression is not None
    out = estimate_expression(img, plan.expression, plan.height, plan.width, False)
    return RequestBytes(need.data + out.data, need.mask, need.rendering, need.body)
