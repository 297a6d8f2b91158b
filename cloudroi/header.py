"""Reading a TIFF header over ranges: the I/O loop around the sans-I/O parser.

Open costs one GET of a prefix (its answer also gives the object's size and ETag). When IFDs or
tag values lie beyond it, each further round trip fetches every missing piece at once, each piece
stretched to a read-ahead that doubles per round, so a header of any size takes few round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TiffFormatError
from .fetch import Fetcher
from .plan import coalesce
from .tiff.parse import ParseLimits, SparseBuffer
from .tiff.structure import TiffStructure, build, scan
from .types import ByteRange, ObjectMeta

__all__ = ["DEFAULT_LAZY_INDEX_BYTES", "DEFAULT_PREFIX_BYTES", "HeaderOptions", "load_structure"]

#: First GET size. 32 KiB holds the whole header of GDAL COGs up to ~10k x 10k with overviews and
#: masks; see README "Choosing the header prefix" for the measurement behind it.
DEFAULT_PREFIX_BYTES = 32 * 1024
#: Index arrays (TileOffsets/TileByteCounts) above this are loaded slice by slice on demand.
DEFAULT_LAZY_INDEX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HeaderOptions:
    prefix_bytes: int = DEFAULT_PREFIX_BYTES
    lazy_index_bytes: int = DEFAULT_LAZY_INDEX_BYTES
    max_rounds: int = 32
    limits: ParseLimits = ParseLimits()


def _extend(missing: list[ByteRange], readahead: int, size: int) -> list[ByteRange]:
    """Coalesce nearby missing pieces and stretch each request to at least ``readahead``."""
    groups = coalesce(missing, max_gap=readahead, max_size=max(readahead * 4, 1 << 20))
    out: list[ByteRange] = []
    for g in groups:
        end = min(size, max(g.range.end, g.range.start + readahead))
        if out and g.range.start < out[-1].end:  # overlap after stretching: merge
            out[-1] = ByteRange(out[-1].start, max(out[-1].end, end))
        else:
            out.append(ByteRange(g.range.start, end))
    return out


async def load_structure(
    fetcher: Fetcher, meta: ObjectMeta, prefix: bytes, options: HeaderOptions
) -> TiffStructure:
    """Parse the header starting from ``prefix`` (bytes 0..n of the object), fetching the rest."""
    buf = SparseBuffer(meta.size)
    buf.add(0, prefix)
    readahead = max(len(prefix), 16 * 1024)
    fetched = len(prefix)
    limits = options.limits
    for _ in range(options.max_rounds):
        result = scan(buf, limits, options.lazy_index_bytes)
        if not result.missing:
            structure = build(buf, result, limits)
            return structure
        ranges = _extend(result.missing, readahead, meta.size)
        fetched += sum(r.length for r in ranges)
        if fetched > limits.max_header_bytes:
            raise TiffFormatError(
                f"header spans more than {limits.max_header_bytes} bytes ({fetched} fetched)"
            )
        for rng, data in zip(ranges, await fetcher.get_many(ranges, "header"), strict=True):
            buf.add(rng.start, data)
        readahead *= 2
    raise TiffFormatError(f"header still incomplete after {options.max_rounds} round trips")
