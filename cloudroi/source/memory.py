"""In-memory bytes as a RangeSource: for tests, for data already in hand, and for the demo."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ..types import ByteRange, ObjectMeta
from .base import RangeSource, RequestCounter

__all__ = ["MemorySource", "PrefetchedSource"]


class MemorySource:
    """Serves ranges of a bytes-like object; the ETag is a digest of the content.

    A ``RangeSource`` and a ``RequestCounter`` that sends no request.
    """

    def __init__(self, data: bytes | bytearray | memoryview, url: str = "memory://") -> None:
        self._data = bytes(data)
        self.url = url
        self.meta = ObjectMeta(
            size=len(self._data), etag=hashlib.blake2b(self._data, digest_size=12).hexdigest()
        )

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        return self.meta, self._data[: max(0, length)]

    async def read(self, rng: ByteRange) -> bytes:
        return self._data[rng.start : min(rng.end, len(self._data))]

    async def close(self) -> None:
        return None

    @property
    def requests_sent(self) -> int:
        """Always 0: reads from memory cost no request."""
        return 0


class PrefetchedSource:
    """An object that came back whole with the first GET: later reads come from memory.

    Wraps the source that fetched it (closing it on close). A ``RequestCounter`` that sends no
    request: reads here cost none.
    """

    def __init__(self, inner: RangeSource, meta: ObjectMeta, data: bytes) -> None:
        self.url = inner.url
        self.meta = meta
        self._inner = inner
        self._data = data

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        return self.meta, self._data[: max(0, length)]

    async def read(self, rng: ByteRange) -> bytes:
        return self._data[rng.start : min(rng.end, len(self._data))]

    async def close(self) -> None:
        await self._inner.close()

    @property
    def requests_sent(self) -> int:
        """Always 0: reads from memory cost no request (the GET that fetched the object was
        counted when it was sent)."""
        return 0


if TYPE_CHECKING:  # the capabilities these sources declare, checked by mypy

    def _declared(
        m: MemorySource, p: PrefetchedSource
    ) -> tuple[RangeSource, RequestCounter, RangeSource, RequestCounter]:
        return m, m, p, p
