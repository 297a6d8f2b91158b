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

The handler never raises for an event. Each field it reads is checked for its type (a string
``rawPath``, an object of string ``headers``, a list of ``cookies`` ...); an event that is not an
object, not an HTTP event, or has a field of the wrong type is answered ``400`` with the
``invalid_event`` problem naming the field, and logged at warning level (the reason, never the
event). An unexpected failure inside is answered ``500 internal_error`` and logged with its
traceback.

Warm invocations reuse everything: one event loop lives for the whole process (Lambda freezes it
between invocations), and on it one ``ServiceState`` with the guarded HTTP session, the S3 client,
the header and block caches and the decode pool. The configuration comes from the ``CLOUDROI_*``
environment variables (``ServiceConfig.from_env``), with the largest response body capped so that
the base64 answer stays inside Lambda's 6 MB response limit: larger answers are a 413.

Cold start: importing this module loads neither numpy nor aiohttp nor any extra; the first
invocation loads what its request needs (the map path's pyproj and tile grids only for a map
request: no ``warm_up`` on the first request). With SnapStart, the hooks of
``cloudroi.service.snapstart`` (registered below) load all of it before the snapshot and renew the
loop, session, pools and random seeds after each restore.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from ..errors import CloudROIError
from . import gcpause
from .messages import CoreRequest, CoreResponse
from .problems import PROBLEM_TYPE, Problem
from .snapstart import register as _register_snapstart_hooks

if TYPE_CHECKING:
    from .config import ServiceConfig
    from .state import ServiceState

