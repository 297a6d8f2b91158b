"""``Image``: one opened TIFF/COG, and the verbs that read just the part of it you ask for.

open -> (one prefix GET, header parsed) -> read/read_mask/plan/preload/iter_tiles. Every read goes
window -> blocks (plan) -> index slices if the index is lazy -> coalesced concurrent GETs (fetch)
-> decode in the thread pool (decode) -> pasted into one preallocated array (assemble).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .assemble import (
    ReadTarget,
    SampledTarget,
    WindowTarget,
    alpha_mask,
    block_window,
    intersect,
    mask_source,
    paste,
    valid_mask,
)
from .context import Context
from .decode import BlockDecoder
from .errors import LimitExceededError, ReadTimeoutError, WindowError
from .fetch import BlockRequest, BlockWaiter, Fetcher, LeaderMismatch
from .header import (
    DEFAULT_LAZY_INDEX_BYTES,
    DEFAULT_PREFIX_BYTES,
    HeaderOptions,
    load_structure,
)
from .plan import (
    BlockRef,
    ReadPlan,
    block_ranges,
    check_window,
    choose_overview,
    coalesce,
    leader_ends,
    leader_ranges,
    level_factors,
    nearest_indices,
    nearest_source,
)
from .source.base import RangeSource
from .source.memory import MemorySource, PrefetchedSource
from .tasks import gather_all
from .tiff.structure import ImageIFD, TiffStructure
from .tiff.tags import PHOTOMETRIC_NAMES
from .types import ByteRange, ObjectMeta, Stats, Tile, Window

__all__ = ["Image", "ImageOptions", "open_image"]

_COMPRESSION_KEYS = {
    1: "none", 5: "lzw", 7: "jpeg", 8: "deflate", 32946: "deflate", 32773: "packbits",
    34887: "lerc", 34925: "lzma", 50000: "zstd", 50001: "webp",
}
#: A URL's remembered header size is used as the next open's prefix only up to this size.
_MAX_REMEMBERED_HEADER = 4 << 20


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """Per-Image knobs (all optional keyword arguments of ``cloudroi.open``)."""

    prefix_bytes: int = DEFAULT_PREFIX_BYTES
    lazy_index_bytes: int = DEFAULT_LAZY_INDEX_BYTES
    #: Merge block ranges separated by at most this many bytes into one GET ...
    coalesce_gap: int = 8 * 1024
    #: ... while the merged GET stays under this size.
    coalesce_max: int = 2 << 20
    max_preload_bytes: int = 512 << 20
    #: Refuse reads whose output array would exceed this many bytes (0: no limit).
    max_output_bytes: int = 4 << 30
    remember_header_size: bool = True
    use_block_leader: bool = True
    #: Ask HTTP servers for a read's disjoint ranges in one multi-range GET (multipart/
    #: byteranges): fewer requests where the server supports it (nginx, Apache); one wasted round
    #: trip per origin where it does not (S3, GCS: cloudroi then asks range by range).
    multirange: bool = False
    headers: dict[str, str] | None = None


Samples = list[int]


class Image:
    """An opened TIFF/COG. Use ``cloudroi.open(url)``; close with ``await img.close()`` or
    ``async with``. Properties describe level 0 (full resolution) unless they say otherwise."""

    def __init__(
        self,
        context: Context,
        source: RangeSource,
        structure: TiffStructure,
        meta: ObjectMeta,
        fetcher: Fetcher,
        options: ImageOptions,
        *,
        owns_context: bool,
        cache_token: object,
    ) -> None:
        self.context = context
        self.source = source
        self.structure = structure
        self.meta = meta
        self.options = options
        self._fetcher = fetcher
        self._owns_context = owns_context
        self._token = cache_token
        self._decoders: dict[int, BlockDecoder] = {}
        self._preloaded: dict[tuple[object, ...], bytes] = {}
        self._closed = False

    # -- description ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def stats(self) -> Stats:
        return self._fetcher.stats

    @property
    def _base(self) -> ImageIFD:
        return self.structure.levels[0]

    @property
    def width(self) -> int:
        return self._base.width

    @property
    def height(self) -> int:
        return self._base.height

    @property
    def count(self) -> int:
        return self._base.samples

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._base.dtype

    @property
    def levels(self) -> list[tuple[int, int]]:
        """(width, height) of level 0 and then of each overview, largest first."""
        return [(lv.width, lv.height) for lv in self.structure.levels]

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of one block of level 0; strips are (RowsPerStrip, width)."""
        return (self._base.block_height, self._base.block_width)

    @property
    def compression(self) -> str:
        return _COMPRESSION_KEYS.get(self._base.compression, str(self._base.compression))

    @property
    def photometric(self) -> str:
        return PHOTOMETRIC_NAMES.get(self._base.photometric, str(self._base.photometric))

    @property
    def interleave(self) -> str:
        return "band" if self._base.planar == 2 else "pixel"

    @property
    def nodata(self) -> float | int | None:
        return self.structure.nodata

    @property
    def crs(self) -> int | None:
        return self.structure.geo.epsg

    @property
    def transform(self) -> tuple[float, float, float, float, float, float] | None:
        """GDAL-order geotransform (x0, dx, rx, y0, ry, dy) of level 0, or None."""
        return self.structure.geo.transform

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """(minx, miny, maxx, maxy) of the image in its CRS, or None without georeferencing."""
        gt = self.transform
        if gt is None:
            return None
        xs, ys = [], []
        for col, row in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height)):
            xs.append(gt[0] + col * gt[1] + row * gt[2])
            ys.append(gt[3] + col * gt[4] + row * gt[5])
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def has_mask(self) -> bool:
        return self.structure.masks[0] is not None

    @property
    def alpha_band(self) -> int | None:
        """1-based number of the alpha band (ExtraSamples 1 or 2), or None."""
        base = self._base
        extra = base.extra_samples
        if extra and extra[-1] in (1, 2):
            return base.samples
        return None

    def info(self) -> dict[str, Any]:
        """Everything above as plain JSON-able values."""
        return {
            "url": self.url,
            "size": self.meta.size,
            "etag": self.meta.etag,
            "last_modified": self.meta.last_modified,
            "version_pinned": self.meta.pinned_by,
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": str(self.dtype),
            "block_shape": list(self.block_shape),
            "tiled": self._base.tiled,
            "compression": self.compression,
            "predictor": self._base.predictor,
            "photometric": self.photometric,
            "interleave": self.interleave,
            "levels": [list(lv) for lv in self.levels],
            "nodata": _json_number(self.nodata),
            "crs": self.crs,
            "transform": list(self.transform) if self.transform else None,
            "bounds": list(self.bounds) if self.bounds else None,
            "has_mask": self.has_mask,
            "alpha_band": self.alpha_band,
            "bigtiff": self.structure.header.bigtiff,
            "cog_layout": self.structure.ghost.get("LAYOUT"),
        }

    def __repr__(self) -> str:
        return (
            f"<cloudroi.Image {self.url!r} {self.width}x{self.height}x{self.count} "
            f"{self.dtype} {self.compression} levels={len(self.levels)}>"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Image:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._preloaded.clear()
        await self.source.close()
        if self._owns_context:
            await self.context.close()

    # -- argument checking ------------------------------------------------------------------

    def _level(self, level: int) -> ImageIFD:
        if not isinstance(level, int | np.integer) or not 0 <= level < len(self.structure.levels):
            raise WindowError(f"level must be 0..{len(self.structure.levels) - 1}, got {level!r}")
        return self.structure.levels[int(level)]

    def _samples(self, bands: int | Sequence[int] | None) -> Samples:
        if bands is None:
            return list(range(self.count))
        seq = [bands] if isinstance(bands, int | np.integer) else list(bands)
        if not seq:
            raise WindowError("bands must name at least one band")
        out = []
        for b in seq:
            if not isinstance(b, int | np.integer) or not 1 <= b <= self.count:
                raise WindowError(f"bands are numbered 1..{self.count}, got {b!r}")
            out.append(int(b) - 1)
        return out

    def _window(
        self, window: Sequence[int] | None, ifd: ImageIFD, boundless: bool
    ) -> Window:
        if window is None:
            return Window(0, 0, ifd.width, ifd.height)
        win = check_window(window)
        inside = (
            win.col_off >= 0 and win.row_off >= 0
            and win.col_end <= ifd.width and win.row_end <= ifd.height
        )
        if not inside and not boundless:
            raise WindowError(
                f"window {tuple(win)} is outside the {ifd.width}x{ifd.height} image "
                "(pass boundless=True to fill outside pixels)"
            )
        return win

    def _check_output(self, n: int, h: int, w: int, dtype: np.dtype[Any]) -> None:
        nbytes = n * h * w * dtype.itemsize
        limit = self.options.max_output_bytes
        if limit and nbytes > limit:
            raise LimitExceededError("output bytes", nbytes, limit)

    def _fill(self, fill_value: float | int | None, dtype: np.dtype[Any]) -> Any:
        value = self.nodata if fill_value is None else fill_value
        if value is None:
            return 0
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
                return 0
            if not info.min <= value <= info.max:
                return 0
        return value

    # -- planning ---------------------------------------------------------------------------

    def _key(self, ifd: ImageIFD, index: int) -> tuple[object, ...]:
        return (self._token, ifd.offset, index)

    def _is_cached(self, key: tuple[object, ...]) -> bool:
        return key in self._preloaded or self.context.block_cache.peek(key)

    def _use_leader(self, ifd: ImageIFD) -> bool:
        return (
            self.options.use_block_leader
            and self.structure.block_leader
            and not ifd.byte_counts.resident
        )

    def _index_needs(self, ifd: ImageIFD, indices: list[int]) -> list[ByteRange]:
        if not indices:
            return []
        if self._use_leader(ifd):
            following = [i + 1 for i in indices if i + 1 < ifd.n_blocks]
            return ifd.offsets.missing(indices + following)
        return ifd.offsets.missing(indices) + ifd.byte_counts.missing(indices)

    async def _load_index(self, ranges: list[ByteRange], ifd: ImageIFD) -> None:
        if not ranges:
            return
        groups = coalesce(ranges, self.options.coalesce_gap, self.options.coalesce_max)
        wanted = [g.range for g in groups]
        datas = await self._fetcher.get_many(wanted, "index")
        for rng, data in zip(wanted, datas, strict=True):
            ifd.offsets.insert(rng, data)
            ifd.byte_counts.insert(rng, data)

    def _max_block_bytes(self, ifd: ImageIFD) -> int:
        # A compressed block larger than this is not a block of this image (bomb guard).
        return min(
            self.structure.size,
            max(ifd.decoded_block_bytes() * 4 + (1 << 20), 1 << 20),
        )

    def _ranges(
        self, ifd: ImageIFD, refs: list[BlockRef]
    ) -> list[tuple[ByteRange | None, bool]]:
        """(byte range or None for a sparse block, whether the range carries GDAL's leader) of
        each block. The index entries needed must be loaded; ``_NeedCounts`` when a leader
        cannot bound a block and its TileByteCounts entry is not loaded yet."""
        idx = [r.index for r in refs]
        if not idx:
            return []
        offsets = ifd.offsets.get(idx)
        cap = self._max_block_bytes(ifd)
        size = self.structure.size
        if not self._use_leader(ifd):
            exact = block_ranges(offsets, ifd.byte_counts.get(idx), size, cap)
            return [(r, False) for r in exact]
        # A leader range is only worth it when it cannot drag in much more than the block: a
        # compressed block is rarely larger than its decoded size (LZW's worst case is 1.5x).
        lead_cap = min(cap, ifd.decoded_block_bytes() * 2 + (64 << 10))
        lead = leader_ranges(offsets, leader_ends(offsets, self._known_offsets(), size),
                             size, lead_cap)
        unknown = [i for i, r in enumerate(lead) if r is False]
        exact_of: dict[int, ByteRange | None] = {}
        if unknown:
            sub = [idx[i] for i in unknown]
            if ifd.byte_counts.missing(sub):
                raise _NeedCounts(sub)
            exact = block_ranges(offsets[unknown], ifd.byte_counts.get(sub), size, cap)
            exact_of = dict(zip(unknown, exact, strict=True))
        out: list[tuple[ByteRange | None, bool]] = []
        for i, r in enumerate(lead):
            if r is False:
                out.append((exact_of[i], False))
            elif isinstance(r, ByteRange):
                out.append((r, True))
            else:
                out.append((None, False))
        return out

    def _known_offsets(self) -> npt.NDArray[np.uint64]:
        """Sorted offsets of every block of every level and mask loaded so far."""
        parts = [
            ifd.offsets.known()
            for ifd in (*self.structure.levels, *(m for m in self.structure.masks if m))
        ]
        known = np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)
        return known[known > 0]

    def plan(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        boundless: bool = False,
        out_shape: tuple[int, int] | None = None,
    ) -> ReadPlan:
        """The requests ``read`` (with the same arguments) would make, computed without fetching
        anything. With ``out_shape``, the plan is of the overview and window the resampled read
        would use (its ``level`` and ``window`` say which).

        For a file whose block index is loaded lazily and not yet in memory, the plan lists the
        index slices to fetch first and leaves ``requests`` as None.
        """
        ifd = self._level(level)
        win = self._window(window, ifd, boundless)
        target: ReadTarget = WindowTarget(win)
        if out_shape is not None:
            level, target = self._resample_source(level, win, _check_shape(out_shape), boundless)
            ifd = self.structure.levels[level]
            win = _covering(target, ifd)
        refs = self._refs(ifd, target, self._samples(bands))
        cached = [r for r in refs if self._is_cached(self._key(ifd, r.index))]
        todo = [r for r in refs if not self._is_cached(self._key(ifd, r.index))]
        index_needs = self._index_needs(ifd, [r.index for r in todo])
        if index_needs:
            groups = coalesce(index_needs, self.options.coalesce_gap, self.options.coalesce_max)
            return ReadPlan(level, win, tuple(refs), tuple(cached), (),
                            tuple(g.range for g in groups), None, None)
        try:
            ranges = [rng for rng, _ in self._ranges(ifd, todo)]
        except _NeedCounts as need:
            groups = coalesce(ifd.byte_counts.missing(need.indices), self.options.coalesce_gap,
                              self.options.coalesce_max)
            return ReadPlan(level, win, tuple(refs), tuple(cached), (),
                            tuple(g.range for g in groups), None, None)
        sparse = tuple(r for r, rng in zip(todo, ranges, strict=True) if rng is None)
        real = [rng for rng in ranges if rng is not None]
        groups = coalesce(real, self.options.coalesce_gap, self.options.coalesce_max)
        return ReadPlan(
            level, win, tuple(refs), tuple(cached), sparse, (),
            tuple(g.range for g in groups), sum(r.length for r in real),
        )

    def _refs(self, ifd: ImageIFD, target: ReadTarget, samples: Samples) -> list[BlockRef]:
        planes = sorted(set(samples)) if ifd.planar == 2 else [0]
        return target.blocks(ifd, planes)

    # -- fetching blocks --------------------------------------------------------------------

    async def _block_sources(
        self,
        ifd: ImageIFD,
        refs: list[BlockRef],
        target: ReadTarget,
        *,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
    ) -> list[BlockSource]:
        """Each block's source: its decoded array when the decoded-block cache has one with the
        rows ``target`` needs, else an awaitable of its bytes; None for a sparse block. Budgets are
        checked first."""
        if max_tiles is not None and len(refs) > max_tiles:
            raise LimitExceededError("tiles", len(refs), max_tiles)
        loop = asyncio.get_running_loop()
        result: list[BlockSource] = [None] * len(refs)
        todo: list[int] = []
        decoded_cache = self.context.decoded_cache
        for i, ref in enumerate(refs):
            key = self._key(ifd, ref.index)
            decoded = decoded_cache.get(key)
            if decoded is not None and len(decoded) >= target.rows_needed(ifd, ref):
                self.stats.decoded_cache_hits += 1
                result[i] = decoded
                continue
            data = self._preloaded.get(key)
            if data is None:
                data = self.context.block_cache.get(key)
            if data is None:
                todo.append(i)
                continue
            self.stats.cache_hits += 1
            fut: asyncio.Future[bytes] = loop.create_future()
            fut.set_result(data)
            key_only = BlockRequest(key, ByteRange(0, 0))
            result[i] = _Pending(BlockWaiter(fut, None), key_only)
        if not todo:
            return result
        todo_refs = [refs[i] for i in todo]
        await self._load_index(self._index_needs(ifd, [r.index for r in todo_refs]), ifd)
        try:
            ranges = self._ranges(ifd, todo_refs)
        except _NeedCounts as need:
            await self._load_index(ifd.byte_counts.missing(need.indices), ifd)
            ranges = self._ranges(ifd, todo_refs)
        if max_bytes is not None:
            total = sum(rng.length for rng, _ in ranges if rng is not None)
            if total > max_bytes:
                raise LimitExceededError("bytes to fetch", total, max_bytes)
        requests: list[BlockRequest] = []
        slots: list[int] = []
        for i, ref, (rng, leader) in zip(todo, todo_refs, ranges, strict=True):
            if rng is None:
                self.stats.sparse_tiles += 1
                continue
            requests.append(BlockRequest(self._key(ifd, ref.index), rng, leader))
            slots.append(i)
        waiters = self._fetcher.blocks(
            requests,
            cache=self.context.block_cache,
            inflight=self.context.inflight,
            max_gap=self.options.coalesce_gap,
            max_size=self.options.coalesce_max,
            multirange=self.options.multirange,
        )
        for i, req, waiter in zip(slots, requests, waiters, strict=True):
            result[i] = _Pending(waiter, req)
        return result

    async def _block_bytes(self, ifd: ImageIFD, ref: BlockRef, pending: _Pending) -> bytes:
        """A pending block's bytes; when GDAL's leader does not check out, read the block again
        bounded by TileByteCounts, as GDAL does."""
        req = pending.request
        try:
            return await pending.waiter
        except LeaderMismatch:
            if not req.leader:
                raise
            # The leader did not check out: fall back to TileByteCounts, as GDAL does.
            await self._load_index(ifd.byte_counts.missing([ref.index]), ifd)
            (rng,) = block_ranges(
                ifd.offsets.get([ref.index]), ifd.byte_counts.get([ref.index]),
                self.structure.size, self._max_block_bytes(ifd),
            )
            if rng is None:
                return b""
            data = await self._fetcher.get(rng, "tile")
            self.context.block_cache.put(req.key, data)
            return data

    def _decoder(self, ifd: ImageIFD) -> BlockDecoder:
        dec = self._decoders.get(ifd.offset)
        if dec is None:
            dec = self._decoders[ifd.offset] = BlockDecoder(ifd)
        return dec

    def _decode_block(
        self, ifd: ImageIFD, ref: BlockRef, data: bytes, target: ReadTarget
    ) -> npt.NDArray[Any]:
        """Decode one block (in a pool thread) and keep the result in the decoded-block cache.

        Only the block's rows down to the end of ``win`` are decoded where the codec can stop
        early (a window ending a few rows into a block pays for those rows, not the block); the
        cache keeps what was decoded and a later read needing more rows decodes again.
        """
        block = self._decoder(ifd).decode(data, ref.row, target.rows_needed(ifd, ref))
        block.flags.writeable = False  # shared through the cache: nobody may change it
        self.context.decoded_cache.put(self._key(ifd, ref.index), block)
        return block

    async def _run_blocks(
        self,
        ifd: ImageIFD,
        refs: list[BlockRef],
        sources: list[BlockSource],
        target: ReadTarget,
        work: Callable[[BlockRef, npt.NDArray[Any] | None], None],
    ) -> None:
        """Get each block (decoded from cache, or fetched and decoded) and hand it to ``work``,
        decoding and working in the thread pool. ``work`` gets None for a sparse block."""
        self._decoder(ifd)  # built once, on the loop
        loop = asyncio.get_running_loop()
        executor = self.context.executor
        stats = self.stats
        # Set when the read ends: decodes still queued in the pool for a read that already
        # failed (or was cancelled) are skipped instead of burning CPU for nobody.
        over = threading.Event()

        def decode_and_work(ref: BlockRef, data: bytes) -> None:
            if over.is_set():
                return
            work(ref, self._decode_block(ifd, ref, data, target) if data else None)

        async def one(ref: BlockRef, src: BlockSource) -> None:
            if src is None:
                work(ref, None)
                return
            if isinstance(src, np.ndarray):
                await loop.run_in_executor(executor, work, ref, src)
                return
            data = await self._block_bytes(ifd, ref, src)
            stats.tiles_read += 1
            await loop.run_in_executor(executor, decode_and_work, ref, data)
            stats.tiles_decoded += 1

        try:
            await gather_all(one(ref, src) for ref, src in zip(refs, sources, strict=True))
        finally:
            over.set()
            _release(sources)

    # -- reading ----------------------------------------------------------------------------

    async def _read_ifd(
        self,
        ifd: ImageIFD,
        target: ReadTarget,
        samples: Samples,
        fill: Any,
        *,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
    ) -> npt.NDArray[Any]:
        dtype = ifd.dtype
        height, width = target.shape
        self._check_output(len(samples), height, width, dtype)
        refs = self._refs(ifd, target, samples)
        sources = await self._block_sources(
            ifd, refs, target, max_bytes=max_bytes, max_tiles=max_tiles
        )
        shape = (len(samples), height, width)
        # Inside the image every pixel comes from a block (or a sparse block's fill), so the
        # array need not be filled first; a boundless read is prefilled for its outside part.
        if target.inside(ifd):
            out = np.empty(shape, dtype=dtype)
        else:
            out = np.full(shape, fill, dtype=dtype)

        def work(ref: BlockRef, block: npt.NDArray[Any] | None) -> None:
            if block is None:
                target.fill(out, fill, ref, ifd, samples)
            else:
                target.paste(out, block, ref, ifd, samples)

        await self._run_blocks(ifd, refs, sources, target, work)
        return out

    async def read(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        out_shape: tuple[int, int] | None = None,
        boundless: bool = False,
        fill_value: float | int | None = None,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - maps the overrun to ReadTimeoutError
    ) -> npt.NDArray[Any]:
        """Pixels of ``window`` = (col_off, row_off, width, height) of ``level`` as an array shaped
        (bands, height, width) in the file's dtype. ``bands`` are 1-based (None: all).

        With ``out_shape=(h, w)`` the window (in pixels of ``level``; of level 0 when level is 0)
        is resampled by nearest neighbour from the overview GDAL would choose. Outside pixels
        raise ``WindowError`` unless ``boundless``, which fills them with ``fill_value``, the
        nodata value or 0. ``max_bytes``/``max_tiles`` refuse a read before any block is fetched.
        ``timeout`` (seconds) bounds the whole read, retries included: ``ReadTimeoutError``.
        """
        async with _deadline(timeout, self.url):
            return await self._read(
                window, level, bands, out_shape, boundless, fill_value, max_bytes, max_tiles
            )

    async def _read(
        self,
        window: Sequence[int] | None,
        level: int,
        bands: int | Sequence[int] | None,
        out_shape: tuple[int, int] | None,
        boundless: bool,
        fill_value: float | int | None,
        max_bytes: int | None,
        max_tiles: int | None,
    ) -> npt.NDArray[Any]:
        samples = self._samples(bands)
        ifd = self._level(level)
        win = self._window(window, ifd, boundless)
        fill = self._fill(fill_value, ifd.dtype)
        target: ReadTarget = WindowTarget(win)
        if out_shape is not None:
            level, target = self._resample_source(level, win, _check_shape(out_shape), boundless)
            ifd = self.structure.levels[level]
        return await self._read_ifd(
            ifd, target, samples, fill, max_bytes=max_bytes, max_tiles=max_tiles
        )

    def _resample_source(
        self, level: int, win: Window, out_shape: tuple[int, int], boundless: bool
    ) -> tuple[int, SampledTarget]:
        """(level, samples) of a resampled read: the overview GDAL picks and the pixels its
        nearest-neighbour sampling takes there. The read then fetches only the blocks holding a
        sampled pixel and pastes each as it is decoded (never the whole source window)."""
        level, src, rows, cols = self._nearest(level, win, out_shape, boundless)
        return level, SampledTarget(src.row_off + rows, src.col_off + cols)

    def _nearest(
        self, level: int, win: Window, out_shape: tuple[int, int], boundless: bool
    ) -> tuple[int, Window, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """(level, window on that level, rows, cols into it) of a resampled read."""
        chosen = level if level != 0 else choose_overview(self.levels, win, out_shape)
        factors = level_factors(self.levels, chosen) if level == 0 else (1.0, 1.0)
        width, height = self.levels[chosen]
        inside = win.col_off >= 0 and win.row_off >= 0
        inside = inside and win.col_end <= self.levels[level][0]
        inside = inside and win.row_end <= self.levels[level][1]
        if inside or not boundless:
            return (chosen, *nearest_source(win, out_shape, factors, (width, height)))
        fx, fy = factors
        col, row = math.floor(win.col_off / fx + 0.5), math.floor(win.row_off / fy + 0.5)
        src = Window(
            col, row, max(1, int(win.width / fx + 0.5)), max(1, int(win.height / fy + 0.5))
        )
        out_h, out_w = out_shape
        return chosen, src, nearest_indices(src.height, out_h), nearest_indices(src.width, out_w)

    async def read_mask(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        *,
        out_shape: tuple[int, int] | None = None,
        boundless: bool = False,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - maps the overrun to ReadTimeoutError
    ) -> npt.NDArray[np.uint8]:
        """The validity mask of a window as uint8 0 (invalid) / 255 (valid), shaped (h, w).

        From the GDAL internal mask when there is one; else the alpha band; else where any band
        differs from nodata; else all valid. Pixels outside the image are 0.
        """
        async with _deadline(timeout, self.url):
            return await self._read_mask(level, window, out_shape, boundless, max_bytes, max_tiles)

    async def _read_mask(
        self,
        level: int,
        window: Sequence[int] | None,
        out_shape: tuple[int, int] | None,
        boundless: bool,
        max_bytes: int | None,
        max_tiles: int | None,
    ) -> npt.NDArray[np.uint8]:
        ifd = self._level(level)
        win = self._window(window, ifd, boundless)
        target: ReadTarget = WindowTarget(win)
        if out_shape is not None:
            # Nearest sampling commutes with a per-pixel mask: the mask of the samples is the
            # samples of the mask, so only the sampled blocks are read.
            level, target = self._resample_source(level, win, _check_shape(out_shape), boundless)
        return await self._mask_at(level, target, max_bytes, max_tiles)

    async def _mask_at(
        self, level: int, target: ReadTarget, max_bytes: int | None, max_tiles: int | None
    ) -> npt.NDArray[np.uint8]:
        ifd = self.structure.levels[level]
        budgets = {"max_bytes": max_bytes, "max_tiles": max_tiles}
        mask_ifd = self.structure.masks[level]
        source, band = mask_source(
            self.count, self._base.extra_samples, self.dtype, mask_ifd is not None,
            self.nodata is not None,
        )
        if mask_ifd is not None:
            raw = await self._read_ifd(mask_ifd, target, [0], 0, **budgets)
            return np.where(raw[0] != 0, 255, 0).astype(np.uint8)
        if source == "alpha" and band is not None:
            return alpha_mask((await self._read_ifd(ifd, target, [band - 1], 0, **budgets))[0])
        if source == "alpha_nodata" and band is not None and self.nodata is not None:
            fill = self._fill(None, ifd.dtype)
            a = await self._read_ifd(ifd, target, [band - 1], fill, **budgets)
            mask = valid_mask(a, self.nodata)
        elif self.nodata is not None:
            data = await self._read_ifd(
                ifd, target, list(range(self.count)), self._fill(None, ifd.dtype), **budgets
            )
            mask = valid_mask(data, self.nodata)
        else:
            mask = np.full(target.shape, 255, dtype=np.uint8)
        # Outside the image nothing is valid, whatever the fill value looks like.
        target.zero_outside(mask, ifd)
        return mask

    # -- loading strategies -----------------------------------------------------------------

    async def preload(self, level: int = 0, *, masks: bool = True) -> int:
        """Fetch every block of ``level`` (and its mask) now and keep them for this Image's
        lifetime, so later reads of the level send no request. Returns the bytes loaded.

        Raises ``LimitExceededError`` before fetching when the level's compressed size exceeds
        ``max_preload_bytes``.
        """
        ifd = self._level(level)
        ifds = [ifd]
        mask_ifd = self.structure.masks[int(level)]
        if masks and mask_ifd is not None:
            ifds.append(mask_ifd)
        total = 0
        for part in ifds:
            refs = [
                BlockRef(p, r, c, part.block_index(p, r, c))
                for p in range(part.planes)
                for r in range(part.blocks_down)
                for c in range(part.blocks_across)
            ]
            refs = [r for r in refs if self._key(part, r.index) not in self._preloaded]
            # Whole index arrays: one GET each, rather than block by block.
            whole = [a.byte_range for a in (part.offsets, part.byte_counts) if not a.resident]
            await self._load_index(whole, part)
            ranges = block_ranges(
                part.offsets.get([r.index for r in refs]),
                part.byte_counts.get([r.index for r in refs]),
                self.structure.size,
                self._max_block_bytes(part),
            )
            size = sum(r.length for r in ranges if r is not None)
            budget = self.options.max_preload_bytes - sum(len(v) for v in self._preloaded.values())
            if size > budget:
                raise LimitExceededError("preload bytes", size, self.options.max_preload_bytes)
            keys = [self._key(part, ref.index) for ref, rng in zip(refs, ranges, strict=True)
                    if rng is not None]
            requests = [
                BlockRequest(key, rng)
                for key, rng in zip(keys, (r for r in ranges if r is not None), strict=True)
            ]
            waiters = self._fetcher.blocks(
                requests,
                cache=self.context.block_cache,
                inflight=self.context.inflight,
                max_gap=self.options.coalesce_gap,
                max_size=self.options.coalesce_max,
                multirange=self.options.multirange,
            )
            try:
                datas = await gather_all(waiters)
            finally:
                for waiter in waiters:
                    waiter.release()
            for key, data in zip(keys, datas, strict=True):
                self._preloaded[key] = data
                total += len(data)
            self.stats.preloaded_tiles += len(requests)
            self.stats.preloaded_bytes += sum(len(d) for d in datas)
        return total

    async def iter_tiles(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
    ) -> AsyncIterator[Tile]:
        """Yield the blocks of ``window`` as ``Tile``s, decoded, in the order they arrive.

        Each tile's ``window`` is its part of the requested window (level pixels); fetches run
        concurrently and stop when the iteration is abandoned.
        """
        samples = self._samples(bands)
        ifd = self._level(level)
        win = self._window(window, ifd, False)
        target = WindowTarget(win)
        refs = self._refs(ifd, target, samples)
        sources = await self._block_sources(
            ifd, refs, target, max_bytes=max_bytes, max_tiles=max_tiles
        )
        self._decoder(ifd)
        loop = asyncio.get_running_loop()
        fill = self._fill(None, ifd.dtype)
        groups: dict[tuple[int, int], list[tuple[BlockRef, BlockSource]]] = {}
        for ref, aw in zip(refs, sources, strict=True):
            groups.setdefault((ref.row, ref.col), []).append((ref, aw))

        async def make(row: int, col: int, parts: list[tuple[BlockRef, BlockSource]]) -> Tile:
            part_win = intersect(block_window(ifd, row, col), win)
            assert part_win is not None
            out = np.full((len(samples), part_win.height, part_win.width), fill, dtype=ifd.dtype)
            def place(ref: BlockRef, block: npt.NDArray[Any] | bytes) -> None:
                # In the pool: decode (unless cached) and paste, off the event loop.
                if not isinstance(block, np.ndarray):
                    block = self._decode_block(ifd, ref, block, target)
                paste(out, block, ref, ifd, part_win, samples)

            for ref, aw in parts:
                if aw is None:
                    continue
                if isinstance(aw, np.ndarray):
                    await loop.run_in_executor(self.context.executor, place, ref, aw)
                    continue
                data = await self._block_bytes(ifd, ref, aw)
                self.stats.tiles_read += 1
                if data:
                    await loop.run_in_executor(self.context.executor, place, ref, data)
                    self.stats.tiles_decoded += 1
            return Tile(int(level), row, col, part_win, out)

        tasks = [asyncio.ensure_future(make(r, c, parts)) for (r, c), parts in groups.items()]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            _release(sources)


@contextlib.asynccontextmanager
async def _deadline(timeout: float | None, url: str) -> AsyncIterator[None]:  # noqa: ASYNC109
    """Bound the body's run time; the overrun becomes ``ReadTimeoutError``."""
    if timeout is None:
        yield
        return
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        raise ReadTimeoutError(f"read did not finish within {timeout} s", url=url) from exc


@dataclass(frozen=True, slots=True)
class _Pending:
    """A block whose bytes are on their way (or in the compressed cache)."""

    waiter: BlockWaiter
    request: BlockRequest


#: How a block reaches a read: decoded already, bytes to come, or nothing (sparse).
BlockSource = npt.NDArray[Any] | _Pending | None


def _covering(target: SampledTarget, ifd: ImageIFD) -> Window:
    """The smallest window of ``ifd``'s grid holding every sampled pixel inside the image."""
    rows = target.rows[(target.rows >= 0) & (target.rows < ifd.height)]
    cols = target.cols[(target.cols >= 0) & (target.cols < ifd.width)]
    if not rows.size or not cols.size:
        return Window(0, 0, 0, 0)
    r0, c0 = int(rows.min()), int(cols.min())
    return Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)


