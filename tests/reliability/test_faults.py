"""Network faults from the fault-injecting range server, at every stage of a read: exact pixels or
one typed error, bounded retries, Retry-After honoured, deadlines kept, no full download when a
server ignores Range, and an object changed between header and tile reads never mixing pixels."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.read.fetch import RetryPolicy
from cloudroi.testing import Fault, RangeServer
from cloudroi.testing.faults import FAULTS, TRANSIENT, eventually, fail_first
from cloudroi.tiff.structure import TiffStructure
from cloudroi.types import ByteRange
from tests.reliability.reliability_support import Sample, make_images

IMAGES = make_images()
U16 = IMAGES["u16.tif"]
WINDOW = (100, 50, 400, 300)  # 4 x 3 blocks of 128 at level 0
_names = itertools.count()

RNS = cloudroi.RangeNotSupportedError
CHANGED = cloudroi.ObjectChangedError
#: What each non-retryable fault becomes when it answers the first GET (open) ...
AT_OPEN: dict[str, type[Exception]] = {
    "ignore_range": RNS,
    "wrong_range": RNS,
    "multipart": RNS,
    "encoded": RNS,
    "412": CHANGED,
    "shrunk": RNS,
    # Other bytes at open are all the client knows of the object: they are not a TIFF.
    "changed": cloudroi.TiffFormatError,
}
#: ... and when it answers a later GET (index slice or tile).
LATER: dict[str, type[Exception]] = {
    "ignore_range": RNS,
    "wrong_range": RNS,
    "multipart": RNS,
    "encoded": RNS,
    "412": CHANGED,
    "changed": CHANGED,
    "shrunk": CHANGED,
}
assert set(AT_OPEN) | TRANSIENT == set(FAULTS)

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=0.2)
STALL = 1.0  # longer than the read timeout below


def put(server: RangeServer, data: bytes, stem: str = "f") -> tuple[str, str]:
    name = f"faults-{stem}-{next(_names)}.tif"
    server.add(name, data)
    return name, server.url(name)


def private_context(**options: Any) -> cloudroi.Context:
    """A Context with its own caches (nothing carried between tests) and a short read timeout."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("read_timeout", 0.3)
    return cloudroi.Context(
        block_cache=LRUCache[bytes](32 << 20, sizeof=len),
        header_cache=LRUCache[TiffStructure](16),
        **options,
    )


MakeContext = Callable[..., cloudroi.Context]


@pytest.fixture
async def make_ctx() -> AsyncIterator[MakeContext]:
    """``private_context`` for a test; every one made is closed at the end, failed or not."""
    made: list[cloudroi.Context] = []

    def make(**options: Any) -> cloudroi.Context:
        made.append(private_context(**options))
        return made[-1]

    yield make
    for context in made:
        await context.close()


@pytest.fixture
def ctx(make_ctx: MakeContext) -> cloudroi.Context:
    return make_ctx()


def is_open(request: Any) -> bool:
    return str(request.headers.get("Range", "")).startswith("bytes=0-")


def fault_of(kind: str) -> Fault:
    return Fault("stall", delay=STALL) if kind == "stall" else FAULTS[kind]


async def read_u16(url: str, ctx: cloudroi.Context, **open_options: Any) -> np.ndarray:
    async with cloudroi.open(url, context=ctx, remember_header_size=False, **open_options) as img:
        return await img.read(WINDOW, timeout=20)


