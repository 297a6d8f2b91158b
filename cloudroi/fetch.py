"""Running fetches: concurrency limit, retries with jittered backoff, accounting, block caching,
coalescing and in-flight de-duplication.

``Fetcher`` sends range GETs for one Image. ``Fetcher.blocks`` serves a list of block requests:
cached blocks at once, blocks another read is already fetching by joining that fetch, the rest by
coalesced GETs started here (asked for, several of them as one multi-range GET). A fetch shared by
several readers is cancelled only when the last of them is cancelled, so one caller's timeout never
breaks another's read.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .cache import LRUCache
from .errors import ObjectChangedError, TransientError
from .plan import coalesce, leader_span
from .source.base import RangeSource
from .tasks import gather_all
from .types import ByteRange, ObjectMeta, Stats

__all__ = [
    "BlockRequest",
    "BlockWaiter",
    "Fetcher",
    "Inflight",
    "LeaderMismatch",
    "RetryPolicy",
]

Purpose = Literal["header", "index", "tile"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of transient failures: exponential backoff with full jitter."""

    attempts: int = 4
    base_delay: float = 0.05
    max_delay: float = 2.0
    max_retry_after: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = random.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))
        if retry_after is not None:
            return min(max(retry_after, backoff), self.max_retry_after)
        return backoff


class LeaderMismatch(Exception):
    """A block read through GDAL's size leader did not check out; TileByteCounts is needed."""


@dataclass(frozen=True, slots=True)
class BlockRequest:
    key: Hashable
    range: ByteRange
    leader: bool = False  # range is [offset-4, next_offset-4): strip and verify the leader


class _Flight:
    """One coalesced GET serving one or more blocks, with the number of readers waiting on it."""

    __slots__ = ("entries", "registry", "task", "waiters")

    def __init__(self, registry: Inflight) -> None:
        self.task: asyncio.Task[None] | None = None
        self.waiters = 0
        self.registry = registry
        self.entries: list[tuple[Hashable, asyncio.Future[bytes]]] = []

    def abandon(self) -> None:
        """Its last reader let go: cancel the GET and withdraw its blocks from the registry at
        once, so that a reader arriving meanwhile starts a fetch of its own rather than joining
        one that is being cancelled."""
        if self.task is not None:
            self.task.cancel()
        for key, fut in self.entries:
            self.registry.discard(key, fut)


