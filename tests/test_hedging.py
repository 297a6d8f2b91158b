"""Hedged range GETs (cloudroi.read.hedge) against the real range server's long-tail mode:
the tail is cut, duplicates stay within their budget, losers are cancelled and their
connections closed, faults during a hedge still give exact pixels or a typed error, and a
retried GET is never hedged."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi import Context, ContextOptions, HedgePolicy, ObjectChangedError
from cloudroi.cache import LRUCache
from cloudroi.cog import write_cog
from cloudroi.read.hedge import OriginLatency
from cloudroi.service import ServiceConfig, ServiceState, create_app
from cloudroi.testing import Fault, LongTail, RangeServer
from tests.upstream import Upstream

#: 256 x 256 float32 in 64-pixel tiles: 16 blocks, read one GET each (no coalescing).
DATA = np.random.default_rng(15).normal(size=(256, 256)).astype(np.float32)
COG = write_cog(DATA, tile=64, compression="deflate")
SEPARATE = {"coalesce_max": 1}
#: Hedge after 16 first bytes, at 100 ms or the 95th percentile, whichever is later (a
#: loaded 2-core CI box answers 127.0.0.1 GETs well within 100 ms).
POLICY = HedgePolicy(floor=0.1, min_samples=16)


def fresh_context(hedge: HedgePolicy | None, **kwargs: Any) -> Context:
    """A Context whose every read fetches every block (no block or decoded cache)."""
    return Context(
        ContextOptions(hedge=hedge),
        block_cache=LRUCache(0),
        decoded_cache=LRUCache(0),
        **kwargs,
    )


def is_tile_get(request: Any) -> bool:
    return request.method == "GET" and not request.headers.get("Range", "").startswith("bytes=0-")


class SlowOnce:
    """Latency: the first GET of the ``nth`` tile range asked for waits ``delay`` seconds.
    ``arrivals`` counts the GETs of each range as they arrive (before any latency)."""

    def __init__(self, delay: float, nth: int = 5) -> None:
        self.delay = delay
        self.nth = nth
        self.arrivals: dict[str, int] = {}
        self.target: str | None = None
        self.faulted = 0
        #: id(request) -> which GET of its range it is (a request is alive while handled)
        self._arrival: dict[int, int] = {}

    def __call__(self, request: Any) -> float:
        if not is_tile_get(request):
            return 0.0
        rng = request.headers["Range"]
        n = self._arrival[id(request)] = self.arrivals.get(rng, 0) + 1
        self.arrivals[rng] = n
        if n == 1 and len(self.arrivals) == self.nth:
            self.target = rng
            return self.delay
        return 0.0

    def answer(self, fault: Fault) -> Callable[[Any, str], Fault | None]:
        """A fault hook giving ``fault`` to every GET of the slow range after the first."""

        def hook(request: Any, etag: str) -> Fault | None:
            n = self._arrival.pop(id(request), 0)
            if n > 1 and request.headers.get("Range") == self.target:
                self.faulted += 1
                return fault
            return None

        return hook


async def timed_reads(ctx: Context, url: str, n: int) -> tuple[list[float], Any]:
    """``n`` whole-image reads of one open Image; their durations and the Image's Stats."""
    times = []
    async with cloudroi.open(url, context=ctx, **SEPARATE) as img:
        for _ in range(n):
            t0 = time.perf_counter()
            arr = await img.read()
            times.append(time.perf_counter() - t0)
            np.testing.assert_array_equal(arr[0], DATA)
    return times, img.stats


async def warm(ctx: Context, url: str) -> None:
    """Enough first-byte samples at the origin for hedging to start, and GETs sent for the
    budget to allow a duplicate (1 + 2 x 16 GETs: 1.65 at 5%)."""
    async with cloudroi.open(url, context=ctx, **SEPARATE) as img:
        await img.read()
        await img.read()


# -- the tracker -------------------------------------------------------------------------------


def test_threshold_is_a_floored_percentile_of_recent_latencies() -> None:
    policy = HedgePolicy(percentile=0.9, floor=0.05, min_samples=10, window=20)
    track = OriginLatency(policy.window)
    for i in range(9):
        track.add(0.01 * i)
    assert track.threshold(policy) is None  # too few samples
    track.add(0.2)
    assert track.threshold(policy) == pytest.approx(0.2)  # 90th percentile of 10
    for _ in range(20):
        track.add(0.001)  # the window forgets the older, slower ones
    assert len(track) == 20
    assert track.threshold(policy) == pytest.approx(0.05)  # the floor


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"percentile": 1.0}, "percentile"),
        ({"share": -0.1}, "share"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 5, "window": 4}, "min_samples"),
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        HedgePolicy(**bad)


