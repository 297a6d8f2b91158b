"""What every endpoint that reads storage does around its own work: open the source through the
allowlist (once more if it changed meanwhile), strong ETags and caching headers, 304s, the limits
decided from the header, and the shared memory budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .. import __version__
from ..errors import LimitExceededError, ObjectChangedError
from ..image import Image
from ..opening import open_image
from ..region import Encoded, RequestBytes
from .budget import BudgetExhausted
from .messages import CoreRequest, CoreResponse
from .params import canonical
from .problems import Problem
from .state import ServiceState

__all__ = [
    "cache_headers",
    "cached_or",
    "check_blocks",
    "check_pixels",
    "encoded_response",
    "holding",
    "with_image",
]

Make = Callable[[], Awaitable[CoreResponse]]
T = TypeVar("T")


async def with_image(
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


def _etag(state: ServiceState, img: Image, req: CoreRequest, key: str | None) -> str | None:
    """A strong validator for this response: the source's ETag, the parameters (``key``: the
    parameters understood, else the whole query), the version."""
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
        canonical(req.query) if key is None else key,
        str(cfg.jpeg_quality),
        str(cfg.webp_quality),
        str(cfg.png_level),
    ):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return f'"{h.hexdigest()}"'


def cache_headers(
    state: ServiceState, etag: str | None, max_age: int | None = None
) -> dict[str, str]:
    """``public`` without API keys; with keys ``private`` and ``Vary`` on the key headers, so
    that a shared cache in front of the service never hands a keyed answer to a keyless client."""
    age = state.config.cache_max_age if max_age is None else max_age
    if state.api_keys.required:
        headers = {
            "Cache-Control": f"private, max-age={age}",
            "Vary": "X-API-Key, Authorization",
        }
    else:
        headers = {"Cache-Control": f"public, max-age={age}"}
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


async def cached_or(
    state: ServiceState,
    req: CoreRequest,
    img: Image,
    make: Make,
    *,
    max_age: int | None = None,
    key: str | None = None,
) -> CoreResponse:
    """``make()``'s answer with caching headers, or a 304 when the client holds it already.
    ``key``: the canonical text of the parameters the answer depends on (default: the query)."""
    etag = _etag(state, img, req, key)
    headers = cache_headers(state, etag, max_age)
    if _not_modified(req, etag):
        return CoreResponse(304, headers)
    resp = await make()
    resp.headers.update(headers)
    return resp


# -- limits decided from the header -------------------------------------------------------------


def check_pixels(state: ServiceState, width: int, height: int, fmt: str | None = None) -> None:
    """413 for an output of more pixels than the service's limit, or wider or taller than
    its format (``fmt``) holds."""
    if fmt is not None:
        from ..outputs import check_side  # imagecodecs: loaded by then, not at import

        try:
            check_side(fmt, width, height)
        except LimitExceededError as exc:
            raise Problem(
                413, "too_many_pixels", f"{exc}; ask for a smaller width/height or another format",
                limit=exc.limit, value=exc.value,
            ) from exc  # fmt: skip
    limit = state.config.max_output_pixels
    if width * height > limit:
        raise Problem(
            413,
            "too_many_pixels",
            f"output of {width}x{height} pixels exceeds the limit of {limit}; ask "
            "for a smaller window, a lower resolution level or a smaller width/height",
            limit=limit,
            value=width * height,
        )


def check_blocks(state: ServiceState, img: Image) -> None:
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


async def holding(state: ServiceState, need: RequestBytes, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` holding ``need`` bytes of the memory budget: 413 when one request would hold
    more than the per-request limit, 503 when the budget stays taken past a quarter of the
    request timeout."""
    cfg = state.config
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
            return await work()
    except BudgetExhausted as exc:
        raise state.shed("the service's memory budget is taken by requests in progress") from exc


def encoded_response(limit: int, encoded: Encoded) -> CoreResponse:
    """A 200 with the encoded body (413 past ``limit`` bytes, 0: none)."""
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
