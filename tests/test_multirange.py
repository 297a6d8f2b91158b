"""Multi-range GETs (``multirange=True``): one request for a read's disjoint ranges where the
server answers ``multipart/byteranges``, and range-by-range reads, remembered per origin, where it
answers otherwise; every answer checked, every pixel compared."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.source.multipart import multipart_byteranges
from cloudroi.testing import RangeServer
from cloudroi.testing.rangeserver import parse_range, parse_ranges

#: Noise: blocks that do not compress, so block rows lie far apart in the file.
PIXELS = np.random.default_rng(5).integers(0, 65535, (700, 600), dtype=np.uint16)
COG = write_cog(PIXELS, tile=64, compression="deflate", predictor=2, overviews=0)
#: Spans 3 block rows (rows 100..229 of 64-row blocks): 3 disjoint byte ranges.
WINDOW = (50, 100, 200, 130)
WANT = PIXELS[100:230, 50:250]
_names = itertools.count()


def _put(server: RangeServer) -> str:
    path = f"/multirange/{next(_names)}.tif"
    server.add(path, COG)
    return server.url(path)


async def test_one_get_for_three_block_rows(server: RangeServer) -> None:
    url = _put(server)
    async with cloudroi.Context() as ctx:
        async with cloudroi.open(url, context=ctx, multirange=True) as img:
            server.reset()
            got = await img.read(WINDOW)
            np.testing.assert_array_equal(got[0], WANT)
            assert img.stats.tile_requests == 1
            (entry,) = server.log
            assert entry.range is not None
            assert entry.range.count(",") == 2
            assert entry.status == 206
            assert not ctx.multirange_refused
        async with cloudroi.open(_put(server), context=ctx) as plain:  # default: GET per range
            server.reset()
            np.testing.assert_array_equal((await plain.read(WINDOW))[0], WANT)
            assert len(server.log) == 3
            assert all("," not in (e.range or "") for e in server.log)


async def test_ranges_per_request_are_bounded(server: RangeServer) -> None:
    url = _put(server)
    async with cloudroi.Context() as ctx, cloudroi.open(url, context=ctx, multirange=True) as img:
        server.reset()
        got = await img.read((10, 0, 100, 640))  # 10 block rows: 10 ranges, 8 per GET at most
        np.testing.assert_array_equal(got[0], PIXELS[0:640, 10:110])
        assert [e.range.count(",") + 1 for e in server.log if e.range] in ([8, 2], [2, 8])
        server.reset()
        assert await img.preload() > 0  # the whole image: 110 blocks in 11 rows
        assert len(server.log) == 2
        assert all(e.status == 206 for e in server.log)
        np.testing.assert_array_equal((await img.read())[0], PIXELS)
        assert len(server.log) == 2


async def test_server_answering_200_is_asked_range_by_range_after(server: RangeServer) -> None:
    server.multirange = False  # as S3: a multi-range GET gets 200 and the whole object
    url = _put(server)
    async with cloudroi.Context() as ctx, cloudroi.open(url, context=ctx, multirange=True) as img:
        server.reset()
        got = await img.read(WINDOW)
        np.testing.assert_array_equal(got[0], WANT)
        assert next(e.status for e in server.log) == 200  # refused, connection dropped
        assert sorted(e.status for e in server.log[1:]) == [206, 206, 206]
        assert img.stats.tile_requests == 4
        # the refused answer's body was not read: only the three ranges count
        assert img.stats.tile_bytes == sum(e.body_bytes for e in server.log[1:])
        assert list(ctx.multirange_refused) == [server.url("").rstrip("/")]
        server.reset()
        got = await img.read((300, 400, 200, 130))
        np.testing.assert_array_equal(got[0], PIXELS[400:530, 300:500])
        assert len(server.log) == 3
        assert all(e.status == 206 for e in server.log)


# -- servers that answer multi-range GETs in other ways -----------------------------------------

Answer = Callable[[list[tuple[int, int]], int], web.StreamResponse | None]


@pytest.fixture
async def odd_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """COG on a server whose multi-range answers the test chooses (``state["answer"]``);
    single ranges are answered correctly. Records (Range, status) per request."""
    data = COG
    state: dict[str, Any] = {"answer": None, "log": []}

    async def handle(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Range", "")
        size = len(data)
        if "," in header:
            ranges = parse_ranges(header, size)
            assert ranges is not None
            resp = state["answer"](ranges, size)
            if not isinstance(resp, web.StreamResponse):  # an answer streamed by the test
                resp = await resp(request)
            state["log"].append((header, resp.status))
            return resp
        rng = parse_range(header, size)
        assert rng is not None
        first, last = rng
        state["log"].append((header, 206))
        return web.Response(
            status=206,
            body=data[first : last + 1],
            headers={"Content-Range": f"bytes {first}-{last}/{size}", "ETag": '"v1"'},
        )

    # a name of its own: the block and header caches are process-wide, keyed by URL and ETag,
    # and a later fixture may get the same port; the same URL would then be served from the
    # cache, without the GET a test asks its odd answer of
    name = f"cog-{uuid.uuid4().hex}.tif"
    app = web.Application()
    app.router.add_get(f"/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/{name}", state
    finally:
        await runner.cleanup()


def _multipart(parts: bytes, boundary: str = "b0undary", **headers: str) -> web.Response:
    return web.Response(
        status=206,
        body=parts,
        headers={
            "Content-Type": f"multipart/byteranges; boundary={boundary}",
            "ETag": '"v1"',
            **headers,
        },
    )


def _parts(ranges: list[tuple[int, int]], size: int, *, total: int | None = None) -> bytes:
    out = b""
    for first, last in ranges:
        out += (
            f"--b0undary\r\nContent-Range: bytes {first}-{last}/{total or size}\r\n\r\n".encode()
            + COG[first : last + 1]
            + b"\r\n"
        )
    return out + b"--b0undary--\r\n"


@contextlib.asynccontextmanager
async def _opened(
    url: str, **options: Any
) -> AsyncIterator[tuple[cloudroi.Image, cloudroi.Context]]:
    """The COG opened with multi-range GETs in a fresh Context; both closed afterwards."""
    async with (
        cloudroi.Context(**options) as ctx,
        cloudroi.open(url, context=ctx, multirange=True) as img,
    ):
        yield img, ctx


@pytest.mark.parametrize(
    "answer",
    [
        # parts in another order, and a preamble before the first delimiter
        lambda r, n: _multipart(b"preamble\r\n\r\n" + _parts(list(reversed(r)), n)),
        # the server merged all ranges into one part (gaps included)
        lambda r, n: _multipart(_parts([(r[0][0], r[-1][1])], n)),
        # quoted boundary, part headers in other cases
        lambda r, n: _multipart(
            _parts(r, n).replace(b"Content-Range", b"content-RANGE"), boundary='"b0undary"'
        ),
        # no closing delimiter: forgiven when every range is there
        lambda r, n: _multipart(_parts(r, n).removesuffix(b"--b0undary--\r\n")),
    ],
    ids=["reordered", "merged", "quoted", "unclosed"],
)
async def test_usable_multipart_answers(
    odd_server: tuple[str, dict[str, Any]], answer: Answer
) -> None:
    url, state = odd_server
    state["answer"] = answer
    async with _opened(url) as (img, ctx):
        np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
        assert img.stats.tile_requests == 1
        assert not ctx.multirange_refused


@pytest.mark.parametrize(
    "answer",
    [
        # only the first range, as a single part (some servers): not what was asked
        lambda r, n: web.Response(
            status=206,
            body=COG[r[0][0] : r[0][1] + 1],
            headers={"Content-Range": f"bytes {r[0][0]}-{r[0][1]}/{n}", "ETag": '"v1"'},
        ),
        # a multipart answer missing one range
        lambda r, n: _multipart(_parts(r[:-1], n)),
        # no delimiter at all
        lambda r, n: _multipart(b"x" * 100 + b"\r\n" * 20),
        # a part without Content-Range
        lambda r, n: _multipart(b"--b0undary\r\n\r\nxyz\r\n--b0undary--\r\n"),
        # multipart of another kind
        lambda r, n: web.Response(
            status=206, body=b"--x--", headers={"Content-Type": "multipart/mixed; boundary=x"}
        ),
    ],
    ids=["first-range-only", "missing-part", "no-delimiter", "no-content-range", "mixed"],
)
async def test_unusable_answers_fall_back_range_by_range(
    odd_server: tuple[str, dict[str, Any]], answer: Answer
) -> None:
    url, state = odd_server
    state["answer"] = answer
    async with _opened(url) as (img, ctx):
        np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
        assert list(ctx.multirange_refused) == [url.rsplit("/", 1)[0]]
        multi = [h for h, _ in state["log"] if "," in h]
        assert len(multi) == 1  # asked once ...
        await img.read((300, 400, 200, 130))
        assert len([h for h, _ in state["log"] if "," in h]) == 1  # ... and not again


async def test_part_of_another_object_size_is_object_changed(
    odd_server: tuple[str, dict[str, Any]],
) -> None:
    url, state = odd_server
    state["answer"] = lambda r, n: _multipart(_parts(r, n, total=n + 1))
    async with _opened(url) as (img, _):
        with pytest.raises(cloudroi.ObjectChangedError):
            await img.read(WINDOW)


async def test_truncated_multipart_is_retried(odd_server: tuple[str, dict[str, Any]]) -> None:
    url, state = odd_server
    calls = itertools.count()

    def answer(r: list[tuple[int, int]], n: int) -> web.StreamResponse:
        body = _parts(r, n)
        if next(calls) == 0:  # first answer cut short (Content-Length still says all of it)
            body = body[: len(body) // 2]
        return _multipart(body)

    state["answer"] = answer
    async with _opened(url) as (img, ctx):
        np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
        assert img.stats.retries >= 1
        assert not ctx.multirange_refused


async def test_answer_complete_before_its_body_ends_is_used_at_once(
    odd_server: tuple[str, dict[str, Any]],
) -> None:
    """A server that sends every part and the closing delimiter, then holds the connection open
    (its final chunk late): the ranges are used as soon as the closing delimiter is in, without
    waiting for the rest (which once ran into the read timeout, retry after retry)."""
    url, state = odd_server
    release = asyncio.Event()

    def answer(r: list[tuple[int, int]], n: int) -> Any:
        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(
                status=206,
                headers={"Content-Type": "multipart/byteranges; boundary=b0undary", "ETag": '"v1"'},
            )
            await resp.prepare(request)  # chunked: the body ends with its final chunk
            await resp.write(_parts(r, n))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), 10)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await resp.write_eof()
            return resp

        return stream

    state["answer"] = answer
    try:
        async with _opened(url, read_timeout=1) as (img, ctx):
            before = len(state["log"])
            started = time.monotonic()
            np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
            assert time.monotonic() - started < 1  # the read timeout never ran out
            assert img.stats.retries == 0
            assert img.stats.tile_requests == 1
            assert len(state["log"]) == before  # no range asked alone (the multi-range GET
            assert not ctx.multirange_refused  # is logged when its handler returns)
    finally:
        release.set()


def test_multipart_body_round_trip() -> None:
    """The test server's multipart writer against the parser of its range header."""
    data = bytes(range(256)) * 4
    ranges = parse_ranges("bytes=0-9, 100-199,1000-", len(data))
    assert ranges == [(0, 9), (100, 199), (1000, 1023)]
    body = multipart_byteranges(data, ranges, "zz")
    assert body.count(b"--zz\r\n") == 3
    assert body.endswith(b"--zz--\r\n")
    assert parse_ranges("bytes=0-9,5000-6000", len(data)) is None