def _release(sources: list[BlockSource]) -> None:
    """Let go of every block fetch a read did not await (it failed or was cancelled first)."""
    for src in sources:
        if isinstance(src, _Pending):
            src.waiter.release()


class _NeedCounts(Exception):
    def __init__(self, indices: list[int]) -> None:
        super().__init__(f"{len(indices)} byte counts needed")
        self.indices = indices


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise WindowError(f"out_shape is (height, width), got {shape!r}")
    try:
        h, w = int(shape[0]), int(shape[1])
    except (TypeError, ValueError) as exc:
        raise WindowError(f"out_shape is (height, width), got {shape!r}") from exc
    if h <= 0 or w <= 0:
        raise WindowError(f"out_shape must be positive, got {shape!r}")
    return h, w


def _json_number(value: float | int | None) -> float | int | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ------------------------------------------------------------------------------------------
# opening
# ------------------------------------------------------------------------------------------


async def open_image(
    target: str | RangeSource | bytes,
    *,
    context: Context | None = None,
    stats: Stats | None = None,
    **options: Any,
) -> Image:
    """Open ``target`` (URL, path, RangeSource or bytes) and parse its header.

    ``stats`` (optional) is the Stats object the Image will count into; passing one lets a caller
    see the requests of an open that fails.
    """
    opts = ImageOptions(**options)
    owns = context is None
    ctx = context if context is not None else Context()
    try:
        return await _open_with(ctx, target, opts, owns, stats if stats is not None else Stats())
    except BaseException:
        if owns:
            await ctx.close()
        raise


