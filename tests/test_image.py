"""Image API over the real range server: request accounting, caches, budgets, loading strategies."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.testing import RangeServer

_names = itertools.count()

RNG = np.random.default_rng(42)
# A smooth-ish uint16 image: compresses like real data, so tiles have realistic sizes.
BASE = (np.add.outer(np.arange(1000), np.arange(1300)) // 3).astype(np.uint16)
DATA = (BASE + RNG.integers(0, 16, BASE.shape, dtype=np.uint16)).astype(np.uint16)
COG = write_cog(DATA, tile=128, compression="deflate", predictor=2, nodata=0)


def put(server: RangeServer, data: bytes, stem: str = "img") -> str:
    name = f"{stem}-{next(_names)}.tif"
    server.add(name, data)
    return server.url(name)


@pytest.fixture
async def ctx() -> AsyncIterator[cloudroi.Context]:
    # A private block cache per test so that accounting is not disturbed by other tests.
    from cloudroi.cache import LRUCache
    from cloudroi.tiff.structure import TiffStructure

    context = cloudroi.Context(
        block_cache=LRUCache[bytes](64 << 20, sizeof=len),
        decoded_cache=LRUCache[object](0),  # off: these tests watch fetches and decodes
        header_cache=LRUCache[TiffStructure](64),
    )
    yield context
    await context.close()


async def test_cold_open_and_read_costs_one_header_get_plus_coalesced_tiles(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    window = (200, 300, 512, 512)
    async with cloudroi.open(url, context=ctx, remember_header_size=False) as img:
        assert server.request_count == 1, "open must be a single GET"
        plan = img.plan(window)
        assert plan.complete
        assert plan.requests
        arr = await img.read(window)
    np.testing.assert_array_equal(arr[0], DATA[300:812, 200:712])
    log = server.requests_for()
    assert len(log) == 1 + len(plan.requests)
    assert log[0].range == "bytes=0-32767"
    tile_ranges = sorted(e.range for e in log[1:])
    assert tile_ranges == sorted(f"bytes={r.start}-{r.end - 1}" for r in plan.requests)
    # Coalescing: one GET per tile row of the window (tiles of a row are contiguous in a COG).
    assert len(plan.requests) == 5
    compressed = plan.block_bytes
    assert compressed is not None
    # Tile bytes moved are the tiles' own compressed sizes plus 8 bytes of leader/trailer each.
    assert server.bytes_sent - 32768 <= compressed + 8 * len(plan.blocks)
    assert img.stats.requests == len(log)
    assert img.stats.bytes_fetched == server.bytes_sent


async def test_second_open_takes_one_request_of_the_remembered_header_size(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        needed = img.structure.header_bytes
    server.reset()
    async with cloudroi.open(url, context=ctx) as img2:
        assert img2.stats.header_cache_hits == 1
    log = server.requests_for()
    assert len(log) == 1
    assert log[0].range == f"bytes=0-{needed - 1}"


async def test_header_larger_than_prefix_takes_few_round_trips(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx, prefix_bytes=256, remember_header_size=False) as img:
        assert img.levels[0] == (1300, 1000)
        header_gets = img.stats.header_requests
    assert 2 <= header_gets <= 3


async def test_block_cache_and_inflight_sharing(server: RangeServer, ctx: cloudroi.Context) -> None:
    url = put(server, COG)
    window = (0, 0, 400, 400)
    server.latency = 0.05  # long enough for the two reads to overlap
    async with cloudroi.open(url, context=ctx) as a, cloudroi.open(url, context=ctx) as b:
        server.reset()
        ra, rb = await asyncio.gather(a.read(window), b.read(window))
        np.testing.assert_array_equal(ra, rb)
        gets = server.request_count
        assert gets == len(a.plan(window).requests or ()) or gets <= 4
        assert b.stats.inflight_shared + a.stats.inflight_shared >= 16
        server.reset()
        again = await b.read(window)
        np.testing.assert_array_equal(again, ra)
        assert server.request_count == 0
        assert b.stats.cache_hits >= 16


async def test_budgets_refuse_before_any_tile_fetch(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        server.reset()
        with pytest.raises(cloudroi.LimitExceededError, match="tiles"):
            await img.read((0, 0, 1300, 1000), max_tiles=10)
        with pytest.raises(cloudroi.LimitExceededError, match="bytes"):
            await img.read((0, 0, 1300, 1000), max_bytes=1000)
        assert server.request_count == 0


async def test_windows_bands_and_boundless(server: RangeServer, ctx: cloudroi.Context) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        with pytest.raises(cloudroi.WindowError):
            await img.read((1200, 900, 200, 200))
        with pytest.raises(cloudroi.WindowError):
            await img.read((0, 0, 10, 10), level=9)
        with pytest.raises(cloudroi.WindowError):
            await img.read((0, 0, 10, 10), bands=[2])
        arr = await img.read((1200, 900, 200, 200), boundless=True)
        assert arr.shape == (1, 200, 200)
        np.testing.assert_array_equal(arr[0, :100, :100], DATA[900:, 1200:])
        assert (arr[0, 100:, :] == 0).all()
        assert (arr[0, :, 100:] == 0).all()
        filled = await img.read((-5, -5, 10, 10), boundless=True, fill_value=7)
        assert (filled[0, :5, :] == 7).all()
        nowhere = await img.read((5000, 5000, 10, 10), boundless=True)
        assert (nowhere == 0).all()
        mask = await img.read_mask((1290, 990, 20, 20), boundless=True)
        assert mask.shape == (20, 20)
        assert (mask[10:, :] == 0).all()
        assert (mask[:10, 10:] == 0).all()


async def test_overview_levels_and_out_shape(server: RangeServer, ctx: cloudroi.Context) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        assert img.levels == [(1300, 1000), (650, 500), (325, 250), (163, 125), (82, 63)]
        lvl2 = await img.read(level=2)
        np.testing.assert_array_equal(lvl2[0], DATA[::4, ::4])
        server.reset()
        small = await img.read((0, 0, 1300, 1000), out_shape=(250, 325))
        np.testing.assert_array_equal(small, lvl2)  # GDAL's choice: the exact-factor overview
        assert server.request_count == 0  # all from the cache filled by the level-2 read


async def test_preload_then_reads_send_nothing(server: RangeServer, ctx: cloudroi.Context) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        loaded = await img.preload(level=1)
        assert loaded > 0
        assert img.stats.preloaded_tiles == 24
        server.reset()
        arr = await img.read(level=1)
        np.testing.assert_array_equal(arr[0], DATA[::2, ::2])
        assert server.request_count == 0
        with pytest.raises(cloudroi.LimitExceededError):
            async with cloudroi.open(url, context=ctx, max_preload_bytes=1000) as tight:
                await tight.preload(level=0)


async def test_iter_tiles_streams_and_stops(server: RangeServer, ctx: cloudroi.Context) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        seen = 0
        async for tile in img.iter_tiles((100, 100, 300, 300)):
            w = tile.window
            np.testing.assert_array_equal(
                tile.data[0], DATA[w.row_off : w.row_end, w.col_off : w.col_end]
            )
            seen += 1
        assert seen == 16  # blocks 0..3 in both directions (128-pixel tiles)
        async for _ in img.iter_tiles((0, 0, 1300, 1000)):
            break  # abandoning the stream cancels the rest
    await asyncio.sleep(0.05)
    leftovers = [t for t in asyncio.all_tasks() if "_run_flight" in repr(t.get_coro())]
    assert leftovers == []


async def test_cancelled_read_cancels_fetches_and_the_context_stays_usable(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        server.latency = 0.5
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(img.read((0, 0, 1300, 1000)), 0.1)
        await asyncio.sleep(0)
        flights = [t for t in asyncio.all_tasks() if "_run_flight" in repr(t.get_coro())]
        assert all(t.cancelling() or t.done() for t in flights)
        server.latency = 0.0
        arr = await img.read((0, 0, 64, 64))
        np.testing.assert_array_equal(arr[0], DATA[:64, :64])
    connector = ctx.http_session().connector
    assert connector is not None
    await asyncio.sleep(0.05)
    assert len(connector._acquired) == 0  # every connection went back or was closed


async def test_object_changed_between_reads(server: RangeServer, ctx: cloudroi.Context) -> None:
    name = f"changing-{next(_names)}.tif"
    server.add(name, COG)
    url = server.url(name)
    async with cloudroi.open(url, context=ctx) as img:
        await img.read((0, 0, 128, 128))
        server.add(name, write_cog(DATA + 1, tile=128, compression="deflate", predictor=2))
        with pytest.raises(cloudroi.ObjectChangedError):
            await img.read((512, 512, 128, 128))
    # A fresh open sees the new version: caches are keyed by ETag, nothing stale is served.
    async with cloudroi.open(url, context=ctx) as img:
        arr = await img.read((0, 0, 128, 128))
        np.testing.assert_array_equal(arr[0], DATA[:128, :128] + 1)


async def test_lazy_index_loads_only_the_slices_a_read_needs(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    """With a tiny lazy threshold the index is fetched block by block; GDAL's leader means the
    byte counts are never needed."""
    small_tiles = write_cog(DATA, tile=16, compression="deflate", overviews=0)  # 5166 tiles
    url = put(server, small_tiles)
    async with cloudroi.open(
        url, context=ctx, lazy_index_bytes=1024, prefix_bytes=512, remember_header_size=False
    ) as img:
        base = img.structure.levels[0]
        assert not base.offsets.resident
        assert not base.byte_counts.resident
        opened = img.stats.bytes_fetched
        assert opened < 20_000 + 16 * 1024  # the 20 KiB arrays were not loaded whole
        window = (100, 100, 64, 64)
        plan = img.plan(window)
        assert plan.requests is None
        assert plan.index_requests
        arr = await img.read(window)
        np.testing.assert_array_equal(arr[0], DATA[100:164, 100:164])
        assert img.stats.index_requests >= 1
        assert base.byte_counts.loaded_bytes() == 0  # the leader bounded every block
        assert base.offsets.loaded_bytes() < 4 * 1024
        done = img.plan(window)
        assert done.complete
        assert done.index_requests == ()


async def test_corrupt_leader_falls_back_to_byte_counts(ctx: cloudroi.Context) -> None:
    data = bytearray(COG)
    async with cloudroi.open(bytes(data), context=ctx) as probe:
        base = probe.structure.levels[0]
        first = int(base.offsets.get([0])[0])
    data[first - 4 : first] = (10**6).to_bytes(4, "little")  # a lying leader
    async with cloudroi.open(bytes(data), context=ctx, lazy_index_bytes=16) as img:
        arr = await img.read((0, 0, 128, 128))
        np.testing.assert_array_equal(arr[0], DATA[:128, :128])
        assert img.structure.levels[0].byte_counts.loaded_bytes() > 0


async def test_huge_sparse_image_opens_with_tens_of_kib(
    server: RangeServer, ctx: cloudroi.Context, tmp_path: Path
) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.windows import Window

    path = tmp_path / "huge.tif"
    with (
        pytest.warns(rasterio.errors.NotGeoreferencedWarning),
        rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=200_000,
            height=200_000,
            count=1,
            dtype="uint8",
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
            sparse_ok=True,
            BIGTIFF="YES",
        ) as dst,
    ):
        dst.write(np.full((1, 512, 512), 7, np.uint8), window=Window(100_000, 100_352, 512, 512))
    url = put(server, path.read_bytes(), "huge")
    async with cloudroi.open(url, context=ctx) as img:
        assert (img.width, img.height) == (200_000, 200_000)
        opened = img.stats.bytes_fetched
        assert opened <= 64 * 1024, opened
        arr = await img.read((100_000, 100_000, 1024, 1024))
        assert (arr[0, 352:864, :512] == 7).all()
        assert arr.sum() == 7 * 512 * 512
        read_bytes = img.stats.bytes_fetched - opened
        assert read_bytes < 16 * 1024, read_bytes  # index slices + one small tile


async def test_local_file_and_sync_helpers(tmp_path: Path) -> None:
    path = tmp_path / "local.tif"
    path.write_bytes(COG)
    arr = await asyncio.to_thread(cloudroi.read, str(path), (10, 20, 30, 40))
    np.testing.assert_array_equal(arr[0], DATA[20:60, 10:40])
    # The synchronous helper also works when called from inside a running event loop.
    arr2 = cloudroi.read(f"file://{path}", (10, 20, 30, 40))
    np.testing.assert_array_equal(arr2, arr)
    info = cloudroi.info(str(path))
    assert info["width"] == 1300
    assert info["levels"][1] == [650, 500]


async def test_strips_and_planar_over_http(server: RangeServer, ctx: cloudroi.Context) -> None:
    rgb = RNG.integers(0, 255, (3, 300, 500), dtype=np.uint8)
    out = io.BytesIO()
    tifffile.imwrite(
        out, rgb, photometric="rgb", planarconfig="separate", rowsperstrip=7, compression="lzw"
    )
    url = put(server, out.getvalue())
    async with cloudroi.open(url, context=ctx) as img:
        assert img.block_shape == (7, 500)
        assert img.interleave == "band"
        arr = await img.read((3, 290, 100, 10), bands=[3, 1])
        np.testing.assert_array_equal(arr, rgb[[2, 0], 290:300, 3:103])


def test_public_api_is_pinned() -> None:
    assert set(cloudroi.__all__) >= {
        "open",
        "read",
        "info",
        "Image",
        "Context",
        "CloudROIError",
        "TiffFormatError",
        "UnsupportedTiffError",
        "WindowError",
        "SourceNotFoundError",
        "AccessDeniedError",
        "RangeNotSupportedError",
        "ObjectChangedError",
        "LimitExceededError",
        "ReadPlan",
        "CRS",
        "CRSError",
    }
    for name in cloudroi.__all__:
        assert hasattr(cloudroi, name), name
    for name in cloudroi.__all__:
        obj = getattr(cloudroi, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, cloudroi.CloudROIError), name


_ = os


async def test_small_object_is_read_once(server: RangeServer, ctx: cloudroi.Context) -> None:
    tiny = write_cog(DATA[:100, :120], tile=64, compression="deflate")
    assert len(tiny) < 32 * 1024
    url = put(server, tiny)
    async with cloudroi.open(url, context=ctx) as img:
        arr = await img.read()
    np.testing.assert_array_equal(arr[0], DATA[:100, :120])
    assert server.request_count == 1
    assert img.stats.requests == 1


async def test_stats_of_a_failed_open_are_visible(server: RangeServer) -> None:
    stats = cloudroi.Stats()
    with pytest.raises(cloudroi.SourceNotFoundError):
        await cloudroi.open(server.url("nothing-here.tif"), stats=stats)
    assert stats.requests == 1


async def test_decoded_block_cache_skips_fetch_and_decode(server: RangeServer) -> None:
    from cloudroi.cache import LRUCache

    url = put(server, COG)
    ctx = cloudroi.Context(
        block_cache=LRUCache[bytes](0, sizeof=len),
        decoded_cache=LRUCache[np.ndarray](64 << 20, sizeof=lambda a: int(a.nbytes)),
    )
    async with cloudroi.open(url, context=ctx) as img:
        first = await img.read((0, 0, 300, 300))
        decoded = img.stats.tiles_decoded
        server.reset()
        again = await img.read((10, 10, 200, 200))
        assert server.request_count == 0
        assert img.stats.tiles_decoded == decoded  # nothing decoded twice
        assert img.stats.decoded_cache_hits == 4
        tiles = [t async for t in img.iter_tiles((0, 0, 256, 256))]
        assert len(tiles) == 4
        assert img.stats.tiles_decoded == decoded
    await ctx.close()
    np.testing.assert_array_equal(again, first[:, 10:210, 10:210])
    # Cached blocks are shared between reads, so they are read-only; results are fresh arrays.
    cached = next(iter(ctx.decoded_cache._data.values()))[0]
    with pytest.raises(ValueError, match="read-only"):
        cached[0, 0, 0] = 1
    again[0, 0, 0] = 1  # a read's result is the caller's to change


async def test_plan_of_a_resampled_read_is_what_the_read_fetches(
    server: RangeServer, ctx: cloudroi.Context
) -> None:
    url = put(server, COG)
    async with cloudroi.open(url, context=ctx) as img:
        plan = img.plan((0, 0, 1300, 1000), out_shape=(250, 325))
        assert plan.level == 2  # the overview GDAL picks for a 4x reduction
        assert plan.requests is not None
        server.reset()
        await img.read((0, 0, 1300, 1000), out_shape=(250, 325))
        assert server.request_count == len(plan.requests)
