"""Sans-I/O TIFF parsing: header, IFD entries and tag values from bytes already in hand.

Nothing here reads storage. Bytes live in a ``SparseBuffer``; when a parse step needs bytes that
are not there it raises ``NeedBytes`` naming the exact range, and the caller (``cloudroi.header``)
fetches it and calls again. Every count and offset read from the file is checked against the
object size and the configured ``ParseLimits`` before it is used to size anything.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from ..errors import TiffFormatError
from ..types import ByteRange
from .tags import FIELD_TYPES

__all__ = [
    "NeedBytes",
    "ParseLimits",
    "RawIFD",
    "SparseBuffer",
    "TagEntry",
    "TiffHeader",
    "parse_header",
    "parse_ifd",
    "tag_bytes",
    "tag_values",
]


class NeedBytes(Exception):
    """Raised by a parse step that needs bytes not in the buffer yet."""

    def __init__(self, rng: ByteRange) -> None:
        super().__init__(f"need bytes {rng.start}-{rng.end}")
        self.range = rng


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Caps on everything a header can make us allocate or fetch (see FACTS: libtiff's limits)."""

    max_ifds: int = 1024
    max_tags_per_ifd: int = 4096
    max_tag_bytes: int = 64 << 20
    max_header_bytes: int = 128 << 20
    max_dimension: int = 1 << 31
    max_tiles: int = 1 << 28
    max_tile_bytes: int = 512 << 20
    max_samples: int = 4096