# --------------------------------------------------------------------------------------------
# every fault kind at every stage
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["open", "index", "tile"])
@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_one_fault_gives_exact_pixels_or_its_typed_error(
    server: RangeServer, ctx: cloudroi.Context, kind: str, stage: str
) -> None:
    _, url = put(server, U16.data)
    match: Callable[[Any], bool] = is_open if stage == "open" else (lambda r: not is_open(r))
    server.fault = fail_first(1, fault_of(kind), match=match)
    # With lazy_index_bytes=0 the first GET after open fetches an index slice, not a tile.
    options = {"lazy_index_bytes": 0} if stage == "index" else {}
    expected = U16.window(0, WINDOW)
    if kind in TRANSIENT:
        got = await read_u16(url, ctx, **options)
        np.testing.assert_array_equal(got, expected)
        return
    error = AT_OPEN[kind] if stage == "open" else LATER[kind]
    with pytest.raises(error):
        await read_u16(url, ctx, **options)
    # The failure poisoned nothing: the same Context reads the object correctly afterwards.
    server.fault = None
    np.testing.assert_array_equal(await read_u16(url, ctx, **options), expected)


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_a_fault_on_a_multi_range_get_gives_exact_pixels_or_its_typed_error(
    server: RangeServer, ctx: cloudroi.Context, kind: str
) -> None:
    """multirange=True: whatever answers the first multi-range GET, the read returns the exact
    pixels (retried, or range by range after an unusable answer) or ObjectChangedError."""
    _, url = put(server, U16.data)
    server.fault = fail_first(1, fault_of(kind), match=lambda r: "," in r.headers.get("Range", ""))
    options = {"multirange": True, "coalesce_gap": 0, "coalesce_max": 1}
    expected = U16.window(0, WINDOW)
    if kind in ("412", "changed", "shrunk"):
        with pytest.raises(CHANGED):
            await read_u16(url, ctx, **options)
    else:
        np.testing.assert_array_equal(await read_u16(url, ctx, **options), expected)
    assert any("," in (e.range or "") for e in server.log)  # the fault met a multi-range GET
    server.fault = None
    np.testing.assert_array_equal(await read_u16(url, ctx, **options), expected)


@pytest.mark.parametrize("kind", sorted(TRANSIENT))
async def test_a_fault_on_every_attempt_is_retried_a_bounded_number_of_times(
    server: RangeServer, ctx: cloudroi.Context, kind: str
) -> None:
    name, url = put(server, U16.data)
    async with cloudroi.open(url, context=ctx) as img:
        server.reset()
        server.fault = lambda request, etag: fault_of(kind)
        started = time.monotonic()
        with pytest.raises(cloudroi.TransientError) as info:
            await img.read((0, 0, 10, 10))
        elapsed = time.monotonic() - started
    # (A stalled GET is logged when the server's sleep ends, after the client gave up on it.)
    assert await eventually(lambda: len(server.requests_for(name)) >= FAST_RETRY.attempts, 5.0)
    assert len(server.requests_for(name)) == FAST_RETRY.attempts
    assert img.stats.retries == FAST_RETRY.attempts - 1
    # Bounded: 4 attempts, each at most a read timeout (0.3 s) plus a capped back-off (0.2 s).
    assert elapsed < 4 * (0.3 + 0.2) + 3.0
    if kind.startswith(("5", "4")):
        assert info.value.status == int(kind[:3])


