"""Walking a TIFF's IFD chain over the bytes in hand, reporting the bytes still needed.

``scan`` is pure: given a ``SparseBuffer`` it parses what it can (each IFD once per open, across
rounds, through ``parsed``) and lists the missing byte ranges; ``cloudroi.read.header`` fetches
them and calls again. It stops at a second full-resolution page (later pages are other images,
not overviews) and caps the entries parsed and the tag bytes read per open before asking for any.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import TiffFormatError
from ..types import ByteRange
from .parse import (
    NeedBytes,
    ParseLimits,
    RawIFD,
    SparseBuffer,
    TagEntry,
    TiffHeader,
    check_value_range,
    ifd_entries_range,
    ifd_entry_count,
    parse_header,
    parse_ifd,
    tag_values,
)
from .tags import INDEX_TAGS, Tag, tag_name

__all__ = ["FIRST_IFD_TAGS", "ScanResult", "integers", "scan", "subfile_type"]

FILETYPE_REDUCED = 1
FILETYPE_MASK = 4

#: Tags read from the first IFD only: georeferencing and metadata describe the whole file, and
#: SubIFDs are followed from the first image only. Their values in other IFDs are not fetched.
FIRST_IFD_TAGS = frozenset(
    {
        Tag.SUB_IFDS,
        Tag.MODEL_PIXEL_SCALE,
        Tag.MODEL_TIEPOINT,
        Tag.MODEL_TRANSFORMATION,
        Tag.GEO_KEY_DIRECTORY,
        Tag.GEO_DOUBLE_PARAMS,
        Tag.GEO_ASCII_PARAMS,
        Tag.GDAL_METADATA,
        Tag.GDAL_NODATA,
    }
)


@dataclass(slots=True)
class ScanResult:
    header: TiffHeader | None
    ifds: list[RawIFD]
    missing: list[ByteRange]
    needed_end: int  # end offset of the last byte the header parts read so far occupy


def integers(values: tuple[int | float, ...], tag: int) -> tuple[int, ...]:
    """Tag values as ints; a rational 0/0 (NaN) or an infinite double is a format error."""
    try:
        return tuple(int(v) for v in values)
    except (ValueError, OverflowError) as exc:
        raise TiffFormatError(f"tag {tag} holds a value that is not an integer") from exc


def subfile_type(buf: SparseBuffer, header: TiffHeader, raw: RawIFD) -> int:
    entry = raw.entries.get(Tag.NEW_SUBFILE_TYPE)
    if entry is None or entry.inline is None:
        return 0
    values = integers(tag_values(buf, header, entry), entry.tag)
    return values[0] if values else 0  # an entry of count 0 says nothing


def scan(
    buf: SparseBuffer,
    limits: ParseLimits,
    lazy_index_bytes: int,
    parsed: dict[int, RawIFD] | None = None,
) -> ScanResult:
    """Walk the IFD chain (and the first IFD's SubIFDs) as far as the buffer allows.

    ``parsed`` (IFD offset -> RawIFD) carries IFDs parsed by an earlier call over the same
    buffer, so that the rounds of one open parse each IFD once.
    """
    try:
        header = parse_header(buf)
    except NeedBytes as need:
        return ScanResult(None, [], [need.range], need.range.end)
    walk = _Walk(buf, header, limits, lazy_index_bytes, {} if parsed is None else parsed)
    walk.run()
    return ScanResult(header, walk.ifds, walk.missing, walk.needed_end)


@dataclass(slots=True)
class _Walk:
    """One scan's state: the IFDs reached, the bytes missing, the caps' running totals."""

    buf: SparseBuffer
    header: TiffHeader
    limits: ParseLimits
    lazy_index_bytes: int
    parsed: dict[int, RawIFD]
    ifds: list[RawIFD] = field(default_factory=list)
    missing: list[ByteRange] = field(default_factory=list)
    visited: set[int] = field(default_factory=set)
    # SubIFDs may be both listed in the tag and chained by their next pointers (tifffile does
    # both): reaching a listed one twice is not a loop.
    listed: set[int] = field(default_factory=set)
    total_entries: int = 0
    value_bytes: int = 0
    needed_end: int = 0

    def run(self) -> None:
        self.needed_end = self.header.size
        chain = [self.header.first_ifd]
        while chain:
            offset = chain.pop(0)
            if not self._visit(offset):
                continue
            raw = self._ifd(offset)
            if raw is None:
                continue
            self.total_entries += raw.count
            entries_end = ifd_entries_range(self.header, offset, raw.count).end
            self.needed_end = max(self.needed_end, entries_end)
            page = not subfile_type(self.buf, self.header, raw) & (FILETYPE_REDUCED | FILETYPE_MASK)
            if self.ifds and page:
                break  # a new page, not an overview or mask of the first image
            self.ifds.append(raw)
            self._values(raw, first=len(self.ifds) == 1)
            if len(self.ifds) == 1 and Tag.SUB_IFDS in raw.entries:
                chain.extend(self._sub_ifds(raw.entries[Tag.SUB_IFDS]))
            if raw.next_ifd:
                chain.append(raw.next_ifd)

    def _visit(self, offset: int) -> bool:
        """Whether to parse the IFD at ``offset``: not seen before (a listed SubIFD reached
        again is skipped, any other IFD reached again is a loop), within the IFD cap."""
        if offset in self.visited:
            if offset in self.listed:
                return False
            raise TiffFormatError(f"IFD loop: offset {offset} is referenced twice")
        self.visited.add(offset)
        if len(self.visited) > self.limits.max_ifds:
            raise TiffFormatError(f"more than {self.limits.max_ifds} IFDs")
        return True

    def _ifd(self, offset: int) -> RawIFD | None:
        """The IFD at ``offset``, parsed once per open; None while its bytes are missing."""
        known = self.parsed.get(offset)
        if known is not None:
            return known
        try:
            count = ifd_entry_count(self.buf, self.header, offset, self.limits)
            if self.total_entries + count > self.limits.max_total_entries:
                raise TiffFormatError(
                    f"the IFDs hold more than {self.limits.max_total_entries} entries "
                    f"({self.total_entries} before the IFD at {offset}, which claims {count})"
                )
            raw = parse_ifd(self.buf, self.header, offset, self.limits, count)
        except NeedBytes as need:
            self.missing.append(need.range)
            return None
        self.parsed[offset] = raw
        return raw

    def _values(self, raw: RawIFD, *, first: bool) -> None:
        """Note which tag values of ``raw`` are in hand and which are missing."""
        for entry in raw.entries.values():
            rng = entry.value_range
            if rng is None or (not first and entry.tag in FIRST_IFD_TAGS):
                continue
            check_value_range(entry, self.buf.size, self.limits)
            if self._lazy(entry, rng, raw.offset):
                continue  # loaded on demand, slice by slice
            if self.buf.has(rng.start, rng.length):
                self.needed_end = max(self.needed_end, rng.end)
            else:
                self.missing.append(rng)

    def _lazy(self, entry: TagEntry, rng: ByteRange, ifd_offset: int) -> bool:
        """Whether a value is left for later (a big block index not in hand); every other value
        counts towards the per-open cap on tag bytes."""
        if entry.tag in INDEX_TAGS and rng.length > self.lazy_index_bytes:
            return not self.buf.has(rng.start, rng.length)
        self.value_bytes += rng.length
        if self.value_bytes > self.limits.max_total_tag_bytes:
            raise TiffFormatError(
                f"the tag values to read at open exceed {self.limits.max_total_tag_bytes} "
                f"bytes ({self.value_bytes} with {tag_name(entry.tag)} of the IFD at "
                f"{ifd_offset})"
            )
        return False

    def _sub_ifds(self, entry: TagEntry) -> list[int]:
        try:
            subs = list(integers(tag_values(self.buf, self.header, entry), entry.tag))
        except NeedBytes as need:
            self.missing.append(need.range)
            return []
        self.listed.update(subs)
        return subs