def _mutated_framing(ranges: list[tuple[int, int]], size: int, seed: int) -> bytes:
    """A multipart answer whose framing (delimiters, part headers; not the data) is damaged:
    bytes flipped, cut or duplicated, by a seeded RNG."""
    rng = np.random.default_rng(seed)
    out = b""
    for first, last in ranges:
        head = bytearray(
            f"\r\n--b0undary\r\nContent-Range: bytes {first}-{last}/{size}\r\n\r\n".encode()
        )
        if rng.random() < 0.5:
            what = rng.integers(0, 4)
            at = int(rng.integers(0, len(head)))
            if what == 0:
                head[at] = int(rng.integers(0, 256))
            elif what == 1:
                del head[at:]
            elif what == 2:
                head[at:at] = head[at:]
            else:
                head[at:at] = b"\r\n" * int(rng.integers(1, 50))
        out += bytes(head) + COG[first : last + 1]
    return out + b"\r\n--b0undary--\r\n"


#: 40 damaged answers in CI; the ``slow`` ones (CLOUDROI_LONG=1) take the count to 2000.
SEEDS = [*range(40), *(pytest.param(s, marks=pytest.mark.slow) for s in range(40, 2000))]


@pytest.mark.parametrize("seed", SEEDS)
async def test_damaged_framing_gives_exact_pixels_or_a_typed_error(
    odd_server: tuple[str, dict[str, Any]], seed: int
) -> None:
    url, state = odd_server
    calls = itertools.count()

    def answer(r: list[tuple[int, int]], n: int) -> web.StreamResponse:
        if next(calls) == 0:
            return _multipart(_mutated_framing(r, n, seed))
        return _multipart(_parts(r, n))

    state["answer"] = answer
    async with _opened(url, read_timeout=5) as (img, _):
        try:
            got = await img.read(WINDOW, timeout=20)
        except cloudroi.CloudROIError:
            return  # typed; the exact pixels are checked when the read succeeds
        np.testing.assert_array_equal(got[0], WANT)


