"""Reading blocks of one Image: the single per-block dispatch behind read, read_mask, iter_tiles
and preload.

For the blocks a target needs: a block decoded already (decoded-block cache) is used as it is;
otherwise its bytes come from the ``BlockStore`` (pinned, cached, in flight, or fetched after the
planner located it, loading index slices first where the index is lazy) and are decoded in the
thread pool; a sparse block is filled. Every block then goes to one ``work`` callback, run in
the pool, which pastes it where the caller wants it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..cache import LRUCache
from ..errors import LimitExceededError
from ..tasks import gather_all
from ..tiff.leader import leader_span
from ..tiff.structure import ImageIFD, TiffStructure
from ..types import ByteRange, Stats, Tile, Window
from .assemble import ReadTarget, WindowTarget, block_window, paste
from .blocks import BlockRequest, BlockStore, BlockWaiter
from .decode import BlockDecoder
from .jpeg_ijg import JpegDecoder
from .plan import (
    BlockRef,
    BlockSpan,
    IndexNeeds,
    ReadPlan,
    coalesce,
    locate_blocks,
    locate_exact,
    uses_leader,
)

__all__ = ["BlockReader", "Budgets", "LevelReader"]

#: How a block reaches a read: decoded already, bytes to come, or nothing (sparse).
BlockSource = npt.NDArray[Any] | BlockWaiter | None
Work = Callable[[BlockRef, "npt.NDArray[Any] | None"], None]


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits one read checks before any block is fetched."""

    max_bytes: int | None = None
    max_tiles: int | None = None


