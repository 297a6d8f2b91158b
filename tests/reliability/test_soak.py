"""Soak: many window reads (library and service) against a range server failing 10% of requests at
random, every result compared with the true pixels: zero wrong pixels, zero hangs, every failure
typed. CI runs a few hundred reads; CLOUDROI_LONG=1 runs thousands (the ``slow`` variants)."""

from __future__ import annotations

import asyncio
import inspect
import io
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.read.fetch import RetryPolicy
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from cloudroi.testing.faults import RandomFaults
from cloudroi.tiff.structure import TiffStructure
from tests.reliability.reliability_support import Array, Sample, Tally, make_images, random_window

IMAGES = make_images()
RATE = 0.10


@pytest.fixture(scope="module")
def soak_server() -> Iterator[RangeServer]:
    with RangeServer({f"soak/{name}": img.data for name, img in IMAGES.items()}) as srv:
        yield srv


def soak_context() -> cloudroi.Context:
    """Short timeouts, fast retries and small caches, so that most reads go to the network."""
    kwargs: dict[str, Any] = {
        "block_cache": LRUCache[bytes](256 << 10, sizeof=len),
        "header_cache": LRUCache[TiffStructure](16),
    }
    if "decoded_cache" in inspect.signature(cloudroi.Context).parameters:
        kwargs["decoded_cache"] = LRUCache[Any](256 << 10, sizeof=lambda a: int(a.nbytes))
    return cloudroi.Context(
        read_timeout=0.2,
        retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.1, max_retry_after=0.5),
        **kwargs,
    )


def true_mask(img: Sample, level: int, win: tuple[int, int, int, int]) -> Array:
    mask = img.mask_window(level, win)
    if mask is not None:
        return mask
    data = img.window(level, win)
    if img.name == "f32.tif":
        return np.where(data[0] != -9999.0, 255, 0).astype(np.uint8)
    return np.full(data.shape[1:], 255, np.uint8)


async def read_tiles(
    image: cloudroi.Image,
    level: int,
    win: tuple[int, int, int, int],
    shape: tuple[int, ...],
    dtype: Any,
) -> Array:
    out = np.zeros(shape, dtype)
    filled = np.zeros(shape[1:], bool)
    async for tile in image.iter_tiles(win, level):
        c, r, w, h = tile.window
        rs, cs = slice(r - win[1], r - win[1] + h), slice(c - win[0], c - win[0] + w)
        assert not filled[rs, cs].any(), "a tile overlapped another"
        out[:, rs, cs] = tile.data
        filled[rs, cs] = True
    if not filled.all():
        raise AssertionError("tiles left a hole")  # counted as untyped: must not happen
    return out


async def soak(
    server: RangeServer, reads: int, seed: int, concurrency: int = 8
) -> tuple[Tally, RandomFaults, float, Counter[str]]:
    """``reads`` random operations at ``concurrency``; returns the tally, the faults injected,
    the wall time and how many of each operation ran."""
    faults = RandomFaults(RATE, seed=seed, stall=0.5, paths=("/soak/",))
    server.fault = faults
    rnd = random.Random(seed)
    tally = Tally()
    ops: Counter[str] = Counter()
    limiter = asyncio.Semaphore(concurrency)
    ctx = soak_context()
    kept: dict[str, cloudroi.Image] = {}
    lock = asyncio.Lock()

    async def kept_image(name: str) -> cloudroi.Image:
        async with lock:
            if name not in kept:
                kept[name] = await cloudroi.open(server.url(f"soak/{name}"), context=ctx)
            return kept[name]

    async def one(i: int) -> None:
        name = rnd.choice(sorted(IMAGES))
        img = IMAGES[name]
        level = rnd.randrange(len(img.levels))
        win = random_window(rnd, img, level)
        op = rnd.choices(["kept", "fresh", "mask", "tiles"], [40, 30, 15, 15])[0]
        bands = None
        if img.levels[0].shape[0] > 1 and rnd.random() < 0.5:
            bands = sorted(rnd.sample(range(1, img.levels[0].shape[0] + 1), 1))
        ops[op] += 1

        async def work() -> Array:
            if op == "fresh":
                # Half of the fresh opens load block index slices lazily: more GETs to fail.
                lazy = {"lazy_index_bytes": 0} if i % 2 else {}
                async with cloudroi.open(server.url(f"soak/{name}"), context=ctx, **lazy) as image:
                    return await image.read(win, level, bands, timeout=8)
            image = await kept_image(name)
            if op == "mask":
                return await image.read_mask(win, level, timeout=8)
            if op == "tiles":
                expected = img.window(level, win)
                return await asyncio.wait_for(
                    read_tiles(image, level, win, expected.shape, expected.dtype), 8
                )
            return await image.read(win, level, bands, timeout=8)

        if op == "mask":
            expected = true_mask(img, level, win)
        else:
            expected = img.window(level, win, bands if op in ("kept", "fresh") else None)
        async with limiter:
            await tally.check(work(), expected, hang_after=30)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(reads)))
    finally:
        server.fault = None
        for image in kept.values():
            await image.close()
        await ctx.close()
    return tally, faults, time.monotonic() - started, ops


