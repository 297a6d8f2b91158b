"""Dataset statistics: which pixels they are computed on, read, and measured off the event loop.

The pixels are those rio-tiler's ``Reader.statistics()`` measures (its preview): the whole
image (or ``level``) read at the output size that fits ``max_size`` on its longest side, the
aspect kept with the smaller side rounded up, resampled by nearest neighbour from the overview
GDAL picks. A pixel is invalid where it equals the nodata value (the one given, else the
image's; tested band by band), else where the alpha band is not opaque, else where the internal
mask is 0; NaN and infinities never count (``cloudroi.region.stats``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import BandError, LevelError
from ..types import Window
from .data import RequestBytes
from .describe import parse_gdal_metadata
from .plan import RegionPlan, fit_max_size
from .stats import BandStatistics, StatisticsError, StatisticsOptions, band_statistics

if TYPE_CHECKING:
    from ..image import Image

__all__ = [
    "estimate_statistics",
    "measure",
    "plan_statistics",
]

#: Bytes per output pixel the measurement holds besides the data: float64 copies of a band,
#: its valid values, their sorted copy, the distinct values and their counts.
WORK_BYTES_PER_PIXEL = 48


def _bands(img: Image, bands: int | Sequence[int] | None) -> tuple[int, ...]:
    if bands is None:
        return tuple(b for b in range(1, img.count + 1) if b != img.alpha_band) or (1,)
    picked = (bands,) if isinstance(bands, int) else tuple(bands)
    if not picked or any(not isinstance(b, int) or not 1 <= b <= img.count for b in picked):
        raise BandError(f"bands {list(picked)} are not all in 1..{img.count}")
    return tuple(dict.fromkeys(picked))  # the answer has one entry per band: measure it once


def plan_statistics(
    img: Image,
    bands: int | Sequence[int] | None = None,
    max_size: int | None = 1024,
    level: int | None = None,
) -> RegionPlan:
    """The read statistics are computed on: the whole of ``level`` (default 0, which lets the
    resampled read pick GDAL's overview), fit into ``max_size`` (None: at full size)."""
    lvl = 0 if level is None else level
    if isinstance(lvl, bool) or not isinstance(lvl, int) or not 0 <= lvl < len(img.levels):
        raise LevelError(f"level must be 0..{len(img.levels) - 1}, got {level!r}")
    width, height = img.levels[lvl]
    shape = None
    if max_size is not None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise StatisticsError(f"max_size must be a positive integer, got {max_size!r}")
        fitted = fit_max_size(height, width, max_size)
        shape = None if fitted == (height, width) else fitted
    return RegionPlan(lvl, Window(0, 0, width, height), shape, False, _bands(img, bands))


def estimate_statistics(img: Image, plan: RegionPlan, bins: int = 10) -> RequestBytes:
    """What measuring ``plan`` holds at its peak: the bands read, the mask's inputs, the
    working copies of one band, the JSON answer."""
    pixels = plan.height * plan.width
    n = plan.band_count(img.count)
    return RequestBytes(
        data=n * pixels * img.dtype.itemsize,
        mask=pixels * (img.dtype.itemsize + 2),
        rendering=pixels * WORK_BYTES_PER_PIXEL,
        body=2 * n * (4096 + 64 * bins),
    )


def _opaque(dtype: np.dtype[Any]) -> float | int:
    return np.iinfo(dtype).max if dtype.kind in "iu" else float(np.finfo(dtype).max)


async def _shared_mask(
    img: Image, plan: RegionPlan, nodata: float | int | None, **budgets: Any
) -> npt.NDArray[np.bool_] | None:
    """The validity all bands share (alpha band, internal mask), None when there is none or
    when validity is the nodata test of each band."""
    if nodata is not None:
        return None
    kwargs = {"out_shape": plan.out_shape, **budgets}
    if img.alpha_band is not None:
        alpha = await img.read(plan.window, plan.level, [img.alpha_band], **kwargs)
        return np.asarray(alpha[0] == _opaque(alpha.dtype))
    if img.has_mask:
        mask = await img.read_mask(plan.window, plan.level, **kwargs)
        return np.asarray(mask > 0)
    return None


def _valid(
    band: npt.NDArray[Any], shared: npt.NDArray[np.bool_] | None, nodata: float | int | None
) -> npt.NDArray[np.bool_] | None:
    if nodata is None:
        return shared
    if isinstance(nodata, float) and math.isnan(nodata):
        return np.asarray(~np.isnan(band))
    return np.asarray(band != nodata)


async def measure(
    img: Image,
    plan: RegionPlan,
    opts: StatisticsOptions,
    *,
    nodata: float | int | None = None,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
) -> dict[str, BandStatistics]:
    """Read ``plan`` (and what its validity needs) and measure each band in the thread pool:
    {"b1": BandStatistics, ...}, keyed by band number (by output, for an expression)."""
    budgets: dict[str, Any] = {"max_tiles": max_tiles, "max_bytes": max_bytes}
    if plan.expression is not None:
        from .bandmath import measure_expression

        return await measure_expression(img, plan, opts, nodata=nodata, budgets=budgets)
    bands = plan.bands or tuple(range(1, img.count + 1))
    data = await img.read(plan.window, plan.level, bands, out_shape=plan.out_shape, **budgets)
    nodata = img.nodata if nodata is None else nodata
    shared = await _shared_mask(img, plan, nodata, **budgets)

    def work() -> dict[str, BandStatistics]:
        meta = parse_gdal_metadata(img.structure.gdal_metadata)
        out = {}
        for i, b in enumerate(bands):
            text = meta.role(b - 1, "description") or f"b{b}"
            out[f"b{b}"] = band_statistics(data[i], _valid(data[i], shared, nodata), opts, text)
        return out

    return await asyncio.get_running_loop().run_in_executor(img.context.executor, work)
