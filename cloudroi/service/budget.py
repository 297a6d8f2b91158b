"""The memory budget the requests in progress share: each reserves what its answer will hold
(``cloudroi.region.estimate_bytes``, from the header, before any tile is fetched) and waits in
line when it is not free; past its wait it is answered 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

__all__ = ["BudgetExhausted", "MemoryBudget"]


class BudgetExhausted(Exception):
    """The bytes a request needs did not come free within its wait."""


class MemoryBudget:
    """A byte budget shared by the requests in progress; first come, first served.

    ``reserve(n, wait)`` holds ``n`` bytes for the body of the ``async with``; when they are not
    free it waits in line up to ``wait`` seconds, then raises ``BudgetExhausted``. A request asking
    for more than the whole budget must be refused before it gets here.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._line: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int, wait: float) -> AsyncIterator[None]:
        await self._acquire(nbytes, wait)
        try:
            yield
        finally:
            self._release(nbytes)

    async def _acquire(self, nbytes: int, wait: float) -> None:
        if not self._line and self.used + nbytes <= self.capacity:
            self.used += nbytes
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (nbytes, fut)
        self._line.append(entry)
        try:
            try:
                async with asyncio.timeout(wait):
                    await fut
            except TimeoutError as exc:
                raise BudgetExhausted(f"{nbytes} bytes not free within {wait:g} s") from exc
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._release(nbytes)  # granted just as the wait ended: give it back
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._line.remove(entry)
                self._grant()  # the head of the line may have been this request
            raise

    def _release(self, nbytes: int) -> None:
        self.used -= nbytes
        self._grant()

    def _grant(self) -> None:
        while self._line:
            nbytes, fut = self._line[0]
            if fut.done():
                self._line.popleft()
                continue
            if self.used + nbytes > self.capacity:
                return
            self._line.popleft()
            self.used += nbytes
            fut.set_result(None)
