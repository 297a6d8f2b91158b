"""Pure read planning: window -> blocks -> byte ranges -> coalesced requests; overview choice.

No I/O and no asyncio here, so every rule is table-testable: which blocks a window touches, how a
GDAL ghost-area block leader bounds a block without TileByteCounts, how ranges merge, and which
overview GDAL would pick for an output size (so resampled reads match GDAL pixel for pixel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import TiffFormatError, WindowError
from .tiff.structure import ImageIFD
from .types import ByteRange, Window

__all__ = [
    "BlockRef",
    "Coalesced",
    "ReadPlan",
    "block_ranges",
    "blocks_for_window",
    "choose_overview",
    "coalesce",
    "leader_ends",
    "leader_ranges",
    "level_factors",
    "nearest_indices",
    "nearest_source",
]


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One block of one image: ``plane`` (0 unless planar), grid ``row``/``col``, flat ``index``."""

    plane: int
    row: int
    col: int
    index: int


def blocks_for_window(ifd: ImageIFD, window: Window, planes: Sequence[int]) -> list[BlockRef]:
    """Blocks intersecting ``window`` (already clipped to the image), row-major per plane."""
    if window.width <= 0 or window.height <= 0:
        return []
    r0, r1 = window.row_off // ifd.block_height, (window.row_end - 1) // ifd.block_height
    c0, c1 = window.col_off // ifd.block_width, (window.col_end - 1) // ifd.block_width
    return [
        BlockRef(p, r, c, ifd.block_index(p, r, c))
        for p in planes
        for r in range(r0, r1 + 1)
        for c in range(c0, c1 + 1)
    ]


def block_ranges(
    offsets: npt.NDArray[np.uint64],
    counts: npt.NDArray[np.uint64],
    size: int,
    max_block_bytes: int,
) -> list[ByteRange | None]:
    """Byte range of each block from its offset and byte count; None for a sparse block."""
    out: list[ByteRange | None] = []
    for off, cnt in zip(offsets.tolist(), counts.tolist(), strict=True):
        if off == 0 or cnt == 0:
            out.append(None)
            continue
        if cnt > max_block_bytes:
            raise TiffFormatError(f"block of {cnt} bytes exceeds the {max_block_bytes}-byte cap")
        if off + cnt > size:
            raise TiffFormatError(f"block at {off} (+{cnt}) runs past the end of the file")
        out.append(ByteRange(off, off + cnt))
    return out


def leader_ends(
    offsets: npt.NDArray[np.uint64], known: npt.NDArray[np.uint64], size: int
) -> npt.NDArray[np.int64]:
    """Where each block's leader range can end: 4 bytes before the smallest known block offset
    above it (that block's leader), or the end of the file when no known block follows.

    Blocks never overlap, so any block starting after this one starts after its data and trailer.
    ``known`` is sorted, unique, without zeros.
    """
    pos = np.searchsorted(known, offsets, side="right")
    following = known[np.minimum(pos, max(len(known) - 1, 0))] if len(known) else offsets
    ends = np.where(pos < len(known), following.astype(np.int64) - 4, size)
    return np.asarray(ends, dtype=np.int64)


def leader_ranges(
    offsets: npt.NDArray[np.uint64],
    ends: npt.NDArray[np.int64],
    size: int,
    max_block_bytes: int,
) -> list[ByteRange | bool | None]:
    """Ranges ``[offset - 4, end)`` for blocks written with GDAL's 4-byte size leader.

    GDAL's COG writer puts each block's byte count in the 4 bytes before its offset, repeats its
    last 4 bytes after it, and writes blocks in row-major order, so a following block bounds this
    one (see ``leader_ends``). Returns None for a sparse block and False where no usable bound is
    known (it would span more than ``max_block_bytes``): the caller then needs TileByteCounts.
    """
    out: list[ByteRange | bool | None] = []
    for off, end in zip(offsets.tolist(), ends.tolist(), strict=True):
        if off == 0:
            out.append(None)
        elif off < 4 or end <= off or end > size or end - (off - 4) > max_block_bytes + 8:
            out.append(False)
        else:
            out.append(ByteRange(off - 4, end))
    return out


def leader_span(data: bytes | memoryview) -> tuple[int, int] | None:
    """Where the block lies inside a leader range (start, end), or None when the leader and the
    trailer disagree with the data."""
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:4], "little")
    if size < 4 or 4 + size + 4 > len(data):
        return None
    # GDAL's trailer repeats the block's last 4 bytes.
    if data[size : 4 + size] != data[4 + size : 8 + size]:
        return None
    return 4, 4 + size


def strip_leader(data: bytes) -> bytes | None:
    """The block inside a leader range, or None when leader and trailer disagree with the data."""
    span = leader_span(data)
    return None if span is None else data[span[0] : span[1]]


@dataclass(frozen=True, slots=True)
class Coalesced:
    """One request covering several block ranges; ``members`` index into the input list."""

    range: ByteRange
    members: tuple[int, ...]


