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
import hashlib
from collections.abc import Awaitable, Callable

from .. import __version__
from ..errors import ObjectChangedError
from ..image import Image
from ..opening import open_image
from ..outputs import RENDERED
from ..region import (
    Encoded,
    RegionPlan,
    RegionRequest,
    estimate_bytes,
    plan_point,
    plan_region,
    read_point,
    read_region,
)
from .budget import BudgetExhausted
from .messages import CoreRequest, CoreResponse, json_response
from .params import Rendering, canonical, parse_info, parse_point, parse_preview, parse_region
from .problems import Problem, bad_request
from .state import ServiceState

__all__ = ["info", "point", "preview", "region"]

Make = Callable[[], Awaitable[CoreResponse]]


async def _with_image(
    state: ServiceState, url: str, work: Callable[[Image], Awaitable[CoreResponse]]
) -> CoreResponse:
    """Open the source, run ``work``; an object replaced between open and read is read again
    once, from its new version."""
    target = await state.resolve(url)
    for attempt in range(2):
        try:
            img = await open_image(
                target, context=state.context, multirange=state.config.multirange
            )
            try:
                return await work(img)
            finally:
                state.metrics.add_reads(img.stats)
                await img.close()
        except ObjectChangedError:
            if attempt:
                raise
    raise AssertionError("unreachable")


# -- caching ----------------------------------------------------------------------------------


def _etag(state: ServiceState, img: Image, req: CoreRequest) -> str | None:
    """A strong validator for this response: the source's ETag, the parameters, the version."""
    if not img.meta.etag:
        return None
    h = hashlib.blake2b(digest_size=16)
    cfg = state.config
    for part in (
        __version__,
        req.path,
        img.url,
        img.meta.etag,
        str(img.meta.size),
        canonical(req.query),
        str(cfg.jpeg_quality),
        str(cfg.webp_quality),
        str(cfg.png_level),
    ):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return f'"{h.hexdigest()}"'


def cache_headers(state: ServiceState, etag: str | None) -> dict[str, str]:
    """``public`` without API keys; with keys ``private`` and ``Vary`` on the key headers, so
    that a shared cache in front of the service never hands a keyed answer to a keyless client."""
    if state.api_keys.required:
        headers = {
            "Cache-Control": f"private, max-age={state.config.cache_max_age}",
            "Vary": "X-API-Key, Authorization",
        }
    else:
        headers = {"Cache-Control": f"public, max-age={state.config.cache_max_age}"}
    if etag:
        headers["ETag"] = etag
    return headers


def _not_modified(req: CoreRequest, etag: str | None) -> bool:
    header = req.headers.get("if-none-match")
    if not header or not etag:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag in ("*", etag):
            return True
    return False


async def _cached_or(state: ServiceState, req: CoreRequest, img: Image, make: Make) -> CoreResponse:
    etag = _etag(state, img, req)
    headers = cache_headers(state, etag)
    if _not_modified(req, etag):
        return CoreResponse(304, headers)
    resp = await make()
    resp.headers.update(headers)
    return resp


# -- limits decided from the header -------------------------------------------------------------


def _check_pixels(state: ServiceState, plan: RegionPlan) -> None:
    limit = state.config.max_output_pixels
    if plan.width * plan.height > limit:
        raise Problem(
            413,
            "too_many_pixels",
            f"output of {plan.width}x{plan.height} pixels exceeds the limit of {limit}; ask "
            "for a smaller window, a lower resolution level or a smaller width/height",
            limit=limit,
            value=plan.width * plan.height,
        )


def _check_blocks(state: ServiceState, img: Image) -> None:
    """Refuse a file whose blocks decode to more than the limit each: a small file can declare
    one huge deflated tile, and a 1 x 1 window of it would cost the whole tile in memory."""
    limit = state.config.max_block_bytes
    largest = img.largest_block_bytes
    if largest > limit:
        raise Problem(
            413,
            "limit_exceeded",
            f"the source's blocks decode to {largest} bytes each, more than this service's limit "
            f"of {limit}",
            limit=limit,
            value=largest,
        )


# -- endpoints ----------------------------------------------------------------------------------


async def info(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_info(req.query)

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            doc = img.info()
            doc["overviews"] = len(img.levels) - 1
            return json_response(doc)

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)


async def region(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_region(req.query)
    return await _regional(req, state, q.url, q.request, q.rendering)


async def preview(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_preview(req.query, state.config.max_preview_size)
    return await _regional(req, state, q.url, q.request, q.rendering)


async def _regional(
    req: CoreRequest, state: ServiceState, url: str, request: RegionRequest, rendering: Rendering
) -> CoreResponse:
    async def work(img: Image) -> CoreResponse:
        plan = plan_region(img, request, rendered=rendering.format in RENDERED)
        return await _cached_or(state, req, img, lambda: _answer(state, img, plan, rendering))

    return await _with_image(state, url, work)


async def _answer(
    state: ServiceState, img: Image, plan: RegionPlan, rendering: Rendering
) -> CoreResponse:
    cfg = state.config
    _check_pixels(state, plan)
    _check_blocks(state, img)
    need = estimate_bytes(img, plan, rendering.format)
    if need.total > cfg.max_request_bytes:
        raise Problem(
            413,
            "request_too_large",
            f"this request would hold {need.describe()}, more than the limit of "
            f"{cfg.max_request_bytes}; ask for fewer pixels or bands, or a lower level",
            limit=cfg.max_request_bytes,
            value=need.total,
        )
    try:
        async with state.memory.reserve(need.total, cfg.request_timeout / 4):
            encoded = await _read_and_render(state, img, plan, rendering)
    except BudgetExhausted as exc:
        raise state.shed("the service's memory budget is taken by requests in progress") from exc
    limit = cfg.max_response_bytes
    if limit and len(encoded.body) > limit:
        raise Problem(
            413,
            "response_too_large",
            f"the encoded response of {len(encoded.body)} bytes exceeds the limit of {limit}; "
            "ask for fewer pixels or a more compact format",
            limit=limit,
            value=len(encoded.body),
        )
    headers = {"Content-Type": encoded.media_type}
    if encoded.rescale is not None:
        lo, hi = encoded.rescale
        headers["X-Cloudroi-Rescale"] = f"{lo:.17g},{hi:.17g}"
    return CoreResponse(200, headers, encoded.body)


async def _read_and_render(
    state: ServiceState, img: Image, plan: RegionPlan, rendering: Rendering
) -> Encoded:
    cfg = state.config
    fmt = rendering.format
    executor = state.context.executor
    data = await read_region(
        img,
        plan,
        with_mask=fmt in RENDERED,
        max_tiles=cfg.max_tiles,
        max_bytes=cfg.max_fetch_bytes,
        executor=executor,
    )
    quality = rendering.quality or (cfg.jpeg_quality if fmt == "jpeg" else cfg.webp_quality)

    def render() -> Encoded:
        return data.render(fmt, rescale=rendering.rescale, quality=quality, png_level=cfg.png_level)

    try:
        return await asyncio.get_running_loop().run_in_executor(executor, render)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc


async def point(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_point(req.query)
    cfg = state.config

    async def work(img: Image) -> CoreResponse:
        plan = plan_point(img, q.xy, q.colrow)

        async def make() -> CoreResponse:
            _check_blocks(state, img)
            data = await read_point(
                img, plan, max_tiles=cfg.max_tiles, max_bytes=cfg.max_fetch_bytes
            )
            return json_response(data.as_dict())

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)