async def test_a_fault_at_open_on_every_attempt_is_typed_too(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    name, url = put(server, U16.data)
    server.fault = lambda request, etag: Fault("reset", after=0)
    with pytest.raises(cloudroi.TransientError):
        await cloudroi.open(url, context=ctx)
    assert len(server.requests_for(name)) == FAST_RETRY.attempts


# --------------------------------------------------------------------------------------------
# Retry-After, back-off and the overall deadline
# --------------------------------------------------------------------------------------------


def gaps(server: RangeServer, name: str) -> list[float]:
    times = [e.at for e in server.requests_for(name)]
    return [b - a for a, b in itertools.pairwise(times)]


async def test_retry_after_is_honoured(server: RangeServer, make_ctx: MakeContext) -> None:
    ctx = make_ctx(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    name, url = put(server, U16.data)
    async with cloudroi.open(url, context=ctx) as img:
        server.reset()
        server.fault = fail_first(1, Fault("status", status=503, headers={"Retry-After": "1"}))
        np.testing.assert_array_equal(await img.read((0, 0, 10, 10)), U16.window(0, (0, 0, 10, 10)))
        (gap,) = gaps(server, name)
        assert gap >= 0.95, f"retried {gap:.3f} s after a Retry-After of 1 s"
        # Without Retry-After the back-off is the jittered exponential one: well under 1 s.
        server.reset()
        server.fault = fail_first(2, Fault("status", status=503))
        np.testing.assert_array_equal(await img.read((0, 0, 10, 10)), U16.window(0, (0, 0, 10, 10)))
        assert all(g < 0.5 for g in gaps(server, name))


async def test_retry_after_is_capped_by_the_policy(
    server: RangeServer, make_ctx: MakeContext
) -> None:
    ctx = make_ctx(retry=RetryPolicy(attempts=2, base_delay=0.01, max_retry_after=0.3))
    name, url = put(server, U16.data)
    async with cloudroi.open(url, context=ctx) as img:
        server.reset()
        server.fault = fail_first(1, Fault("status", status=429, headers={"Retry-After": "3600"}))
        np.testing.assert_array_equal(await img.read((0, 0, 10, 10)), U16.window(0, (0, 0, 10, 10)))
        (gap,) = gaps(server, name)
        assert 0.25 <= gap < 2.0


async def test_the_overall_deadline_beats_retry_after(
    server: RangeServer, make_ctx: MakeContext
) -> None:
    # A policy willing to wait long: the read's own deadline still ends it on time.
    ctx = make_ctx(retry=RetryPolicy(attempts=10, max_retry_after=30.0))
    _, url = put(server, U16.data)
    async with cloudroi.open(url, context=ctx) as img:
        server.fault = lambda request, etag: Fault(
            "status", status=503, headers={"Retry-After": "30"}
        )
        started = time.monotonic()
        with pytest.raises(cloudroi.ReadTimeoutError):
            await img.read(WINDOW, timeout=0.5)
        assert time.monotonic() - started < 3.0
        # Nothing left behind: no fetch still running for the abandoned read.
        assert await eventually(lambda: len(ctx.inflight) == 0, 2.0)
        server.fault = None
        np.testing.assert_array_equal(await img.read(WINDOW), U16.window(0, WINDOW))


async def test_a_stall_longer_than_the_read_timeout(
    server: RangeServer, make_ctx: MakeContext
) -> None:
    ctx = make_ctx(read_timeout=0.2)
    _, url = put(server, U16.data)
    async with cloudroi.open(url, context=ctx) as img:
        server.fault = fail_first(1, Fault("stall", delay=3.0))
        started = time.monotonic()
        np.testing.assert_array_equal(await img.read((0, 0, 10, 10)), U16.window(0, (0, 0, 10, 10)))
        assert time.monotonic() - started < 2.5  # the stalled GET was given up, not waited out
        assert img.stats.retries == 1
        # A stall on every attempt within a deadline: ReadTimeoutError at the deadline.
        server.fault = lambda request, etag: Fault("stall", delay=3.0)
        with pytest.raises(cloudroi.ReadTimeoutError):
            await img.read((200, 200, 10, 10), timeout=0.5)


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, max_retry_after=5.0)
    for attempt in range(1, 8):
        cap = min(1.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt, None) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert len(set(delays)) > 150  # jittered: concurrent clients do not retry in step
        assert max(delays) > cap * 0.8
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 3600.0) == 5.0


# --------------------------------------------------------------------------------------------
# a server that ignores Range on a large object
# --------------------------------------------------------------------------------------------

BIG = 64 << 20


