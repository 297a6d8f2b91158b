"""The one I/O seam: a RangeSource returns exact byte ranges of one object, pinned to one version.

Every backend (HTTP, fsspec/S3, local file, memory) implements this Protocol and translates its own
exceptions into ``cloudroi.errors`` here, at the boundary; nothing above this layer sees aiohttp,
botocore or OSError. Retrying, caching, coalescing and accounting live above, in ``cloudroi.fetch``.

Capabilities beyond the single-range get are small Protocols of their own, declared here and
checked with ``isinstance`` (all are ``runtime_checkable``; a source implements those that apply):

``RangeSource``
    every source: ``url``, ``open(length)``, ``read(rng)``, ``close()``.
``MultiRangeSource``
    several ranges in one request: ``multirange`` (a property: whether a multi-range request is
    worth trying now; False once the server answered one otherwise) and
    ``read_many(ranges) -> list[bytes] | None`` (the bytes of each range, or None when the server
    answered otherwise and nothing was returned: the caller asks range by range). A caller checks
    ``multirange`` before each ``read_many``, which always sends its request.
    ``HTTPSource`` only (a ``multipart/byteranges`` GET).
``RequestCounter``
    a source that counts the requests it sends itself, in ``requests_sent`` (an int that only
    grows). ``HTTPSource`` counts every GET it starts: redirect hops, multi-range GETs (refused
    ones too) and attempts that failed on the wire. ``MemorySource`` and ``PrefetchedSource``
    send none (their reads cost no request) and stay at 0. The caller counts one request per
    call for a source that is no ``RequestCounter`` (file, fsspec).
``Hedgeable``
    a source whose GETs may be hedged (``cloudroi.read.hedge``): it names the ``origin`` that
    serves its bytes and calls the ``first_byte`` callback set for the running task when a
    GET's status line and headers have arrived. ``HTTPSource`` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import ObjectChangedError, RangeNotSupportedError
from ..types import ByteRange, ObjectMeta

__all__ = [
    "ContentRange",
    "Hedgeable",
    "MultiRangeSource",
    "RangeSource",
    "RequestCounter",
    "check_content_range",
    "first_byte",
    "notify_first_byte",
    "parse_content_range",
]


@runtime_checkable
class RangeSource(Protocol):
    """Byte ranges of one object.

    ``open`` is called once, first: it returns the object's metadata and its first
    ``min(length, size)`` bytes in a single request where the backend allows it, and pins the
    version it saw. ``read`` then returns exactly the requested bytes of that same version or raises
    ``ObjectChangedError``; a range past the end of the object is a ``TiffFormatError``-worthy
    request the caller never makes (it clips to ``meta.size``).
    """

    url: str

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]: ...

    async def read(self, rng: ByteRange) -> bytes: ...

    async def close(self) -> None: ...


@runtime_checkable
class MultiRangeSource(Protocol):
    """Several byte ranges of the object in one request (e.g. a ``multipart/byteranges`` GET)."""

    @property
    def multirange(self) -> bool:
        """Whether a multi-range request is worth trying now (not refused by the server)."""
        ...

    async def read_many(self, ranges: Sequence[ByteRange]) -> list[bytes] | None:
        """The bytes of each of ``ranges`` (sorted, disjoint, at least two), in order; None
        when the server answered otherwise (``multirange`` is then False): ask range by range.
        Raises like ``read``."""
        ...


@runtime_checkable
class RequestCounter(Protocol):
    """A source that counts the requests it sends (the caller then counts none for it)."""

    @property
    def requests_sent(self) -> int:
        """Requests sent so far by this source; only grows."""
        ...


@runtime_checkable
class Hedgeable(Protocol):
    """A source whose GETs report their first byte through ``first_byte`` (so they may be
    hedged), per ``origin``."""

    @property
    def origin(self) -> str:
        """Where the bytes come from (scheme://host:port after redirects): latencies are
        tracked per origin."""
        ...


#: Called (by a ``Hedgeable`` source, in the task that sends the GET) when a GET's first byte
#: arrived: its status line and headers, before the body. None: nobody is listening.
first_byte: ContextVar[Callable[[], None] | None] = ContextVar("cloudroi_first_byte", default=None)


def notify_first_byte() -> None:
    """Tell whoever timed the current GET that its first byte arrived."""
    hook = first_byte.get()
    if hook is not None:
        hook()


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range`` value: ``first``/``last`` are None for ``bytes */total``."""

    first: int | None
    last: int | None
    total: int | None


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse ``bytes a-b/total``, ``bytes a-b/*`` or ``bytes */total``; None when malformed."""
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if m is None:
        return None
    first = int(m.group(1)) if m.group(1) is not None else None
    last = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    if first is not None and last is not None and last < first:
        return None
    return ContentRange(first, last, total)


def check_content_range(
    header: str | None, asked: ByteRange, *, size: int | None, url: str
) -> ContentRange:
    """Validate a 206 answer's Content-Range against what was asked.

    The server may clip the end at the object's end, never move the start; the total must equal the
    size seen at open (a different total means the object was replaced).
    """
    cr = parse_content_range(header)
    if cr is None or cr.first is None or cr.last is None:
        raise RangeNotSupportedError(f"206 with unusable Content-Range {header!r}", url=url)
    if size is not None and cr.total is not None and cr.total != size:
        raise ObjectChangedError(f"object size changed from {size} to {cr.total}", url=url)
    end = cr.last + 1
    clipped_ok = cr.total is not None and end == cr.total and end < asked.end
    if cr.first != asked.start or (end != asked.end and not clipped_ok):
        raise RangeNotSupportedError(
            f"asked for bytes {asked.start}-{asked.end - 1}, got Content-Range {header!r}", url=url
        )
    return cr
