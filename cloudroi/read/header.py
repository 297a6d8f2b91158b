"""Reading a TIFF header over ranges: the I/O loop around the sans-I/O parser.

Open costs one GET of a prefix (its answer also gives the object's size and ETag). When IFDs or
tag values lie beyond it, each further round trip fetches every missing piece at once, each piece
stretched to a read-ahead that doubles per round, so a header of any size takes few round trips.

Each IFD is parsed once per open (the rounds share the parsed IFDs) and the work of one open is
capped by ``ParseLimits``. Once the bytes in hand pass ``OFF_LOOP_BYTES`` or the IFDs
``OFF_LOOP_IFDS``, parsing runs in the given executor, so a large header never holds the event
loop; a usual COG header (one 32 KiB prefix, a dozen IFDs) is parsed on the loop, where it costs
less than a thread hop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

from ..errors import TiffFormatError
from ..tiff.parse import ParseLimits, RawIFD, SparseBuffer
from ..tiff.structure import ScanResult, TiffStructure, build, scan
from ..types import ByteRange, ObjectMeta
from .fetch import Fetcher
from .plan import coalesce

__all__ = [
    "DEFAULT_LAZY_INDEX_BYTES",
    "DEFAULT_PREFIX_BYTES",
    "OFF_LOOP_BYTES",
    "OFF_LOOP_IFDS",
    "HeaderOptions",
    "load_structure",
]

#: First GET size. 32 KiB holds the whole header of GDAL COGs up to ~10k x 10k with overviews and
#: masks; see README "Choosing the header prefix" for the measurement behind it.
DEFAULT_PREFIX_BYTES = 32 * 1024
#: Index arrays (TileOffsets/TileByteCounts) above this are loaded slice by slice on demand.
DEFAULT_LAZY_INDEX_BYTES = 64 * 1024
#: Header bytes in hand above which parsing runs in the executor instead of on the event loop.
OFF_LOOP_BYTES = 256 * 1024
#: IFDs above which they are described in the executor (a GDAL COG has 1 + overviews, x2 with
#: a mask: about 30 for the largest images).
OFF_LOOP_IFDS = 64


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


def _step(
    buf: SparseBuffer,
    pieces: list[tuple[int, bytes]],
    limits: ParseLimits,
    lazy_index_bytes: int,
    parsed: dict[int, RawIFD],
    max_build_ifds: int | None = None,
) -> ScanResult | TiffStructure:
    """Add the fetched ``pieces``, scan again, and build the structure once nothing is missing
    (unless the scan found more than ``max_build_ifds`` IFDs: the complete scan is returned)."""
    for start, data in pieces:
        buf.add(start, data)
    result = scan(buf, limits, lazy_index_bytes, parsed)
    if result.missing or (max_build_ifds is not None and len(result.ifds) > max_build_ifds):
        return result
    return build(buf, result, limits)


async def load_structure(
    fetcher: Fetcher,
    meta: ObjectMeta,
    prefix: bytes,
    options: HeaderOptions,
    executor: Executor | None = None,
) -> TiffStructure:
    """Parse the header starting from ``prefix`` (bytes 0..n of the object), fetching the rest.

    With an ``executor``, large rounds (``OFF_LOOP_BYTES``, ``OFF_LOOP_IFDS``) are parsed in it.
    """
    buf = SparseBuffer(meta.size)
    pieces = [(0, prefix)]
    readahead = max(len(prefix), 16 * 1024)
    fetched = len(prefix)
    limits = options.limits
    parsed: dict[int, RawIFD] = {}
    loop = asyncio.get_running_loop()
    for _ in range(options.max_rounds):
        args = (buf, pieces, limits, options.lazy_index_bytes, parsed)
        if executor is None:
            step = _step(*args)
        elif fetched > OFF_LOOP_BYTES or len(parsed) > OFF_LOOP_IFDS:
            step = await loop.run_in_executor(executor, _step, *args)
        else:
            step = _step(*args, OFF_LOOP_IFDS)
            if isinstance(step, ScanResult) and not step.missing:  # many IFDs to describe
                step = await loop.run_in_executor(executor, build, buf, step, limits)
        if isinstance(step, TiffStructure):
            return step
        ranges = _extend(step.missing, readahead, meta.size)
        fetched += sum(r.length for r in ranges)
        if fetched > limits.max_header_bytes:
            raise TiffFormatError(
                f"header spans more than {limits.max_header_bytes} bytes ({fetched} fetched)"
            )
        datas = await fetcher.get_many(ranges, "header")
        pieces = [(rng.start, data) for rng, data in zip(ranges, datas, strict=True)]
        readahead *= 2
    raise TiffFormatError(f"header still incomplete after {options.max_rounds} round trips")
