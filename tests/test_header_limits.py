"""Header work is bounded per open: hostile headers (millions of IFD entries, a 64 MiB
BitsPerSample, megabytes of tag values, a 60 MiB GDAL_METADATA) are refused with a typed error or
skipped from a few KiB of reads, large headers are parsed off the event loop, and the parsed-header
cache is bounded by bytes.

The files are written here with struct/numpy (no library writes such files), served by the real
range server on 127.0.0.1 and read by the library or the service over a real socket.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.cog import write_cog
from cloudroi.context import Context, default_header_cache
from cloudroi.read.fetch import Fetcher, RetryPolicy
from cloudroi.read.header import OFF_LOOP_BYTES, OFF_LOOP_IFDS, HeaderOptions, load_structure
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from cloudroi.testing.rangeserver import etag_of
from cloudroi.tiff.parse import ParseLimits, RawIFD, SparseBuffer
from cloudroi.tiff.structure import TiffStructure, build, scan
from cloudroi.types import ByteRange, Stats

MiB = 1 << 20
ENTRY = np.dtype([("tag", "<u2"), ("type", "<u2"), ("count", "<u4"), ("value", "<u4")])
SIDE = 16  # every IFD describes a 16 x 16 uint8 image of one uncompressed tile
#: (tag, field type, count, payload): an entry whose value lies after the IFDs.
Extra = tuple[int, int, int, bytes]


def hostile_tiff(
    n_ifds: int,
    n_entries: int,
    *,
    first: Sequence[Extra] = (),
    every: Sequence[Extra] = (),
) -> bytes:
    """A little-endian classic TIFF of ``n_ifds`` chained IFDs of ``n_entries`` entries each.

    The first IFD is the image, the others say they are reduced-resolution images of it
    (NewSubfileType 1), so a reader walks the whole chain. Each IFD holds the entries of a
    16 x 16 uint8 tiled image, then ``first`` (first IFD only) or ``every`` entries, then filler
    entries (tags 60000+, SHORT, inline) no reader looks at. A payload shared by ``every`` IFD is
    written once: all of them point to it.
    """
    ifd_size = 2 + 12 * n_entries + 4
    payload_at = 8 + n_ifds * ifd_size
    payloads: list[bytes] = []
    offsets: dict[int, int] = {}  # id(payload) -> file offset

    def place(payload: bytes) -> int:
        if id(payload) not in offsets:
            offsets[id(payload)] = payload_at + sum(len(p) for p in payloads)
            payloads.append(payload + b"\0" * (len(payload) % 2))
        return offsets[id(payload)]

    extras_first = [(t, ty, c, place(p)) for t, ty, c, p in first]
    extras_every = [(t, ty, c, place(p)) for t, ty, c, p in every]
    tile_at = payload_at + sum(len(p) for p in payloads)
    base = [
        (254, 4, 1, 0),
        (256, 3, 1, SIDE),
        (257, 3, 1, SIDE),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (277, 3, 1, 1),
        (322, 3, 1, SIDE),
        (323, 3, 1, SIDE),
        (324, 4, 1, tile_at),
        (325, 4, 1, SIDE * SIDE),
    ]
    out = bytearray(b"II*\0" + (8).to_bytes(4, "little"))
    for i in range(n_ifds):
        named = {t: (t, ty, c, v) for t, ty, c, v in base}
        for t, ty, c, v in extras_every + (extras_first if i == 0 else []):
            named[t] = (t, ty, c, v)
        if i:
            named[254] = (254, 4, 1, 1)  # a reduced-resolution image of the first
        fill = n_entries - len(named)
        assert fill >= 0
        table = np.zeros(n_entries, ENTRY)
        table[: len(named)] = sorted(named.values())
        table["tag"][len(named) :] = 60000 + np.arange(fill)
        table["type"][len(named) :] = 3
        table["count"][len(named) :] = 1
        next_ifd = 8 + (i + 1) * ifd_size if i + 1 < n_ifds else 0
        out += n_entries.to_bytes(2, "little") + table.tobytes() + next_ifd.to_bytes(4, "little")
    for p in payloads:
        out += p
    out += bytes(range(SIDE * SIDE))
    return bytes(out)


def ascii_payload(n: int, fill: bytes = b"x") -> bytes:
    return b"<GDALMetadata>" + fill * n + b"</GDALMetadata>\0"


Publish = Callable[[str, bytes], None]


@pytest.fixture
def publish(server: RangeServer) -> Iterator[Publish]:
    """Add files to the session's range server, and take them away after the test (they are tens
    of MB each)."""
    added: list[str] = []

    def add(path: str, data: bytes) -> None:
        server.add(path, data)
        added.append(path)

    yield add
    for path in added:
        server.remove(path)


def fetched_bytes(server: RangeServer, path: str) -> int:
    return sum(e.body_bytes for e in server.requests_for(path))


async def open_error(url: str) -> cloudroi.TiffFormatError:
    started = time.perf_counter()
    with pytest.raises(cloudroi.TiffFormatError) as info:
        async with await cloudroi.open(url):
            pass
    assert time.perf_counter() - started < 5.0
    return info.value


# --------------------------------------------------------------------------------------------
# the library: bounded work per open, typed errors before the bytes are asked for
# --------------------------------------------------------------------------------------------


async def test_millions_of_ifd_entries_are_refused_after_a_bounded_parse(
    server: RangeServer, publish: Publish
) -> None:
    # The file: 1000 IFDs of 4000 entries, 48 MB (17 s of /info before the fix).
    data = hostile_tiff(1000, 4000)
    assert len(data) > 48_000_000
    publish("hdr/entries.tif", data)
    started = time.perf_counter()
    err = await open_error(server.url("hdr/entries.tif"))
    elapsed = time.perf_counter() - started
    assert "more than 100000 entries" in str(err)
    assert elapsed < 2.0, elapsed
    # Refused once the entries counted reach the cap: about 1.2 MB of the 48 MB were read.
    assert fetched_bytes(server, "hdr/entries.tif") < 4 * MiB


async def test_the_entry_cap_is_configurable(server: RangeServer, publish: Publish) -> None:
    data = hostile_tiff(30, 200)  # 6000 entries in all
    publish("hdr/entries-cap.tif", data)
    url = server.url("hdr/entries-cap.tif")
    async with await cloudroi.open(url) as img:  # under the default cap: opens
        assert img.width == SIDE
    fetcher = Fetcher(cloudroi.MemorySource(data), Stats(), asyncio.Semaphore(4), RetryPolicy())
    meta, prefix = await fetcher.open(32 * 1024)
    tight = HeaderOptions(limits=ParseLimits(max_total_entries=5999))
    with pytest.raises(cloudroi.TiffFormatError, match="more than 5999 entries"):
        await load_structure(fetcher, meta, prefix, tight)
    exact = HeaderOptions(limits=ParseLimits(max_total_entries=6000))
    structure = await load_structure(fetcher, meta, prefix, exact)
    assert structure.levels[0].width == SIDE


@pytest.mark.parametrize("tag", [258, 338, 339])  # BitsPerSample, ExtraSamples, SampleFormat
async def test_a_per_sample_tag_longer_than_max_samples_is_refused(
    server: RangeServer, publish: Publish, tag: int
) -> None:
    count = 4097
    payload = (8 if tag == 258 else 1).to_bytes(2, "little") * count
    data = hostile_tiff(1, 12, first=[(tag, 3, count, payload)])
    path = f"hdr/samples-{tag}.tif"
    publish(path, data)
    err = await open_error(server.url(path))
    assert "4097 values (cap 4096" in str(err)


async def test_a_64_mib_bits_per_sample_is_refused_before_its_bytes_are_read(
    server: RangeServer, publish: Publish
) -> None:
    # The case: 2.9 s of /info before the fix, the 64 MiB value read and parsed.
    count = 32 * MiB
    data = hostile_tiff(1, 12, first=[(258, 3, count, (8).to_bytes(2, "little") * count)])
    publish("hdr/bps.tif", data)
    started = time.perf_counter()
    err = await open_error(server.url("hdr/bps.tif"))
    assert time.perf_counter() - started < 1.0
    assert "BITS_PER_SAMPLE (258) holds 33554432 values" in str(err)
    assert fetched_bytes(server, "hdr/bps.tif") <= 64 * 1024  # the prefix only


async def test_a_small_tag_of_megabytes_is_refused_unread(
    server: RangeServer, publish: Publish
) -> None:
    data = hostile_tiff(1, 12, first=[(34737, 2, 2 * MiB, b"p" * (2 * MiB - 1) + b"\0")])
    publish("hdr/geoascii.tif", data)
    err = await open_error(server.url("hdr/geoascii.tif"))
    assert "GEO_ASCII_PARAMS (34737) claims 2097152 bytes (cap 1048576)" in str(err)
    assert fetched_bytes(server, "hdr/geoascii.tif") <= 64 * 1024


async def test_the_tag_bytes_read_per_open_are_capped(
    server: RangeServer, publish: Publish
) -> None:
    # 17 IFDs each pointing at the same 1 MiB of LERC parameters (1 MiB is each tag's cap):
    # 17 MiB of values to parse at open, past the 16 MiB cap.
    lerc = np.arange(MiB // 4, dtype="<u4").tobytes()
    data = hostile_tiff(17, 12, every=[(50674, 4, MiB // 4, lerc)])
    publish("hdr/lerc.tif", data)
    err = await open_error(server.url("hdr/lerc.tif"))
    assert "exceed 16777216 bytes" in str(err)
    # 16 of them are fine.
    publish("hdr/lerc16.tif", hostile_tiff(16, 12, every=[(50674, 4, MiB // 4, lerc)]))
    async with await cloudroi.open(server.url("hdr/lerc16.tif")) as img:
        assert img.width == SIDE


async def test_a_huge_gdal_metadata_is_skipped_unread_and_a_small_one_kept(
    server: RangeServer, publish: Publish
) -> None:
    huge = ascii_payload(60 * MiB)
    publish("hdr/meta-huge.tif", hostile_tiff(1, 12, first=[(42112, 2, len(huge), huge)]))
    async with await cloudroi.open(server.url("hdr/meta-huge.tif")) as img:
        assert img.structure.gdal_metadata is None
        assert img.width == SIDE
    assert fetched_bytes(server, "hdr/meta-huge.tif") <= 64 * 1024
    small = ascii_payload(100_000, b"y")
    publish("hdr/meta-small.tif", hostile_tiff(1, 12, first=[(42112, 2, len(small), small)]))
    async with await cloudroi.open(server.url("hdr/meta-small.tif")) as img:
        assert img.structure.gdal_metadata == small[:-1].decode()


def test_scan_rounds_share_the_parsed_ifds() -> None:
    data = hostile_tiff(40, 300)  # 40 IFDs of 3606 bytes
    buf = SparseBuffer(len(data))
    buf.add(0, data[: 8 + 20 * 3606 + 2])  # 20 IFDs and the entry count of the 21st
    parsed: dict[int, RawIFD] = {}
    first = scan(buf, ParseLimits(), 65536, parsed)
    assert first.missing == [ByteRange(8 + 20 * 3606, 8 + 21 * 3606)]
    assert len(parsed) == len(first.ifds) == 20
    kept = dict(parsed)
    buf.add(0, data)
    second = scan(buf, ParseLimits(), 65536, parsed)
    assert not second.missing
    assert len(second.ifds) == 40
    # The IFDs parsed in the first round are the very objects of the second: not parsed again.
    assert all(second.ifds[i] is kept[raw.offset] for i, raw in enumerate(first.ifds))
    # Only wanted entries are kept; the IFD's real entry count is remembered.
    assert len(second.ifds[0].entries) == 11
    assert second.ifds[0].count == 300


# --------------------------------------------------------------------------------------------
# the parsed-header cache: bounded by bytes
# --------------------------------------------------------------------------------------------


def test_the_default_header_cache_has_a_byte_budget() -> None:
    cache = default_header_cache()
    assert cache.capacity == int(os.environ.get("CLOUDROI_HEADER_CACHE_MB", "64")) * MiB
    assert cache.max_entries == int(os.environ.get("CLOUDROI_HEADER_CACHE_ENTRIES", "512"))


def test_lru_cache_bounds_bytes_and_entries() -> None:
    cache: LRUCache[bytes] = LRUCache(100, sizeof=len, max_entries=3)
    for key in "abcd":
        assert cache.put(key, b"x" * 10)
    assert len(cache) == 3
    assert cache.get("a") is None
    assert cache.size == 30
    assert cache.put("big", b"x" * 90)
    assert cache.size <= 100
    assert cache.get("big") is not None
    assert not cache.put("huge", b"x" * 101)


async def test_the_header_cache_evicts_by_bytes(server: RangeServer, publish: Publish) -> None:
    # 900 KB of GDAL_METADATA (under the 1 MiB cap: kept) under 12 URLs, in a 4 MiB cache.
    meta = ascii_payload(900_000)
    publish("hdr/meta-900k.tif", hostile_tiff(1, 12, first=[(42112, 2, len(meta), meta)]))
    cache = LRUCache[TiffStructure](4 * MiB, sizeof=TiffStructure.footprint, max_entries=512)
    async with Context(header_cache=cache) as ctx:
        for n in range(12):
            url = server.url("hdr/meta-900k.tif") + f"?v={n}"
            async with await cloudroi.open(url, context=ctx) as img:
                assert img.structure.gdal_metadata is not None
                assert img.structure.footprint() > 900_000
            assert cache.size <= 4 * MiB
    assert len(cache) == 4  # the four most recent: each one counts its metadata


def test_a_structure_footprint_covers_its_memory_with_every_index_slice_loaded() -> None:
    # 4096, 1024 and 256 tiles per level: index arrays of 16, 4 and 1 KiB, loaded lazily
    # (lazy_index_bytes = 512).
    pixels = np.arange(4096 * 4096, dtype=np.uint32).reshape(4096, 4096).astype(np.uint8)
    data = write_cog(pixels, tile=64, overviews=2)
    gc.collect()
    tracemalloc.start()
    try:
        buf = SparseBuffer(len(data))
        buf.add(0, data[:16])
        result = scan(buf, ParseLimits(), 512)
        while result.missing:  # read what the header needs, as an open does, but no read-ahead
            for rng in result.missing:
                buf.add(rng.start, data[rng.start : rng.end])
            result = scan(buf, ParseLimits(), 512)
        structure = build(buf, result, ParseLimits())
        for ifd in structure.levels:
            for index in (ifd.offsets, ifd.byte_counts):
                assert not index.resident
                rng = index.byte_range
                index.insert(rng, data[rng.start : rng.end])
        del buf, result
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    footprint = structure.footprint()
    assert held <= footprint <= 2 * held + 64 * 1024, (held, footprint)
    assert footprint > 2 * 8 * (4096 + 1024 + 256)  # the three levels' indexes, fully loaded


# --------------------------------------------------------------------------------------------
# the service: 422 in bounded time, /healthz answering meanwhile, memory bounded
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def service(server: RangeServer) -> AsyncIterator[TestClient[Any, Any]]:
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(ServiceConfig(allowed_sources=(server.url("svc-hdr/"),))))
    )
    await client.start_server()
    yield client
    await client.close()


async def info_while_probing_healthz(
    client: TestClient[Any, Any], url: str
) -> tuple[int, dict[str, Any], float, list[float]]:
    """GET /info for ``url`` while /healthz is asked again 10 ms after each answer: (status,
    body, seconds, how long each /healthz took from when it was due to its answer). A stalled
    event loop delays the pause between probes too, so that counts; and one probe is answered
    after /info, so a stall at its very end counts as well."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        due = time.perf_counter()
        while True:
            async with client.get("/healthz") as resp:
                assert resp.status == 200
                await resp.read()
            latencies.append(time.perf_counter() - due)
            if done.is_set():
                return  # the answer after /info's counts: it was due during /info
            slept = time.perf_counter()
            await asyncio.sleep(0.01)
            due = slept + 0.01

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.05)  # the probe's connection is up
    started = time.perf_counter()
    try:
        async with client.get("/info", params={"url": url}) as resp:
            status, doc = resp.status, await resp.json(content_type=None)
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        await prober
    return status, doc, elapsed, latencies


