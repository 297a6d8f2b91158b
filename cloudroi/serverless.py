"""The AWS Lambda entry point: API Gateway and Function URL events onto the region service's core.

``handler(event, context)`` accepts the three HTTP event shapes Lambda receives:

* API Gateway HTTP API, payload format 2.0 (``version: "2.0"``, ``rawPath``, ``rawQueryString``);
* Lambda Function URLs, which send the same 2.0 shape;
* API Gateway REST API (and HTTP API with payload 1.0): ``httpMethod``, ``path``,
  ``multiValueQueryStringParameters``.

Each is translated into a ``CoreRequest`` and answered by ``cloudroi.service.core.handle``, the
same function the aiohttp service runs, so parameters, the allowlist, limits and problem details
are one implementation. Binary bodies (images, npy, GeoTIFF) go back base64-encoded with their
content type; JSON and text go back as text.

Warm invocations reuse everything: one event loop lives for the whole process (Lambda freezes it
between invocations), and on it one ``ServiceState`` with the guarded HTTP session, the S3 client,
the header and block caches and the decode pool. The configuration comes from the ``CLOUDROI_*``
environment variables (``ServiceConfig.from_env``), with the largest response body capped so that
the base64 answer stays inside Lambda's 6 MB response limit: larger answers are a 413.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

from .service.config import ServiceConfig
from .service.core import CoreRequest, CoreResponse, ServiceState, handle
from .service.problems import PROBLEM_TYPE, Problem

__all__ = [
    "LAMBDA_PAYLOAD_LIMIT",
    "LambdaApp",
    "body_limit",
    "capped",
    "handler",
    "lambda_config",
    "reset",
    "to_core_request",
    "to_lambda_response",
]

log = logging.getLogger("cloudroi.serverless")

#: Lambda's limit on a synchronous invocation's response document (6 MB), in bytes.
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024
#: Room kept for the response document around the body: status, headers, JSON punctuation.
ENVELOPE_RESERVE = 16 * 1024

_V1, _V2 = "1.0", "2.0"
_TEXT_TYPES = ("application/json", PROBLEM_TYPE)


def body_limit(payload_limit: int = LAMBDA_PAYLOAD_LIMIT) -> int:
    """The largest raw body whose base64 form, with the envelope, fits ``payload_limit``."""
    if payload_limit <= ENVELOPE_RESERVE:
        raise ValueError(f"payload limit must exceed the {ENVELOPE_RESERVE} byte envelope reserve")
    return (payload_limit - ENVELOPE_RESERVE) // 4 * 3


def lambda_config(
    env: Mapping[str, str] | None = None, *, payload_limit: int = LAMBDA_PAYLOAD_LIMIT
) -> ServiceConfig:
    """``ServiceConfig.from_env`` with ``max_response_bytes`` no larger than Lambda allows (a
    smaller ``CLOUDROI_MAX_RESPONSE_BYTES`` is kept)."""
    return capped(ServiceConfig.from_env(env), payload_limit)


def capped(config: ServiceConfig, payload_limit: int = LAMBDA_PAYLOAD_LIMIT) -> ServiceConfig:
    """``config`` with ``max_response_bytes`` at most ``body_limit(payload_limit)``."""
    cap = body_limit(payload_limit)
    if config.max_response_bytes == 0 or config.max_response_bytes > cap:
        return config.replace(max_response_bytes=cap)
    return config


# --------------------------------------------------------------------------------------------
# events in
# --------------------------------------------------------------------------------------------


def _payload_version(event: Mapping[str, Any]) -> str:
    if event.get("version") == _V2 and isinstance(event.get("rawPath"), str):
        return _V2
    if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str):
        return _V1
    raise ValueError(
        "not an API Gateway (payload 1.0 or 2.0) or Function URL event: "
        f"keys {sorted(event)[:12]}"
    )


def _strip_stage(path: str, stage: Any) -> str:
    """An HTTP API stage other than ``$default`` prefixes the path with its name."""
    if not isinstance(stage, str) or not stage or stage == "$default":
        return path
    prefix = "/" + stage
    if path == prefix:
        return "/"
    if path.startswith(prefix + "/"):
        return path[len(prefix):]
    return path


def _joined_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased names; repeated headers joined with ", " as HTTP allows (and as the aiohttp
    adapter does)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _v2_request(event: Mapping[str, Any]) -> CoreRequest:
    ctx = event.get("requestContext") or {}
    http = ctx.get("http") or {}
    method = http.get("method") or "GET"
    # rawPath is the path as sent (percent-encoded); aiohttp's request.path, the other adapter's
    # input, is decoded.
    path = _strip_stage(unquote(event["rawPath"] or "/"), ctx.get("stage"))
    # rawQueryString keeps repeated parameters apart and commas inside values intact;
    # queryStringParameters joins both with commas and cannot be split back.
    query = parse_qsl(event.get("rawQueryString") or "", keep_blank_values=True)
    headers = _joined_headers([(k, str(v)) for k, v in (event.get("headers") or {}).items()])
    return CoreRequest(str(method).upper(), path, tuple(query), headers)


def _v1_request(event: Mapping[str, Any]) -> CoreRequest:
    path = event["path"] or "/"
    if event.get("version") == _V1:  # HTTP API with payload 1.0 keeps a named stage in the path
        path = _strip_stage(path, (event.get("requestContext") or {}).get("stage"))
    query: list[tuple[str, str]] = []
    multi = event.get("multiValueQueryStringParameters")
    if multi:
        query = [(k, str(v)) for k, values in multi.items() for v in values or ()]
    else:
        query = [(k, str(v)) for k, v in (event.get("queryStringParameters") or {}).items()]
    pairs: list[tuple[str, str]] = []
    multi_headers = event.get("multiValueHeaders")
    if multi_headers:
        pairs = [(k, str(v)) for k, values in multi_headers.items() for v in values or ()]
    else:
        pairs = [(k, str(v)) for k, v in (event.get("headers") or {}).items()]
    return CoreRequest(
        str(event["httpMethod"]).upper(), path, tuple(query), _joined_headers(pairs)
    )


def to_core_request(event: Mapping[str, Any]) -> tuple[CoreRequest, str]:
    """The request an event carries, and the event's payload version ("1.0" or "2.0")."""
    version = _payload_version(event)
    if version == _V2:
        return _v2_request(event), version
    return _v1_request(event), version