@pytest.fixture(scope="module")
def big_object() -> bytes:
    return np.random.default_rng(1).integers(0, 256, BIG, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("when", ["open", "read"])
async def test_an_ignored_range_is_not_downloaded(
    server: RangeServer, ctx: cloudroi.Context, big_object: bytes, when: str
) -> None:
    name, url = put(server, big_object, "big")
    source = await ctx.source(url)
    if when == "read":
        await source.open(1024)
    server.reset()
    server.fault = lambda request, etag: Fault("ignore_range")
    attempt = (
        source.open(32 * 1024) if when == "open" else source.read(ByteRange(5_000_000, 5_100_000))
    )
    with pytest.raises(cloudroi.RangeNotSupportedError):
        await attempt
    assert await eventually(lambda: len(server.requests_for(name)) == 1, 10.0)
    (entry,) = server.requests_for(name)
    assert entry.status == 200
    # The client hung up: the server got to send a few socket buffers' worth, not 64 MiB.
    assert entry.body_bytes < BIG // 4, f"{entry.body_bytes} of {BIG} bytes went out"
    server.fault = None


# --------------------------------------------------------------------------------------------
# the object changes between the header read and the tile reads
# --------------------------------------------------------------------------------------------


def other_version(sample: Sample) -> bytes:
    """Same layout and size class, other pixels."""
    from cloudroi.cog import write_cog

    arr = sample.levels[0]
    return write_cog(
        arr ^ np.uint16(0x0F0F), mask=sample.masks[0], tile=128, compression="deflate", predictor=2
    )


@pytest.mark.parametrize(
    "behaviour",
    ["if-match", "etag-only", "size-only"],
    ids=["honours If-Match", "ignores If-Match", "no ETag at all"],
)
async def test_an_object_replaced_after_open_is_detected(
    behaviour: str, make_ctx: MakeContext
) -> None:
    new = other_version(U16) + (b"\0" * 100 if behaviour == "size-only" else b"")
    with RangeServer(
        {"a.tif": U16.data}, etags=behaviour != "size-only", honour_if_match=behaviour == "if-match"
    ) as srv:
        ctx = make_ctx()
        async with cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            np.testing.assert_array_equal(
                await img.read((0, 0, 64, 64)), U16.window(0, (0, 0, 64, 64))
            )
            srv.add("a.tif", new)
            with pytest.raises(cloudroi.ObjectChangedError):
                await img.read(WINDOW)
            statuses = {e.status for e in srv.requests_for("a.tif")}
            assert (412 in statuses) == (behaviour == "if-match")
        # Opened again, the new version is read, whatever was cached for the old one.
        async with cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            got = await img.read((0, 0, 64, 64))
            np.testing.assert_array_equal(got, U16.window(0, (0, 0, 64, 64)) ^ np.uint16(0x0F0F))


@pytest.mark.parametrize("multirange", [False, True])
@pytest.mark.parametrize("honour_if_match", [True, False])
@pytest.mark.parametrize("after", [0, 1, 3, 7])
async def test_an_object_replaced_mid_read_never_mixes_pixels(
    honour_if_match: bool, after: int, multirange: bool, make_ctx: MakeContext
) -> None:
    """The object is replaced while a read's tile GETs are in flight (after ``after`` of them):
    the read returns the old pixels exactly, or raises ObjectChangedError; never a mix."""
    new = other_version(U16)
    with RangeServer({"a.tif": U16.data}, honour_if_match=honour_if_match) as srv:
        seen = itertools.count()

        def swap(request: Any, etag: str) -> Fault | None:
            if not is_open(request) and next(seen) == after:
                srv.add("a.tif", new)
            return None

        ctx = make_ctx(max_concurrency=2)
        async with cloudroi.open(
            srv.url("a.tif"), context=ctx, coalesce_gap=0, coalesce_max=1, multirange=multirange
        ) as img:
            srv.fault = swap
            try:
                got = await img.read((0, 0, 1100, 900))
            except cloudroi.ObjectChangedError:
                pass
            else:
                np.testing.assert_array_equal(got, U16.levels[0])
                tile_gets = [
                    e
                    for e in srv.requests_for("a.tif")
                    if e.range and not e.range.startswith("bytes=0-")
                ]
                assert len(tile_gets) <= after + 1


async def test_an_object_shrunk_after_open_is_detected(make_ctx: MakeContext) -> None:
    with RangeServer({"a.tif": U16.data}, honour_if_match=False) as srv:
        ctx = make_ctx()
        async with cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            srv.add("a.tif", U16.data[: len(U16.data) // 3])
            with pytest.raises(cloudroi.ObjectChangedError):
                await img.read((900, 800, 200, 100))  # tiles now past the end: 416
            assert 416 in {e.status for e in srv.requests_for("a.tif")}


# --------------------------------------------------------------------------------------------
# S3 (moto): If-Match, and caches keyed by (url, ETag) after an overwrite
# --------------------------------------------------------------------------------------------


async def test_s3_overwrite_serves_the_new_version_and_never_the_cached_old_one(
    s3_client: Any, s3_storage_options: dict[str, dict[str, Any]], make_ctx: MakeContext
) -> None:
    bucket = f"reliability-{next(_names)}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="a.tif", Body=U16.data)
    url = f"s3://{bucket}/a.tif"
    ctx = make_ctx(storage_options=s3_storage_options)
    win = (0, 0, 300, 200)
    async with cloudroi.open(url, context=ctx) as img:
        np.testing.assert_array_equal(await img.read(win), U16.window(0, win))
    async with cloudroi.open(url, context=ctx) as img:  # warm: header and blocks cached
        np.testing.assert_array_equal(await img.read(win), U16.window(0, win))
        assert img.stats.header_cache_hits == 1
        assert cache_hits(img) > 0
        assert img.stats.tile_requests == 0
        old = img
        new = other_version(U16)
        s3_client.put_object(Bucket=bucket, Key="a.tif", Body=new)
        # The Image opened before the overwrite refuses to read the new bytes (IfMatch -> 412).
        with pytest.raises(cloudroi.ObjectChangedError):
            await old.read((600, 600, 100, 100))
    async with cloudroi.open(url, context=ctx) as img:
        got = await img.read(win)
        np.testing.assert_array_equal(got, U16.window(0, win) ^ np.uint16(0x0F0F))
        assert img.stats.header_cache_hits == 0
        assert cache_hits(img) == 0  # the old version's blocks are not the new one's


def cache_hits(img: cloudroi.Image) -> int:
    """Blocks served from any cache (compressed, or decoded where the Context keeps those)."""
    return int(img.stats.cache_hits + getattr(img.stats, "decoded_cache_hits", 0))


# --------------------------------------------------------------------------------------------
# abandoned reads leave nothing behind
# --------------------------------------------------------------------------------------------


async def test_a_failed_tile_iteration_leaves_no_unawaited_block_fetch(
    make_ctx: MakeContext,
) -> None:
    import gc
    import sys

    strips = IMAGES["strips.tif"]
    leaked: list[str] = []
    saved = sys.unraisablehook
    sys.unraisablehook = lambda u: leaked.append(f"{u.exc_value}")
    try:
        with RangeServer({"s.tif": strips.data}) as srv:
            ctx = make_ctx()
            async with cloudroi.open(
                srv.url("s.tif"), context=ctx, coalesce_gap=0, coalesce_max=1
            ) as img:
                srv.fault = fail_first(
                    1, Fault("status", status=412), match=lambda r: not is_open(r)
                )

                async def iterate() -> None:
                    async for _ in img.iter_tiles((0, 0, 400, 300)):
                        pass

                with pytest.raises(cloudroi.ObjectChangedError):
                    await iterate()
                assert await eventually(lambda: len(ctx.inflight) == 0, 2.0)
        gc.collect()
    finally:
        sys.unraisablehook = saved
    assert leaked == []


async def test_a_read_joining_a_fetch_just_abandoned_by_another_still_succeeds(
    make_ctx: MakeContext,
) -> None:
    with RangeServer({"a.tif": U16.data}) as srv:
        ctx = make_ctx(read_timeout=5.0)  # the 1 s latency below must not time out
        async with cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            # long enough that the first read is still waiting when it is cancelled, even on a
            # loaded machine (with 0.3 s it once finished first under a full parallel run)
            srv.latency = 1.0
            first = asyncio.create_task(img.read((0, 0, 64, 64)))
            await asyncio.sleep(0.1)  # its tile GET is in flight
            first.cancel()  # its share of the fetch is released: the fetch is cancelled ...
            second = asyncio.create_task(img.read((0, 0, 64, 64)))  # ... as this one joins it
            np.testing.assert_array_equal(await second, U16.window(0, (0, 0, 64, 64)))
            with pytest.raises(asyncio.CancelledError):
                await first