class BlockReader:
    """Blocks of one opened file: located, fetched through the store, decoded, dispatched."""

    def __init__(
        self,
        structure: TiffStructure,
        store: BlockStore,
        executor: Executor,
        decoded_cache: LRUCache[Any],
        token: object,
        *,
        use_leader: bool = True,
        max_output_bytes: int = 0,
        jpeg_decoder: JpegDecoder = "turbo",
    ) -> None:
        self.structure = structure
        self.store = store
        self.executor = executor
        self.decoded_cache = decoded_cache
        self.token = token
        self.use_leader = use_leader
        self.max_output_bytes = max_output_bytes
        self.jpeg_decoder = jpeg_decoder
        self._decoders: dict[int, BlockDecoder] = {}

    @property
    def stats(self) -> Stats:
        return self.store.fetcher.stats

    def at(self, level: int, nodata: float | int | None) -> LevelReader:
        return LevelReader(self, level, nodata)

    def key(self, ifd: ImageIFD, index: int) -> Hashable:
        return (self.token, ifd.offset, index)

    def decoded_key(self, ifd: ImageIFD, index: int) -> Hashable:
        """A decoded block's cache key: the compressed block's, and the JPEG decoder when it is
        not the default (the same bytes decode differently)."""
        if self.jpeg_decoder == "turbo":
            return (self.token, ifd.offset, index)
        return (self.token, ifd.offset, index, self.jpeg_decoder)

    def refs(self, ifd: ImageIFD, target: ReadTarget, samples: Sequence[int]) -> list[BlockRef]:
        planes = sorted(set(samples)) if ifd.planar == 2 else [0]
        return target.blocks(ifd, planes)

    # -- locating blocks ------------------------------------------------------------------

    async def load_index(self, ifd: ImageIFD, ranges: Sequence[ByteRange]) -> None:
        if not ranges:
            return
        store = self.store
        groups = coalesce(ranges, store.max_gap, store.max_size)
        wanted = [g.range for g in groups]
        datas = await store.fetcher.get_many(wanted, "index")
        for rng, data in zip(wanted, datas, strict=True):
            ifd.offsets.insert(rng, data)
            ifd.byte_counts.insert(rng, data)

    async def locate(self, ifd: ImageIFD, indices: Sequence[int]) -> list[BlockSpan | None]:
        """Where each block lies, loading the index slices that takes (at most two rounds:
        offsets, then byte counts where no leader bounds a block)."""
        while True:
            leader = uses_leader(self.structure, ifd, self.use_leader)
            got = locate_blocks(self.structure, ifd, indices, leader=leader)
            if not isinstance(got, IndexNeeds):
                return got
            await self.load_index(ifd, got.ranges)

    def plan(self, level: int, window: Window, ifd: ImageIFD, refs: list[BlockRef]) -> ReadPlan:
        """What a read of ``refs`` would send, from the same planner the read uses (nothing at
        all when the object's bytes are in memory)."""
        if self.store.fetcher.free:
            return ReadPlan(level, window, tuple(refs), tuple(refs), (), (), (), 0)
        cached = [r for r in refs if self._cached(ifd, r)]
        todo = [r for r in refs if not self._cached(ifd, r)]
        leader = uses_leader(self.structure, ifd, self.use_leader)
        got = locate_blocks(self.structure, ifd, [r.index for r in todo], leader=leader)
        gap, most = self.store.max_gap, self.store.max_size
        if isinstance(got, IndexNeeds):
            index = tuple(g.range for g in coalesce(got.ranges, gap, most))
            return ReadPlan(level, window, tuple(refs), tuple(cached), (), index, None, None)
        sparse = tuple(r for r, span in zip(todo, got, strict=True) if span is None)
        real = [span.range for span in got if span is not None]
        return ReadPlan(
            level,
            window,
            tuple(refs),
            tuple(cached),
            sparse,
            (),
            tuple(g.range for g in coalesce(real, gap, most)),
            sum(r.length for r in real),
        )

    def _cached(self, ifd: ImageIFD, ref: BlockRef) -> bool:
        return self.store.has(self.key(ifd, ref.index))

    # -- getting blocks ---------------------------------------------------------------------

    def _request(self, ifd: ImageIFD, ref: BlockRef, span: BlockSpan) -> BlockRequest:
        key = self.key(ifd, ref.index)
        if not span.leader:
            return BlockRequest(key, span.range)

        async def exact() -> ByteRange | None:
            # The leader did not check out: TileByteCounts bounds the block, as GDAL does.
            while True:
                got = locate_exact(self.structure, ifd, ref.index)
                if not isinstance(got, IndexNeeds):
                    return got
                await self.load_index(ifd, got.ranges)

        return BlockRequest(key, span.range, trim=leader_span, fallback=exact)

    async def sources(
        self,
        ifd: ImageIFD,
        refs: list[BlockRef],
        target: ReadTarget | None,
        budgets: Budgets,
    ) -> list[BlockSource]:
        """Each block's source: its decoded array when the decoded-block cache has one with the
        rows ``target`` needs (no target: bytes are wanted), else a waiter for its bytes; None
        for a sparse block. Budgets are checked before anything is fetched."""
        if budgets.max_tiles is not None and len(refs) > budgets.max_tiles:
            raise LimitExceededError("tiles", len(refs), budgets.max_tiles)
        result: list[BlockSource] = [None] * len(refs)
        todo: list[int] = []
        for i, ref in enumerate(refs):
            decoded = self._decoded(ifd, ref, target)
            if decoded is not None:
                result[i] = decoded
            elif (data := self.store.cached(self.key(ifd, ref.index))) is not None:
                self.stats.cache_hits += 1
                result[i] = BlockWaiter.ready(data)
            else:
                todo.append(i)
        if not todo:
            return result
        spans = await self.locate(ifd, [refs[i].index for i in todo])
        if budgets.max_bytes is not None:
            total = sum(s.range.length for s in spans if s is not None)
            if total > budgets.max_bytes:
                raise LimitExceededError("bytes to fetch", total, budgets.max_bytes)
        slots = [i for i, span in zip(todo, spans, strict=True) if span is not None]
        self.stats.sparse_tiles += len(todo) - len(slots)
        requests = [
            self._request(ifd, refs[i], span)
            for i, span in zip(todo, spans, strict=True)
            if span is not None
        ]
        for i, waiter in zip(slots, self.store.request(requests), strict=True):
            result[i] = waiter
        return result

    def _decoded(
        self, ifd: ImageIFD, ref: BlockRef, target: ReadTarget | None
    ) -> npt.NDArray[Any] | None:
        if target is None:
            return None
        decoded = self.decoded_cache.get(self.decoded_key(ifd, ref.index))
        if decoded is None or len(decoded) < target.rows_needed(ifd, ref):
            return None
        self.stats.decoded_cache_hits += 1
        return decoded  # type: ignore[no-any-return]

    def decoder(self, ifd: ImageIFD) -> BlockDecoder:
        dec = self._decoders.get(ifd.offset)
        if dec is None:
            dec = self._decoders[ifd.offset] = BlockDecoder(ifd, self.jpeg_decoder)
        return dec

    def decode(
        self, ifd: ImageIFD, ref: BlockRef, data: bytes, target: ReadTarget
    ) -> npt.NDArray[Any]:
        """Decode one block (in a pool thread) and keep the result in the decoded-block cache.

        Only the block's rows ``target`` needs are decoded where the codec can stop early (a
        window ending a few rows into a block pays for those rows, not the block); the cache
        keeps what was decoded and a later read needing more rows decodes again.
        """
        block = self.decoder(ifd).decode(data, ref.row, target.rows_needed(ifd, ref))
        block.flags.writeable = False  # shared through the cache: nobody may change it
        self.decoded_cache.put(self.decoded_key(ifd, ref.index), block)
        return block

    async def run(
        self,
        ifd: ImageIFD,
        refs: list[BlockRef],
        sources: list[BlockSource],
        target: ReadTarget,
        work: Work,
    ) -> None:
        """Get each block (decoded from cache, or fetched and decoded) and hand it to ``work``,
        decoding and working in the thread pool. ``work`` gets None for a sparse block."""
        self.decoder(ifd)  # built once, on the loop
        loop = asyncio.get_running_loop()
        stats = self.stats
        # Set when the read ends: decodes still queued in the pool for a read that already
        # failed (or was cancelled) are skipped instead of burning CPU for nobody.
        over = threading.Event()

        def decode_and_work(ref: BlockRef, data: bytes) -> None:
            if over.is_set():
                return
            work(ref, self.decode(ifd, ref, data, target) if data else None)

        async def one(ref: BlockRef, src: BlockSource) -> None:
            if src is None:
                work(ref, None)
                return
            if isinstance(src, np.ndarray):
                await loop.run_in_executor(self.executor, work, ref, src)
                return
            data = await src
            stats.tiles_read += 1
            await loop.run_in_executor(self.executor, decode_and_work, ref, data)
            stats.tiles_decoded += 1

        try:
            await gather_all(one(ref, src) for ref, src in zip(refs, sources, strict=True))
        finally:
            over.set()
            release(sources)

    async def read(
        self,
        ifd: ImageIFD,
        target: ReadTarget,
        samples: Sequence[int],
        fill: Any,
        budgets: Budgets,
        sparse: Any = None,
    ) -> npt.NDArray[Any]:
        """``target``'s pixels of ``samples`` (0-based) as (len(samples), h, w): ``fill``
        outside the image, ``sparse`` (None: ``fill``) in blocks the file does not hold."""
        if sparse is None:
            sparse = fill
        height, width = target.shape
        shape = (len(samples), height, width)
        nbytes = shape[0] * height * width * ifd.dtype.itemsize
        if self.max_output_bytes and nbytes > self.max_output_bytes:
            raise LimitExceededError("output bytes", nbytes, self.max_output_bytes)
        refs = self.refs(ifd, target, samples)
        sources = await self.sources(ifd, refs, target, budgets)
        # Inside the image every pixel comes from a block (or a sparse block's fill), so the
        # array need not be filled first; a boundless read is prefilled for its outside part.
        if target.inside(ifd):
            out = np.empty(shape, dtype=ifd.dtype)
        else:
            out = np.full(shape, fill, dtype=ifd.dtype)

        def work(ref: BlockRef, block: npt.NDArray[Any] | None) -> None:
            if block is None:
                target.fill(out, sparse, ref, ifd, samples)
            else:
                target.paste(out, block, ref, ifd, samples)

        try:
            await self.run(ifd, refs, sources, target, work)
        except BaseException:
            # a failed read's traceback holds this frame, and with it (through ``work``'s
            # closure) the output array, often in a reference cycle: let the array go now
            del out
            raise
        return out

    # -- tiles as they come ---------------------------------------------------------------

    async def tiles(
        self,
        level: int,
        ifd: ImageIFD,
        win: Window,
        samples: Sequence[int],
        fill: Any,
        budgets: Budgets,
    ) -> AsyncIterator[Tile]:
        """The blocks of ``win`` as ``Tile``s in the order they are decoded, through ``run``."""
        target = WindowTarget(win)
        refs = self.refs(ifd, target, samples)
        sources = await self.sources(ifd, refs, target, budgets)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Tile] = asyncio.Queue()
        parts: dict[tuple[int, int], list[int]] = {}
        for ref in refs:
            parts.setdefault((ref.row, ref.col), []).append(ref.index)
        outs: dict[tuple[int, int], tuple[Window, npt.NDArray[Any], set[int]]] = {}
        for (row, col), indices in parts.items():
            part_win = block_window(ifd, row, col).intersect(win)
            assert part_win is not None
            shape = (len(samples), part_win.height, part_win.width)
            outs[row, col] = (part_win, np.full(shape, fill, dtype=ifd.dtype), set(indices))
        lock = threading.Lock()

        def work(ref: BlockRef, block: npt.NDArray[Any] | None) -> None:
            part_win, out, left = outs[ref.row, ref.col]
            if block is not None:
                paste(out, block, ref, ifd, part_win, samples)
            with lock:
                left.discard(ref.index)
                done = not left
            if done:
                tile = Tile(level, ref.row, ref.col, part_win, out)
                loop.call_soon_threadsafe(queue.put_nowait, tile)

        runner = asyncio.ensure_future(self.run(ifd, refs, sources, target, work))
        try:
            for _ in outs:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, runner], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    runner.result()  # the run failed: raise why
                    getter = asyncio.ensure_future(queue.get())  # ended with tiles queued
                yield await getter
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            release(sources)

    # -- preloading -----------------------------------------------------------------------

    async def fetch_all(self, ifd: ImageIFD, budget: int) -> tuple[int, int]:
        """Pin every block of ``ifd`` not pinned yet, refusing before fetching when their bytes
        exceed ``budget``; returns (blocks, bytes) pinned."""
        refs = [
            BlockRef(p, r, c, ifd.block_index(p, r, c))
            for p in range(ifd.planes)
            for r in range(ifd.blocks_down)
            for c in range(ifd.blocks_across)
        ]
        # Whole index arrays: one GET each, rather than block by block.
        await self.load_index(
            ifd, [a.byte_range for a in (ifd.offsets, ifd.byte_counts) if not a.resident]
        )
        pinned = await self.pin(ifd, refs, budget)
        return len(pinned), sum(len(self.store.pinned[k]) for k in pinned)

    async def pin(
        self, ifd: ImageIFD, refs: Sequence[BlockRef], budget: int | None = None
    ) -> list[Hashable]:
        """Fetch the blocks of ``refs`` not pinned yet in as few coalesced GETs as the store
        makes of them (neighbouring blocks of different reads share one GET) and pin them;
        returns the keys pinned here, for ``unpin``. ``budget``: LimitExceededError, before
        fetching, when their bytes would exceed it."""
        pinned = self.store.pinned
        refs = list({r.index: r for r in refs if self.key(ifd, r.index) not in pinned}.values())
        spans = await self.locate(ifd, [r.index for r in refs])
        size = sum(s.range.length for s in spans if s is not None)
        if budget is not None and size > budget:
            raise LimitExceededError("preload bytes", size, budget)
        pairs = [(ref, span) for ref, span in zip(refs, spans, strict=True) if span is not None]
        waiters = self.store.request([self._request(ifd, ref, span) for ref, span in pairs])
        try:
            datas = await gather_all(waiters)
        finally:
            release(waiters)
        keys = [self.key(ifd, ref.index) for ref, _ in pairs]
        for key, data in zip(keys, datas, strict=True):
            pinned[key] = data
        return keys

    def unpin(self, keys: Sequence[Hashable]) -> None:
        """Let go of blocks ``pin`` pinned (they stay in the block cache while it keeps them)."""
        for key in keys:
            self.store.pinned.pop(key, None)