async def _open_with(
    ctx: Context, target: str | RangeSource | bytes, opts: ImageOptions, owns: bool, stats: Stats
) -> Image:
    if isinstance(target, bytes | bytearray | memoryview):
        source: RangeSource = MemorySource(target)
    elif isinstance(target, str):
        source = await ctx.source(target, headers=opts.headers)
    else:
        source = target
    fetcher = Fetcher(
        source, stats, asyncio.Semaphore(ctx.options.max_concurrency), ctx.options.retry
    )
    # A URL's header size is worth remembering only for storage with a round trip to save.
    remember = opts.remember_header_size and not isinstance(source, MemorySource)
    try:
        remembered = ctx.header_sizes.get(source.url) if remember else None
        prefix_len = remembered if remembered else opts.prefix_bytes
        meta, prefix = await fetcher.open(prefix_len)
        structure = None
        header_key = (source.url, meta.etag)
        if meta.etag:
            structure = ctx.header_cache.get(header_key)
            if structure is not None and structure.size != meta.size:
                structure = None
        if structure is not None:
            stats.header_cache_hits += 1
        else:
            header_opts = HeaderOptions(
                prefix_bytes=opts.prefix_bytes, lazy_index_bytes=opts.lazy_index_bytes
            )
            structure = await load_structure(
                fetcher, meta, prefix, header_opts, executor=ctx.executor
            )
            if meta.etag:
                ctx.header_cache.put(header_key, structure)
        if remember and 0 < structure.header_bytes <= _MAX_REMEMBERED_HEADER:
            ctx.header_sizes.put(source.url, structure.header_bytes)
    except BaseException:
        await source.close()
        raise
    if meta.size <= len(prefix) and not isinstance(source, MemorySource):
        # The whole object came with the first GET: blocks are served from it, not refetched.
        source = PrefetchedSource(source, meta, prefix)
        fetcher.source = source
    # Blocks are cached across Images under a validator of the version; without one (size
    # only) under a token of this Image alone.
    token: object = object()
    if meta.etag:
        token = (source.url, meta.etag)
    elif meta.last_modified:
        token = (source.url, "last-modified", meta.last_modified, meta.size)
    if isinstance(source, MemorySource):
        token = ("memory", meta.etag)
    return Image(
        ctx, source, structure, meta, fetcher, opts, owns_context=owns, cache_token=token
    )

