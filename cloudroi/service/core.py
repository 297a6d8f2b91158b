"""The region service's request core: one transport-independent request in, one response out.

``handle(CoreRequest, ServiceState) -> CoreResponse`` does everything between a transport and the
library: authentication, routing, admission control and deadlines, metrics and problem details;
the endpoints that read storage (``service.regions``) run over the library's region layer. The
aiohttp app and the Lambda handler only translate requests and responses. Nothing from the
client's request reaches storage but the source URL: headers are never forwarded.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from dataclasses import dataclass

from .. import __version__
from ..errors import CloudROIError
from .messages import JSON_TYPE, CoreRequest, CoreResponse, json_response, problem_response
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .problems import Problem, problem_for
from .routes import Handler, Route, Router, path
from .state import ServiceState

__all__ = ["CoreRequest", "CoreResponse", "ServiceState", "handle"]

log = logging.getLogger("cloudroi.service")


async def handle(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """Answer one request. Never raises for anything a client can send."""
    started = time.perf_counter()
    matched = ROUTER.match(req)
    endpoint = matched[0].name if matched is not None else "other"
    try:
        if req.path != "/healthz" and not _authorized(req, state):
            raise Problem(
                401,
                "unauthorized",
                "this service needs an API key: send it in X-API-Key or as Authorization: Bearer",
                headers={"WWW-Authenticate": 'Bearer realm="cloudroi"'},
            )
        if matched is None:
            raise Problem(404, "not_found", f"no endpoint {req.path[:100]!r}")
        route, req = matched
        if req.method not in ("GET", "HEAD"):
            raise Problem(
                405, "method_not_allowed", "only GET and HEAD", headers={"Allow": "GET, HEAD"}
            )
        if route.storage:
            resp = await _admitted(route.handler, req, state)
        else:
            resp = await route.handler(req, state)
    except Problem as p:
        resp = problem_response(p, req)
    except CloudROIError as exc:
        resp = problem_response(problem_for(exc), req)
    except Exception:
        log.exception("unexpected error answering %s %s", req.method, req.path)
        resp = problem_response(Problem(500, "internal_error", "internal error"), req)
    state.metrics.observe(endpoint, resp.status, time.perf_counter() - started)
    if req.method == "HEAD":
        resp.body = b""
    return resp


def _authorized(req: CoreRequest, state: ServiceState) -> bool:
    return not state.api_keys.required or state.api_keys.permits(req.headers)


async def _admitted(route: Handler, req: CoreRequest, state: ServiceState) -> CoreResponse:
    cfg = state.config
    if state.active >= cfg.max_concurrency:
        raise state.shed("too many requests in progress")
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


# --------------------------------------------------------------------------------------------
# endpoints that do not touch storage
# --------------------------------------------------------------------------------------------


async def _healthz(req: CoreRequest, state: ServiceState) -> CoreResponse:
    return json_response({"status": "ok", "version": __version__}, {"Cache-Control": "no-store"})


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


#: The modules of the endpoints (``cloudroi.service.<name>``), each imported by its first
#: request: a cold Lambda function answering /info loads neither the map endpoints nor
#: /statistics. ``load_endpoints`` imports them all (the aiohttp service before it serves, the
#: SnapStart hook before the snapshot).
ENDPOINT_MODULES = ("regions", "statistics", "cog", "tiles", "viewer")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The endpoint ``name`` of ``cloudroi.service.<module>``, imported when first called."""

    module: str
    name: str

    def resolve(self) -> Handler:
        handler: Handler = getattr(
            importlib.import_module(f"{__package__}.{self.module}"), self.name
        )
        return handler

    async def __call__(self, req: CoreRequest, state: ServiceState) -> CoreResponse:
        return await self.resolve()(req, state)


def load_endpoints() -> None:
    """Import every endpoint's module now (blocking: call it from a thread)."""
    for module in ENDPOINT_MODULES:
        importlib.import_module(f"{__package__}.{module}")


_TILE = "/tiles/{tms}/{z}/{x}/{y}[@{scale}x][.{format}]"
_SIZE = "{width:size}x{height:size}"
_BBOX = "/bbox/{minx:number},{miny:number},{maxx:number},{maxy:number}[/" + _SIZE + "].{format}"
_LONLAT = "/point/{lon:number},{lat:number}"

ROUTER = Router(
    [
        Route("/healthz", path("/healthz"), _healthz, storage=False),
        Route("/metrics", path("/metrics"), _metrics, storage=False),
        Route("/openapi.json", path("/openapi.json"), _openapi, storage=False),
        Route("/info", path("/info"), Endpoint("regions", "info")),
        Route("/region", path("/region"), Endpoint("regions", "region")),
        Route("/preview", path("/preview"), Endpoint("regions", "preview")),
        Route("/point", path("/point"), Endpoint("regions", "point")),
        Route("/statistics", path("/statistics"), Endpoint("statistics", "statistics")),
        # TiTiler's /cog router: its paths, parameters and answer shapes
        Route("/cog/info", path("/cog/info"), Endpoint("cog", "info")),
        Route("/cog/statistics", path("/cog/statistics"), Endpoint("statistics", "statistics")),
        Route("/cog/tiles", path("/cog" + _TILE), Endpoint("tiles", "tile")),
        Route(
            "/cog/tilejson.json", path("/cog[/{tms}]/tilejson.json"), Endpoint("tiles", "tilejson")
        ),
        Route(
            "/cog/WMTSCapabilities.xml",
            path("/cog[/{tms}]/WMTSCapabilities.xml"),
            Endpoint("tiles", "wmts"),
        ),
        Route("/cog/bbox", path("/cog" + _BBOX), Endpoint("tiles", "bbox")),
        Route("/cog/point", path("/cog" + _LONLAT), Endpoint("cog", "lonlat_point")),
        Route("/cog/preview", path("/cog/preview[.{format}]"), Endpoint("cog", "preview")),
        Route(
            "/cog/preview",
            path("/cog/preview/{width:size}x{height:size}.{format}"),
            Endpoint("cog", "preview"),
        ),
        Route(
            "/cog/map",
            path("/cog[/{tms}]/map[.html]"),
            Endpoint("viewer", "map_page"),
            storage=False,
        ),
        # map endpoints
        Route("/tiles", path(_TILE), Endpoint("tiles", "tile")),
        Route("/tilejson.json", path("[/{tms}]/tilejson.json"), Endpoint("tiles", "tilejson")),
        Route(
            "/WMTSCapabilities.xml",
            path("[/{tms}]/WMTSCapabilities.xml"),
            Endpoint("tiles", "wmts"),
        ),
        Route("/bbox", path(_BBOX), Endpoint("tiles", "bbox")),
        Route("/point/{lon},{lat}", path(_LONLAT), Endpoint("cog", "lonlat_point")),
        Route("/map", path("/map"), Endpoint("viewer", "map_page"), storage=False),
        Route(
            "/static",
            path("/static/{name:file}"),
            Endpoint("viewer", "static_file"),
            storage=False,
        ),
    ]
)