async def test_service_refuses_millions_of_entries_fast_and_healthz_keeps_answering(
    server: RangeServer, publish: Publish, service: TestClient[Any, Any]
) -> None:
    publish("svc-hdr/entries.tif", hostile_tiff(1000, 4000))
    status, doc, elapsed, latencies = await info_while_probing_healthz(
        service, server.url("svc-hdr/entries.tif")
    )
    assert status == 422, doc
    assert doc["code"] == "invalid_tiff"
    assert "entries" in doc["detail"]
    assert elapsed < 2.0, elapsed
    assert latencies
    assert max(latencies) < 0.2, latencies


async def test_service_refuses_a_64_mib_bits_per_sample_fast(
    server: RangeServer, publish: Publish, service: TestClient[Any, Any]
) -> None:
    count = 32 * MiB
    data = hostile_tiff(1, 12, first=[(258, 3, count, (8).to_bytes(2, "little") * count)])
    publish("svc-hdr/bps.tif", data)
    status, doc, elapsed, latencies = await info_while_probing_healthz(
        service, server.url("svc-hdr/bps.tif")
    )
    assert status == 422, doc
    assert "BITS_PER_SAMPLE" in doc["detail"]
    assert elapsed < 1.0, elapsed
    assert latencies
    assert max(latencies) < 0.2, latencies


