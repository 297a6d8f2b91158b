"""The one owner of block bytes: pinned (preloaded) blocks, the compressed-block cache, fetches
in flight shared between readers, and the fallback when a block's bytes do not check out.

``BlockStore.request`` turns block requests into ``BlockWaiter``s: a block in hand resolves at
once, a block another read is already fetching joins that fetch, the rest go out as coalesced
GETs (several of them as one multi-range GET where the source takes them). A fetch shared by
several readers is cancelled only when the last of them lets go, so one caller's timeout never
breaks another's read. The store knows nothing of TIFF: a request may carry a ``trim`` callback
that finds the block inside the bytes fetched (GDAL's block leader, checked by the TIFF layer)
and a ``fallback`` that finds the block's exact range when the trim refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from ..cache import LRUCache
from ..types import ByteRange
from .fetch import Fetcher
from .plan import Coalesced, coalesce

__all__ = ["BlockRequest", "BlockStore", "BlockWaiter", "Inflight"]

#: Finds a block inside the bytes of its request's range: (start, end), or None when they do not
#: check out (then the request's ``fallback`` gives the exact range).
Trim = Callable[[memoryview], "tuple[int, int] | None"]
Fallback = Callable[[], Awaitable["ByteRange | None"]]

#: A multi-range GET carries at most this many ranges ...
MULTI_RANGES = 8
#: ... totalling at most this many bytes: parallel GETs keep more of a fast link busy than one
#: long response, so big reads still spread over several connections.
MULTI_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """One block: its cache key, the bytes to fetch and, for ranges wider than the block, how
    to find it in them and what to do when that fails."""

    key: Hashable
    range: ByteRange
    trim: Trim | None = None
    fallback: Fallback | None = None


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

    @classmethod
    def ready(cls, data: bytes) -> BlockWaiter:
        """A waiter for bytes already in hand."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        fut.set_result(data)
        return cls(fut, None)

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


#: One coalesced range of a flight: the range, its block requests and their futures.
_Job = tuple[ByteRange, list[BlockRequest], list["asyncio.Future[bytes]"]]


class BlockStore:
    """Block bytes of one Image: pinned blocks, the shared cache, shared in-flight fetches."""

    def __init__(
        self,
        fetcher: Fetcher,
        cache: LRUCache[bytes],
        inflight: Inflight,
        *,
        max_gap: int,
        max_size: int,
        multirange: bool = False,
    ) -> None:
        self.fetcher = fetcher
        self.cache = cache
        self.inflight = inflight
        self.max_gap = max_gap
        self.max_size = max_size
        self.multirange = multirange
        #: Blocks kept for the Image's lifetime (``Image.preload``), never evicted.
        self.pinned: dict[Hashable, bytes] = {}

    def has(self, key: Hashable) -> bool:
        """Whether the block's bytes are in hand (no request needed)."""
        return key in self.pinned or self.cache.peek(key)

    def cached(self, key: Hashable) -> bytes | None:
        data = self.pinned.get(key)
        return data if data is not None else self.cache.get(key)

    def request(self, requests: Sequence[BlockRequest]) -> list[BlockWaiter]:
        """One ``BlockWaiter`` per request, resolving to that block's bytes.

        Must be called on the event loop; starts the needed GETs at once. A caller that stops
        before awaiting every waiter must ``release()`` the rest.
        """
        stats = self.fetcher.stats
        out: list[BlockWaiter | None] = []
        todo: list[tuple[int, BlockRequest]] = []
        for i, req in enumerate(requests):
            data = self.cached(req.key)
            if data is not None:
                stats.cache_hits += 1
                out.append(BlockWaiter.ready(data))
                continue
            entry = self.inflight.get(req.key)
            if entry is not None:
                stats.inflight_shared += 1
                out.append(BlockWaiter(*entry))
                continue
            stats.cache_misses += 1
            out.append(None)  # filled in below, once its coalesced GET exists
            todo.append((i, req))
        groups = coalesce([req.range for _, req in todo], self.max_gap, self.max_size)
        together = self.multirange and len(groups) > 1 and self.fetcher.multirange
        for batch in _batches(groups) if together else [[g] for g in groups]:
            self._start_flight(batch, todo, out)
        return [w for w in out if w is not None]

    def _start_flight(
        self,
        batch: list[Coalesced],
        todo: list[tuple[int, BlockRequest]],
        out: list[BlockWaiter | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        flight = _Flight(self.inflight)
        jobs: list[_Job] = []
        for group in batch:
            members = [todo[m] for m in group.members]
            futures: list[asyncio.Future[bytes]] = []
            for i, req in members:
                fut: asyncio.Future[bytes] = loop.create_future()
                fut.add_done_callback(_silence)
                self.inflight.add(req.key, fut, flight)
                flight.entries.append((req.key, fut))
                futures.append(fut)
                out[i] = BlockWaiter(fut, flight)
            jobs.append((group.range, [req for _, req in members], futures))
        flight.task = loop.create_task(self._run_flight(jobs))

    async def _run_flight(self, jobs: list[_Job]) -> None:
        """One GET (or one multi-range GET) and the blocks it carries."""
        futures = [fut for _, _, futs in jobs for fut in futs]
        try:
            if len(jobs) == 1:
                datas = [await self.fetcher.get(jobs[0][0], "tile")]
            else:
                datas = await self.fetcher.get_together([rng for rng, _, _ in jobs])
            refused: list[tuple[BlockRequest, asyncio.Future[bytes]]] = []
            for (rng, reqs, futs), data in zip(jobs, datas, strict=True):
                refused += self._hand_out(rng, data, reqs, futs)
            for req, fut in refused:
                fut.set_result(await self._fall_back(req))
        except asyncio.CancelledError:
            for fut in futures:
                fut.cancel()
            raise
        except BaseException as exc:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            for _, reqs, futs in jobs:
                for req, fut in zip(reqs, futs, strict=True):
                    self.inflight.discard(req.key, fut)

    def _hand_out(
        self,
        rng: ByteRange,
        data: bytes,
        reqs: list[BlockRequest],
        futs: list[asyncio.Future[bytes]],
    ) -> list[tuple[BlockRequest, asyncio.Future[bytes]]]:
        """Cut each block out of one GET's bytes, cache it and resolve its future; return the
        blocks whose trim refused them."""
        view = memoryview(data)
        refused = []
        for req, fut in zip(reqs, futs, strict=True):
            lo, hi = req.range.start - rng.start, req.range.end - rng.start
            if req.trim is not None:
                span = req.trim(view[lo:hi])
                if span is None:
                    refused.append((req, fut))
                    continue
                lo, hi = lo + span[0], lo + span[1]
            # One copy per block (none when the block is the whole GET), made on the loop:
            # every copy here delays the bytes of the other GETs.
            piece = data if lo == 0 and hi == len(data) else bytes(view[lo:hi])
            self.cache.put(req.key, piece)
            fut.set_result(piece)
        return refused

    async def _fall_back(self, req: BlockRequest) -> bytes:
        """The bytes of a block whose trim refused them, from its exact range."""
        if req.fallback is None:
            raise AssertionError("a trimmed block request needs a fallback")
        exact = await req.fallback()
        if exact is None:
            return b""  # sparse after all
        data = await self.fetcher.get(exact, "tile")
        self.cache.put(req.key, data)
        return data


def _batches(groups: Sequence[Coalesced]) -> list[list[Coalesced]]:
    """Consecutive coalesced groups packed into multi-range GETs within the limits above."""
    out: list[list[Coalesced]] = []
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