def release(sources: Sequence[BlockSource]) -> None:
    """Let go of every block fetch a read did not await (it failed or was cancelled first)."""
    for src in sources:
        if isinstance(src, BlockWaiter):
            src.release()


class LevelReader:
    """A ``BlockReader`` bound to one level: its image, its mask and the dataset's nodata."""

    def __init__(self, reader: BlockReader, level: int, nodata: float | int | None) -> None:
        self.reader = reader
        self.level = level
        self.ifd = reader.structure.levels[level]
        self.mask_ifd = reader.structure.masks[level]
        self.base = reader.structure.levels[0]
        self.nodata = nodata

    def fill(self, fill_value: float | int | None) -> Any:
        """The value pixels outside the image get: ``fill_value``, else nodata, else 0; 0
        where the dtype cannot hold it. ``fill(None)`` is what sparse blocks hold (GDAL's
        rule: nodata, else 0, whatever a read's ``fill_value``)."""
        value = self.nodata if fill_value is None else fill_value
        if value is None:
            return 0
        dtype = self.ifd.dtype
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if isinstance(value, float) and not value.is_integer():
                return 0  # NaN included
            if not info.min <= value <= info.max:
                return 0
        return value

    async def read(
        self,
        target: ReadTarget,
        samples: Sequence[int],
        fill: Any,
        budgets: Budgets,
        *,
        ifd: ImageIFD | None = None,
    ) -> npt.NDArray[Any]:
        if ifd is None or ifd is self.ifd:  # the data: a sparse block holds nodata, else 0
            return await self.reader.read(
                self.ifd, target, samples, fill, budgets, sparse=self.fill(None)
            )
        return await self.reader.read(ifd, target, samples, fill, budgets)  # a mask: fill
