"""Retries, the event loop staying free while decoding, and the block cache's bounds."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np
import pytest

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.cog import write_cog
from cloudroi.read.fetch import RetryPolicy
from cloudroi.testing import Fault, RangeServer

DATA = np.random.default_rng(3).normal(size=(1024, 1024)).astype(np.float32)
COG = write_cog(DATA, tile=256, compression="deflate", predictor=3)
_names = itertools.count()


def put(server: RangeServer, data: bytes) -> str:
    name = f"fetch-{next(_names)}.tif"
    server.add(name, data)
    return server.url(name)


def fail_first(n: int, fault: Fault, *, only_tiles: bool = True) -> Any:
    """A fault hook failing the first ``n`` matching requests, then behaving."""
    seen = itertools.count()

    def hook(request: Any, etag: str) -> Fault | None:
        if only_tiles and request.headers.get("Range", "").startswith("bytes=0-"):
            return None
        return fault if next(seen) < n else None

    return hook


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=503),
        Fault("status", status=429, headers={"Retry-After": "0"}),
        Fault("reset", after=100),
        Fault("truncate", after=100),
    ],
    ids=["503", "429", "reset", "truncate"],
)
async def test_transient_failures_are_retried(server: RangeServer, fault: Fault) -> None:
    url = put(server, COG)
    async with cloudroi.open(url) as img:
        server.fault = fail_first(2, fault)
        arr = await img.read((0, 0, 300, 300))
    np.testing.assert_array_equal(arr[0], DATA[:300, :300])
    assert img.stats.retries >= 2


async def test_retries_are_bounded(server: RangeServer) -> None:
    url = put(server, COG)
    ctx = cloudroi.Context(retry=RetryPolicy(attempts=3, base_delay=0.001))
    async with cloudroi.open(url, context=ctx) as img:
        server.fault = fail_first(10**6, Fault("status", status=503))
        server.reset()
        with pytest.raises(cloudroi.TransientError):
            await img.read((512, 512, 10, 10))
        assert server.request_count == 3
    await ctx.close()


async def test_open_is_retried_too(server: RangeServer) -> None:
    url = put(server, COG)
    server.fault = fail_first(1, Fault("status", status=502), only_tiles=False)
    async with cloudroi.open(url) as img:
        assert img.width == 1024
        assert img.stats.retries == 1


async def test_decoding_never_blocks_the_event_loop() -> None:
    """Decoding runs in the pool: the event loop's thread spends a small share of the CPU.

    CPU time, not wall time, so the check holds on a loaded machine.
    """
    big = np.random.default_rng(5).normal(size=(2048, 2048)).astype(np.float32)
    cog = write_cog(big, tile=256, compression="deflate", predictor=3)
    ctx = cloudroi.Context(block_cache=LRUCache[bytes](0, sizeof=len))
    async with cloudroi.open(cog, context=ctx) as img:
        loop_cpu, all_cpu = time.thread_time(), time.process_time()
        arr = await img.read()
        loop_cpu, all_cpu = time.thread_time() - loop_cpu, time.process_time() - all_cpu
    await ctx.close()
    np.testing.assert_array_equal(arr[0], big)
    assert img.stats.tiles_decoded == 64
    assert loop_cpu < 0.5 * all_cpu, (loop_cpu, all_cpu)  # decoding on the loop gives 1.0


def test_lru_cache_is_bounded_by_bytes() -> None:
    cache = LRUCache[bytes](100, sizeof=len)
    for i in range(10):
        cache.put(i, bytes(30))
    assert cache.size <= 100
    assert len(cache) == 3
    assert cache.get(9) is not None
    assert cache.get(0) is None
    assert not cache.put("huge", bytes(101))  # larger than the whole budget: not stored
    stats = cache.stats()
    assert stats.evictions == 7
    assert stats.hits == 1
    assert stats.misses == 1


async def test_read_timeout_is_typed(server: RangeServer) -> None:
    url = put(server, COG)
    async with cloudroi.open(url) as img:
        server.latency = 0.5
        with pytest.raises(cloudroi.ReadTimeoutError):
            await img.read((0, 0, 1024, 1024), timeout=0.1)
        server.latency = 0.0
        arr = await img.read((0, 0, 10, 10), timeout=5)
    np.testing.assert_array_equal(arr[0], DATA[:10, :10])
    with_nodata = put(server, write_cog(DATA, tile=256, compression="deflate", nodata=0.0))
    async with cloudroi.open(with_nodata) as img:
        server.latency = 0.5
        with pytest.raises(cloudroi.ReadTimeoutError):
            await img.read_mask((0, 0, 1024, 1024), timeout=0.1)
    await asyncio.sleep(0.6)  # let the server finish the abandoned requests before the next test