def test_hedging_is_off_unless_asked() -> None:
    assert Context().hedging is None
    assert Context(ContextOptions(hedge=HedgePolicy())).hedging is not None


# -- the tail ----------------------------------------------------------------------------------


async def test_hedging_cuts_the_p99_of_a_16_block_read(server: RangeServer) -> None:
    """A 2 % tail of 2 s GETs, hedged past 0.25 s at the least. (With a 0.1 s floor and 1 s, a
    loaded CI box once failed it, p99 0.87 s against 1.01 s: fast GETs slowed past the floor
    spend the duplicate budget and shift which request the seeded tail slows, so that a slow
    GET can go unhedged, or its duplicate be slow too.)"""
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-p99")
    runs = 20
    p99 = {}
    for mode, policy in (("off", None), ("on", HedgePolicy(floor=0.25, min_samples=16))):
        tail = LongTail(share=0.02, delay=2.0, seed=7)
        async with fresh_context(policy) as ctx:
            server.latency = 0.0
            await warm(ctx, up.url("a.tif"))
            server.latency = tail
            times, stats = await timed_reads(ctx, up.url("a.tif"), runs)
        p99[mode] = float(np.percentile(times, 99))
        assert tail.slow >= 3, mode  # the seed gives the tail its share
        if mode == "on":
            assert stats.hedged >= tail.slow - 2  # a slow GET may be a duplicate, or the open
            assert stats.hedge_wins >= 1
            # the budget: at most 5 duplicates per 100 GETs sent (the first sends included)
            assert stats.hedged <= 0.05 * (stats.requests - stats.hedged) + 1
        else:
            assert stats.hedged == stats.hedge_wins == 0
    assert p99["off"] >= 2.0
    assert p99["on"] <= p99["off"] / 3, p99


async def test_duplicates_never_pass_their_share(server: RangeServer) -> None:
    """A third of all GETs late (past the median, the threshold here): the budget lets 1 in 20
    go out twice."""
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-budget")
    policy = HedgePolicy(percentile=0.5, floor=0.05, min_samples=16, share=0.05, burst=1.0)
    server.latency = LongTail(share=0.3, delay=0.2, seed=3)
    async with fresh_context(policy) as ctx:
        await warm(ctx, up.url("a.tif"))
        _, stats = await timed_reads(ctx, up.url("a.tif"), 6)
        hedging = ctx.hedging
        assert hedging is not None
    assert stats.hedged >= 3
    assert hedging.hedged <= 0.05 * (hedging.sent - hedging.hedged)
    assert len(up.requests()) == hedging.sent  # every GET, duplicates included


async def test_losers_are_cancelled_and_their_connections_closed(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-cancel")
    slow = SlowOnce(delay=3.0)
    ctx = fresh_context(POLICY, connector_factory=lambda: aiohttp.TCPConnector(force_close=True))
    async with ctx:
        await warm(ctx, up.url("a.tif"))
        server.reset()
        server.latency = slow
        times, stats = await timed_reads(ctx, up.url("a.tif"), 1)
        # No connection stays open: the slow GET's was closed although its handler still
        # sleeps (a loser left running would hold it for 3 s).
        await asyncio.sleep(0.05)
        assert server.open_connections == 0
    assert times[0] < 1.0
    assert stats.hedged >= 1
    assert stats.hedge_wins >= 1
    assert slow.target is not None
    assert slow.arrivals[slow.target] == 2


# -- faults during a hedge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault("status", status=500), Fault("changed"), Fault("reset", after=10)],
    ids=["500", "changed-etag", "reset"],
)
async def test_a_failing_duplicate_leaves_the_primary_to_answer(
    server: RangeServer, fault: Fault
) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-dupfault")
    slow = SlowOnce(delay=0.5)
    async with fresh_context(POLICY) as ctx:
        await warm(ctx, up.url("a.tif"))
        server.reset()
        server.latency = slow
        server.fault = slow.answer(fault)
        times, stats = await timed_reads(ctx, up.url("a.tif"), 1)  # exact pixels, checked there
    assert stats.hedged >= 1
    assert stats.retries == 0  # the duplicate's failure is no attempt of its own
    assert slow.faulted == 1
    assert slow.target is not None
    assert slow.arrivals[slow.target] == 2
    assert times[0] >= 0.5  # the primary's answer was waited for


