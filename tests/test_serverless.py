"""The Lambda handler in-process: real-format API Gateway and Function URL events (tests/events/),
the real range server and moto's S3 server upstream, every error status, Lambda's 6 MB response
limit, cold then warm invocations, and the real runtime client (awslambdaric) in a subprocess."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import hypothesis
import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.errors import CloudROIError
from cloudroi.service import ServiceConfig
from cloudroi.service import lambda_handler as serverless
from cloudroi.service.lambda_handler import LambdaApp, body_limit, to_core_request
from cloudroi.testing import Fault, RangeServer
from tests.lambda_runtime_api import RuntimeClient
from tests.upstream import Upstream

EVENTS = Path(__file__).resolve().parent / "events"
KINDS = ("http-api-v2", "rest-api-v1", "function-url")
NODATA = -9999.0
GT = (500000.0, 10.0, 0.0, 4200000.0, 0.0, -10.0)


# --------------------------------------------------------------------------------------------
# events and answers
# --------------------------------------------------------------------------------------------


def make_event(
    kind: str,
    path: str,
    query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The fixture event of ``kind`` with its request line replaced the way API Gateway or the
    Function URL would fill every field that carries it."""
    event: dict[str, Any] = json.loads((EVENTS / f"{kind}.json").read_text())
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    if event.get("version") == "2.0":
        stage = event["requestContext"]["stage"]
        raw_path = path if stage == "$default" else f"/{stage}{path}"
        event["rawPath"] = raw_path
        event["requestContext"]["http"]["path"] = raw_path
        event["requestContext"]["http"]["method"] = method
        event["rawQueryString"] = urlencode(pairs)
        joined: dict[str, str] = {}
        for k, v in pairs:
            joined[k] = f"{joined[k]},{v}" if k in joined else v
        if joined:
            event["queryStringParameters"] = joined
        else:
            event.pop("queryStringParameters", None)
        for k, v in (headers or {}).items():
            event["headers"][k.lower()] = v
    else:
        event["path"] = path
        event["httpMethod"] = method
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
        event["pathParameters"] = {"proxy": path.lstrip("/")}
        multi: dict[str, list[str]] = {}
        for k, v in pairs:
            multi.setdefault(k, []).append(v)
        event["multiValueQueryStringParameters"] = multi or None
        event["queryStringParameters"] = {k: v[-1] for k, v in multi.items()} or None
        for k, v in (headers or {}).items():
            event["headers"][k] = v
            event["multiValueHeaders"][k] = [v]
    return event


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    base64: bool
    size: int  # bytes of the whole response document, as Lambda serializes it

    def json(self) -> Any:
        return json.loads(self.body)


def answer_of(doc: Mapping[str, Any]) -> Answer:
    assert set(doc) >= {"statusCode", "headers", "body", "isBase64Encoded"}
    body = base64.b64decode(doc["body"]) if doc["isBase64Encoded"] else doc["body"].encode()
    return Answer(
        doc["statusCode"],
        dict(doc["headers"]),
        body,
        doc["isBase64Encoded"],
        len(json.dumps(doc).encode()),
    )


@dataclass
class LambdaContext:
    """The attributes of the context object Lambda passes (the handler does not rely on it)."""

    function_name: str = "cloudroi"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    memory_limit_in_mb: int = 1769

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def invoke(app: LambdaApp, event: Mapping[str, Any]) -> Answer:
    doc = app(event, LambdaContext())
    # What the runtime sends back must be plain JSON.
    json.loads(json.dumps(doc))
    return answer_of(doc)


def problem(ans: Answer, status: int, code: str) -> dict[str, Any]:
    assert ans.status == status, ans.body
    assert ans.headers["Content-Type"] == "application/problem+json"
    assert ans.headers["Cache-Control"] == "no-store"
    assert not ans.base64
    doc = ans.json()
    assert (doc["status"], doc["code"]) == (status, code), doc
    assert doc["detail"]
    return doc


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def rgb_pixels() -> np.ndarray:
    yy, xx = np.mgrid[0:300, 0:400]
    return np.stack([xx % 251, yy % 241, (xx + 2 * yy) % 239]).astype(np.uint8)


def rgb_mask() -> np.ndarray:
    mask = np.full((300, 400), 255, np.uint8)
    mask[:40, :60] = 0
    return mask


