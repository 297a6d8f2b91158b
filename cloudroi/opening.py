"""Opening an Image: one GET of a prefix (its answer also gives the object's size and validator),
the header parsed from it (``cloudroi.read.header``) or taken from the header cache, and the
read pipeline wired for the object (fetcher, block store, block reader).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .context import Context
from .image import Image, ImageOptions
from .read.blocks import BlockStore
from .read.fetch import Fetcher
from .read.header import HeaderOptions, load_structure
from .read.jpeg_ijg import check_jpeg_decoder
from .read.reader import BlockReader
from .source.base import RangeSource
from .source.memory import MemorySource, PrefetchedSource
from .tiff.structure import TiffStructure
from .types import ObjectMeta, Stats

__all__ = ["open_image"]

#: A URL's remembered header size is used as the next open's prefix only up to this size.
_MAX_REMEMBERED_HEADER = 4 << 20


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


async def _source(
    ctx: Context, target: str | RangeSource | bytes, opts: ImageOptions
) -> RangeSource:
    if isinstance(target, bytes | bytearray | memoryview):
        return MemorySource(target)
    if isinstance(target, str):
        return await ctx.source(target, headers=opts.headers)
    return target


async def _structure(
    ctx: Context, fetcher: Fetcher, opts: ImageOptions
) -> tuple[ObjectMeta, bytes, TiffStructure]:
    """The object's metadata, its first bytes and its parsed header (from the header cache
    when the ETag has been seen)."""
    source = fetcher.source
    stats = fetcher.stats
    # A URL's header size is worth remembering only for storage with a round trip to save.
    remember = opts.remember_header_size and not isinstance(source, MemorySource)
    remembered = ctx.header_sizes.get(source.url) if remember else None
    meta, prefix = await fetcher.open(remembered if remembered else opts.prefix_bytes)
    key = (source.url, meta.etag)
    structure = ctx.header_cache.get(key) if meta.etag else None
    if structure is not None and structure.size == meta.size:
        stats.header_cache_hits += 1
    else:
        header_opts = HeaderOptions(
            prefix_bytes=opts.prefix_bytes,
            lazy_index_bytes=opts.lazy_index_bytes,
            limits=opts.parse_limits,
        )
        structure = await load_structure(fetcher, meta, prefix, header_opts, executor=ctx.executor)
        if meta.etag:
            ctx.header_cache.put(key, structure)
    if remember and 0 < structure.header_bytes <= _MAX_REMEMBERED_HEADER:
        ctx.header_sizes.put(source.url, structure.header_bytes)
    return meta, prefix, structure


def _cache_token(source: RangeSource, meta: ObjectMeta) -> object:
    """Blocks are cached across Images under a validator of the version; without one (size
    only) under a token of this Image alone."""
    if isinstance(source, MemorySource):
        return ("memory", meta.etag)
    if meta.etag:
        return (source.url, meta.etag)
    if meta.last_modified:
        return (source.url, "last-modified", meta.last_modified, meta.size)
    return object()


async def _open_with(
    ctx: Context, target: str | RangeSource | bytes, opts: ImageOptions, owns: bool, stats: Stats
) -> Image:
    jpeg_decoder = check_jpeg_decoder(opts.jpeg_decoder or ctx.options.jpeg_decoder)
    source = await _source(ctx, target, opts)
    limiter = asyncio.Semaphore(ctx.options.max_concurrency)
    fetcher = Fetcher(source, stats, limiter, ctx.options.retry, ctx.hedging)
    try:
        meta, prefix, structure = await _structure(ctx, fetcher, opts)
    except BaseException:
        await source.close()
        raise
    if meta.size <= len(prefix) and not isinstance(source, MemorySource):
        # The whole object came with the first GET: blocks are served from it, not refetched.
        source = PrefetchedSource(source, meta, prefix)
        fetcher.source = source
    store = BlockStore(
        fetcher,
        ctx.block_cache,
        ctx.inflight,
        max_gap=opts.coalesce_gap,
        max_size=opts.coalesce_max,
        multirange=opts.multirange,
    )
    reader = BlockReader(
        structure,
        store,
        ctx.executor,
        ctx.decoded_cache,
        _cache_token(source, meta),
        use_leader=opts.use_block_leader,
        max_output_bytes=opts.max_output_bytes,
        jpeg_decoder=jpeg_decoder,
    )
    return Image(ctx, source, structure, meta, reader, opts, owns_context=owns)