async def test_both_copies_changed_is_a_typed_error(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-bothchanged")
    slow = SlowOnce(delay=0.5)
    async with fresh_context(POLICY) as ctx:
        await warm(ctx, up.url("a.tif"))
        server.reset()
        server.latency = slow
        changed = Fault("changed")
        server.fault = lambda request, etag: (
            changed if request.headers.get("Range") == slow.target else None
        )
        async with cloudroi.open(up.url("a.tif"), context=ctx, **SEPARATE) as img:
            with pytest.raises(ObjectChangedError):
                await asyncio.wait_for(img.read(), 5)
    assert img.stats.hedged == 1


async def test_a_retried_get_is_never_hedged(server: RangeServer) -> None:
    """The fifth tile's first GET fails at once (503), its retry is slow: waited for, alone."""
    up = Upstream.publish(server, {"a.tif": COG}, "hedge-retried")
    async with fresh_context(POLICY) as ctx:
        await warm(ctx, up.url("a.tif"))
        seen: dict[str, int] = {}
        order: list[str] = []

        def retry_is_slow(request: Any) -> float:
            if not is_tile_get(request):
                return 0.0
            rng = request.headers["Range"]
            if rng not in seen:
                order.append(rng)
            seen[rng] = seen.get(rng, 0) + 1
            return 0.3 if len(order) >= 5 and rng == order[4] and seen[rng] == 2 else 0.0

        def first_fails(request: Any, etag: str) -> Fault | None:
            rng = request.headers.get("Range")
            first = len(order) >= 5 and rng == order[4] and seen[rng] == 1
            return Fault("status", status=503) if first else None

        server.latency = retry_is_slow
        server.fault = first_fails
        times, stats = await timed_reads(ctx, up.url("a.tif"), 1)
    assert (stats.retries, stats.hedged) == (1, 0)
    assert seen[order[4]] == 2
    assert times[0] >= 0.3


# -- the service -------------------------------------------------------------------------------


def region(url: str) -> dict[str, str]:
    return {"url": url, "window": "0,0,256,256", "format": "npy"}


async def test_the_service_hedges_by_default_and_counts_it(server: RangeServer) -> None:
    """Eleven cold /region reads teach the service the origin's first-byte time; the twelfth's
    tile GET stalls 3 s and is answered by its duplicate, as /metrics tells."""
    names = [f"{i}.tif" for i in range(12)]
    up = Upstream.publish(server, dict.fromkeys(names, COG), "hedge-svc")
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(up.root,)))))
    await client.start_server()
    try:
        for name in names[:-1]:
            async with client.get("/region", params=region(up.url(name))) as resp:
                assert resp.status == 200
        slow = SlowOnce(delay=3.0, nth=1)
        server.latency = slow
        t0 = time.perf_counter()
        async with client.get("/region", params=region(up.url(names[-1]))) as resp:
            assert resp.status == 200
            pixels = np.load(io.BytesIO(await resp.read()))
        took = time.perf_counter() - t0
        async with client.get("/metrics") as resp:
            metrics = await resp.text()
    finally:
        await client.close()
    assert took < 1.5
    np.testing.assert_array_equal(pixels[0], DATA)
    assert slow.target is not None
    assert slow.arrivals[slow.target] == 2
    assert re.search(r"^cloudroi_upstream_hedged_total [1-9]", metrics, re.M), metrics
    assert re.search(r"^cloudroi_upstream_hedge_wins_total [1-9]", metrics, re.M), metrics


async def test_the_service_can_turn_hedging_off() -> None:
    config = ServiceConfig.from_env({"CLOUDROI_HEDGE": "false"})
    assert config.hedge is False
    assert ServiceConfig.from_env({"CLOUDROI_HEDGE_SHARE": "0.02"}).hedge_share == 0.02
    with pytest.raises(ValueError, match="hedge_share"):
        ServiceConfig.from_env({"CLOUDROI_HEDGE_SHARE": "2"})
    state = await ServiceState.start(config)
    try:
        assert state.context.hedging is None
    finally:
        await state.close()
    assert ServiceConfig().hedge is True  # on by default (the service test above uses it)
