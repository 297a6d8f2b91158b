"""Sans-I/O TIFF parsing: header, IFD entries and tag values from bytes already in hand.

Nothing here reads storage. Bytes live in a ``SparseBuffer``; when a parse step needs bytes that
are not there it raises ``NeedBytes`` naming the exact range, and the caller (``cloudroi.header``)
fetches it and calls again. Every count and offset read from the file is checked against the
object size and the configured ``ParseLimits`` before it is used to size anything.
"""

from __future__ import annotations

import bisect
import functools
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TiffFormatError
from ..types import ByteRange
from .tags import FIELD_TYPES, INDEX_TAGS, WANTED_TAGS, Tag, tag_name

__all__ = [
    "NeedBytes",
    "ParseLimits",
    "RawIFD",
    "SparseBuffer",
    "TagEntry",
    "TiffHeader",
    "ifd_entry_count",
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
    #: IFD entries parsed per open, summed over every IFD read (a GDAL COG has ~20 per IFD).
    max_total_entries: int = 100_000
    #: Bytes of tag values read per open, summed over every IFD; TileOffsets/TileByteCounts
    #: arrays loaded lazily (above ``lazy_index_bytes``) are not read at open and do not count.
    max_total_tag_bytes: int = 16 << 20
    #: Largest value of any wanted tag but the block index and GDAL_METADATA (geokeys,
    #: tiepoints, JPEG tables, nodata...). BitsPerSample, SampleFormat and ExtraSamples are
    #: capped at ``max_samples`` values, SubIFDs at ``max_ifds``.
    max_small_tag_bytes: int = 1 << 20
    #: A GDAL_METADATA value larger than this is skipped: neither read nor kept (not an error).
    max_metadata_bytes: int = 1 << 20


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


@dataclass(slots=True)
class TagEntry:
    """One IFD entry: where its value lives (inline bytes, or an offset in the file). Not frozen
    (but never changed): an open makes one per wanted entry, and a frozen dataclass costs four
    times as much to create."""

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
    """One IFD's entries for the tags cloudroi reads (``WANTED_TAGS``); the others are dropped."""

    offset: int
    entries: dict[int, TagEntry] = field(default_factory=dict)
    next_ifd: int = 0
    count: int = 0  # entries the IFD holds, wanted or not

    def __contains__(self, tag: int) -> bool:
        return tag in self.entries


def ifd_entries_range(header: TiffHeader, offset: int, count: int) -> ByteRange:
    """Bytes holding an IFD with ``count`` entries, its entry count and its next-IFD offset."""
    if header.bigtiff:
        return ByteRange.sized(offset, 8 + count * 20 + 8)
    return ByteRange.sized(offset, 2 + count * 12 + 4)


#: Tag number -> whether cloudroi reads it: one lookup per entry, for all entries at once.
_WANTED = np.zeros(1 << 16, dtype=bool)
_WANTED[sorted(WANTED_TAGS)] = True


@functools.cache
def _entry_dtype(byteorder: str, bigtiff: bool) -> np.dtype[Any]:
    """One IFD entry as a numpy record; ``value`` (raw bytes) and ``voff`` (the same bytes read as
    an offset) overlap."""
    int_char, value_at, value_size = ("u8", 12, 8) if bigtiff else ("u4", 8, 4)
    return np.dtype(
        {
            "names": ["tag", "type", "count", "value", "voff"],
            "formats": [
                byteorder + "u2",
                byteorder + "u2",
                byteorder + int_char,
                f"V{value_size}",
                byteorder + int_char,
            ],
            "offsets": [0, 2, 4, value_at, value_at],
            "itemsize": value_at + value_size,
        }
    )


def ifd_entry_count(buf: SparseBuffer, header: TiffHeader, offset: int, limits: ParseLimits) -> int:
    """How many entries the IFD at ``offset`` claims (checked against ``max_tags_per_ifd``)."""
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
        raise TiffFormatError(
            f"IFD at {offset} claims {count} entries (cap {limits.max_tags_per_ifd})"
        )
    return int(count)


def parse_ifd(
    buf: SparseBuffer,
    header: TiffHeader,
    offset: int,
    limits: ParseLimits,
    count: int | None = None,
) -> RawIFD:
    """Parse the entries of the IFD at ``offset`` (not the values they point to).

    All entries are decoded at once with numpy; only those of ``WANTED_TAGS`` are kept. A
    GDAL_METADATA value above ``limits.max_metadata_bytes`` is dropped here, so it is never read.
    """
    if count is None:
        count = ifd_entry_count(buf, header, offset, limits)
    rng = ifd_entries_range(header, offset, count)
    if rng.end > buf.size:
        raise TiffFormatError(f"IFD at {offset} runs past the end of the file")
    raw = buf.get(rng.start, rng.length)
    head, value_size = (8, 8) if header.bigtiff else (2, 4)
    table = np.frombuffer(raw, _entry_dtype(header.byteorder, header.bigtiff), count, head)
    ifd = RawIFD(offset, count=count)
    keep = np.flatnonzero(_WANTED[table["tag"]])
    for tag, typ, n, value, voff in table[keep].tolist():
        if typ not in FIELD_TYPES:
            continue  # unknown field types are skipped, as libtiff does
        if tag in ifd.entries:
            continue  # the first of duplicated tags wins
        nbytes = n * FIELD_TYPES[typ][1]
        if tag == Tag.GDAL_METADATA and nbytes > limits.max_metadata_bytes:
            continue  # optional and unused beyond a size: not worth fetching or keeping
        if nbytes <= value_size:
            ifd.entries[tag] = TagEntry(tag, typ, n, value[:nbytes], 0)
        else:
            ifd.entries[tag] = TagEntry(tag, typ, n, None, voff)
    (ifd.next_ifd,) = struct.unpack_from(
        header.byteorder + ("Q" if header.bigtiff else "I"), raw, rng.length - value_size
    )
    return ifd


#: Tags whose values are one number per sample.
_PER_SAMPLE_TAGS = frozenset({Tag.BITS_PER_SAMPLE, Tag.SAMPLE_FORMAT, Tag.EXTRA_SAMPLES})


def check_value_range(entry: TagEntry, size: int, limits: ParseLimits) -> None:
    """Refuse a wanted tag whose value is larger than its cap or lies past the end of the file,
    before its bytes are asked for."""
    if entry.nbytes > limits.max_tag_bytes:
        raise TiffFormatError(
            f"{tag_name(entry.tag)} claims {entry.nbytes} bytes (cap {limits.max_tag_bytes})"
        )
    if entry.tag in _PER_SAMPLE_TAGS:
        if entry.count > limits.max_samples:
            raise TiffFormatError(
                f"{tag_name(entry.tag)} holds {entry.count} values "
                f"(cap {limits.max_samples}, one per sample)"
            )
    elif entry.tag == Tag.SUB_IFDS:
        if entry.count > limits.max_ifds:
            raise TiffFormatError(
                f"{tag_name(entry.tag)} lists {entry.count} IFDs (cap {limits.max_ifds})"
            )
    elif entry.tag not in INDEX_TAGS:
        cap = (
            limits.max_metadata_bytes
            if entry.tag == Tag.GDAL_METADATA
            else limits.max_small_tag_bytes
        )
        if entry.nbytes > cap:
            raise TiffFormatError(f"{tag_name(entry.tag)} claims {entry.nbytes} bytes (cap {cap})")
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
            (nums[i] / nums[i + 1]) if nums[i + 1] else float("nan") for i in range(0, len(nums), 2)
        )
    return struct.unpack(f"{header.byteorder}{entry.count}{char}", data)


def tag_ascii(buf: SparseBuffer, entry: TagEntry) -> str:
    return tag_bytes(buf, entry).split(b"\x00", 1)[0].decode("latin-1")
