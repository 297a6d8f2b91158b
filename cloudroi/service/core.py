"""The region service's request core: one transport-independent request in, one response out.

``handle(CoreRequest, ServiceState) -> CoreResponse`` does everything between a transport and the
library: routing, parameter parsing, the allowlist, admission control and deadlines, limits decided
from the header before any tile is fetched, reading, encoding (in threads), caching headers and
problem details. The aiohttp app and the serverless handler only translate requests and responses.
Nothing from the client's request reaches storage but the source URL: headers are never forwarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt

from .. import __version__
from ..context import Context, ContextOptions
from ..errors import CloudROIError, ObjectChangedError
from ..image import Image, open_image
from ..outputs import CONTENT_TYPES, RENDERED, encode_async, render_bands
from ..read.masks import valid_mask
from ..types import Window
from . import geometry
from .budget import BudgetExhausted, MemoryBudget, RequestBytes, estimate_region
from .config import ServiceConfig
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .openapi import openapi_document
from .params import (
    Rendering,
    canonical,
    parse_info,
    parse_point,
    parse_preview,
    parse_region,
)
from .problems import PROBLEM_TYPE, Problem, bad_request, problem_for
from .security import ApiKeys, BadSourceError, SourcePolicy, guarded_session

__all__ = ["CoreRequest", "CoreResponse", "ServiceState", "handle"]

log = logging.getLogger("cloudroi.service")

JSON_TYPE = "application/json"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CoreRequest:
    """A request as any transport sees it. ``headers`` are keyed by lower-case name."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> CoreRequest:
        items = tuple(query.items()) if isinstance(query, Mapping) else tuple(query)
        return cls(
            method.upper(),
            path,
            items,
            {k.lower(): v for k, v in (headers or {}).items()},
        )


@dataclass(slots=True)
class CoreResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)


