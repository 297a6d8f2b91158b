"""The endpoints that read storage: /info, /region, /preview and /point, over the region layer.

Each parses its query (``params``), opens the source through the allowlist, plans the region
(``cloudroi.region.plan_region``), checks the service's limits on the plan before anything is
fetched (output pixels, decoded block size, bytes the answer will hold, the shared memory
budget), reads it (``read_region``) and renders it in the thread pool. Answers carry strong
ETags derived from the source's validator and the query; ``If-None-Match`` gets a 304 after one
header request.
"""

from __future__ import annotations

import asyncio
import dataclasses

from ..image import Image
from ..outputs import RENDERED
from ..region import (
    Encoded,
    RegionPlan,
    RegionRequest,
    estimate_bytes,
    georef,
    plan_point,
    plan_region,
    read_point,
    read_region,
)
from .answers import (
    cached_or,
    check_blocks,
    check_pixels,
    encoded_response,
    holding,
    with_image,
)
from .messages import CoreRequest, CoreResponse, json_response
from .params import Rendering, parse_info, parse_point, parse_preview, parse_region
from .problems import bad_request
from .state import ServiceState
from .stretch import Stretch, default_stretch, report_stretch

__all__ = ["info", "point", "preview", "region", "regional_answer"]

# -- endpoints ----------------------------------------------------------------------------------


async def info(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_info(req.query)

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            doc = img.info()
            doc["overviews"] = len(img.levels) - 1
            return json_response(doc)

        return await cached_or(state, req, img, make)

    return await with_image(state, q.url, work)


async def region(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_region(req.query)
    if q.coord_crs is None or q.request.bbox is None:
        return await _regional(req, state, q.url, q.request, q.rendering)
    box, coord = q.request.bbox, q.coord_crs

    async def work(img: Image) -> CoreResponse:
        target = georef.image_crs(img)
        carried = await asyncio.to_thread(georef.carry_bounds, box, coord, target)
        request = dataclasses.replace(q.request, bbox=carried)
        return await regional_answer(req, state, img, request, q.rendering)

    return await with_image(state, q.url, work)


async def preview(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_preview(req.query, state.config.max_preview_size)
    return await _regional(req, state, q.url, q.request, q.rendering)


async def _regional(
    req: CoreRequest, state: ServiceState, url: str, request: RegionRequest, rendering: Rendering
) -> CoreResponse:
    async def work(img: Image) -> CoreResponse:
        return await regional_answer(req, state, img, request, rendering)

    return await with_image(state, url, work)


async def regional_answer(
    req: CoreRequest, state: ServiceState, img: Image, request: RegionRequest, rendering: Rendering
) -> CoreResponse:
    """The answer to ``request`` on the image's own grid, planned, checked, read, rendered."""
    plan = plan_region(img, request, rendered=rendering.format in RENDERED)
    return await cached_or(state, req, img, lambda: _answer(state, img, plan, rendering))


async def _answer(
    state: ServiceState, img: Image, plan: RegionPlan, rendering: Rendering
) -> CoreResponse:
    check_pixels(state, plan.width, plan.height, rendering.format)
    check_blocks(state, img)
    masked = rendering.mask_band or rendering.format == "tif"
    need = estimate_bytes(img, plan, rendering.format, masked)
    stretch = None
    if rendering.format in RENDERED:
        stretch = await default_stretch(
            state,
            img,
            plan.bands,
            rescale=rendering.rescale,
            colormap=rendering.colormap,
            expression=plan.expression,
        )
    encoded = await holding(
        state, need, lambda: _read_and_render(state, img, plan, rendering, stretch)
    )
    resp = encoded_response(state.config.max_response_bytes, encoded)
    return report_stretch(resp, encoded, stretch)


async def _read_and_render(
    state: ServiceState,
    img: Image,
    plan: RegionPlan,
    rendering: Rendering,
    stretch: Stretch | None = None,
) -> Encoded:
    cfg = state.config
    fmt = rendering.format
    executor = state.context.executor
    data = await read_region(
        img,
        plan,
        with_mask=fmt in RENDERED or fmt == "tif" or rendering.mask_band,
        max_tiles=cfg.max_tiles,
        max_bytes=cfg.max_fetch_bytes,
        executor=executor,
    )
    quality = rendering.quality or (cfg.jpeg_quality if fmt == "jpeg" else cfg.webp_quality)

    def render() -> Encoded:
        return data.render(
            fmt,
            rescale=rendering.rescale or stretch,
            quality=quality,
            png_level=cfg.png_level,
            alpha=rendering.alpha,
            mask_band=rendering.mask_band,
            colormap=rendering.colormap,
        )

    try:
        return await asyncio.get_running_loop().run_in_executor(executor, render)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


async def point(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_point(req.query)
    cfg = state.config

    async def work(img: Image) -> CoreResponse:
        budgets = {"max_tiles": cfg.max_tiles, "max_bytes": cfg.max_fetch_bytes}
        plan = None if q.coord_crs is not None else plan_point(img, q.xy, q.colrow)

        async def make() -> CoreResponse:
            check_blocks(state, img)
            if plan is not None:
                data = await read_point(img, plan, **budgets)
            else:
                assert q.xy is not None
                data = await georef.point_at(img, *q.xy, q.coord_crs, **budgets)
            return json_response(data.as_dict())

        return await cached_or(state, req, img, make)

    return await with_image(state, q.url, work)
