"""The aiohttp application: a thin adapter from aiohttp requests onto the request core.

``create_app(config)`` returns an ``aiohttp.web.Application`` whose shared state (Context with the
guarded HTTP session, caches, decode pool, metrics) is opened and closed by a cleanup context and
kept under typed ``AppKey``s. Every path goes to ``core.handle``, which does the routing.

Some answers never reach the core, and are problem details (``application/problem+json``,
``Cache-Control: no-store``) all the same:

* requests aiohttp's protocol refuses before any application sees them (a request or header line
  over 8190 bytes, too many headers, bytes that are not HTTP) and exceptions escaping a handler:
  ``ProblemRequestHandler`` answers them, on the connections of ``ServiceRunner``;
* a request target that is not a path (``OPTIONS *``, ``CONNECT host:443``) cannot match the one
  route: the ``_http_errors`` middleware turns the router's 404 into problem details;
* an ``Expect`` other than ``100-continue``: the route's expect handler answers 417.

``start_site`` starts the service on a ``ServiceRunner``; ``run`` (``cloudroi serve``) serves
through it until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

from aiohttp import HttpVersion11, http_exceptions, web
from aiohttp.abc import AbstractResolver

from .config import ServiceConfig
from .core import CoreRequest, ServiceState, handle
from .problems import PROBLEM_TYPE, Problem

__all__ = [
    "CONFIG",
    "STATE",
    "ProblemRequestHandler",
    "ServiceRunner",
    "create_app",
    "problem_response",
    "run",
    "serve",
    "start_site",
]

CONFIG: web.AppKey[ServiceConfig] = web.AppKey("cloudroi_config", ServiceConfig)
STATE: web.AppKey[ServiceState] = web.AppKey("cloudroi_state", ServiceState)
RESOLVER: web.AppKey[AbstractResolver] = web.AppKey("cloudroi_resolver", AbstractResolver)


def problem_response(problem: Problem, instance: str | None = None) -> web.Response:
    """``problem`` as the core answers one, for the answers aiohttp makes itself."""
    doc = problem.document(instance)
    if problem.title == "Error":  # a status the core never uses: HTTP's own reason phrase
        with contextlib.suppress(ValueError):
            doc["title"] = HTTPStatus(problem.status).phrase
    headers = {"Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store", **problem.headers}
    body = json.dumps(doc, separators=(",", ":")).encode()
    return web.Response(status=problem.status, headers=headers, body=body)


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


_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "content_too_large"}


@web.middleware
async def _http_errors(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """The router's refusals (a request target that is not a path cannot match ``/{tail}``) as
    problem details."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(exc.status, "http_error")
        detail = (
            f"no endpoint {request.path[:100]!r}"
            if exc.status == 404
            else exc.reason or HTTPStatus(exc.status).phrase
        )
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(
            Problem(exc.status, code, detail, headers=headers), request.path[:200]
        )
    return resp


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """aiohttp's rule for ``Expect`` (on HTTP/1.1, ``100-continue`` is answered ``100 Continue``
    and any other expectation refused with 417), the refusal as problem details."""
    if request.version != HttpVersion11:
        return None
    expect = request.headers.get("Expect", "")
    if expect.lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the final response is still to be sent
        return None
    return problem_response(
        Problem(
            417,
            "expectation_failed",
            f"the Expect header asks for {expect[:100]!r}; only 100-continue is supported",
        ),
        request.path[:200],
    )


def create_app(
    config: ServiceConfig | None = None, *, resolver: AbstractResolver | None = None
) -> web.Application:
    """The region service as an aiohttp application (configuration from the environment when
    ``config`` is None; ``resolver`` replaces aiohttp's DNS resolver for upstream HTTP)."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[_http_errors])
    app[CONFIG] = config if config is not None else ServiceConfig.from_env()
    if resolver is not None:
        app[RESOLVER] = resolver
    app.cleanup_ctx.append(_state_context)
    app.router.add_route("*", "/{tail:.*}", _dispatch, expect_handler=_expect)
    return app


# --------------------------------------------------------------------------------------------
# what aiohttp answers itself
# --------------------------------------------------------------------------------------------


def _reason(message: str) -> str:
    """The parser's explanation from an aiohttp parse error message, without the echoed bytes
    and the caret line under them."""
    parts = []
    for line in message.splitlines():
        text = line.strip().rstrip(":").strip()
        if not text or text.startswith(("b'", 'b"', "bytearray(")) or not text.strip("^~ "):
            continue
        parts.append(text)
    reason = ": ".join(parts) or "malformed request"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _protocol_problem(status: int, exc: BaseException | None) -> Problem:
    """The problem for an answer aiohttp's protocol makes without the application: a request it
    could not parse (400), a handler that timed out (504) or failed (500)."""
    if status >= 500:
        if status == HTTPStatus.GATEWAY_TIMEOUT:
            return Problem(504, "timeout", "the request took too long")
        return Problem(status, "internal_error", "internal error")
    if isinstance(exc, http_exceptions.LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the limit of"
        return Problem(
            status,
            "line_too_long",
            f"the request line or a header line is longer than {limit} bytes",
        )
    if isinstance(exc, http_exceptions.HttpProcessingError):
        return Problem(
            status, "invalid_http", f"the request is not valid HTTP: {_reason(exc.message)}"
        )
    return Problem(status, "invalid_http", "the request is not valid HTTP")


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering what it refuses itself with problem details
    instead of ``text/plain``."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handling first: its logging, and the ConnectionError when part of a
        # response was sent already (the connection is broken then).
        super().handle_error(request, status, exc, message)
        resp = problem_response(_protocol_problem(status, exc))
        resp.force_close()
        return resp


# aiohttp has no public hook for the answers its protocol makes: a Server makes a RequestHandler
# per connection, an AppRunner makes the Server. These two overrides are the narrowest way in
# (tests/test_service.py checks each answer on a real socket).


class _ProblemServer(web.Server):
    """aiohttp's low-level server, with ``ProblemRequestHandler`` for each connection."""

    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer protocol errors with problem details."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the application's, started
        return _ProblemServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


async def start_site(
    config: ServiceConfig, host: str | None = None, port: int | None = None
) -> web.AppRunner:
    """The service listening on ``host``:``port`` (the configuration's by default; port 0 picks
    a free one, see ``runner.addresses``), started as ``run`` starts it. Client disconnects
    cancel their requests (and upstream reads). Stop it with ``await runner.cleanup()``."""
    runner = ServiceRunner(create_app(config), handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, config.host if host is None else host, config.port if port is None else port
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(config: ServiceConfig, *, print_fn: Callable[..., None] | None = print) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully: stop listening, let requests in
    flight finish (up to 60 s), close the shared state."""
    runner = await start_site(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C still interrupts
                loop.add_signal_handler(sig, stop.set)
        if print_fn is not None:
            names = ", ".join(sorted(str(site.name) for site in runner.sites))
            print_fn(f"======== Running on {names} ========\n(Press CTRL+C to quit)")
        await stop.wait()
    finally:
        for sig in signals:  # a second signal interrupts the graceful shutdown
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()


def run(config: ServiceConfig, *, print_fn: Callable[..., None] | None = print) -> None:
    """Serve until interrupted (``serve`` on a new event loop)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, print_fn=print_fn))