class Inflight:
    """Block fetches under way, shared by the Images of one Context on one event loop."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[asyncio.Future[bytes], _Flight]] = {}

    def get(self, key: Hashable) -> tuple[asyncio.Future[bytes], _Flight] | None:
        return self._entries.get(key)

    def add(self, key: Hashable, fut: asyncio.Future[bytes], flight: _Flight) -> None:
        self._entries[key] = (fut, flight)

    def discard(self, key: Hashable, fut: asyncio.Future[bytes]) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] is fut:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class BlockWaiter:
    """One reader's share of a block fetch: awaitable once, for the block's bytes.

    It counts as a waiter of its fetch from creation (so a sibling reader cancelled before this
    one starts cannot cancel a fetch this one needs) until awaited to the end or ``release()``d;
    when the last waiter of an unfinished fetch lets go, the fetch is cancelled and its
    connection released. Not a coroutine, so one left unawaited leaves no warning behind.
    """

    __slots__ = ("_flight", "_fut", "_released")

    def __init__(self, fut: asyncio.Future[bytes], flight: _Flight | None) -> None:
        self._fut = fut
        self._flight = flight
        self._released = False
        if flight is not None:
            flight.waiters += 1

    def __await__(self) -> Generator[Any, None, bytes]:
        try:
            return (yield from asyncio.shield(self._fut).__await__())
        finally:
            self.release()

    def release(self) -> None:
        """Give up this share (no-op once awaited or released)."""
        if self._released:
            return
        self._released = True
        flight = self._flight
        if flight is None:
            return
        flight.waiters -= 1
        if not self._fut.done() and flight.waiters <= 0:
            flight.abandon()


def _silence(fut: asyncio.Future[bytes]) -> None:
    # Mark an exception as retrieved: a block nobody waits for any more must not log noise.
    if not fut.cancelled():
        fut.exception()


class Fetcher:
    """Range GETs against one source for one Image: limited, retried, counted."""

    def __init__(
        self,
        source: RangeSource,
        stats: Stats,
        limiter: asyncio.Semaphore,
        retry: RetryPolicy,
    ) -> None:
        self.source = source
        self.stats = stats
        self._limiter = limiter
        self._retry = retry

    def _count(self, purpose: Purpose, nbytes: int) -> None:
        """Account one answered request (``requests`` itself is counted as it is sent)."""
        s = self.stats
        s.bytes_fetched += nbytes
        if purpose == "header":
            s.header_requests += 1
            s.header_bytes += nbytes
        elif purpose == "index":
            s.index_requests += 1
            s.index_bytes += nbytes
        else:
            s.tile_requests += 1
            s.tile_bytes += nbytes

    async def _attempts(self, send: Callable[[], Awaitable[T]]) -> T:
        """``send()`` under the concurrency limit, retrying transient failures per the policy.

        Every attempt counts as a request, failed ones included, unless the source serves
        bytes already in hand.
        """
        counts = getattr(self.source, "counts_requests", True)
        attempt = 0
        while True:
            if counts:
                self.stats.requests += 1
            try:
                async with self._limiter:
                    return await send()
            except TransientError as exc:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))

    async def get(self, rng: ByteRange, purpose: Purpose) -> bytes:
        """Exactly the bytes of ``rng``; transient failures retried per the policy."""
        data = await self._attempts(lambda: self.source.read(rng))
        if getattr(self.source, "counts_requests", True):
            self._count(purpose, len(data))
        self._check_length(rng, data)
        return data

    def _check_length(self, rng: ByteRange, data: bytes) -> None:
        if len(data) != rng.length:
            raise ObjectChangedError(
                f"asked for {rng.length} bytes at {rng.start}, got {len(data)}",
                url=self.source.url,
            )

    async def get_many(self, ranges: Sequence[ByteRange], purpose: Purpose) -> list[bytes]:
        """All ranges concurrently; the first failure cancels the rest."""
        return await gather_all(self.get(r, purpose) for r in ranges)

    async def get_together(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Tile ranges in one multi-range GET; one GET each when the source cannot, or answers
        that one otherwise (it then remembers not to be asked again)."""
        read_many = getattr(self.source, "read_many", None)
        if read_many is None or not getattr(self.source, "multirange", False):
            return await self.get_many(ranges, "tile")  # refused since this flight was planned
        datas = await self._attempts(lambda: read_many(ranges))
        if datas is None:
            self._count("tile", 0)  # the refused GET (its body was not read)
            return await self.get_many(ranges, "tile")
        self._count("tile", sum(len(d) for d in datas))
        for rng, data in zip(ranges, datas, strict=True):
            self._check_length(rng, data)
        return list(datas)

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        """The source's first read (metadata + prefix), retried like any other."""
        meta, data = await self._attempts(lambda: self.source.open(length))
        self._count("header", len(data))
        return meta, data

    # -- blocks ----------------------------------------------------------------------------

    def blocks(
        self,
        requests: Sequence[BlockRequest],
        *,
        cache: LRUCache[bytes],
        inflight: Inflight,
        max_gap: int,
        max_size: int,
        multirange: bool = False,
    ) -> list[BlockWaiter]:
        """One ``BlockWaiter`` per request, resolving to that block's bytes.

        Must be called on the event loop; starts the needed GETs immediately. A caller that
        stops before awaiting every waiter must ``release()`` the rest. With ``multirange``
        (and a source that takes them and has not refused one), up to ``MULTI_RANGES``
        coalesced ranges totalling at most ``MULTI_BYTES`` go out as one multi-range GET.
        """
        out: list[BlockWaiter | None] = []
        todo: list[tuple[int, BlockRequest]] = []
        loop = asyncio.get_running_loop()
        for i, req in enumerate(requests):
            data = cache.get(req.key)
            if data is not None:
                self.stats.cache_hits += 1
                fut: asyncio.Future[bytes] = loop.create_future()
                fut.set_result(data)
                out.append(BlockWaiter(fut, None))
                continue
            entry = inflight.get(req.key)
            if entry is not None:
                self.stats.inflight_shared += 1
                out.append(BlockWaiter(*entry))
                continue
            self.stats.cache_misses += 1
            out.append(None)  # filled in below, once its coalesced GET exists
            todo.append((i, req))
        groups = coalesce([req.range for _, req in todo], max_gap, max_size)
        together = multirange and len(groups) > 1 and getattr(self.source, "multirange", False)
        for batch in _batches(groups) if together else [[g] for g in groups]:
            flight = _Flight(inflight)
            jobs: list[_Job] = []
            for group in batch:
                members = [todo[m] for m in group.members]
                futures: list[asyncio.Future[bytes]] = []
                for i, req in members:
                    fut = loop.create_future()
                    fut.add_done_callback(_silence)
                    inflight.add(req.key, fut, flight)
                    flight.entries.append((req.key, fut))
                    futures.append(fut)
                    out[i] = BlockWaiter(fut, flight)
                jobs.append((group.range, members, futures))
            flight.task = loop.create_task(self._run_flight(jobs, cache, inflight))
        return [w for w in out if w is not None]

    async def _run_flight(
        self, jobs: list[_Job], cache: LRUCache[bytes], inflight: Inflight
    ) -> None:
        """One GET (or one multi-range GET) and the blocks it carries."""
        futures = [fut for _, _, futs in jobs for fut in futs]
        try:
            if len(jobs) == 1:
                datas = [await self.get(jobs[0][0], "tile")]
            else:
                datas = await self.get_together([rng for rng, _, _ in jobs])
            for (rng, members, futs), data in zip(jobs, datas, strict=True):
                view = memoryview(data)
                for (_, req), fut in zip(members, futs, strict=True):
                    lo, hi = req.range.start - rng.start, req.range.end - rng.start
                    if req.leader:
                        span = leader_span(view[lo:hi])
                        if span is None:
                            fut.set_exception(LeaderMismatch(req.key))
                            continue
                        lo, hi = lo + span[0], lo + span[1]
                    # One copy per block (none when the block is the whole GET), made on the
                    # loop: every copy here delays the bytes of the other GETs.
                    piece = data if lo == 0 and hi == len(data) else bytes(view[lo:hi])
                    cache.put(req.key, piece)
                    fut.set_result(piece)
        except asyncio.CancelledError:
            for fut in futures:
                fut.cancel()
            raise
        except BaseException as exc:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            for _, members, futs in jobs:
                for (_, req), fut in zip(members, futs, strict=True):
                    inflight.discard(req.key, fut)


#: One coalesced range of a flight: the range, its blocks (slot, request) and their futures.
_Job = tuple[ByteRange, list[tuple[int, BlockRequest]], list["asyncio.Future[bytes]"]]

#: A multi-range GET carries at most this many ranges ...
MULTI_RANGES = 8
#: ... totalling at most this many bytes: parallel GETs keep more of a fast link busy than one
#: long response, so big reads still spread over several connections.
MULTI_BYTES = 4 << 20


def _batches(groups: Sequence[Any]) -> list[list[Any]]:
    """Consecutive coalesced groups packed into multi-range GETs within the limits above."""
    out: list[list[Any]] = []
    size = 0
    for group in groups:
        length = group.range.length
        if out and len(out[-1]) < MULTI_RANGES and size + length <= MULTI_BYTES:
            out[-1].append(group)
            size += length
        else:
            out.append([group])
            size = length
    return out