class ServiceState:
    """What every request shares: config, allowlist, one Context (guarded HTTP session, caches,
    decode pool), metrics and the admission counter. Create with ``await ServiceState.start``."""

    def __init__(
        self,
        config: ServiceConfig,
        policy: SourcePolicy,
        context: Context,
        metrics: Metrics,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.context = context
        self._session = session
        self.metrics = metrics
        self.api_keys = ApiKeys(config.api_keys)
        self.memory = MemoryBudget(config.memory_budget_bytes)
        self.active = 0
        self._openapi: bytes | None = None

    @classmethod
    async def start(
        cls, config: ServiceConfig, *, resolver: aiohttp.abc.AbstractResolver | None = None
    ) -> ServiceState:
        """``resolver`` replaces aiohttp's DNS resolver for upstream HTTP (tests, custom DNS)."""
        policy = SourcePolicy(config.effective_sources(), config.allowed_networks)
        session = guarded_session(
            policy,
            limit=config.max_upstream_connections,
            connect_timeout=config.upstream_connect_timeout,
            read_timeout=config.upstream_read_timeout,
            resolver=resolver,
        )
        options = ContextOptions(
            max_connections=config.max_upstream_connections,
            connect_timeout=config.upstream_connect_timeout,
            read_timeout=config.upstream_read_timeout,
            storage_options=config.storage_options(),
            trust_env=False,
        )
        # Redirects are followed by the source, each target judged by the allowlist before it
        # is requested; the session's connect-time guard still judges every address dialled.
        context = Context(options, session=session, check_redirect=policy.check_redirect)
        metrics = Metrics()
        cache = context.block_cache
        metrics.gauges["cloudroi_block_cache_bytes"] = (
            "Bytes held by the block cache.", lambda: float(cache.size)
        )
        metrics.gauges["cloudroi_block_cache_entries"] = (
            "Blocks held by the block cache.", lambda: float(len(cache))
        )
        state = cls(config, policy, context, metrics, session)
        metrics.gauges["cloudroi_memory_reserved_bytes"] = (
            "Bytes reserved by requests in progress (estimated).", lambda: float(state.memory.used)
        )
        return state

    async def close(self) -> None:
        await self.context.close()
        if self._session is not None:
            await self._session.close()

    async def resolve(self, url: str) -> str:
        """The URL or path to open for a client's ``url``, or a 400/403."""
        try:
            local = self.policy.local_path(url)
            if local is not None:
                real = await asyncio.to_thread(os.path.realpath, local)
                return self.policy.check_local_resolved(url, real).url
            return self.policy.check_remote(url).url
        except BadSourceError as exc:
            raise bad_request(str(exc), code="invalid_url") from exc
        except ValueError as exc:  # e.g. realpath on something the checks above let through
            raise bad_request(f"url is not a usable source: {exc}", code="invalid_url") from exc

    def openapi_bytes(self) -> bytes:
        if self._openapi is None:
            self._openapi = json.dumps(openapi_document()).encode()
        return self._openapi


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------

Handler = Callable[[CoreRequest, ServiceState], Awaitable[CoreResponse]]


async def handle(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """Answer one request. Never raises for anything a client can send."""
    started = time.perf_counter()
    route = _ROUTES.get(req.path)
    endpoint = req.path if route is not None else "other"
    try:
        if req.path != "/healthz" and not _authorized(req, state):
            raise Problem(
                401, "unauthorized",
                "this service needs an API key: send it in X-API-Key or as Authorization: Bearer",
                headers={"WWW-Authenticate": 'Bearer realm="cloudroi"'},
            )
        if route is None:
            raise Problem(404, "not_found", f"no endpoint {req.path[:100]!r}")
        if req.method not in ("GET", "HEAD"):
            raise Problem(405, "method_not_allowed", "only GET and HEAD",
                          headers={"Allow": "GET, HEAD"})
        if req.path in _STORAGE_ENDPOINTS:
            resp = await _admitted(route, req, state)
        else:
            resp = await route(req, state)
    except Problem as p:
        resp = _problem_response(p, req)
    except CloudROIError as exc:
        resp = _problem_response(problem_for(exc), req)
    except Exception:
        log.exception("unexpected error answering %s %s", req.method, req.path)
        resp = _problem_response(Problem(500, "internal_error", "internal error"), req)
    state.metrics.observe(endpoint, resp.status, time.perf_counter() - started)
    if req.method == "HEAD":
        resp.body = b""
    return resp


def _authorized(req: CoreRequest, state: ServiceState) -> bool:
    return not state.api_keys.required or state.api_keys.permits(req.headers)


async def _admitted(route: Handler, req: CoreRequest, state: ServiceState) -> CoreResponse:
    cfg = state.config
    if state.active >= cfg.max_concurrency:
        state.metrics.shed += 1
        raise Problem(
            503, "overloaded", "too many requests in progress; retry later",
            headers={"Retry-After": str(cfg.retry_after)},
        )
    state.active += 1
    state.metrics.in_flight += 1
    try:
        async with asyncio.timeout(cfg.request_timeout):
            return await route(req, state)
    except TimeoutError as exc:
        raise Problem(
            504, "timeout", f"the request took longer than {cfg.request_timeout:g} s"
        ) from exc
    finally:
        state.active -= 1
        state.metrics.in_flight -= 1


def _problem_response(problem: Problem, req: CoreRequest) -> CoreResponse:
    headers = {"Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store"}
    headers.update(problem.headers)
    return CoreResponse(problem.status, headers, problem.body(req.path))


def _json_response(doc: Any, headers: dict[str, str] | None = None) -> CoreResponse:
    body = json.dumps(_json_value(doc), allow_nan=False, separators=(",", ":")).encode()
    return CoreResponse(200, {"Content-Type": JSON_TYPE, **(headers or {})}, body)


# --------------------------------------------------------------------------------------------
# endpoints that do not touch storage
# --------------------------------------------------------------------------------------------


async def _healthz(req: CoreRequest, state: ServiceState) -> CoreResponse:
    return _json_response({"status": "ok", "version": __version__}, {"Cache-Control": "no-store"})


async def _metrics(req: CoreRequest, state: ServiceState) -> CoreResponse:
    body = state.metrics.render().encode()
    return CoreResponse(
        200, {"Content-Type": METRICS_CONTENT_TYPE, "Cache-Control": "no-store"}, body
    )


async def _openapi(req: CoreRequest, state: ServiceState) -> CoreResponse:
    # behind API keys, the document is for key holders only: no shared cache may keep it
    scope = "private" if state.api_keys.required else "public"
    headers = {"Content-Type": JSON_TYPE, "Cache-Control": f"{scope}, max-age=300"}
    if state.api_keys.required:
        headers["Vary"] = "X-API-Key, Authorization"
    return CoreResponse(200, headers, state.openapi_bytes())


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


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


def _etag(state: ServiceState, img: Image, req: CoreRequest) -> str | None:
    """A strong validator for this response: the source's ETag, the parameters, the version."""
    if not img.meta.etag:
        return None
    h = hashlib.blake2b(digest_size=16)
    cfg = state.config
    for part in (
        __version__, req.path, img.url, img.meta.etag, str(img.meta.size), canonical(req.query),
        str(cfg.jpeg_quality), str(cfg.webp_quality), str(cfg.png_level),
    ):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return f'"{h.hexdigest()}"'


def _cache_headers(state: ServiceState, etag: str | None) -> dict[str, str]:
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


async def _cached_or(
    state: ServiceState,
    req: CoreRequest,
    img: Image,
    make: Callable[[dict[str, str]], Awaitable[CoreResponse]],
) -> CoreResponse:
    etag = _etag(state, img, req)
    headers = _cache_headers(state, etag)
    if _not_modified(req, etag):
        return CoreResponse(304, headers)
    resp = await make(headers)
    resp.headers.update(headers)
    return resp


def _json_value(value: Any) -> Any:
    """``value`` with non-finite floats (which JSON cannot carry) as null, lists and
    dictionaries included."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


async def _info(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_info(req.query)

    async def work(img: Image) -> CoreResponse:
        async def make(headers: dict[str, str]) -> CoreResponse:
            doc = {k: _json_value(v) for k, v in img.info().items()}
            doc["overviews"] = len(img.levels) - 1
            return _json_response(doc)

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)


# -- geometry ---------------------------------------------------------------------------------


def _check_level(img: Image, level: int) -> None:
    if level >= len(img.levels):
        raise bad_request(f"level must be 0..{len(img.levels) - 1}, got {level}",
                          code="invalid_level")


def _geometry(code: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ValueError as exc:
        raise bad_request(str(exc), code=code) from exc


def _require_georeference(img: Image) -> None:
    if img.transform is None:
        raise bad_request(
            "the image has no georeferencing; use pixel coordinates", code="no_georeference"
        )


def _check_pixels(state: ServiceState, width: int, height: int) -> None:
    limit = state.config.max_output_pixels
    if width * height > limit:
        raise Problem(
            413, "too_many_pixels",
            f"output of {width}x{height} pixels exceeds the limit of {limit}; ask for a smaller "
            "window, a lower resolution level or a smaller width/height",
            limit=limit, value=width * height,
        )


def _check_blocks(state: ServiceState, img: Image) -> None:
    """Refuse a file whose blocks decode to more than the limit each: a small file can declare
    one huge deflated tile, and a 1 x 1 window of it would cost the whole tile in memory."""
    limit = state.config.max_block_bytes
    ifds = [*img.structure.levels, *(m for m in img.structure.masks if m is not None)]
    largest = max(ifd.decoded_block_bytes() for ifd in ifds)
    if largest > limit:
        raise Problem(
            413, "limit_exceeded",
            f"the source's blocks decode to {largest} bytes each, more than this service's limit "
            f"of {limit}",
            limit=limit, value=largest,
        )


# -- images -----------------------------------------------------------------------------------


def _needs_mask(img: Image, boundless: bool) -> bool:
    return img.has_mask or img.alpha_band is not None or img.nodata is not None or boundless


def _mask_is_nodata_of(img: Image, bands: list[int] | None, boundless: bool) -> bool:
    """Whether the image's mask is its nodata test over all bands and ``bands`` are all of them
    (outside pixels of a boundless read are left to ``read_mask``)."""
    if img.has_mask or img.alpha_band is not None or img.nodata is None or boundless:
        return False
    return bands is None or sorted(set(bands)) == list(range(1, img.count + 1))


async def _render(
    state: ServiceState,
    img: Image,
    level: int,
    win: Window,
    out_shape: tuple[int, int] | None,
    boundless: bool,
    rendering: Rendering,
) -> CoreResponse:
    cfg = state.config
    fmt = rendering.format
    out_h, out_w = out_shape if out_shape is not None else (win.height, win.width)
    _check_pixels(state, out_w, out_h)
    _check_blocks(state, img)
    _check_bands(img, rendering.bands)
    bands: list[int] | None
    if fmt in RENDERED:
        try:
            bands = render_bands(img.count, rendering.bands, img.alpha_band)
        except ValueError as exc:
            raise bad_request(
                f"{exc}; use format=npy or tif for other band counts", code="invalid_bands"
            ) from exc
    else:
        bands = list(rendering.bands) if rendering.bands else None
    need = _request_bytes(img, fmt, bands, boundless, out_h, out_w)
    if need.total > cfg.max_request_bytes:
        raise Problem(
            413, "request_too_large",
            f"this request would hold {need.describe()}, more than the limit of "
            f"{cfg.max_request_bytes}; ask for fewer pixels or bands, or a lower level",
            limit=cfg.max_request_bytes, value=need.total,
        )
    try:
        async with state.memory.reserve(need.total, cfg.request_timeout / 4):
            return await _read_and_encode(state, img, level, win, out_shape, boundless,
                                          rendering, bands, (out_h, out_w))
    except BudgetExhausted as exc:
        state.metrics.shed += 1
        raise Problem(
            503, "overloaded",
            "the service's memory budget is taken by requests in progress; retry later",
            headers={"Retry-After": str(cfg.retry_after)},
        ) from exc


def _check_bands(img: Image, bands: tuple[int, ...] | None) -> None:
    """Bands exist, and a request names at most as many as the source has (three for a
    single-band source shown as RGB): repeats cannot multiply what a request holds."""
    if bands is None:
        return
    for b in bands:
        if not 1 <= b <= img.count:
            raise bad_request(
                f"bands are numbered 1..{img.count} in this source, got {b}", code="invalid_bands"
            )
    most = max(img.count, 3)
    if len(bands) > most:
        raise bad_request(
            f"at most {most} bands for this {img.count}-band source, got {len(bands)}",
            code="invalid_bands",
        )


def _request_bytes(
    img: Image, fmt: str, bands: list[int] | None, boundless: bool, height: int, width: int
) -> RequestBytes:
    """What the answer would hold (see ``service.budget``), before anything is fetched."""
    itemsize = img.dtype.itemsize
    n = len(bands) if bands is not None else img.count
    pixels = height * width
    mask = 0
    if fmt in RENDERED and _needs_mask(img, boundless):
        if _mask_is_nodata_of(img, bands, boundless):
            mask = n * pixels + 2 * pixels  # the comparison with nodata, then the mask
        elif img.has_mask or img.alpha_band is not None:
            mask = pixels * itemsize + 2 * pixels
        elif img.nodata is not None:
            # every band is read to test it against nodata
            mask = img.count * pixels * (itemsize + 1) + 2 * pixels
        else:
            mask = pixels
    return estimate_region(
        height=height, width=width, bands=n, itemsize=itemsize, rendered=fmt in RENDERED,
        mask_bytes=mask,
    )


async def _read_and_encode(
    state: ServiceState,
    img: Image,
    level: int,
    win: Window,
    out_shape: tuple[int, int] | None,
    boundless: bool,
    rendering: Rendering,
    bands: list[int] | None,
    out_hw: tuple[int, int],
) -> CoreResponse:
    cfg = state.config
    fmt = rendering.format
    out_h, out_w = out_hw
    budgets: dict[str, Any] = {
        "out_shape": out_shape, "boundless": boundless,
        "max_tiles": cfg.max_tiles, "max_bytes": cfg.max_fetch_bytes,
    }
    data = await img.read(win, level, bands, **budgets)
    mask: npt.NDArray[np.uint8] | None = None
    if fmt in RENDERED and _needs_mask(img, boundless):
        if _mask_is_nodata_of(img, bands, boundless):
            # The mask is "any band differs from nodata" and every band is in ``data``: derive
            # it here rather than read and decode the same blocks a second time.
            nodata = img.nodata
            assert nodata is not None
            mask = await asyncio.get_running_loop().run_in_executor(
                state.context.executor, valid_mask, data, nodata
            )
        else:
            mask = await img.read_mask(win, level, **budgets)
    quality = rendering.quality or (cfg.jpeg_quality if fmt == "jpeg" else cfg.webp_quality)
    try:
        body, used = await encode_async(
            fmt, data, executor=state.context.executor, mask=mask,
            geo=geometry.out_geo(
                img.levels, img.transform, img.crs, img.nodata, level, win, out_w, out_h
            ),
            rescale=rendering.rescale,
            quality=quality,
            png_level=cfg.png_level,
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    limit = cfg.max_response_bytes
    if limit and len(body) > limit:
        raise Problem(
            413, "response_too_large",
            f"the encoded response of {len(body)} bytes exceeds the limit of {limit}; ask for "
            "fewer pixels or a more compact format",
            limit=limit, value=len(body),
        )
    headers = {"Content-Type": CONTENT_TYPES[fmt]}
    if used is not None:
        headers["X-Cloudroi-Rescale"] = f"{used[0]:.17g},{used[1]:.17g}"
    return CoreResponse(200, headers, body)


async def _region(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_region(req.query)

    async def work(img: Image) -> CoreResponse:
        level = q.level or 0
        _check_level(img, level)
        wl, hl = img.levels[level]
        if q.window is not None:
            win, boundless = Window(*q.window), False
            if not geometry.inside(win, wl, hl):
                raise bad_request(
                    f"window {tuple(win)} is outside the {wl}x{hl} grid of level {level}",
                    code="invalid_window",
                )
        else:
            bbox = q.bbox
            assert bbox is not None
            _require_georeference(img)
            win = _geometry(
                "invalid_window",
                lambda: geometry.bbox_window(img.levels, img.transform, bbox, level),
            )
            boundless = not geometry.inside(win, wl, hl)
        out_shape = geometry.out_shape(win, q.width, q.height)

        async def make(headers: dict[str, str]) -> CoreResponse:
            return await _render(state, img, level, win, out_shape, boundless, q.rendering)

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)


async def _preview(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_preview(req.query, state.config.max_preview_size)

    async def work(img: Image) -> CoreResponse:
        w, h = img.width, img.height
        scale = min(1.0, q.max_size / max(w, h))
        out_shape = None
        if scale < 1.0:
            out_shape = (max(1, round(h * scale)), max(1, round(w * scale)))

        async def make(headers: dict[str, str]) -> CoreResponse:
            return await _render(
                state, img, 0, Window(0, 0, w, h), out_shape, False, q.rendering
            )

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)


async def _point(req: CoreRequest, state: ServiceState) -> CoreResponse:
    q = parse_point(req.query)
    cfg = state.config

    async def work(img: Image) -> CoreResponse:
        gt = img.transform
        if q.xy is not None:
            _require_georeference(img)
            convert = _geometry("no_georeference", lambda: geometry.to_pixel(gt))
            c, r = convert(*q.xy)
            if not (math.isfinite(c) and math.isfinite(r)):
                raise bad_request(
                    f"point {q.xy} does not map to a pixel through the image's geotransform",
                    code="invalid_window",
                )
            col, row = math.floor(c), math.floor(r)
        else:
            assert q.colrow is not None
            col, row = q.colrow
        if not (0 <= col < img.width and 0 <= row < img.height):
            raise bad_request(
                f"point (col {col}, row {row}) is outside the {img.width}x{img.height} image",
                code="invalid_window",
            )

        async def make(headers: dict[str, str]) -> CoreResponse:
            _check_blocks(state, img)
            budgets: dict[str, Any] = {"max_tiles": cfg.max_tiles, "max_bytes": cfg.max_fetch_bytes}
            data = await img.read((col, row, 1, 1), 0, **budgets)
            valid = True
            if _needs_mask(img, False):
                mask = await img.read_mask((col, row, 1, 1), 0, **budgets)
                valid = bool(mask[0, 0])
            doc: dict[str, Any] = {
                "col": col,
                "row": row,
                "values": [_json_value(v) for v in data[:, 0, 0].tolist()],
                "dtype": str(img.dtype),
                "nodata": _json_value(img.nodata),
                "valid": valid,
                "crs": img.crs,
            }
            if gt is not None:
                doc["x"] = gt[0] + (col + 0.5) * gt[1] + (row + 0.5) * gt[2]
                doc["y"] = gt[3] + (col + 0.5) * gt[4] + (row + 0.5) * gt[5]
            return _json_response(doc)

        return await _cached_or(state, req, img, make)

    return await _with_image(state, q.url, work)


_ROUTES: dict[str, Handler] = {
    "/healthz": _healthz,
    "/metrics": _metrics,
    "/openapi.json": _openapi,
    "/info": _info,
    "/region": _region,
    "/preview": _preview,
    "/point": _point,
}
_STORAGE_ENDPOINTS = frozenset({"/info", "/region", "/preview", "/point"})