__all__ = [
    "LAMBDA_PAYLOAD_LIMIT",
    "InvalidEventError",
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
    from .config import ServiceConfig

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


class InvalidEventError(CloudROIError, ValueError):
    """The event is not an HTTP event this function understands; the message says which field is
    wrong (never the whole event, which can carry credentials in its headers)."""


_SCALARS = (str, int, float, bool)


def _kind(value: Any) -> str:
    """A JSON-ish name for the type of ``value``, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _wrong(name: str, expected: str, value: Any) -> InvalidEventError:
    return InvalidEventError(f"{name} must be {expected}, not {_kind(value)}")


def _text(value: Any, name: str) -> str:
    """A scalar header or query value as text (numbers and booleans as str() gives them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, _SCALARS):
        return str(value)
    raise _wrong(name, "a string", value)


def _field(
    event: Mapping[str, Any],
    key: str,
    kind: type,
    expected: str,
    *,
    name: str | None = None,
    required: bool = False,
) -> Any:
    """``event[key]`` checked against ``kind``; None for an absent or null optional field."""
    value = event.get(key)
    if value is None:
        if required:
            raise InvalidEventError(f"{name or key} is missing")
        return None
    if not isinstance(value, kind):
        raise _wrong(name or key, expected, value)
    return value


def _mapping(
    event: Mapping[str, Any], key: str, *, name: str | None = None, required: bool = False
) -> Mapping[str, Any]:
    value = _field(event, key, Mapping, "an object", name=name, required=required)
    return value if value is not None else {}


def _pairs(event: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """An object of single values (``headers``, ``queryStringParameters``) as (name, value)
    pairs."""
    out: list[tuple[str, str]] = []
    for name, value in _mapping(event, key).items():
        if not isinstance(name, str):
            raise _wrong(f"a name in {key}", "a string", name)
        out.append((name, _text(value, f"{key}[{name[:40]!r}]")))
    return out


def _multi_pairs(event: Mapping[str, Any], key: str) -> list[tuple[str, str]]:
    """An object of value lists (``multiValueHeaders``, ``multiValueQueryStringParameters``)
    as (name, value) pairs, repeated names in order."""
    out: list[tuple[str, str]] = []
    for name, values in _mapping(event, key).items():
        if not isinstance(name, str):
            raise _wrong(f"a name in {key}", "a string", name)
        where = f"{key}[{name[:40]!r}]"
        if values is None:
            continue
        if not isinstance(values, list):
            raise _wrong(where, "a list", values)
        out.extend((name, _text(v, where)) for v in values)
    return out


def _payload_version(event: Any) -> str:
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"the event must be an object, not {_kind(event)}")
    if event.get("version") == _V2:
        return _V2
    if "httpMethod" in event or event.get("version") == _V1:
        return _V1
    keys = sorted(str(k)[:40] for k in event)[:12]
    raise InvalidEventError(
        f"not an API Gateway (payload 1.0 or 2.0) or Function URL event: keys {keys}"
    )


def _strip_stage(path: str, stage: str | None) -> str:
    """An HTTP API stage other than ``$default`` prefixes the path with its name."""
    if not stage or stage == "$default":
        return path
    prefix = "/" + stage
    if path == prefix:
        return "/"
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
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
    ctx = _mapping(event, "requestContext", required=True)
    http = _mapping(ctx, "http", name="requestContext.http", required=True)
    method = _field(
        http, "method", str, "a string", name="requestContext.http.method", required=True
    )
    stage = _field(ctx, "stage", str, "a string", name="requestContext.stage")
    raw_path = _field(event, "rawPath", str, "a string", required=True)
    raw_query = _field(event, "rawQueryString", str, "a string") or ""
    # Checked though unused: a malformed field is a malformed event.
    _pairs(event, "queryStringParameters")
    cookies = _field(event, "cookies", list, "a list")
    if cookies is not None and not all(isinstance(c, str) for c in cookies):
        raise InvalidEventError("cookies must be a list of strings")
    _field(event, "body", str, "a string")
    _field(event, "isBase64Encoded", bool, "a boolean")
    if not method:
        raise InvalidEventError("requestContext.http.method is empty")
    # rawPath is the path as sent (percent-encoded); aiohttp's request.path, the other adapter's
    # input, is decoded.
    path = _strip_stage(unquote(raw_path or "/"), stage)
    # rawQueryString keeps repeated parameters apart and commas inside values intact;
    # queryStringParameters joins both with commas and cannot be split back.
    query = parse_qsl(raw_query, keep_blank_values=True)
    headers = _joined_headers(_pairs(event, "headers"))
    return CoreRequest(method.upper(), path, tuple(query), headers)


def _v1_request(event: Mapping[str, Any]) -> CoreRequest:
    method = _field(event, "httpMethod", str, "a string", required=True)
    path = _field(event, "path", str, "a string", required=True) or "/"
    ctx = _mapping(event, "requestContext")
    stage = _field(ctx, "stage", str, "a string", name="requestContext.stage")
    single_query = _pairs(event, "queryStringParameters")
    multi_query = _multi_pairs(event, "multiValueQueryStringParameters")
    single_headers = _pairs(event, "headers")
    multi_headers = _multi_pairs(event, "multiValueHeaders")
    _field(event, "body", str, "a string")
    _field(event, "isBase64Encoded", bool, "a boolean")
    if not method:
        raise InvalidEventError("httpMethod is empty")
    if event.get("version") == _V1:  # HTTP API with payload 1.0 keeps a named stage in the path
        path = _strip_stage(path, stage)
    # The multi-value forms keep repeated parameters and headers; the single-value ones keep
    # only the last of each.
    query = multi_query or single_query
    headers = _joined_headers(multi_headers or single_headers)
    return CoreRequest(method.upper(), path, tuple(query), headers)


def to_core_request(event: Any) -> tuple[CoreRequest, str]:
    """The request an event carries, and the event's payload version ("1.0" or "2.0").

    Raises ``InvalidEventError`` (naming the field) for anything that is not a well-formed
    payload 1.0 or 2.0 HTTP event."""
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


def _problem_response(problem: Problem, instance: str | None = None) -> CoreResponse:
    headers = {"Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store"}
    return CoreResponse(problem.status, headers, problem.body(instance))


def _too_large(size: int, limit: int, req: CoreRequest) -> CoreResponse:
    """The 413 for an answer whose response document would exceed Lambda's limit (the core's own
    ``max_response_bytes`` check catches encoded images before this; this catches the rest)."""
    problem = Problem(
        413,
        "response_too_large",
        f"the response of {size} bytes exceeds the function's limit of {limit} bytes; ask for "
        "fewer pixels or a more compact format",
        limit=limit,
        value=size,
    )
    return _problem_response(problem, req.path)


def _invalid_event(reason: str) -> CoreResponse:
    return _problem_response(Problem(400, "invalid_event", f"malformed event: {reason}"))


def _internal_error() -> CoreResponse:
    return _problem_response(Problem(500, "internal_error", "internal error"))


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
        import asyncio  # here, not at import: the handler's import stays light

        self.loop = asyncio.new_event_loop()
        self.state: ServiceState | None = None
        self.invocations = 0
        self._lock = threading.Lock()

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        """The response document for ``event``. Never raises for an event: a malformed one is
        answered 400 ``invalid_event``, an unexpected failure 500 ``internal_error`` (both
        logged)."""
        try:
            req = to_core_request(event)[0]
        except InvalidEventError as exc:
            log.warning("refused a malformed event: %s", exc)
            return to_lambda_response(_invalid_event(str(exc)))
        try:
            return self._respond(req)
        except Exception:
            log.exception("unexpected error answering %s %s", req.method, req.path[:200])
            return to_lambda_response(_internal_error())

    def _respond(self, req: CoreRequest) -> dict[str, Any]:
        with self._lock:
            answer = self._answer(req)
            try:
                resp = self.loop.run_until_complete(answer)
            finally:
                answer.close()  # not started if the loop failed: no "never awaited" warning
            self.invocations += 1
        doc = to_lambda_response(resp)
        size = _document_size(doc)
        if size > self.payload_limit:
            log.warning(
                "response of %d bytes for %s over the %d byte limit",
                size,
                req.path[:200],
                self.payload_limit,
            )
            doc = to_lambda_response(_too_large(size, self.payload_limit, req))
        return doc

    async def _answer(self, req: CoreRequest) -> CoreResponse:
        from .core import handle  # the service core and the library: on the first request
        from .state import ServiceState

        if self.state is None:
            self.state = await ServiceState.start(self.config, warm=False)
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


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda handler (``cloudroi.serverless.handler``). The first invocation of an execution
    environment reads the configuration and opens the shared state; later ones reuse both. Every
    event gets a response document (a malformed one a 400); nothing is raised to the runtime.
    The garbage collector paused for the cold start (``gcpause``) resumes once it has answered."""
    status: Any = None
    try:
        try:
            app = _current()
        except Exception:
            log.exception("the function could not start")
            return to_lambda_response(_internal_error())
        response = app(event, context)
        status = response.get("statusCode")
        return response
    finally:  # after an error, collect first: its cycles may hold the request's buffers
        gcpause.resume(collect=not isinstance(status, int) or status >= 400)


def reset() -> None:
    """Forget the process's function state (closing it), so the next invocation starts cold."""
    global _app
    with _app_lock:
        app, _app = _app, None
    if app is not None:
        app.close()


# Lambda runs SnapStart hooks registered while the handler's module is imported.
_register_snapstart_hooks()
