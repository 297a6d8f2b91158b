"""Sending range requests for one Image: concurrency limit, retries with jittered backoff,
accounting, length checks.

``Fetcher`` is the only caller of a ``RangeSource``'s reads. It knows nothing about blocks or
TIFF: ``cloudroi.read.blocks`` owns block bytes (caches, in-flight sharing) and asks it for
ranges. A source that declares ``MultiRangeSource`` may be asked for several ranges in one
request; a ``RequestCounter`` source says how many requests it really sent (redirect hops
included, none for bytes already in memory), any other source costs one request per call.

With a ``Hedging`` (``cloudroi.read.hedge``), a first attempt against a ``Hedgeable`` source
whose first byte is late is sent again; the duplicate shares the attempt's concurrency slot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from ..errors import ObjectChangedError, TransientError
from ..source.base import Hedgeable, MultiRangeSource, RangeSource, RequestCounter
from ..tasks import gather_all
from ..types import ByteRange, ObjectMeta, Stats
from .hedge import Hedging

__all__ = ["Fetcher", "Purpose", "RetryPolicy"]

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


class Fetcher:
    """Range GETs against one source for one Image: limited, retried, counted."""

    def __init__(
        self,
        source: RangeSource,
        stats: Stats,
        limiter: asyncio.Semaphore,
        retry: RetryPolicy,
        hedging: Hedging | None = None,
    ) -> None:
        self.stats = stats
        self._limiter = limiter
        self._retry = retry
        self._hedging = hedging
        self._seen = 0
        self.source = source

    @property
    def source(self) -> RangeSource:
        return self._source

    @source.setter
    def source(self, source: RangeSource) -> None:
        self._source = source
        self._seen = source.requests_sent if isinstance(source, RequestCounter) else 0

    @property
    def free(self) -> bool:
        """Whether reads cost no request: the bytes are in memory (a source that counts its
        requests and never sent one)."""
        src = self._source
        return isinstance(src, RequestCounter) and src.requests_sent == 0

    @property
    def multirange(self) -> bool:
        """Whether several ranges may go out as one request now."""
        src = self._source
        return isinstance(src, MultiRangeSource) and src.multirange

    def _count_sent(self) -> None:
        """Add what a counting source sent since the last look (its redirects included)."""
        src = self._source
        if isinstance(src, RequestCounter):
            sent = src.requests_sent
            self.stats.requests += sent - self._seen
            self._seen = sent

    def _count(self, purpose: Purpose, nbytes: int) -> None:
        """Account one answered request's bytes."""
        if self.free:
            return  # bytes already in memory moved nothing
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

        Every attempt counts as a request, failed ones included.
        """
        counting = isinstance(self._source, RequestCounter)
        attempt = 0
        while True:
            if not counting:
                self.stats.requests += 1
            try:
                async with self._limiter:
                    return await self._send(send, first=attempt == 0)
            except TransientError as exc:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
            finally:
                self._count_sent()

    async def _send(self, send: Callable[[], Awaitable[T]], *, first: bool) -> T:
        """One attempt: through the hedging (timed, maybe sent twice) where it applies."""
        src, hedging = self._source, self._hedging
        if hedging is None or not isinstance(src, Hedgeable):
            return await send()
        return await hedging.send(src.origin, send, self.stats, may_hedge=first)

    async def get(self, rng: ByteRange, purpose: Purpose) -> bytes:
        """Exactly the bytes of ``rng``; transient failures retried per the policy."""
        data = await self._attempts(lambda: self._source.read(rng))
        self._count(purpose, len(data))
        self._check_length(rng, data)
        return data

    def _check_length(self, rng: ByteRange, data: bytes) -> None:
        if len(data) != rng.length:
            raise ObjectChangedError(
                f"asked for {rng.length} bytes at {rng.start}, got {len(data)}",
                url=self._source.url,
            )

    async def get_many(self, ranges: Sequence[ByteRange], purpose: Purpose) -> list[bytes]:
        """All ranges concurrently; the first failure cancels the rest."""
        return await gather_all(self.get(r, purpose) for r in ranges)

    async def get_together(self, ranges: Sequence[ByteRange]) -> list[bytes]:
        """Tile ranges in one multi-range GET; one GET each when the source cannot, or answers
        that one otherwise (it then remembers not to be asked again)."""
        src = self._source
        if not (isinstance(src, MultiRangeSource) and src.multirange):
            return await self.get_many(ranges, "tile")  # refused since this flight was planned
        datas = await self._attempts(lambda: src.read_many(ranges))
        if datas is None:
            self._count("tile", 0)  # the refused GET (its body was not read)
            return await self.get_many(ranges, "tile")
        self._count("tile", sum(len(d) for d in datas))
        for rng, data in zip(ranges, datas, strict=True):
            self._check_length(rng, data)
        return list(datas)

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        """The source's first read (metadata + prefix), retried like any other."""
        meta, data = await self._attempts(lambda: self._source.open(length))
        self._count("header", len(data))
        return meta, data
