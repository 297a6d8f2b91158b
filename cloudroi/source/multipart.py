"""``multipart/byteranges`` (RFC 9110 14.6): the answer to a multi-range GET, written and parsed.

``ByterangesParser`` is sans-I/O: it is fed the body's bytes in any chunking (down to one byte at
a time) and never touches a socket, so ``HTTPSource.read_many`` feeds it what it reads, while the
tests and the fuzzer (``fuzz/fuzz_multipart.py``) feed it bytes alone. ``multipart_byteranges``
writes such a body; the test range server answers multi-range GETs with it.

What servers do, and what is accepted (as nginx, Apache and Go's file server answer; RFC 9110
allows all of it): parts in any order, ranges merged into one part (gaps included), a preamble
before the first delimiter, part headers in any case, a quoted boundary, and a missing closing
delimiter when every byte asked is there. Anything else is ``NotByteranges`` (the caller asks
range by range), a part naming another object size is ``ObjectChangedError``, and a body ending
inside a part is a ``TransientError`` (truncated; worth retrying).

Bounds, whatever the body holds (a refusal as soon as one is passed, never a larger buffer):

* at most ``2 * len(ranges)`` parts, ``MAX_HEADER_LINES`` lines of headers per part;
* part bodies totalling at most ``2 * bytes asked + SLACK`` (a server merging close ranges);
* lines (delimiters, headers, preamble) of at most ``MAX_LINE`` bytes, ``MAX_STRAY_LINES``
  non-empty lines that are no delimiter, ``2 * len(ranges) + 8`` empty ones.

So the parser holds at most the parts it accepted plus one line, ``budget - budget_left +
MAX_LINE`` bytes (``held``), and takes at most ``max_input`` bytes before it is done or refuses.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Sequence

from ..errors import ObjectChangedError, RangeNotSupportedError, TransientError
from ..types import ByteRange
from .base import ContentRange, parse_content_range

__all__ = [
    "MAX_BOUNDARY",
    "MAX_HEADER_LINES",
    "MAX_LINE",
    "MAX_STRAY_LINES",
    "SLACK",
    "ByterangesParser",
    "NotByteranges",
    "byteranges_boundary",
    "multipart_byteranges",
]

#: Longest line (without its LF) taken anywhere in the body: delimiter, header or preamble.
MAX_LINE = 1024
#: Header lines of one part, its ending empty line included.
MAX_HEADER_LINES = 32
#: Non-empty lines outside parts that are no delimiter (preamble, stray text).
MAX_STRAY_LINES = 8
#: Part bytes allowed beyond twice the bytes asked (servers merge ranges close together).
SLACK = 64 << 10
#: Longest boundary taken from a Content-Type (RFC 2046 allows 70; some servers use more).
MAX_BOUNDARY = 200


class NotByteranges(RangeNotSupportedError):
    """A multi-range answer that cannot be used as the ranges asked; the caller asks range by
    range instead (and need not ask that server for several ranges again)."""


class _State(enum.Enum):
    LINES = "lines"  # between parts: preamble, the CRLF before a delimiter, delimiters
    HEADERS = "headers"  # a part's header lines, up to the empty one
    BODY = "body"  # a part's bytes, as many as its Content-Range names
    DONE = "done"  # closing delimiter seen; the epilogue is ignored
    FAILED = "failed"  # an error was raised; nothing more is taken


def byteranges_boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/byteranges`` Content-Type (quoted or not), else None."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/byteranges":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= MAX_BOUNDARY:
                return value.encode("latin-1")
    return None


def multipart_byteranges(data: bytes, ranges: Sequence[tuple[int, int]], boundary: str) -> bytes:
    """A ``multipart/byteranges`` body of the inclusive ``(first, last)`` ``ranges`` of
    ``data``, framed as nginx and Apache frame it (CRLF, delimiter, headers, empty line)."""
    size = len(data)
    chunks = []
    for first, last in ranges:
        chunks.append(
            f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n".encode()
        )
        chunks.append(data[first : last + 1])
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(chunks)


class ByterangesParser:
    """Incremental parser of one ``multipart/byteranges`` body answering ``ranges`` (sorted,
    disjoint) of an object of ``size`` bytes.

    ``feed`` it the body in chunks until ``done`` or the body ends, then call ``result``.
    ``feed`` raises ``NotByteranges`` or ``ObjectChangedError``; ``result`` raises those, or
    ``TransientError`` when the body ended inside a part. After an error the parser holds
    nothing and raises the same error again.
    """

    def __init__(
        self, boundary: bytes, ranges: Sequence[ByteRange], size: int, *, url: str = ""
    ) -> None:
        if not 0 < len(boundary) <= MAX_BOUNDARY:
            raise ValueError(f"a boundary has 1 to {MAX_BOUNDARY} bytes")
        self._delimiter = b"--" + boundary
        self._closing = self._delimiter + b"--"
        self._ranges = tuple(ranges)
        self._size = size
        self._url = url
        #: Part bytes allowed in all: twice the bytes asked, plus ``SLACK``.
        self.budget = 2 * sum(r.length for r in self._ranges) + SLACK
        self._left = self.budget
        self._max_parts = 2 * len(self._ranges)
        self._max_blank = 2 * len(self._ranges) + 8
        self._state = _State.LINES
        self._error: NotByteranges | ObjectChangedError | TransientError | None = None
        self._line = bytearray()  # the current line, until its LF
        self._stray = self._blank = 0
        self._header_lines = 0  # of the current part
        self._cr: ContentRange | None = None  # of the current part
        self._first = self._remaining = 0  # of the current part's body
        self._chunks: list[bytes] = []  # of the current part's body
        self._starts: list[int] = []  # of the parts read, sorted
        self._bodies: list[bytes] = []  # in the order of ``_starts``
        self._held = 0  # bytes in ``_chunks`` and ``_bodies``
        #: Bytes taken so far (the epilogue after the closing delimiter excluded).
        self.consumed = 0

    # -- what the caller asks ----------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the closing delimiter was seen: nothing more is needed; call ``result``."""
        return self._state is _State.DONE

    @property
    def wants(self) -> int:
        """The most bytes the next ``feed`` uses without passing the current element (the rest
        of a part body, or the longest line allowed); 0 when done or failed. A reader asking
        for no more than this never reads more than ``MAX_LINE`` bytes past the end."""
        if self._state is _State.BODY:
            return self._remaining
        if self._state in (_State.LINES, _State.HEADERS):
            return MAX_LINE + 1 - len(self._line)
        return 0

    @property
    def budget_left(self) -> int:
        """Part bytes still allowed: ``budget`` less the lengths of the parts begun so far."""
        return self._left

    @property
    def held(self) -> int:
        """Bytes the parser holds now: part bodies (never more than ``budget - budget_left``)
        and the current line (never more than ``MAX_LINE``)."""
        return self._held + len(self._line)

    @property
    def max_input(self) -> int:
        """The most bytes a body can make the parser take before it is done or refuses."""
        lines = (
            MAX_STRAY_LINES
            + self._max_blank
            + 1  # outside parts, the closing delimiter
            + self._max_parts * (1 + MAX_HEADER_LINES)  # delimiters and headers
        )
        return self.budget + (lines + 1) * (MAX_LINE + 1)

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body; ignored once ``done``."""
        self._check()
        if not isinstance(data, bytes):
            data = bytes(data)  # parts keep references to what they were fed
        pos, n = 0, len(data)
        try:
            while pos < n and self._state is not _State.DONE:
                if self._state is _State.BODY:
                    pos = self._take_body(data, pos)
                else:
                    pos = self._take_line(data, pos)
        except (NotByteranges, ObjectChangedError) as exc:
            self._fail(exc)
            raise
        finally:
            self.consumed += pos

    def result(self) -> list[bytes]:
        """The bytes of each range asked, in order: call when ``done`` or when the body ended
        (a missing closing delimiter is forgiven when every byte asked is there)."""
        self._check()
        try:
            if self._state is not _State.DONE:
                self._end_of_body()
            return self._cut()
        except (NotByteranges, ObjectChangedError, TransientError) as exc:
            self._fail(exc)
            raise

    # -- states ------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, exc: NotByteranges | ObjectChangedError | TransientError) -> None:
        self._error = exc
        self._state = _State.FAILED
        self._line.clear()
        self._chunks, self._starts, self._bodies, self._held = [], [], [], 0

    def _take_body(self, data: bytes, pos: int) -> int:
        n = min(self._remaining, len(data) - pos)
        self._chunks.append(data if pos == 0 and n == len(data) else data[pos : pos + n])
        self._held += n
        self._remaining -= n
        if self._remaining == 0:
            body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks = []
            at = bisect.bisect(self._starts, self._first)
            self._starts.insert(at, self._first)
            self._bodies.insert(at, bytes(body))
            self._state = _State.LINES
        return pos + n

    def _take_line(self, data: bytes, pos: int) -> int:
        room = MAX_LINE - len(self._line)
        end = data.find(b"\n", pos, pos + room + 1)
        if end < 0:
            if len(data) - pos > room:
                raise NotByteranges(f"a line longer than {MAX_LINE} bytes", url=self._url)
            self._line += data[pos:]
            return len(data)
        self._line += data[pos:end]
        line = bytes(self._line).rstrip(b"\r\n")
        self._line.clear()
        self._on_line(line)
        return end + 1

    def _on_line(self, line: bytes) -> None:
        if self._state is _State.HEADERS:
            self._on_header(line)
        elif line == self._closing:
            self._state = _State.DONE
        elif line == self._delimiter:
            if len(self._bodies) >= self._max_parts:
                raise NotByteranges("more parts than ranges asked", url=self._url)
            self._state = _State.HEADERS
            self._header_lines = 0
            self._cr = None
        else:
            # the CRLF before each delimiter, and a preamble before the first one
            if line:
                self._stray += 1
            else:
                self._blank += 1
            if self._stray > MAX_STRAY_LINES or self._blank > self._max_blank:
                raise NotByteranges("no multipart delimiter", url=self._url)

    def _on_header(self, line: bytes) -> None:
        if not line:
            self._begin_body()
            return
        self._header_lines += 1
        if self._header_lines >= MAX_HEADER_LINES:
            raise NotByteranges("part headers do not end", url=self._url)
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-range":
            self._cr = parse_content_range(value.decode("latin-1"))

    def _begin_body(self) -> None:
        cr = self._cr
        if cr is None or cr.first is None or cr.last is None:
            raise NotByteranges("part without a usable Content-Range", url=self._url)
        if cr.total is not None and cr.total != self._size:
            raise ObjectChangedError(
                f"object size changed from {self._size} to {cr.total}", url=self._url
            )
        length = cr.last - cr.first + 1
        if cr.last >= self._size or length > self._left:
            raise NotByteranges("part outside the object or larger than asked", url=self._url)
        self._left -= length
        self._first, self._remaining = cr.first, length
        self._state = _State.BODY

    def _end_of_body(self) -> None:
        """The body ended before the closing delimiter: take its last line (if it has no LF)
        and, inside a part's headers, the end of them."""
        if self._line:
            line = bytes(self._line).rstrip(b"\r\n")
            self._line.clear()
            self._on_line(line)
        if self._state is _State.HEADERS:
            self._on_header(b"")
        if self._state is _State.BODY:
            got = sum(len(c) for c in self._chunks)
            raise TransientError(
                f"truncated multipart part: {got} of {got + self._remaining} bytes",
                url=self._url,
            )

    def _cut(self) -> list[bytes]:
        """The asked ranges cut out of the parts (which may be reordered or merged)."""
        starts, bodies = self._starts, self._bodies
        out = []
        for r in self._ranges:
            i = bisect.bisect(starts, r.start) - 1
            if i < 0 or starts[i] + len(bodies[i]) < r.end:
                raise NotByteranges(
                    f"bytes {r.start}-{r.end - 1} missing from the answer", url=self._url
                )
            body, off = bodies[i], r.start - starts[i]
            out.append(body if off == 0 and len(body) == r.length else body[off : off + r.length])
        return out
