"""Memory a request may hold: estimated from the header before any tile is fetched, bounded per
request (413 with the numbers) and in total across requests in progress (wait, then 503).

The estimate counts what a region answer holds at its peak: the array read, what its mask needs
(the mask itself, and the bands a nodata mask reads when they are not the bands asked for), the
8-bit rendering, and the encoded body (twice: the encoder's buffer and the bytes handed on). A
resampled read holds its output and the blocks being decoded, never its whole source window
(``Image.read`` samples block by block), so the estimate is of the output, not the source.
Decoded blocks in flight are bounded process-wide by the decode pool and the decoded-block cache,
not per request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["BudgetExhausted", "MemoryBudget", "RequestBytes", "estimate_region"]

#: Rows an 8-bit rendering converts at a time (outputs.render): its float32 working copy is this
#: many rows of every band, not the whole image.
RENDER_ROWS = 256


@dataclass(frozen=True, slots=True)
class RequestBytes:
    """The bytes one request would hold, by part."""

    data: int
    mask: int
    rendering: int
    body: int

    @property
    def total(self) -> int:
        return self.data + self.mask + self.rendering + self.body

    def describe(self) -> str:
        return (
            f"{self.total} bytes (data {self.data}, mask {self.mask}, rendering "
            f"{self.rendering}, encoded body {self.body})"
        )


def estimate_region(
    *,
    height: int,
    width: int,
    bands: int,
    itemsize: int,
    rendered: bool,
    mask_bytes: int,
) -> RequestBytes:
    """What a region answer of ``bands`` x ``height`` x ``width`` samples of ``itemsize`` bytes
    holds; ``rendered`` for 8-bit images (png/jpeg/webp), else the data formats (npy, GeoTIFF),
    whose body is the data itself. ``mask_bytes`` is what its mask reads and holds."""
    pixels = height * width
    data = bands * pixels * itemsize
    if rendered:
        channels = 4  # RGB + alpha at most
        # the 8-bit pixels, one format-specific copy (grey to RGB, alpha dropped), a float32
        # working strip of every band
        rendering = 2 * pixels * channels + bands * min(height, RENDER_ROWS) * width * 4
        body = 2 * (pixels * channels + 4096)
    else:
        rendering = 0
        body = 2 * (data + 4096)
    return RequestBytes(data, mask_bytes, rendering, body)


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