def dem_pixels(size: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    dem = (xx * 1.5 + yy * 0.25).astype(np.float32)
    dem[100:140, 200:260] = NODATA
    return dem


def noise_pixels() -> np.ndarray:
    """Incompressible, so that the blocks lie well beyond the header's 32 KiB first GET."""
    return np.random.default_rng(4).integers(0, 65535, (512, 512), dtype=np.uint16)


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {
        "rgb.tif": write_cog(rgb_pixels(), tile=128, mask=rgb_mask(), epsg=32633, transform=GT),
        "dem.tif": write_cog(
            dem_pixels(), tile=128, predictor=3, nodata=NODATA, epsg=32633, transform=GT
        ),
        "noise.tif": write_cog(noise_pixels(), tile=128),
        "text.tif": b"this is not a TIFF at all" * 10,
    }


@pytest.fixture
def upstream(server: RangeServer, images: dict[str, bytes]) -> Upstream:
    return Upstream.publish(server, images, "fn")


@pytest.fixture
def bucket(s3_client: Any, images: dict[str, bytes]) -> str:
    name = f"fn-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    for key, data in images.items():
        s3_client.put_object(Bucket=name, Key=f"cogs/{key}", Body=data)
    return name


@pytest.fixture
def make_app(upstream: Upstream, s3_server: str) -> Iterator[Any]:
    apps: list[LambdaApp] = []

    def make(payload_limit: int = serverless.LAMBDA_PAYLOAD_LIMIT, **overrides: Any) -> LambdaApp:
        overrides.setdefault("allowed_sources", (upstream.root,))
        overrides.setdefault("s3_endpoint_url", s3_server)
        app = LambdaApp(ServiceConfig(**overrides), payload_limit=payload_limit)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


# --------------------------------------------------------------------------------------------
# 200s for every event kind
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_region_png_npy_and_info_from_http(kind: str, make_app: Any, upstream: Upstream) -> None:
    app = make_app()
    ans = invoke(
        app,
        make_event(kind, "/region", {"url": upstream.url("rgb.tif"), "window": "20,10,200,100"}),
    )
    assert ans.status == 200, ans.body
    assert ans.base64
    assert ans.headers["Content-Type"] == "image/png"
    png = imagecodecs.png_decode(ans.body)
    assert png.shape == (100, 200, 4)
    np.testing.assert_array_equal(
        np.moveaxis(png[:, :, :3], -1, 0), rgb_pixels()[:, 10:110, 20:220]
    )
    np.testing.assert_array_equal(png[:, :, 3], rgb_mask()[10:110, 20:220])

    ans = invoke(
        app,
        make_event(
            kind,
            "/region",
            {"url": upstream.url("dem.tif"), "window": "150,80,128,64", "format": "npy"},
        ),
    )
    assert (ans.status, ans.headers["Content-Type"], ans.base64) == (200, "application/x-npy", True)
    arr = np.load(io.BytesIO(ans.body), allow_pickle=False)
    np.testing.assert_array_equal(arr, dem_pixels()[np.newaxis, 80:144, 150:278])
    assert re.fullmatch(r'"[0-9a-f]{32}"', ans.headers["ETag"])

    ans = invoke(app, make_event(kind, "/info", {"url": upstream.url("dem.tif")}))
    assert (ans.status, ans.base64) == (200, False)
    assert ans.headers["Content-Type"] == "application/json"
    doc = ans.json()
    assert (doc["width"], doc["height"], doc["dtype"], doc["nodata"]) == (
        320,
        320,
        "float32",
        NODATA,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_region_from_s3(kind: str, make_app: Any, bucket: str) -> None:
    app = make_app(allowed_sources=(f"s3://{bucket}/cogs/",))
    url = f"s3://{bucket}/cogs/dem.tif"
    ans = invoke(
        app,
        make_event(
            kind, "/region", {"url": url, "window": "0,0,160,160", "level": "1", "format": "npy"}
        ),
    )
    assert (ans.status, ans.base64) == (200, True), ans.body
    arr = np.load(io.BytesIO(ans.body))
    np.testing.assert_array_equal(arr[0], dem_pixels()[::2, ::2])
    ans = invoke(
        app,
        make_event(
            kind,
            "/region",
            {"url": f"s3://{bucket}/cogs/rgb.tif", "window": "0,0,64,64", "format": "png"},
        ),
    )
    assert ans.status == 200
    np.testing.assert_array_equal(
        np.moveaxis(imagecodecs.png_decode(ans.body)[:, :, :3], -1, 0), rgb_pixels()[:, :64, :64]
    )
    problem(
        invoke(app, make_event(kind, "/info", {"url": f"s3://{bucket}/cogs/missing.tif"})),
        404,
        "source_not_found",
    )
    problem(
        invoke(app, make_event(kind, "/info", {"url": f"s3://{bucket}/other/dem.tif"})),
        403,
        "source_not_allowed",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_healthz_metrics_openapi_and_head(kind: str, make_app: Any) -> None:
    app = make_app()
    ans = invoke(app, make_event(kind, "/healthz"))
    assert (ans.status, ans.base64, ans.json()["status"]) == (200, False, "ok")
    ans = invoke(app, make_event(kind, "/metrics"))
    assert ans.status == 200
    assert ans.headers["Content-Type"].startswith("text/plain")
    assert 'cloudroi_requests_total{endpoint="/healthz",status="200"} 1' in ans.body.decode()
    ans = invoke(app, make_event(kind, "/openapi.json"))
    assert ans.json()["openapi"].startswith("3.1")
    ans = invoke(app, make_event(kind, "/healthz", method="HEAD"))
    assert (ans.status, ans.body) == (200, b"")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_client_errors(kind: str, make_app: Any, upstream: Upstream) -> None:
    app = make_app(max_output_pixels=10_000)
    rgb = upstream.url("rgb.tif")

    def call(path: str, query: Any = (), **kw: Any) -> Answer:
        return invoke(app, make_event(kind, path, query, **kw))

    problem(call("/region", {"url": rgb, "window": "390,0,20,20"}), 400, "invalid_window")
    problem(
        call("/region", {"url": rgb, "window": "0,0,8,8", "colour": "red"}),
        400,
        "unknown_parameter",
    )
    # A repeated parameter must arrive repeated (payload 2.0 joins them in
    # queryStringParameters; rawQueryString keeps them apart).
    doc = problem(
        call("/region", [("url", rgb), ("window", "0,0,8,8"), ("window", "0,0,9,9")]),
        400,
        "invalid_parameter",
    )
    assert "window" in doc["detail"]
    problem(call("/region", {"window": "0,0,8,8"}), 400, "missing_parameter")
    problem(
        call("/info", {"url": "http://169.254.169.254/latest/meta-data/"}),
        403,
        "source_not_allowed",
    )
    problem(call("/info", {"url": upstream.url("missing.tif")}), 404, "source_not_found")
    problem(call("/tiles/1/2/3"), 404, "not_found")
    ans = call("/info", {"url": rgb}, method="POST")
    problem(ans, 405, "method_not_allowed")
    assert ans.headers["Allow"] == "GET, HEAD"
    problem(call("/region", {"url": rgb, "window": "0,0,200,200"}), 413, "too_many_pixels")
    problem(call("/info", {"url": upstream.url("text.tif")}), 422, "invalid_tiff")
    # Every refusal above was decided from the header at most: no block was fetched.
    opens = upstream.server.requests_for(upstream.prefix + "rgb.tif")
    assert all((e.range or "").startswith("bytes=0-") for e in opens), opens


@pytest.mark.parametrize("kind", KINDS)
def test_upstream_errors(kind: str, make_app: Any, upstream: Upstream) -> None:
    app = make_app(request_timeout=0.3)
    upstream.server.fault = lambda request, etag: Fault("ignore_range")
    problem(
        invoke(app, make_event(kind, "/info", {"url": upstream.url("rgb.tif")})),
        502,
        "range_not_supported",
    )
    upstream.server.fault = None
    upstream.server.latency = 1.0
    problem(
        invoke(app, make_event(kind, "/info", {"url": upstream.url("dem.tif")})), 504, "timeout"
    )
    upstream.server.latency = 0.0
    # The loop survives a timed-out invocation: the next one is answered normally.
    ans = invoke(app, make_event(kind, "/info", {"url": upstream.url("rgb.tif")}))
    assert ans.status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_conditional_request_headers_reach_the_core(
    kind: str, make_app: Any, upstream: Upstream
) -> None:
    app = make_app()
    query = {"url": upstream.url("rgb.tif"), "window": "0,0,64,64"}
    etag = invoke(app, make_event(kind, "/region", query)).headers["ETag"]
    ans = invoke(app, make_event(kind, "/region", query, headers={"If-None-Match": etag}))
    assert (ans.status, ans.body, ans.headers["ETag"]) == (304, b"", etag)


# --------------------------------------------------------------------------------------------
# Lambda's response limit
# --------------------------------------------------------------------------------------------


def test_bodies_over_lambdas_6_mb_limit_are_413(make_app: Any, server: RangeServer) -> None:
    prefix = f"big-{uuid.uuid4().hex[:8]}/"
    server.add(prefix + "big.tif", write_cog(dem_pixels(1400), tile=256, predictor=3))
    app = make_app(allowed_sources=(server.url(prefix),))
    assert app.config.max_response_bytes == body_limit() < 6 * 1024 * 1024 * 3 // 4
    url = server.url(prefix + "big.tif")
    # 1000 x 1000 float32 is 4 MB raw and 5.3 MB in base64: under the limit.
    ans = invoke(
        app,
        make_event(
            "http-api-v2", "/region", {"url": url, "window": "0,0,1000,1000", "format": "npy"}
        ),
    )
    assert ans.status == 200
    assert 5_000_000 < ans.size <= serverless.LAMBDA_PAYLOAD_LIMIT
    np.testing.assert_array_equal(np.load(io.BytesIO(ans.body))[0], dem_pixels(1400)[:1000, :1000])
    # 1400 x 1400 float32 is 7.8 MB raw, 10.5 MB in base64: refused with a 413 instead of the
    # invocation failing with Lambda's own payload error.
    ans = invoke(
        app,
        make_event(
            "http-api-v2", "/region", {"url": url, "window": "0,0,1400,1400", "format": "npy"}
        ),
    )
    doc = problem(ans, 413, "response_too_large")
    assert doc["limit"] == body_limit()
    assert doc["value"] > doc["limit"]


def test_a_smaller_configured_response_cap_is_kept(make_app: Any) -> None:
    assert make_app(max_response_bytes=1000).config.max_response_bytes == 1000
    assert make_app(max_response_bytes=10**9).config.max_response_bytes == body_limit()


@pytest.mark.parametrize("kind", KINDS)
def test_any_answer_over_the_payload_limit_is_413(kind: str, make_app: Any) -> None:
    # The core caps encoded images; the adapter also measures the whole response document, so
    # even a JSON answer (here the OpenAPI document, about 17 KB) cannot exceed the limit.
    app = make_app(payload_limit=17_000)
    ans = invoke(app, make_event(kind, "/openapi.json"))
    doc = problem(ans, 413, "response_too_large")
    assert doc["limit"] == 17_000
    assert ans.size < 17_000
    assert invoke(app, make_event(kind, "/healthz")).status == 200


# --------------------------------------------------------------------------------------------
# cold and warm
# --------------------------------------------------------------------------------------------


def metric(app: LambdaApp, name: str) -> float:
    text = invoke(app, make_event("http-api-v2", "/metrics")).body.decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m is not None, text
    return float(m.group(1))


@pytest.mark.parametrize("kind", KINDS)
def test_warm_invocations_reuse_the_state(kind: str, make_app: Any, upstream: Upstream) -> None:
    app = make_app()
    event = make_event(
        kind,
        "/region",
        {"url": upstream.url("noise.tif"), "window": "0,0,512,512", "format": "npy"},
    )
    cold = invoke(app, event)
    cold_gets = upstream.gets("noise.tif")
    state, loop = app.state, app.loop
    cold_upstream = metric(app, "cloudroi_upstream_requests_total")
    warm = invoke(app, event)
    warm_gets = upstream.gets("noise.tif") - cold_gets
    assert cold.status == warm.status == 200
    assert warm.body == cold.body
    np.testing.assert_array_equal(np.load(io.BytesIO(cold.body))[0], noise_pixels())
    # Cold: the header GET, then the 16 blocks (coalesced into as few GETs as the 2 MiB cap lets).
    # Warm: the same state, so only the open's one GET (the ETag must be checked); every block
    # comes from the caches.
    assert cold_gets >= 2
    assert warm_gets == 1
    assert app.state is state
    assert app.loop is loop
    assert metric(app, "cloudroi_upstream_requests_total") - cold_upstream == warm_gets
    assert app.invocations >= 4


def test_warm_s3_invocation_makes_fewer_requests(make_app: Any, bucket: str) -> None:
    app = make_app(allowed_sources=(f"s3://{bucket}/cogs/",))
    event = make_event(
        "function-url",
        "/region",
        {"url": f"s3://{bucket}/cogs/noise.tif", "window": "0,0,512,512", "format": "npy"},
    )
    assert invoke(app, event).status == 200
    cold = metric(app, "cloudroi_upstream_requests_total")
    assert invoke(app, event).status == 200
    warm = metric(app, "cloudroi_upstream_requests_total") - cold
    assert cold >= 2
    assert warm == 1


def test_module_handler_configured_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, upstream: Upstream
) -> None:
    serverless.reset()
    monkeypatch.setenv("CLOUDROI_ALLOWED_SOURCES", upstream.root)
    monkeypatch.setenv("CLOUDROI_MAX_TILES", "2")
    try:
        ans = answer_of(
            serverless.handler(
                make_event("rest-api-v1", "/info", {"url": upstream.url("rgb.tif")}), None
            )
        )
        assert ans.status == 200
        first = serverless._current()
        assert first.config.max_tiles == 2
        assert first.config.max_response_bytes == body_limit()
        ans = answer_of(
            serverless.handler(
                make_event(
                    "http-api-v2",
                    "/region",
                    {"url": upstream.url("rgb.tif"), "window": "0,0,400,300"},
                ),
                None,
            )
        )
        problem(ans, 413, "limit_exceeded")
        assert serverless._current() is first  # the same state and loop for the warm call
        assert first.invocations == 2
    finally:
        serverless.reset()


# --------------------------------------------------------------------------------------------
# event translation
# --------------------------------------------------------------------------------------------


def test_a_named_http_api_stage_is_not_part_of_the_route(make_app: Any) -> None:
    event = make_event("http-api-v2", "/healthz")
    event["requestContext"]["stage"] = "prod"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/prod/healthz"
    assert to_core_request(event)[0].path == "/healthz"
    assert invoke(make_app(), event).status == 200


def test_query_values_and_headers_arrive_intact() -> None:
    url = "https://example.com/a b/c+d.tif?x=1&y=2"
    for kind in KINDS:
        event = make_event(
            kind,
            "/region",
            [("url", url), ("window", "1,2,3,4")],
            headers={"If-None-Match": '"abc"'},
        )
        req, version = to_core_request(event)
        assert req.query == (("url", url), ("window", "1,2,3,4"))
        assert req.headers["if-none-match"] == '"abc"'
        assert req.method == "GET"
        assert version == ("1.0" if kind == "rest-api-v1" else "2.0")
    event = make_event("http-api-v2", "/healthz")
    event["rawPath"] = "/heal%74hz"
    assert to_core_request(event)[0].path == "/healthz"
    event = make_event("rest-api-v1", "/info")
    event["multiValueHeaders"]["Accept"] = ["image/png", "*/*"]
    assert to_core_request(event)[0].headers["accept"] == "image/png, */*"


# --------------------------------------------------------------------------------------------
# malformed events
# --------------------------------------------------------------------------------------------

DROP = object()  # a field to remove rather than replace


def healthz(kind: str) -> dict[str, Any]:
    return make_event(kind, "/healthz", headers={"X-Secret-Token": "s3cr3t-in-a-header"})


def changed(base: str | dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The /healthz event of kind ``base`` (or a copy of the event ``base``) with the field at
    ``path`` replaced by ``value`` (or removed for ``DROP``)."""
    event = healthz(base) if isinstance(base, str) else json.loads(json.dumps(base))
    where = event
    for key in path[:-1]:
        where = where[key]
    if value is DROP:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return event


V2, V1 = "http-api-v2", "rest-api-v1"
SCHEDULED = {"version": "0", "source": "aws.events", "detail-type": "Scheduled Event"}

#: (id, event, words the problem's detail must contain)
MALFORMED: list[tuple[str, Any, str]] = [
    ("empty object", {}, "not an API Gateway"),
    ("null", None, "must be an object, not null"),
    ("empty list", [], "must be an object, not a list"),
    ("list of events", [healthz(V2)], "not a list"),
    ("string", "GET /healthz", "not a string"),
    ("event as JSON text", json.dumps(healthz(V2)), "not a string"),
    ("number", 42, "not a number"),
    ("float", 2.0, "not a number"),
    ("boolean", True, "not a boolean"),
    ("bytes", b"GET /healthz", "not a bytes"),
    ("huge string", "x" * 1_000_000, "not a string"),
    ("scheduled event", SCHEDULED, "not an API Gateway"),
    ("version 2.0 as a number", {**healthz(V2), "version": 2.0}, "not an API Gateway"),
    # payload 2.0 (HTTP API and Function URL)
    ("v2 rawPath null", changed(V2, ("rawPath",), None), "rawPath is missing"),
    ("v2 rawPath missing", changed(V2, ("rawPath",), DROP), "rawPath is missing"),
    ("v2 rawPath number", changed(V2, ("rawPath",), 123), "rawPath must be a string, not a number"),
    ("v2 rawPath huge number", changed(V2, ("rawPath",), 10**40), "rawPath must be a string"),
    ("v2 rawPath list", changed(V2, ("rawPath",), ["/healthz"]), "rawPath must be a string"),
    ("v2 rawPath bytes", changed(V2, ("rawPath",), b"/healthz"), "rawPath must be a string"),
    (
        "v2 headers list",
        changed(V2, ("headers",), [["accept", "*/*"]]),
        "headers must be an object, not a list",
    ),
    ("v2 headers string", changed(V2, ("headers",), "accept: */*"), "headers must be an object"),
    (
        "v2 header value list",
        changed(V2, ("headers", "accept"), ["*/*"]),
        "headers['accept'] must be a string, not a list",
    ),
    ("v2 header value null", changed(V2, ("headers", "accept"), None), "headers['accept']"),
    ("v2 header value object", changed(V2, ("headers", "accept"), {"q": 1}), "headers['accept']"),
    (
        "v2 requestContext string",
        changed(V2, ("requestContext",), "ctx"),
        "requestContext must be an object, not a string",
    ),
    ("v2 requestContext null", changed(V2, ("requestContext",), None), "requestContext is missing"),
    ("v2 requestContext list", changed(V2, ("requestContext",), []), "requestContext must be"),
    (
        "v2 http string",
        changed(V2, ("requestContext", "http"), "GET"),
        "requestContext.http must be an object, not a string",
    ),
    (
        "v2 http null",
        changed(V2, ("requestContext", "http"), None),
        "requestContext.http is missing",
    ),
    (
        "v2 method number",
        changed(V2, ("requestContext", "http", "method"), 1),
        "requestContext.http.method must be a string",
    ),
    (
        "v2 method missing",
        changed(V2, ("requestContext", "http", "method"), DROP),
        "requestContext.http.method is missing",
    ),
    (
        "v2 method empty",
        changed(V2, ("requestContext", "http", "method"), ""),
        "requestContext.http.method is empty",
    ),
    (
        "v2 stage number",
        changed(V2, ("requestContext", "stage"), 7),
        "requestContext.stage must be a string",
    ),
    (
        "v2 rawQueryString number",
        changed(V2, ("rawQueryString",), 123),
        "rawQueryString must be a string, not a number",
    ),
    ("v2 rawQueryString list", changed(V2, ("rawQueryString",), ["url=x"]), "rawQueryString"),
    (
        "v2 rawQueryString boolean",
        changed(V2, ("rawQueryString",), True),
        "rawQueryString must be a string, not a boolean",
    ),
    (
        "v2 queryStringParameters list",
        changed(V2, ("queryStringParameters",), [["url", "x"]]),
        "queryStringParameters must be an object",
    ),
    ("v2 cookies string", changed(V2, ("cookies",), "a=b"), "cookies must be a list"),
    ("v2 cookies numbers", changed(V2, ("cookies",), [1, 2]), "cookies must be a list of strings"),
    ("v2 body object", changed(V2, ("body",), {"a": 1}), "body must be a string"),
    (
        "v2 isBase64Encoded string",
        changed(V2, ("isBase64Encoded",), "yes"),
        "isBase64Encoded must be a boolean",
    ),
    # payload 1.0 (REST API)
    ("v1 httpMethod null", changed(V1, ("httpMethod",), None), "httpMethod is missing"),
    ("v1 httpMethod number", changed(V1, ("httpMethod",), 5), "httpMethod must be a string"),
    ("v1 httpMethod empty", changed(V1, ("httpMethod",), ""), "httpMethod is empty"),
    ("v1 path null", changed(V1, ("path",), None), "path is missing"),
    ("v1 path list", changed(V1, ("path",), ["/healthz"]), "path must be a string"),
    (
        "v1 queryStringParameters list",
        changed(V1, ("queryStringParameters",), ["url"]),
        "queryStringParameters must be an object, not a list",
    ),
    (
        "v1 queryStringParameters string",
        changed(V1, ("queryStringParameters",), "url=x"),
        "queryStringParameters must be an object",
    ),
    (
        "v1 query value object",
        changed(V1, ("queryStringParameters",), {"url": {"a": 1}}),
        "queryStringParameters['url'] must be a string, not an object",
    ),
    (
        "v1 multiValueQueryStringParameters list",
        changed(V1, ("multiValueQueryStringParameters",), []),
        "multiValueQueryStringParameters must be an object",
    ),
    (
        "v1 multi query value string",
        changed(V1, ("multiValueQueryStringParameters",), {"url": "x"}),
        "multiValueQueryStringParameters['url'] must be a list, not a string",
    ),
    (
        "v1 multi query nested list",
        changed(V1, ("multiValueQueryStringParameters",), {"url": [["x"]]}),
        "multiValueQueryStringParameters['url'] must be a string, not a list",
    ),
    (
        "v1 multi query null item",
        changed(V1, ("multiValueQueryStringParameters",), {"url": [None]}),
        "must be a string, not null",
    ),
    ("v1 headers list", changed(V1, ("headers",), []), "headers must be an object"),
    ("v1 header value list", changed(V1, ("headers", "Accept"), ["*/*"]), "headers['Accept']"),
    (
        "v1 multiValueHeaders string",
        changed(V1, ("multiValueHeaders",), "Accept: */*"),
        "multiValueHeaders must be an object",
    ),
    (
        "v1 multi header value string",
        changed(V1, ("multiValueHeaders", "Accept"), "*/*"),
        "multiValueHeaders['Accept'] must be a list",
    ),
    (
        "v1 requestContext string",
        changed(V1, ("requestContext",), "ctx"),
        "requestContext must be an object",
    ),
    (
        "v1 stage list",
        changed(V1, ("requestContext", "stage"), ["Prod"]),
        "requestContext.stage must be a string",
    ),
    (
        "v1 by version without httpMethod",
        {"version": "1.0", "path": "/healthz"},
        "httpMethod is missing",
    ),
]


@pytest.fixture(scope="module")
def plain_app() -> Iterator[LambdaApp]:
    """A function with the default configuration: enough for /healthz, which reads no storage."""
    app = LambdaApp(ServiceConfig())
    yield app
    app.close()


@pytest.mark.parametrize(
    ("event", "words"), [(e, w) for _, e, w in MALFORMED], ids=[name for name, _, _ in MALFORMED]
)
def test_malformed_events_are_400(
    event: Any, words: str, plain_app: LambdaApp, caplog: pytest.LogCaptureFixture
) -> None:
    before = plain_app.invocations
    with caplog.at_level("WARNING", logger="cloudroi.serverless"):
        doc = problem(invoke(plain_app, event), 400, "invalid_event")
    assert words in doc["detail"], doc
    assert "instance" not in doc
    assert len(doc["detail"]) < 300
    assert plain_app.invocations == before  # refused before the core
    # Logged once at warning level with the reason, never with the event (or its headers).
    records = [r for r in caplog.records if r.name == "cloudroi.serverless"]
    assert [r.levelname for r in records] == ["WARNING"]
    message = records[0].getMessage()
    assert words in message
    assert "s3cr3t" not in message
    assert len(message) < 400


#: Odd but well-formed events: answered by the core, never refused as malformed.
ACCEPTED: list[tuple[str, Any, dict[str, str]]] = [
    (
        "v2 numeric and boolean header values",
        changed(V2, ("headers",), {"x-count": 5, "x-ratio": 0.5, "x-flag": True}),
        {"x-count": "5", "x-ratio": "0.5", "x-flag": "True"},
    ),
    ("v2 headers null", changed(V2, ("headers",), None), {}),
    ("v2 headers missing", changed(V2, ("headers",), DROP), {}),
    ("v2 rawQueryString null", changed(V2, ("rawQueryString",), None), {}),
    ("v2 cookies", changed(V2, ("cookies",), ["a=b", "c=d"]), {}),
    ("v2 stage null", changed(V2, ("requestContext", "stage"), None), {}),
    (
        "v1 query parameters null",
        changed(
            changed(V1, ("queryStringParameters",), None),
            ("multiValueQueryStringParameters",),
            None,
        ),
        {},
    ),
    ("v1 multi header value null", changed(V1, ("multiValueHeaders", "Accept"), None), {}),
    (
        "v1 multiValueHeaders null",
        changed(V1, ("multiValueHeaders",), None),
        {"accept": "*/*", "x-secret-token": "s3cr3t-in-a-header"},
    ),
    (
        "v1 numeric header in multiValueHeaders",
        changed(V1, ("multiValueHeaders", "X-Count"), [1, 2]),
        {"x-count": "1, 2"},
    ),
]


@pytest.mark.parametrize(
    ("event", "headers"), [(e, h) for _, e, h in ACCEPTED], ids=[name for name, _, _ in ACCEPTED]
)
def test_odd_but_well_formed_events_are_answered(
    event: Any, headers: dict[str, str], plain_app: LambdaApp
) -> None:
    req = to_core_request(event)[0]
    assert (req.method, req.path) == ("GET", "/healthz")
    assert headers.items() <= req.headers.items()
    ans = invoke(plain_app, event)
    assert (ans.status, ans.json()["status"]) == (200, "ok")


def test_an_empty_raw_path_is_the_root(plain_app: LambdaApp) -> None:
    ans = invoke(plain_app, changed(V2, ("rawPath",), ""))
    problem(ans, 404, "not_found")


def test_malformed_events_raise_a_typed_error_from_to_core_request() -> None:
    with pytest.raises(serverless.InvalidEventError, match="rawPath must be a string"):
        to_core_request(changed(V2, ("rawPath",), 5))
    with pytest.raises(CloudROIError):
        to_core_request([])


def test_an_internal_failure_is_a_500_problem(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    assert invoke(app, healthz(V2)).status == 200
    app.close()  # the loop is gone: answering fails inside the function
    with caplog.at_level("ERROR", logger="cloudroi.serverless"):
        doc = problem(invoke(app, healthz(V2)), 500, "internal_error")
    assert doc["detail"] == "internal error"
    records = [r for r in caplog.records if r.name == "cloudroi.serverless"]
    assert [r.levelname for r in records] == ["ERROR"]
    assert records[0].exc_info is not None  # with the traceback


def test_a_configuration_that_cannot_start_is_a_500_problem(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serverless.reset()
    monkeypatch.setenv("CLOUDROI_MAX_TILES", "many")
    try:
        with caplog.at_level("ERROR", logger="cloudroi.serverless"):
            doc = serverless.handler(healthz(V2), None)
        problem(answer_of(doc), 500, "internal_error")
        assert any(r.exc_info for r in caplog.records if r.name == "cloudroi.serverless")
    finally:
        serverless.reset()


# Arbitrary JSON values, and the valid events with one field replaced by one.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _map_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(check(x) for x in v.values())


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _method(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _stage(v: Any) -> bool:
    return v is None or isinstance(v, str)


#: (kind, path to the field, whether a value is well-formed there) — the payload formats'
#: shapes as the handler must accept them.
FIELDS: list[tuple[str, tuple[str, ...], Callable[[Any], bool]]] = [
    (V2, ("rawPath",), lambda v: isinstance(v, str)),
    (V2, ("rawQueryString",), _opt(lambda v: isinstance(v, str))),
    (V2, ("headers",), _opt(_map_of(_scalar))),
    (V2, ("headers", "accept"), _scalar),
    (V2, ("queryStringParameters",), _opt(_map_of(_scalar))),
    (V2, ("cookies",), _opt(_list_of(lambda v: isinstance(v, str)))),
    (
        V2,
        ("requestContext",),
        lambda v: (
            isinstance(v, dict)
            and _stage(v.get("stage"))
            and isinstance(v.get("http"), dict)
            and _method(v["http"].get("method"))
        ),
    ),
    (V2, ("requestContext", "http"), lambda v: isinstance(v, dict) and _method(v.get("method"))),
    (V2, ("requestContext", "http", "method"), _method),
    (V2, ("requestContext", "stage"), _stage),
    (V2, ("body",), _opt(lambda v: isinstance(v, str))),
    (V2, ("isBase64Encoded",), _opt(lambda v: isinstance(v, bool))),
    (V1, ("httpMethod",), _method),
    (V1, ("path",), lambda v: isinstance(v, str)),
    (V1, ("queryStringParameters",), _opt(_map_of(_scalar))),
    (V1, ("multiValueQueryStringParameters",), _opt(_map_of(_opt(_list_of(_scalar))))),
    (V1, ("headers",), _opt(_map_of(_scalar))),
    (V1, ("multiValueHeaders",), _opt(_map_of(_opt(_list_of(_scalar))))),
    (V1, ("multiValueHeaders", "Accept"), _opt(_list_of(_scalar))),
    (V1, ("requestContext",), _opt(lambda v: isinstance(v, dict) and _stage(v.get("stage")))),
    (V1, ("requestContext", "stage"), _stage),
]


def _never_raises(app: LambdaApp, event: Any) -> Answer:
    doc = app(event, LambdaContext())
    assert isinstance(doc, dict)
    assert type(doc["statusCode"]) is int
    ans = answer_of(json.loads(json.dumps(doc)))  # what the runtime sends is JSON
    assert ans.status < 500, ans.body
    return ans


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(event=JSON)
def test_any_json_value_gets_a_response_document(event: Any, plain_app: LambdaApp) -> None:
    ans = _never_raises(plain_app, event)
    if not isinstance(event, dict):
        problem(ans, 400, "invalid_event")


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_one_malformed_field_is_a_400_and_a_well_formed_one_is_answered(
    field: tuple[str, tuple[str, ...], Callable[[Any], bool]], value: Any, plain_app: LambdaApp
) -> None:
    kind, path, well_formed = field
    ans = _never_raises(plain_app, changed(kind, path, value))
    hypothesis.event("well-formed" if well_formed(value) else "malformed")
    if well_formed(value):
        assert ans.status == 200 or ans.json()["code"] != "invalid_event", ans.body
    else:
        problem(ans, 400, "invalid_event")


# --------------------------------------------------------------------------------------------
# the real runtime client
# --------------------------------------------------------------------------------------------


def test_runtime_client_runs_the_handler(upstream: Upstream) -> None:
    """``python -m awslambdaric cloudroi.serverless.handler`` (the Lambda image's command) against
    a Runtime API on 127.0.0.1: a cold and a warm invocation in one process, then a malformed
    event and one more."""
    event = make_event(
        "function-url",
        "/region",
        {"url": upstream.url("noise.tif"), "window": "0,0,512,512", "format": "npy"},
    )
    env = {"CLOUDROI_ALLOWED_SOURCES": upstream.root}
    with RuntimeClient(sys.executable, "cloudroi.serverless.handler", env) as client:
        kind, cold = client.invoke(event)
        cold_gets = upstream.gets("noise.tif")
        assert kind == "response", cold
        kind, warm = client.invoke(event)
        warm_gets = upstream.gets("noise.tif") - cold_gets
        assert kind == "response", warm
        # A malformed event is answered (not an invocation error), and the function lives on.
        kind, bad = client.invoke({**event, "rawPath": None})
        assert kind == "response", bad
        problem(answer_of(bad), 400, "invalid_event")
        kind, again = client.invoke(make_event("function-url", "/healthz"))
        assert (kind, again["statusCode"]) == ("response", 200)
    cold_ans, warm_ans = answer_of(cold), answer_of(warm)
    assert cold_ans.status == warm_ans.status == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(cold_ans.body))[0], noise_pixels())
    assert warm_ans.body == cold_ans.body
    assert cold_gets >= 2
    assert warm_gets == 1


@pytest.mark.parametrize("kind", KINDS)
def test_tiles_and_tilejson_through_the_handler(
    kind: str, make_app: Any, upstream: Upstream
) -> None:
    """The map endpoints run over the same core: a tile equals the library's, TileJSON points
    back at the API's public host (over HTTPS, from X-Forwarded-Proto)."""
    import asyncio

    import morecantile

    url = upstream.url("rgb.tif")

    async def reference() -> tuple[Any, tuple[int, int, int]]:
        async with await cloudroi.open(url) as img:
            west, south, east, north = img.bounds_in(4326)
            t = morecantile.tms.get("WebMercatorQuad").tile(
                (west + east) / 2, (south + north) / 2, img.maxzoom
            )
            return await img.tile(t.x, t.y, t.z), (t.z, t.x, t.y)

    tile, (z, x, y) = asyncio.run(reference())
    app = make_app()
    ans = invoke(app, make_event(kind, f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", {"url": url}))
    assert ans.status == 200, ans.body
    assert ans.base64
    assert "max-age=86400" in ans.headers["Cache-Control"]
    png = imagecodecs.png_decode(ans.body)
    assert png.shape == (256, 256, 4)
    np.testing.assert_array_equal(np.moveaxis(png[:, :, :3], -1, 0), tile.data)
    np.testing.assert_array_equal(png[:, :, 3], tile.mask)

    headers = {"Host": "abc.execute-api.eu-west-1.amazonaws.com", "X-Forwarded-Proto": "https"}
    ans = invoke(app, make_event(kind, "/tilejson.json", {"url": url}, headers=headers))
    assert ans.status == 200, ans.body
    template = ans.json()["tiles"][0]
    assert template.startswith(
        "https://abc.execute-api.eu-west-1.amazonaws.com/tiles/WebMercatorQuad/{z}/{x}/{y}?"
    )
    ans = invoke(app, make_event(kind, "/tiles/WebMercatorQuad/3/0/0.png", {"url": url}))
    assert (ans.status, ans.body) == (204, b"")