# --------------------------------------------------------------------------------------------
# responses out
# --------------------------------------------------------------------------------------------


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith("+json")


def to_lambda_response(resp: CoreResponse) -> dict[str, Any]:
    """The response document Lambda returns to API Gateway or the Function URL."""
    headers = dict(resp.headers)
    if _is_text(resp.content_type):
        try:
            body, encoded = resp.body.decode("utf-8"), False
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(resp.body).decode("ascii"), True
    else:
        body, encoded = base64.b64encode(resp.body).decode("ascii"), True
    # The same document for payload 1.0 and 2.0: every header has one value, so "headers"
    # suffices (1.0's multiValueHeaders is optional).
    return {
        "statusCode": resp.status,
        "headers": headers,
        "body": body,
        "isBase64Encoded": encoded,
    }


def _document_size(doc: Mapping[str, Any]) -> int:
    return len(json.dumps(doc, separators=(",", ":")).encode())


def _too_large(size: int, limit: int, req: CoreRequest) -> CoreResponse:
    """The 413 for an answer whose response document would exceed Lambda's limit (the core's own
    ``max_response_bytes`` check catches encoded images before this; this catches the rest)."""
    problem = Problem(
        413, "response_too_large",
        f"the response of {size} bytes exceeds the function's limit of {limit} bytes; ask for "
        "fewer pixels or a more compact format",
        limit=limit, value=size,
    )
    headers = {"Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store"}
    return CoreResponse(413, headers, problem.body(req.path))


# --------------------------------------------------------------------------------------------
# the function
# --------------------------------------------------------------------------------------------


class LambdaApp:
    """One event loop and one ``ServiceState``, kept for the life of the process, answering one
    invocation at a time (Lambda never runs two at once in one execution environment)."""

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        payload_limit: int = LAMBDA_PAYLOAD_LIMIT,
    ) -> None:
        self.payload_limit = payload_limit
        self.config = (
            capped(config, payload_limit)
            if config is not None
            else lambda_config(payload_limit=payload_limit)
        )
        self.loop = asyncio.new_event_loop()
        self.state: ServiceState | None = None
        self.invocations = 0
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        req = to_core_request(event)[0]
        with self._lock:
            resp = self.loop.run_until_complete(self._answer(req))
            self.invocations += 1
        doc = to_lambda_response(resp)
        size = _document_size(doc)
        if size > self.payload_limit:
            log.warning("response of %d bytes for %s over the %d byte limit",
                        size, req.path, self.payload_limit)
            doc = to_lambda_response(_too_large(size, self.payload_limit, req))
        return doc

    async def _answer(self, req: CoreRequest) -> CoreResponse:
        if self.state is None:
            self.state = await ServiceState.start(self.config)
        return await handle(req, self.state)

    def close(self) -> None:
        """Release the state and the loop (tests; Lambda itself never calls this)."""
        if self.loop.is_closed():
            return
        try:
            if self.state is not None:
                self.loop.run_until_complete(self.state.close())
                self.state = None
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()


_app: LambdaApp | None = None
_app_lock = threading.Lock()


def _current() -> LambdaApp:
    global _app
    with _app_lock:
        if _app is None:
            _app = LambdaApp()
        return _app


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda handler (``cloudroi.serverless.handler``). The first invocation of an execution
    environment reads the configuration and opens the shared state; later ones reuse both."""
    return _current()(event, context)


def reset() -> None:
    """Forget the process's function state (closing it), so the next invocation starts cold."""
    global _app
    with _app_lock:
        app, _app = _app, None
    if app is not None:
        app.close()

