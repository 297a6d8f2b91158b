"""Hedged range GETs: the tail of first-byte latency cut by asking twice, rarely.

Object stores answer most GETs quickly and a few (a percent or two) very late. When a GET has
not delivered its first byte (its status line and headers) within a threshold, the same request
goes out again and whichever answers first with a checked body wins; the other is cancelled,
its connection closed. The threshold adapts per origin: the ``percentile`` of recent first-byte
latencies there, never below ``floor``, and no hedge at all before ``min_samples`` of them. A
token budget keeps duplicates at most ``share`` of the GETs sent (each GET earns ``share`` of a
token, a duplicate spends one), so a slow origin cannot double its own load. A retried GET is
never hedged (the retry already is the second try).

Sources take part by declaring ``Hedgeable`` (``cloudroi.source.base``): they name their origin
and report each GET's first byte through ``first_byte``. ``Fetcher`` drives this module; a
``Context`` holds one ``Hedging`` (latencies and budget shared by its Images).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from asyncio import FIRST_COMPLETED
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import TransientError
from ..source.base import first_byte
from ..types import Stats

__all__ = ["HedgePolicy", "Hedging", "OriginLatency"]

T = TypeVar("T")
#: Origins whose latencies are kept (least recently used ones are forgotten first).
MAX_ORIGINS = 1024


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a GET is sent a second time (see the module docstring)."""

    #: The percentile of recent first-byte latencies a GET may take before it is hedged.
    percentile: float = 0.95
    #: Seconds: the threshold is never lower (a fast origin's jitter is no tail).
    floor: float = 0.05
    #: Most duplicates per GET sent, over time (0.05: at most 5 extra requests in 100).
    share: float = 0.05
    #: First-byte latencies an origin needs before any GET to it is hedged.
    min_samples: int = 20
    #: Recent first-byte latencies kept per origin.
    window: int = 200
    #: Most unspent tokens (duplicates allowed in a burst after a quiet spell).
    burst: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.percentile < 1.0:
            raise ValueError("percentile must lie between 0 and 1")
        if self.floor < 0 or self.share < 0 or self.burst < 1:
            raise ValueError("floor and share must be >= 0, burst >= 1")
        if self.min_samples < 1 or self.window < self.min_samples:
            raise ValueError("need 1 <= min_samples <= window")


class OriginLatency:
    """Recent first-byte latencies of one origin (a ring buffer) and the threshold they give."""

    __slots__ = ("_recent", "_sorted")

    def __init__(self, window: int) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._recent)

    def add(self, seconds: float) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen:
            old = recent[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        recent.append(seconds)
        bisect.insort(self._sorted, seconds)

    def threshold(self, policy: HedgePolicy) -> float | None:
        """Seconds to wait for a first byte before hedging; None: too few samples yet."""
        n = len(self._sorted)
        if n < policy.min_samples:
            return None
        rank = min(n - 1, int(policy.percentile * n))
        return max(policy.floor, self._sorted[rank])


class Hedging:
    """First-byte latencies per origin and the budget of duplicates, for one Context."""

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._origins: OrderedDict[str, OriginLatency] = OrderedDict()
        self._tokens = 0.0
        #: GETs sent through here and duplicates among them (over this Hedging's life).
        self.sent = 0
        self.hedged = 0

    def latency(self, origin: str) -> OriginLatency:
        track = self._origins.get(origin)
        if track is None:
            track = self._origins[origin] = OriginLatency(self.policy.window)
            if len(self._origins) > MAX_ORIGINS:
                self._origins.popitem(last=False)
        else:
            self._origins.move_to_end(origin)
        return track

    def _earn(self) -> None:
        self.sent += 1
        self._tokens = min(self.policy.burst, self._tokens + self.policy.share)

    def _spend(self) -> bool:
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self.sent += 1
        self.hedged += 1
        return True

    async def send(
        self, origin: str, send: Callable[[], Awaitable[T]], stats: Stats, *, may_hedge: bool
    ) -> T:
        """``send()``, timed to its first byte; sent again when that is late (``may_hedge``:
        False for a retry) and the budget allows. The first checked answer wins."""
        track = self.latency(origin)
        self._earn()
        wait = track.threshold(self.policy) if may_hedge else None
        if wait is None:
            return await _timed(track, send, None)
        loop = asyncio.get_running_loop()
        headers: asyncio.Future[None] = loop.create_future()
        primary: asyncio.Future[T] = asyncio.ensure_future(_timed(track, send, headers))
        try:
            either: set[asyncio.Future[Any]] = {primary, headers}
            await asyncio.wait(either, timeout=wait, return_when=FIRST_COMPLETED)
        except BaseException:
            await _cancel(primary)
            raise
        answered = headers.done()
        headers.cancel()
        if primary.done() or answered or not self._spend():
            return await primary
        stats.hedged += 1
        duplicate = asyncio.ensure_future(_timed(track, send, None))
        return await _race(primary, duplicate, stats)


async def _timed(
    track: OriginLatency, send: Callable[[], Awaitable[T]], headers: asyncio.Future[None] | None
) -> T:
    """``send()``, its first-byte latency added to ``track`` (and ``headers`` resolved then);
    a GET cancelled before its first byte adds the time it waited (a lower bound)."""
    start = time.monotonic()
    seen = False

    def arrived() -> None:
        nonlocal seen
        if not seen:
            seen = True
            track.add(time.monotonic() - start)
            if headers is not None and not headers.done():
                headers.set_result(None)

    token = first_byte.set(arrived)
    try:
        return await send()
    except asyncio.CancelledError:
        if not seen:
            track.add(time.monotonic() - start)
        raise
    finally:
        first_byte.reset(token)


async def _race(primary: asyncio.Future[T], duplicate: asyncio.Future[T], stats: Stats) -> T:
    """The first of two identical GETs to succeed; the other is cancelled and awaited (its
    connection closed). When both fail, the more definite error (not transient) is raised."""
    pending: set[asyncio.Future[T]] = {primary, duplicate}
    errors: list[BaseException] = []
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: t is not primary):
                exc = task.exception()
                if exc is None:
                    if task is duplicate:
                        stats.hedge_wins += 1
                    return task.result()
                errors.append(exc)
    finally:
        for task in pending:
            await _cancel(task)
    raise next((e for e in errors if not isinstance(e, TransientError)), errors[0])


async def _cancel(task: asyncio.Future[T]) -> None:
    """Cancel ``task`` and wait until it has finished (its response closed)."""
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning
        return
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()
