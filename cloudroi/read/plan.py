"""Pure read planning: window -> blocks -> byte ranges -> coalesced requests; overview choice.

No I/O and no asyncio here, so every rule is table-testable: which blocks a window touches, how a
GDAL ghost-area block leader bounds a block without TileByteCounts, how ranges merge, and which
overview GDAL would pick for an output size (so resampled reads match GDAL pixel for pixel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import TiffFormatError, WindowError
from ..tiff.structure import ImageIFD, TiffStructure
from ..types import ByteRange, Window

__all__ = [
    "BlockRef",
    "BlockSpan",
    "Coalesced",
    "IndexNeeds",
    "ReadPlan",
    "block_ranges",
    "blocks_for_window",
    "choose_overview",
    "coalesce",
    "leader_ends",
    "leader_ranges",
    "level_factors",
    "check_shape",
    "locate_blocks",
    "locate_exact",
    "nearest_indices",
    "nearest_source",
    "resample_source",
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
    levels: Sequence[tuple[int, int]],
    window: Window,
    out_shape: tuple[int, int],
    threshold: float = OVERSAMPLING_THRESHOLD,
) -> int:
    """The level GDAL would read for ``window`` (level-0 pixels) into ``out_shape`` (h, w);
    ``threshold`` is 1.2 for nearest, 1.01 for the other resamplings (GDAL >= 3.9)."""
    out_h, out_w = out_shape
    if out_w >= window.width and out_h >= window.height:
        return 0
    fx, fy = window.width / out_w, window.height / out_h
    desired = fx if (fx < fy or out_h == 1) else fy
    width0, height0 = levels[0]
    best, best_factor = 0, 0.0
    for i, (w, h) in enumerate(levels[1:], start=1):
        factor = min(width0 / w, height0 / h)
        if factor >= desired * threshold + OVERVIEW_EPSILON or factor <= best_factor:
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


#: How far a window may reach, in pixels: its offsets and sizes stay within +-2**40, so that
#: sampling it in int64 index arithmetic (and float64 coordinates) stays exact.
MAX_EXTENT = 1 << 40


def check_extent(win: Window) -> Window:
    """``WindowError`` for a window whose offsets or sizes reach past ``MAX_EXTENT``."""
    reach = max(abs(win.col_off), abs(win.row_off), win.width, win.height)
    if reach > MAX_EXTENT:
        raise WindowError(
            f"the window reaches {float(reach):.3g} pixels from the image's origin, more than "
            "2**40: ask for a box nearer the image"
        )
    return win


def check_window(window: Sequence[int]) -> Window:
    """Validate a user window: four integers, positive size, within ``MAX_EXTENT``."""
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
    return check_extent(win)


def check_shape(shape: Sequence[int]) -> tuple[int, int]:
    """Validate an output shape: (height, width), both positive."""
    if len(shape) != 2:
        raise WindowError(f"out_shape is (height, width), got {shape!r}")
    try:
        h, w = int(shape[0]), int(shape[1])
    except (TypeError, ValueError) as exc:
        raise WindowError(f"out_shape is (height, width), got {shape!r}") from exc
    if h <= 0 or w <= 0:
        raise WindowError(f"out_shape must be positive, got {shape!r}")
    return h, w


def resample_source(
    levels: Sequence[tuple[int, int]],
    level: int,
    win: Window,
    out_shape: tuple[int, int],
    boundless: bool,
) -> tuple[int, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(level, rows, cols) of a resampled read: the overview GDAL picks for ``win`` (in pixels
    of ``level``; level 0 lets the overview be chosen) and the absolute rows and columns of that
    level its nearest-neighbour sampling takes (outside the image where a boundless window is).
    """
    chosen = level if level != 0 else choose_overview(levels, win, out_shape)
    factors = level_factors(levels, chosen) if level == 0 else (1.0, 1.0)
    width, height = levels[chosen]
    if win.within(*levels[level]) or not boundless:
        src, rows, cols = nearest_source(win, out_shape, factors, (width, height))
        return chosen, src.row_off + rows, src.col_off + cols
    fx, fy = factors
    col, row = math.floor(win.col_off / fx + 0.5), math.floor(win.row_off / fy + 0.5)
    src_w, src_h = max(1, int(win.width / fx + 0.5)), max(1, int(win.height / fy + 0.5))
    out_h, out_w = out_shape
    return chosen, row + nearest_indices(src_h, out_h), col + nearest_indices(src_w, out_w)