class SparseBuffer:
    """Disjoint byte chunks of one object of known size, looked up by offset."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._starts: list[int] = []
        self._chunks: list[bytes] = []

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self._chunks)

    def add(self, start: int, data: bytes) -> None:
        if not data:
            return
        end = start + len(data)
        # Merge with every chunk that overlaps or touches [start, end).
        i = bisect.bisect_left(self._starts, start)
        if i > 0 and self._starts[i - 1] + len(self._chunks[i - 1]) >= start:
            i -= 1
        j = i
        new_start, pieces_end = start, end
        merged = data
        while j < len(self._starts) and self._starts[j] <= pieces_end:
            c_start, c = self._starts[j], self._chunks[j]
            c_end = c_start + len(c)
            if c_start < new_start:
                merged = c[: new_start - c_start] + merged
                new_start = c_start
            if c_end > pieces_end:
                merged = merged + c[pieces_end - c_start :]
                pieces_end = c_end
            j += 1
        self._starts[i:j] = [new_start]
        self._chunks[i:j] = [merged]

    def has(self, start: int, length: int) -> bool:
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and start + length <= self._starts[i] + len(self._chunks[i])

    def available(self, start: int, max_length: int) -> bytes:
        """Up to ``max_length`` contiguous bytes held from ``start`` (possibly none)."""
        i = bisect.bisect_right(self._starts, start) - 1
        if i < 0:
            return b""
        c_start, c = self._starts[i], self._chunks[i]
        return c[start - c_start : start - c_start + max_length]

    def get(self, start: int, length: int) -> bytes:
        """The bytes ``[start, start+length)``; ``NeedBytes`` if absent, error if past the end."""
        if start < 0 or length < 0 or start + length > self.size:
            raise TiffFormatError(
                f"bytes {start}-{start + length} lie outside the {self.size}-byte object"
            )
        if length == 0:
            return b""
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0:
            c_start, c = self._starts[i], self._chunks[i]
            if start + length <= c_start + len(c):
                return c[start - c_start : start - c_start + length]
        raise NeedBytes(ByteRange(start, start + length))


@dataclass(frozen=True, slots=True)
class TiffHeader:
    byteorder: str  # "<" or ">"
    bigtiff: bool
    first_ifd: int

    @property
    def offset_size(self) -> int:
        return 8 if self.bigtiff else 4

    @property
    def size(self) -> int:
        return 16 if self.bigtiff else 8


def parse_header(buf: SparseBuffer) -> TiffHeader:
    if buf.size < 8:
        raise TiffFormatError(f"object of {buf.size} bytes is too small to be a TIFF")
    head = buf.get(0, 8)
    if head[:2] == b"II":
        bo = "<"
    elif head[:2] == b"MM":
        bo = ">"
    else:
        raise TiffFormatError(f"not a TIFF file (starts with {head[:4]!r})")
    (version,) = struct.unpack(bo + "H", head[2:4])
    if version == 42:
        (first,) = struct.unpack(bo + "I", head[4:8])
        header = TiffHeader(bo, False, first)
    elif version == 43:
        rest = buf.get(4, 12)
        offsize, zero, first = struct.unpack(bo + "HHQ", rest)
        if offsize != 8 or zero != 0:
            raise TiffFormatError("malformed BigTIFF header")
        header = TiffHeader(bo, True, first)
    else:
        raise TiffFormatError(f"unknown TIFF version {version}")
    if header.first_ifd < header.size or header.first_ifd >= buf.size:
        raise TiffFormatError(f"first IFD offset {header.first_ifd} is outside the file")
    return header


@dataclass(frozen=True, slots=True)
class TagEntry:
    """One IFD entry: where its value lives (inline bytes, or an offset in the file)."""

    tag: int
    type: int
    count: int
    inline: bytes | None  # the value when it fits in the entry
    offset: int  # file offset of the value when it does not

    @property
    def itemsize(self) -> int:
        return FIELD_TYPES[self.type][1]

    @property
    def nbytes(self) -> int:
        return self.count * self.itemsize

    @property
    def value_range(self) -> ByteRange | None:
        return None if self.inline is not None else ByteRange.sized(self.offset, self.nbytes)


@dataclass(slots=True)
class RawIFD:
    offset: int
    entries: dict[int, TagEntry] = field(default_factory=dict)
    next_ifd: int = 0

    def __contains__(self, tag: int) -> bool:
        return tag in self.entries


def ifd_entries_range(header: TiffHeader, offset: int, count: int) -> ByteRange:
    """Bytes holding an IFD with ``count`` entries, its entry count and its next-IFD offset."""
    if header.bigtiff:
        return ByteRange.sized(offset, 8 + count * 20 + 8)
    return ByteRange.sized(offset, 2 + count * 12 + 4)


def parse_ifd(buf: SparseBuffer, header: TiffHeader, offset: int, limits: ParseLimits) -> RawIFD:
    """Parse the entries of the IFD at ``offset`` (not the values they point to)."""
    bo = header.byteorder
    if offset < header.size or offset >= buf.size:
        raise TiffFormatError(f"IFD offset {offset} is outside the file")
    if header.bigtiff:
        (count,) = struct.unpack(bo + "Q", buf.get(offset, 8))
    else:
        (count,) = struct.unpack(bo + "H", buf.get(offset, 2))
    if count == 0:
        raise TiffFormatError(f"IFD at {offset} has no entries")
    if count > limits.max_tags_per_ifd:
        raise TiffFormatError(f"IFD at {offset} claims {count} entries")
    rng = ifd_entries_range(header, offset, count)
    if rng.end > buf.size:
        raise TiffFormatError(f"IFD at {offset} runs past the end of the file")
    raw = buf.get(rng.start, rng.length)
    entry_size, head = (20, 8) if header.bigtiff else (12, 2)
    value_size = 8 if header.bigtiff else 4
    entry_fmt = bo + ("HHQ" if header.bigtiff else "HHI")
    off_fmt = bo + ("Q" if header.bigtiff else "I")
    ifd = RawIFD(offset)
    for i in range(count):
        pos = head + i * entry_size
        tag, typ, n = struct.unpack_from(entry_fmt, raw, pos)
        value = raw[pos + entry_size - value_size : pos + entry_size]
        if typ not in FIELD_TYPES:
            continue  # unknown field types are skipped, as libtiff does
        nbytes = n * FIELD_TYPES[typ][1]
        if nbytes <= value_size:
            entry = TagEntry(tag, typ, n, value[:nbytes], 0)
        else:
            (voff,) = struct.unpack(off_fmt, value)
            entry = TagEntry(tag, typ, n, None, voff)
        ifd.entries.setdefault(tag, entry)
    (ifd.next_ifd,) = struct.unpack_from(off_fmt, raw, rng.length - value_size)
    return ifd


def check_value_range(entry: TagEntry, size: int, limits: ParseLimits) -> None:
    if entry.nbytes > limits.max_tag_bytes:
        raise TiffFormatError(
            f"tag {entry.tag} claims {entry.nbytes} bytes (cap {limits.max_tag_bytes})"
        )
    rng = entry.value_range
    if rng is not None and rng.end > size:
        raise TiffFormatError(f"tag {entry.tag} value at {rng.start} runs past the end of file")


def tag_bytes(buf: SparseBuffer, entry: TagEntry) -> bytes:
    if entry.inline is not None:
        return entry.inline
    return buf.get(entry.offset, entry.nbytes)


def tag_values(buf: SparseBuffer, header: TiffHeader, entry: TagEntry) -> tuple[int | float, ...]:
    """Numeric values of a tag (rationals as floats)."""
    char, _itemsize, per = FIELD_TYPES[entry.type]
    data = tag_bytes(buf, entry)
    if per == 2:
        nums = struct.unpack(f"{header.byteorder}{2 * entry.count}{char}", data)
        return tuple(
            (nums[i] / nums[i + 1]) if nums[i + 1] else float("nan")
            for i in range(0, len(nums), 2)
        )
    return struct.unpack(f"{header.byteorder}{entry.count}{char}", data)


def tag_ascii(buf: SparseBuffer, entry: TagEntry) -> str:
    return tag_bytes(buf, entry).split(b"\x00", 1)[0].decode("latin-1")
