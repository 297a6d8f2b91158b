"""The aiohttp application: a thin adapter from aiohttp requests onto the request core.

``create_app(config)`` returns an ``aiohttp.web.Application`` whose shared state (Context with the
guarded HTTP session, caches, decode pool, metrics) is opened and closed by a cleanup context and
kept under typed ``AppKey``s. Every path goes to ``core.handle``, which does the routing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.abc import AbstractResolver

from .config import ServiceConfig
from .core import CoreRequest, ServiceState, handle

__all__ = ["CONFIG", "STATE", "create_app", "run"]

CONFIG: web.AppKey[ServiceConfig] = web.AppKey("cloudroi_config", ServiceConfig)
STATE: web.AppKey[ServiceState] = web.AppKey("cloudroi_state", ServiceState)
RESOLVER: web.AppKey[AbstractResolver] = web.AppKey("cloudroi_resolver", AbstractResolver)


async def _state_context(app: web.Application) -> AsyncIterator[None]:
    state = await ServiceState.start(app[CONFIG], resolver=app.get(RESOLVER))
    app[STATE] = state
    try:
        yield
    finally:
        await state.close()


async def _dispatch(request: web.Request) -> web.StreamResponse:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    core = CoreRequest(
        method=request.method,
        path=request.path,
        query=tuple(request.query.items()),
        headers=headers,
    )
    resp = await handle(core, request.app[STATE])
    return web.Response(status=resp.status, headers=resp.headers, body=resp.body or None)


def create_app(
    config: ServiceConfig | None = None, *, resolver: AbstractResolver | None = None
) -> web.Application:
    """The region service as an aiohttp application (configuration from the environment when
    ``config`` is None; ``resolver`` replaces aiohttp's DNS resolver for upstream HTTP)."""
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config if config is not None else ServiceConfig.from_env()
    if resolver is not None:
        app[RESOLVER] = resolver
    app.cleanup_ctx.append(_state_context)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def run(
    config: ServiceConfig, *, print_fn: Callable[..., None] | None = print
) -> None:
    """Serve until interrupted. Client disconnects cancel their requests (and upstream reads)."""
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        handler_cancellation=True,
        access_log=None,
        print=print_fn,
    )