# --------------------------------------------------------------------------------------------
# where blocks lie: from the block index (TileOffsets/TileByteCounts), or GDAL's block leader
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockSpan:
    """Where one block's bytes are: ``range``, which with ``leader`` is GDAL's leader range
    ``[offset - 4, next offset - 4)`` holding the block, its size and its trailer."""

    range: ByteRange
    leader: bool = False


@dataclass(frozen=True, slots=True)
class IndexNeeds:
    """Slices of the block index (lazily loaded TileOffsets/TileByteCounts) to fetch before the
    blocks can be located."""

    ranges: tuple[ByteRange, ...]


def uses_leader(structure: TiffStructure, ifd: ImageIFD, enabled: bool) -> bool:
    """Whether blocks of ``ifd`` are best located through GDAL's leader: the file has one and
    TileByteCounts is not in memory already."""
    return enabled and structure.block_leader and not ifd.byte_counts.resident


def max_block_bytes(structure: TiffStructure, ifd: ImageIFD) -> int:
    """The most compressed bytes a block of ``ifd`` may take (a bomb guard): a larger block is
    not a block of this image."""
    return min(structure.size, max(ifd.decoded_block_bytes() * 4 + (1 << 20), 1 << 20))


def known_offsets(structure: TiffStructure) -> npt.NDArray[np.uint64]:
    """Sorted offsets of every block of every level and mask loaded so far."""
    parts = [ifd.offsets.known() for ifd in (*structure.levels, *(m for m in structure.masks if m))]
    known = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)
    return known[known > 0]


def locate_blocks(
    structure: TiffStructure, ifd: ImageIFD, indices: Sequence[int], *, leader: bool
) -> list[BlockSpan | None] | IndexNeeds:
    """Each block's span (None for a sparse block), or the index slices still to load.

    With ``leader`` (see ``uses_leader``) a block is bounded by the next known block's offset,
    so TileByteCounts is only needed where no following block bounds it closely enough.
    """
    idx = list(indices)
    if not idx:
        return []
    if leader:
        following = [i + 1 for i in idx if i + 1 < ifd.n_blocks]
        missing = ifd.offsets.missing(idx + following)
    else:
        missing = ifd.offsets.missing(idx) + ifd.byte_counts.missing(idx)
    if missing:
        return IndexNeeds(tuple(missing))
    offsets = ifd.offsets.get(idx)
    cap = max_block_bytes(structure, ifd)
    if not leader:
        exact = block_ranges(offsets, ifd.byte_counts.get(idx), structure.size, cap)
        return [None if r is None else BlockSpan(r) for r in exact]
    return _leader_spans(structure, ifd, idx, offsets, cap)


def _leader_spans(
    structure: TiffStructure,
    ifd: ImageIFD,
    idx: list[int],
    offsets: npt.NDArray[np.uint64],
    cap: int,
) -> list[BlockSpan | None] | IndexNeeds:
    size = structure.size
    # A leader range is only worth it when it cannot drag in much more than the block: a
    # compressed block is rarely larger than its decoded size (LZW's worst case is 1.5x).
    lead_cap = min(cap, ifd.decoded_block_bytes() * 2 + (64 << 10))
    ends = leader_ends(offsets, known_offsets(structure), size)
    lead = leader_ranges(offsets, ends, size, lead_cap)
    unknown = [i for i, r in enumerate(lead) if r is False]
    exact_of: dict[int, ByteRange | None] = {}
    if unknown:
        sub = [idx[i] for i in unknown]
        missing = ifd.byte_counts.missing(sub)
        if missing:
            return IndexNeeds(tuple(missing))
        exact = block_ranges(offsets[unknown], ifd.byte_counts.get(sub), size, cap)
        exact_of = dict(zip(unknown, exact, strict=True))
    out: list[BlockSpan | None] = []
    for i, r in enumerate(lead):
        if r is False:
            rng = exact_of[i]
            out.append(None if rng is None else BlockSpan(rng))
        elif isinstance(r, ByteRange):
            out.append(BlockSpan(r, leader=True))
        else:
            out.append(None)
    return out


def locate_exact(
    structure: TiffStructure, ifd: ImageIFD, index: int
) -> ByteRange | IndexNeeds | None:
    """A block's exact range from TileOffsets and TileByteCounts (the fallback when its leader
    range does not check out); None for a sparse block."""
    missing = ifd.offsets.missing([index]) + ifd.byte_counts.missing([index])
    if missing:
        return IndexNeeds(tuple(missing))
    (rng,) = block_ranges(
        ifd.offsets.get([index]),
        ifd.byte_counts.get([index]),
        structure.size,
        max_block_bytes(structure, ifd),
    )
    return rng