def coalesce(ranges: Sequence[ByteRange], max_gap: int, max_size: int) -> list[Coalesced]:
    """Merge ranges whose gap is at most ``max_gap`` while the merged size stays <= ``max_size``.

    A single range larger than ``max_size`` is kept whole; overlapping ranges always merge.
    Output is ordered by offset.
    """
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].start, ranges[i].end))
    groups: list[Coalesced] = []
    cur_start = cur_end = -1
    members: list[int] = []
    for i in order:
        r = ranges[i]
        if members and (
            r.start < cur_end
            or (r.start - cur_end <= max_gap and max(cur_end, r.end) - cur_start <= max_size)
        ):
            cur_end = max(cur_end, r.end)
            members.append(i)
            continue
        if members:
            groups.append(Coalesced(ByteRange(cur_start, cur_end), tuple(members)))
        cur_start, cur_end, members = r.start, r.end, [i]
    if members:
        groups.append(Coalesced(ByteRange(cur_start, cur_end), tuple(members)))
    return groups


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What a read of ``window`` at ``level`` would fetch, computed without fetching tiles.

    ``index_requests`` are slices of TileOffsets/TileByteCounts a huge file needs first (empty
    when the index is in memory). ``requests`` are the coalesced tile GETs; ``None`` while the
    index slices are still missing. ``cached`` blocks need no request at all.
    """

    level: int
    window: Window
    blocks: tuple[BlockRef, ...]
    cached: tuple[BlockRef, ...]
    sparse: tuple[BlockRef, ...]
    index_requests: tuple[ByteRange, ...]
    requests: tuple[ByteRange, ...] | None
    block_bytes: int | None

    @property
    def complete(self) -> bool:
        return self.requests is not None

    @property
    def request_count(self) -> int | None:
        return None if self.requests is None else len(self.index_requests) + len(self.requests)

    @property
    def bytes(self) -> int | None:
        """Bytes the read would transfer (index slices + coalesced tile ranges)."""
        if self.requests is None:
            return None
        return sum(r.length for r in self.index_requests) + sum(r.length for r in self.requests)


# --------------------------------------------------------------------------------------------
# overview choice and nearest-neighbour sampling, following GDAL's RasterIO
# --------------------------------------------------------------------------------------------

#: GDAL picks an overview up to 1.2x coarser than asked when resampling with nearest neighbour
#: (GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD), plus an epsilon of 0.1 against numerical noise; it
#: stops looking once an overview is within that epsilon of the factor asked for.
OVERSAMPLING_THRESHOLD = 1.2
OVERVIEW_EPSILON = 0.1


def choose_overview(
    levels: Sequence[tuple[int, int]], window: Window, out_shape: tuple[int, int]
) -> int:
    """The level GDAL would read for ``window`` (level-0 pixels) into ``out_shape`` (h, w)."""
    out_h, out_w = out_shape
    if out_w >= window.width and out_h >= window.height:
        return 0
    fx, fy = window.width / out_w, window.height / out_h
    desired = fx if (fx < fy or out_h == 1) else fy
    width0, height0 = levels[0]
    best, best_factor = 0, 0.0
    for i, (w, h) in enumerate(levels[1:], start=1):
        factor = min(width0 / w, height0 / h)
        if factor >= desired * OVERSAMPLING_THRESHOLD + OVERVIEW_EPSILON or factor <= best_factor:
            continue
        best, best_factor = i, factor
        if abs(desired - factor) < OVERVIEW_EPSILON:
            break
    return best


def level_factors(levels: Sequence[tuple[int, int]], level: int) -> tuple[float, float]:
    """(x, y) factors by which ``level`` is coarser than level 0."""
    (w0, h0), (w, h) = levels[0], levels[level]
    return w0 / w, h0 / h


def nearest_source(
    window: Window,
    out_shape: tuple[int, int],
    factors: tuple[float, float],
    size: tuple[int, int],
) -> tuple[Window, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """GDAL's nearest-neighbour sampling of ``window`` into ``out_shape`` (h, w) from a level
    ``factors`` = (fx, fy) times coarser than the window's grid, of ``size`` = (width, height).

    GDAL keeps the window in floating point on the overview (offset / factor, extent / factor)
    and takes, for output pixel i, source pixel ``floor(off + (i + 0.5) * extent / n + 1e-10)``.
    Returns the window of that level holding every sampled pixel, and the row and column indices
    into it. With factors (1, 1) this is plain nearest sampling of ``window``.
    """
    out_h, out_w = out_shape
    fx, fy = factors
    rows = _sample(window.row_off / fy, window.height / fy, out_h, size[1])
    cols = _sample(window.col_off / fx, window.width / fx, out_w, size[0])
    r0, c0 = int(rows[0]), int(cols[0])
    covering = Window(c0, r0, int(cols[-1]) - c0 + 1, int(rows[-1]) - r0 + 1)
    return covering, rows - r0, cols - c0


def _sample(offset: float, extent: float, n: int, limit: int) -> npt.NDArray[np.intp]:
    idx = np.floor(offset + (np.arange(n) + 0.5) * (extent / n) + 1e-10).astype(np.intp)
    return np.asarray(np.clip(idx, 0, max(limit - 1, 0)), dtype=np.intp)


def nearest_indices(src_size: int, dst_size: int, limit: int | None = None) -> npt.NDArray[np.intp]:
    """Source index for each of ``dst_size`` outputs over ``src_size`` inputs (GDAL's rule:
    ``floor((i + 0.5) * src/dst + 1e-10)``, clamped to the source)."""
    inc = src_size / dst_size
    idx = np.floor((np.arange(dst_size) + 0.5) * inc + 1e-10).astype(np.intp)
    hi = (src_size if limit is None else limit) - 1
    return np.asarray(np.clip(idx, 0, max(hi, 0)), dtype=np.intp)


def check_window(window: Sequence[int]) -> Window:
    """Validate a user window: four integers, positive size."""
    if len(window) != 4:
        raise WindowError(f"a window is (col_off, row_off, width, height), got {window!r}")
    try:
        values = [int(v) for v in window]
    except (TypeError, ValueError) as exc:
        raise WindowError(f"window values must be integers, got {window!r}") from exc
    if any(int(v) != v for v in window):
        raise WindowError(f"window values must be integers, got {window!r}")
    win = Window(*values)
    if win.width <= 0 or win.height <= 0:
        raise WindowError(f"window size must be positive, got {win.width} x {win.height}")
    return win
