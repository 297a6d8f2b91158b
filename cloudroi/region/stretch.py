"""The default stretch of an 8-bit rendering: one value range per band, derived once per object
version from the dataset's statistics, so that every tile, region and preview of an image is
shown with the same contrast (a per-request min..max makes a patchwork of neighbouring tiles).

The range of a band is its 2nd..98th percentile as ``Image.statistics()`` (rio-tiler's
``Reader.statistics()``) computes it: on the image read to fit 1024 pixels on its longest side
from the overview GDAL picks, invalid pixels left out. uint8 data has no default stretch (it is
shown as it is). Results are kept in the Context's ``stretch_cache`` (a bounded LRU keyed by URL,
the object's version, the bands and the nodata value); requests that ask while one computes wait
for its result instead of computing it again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .data import RequestBytes
from .plan import RegionPlan
from .stats import StatisticsOptions
from .summary import estimate_statistics, measure, plan_statistics

if TYPE_CHECKING:
    from ..image import Image
    from .expression import Expression

__all__ = [
    "STRETCH_MAX_SIZE",
    "STRETCH_PERCENTILES",
    "Guard",
    "Stretch",
    "default_rescale",
    "colours_raw_values",
    "plan_stretch",
    "stretch_key",
]

Range = tuple[float, float]
#: One (low, high) per band, in the order of the bands asked for.
Stretch = tuple[Range, ...]
#: Longest side of the read the statistics are computed on.
STRETCH_MAX_SIZE = 1024
#: The percentiles mapped onto 0 and 255.
STRETCH_PERCENTILES = (2, 98)
_OPTIONS = StatisticsOptions(percentiles=STRETCH_PERCENTILES, bins=1, moments=False)

Compute = Callable[[], Awaitable["Stretch | None"]]
#: Wraps the computation (e.g. a service checking its limits and holding its memory budget for
#: the statistics read): called with the plan, what measuring it holds and the computation.
Guard = Callable[[RegionPlan, RequestBytes, Compute], Awaitable["Stretch | None"]]


@dataclass(frozen=True, slots=True)
class _Entry:
    stretch: Stretch | None


def colours_raw_values(
    img: Image, bands: Sequence[int] | None, colormap: object, expression: object = None
) -> bool:
    """Whether a rendering colours the values themselves, so no stretch applies: a discrete,
    interval or value-table colormap, or the palette of a paletted source shown as its band
    (True: the source's palette if it has one; never for an ``expression``'s outputs). A named
    colormap colours the stretched 0..255 rendering, like grey."""
    from ..colormaps import Colormap

    if isinstance(colormap, Colormap):
        return not colormap.scaled
    if expression is not None:
        return False
    one_band = (bands is None and img.count == 1) or (bands is not None and len(bands) == 1)
    return colormap is True and img.colormap is not None and one_band


def plan_stretch(
    img: Image, bands: Sequence[int] | None, expression: Expression | None = None
) -> tuple[RegionPlan, RequestBytes]:
    """The statistics read a default stretch of ``bands`` (or of ``expression``'s outputs)
    takes, and the bytes it holds."""
    if expression is None:
        plan = plan_statistics(img, bands, STRETCH_MAX_SIZE)
        return plan, estimate_statistics(img, plan, bins=1)
    from .bandmath import estimate_expression

    expression.check_bands(img.count)
    plan = replace(plan_statistics(img, expression.bands, STRETCH_MAX_SIZE), expression=expression)
    need = estimate_statistics(img, plan, bins=1)
    out = estimate_expression(img, expression, plan.height, plan.width, False)
    return plan, RequestBytes(need.data + out.data, need.mask, need.rendering, need.body)


def stretch_key(
    img: Image,
    bands: Sequence[int],
    nodata: float | int | None,
    expression: Expression | None = None,
) -> Hashable | None:
    """What a stretch depends on: the object and its version (None when it has no version, so
    that nothing is shared), the bands, the nodata value and the expression (its text)."""
    meta = img.meta
    if not meta.etag and not meta.last_modified:
        return None
    nd = "nan" if isinstance(nodata, float) and math.isnan(nodata) else nodata
    key = (img.url, meta.etag, meta.last_modified, meta.size, tuple(bands), nd)
    return key if expression is None else (*key, "expression", expression.text)


async def _compute(
    img: Image,
    plan: RegionPlan,
    nodata: float | int | None,
    max_tiles: int | None,
    max_bytes: int | None,
) -> Stretch | None:
    stats = await measure(
        img, plan, _OPTIONS, nodata=nodata, max_tiles=max_tiles, max_bytes=max_bytes
    )
    img.context.stretch_computed += 1
    ranges = []
    for s in stats.values():
        lo, hi = s.percentiles[0][1], s.percentiles[1][1]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None  # a band without a valid pixel: every request stretches itself
        ranges.append((float(lo), float(hi)))
    return tuple(ranges)


async def default_rescale(
    img: Image,
    bands: Sequence[int] | None = None,
    *,
    nodata: float | int | None = None,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
    guard: Guard | None = None,
    expression: Expression | None = None,
) -> Stretch | None:
    """The default stretch of ``bands`` (default: all but alpha) or of ``expression``'s
    outputs: each band's (2nd, 98th) percentile, computed once per object version and shared.
    None for uint8 data (shown as it is; an expression's outputs are floats) and when a band has
    no valid pixel (each rendering then stretches to its own valid range). ``nodata`` overrides
    the image's; ``max_tiles``/``max_bytes`` bound the statistics read; ``guard`` wraps the
    computation (limits, memory budget)."""
    if img.dtype == np.uint8 and expression is None:
        return None
    plan, need = plan_stretch(img, bands, expression)
    assert plan.bands is not None
    key = stretch_key(img, plan.bands, nodata, expression)

    async def compute() -> Stretch | None:
        return await _compute(img, plan, nodata, max_tiles, max_bytes)

    run: Compute = compute if guard is None else (lambda: guard(plan, need, compute))
    if key is None:
        return await run()
    return await _shared(img, key, run)


async def _shared(img: Image, key: Hashable, run: Compute) -> Stretch | None:
    """The cached stretch, the one being computed, or this caller computes it."""
    ctx = img.context
    while True:
        hit = ctx.stretch_cache.get(key)
        if hit is not None:
            return hit.stretch  # type: ignore[no-any-return]
        pending = ctx.stretch_inflight.get(key)
        if pending is None:
            break
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if not pending.cancelled():
                raise  # this caller was cancelled
            # the computing request went away: the next in line computes
    fut: asyncio.Future[Stretch | None] = asyncio.get_running_loop().create_future()
    fut.add_done_callback(_retrieve)
    ctx.stretch_inflight[key] = fut
    try:
        value = await run()
    except asyncio.CancelledError:
        fut.cancel()
        raise
    except BaseException as exc:
        fut.set_exception(exc)
        raise
    else:
        ctx.stretch_cache.put(key, _Entry(value))
        fut.set_result(value)
        return value
    finally:
        if ctx.stretch_inflight.get(key) is fut:
            del ctx.stretch_inflight[key]


def _retrieve(fut: asyncio.Future[Stretch | None]) -> None:
    """Mark a failure as seen: the computing request raises it already."""
    if not fut.cancelled():
        fut.exception()
