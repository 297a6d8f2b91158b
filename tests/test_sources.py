"""One conformance suite run against every RangeSource backend: HTTP, S3 (moto), file, memory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cloudroi
from cloudroi.source.base import (
    MultiRangeSource,
    RangeSource,
    RequestCounter,
    check_content_range,
    parse_content_range,
)
from cloudroi.source.memory import PrefetchedSource
from cloudroi.testing import Fault, RangeServer
from cloudroi.testing.faults import eventually
from cloudroi.types import ByteRange

DATA = bytes(range(256)) * 300  # 76800 bytes
OTHER = bytes(reversed(DATA))


@dataclass
class Backend:
    """How to put objects into one storage backend and get a RangeSource for them."""

    name: str
    put: Callable[[str, bytes], str]  # returns the object's URL
    context: cloudroi.Context
    pins_version: bool = True

    async def source(self, url: str) -> RangeSource:
        return await self.context.source(url)


_counter = iter(range(10**9))


def unique(stem: str) -> str:
    return f"{stem}-{next(_counter)}-{os.getpid()}"


@pytest.fixture(params=["http", "s3", "file", "fsspec-memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    kind = request.param
    if kind == "http":
        srv: RangeServer = request.getfixturevalue("server")

        def put(name: str, data: bytes) -> str:
            srv.add(name, data)
            return srv.url(name)

        ctx = cloudroi.Context()
        yield Backend(kind, put, ctx)
    elif kind == "s3":
        client = request.getfixturevalue("s3_client")
        opts = request.getfixturevalue("s3_storage_options")
        bucket = "conformance"
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)

        def put(name: str, data: bytes) -> str:
            client.put_object(Bucket=bucket, Key=name, Body=data)
            return f"s3://{bucket}/{name}"

        ctx = cloudroi.Context(storage_options=opts)
        yield Backend(kind, put, ctx)
    elif kind == "file":

        def put(name: str, data: bytes) -> str:
            path = tmp_path / name
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a new inode, as a real overwrite by upload would be
            return str(path)

        ctx = cloudroi.Context()
        yield Backend(kind, put, ctx)
    else:
        import fsspec

        fs = fsspec.filesystem("memory")

        def put(name: str, data: bytes) -> str:
            fs.pipe(f"/cloudroi-tests/{name}", data)
            return f"memory://cloudroi-tests/{name}"

        ctx = cloudroi.Context()
        yield Backend(kind, put, ctx, pins_version=False)
    await ctx.close()


async def test_open_returns_meta_and_prefix(backend: Backend) -> None:
    url = backend.put(unique("a"), DATA)
    src = await backend.source(url)
    meta, prefix = await src.open(1000)
    assert meta.size == len(DATA)
    assert prefix == DATA[:1000]
    if backend.pins_version:
        assert meta.etag
    await src.close()


async def test_prefix_longer_than_object(backend: Backend) -> None:
    url = backend.put(unique("small"), DATA[:100])
    src = await backend.source(url)
    meta, prefix = await src.open(4096)
    assert meta.size == 100
    assert prefix == DATA[:100]
    await src.close()


@pytest.mark.parametrize(
    ("start", "end"), [(0, 1), (5, 4096), (len(DATA) - 1, len(DATA)), (1000, len(DATA))]
)
async def test_read_exact_ranges(backend: Backend, start: int, end: int) -> None:
    url = backend.put(unique("r"), DATA)
    src = await backend.source(url)
    await src.open(16)
    assert await src.read(ByteRange(start, end)) == DATA[start:end]
    await src.close()


async def test_concurrent_reads(backend: Backend) -> None:
    url = backend.put(unique("c"), DATA)
    src = await backend.source(url)
    await src.open(16)
    ranges = [ByteRange(i * 997, i * 997 + 1500) for i in range(20)]
    got = await asyncio.gather(*(src.read(r) for r in ranges))
    assert got == [DATA[r.start : r.end] for r in ranges]
    await src.close()


async def test_missing_object(backend: Backend) -> None:
    url = backend.put(unique("exists"), b"x")
    missing = url.replace("exists", "does-not-exist")
    src = await backend.source(missing)
    with pytest.raises(cloudroi.SourceNotFoundError):
        await src.open(100)
    await src.close()


async def test_overwrite_after_open_is_detected(backend: Backend) -> None:
    if not backend.pins_version:
        pytest.skip("generic fsspec stores expose no validator to pin reads to")
    name = unique("w")
    url = backend.put(name, DATA)
    src = await backend.source(url)
    await src.open(16)
    assert await src.read(ByteRange(100, 200)) == DATA[100:200]
    backend.put(name, OTHER)
    with pytest.raises(cloudroi.ObjectChangedError):
        await src.read(ByteRange(100, 200))
    await src.close()


async def test_empty_object_is_a_format_error(backend: Backend) -> None:
    url = backend.put(unique("empty"), b"")
    with pytest.raises(cloudroi.TiffFormatError):
        await cloudroi.open(url, context=backend.context)


async def test_not_a_tiff(backend: Backend) -> None:
    url = backend.put(unique("text"), b"hello, this is not a TIFF file at all" * 10)
    with pytest.raises(cloudroi.TiffFormatError, match="not a TIFF"):
        await cloudroi.open(url, context=backend.context)


# -- declared capabilities ---------------------------------------------------------------------

#: Per backend: (a MultiRangeSource, a RequestCounter).
CAPABILITIES = {
    "http": (True, True),
    "s3": (False, False),
    "file": (False, False),
    "fsspec-memory": (False, False),
}


async def test_declared_capabilities(backend: Backend) -> None:
    src = await backend.source(backend.put(unique("cap"), DATA))
    multi, counts = CAPABILITIES[backend.name]
    assert isinstance(src, RangeSource)
    assert isinstance(src, MultiRangeSource) is multi
    assert isinstance(src, RequestCounter) is counts
    await src.close()


async def test_memory_sources_count_no_request() -> None:
    mem = cloudroi.MemorySource(DATA)
    meta, _ = await mem.open(100)
    pre = PrefetchedSource(mem, meta, DATA)
    for src in (mem, pre):
        assert isinstance(src, RangeSource)
        assert isinstance(src, RequestCounter)
        assert not isinstance(src, MultiRangeSource)
        assert await src.read(ByteRange(5, 500)) == DATA[5:500]
        assert src.requests_sent == 0
    await pre.close()


async def test_http_source_counts_every_get_it_sends(server: RangeServer) -> None:
    """A redirect hop, a ranged GET, a multi-range GET and a refused one: one count each, as
    the server saw them."""
    name = unique("count")
    server.add(name, DATA)
    server.add(name + "-moved", b"")
    server.fault = lambda request, etag: (
        Fault("status", status=302, headers={"Location": name})
        if request.path.endswith("-moved")
        else None
    )
    async with cloudroi.Context() as ctx:
        src = await ctx.source(server.url(name + "-moved"))
        assert isinstance(src, RequestCounter)
        assert src.requests_sent == 0
        server.reset()
        await src.open(16)
        assert src.requests_sent == 2  # the redirect, then its target
        assert await src.read(ByteRange(100, 200)) == DATA[100:200]
        assert src.requests_sent == 3  # straight to the remembered target
        assert isinstance(src, MultiRangeSource)
        assert src.multirange
        asked = [ByteRange(0, 10), ByteRange(1000, 3000), ByteRange(70000, 70100)]
        assert await src.read_many(asked) == [DATA[r.start : r.end] for r in asked]
        assert src.requests_sent == 4  # one GET for three ranges
        server.multirange = False  # a 200 with the whole object: refused, still sent
        assert await src.read_many(asked) is None
        assert not src.multirange
        assert src.requests_sent == 5

        def logged() -> list[int]:
            return [e.status for e in server.log if e.path.startswith("/" + name)]

        # the refused answer is logged once its handler stops streaming the object
        assert await eventually(lambda: len(logged()) == 5)
        assert logged() == [302, 206, 206, 206, 200]


async def test_http_source_counts_a_get_that_failed() -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with cloudroi.Context(connect_timeout=2) as ctx:
            src = await ctx.source(f"http://127.0.0.1:{port}/x.tif")
            with pytest.raises(cloudroi.TransientError):
                await src.open(16)
            assert isinstance(src, RequestCounter)
            assert src.requests_sent == 1


# -- HTTP-specific answers a server may give ------------------------------------------------


async def _http_source(server: RangeServer, data: bytes = DATA) -> tuple[cloudroi.Context, Any]:
    name = unique("h")
    server.add(name, data)
    ctx = cloudroi.Context()
    return ctx, await ctx.source(server.url(name))


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("ignore_range"), cloudroi.RangeNotSupportedError),
        (Fault("wrong_range", shift=3), cloudroi.RangeNotSupportedError),
        (Fault("encoded"), cloudroi.RangeNotSupportedError),
        (Fault("multipart"), cloudroi.RangeNotSupportedError),
        (Fault("status", status=416), cloudroi.ObjectChangedError),
        (Fault("status", status=412), cloudroi.ObjectChangedError),
        (Fault("status", status=403), cloudroi.AccessDeniedError),
        (Fault("status", status=404), cloudroi.SourceNotFoundError),
        (Fault("status", status=503), cloudroi.TransientError),
        (Fault("truncate", after=10), cloudroi.TransientError),
        (Fault("reset", after=10), cloudroi.TransientError),
    ],
    ids=lambda v: v.kind + str(getattr(v, "status", "")) if isinstance(v, Fault) else "",
)
async def test_http_misbehaviour_is_typed(
    server: RangeServer, fault: Fault, error: type[Exception]
) -> None:
    ctx, src = await _http_source(server)
    await src.open(16)
    server.fault = lambda request, etag: fault
    with pytest.raises(error):
        await src.read(ByteRange(100, 5000))
    server.fault = None
    await ctx.close()


async def test_http_open_rejects_ignored_range_on_large_object(server: RangeServer) -> None:
    server.fault = lambda request, etag: Fault("ignore_range")
    ctx, src = await _http_source(server)
    with pytest.raises(cloudroi.RangeNotSupportedError):
        await src.open(1024)
    await ctx.close()


async def test_http_etag_change_without_if_match_support(server: RangeServer) -> None:
    """A server that ignores If-Match still cannot mix versions: the ETag is compared."""
    name = unique("nomatch")
    server.add(name, DATA)
    ctx = cloudroi.Context()
    src = await ctx.source(server.url(name))
    await src.open(16)
    server.add(name, OTHER)

    def serve_without_if_match(request: Any, etag: str) -> Fault | None:
        return None  # the server's own If-Match check is what we want to bypass below

    # Simulate a server that ignores If-Match by stripping the header from our request.
    src._headers = {}
    original = src._request_headers

    def no_if_match(rng: ByteRange) -> dict[str, str]:
        headers = original(rng)
        headers.pop("If-Match", None)
        return headers

    src._request_headers = no_if_match
    server.fault = serve_without_if_match
    with pytest.raises(cloudroi.ObjectChangedError):
        await src.read(ByteRange(0, 100))
    await ctx.close()


def test_content_range_parsing() -> None:
    assert parse_content_range("bytes 0-99/1000") is not None
    assert parse_content_range("bytes */1000").total == 1000  # type: ignore[union-attr]
    assert parse_content_range("bytes 5-4/10") is None
    assert parse_content_range("items 0-1/2") is None
    cr = check_content_range("bytes 10-19/100", ByteRange(10, 20), size=100, url="u")
    assert (cr.first, cr.last) == (10, 19)
    # The end may be clipped at the object's end, the start may not move.
    check_content_range("bytes 90-99/100", ByteRange(90, 200), size=100, url="u")
    with pytest.raises(cloudroi.RangeNotSupportedError):
        check_content_range("bytes 11-19/100", ByteRange(10, 20), size=100, url="u")
    with pytest.raises(cloudroi.ObjectChangedError):
        check_content_range("bytes 10-19/101", ByteRange(10, 20), size=100, url="u")