async def test_service_parses_a_large_header_off_the_loop(
    server: RangeServer, publish: Publish, service: TestClient[Any, Any]
) -> None:
    # Under every cap (1000 IFDs of 99 entries: 99 000 entries, 1.2 MB) but too much work for
    # the event loop: parsed in the executor while /healthz keeps answering.
    data = hostile_tiff(1000, 99)
    assert len(data) > OFF_LOOP_BYTES
    assert OFF_LOOP_IFDS < 1000
    publish("svc-hdr/many.tif", data)
    status, doc, elapsed, latencies = await info_while_probing_healthz(
        service, server.url("svc-hdr/many.tif")
    )
    assert status == 200, doc
    assert doc["width"] == SIDE
    assert elapsed < 3.0, elapsed
    assert latencies
    assert max(latencies) < 0.2, latencies


def vm_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_service_memory_stays_bounded_with_huge_metadata_under_many_urls(
    server: RangeServer, publish: Publish, service: TestClient[Any, Any]
) -> None:
    # The case: 60 MiB of GDAL_METADATA under 20 URLs took the service from 411 to
    # 1611 MiB, and the header cache kept it.
    meta = ascii_payload(60 * MiB)
    data = hostile_tiff(1, 12, first=[(42112, 2, len(meta), meta)])
    publish("svc-hdr/meta.tif", data)
    etag = etag_of(data)
    del meta, data
    cache = default_header_cache()
    url = server.url("svc-hdr/meta.tif")

    async def info(n: int) -> None:
        async with service.get("/info", params={"url": f"{url}?v={n}"}) as resp:
            assert resp.status == 200, await resp.text()

    await info(0)
    gc.collect()
    rss_before = vm_rss()
    for n in range(1, 20):
        await info(n)
        assert cache.size <= cache.capacity
    gc.collect()
    growth = vm_rss() - rss_before
    assert growth < 32 * MiB, growth / MiB
    for n in range(20):
        structure = cache.get((f"{url}?v={n}", etag))
        assert structure is not None
        assert structure.gdal_metadata is None
        assert structure.footprint() < 64 * 1024
    assert fetched_bytes(server, "svc-hdr/meta.tif") <= 20 * 64 * 1024
    assert isinstance(structure, TiffStructure)
