"""Reading a planned region or point: the pixels, their mask where asked for, georeferencing.

``read_region`` is what every front end runs once its limits passed on the plan: the data, then
the mask the way rasterio's ``dataset_mask()`` has it. When the mask is "any band differs from
nodata" and every band was read, it is derived from the data already in hand instead of reading
and decoding the same blocks again.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..read.masks import valid_mask
from ..read.resample_plan import plan_read
from ..read.resampled import kernel_cells
from .data import ImageData, PointData, RequestBytes, estimate_region
from .describe import source_extra
from .plan import PointPlan, RegionPlan, is_rendered, output_transform

if TYPE_CHECKING:
    from ..image import Image

__all__ = ["estimate_bytes", "kernel_bytes", "needs_mask", "read_point", "read_region"]


def needs_mask(img: Image, boundless: bool) -> bool:
    """Whether some pixel of a read may be invalid (else its mask is all 255)."""
    return img.has_mask or img.alpha_band is not None or img.nodata is not None or boundless


def _mask_from_data(img: Image, bands: tuple[int, ...] | None, boundless: bool) -> bool:
    """Whether the image's mask is its nodata test over all bands and ``bands`` are all of them
    (outside pixels of a boundless read are left to ``read_mask``)."""
    if img.has_mask or img.alpha_band is not None or img.nodata is None or boundless:
        return False
    return bands is None or sorted(set(bands)) == list(range(1, img.count + 1))


def kernel_bytes(img: Image, plan: RegionPlan) -> int:
    """What the kernel of a resampled read (bilinear, cubic, average, mode) holds at once: its
    source window, chunked past ``WHOLE_CELLS``, as the type read and the kernel's float64."""
    if plan.out_shape is None or plan.resampling == "nearest":
        return 0
    widths = [ifd.block_width for ifd in img.structure.levels]
    _, src, rplan = plan_read(
        img.levels, plan.level, plan.window, plan.out_shape, plan.resampling, widths
    )
    if rplan is None:
        return 0
    return kernel_cells(src, plan.band_count(img.count)) * (img.dtype.itemsize + 16)


def estimate_bytes(img: Image, plan: RegionPlan, fmt: str, mask_band: bool = False) -> RequestBytes:
    """What the answer of ``plan`` encoded as ``fmt`` would hold, from the header alone
    (``mask_band``: an npy answer carrying the mask as one more band), a resampling kernel's
    source window included."""
    need = _estimate(img, plan, fmt, mask_band)
    extra = kernel_bytes(img, plan)
    return replace(need, data=need.data + extra) if extra else need


def _estimate(img: Image, plan: RegionPlan, fmt: str, mask_band: bool) -> RequestBytes:
    if plan.expression is not None:
        from .bandmath import estimate_expression

        return estimate_expression(
            img, plan.expression, plan.height, plan.width, is_rendered(fmt), mask_band
        )
    itemsize = img.dtype.itemsize
    n = plan.band_count(img.count)
    pixels = plan.height * plan.width
    rendered = is_rendered(fmt)
    mask = 2 * pixels * itemsize if mask_band and not rendered else 0  # the band, twice
    if (rendered or mask_band) and needs_mask(img, plan.boundless):
        if _mask_from_data(img, plan.bands, plan.boundless):
            mask += n * pixels + 2 * pixels  # the comparison with nodata, then the mask
        elif img.has_mask or img.alpha_band is not None:
            mask += pixels * itemsize + 2 * pixels
        elif img.nodata is not None:
            # every band is read to test it against nodata
            mask += img.count * pixels * (itemsize + 1) + 2 * pixels
        else:
            mask += pixels
    return estimate_region(
        height=plan.height,
        width=plan.width,
        bands=n,
        itemsize=itemsize,
        rendered=rendered,
        mask_bytes=mask,
    )


async def read_region(
    img: Image,
    plan: RegionPlan,
    *,
    with_mask: bool = True,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
    executor: Executor | None = None,
) -> ImageData:
    """The pixels of ``plan`` and, with ``with_mask``, their mask (None when all are valid)."""
    kwargs: dict[str, Any] = {
        "out_shape": plan.out_shape,
        "boundless": plan.boundless,
        "max_tiles": max_tiles,
        "max_bytes": max_bytes,
        "resampling": plan.resampling,
    }
    if plan.expression is not None:
        from .bandmath import read_expression

        budgets = {"max_tiles": max_tiles, "max_bytes": max_bytes}
        return await read_expression(
            img, plan, with_mask=with_mask, budgets=budgets, executor=executor
        )
    data = await img.read(plan.window, plan.level, plan.bands, **kwargs)
    mask = None
    if with_mask and needs_mask(img, plan.boundless):
        if _mask_from_data(img, plan.bands, plan.boundless):
            nodata = img.nodata
            assert nodata is not None
            loop = asyncio.get_running_loop()
            mask = await loop.run_in_executor(executor, valid_mask, data, nodata)
        else:
            mask = await img.read_mask(plan.window, plan.level, **kwargs)
    bands = plan.bands if plan.bands is not None else tuple(range(1, img.count + 1))
    return ImageData(
        data=data,
        mask=mask,
        transform=output_transform(img, plan),
        crs=img.crs,
        nodata=img.nodata,
        bands=bands,
        level=plan.level,
        window=plan.window,
        extra=source_extra(img, bands),
        palette=img.colormap,
    )


async def read_point(
    img: Image, plan: PointPlan, *, max_tiles: int | None = None, max_bytes: int | None = None
) -> PointData:
    """The values of every band at the plan's pixel (level 0) and whether it is valid."""
    window = (plan.col, plan.row, 1, 1)
    data = await img.read(window, 0, max_tiles=max_tiles, max_bytes=max_bytes)
    valid = True
    if needs_mask(img, False):
        mask = await img.read_mask(window, 0, max_tiles=max_tiles, max_bytes=max_bytes)
        valid = bool(mask[0, 0])
    x = y = None
    gt = img.transform
    if gt is not None:
        col, row = plan.col + 0.5, plan.row + 0.5
        x = gt[0] + col * gt[1] + row * gt[2]
        y = gt[3] + col * gt[4] + row * gt[5]
    values = [v.item() if isinstance(v, np.generic) else v for v in data[:, 0, 0].tolist()]
    return PointData(plan.col, plan.row, values, valid, x, y, str(img.dtype), img.nodata, img.crs)
