"""``/statistics`` and TiTiler's ``/cog/statistics``: each band's statistics as rio-tiler's
``Reader.statistics()`` computes them (``Image.statistics``), in TiTiler's answer
(``{"b1": {"min": ..., "histogram": [[counts], [edges]], ...}, ...}``, NaN as null).

TiTiler's parameter names: ``bidx`` (repeated or a comma list; ``bands`` is an alias),
``max_size`` (default 1024), ``nodata``, ``categorical``, ``c`` (categories), ``p``
(percentiles), ``histogram_bins`` (a count or comma-separated bin edges), ``histogram_range``,
``resampling`` (nearest only: other kernels would change the pixels measured); cloudroi adds
``level`` (a whole overview at full size, instead of ``max_size``); ``expression`` measures the
outputs of band math (keyed b1, b2... in output order, described by their expressions). The
service's limits (output pixels, block size, memory held) are checked on the plan before
anything is fetched.
"""

from __future__ import annotations

from ..image import Image
from ..region.bandmath import expression_need, expression_plan
from ..region.summary import estimate_statistics, measure, plan_statistics
from .answers import cached_or, check_blocks, check_pixels, holding, with_image
from .messages import CoreRequest, CoreResponse, json_response
from .state import ServiceState
from .statsparams import StatisticsQuery, parse_statistics

__all__ = ["statistics"]


def _entries(img: Image, pixels: int, q: StatisticsQuery) -> int:
    """The most histogram entries of one band: bins, categories, or distinct values."""
    opts = q.options
    if opts.categorical and not opts.categories:
        kinds = 1 << (8 * img.dtype.itemsize) if img.dtype.itemsize <= 2 else pixels
        return min(kinds, pixels)
    if opts.categories:
        return len(opts.categories)
    return opts.bins if isinstance(opts.bins, int) else len(opts.bins)


async def statistics(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """Each band's statistics, in TiTiler's JSON answer."""
    cfg = state.config
    q = parse_statistics(req.query, cfg.max_preview_size)

    async def work(img: Image) -> CoreResponse:
        plan = plan_statistics(img, q.bands, q.max_size, q.level)
        if q.expression is not None:
            plan = expression_plan(img, plan, q.expression)

        async def make() -> CoreResponse:
            check_pixels(state, plan.width, plan.height)
            check_blocks(state, img)
            need = estimate_statistics(img, plan, _entries(img, plan.width * plan.height, q))
            if q.expression is not None:  # the outputs' float copies
                need = expression_need(img, plan, need)
            stats = await holding(
                state,
                need,
                lambda: measure(
                    img,
                    plan,
                    q.options,
                    nodata=q.nodata,
                    max_tiles=cfg.max_tiles,
                    max_bytes=cfg.max_fetch_bytes,
                ),
            )
            return json_response({name: s.as_dict() for name, s in stats.items()})

        return await cached_or(state, req, img, make, key=q.canonical)

    return await with_image(state, q.url, work)