def check(tally: Tally, faults: RandomFaults, elapsed: float, ops: Counter[str]) -> None:
    print(
        f"\nsoak: {tally.summary()}; {faults.requests} requests, {faults.total} faults injected "
        f"({dict(sorted(faults.injected.items()))}); ops {dict(ops)}; {elapsed:.1f} s"
    )
    assert tally.untyped == []
    assert tally.wrong == 0
    assert tally.hangs == 0
    # Not vacuous: faults did happen at about the configured rate, and most reads got through.
    assert faults.total >= RATE / 2 * faults.requests
    assert tally.exact >= 0.6 * tally.reads
    assert tally.spurious_cancels == 0


async def test_soak(soak_server: RangeServer) -> None:
    check(*await soak(soak_server, reads=600, seed=1))


@pytest.mark.slow
async def test_soak_long(soak_server: RangeServer) -> None:
    check(*await soak(soak_server, reads=10_000, seed=2))


# --------------------------------------------------------------------------------------------
# the same through the service: /region answers exact pixels or a problem, never a 500
# --------------------------------------------------------------------------------------------

#: What a /region under upstream faults may answer besides 200 (status, problem code).
ACCEPTABLE = {
    (502, "upstream_error"),
    (502, "range_not_supported"),
    (502, "source_changed"),
    (504, "timeout"),
    (504, "upstream_timeout"),
    # Other bytes at open under a new ETag are all the service knows of the object.
    (422, "invalid_tiff"),
}


@pytest.fixture
async def service(soak_server: RangeServer) -> AsyncIterator[TestClient[Any, Any]]:
    config = ServiceConfig(
        allowed_sources=(soak_server.url("soak/"),),
        upstream_read_timeout=0.2,
        request_timeout=10.0,
        max_concurrency=64,
    )
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    yield client
    await client.close()


async def service_soak(
    client: TestClient[Any, Any], server: RangeServer, requests: int, seed: int
) -> tuple[Tally, RandomFaults, Counter[tuple[int, str]]]:
    faults = RandomFaults(RATE, seed=seed, stall=0.5, paths=("/soak/",))
    server.fault = faults
    rnd = random.Random(seed)
    tally = Tally()
    statuses: Counter[tuple[int, str]] = Counter()
    limiter = asyncio.Semaphore(8)

    async def one() -> None:
        name = rnd.choice(sorted(IMAGES))
        img = IMAGES[name]
        level = rnd.randrange(len(img.levels))
        win = random_window(rnd, img, level)
        params = {
            "url": server.url(f"soak/{name}"),
            "window": ",".join(map(str, win)),
            "level": str(level),
            "format": "npy",
        }

        async def work() -> Array:
            try:
                return await answer()
            except aiohttp.ServerDisconnectedError:
                # Only a handler ended by CancelledError drops the connection without an answer:
                # counted as what it is (must not happen; see Tally.spurious_cancels).
                raise asyncio.CancelledError from None

        async def answer() -> Array:
            async with client.get("/region", params=params) as resp:
                body = await resp.read()
                if resp.status == 200:
                    statuses[(200, "ok")] += 1
                    return np.load(io.BytesIO(body))
                doc = await resp.json(content_type=None)
                statuses[(resp.status, doc.get("code", "?"))] += 1
                assert b"injected" not in body  # upstream bodies are never echoed
                if (resp.status, doc.get("code")) in ACCEPTABLE:
                    raise cloudroi.UpstreamError(f"{resp.status} {doc['code']}")
                raise RuntimeError(f"unexpected {resp.status}: {doc}")

        async with limiter:
            await tally.check(work(), img.window(level, win), hang_after=30)

    try:
        await asyncio.gather(*(one() for _ in range(requests)))
    finally:
        server.fault = None
    return tally, faults, statuses


async def test_service_soak(service: TestClient[Any, Any], soak_server: RangeServer) -> None:
    tally, faults, statuses = await service_soak(service, soak_server, 150, seed=3)
    print(
        f"\nservice soak: {tally.summary()}; {faults.total} faults injected in "
        f"{faults.requests} upstream requests; answers {dict(statuses)}"
    )
    assert tally.untyped == []
    assert tally.wrong == 0
    assert tally.hangs == 0
    assert tally.exact >= 0.5 * tally.reads
    assert faults.total > 0
    assert tally.spurious_cancels == 0


@pytest.mark.slow
async def test_service_soak_long(service: TestClient[Any, Any], soak_server: RangeServer) -> None:
    tally, faults, statuses = await service_soak(service, soak_server, 2000, seed=4)
    print(f"\nservice soak: {tally.summary()}; {faults.total} faults injected; {dict(statuses)}")
    assert tally.untyped == []
    assert tally.wrong == 0
    assert tally.hangs == 0
    assert tally.spurious_cancels == 0