# -- servers that answer every multi-range GET with 416 -----------------------------------------


@contextlib.asynccontextmanager
async def _static_server(root: Any) -> AsyncIterator[tuple[str, list[tuple[str | None, int]]]]:
    """``root`` served by aiohttp's own static file handler on 127.0.0.1, which answers a
    multi-range GET with 416 ``Content-Range: bytes */size``; yields the root URL and a log of
    (Range, status) per request."""
    log: list[tuple[str | None, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        log.append((request.headers.get("Range"), response.status))  # the status as sent

    app = web.Application()
    app.on_response_prepare.append(record)
    app.router.add_static("/s/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/s/", log
    finally:
        await runner.cleanup()


async def test_416_for_multi_range_falls_back_and_is_remembered(tmp_path: Any) -> None:
    (tmp_path / "cog.tif").write_bytes(COG)
    async with _static_server(tmp_path) as (root, log):
        url = root + "cog.tif"
        async with _opened(url) as (img, ctx):
            log.clear()
            np.testing.assert_array_equal((await img.read(WINDOW))[0], WANT)
            multi = [(h, s) for h, s in log if h and "," in h]
            assert [s for _, s in multi] == [416]  # asked once, refused ...
            assert sorted(s for h, s in log if h and "," not in h) == [206, 206, 206]
            assert img.stats.tile_requests == 4
            assert list(ctx.multirange_refused) == [root.rsplit("/", 2)[0]]
            log.clear()
            got = await img.read((300, 400, 200, 130))
            np.testing.assert_array_equal(got[0], PIXELS[400:530, 300:500])
            assert [s for _, s in log] == [206, 206, 206]  # ... and not asked again
            assert all("," not in (h or "") for h, _ in log)


async def test_416_for_multi_range_with_another_size_is_object_changed(
    odd_server: tuple[str, dict[str, Any]],
) -> None:
    url, state = odd_server
    state["answer"] = lambda r, n: web.Response(
        status=416, headers={"Content-Range": f"bytes */{n - 10}"}
    )
    async with _opened(url) as (img, ctx):
        with pytest.raises(cloudroi.ObjectChangedError, match="not satisfiable"):
            await img.read(WINDOW)
        assert not ctx.multirange_refused


async def test_service_with_multirange_on_a_416_origin(tmp_path: Any) -> None:
    """CLOUDROI_MULTIRANGE=true against an origin that answers multi-range GETs with 416: every
    multi-block /region is 200 with exact pixels, and the origin is asked once."""
    from aiohttp.test_utils import TestClient, TestServer

    from cloudroi.service import ServiceConfig, create_app

    (tmp_path / "cog.tif").write_bytes(COG)
    async with _static_server(tmp_path) as (root, log):
        config = ServiceConfig(allowed_sources=(root,), multirange=True)
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        try:
            for _ in range(3):
                params = {
                    "url": root + "cog.tif",
                    "window": ",".join(map(str, WINDOW)),
                    "format": "npy",
                }
                async with client.get("/region", params=params) as resp:
                    body = await resp.read()
                    assert resp.status == 200, body
                got = np.load(__import__("io").BytesIO(body))
                np.testing.assert_array_equal(got[0], WANT)
        finally:
            await client.close()
        assert [s for h, s in log if h and "," in h] == [416]
