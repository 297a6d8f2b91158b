"""What one request may hold: resampled reads stream block by block (never the whole source
window), the service estimates a request's bytes before any tile is fetched (413 past its limit),
bounds repeated bands, and shares one memory budget between the requests in progress."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tifffile
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.region.data import estimate_region
from cloudroi.service import ServiceConfig, create_app
from cloudroi.service.budget import BudgetExhausted, MemoryBudget
from cloudroi.testing import Fault, RangeServer
from tests.upstream import Upstream


def huge_zeros(side: int, tile: int) -> bytes:
    """A ``side`` x ``side`` uint8 image of zstd tiles of zeros and no overviews: a few hundred
    KB that decode to ``side``² bytes."""
    buf = io.BytesIO()
    n = (side // tile) ** 2
    tifffile.imwrite(
        buf,
        (np.zeros((tile, tile), np.uint8) for _ in range(n)),
        shape=(side, side),
        dtype=np.uint8,
        tile=(tile, tile),
        compression="zstd",
        metadata=None,
    )
    return buf.getvalue()


def many_bands(side: int, bands: int) -> bytes:
    buf = io.BytesIO()
    tiles = (np.zeros((256, 256, bands), np.float64) for _ in range((side // 256) ** 2))
    tifffile.imwrite(
        buf,
        tiles,
        shape=(side, side, bands),
        dtype=np.float64,
        tile=(256, 256),
        planarconfig="contig",
        photometric="minisblack",
        compression="zstd",
        metadata=None,
    )
    return buf.getvalue()


def gradient(side: int, tile: int) -> tuple[np.ndarray, bytes]:
    yy, xx = np.mgrid[0:side, 0:side]
    data = ((xx * 7 + yy * 13) % 65521).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, tile=(tile, tile), compression="zlib", metadata=None)
    return data, buf.getvalue()


# --------------------------------------------------------------------------------------------
# the library: resampled reads sample block by block
# --------------------------------------------------------------------------------------------


async def test_resampled_read_never_holds_the_source_window() -> None:
    data = huge_zeros(32768, 2048)  # decodes to 1 GiB; no overview to fall back on
    ctx = cloudroi.Context(decoded_cache=LRUCache(0))
    try:
        async with cloudroi.open(data, context=ctx) as img:
            tracemalloc.start()
            try:
                out = await img.read((0, 0, 32768, 32768), out_shape=(64, 64))
                mask = await img.read_mask((0, 0, 32768, 32768), out_shape=(64, 64))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    finally:
        await ctx.close()
    assert out.shape == (1, 64, 64)
    assert not out.any()
    assert mask.shape == (64, 64)
    assert (mask == 255).all()
    # the output, a few 4 MiB blocks being decoded: nowhere near the 1 GiB source window
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"


async def test_sampled_read_equals_window_then_sample_and_skips_unsampled_blocks(
    server: RangeServer,
) -> None:
    pixels, data = gradient(2048, 128)
    up = Upstream.publish(server, {"g.tif": data}, "sampled")
    async with cloudroi.open(up.url("g.tif")) as img:
        # 16 x 16 samples over 16 x 16 blocks of 128: each sampled row and col in its own block
        got = await img.read((0, 0, 2048, 2048), out_shape=(16, 16))
        rows = np.floor((np.arange(16) + 0.5) * 128 + 1e-10).astype(int)
        np.testing.assert_array_equal(got[0], pixels[rows][:, rows])
        assert img.stats.tiles_read == 256

        # 4 x 4 output over a 1024 x 1024 window of 128-px blocks: only 16 of its 64 blocks
        def blocks() -> int:
            s = img.stats
            return s.tiles_read + s.decoded_cache_hits

        before = blocks()
        got = await img.read((100, 60, 1024, 1024), out_shape=(4, 4))
        rows = 60 + np.floor((np.arange(4) + 0.5) * 256 + 1e-10).astype(int)
        cols = 100 + np.floor((np.arange(4) + 0.5) * 256 + 1e-10).astype(int)
        np.testing.assert_array_equal(got[0], pixels[rows][:, cols])
        assert blocks() - before == 16
        # boundless: outside samples get the fill value
        got = await img.read((-1024, 0, 2048, 1024), out_shape=(2, 4), boundless=True, fill_value=7)
        assert (got[0, :, :2] == 7).all()
        np.testing.assert_array_equal(got[0, :, 2:], pixels[[256, 768]][:, [256, 768]])
        plan = img.plan((100, 60, 1024, 1024), out_shape=(4, 4))
        assert len(plan.blocks) == 16


# --------------------------------------------------------------------------------------------
# the memory budget
# --------------------------------------------------------------------------------------------


async def test_memory_budget_is_first_come_first_served_and_bounded() -> None:
    budget = MemoryBudget(100)
    order: list[str] = []

    async def hold(name: str, n: int, seconds: float, wait: float = 5.0) -> None:
        async with budget.reserve(n, wait):
            order.append(name)
            assert budget.used <= budget.capacity
            await asyncio.sleep(seconds)

    first = asyncio.create_task(hold("a", 60, 0.1))
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(hold("b", 60, 0.0)), asyncio.create_task(hold("c", 10, 0.0))]
    await asyncio.sleep(0.01)
    # c would fit now, but b is ahead of it in line
    assert order == ["a"]
    await asyncio.gather(first, *waiting)
    assert order == ["a", "b", "c"]
    assert budget.used == 0

    blocker = asyncio.create_task(hold("d", 100, 0.3))
    await asyncio.sleep(0.01)
    with pytest.raises(BudgetExhausted):
        await hold("e", 1, 0.0, wait=0.05)
    cancelled = asyncio.create_task(hold("f", 50, 0.0))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await blocker
    assert budget.used == 0
    assert not budget._line


def test_estimate_counts_data_mask_rendering_and_body() -> None:
    data_format = estimate_region(
        height=4096, width=4096, bands=32, itemsize=8, rendered=False, mask_bytes=0
    )
    assert data_format.data == 32 * 4096 * 4096 * 8
    assert data_format.total > 2 * data_format.data  # the body is the data again (twice)
    png = estimate_region(
        height=512, width=512, bands=3, itemsize=1, rendered=True, mask_bytes=512 * 512
    )
    assert png.total < 8 << 20


# --------------------------------------------------------------------------------------------
# the service
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {
        "huge.tif": huge_zeros(65536, 2048),
        "bands32.tif": many_bands(4096, 32),
        "grad.tif": gradient(1024, 256)[1],
    }


@pytest.fixture
def upstream(server: RangeServer, files: dict[str, bytes]) -> Upstream:
    return Upstream.publish(server, files, "membound")


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,)))))
    await client.start_server()
    yield client
    await client.close()


async def answer(client: TestClient[Any, Any], path: str, **params: str) -> tuple[int, Any]:
    async with client.get(path, params=params) as resp:
        body = await resp.read()
        if resp.content_type in ("application/json", "application/problem+json"):
            return resp.status, json.loads(body)
        return resp.status, body


async def test_service_refuses_a_request_that_would_hold_too_much(
    client: TestClient[Any, Any], upstream: Upstream
) -> None:
    url = upstream.url("bands32.tif")
    upstream.server.reset()
    status, doc = await answer(client, "/region", url=url, window="0,0,4096,4096", format="npy")
    assert status == 413, doc
    assert doc["code"] == "request_too_large"
    assert doc["limit"] == 512 << 20
    assert doc["value"] > 32 * 4096 * 4096 * 8  # the 4 GiB array, and the body on top
    assert "data 4294967296" in doc["detail"]
    # decided from the header: no tile was fetched
    assert all(e.range is None or e.range.startswith("bytes=0-") for e in upstream.requests())
    # the same source, a window that fits
    status, body = await answer(client, "/region", url=url, window="0,0,256,256", format="npy")
    assert status == 200
    assert np.load(io.BytesIO(body)).shape == (32, 256, 256)


@pytest.mark.parametrize(
    ("bands", "fmt"),
    [(",".join(["1"] * 33), "npy"), ("1,1,1,1", "npy"), ("1,1", "png"), ("2", "npy")],
)
async def test_bands_cannot_multiply_a_request(
    client: TestClient[Any, Any], upstream: Upstream, bands: str, fmt: str
) -> None:
    url = upstream.url("bands32.tif" if bands.count(",") > 8 else "grad.tif")
    status, doc = await answer(
        client, "/region", url=url, window="0,0,16,16", format=fmt, bands=bands
    )
    assert status == 400, doc
    assert doc["code"] == "invalid_bands"


async def test_grey_as_rgb_stays_allowed(client: TestClient[Any, Any], upstream: Upstream) -> None:
    status, body = await answer(
        client,
        "/region",
        url=upstream.url("grad.tif"),
        window="0,0,16,16",
        format="npy",
        bands="1,1,1",
    )
    assert status == 200
    assert np.load(io.BytesIO(body)).shape == (3, 16, 16)


async def test_downsampling_a_level_without_overviews_streams(
    client: TestClient[Any, Any], upstream: Upstream
) -> None:
    url = upstream.url("huge.tif")
    status, body = await answer(
        client, "/region", url=url, window="0,0,65536,65536", width="64", format="npy"
    )
    assert status == 200
    assert np.load(io.BytesIO(body)).shape == (1, 64, 64)
    status, body = await answer(client, "/preview", url=url, max_size="64")
    assert status == 200
    assert body[:8] == b"\x89PNG\r\n\x1a\n"


async def test_requests_share_one_memory_budget(upstream: Upstream) -> None:
    url = upstream.url("grad.tif")
    # one 1024 x 1024 uint16 npy request holds ~6 MiB: a 10 MiB budget fits one at a time
    config = ServiceConfig(
        allowed_sources=(upstream.root,),
        memory_budget_bytes=10 << 20,
        max_request_bytes=10 << 20,
        request_timeout=4.0,
    )
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()

    def slow_tiles(request: web.Request, etag: str) -> Fault | None:
        # every GET but the header's waits 2 s: the first request holds its bytes that long,
        # the second waits in line for 1 s (a quarter of the request timeout)
        rng = request.headers.get("Range", "")
        return None if rng.startswith("bytes=0-") else Fault("stall", delay=2.0)

    try:
        upstream.server.fault = slow_tiles
        first = asyncio.create_task(
            answer(client, "/region", url=url, window="0,0,1024,1024", format="npy")
        )
        await asyncio.sleep(0.2)
        status, doc = await answer(client, "/region", url=url, window="0,0,1024,1024", format="npy")
        assert status == 503, doc
        assert doc["code"] == "overloaded"
        status, _body = await first
        assert status == 200
        upstream.server.fault = None
        # once the first is done, the budget is free again
        status, _ = await answer(client, "/region", url=url, window="0,0,1024,1024", format="npy")
        assert status == 200
    finally:
        upstream.server.fault = None
        await client.close()
