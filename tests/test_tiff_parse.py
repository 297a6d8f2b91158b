"""The sans-I/O parser: sparse buffers, and malformed headers failing fast with bounded memory."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cloudroi
from cloudroi.tiff.parse import NeedBytes, SparseBuffer
from cloudroi.types import ByteRange


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=12), st.data())
@settings(max_examples=300, deadline=None)
def test_sparse_buffer_matches_a_flat_model(
    chunks: list[tuple[int, int]], data: st.DataObject
) -> None:
    size = 300
    truth = bytes((i * 7) % 251 for i in range(size))
    have = bytearray(size)
    known = [False] * size
    buf = SparseBuffer(size)
    for start, length in chunks:
        end = min(size, start + length)
        buf.add(start, truth[start:end])
        for i in range(start, end):
            known[i] = True
    start = data.draw(st.integers(0, size - 1))
    length = data.draw(st.integers(0, size - start))
    if all(known[start : start + length]):
        assert buf.get(start, length) == truth[start : start + length]
    elif length:
        with pytest.raises(NeedBytes) as info:
            buf.get(start, length)
        assert info.value.range == ByteRange(start, start + length)
    del have


def test_sparse_buffer_refuses_ranges_outside_the_object() -> None:
    buf = SparseBuffer(10)
    buf.add(0, b"0123456789")
    with pytest.raises(cloudroi.TiffFormatError):
        buf.get(8, 5)


# -- malformed files ------------------------------------------------------------------------


def small_tiff(**kwargs: object) -> bytearray:
    data = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80)
    out = io.BytesIO()
    opts: dict[str, object] = {"tile": (16, 16), "compression": "zlib"}
    opts.update(kwargs)
    tifffile.imwrite(out, data, **opts)  # type: ignore[arg-type]
    return bytearray(out.getvalue())


def entry_offset(buf: bytes, tag: int, ifd: int | None = None) -> int:
    """File offset of the IFD entry for ``tag`` in the first IFD of a classic little-endian TIFF."""
    if ifd is None:
        (ifd,) = struct.unpack_from("<I", buf, 4)
    (n,) = struct.unpack_from("<H", buf, ifd)
    for i in range(n):
        pos = ifd + 2 + 12 * i
        (t,) = struct.unpack_from("<H", buf, pos)
        if t == tag:
            return pos
    raise KeyError(tag)


def set_entry(
    buf: bytearray,
    tag: int,
    *,
    typ: int | None = None,
    count: int | None = None,
    value: int | None = None,
) -> None:
    pos = entry_offset(buf, tag)
    t, old_typ, old_count, old_value = struct.unpack_from("<HHII", buf, pos)
    struct.pack_into(
        "<HHII",
        buf,
        pos,
        t,
        old_typ if typ is None else typ,
        old_count if count is None else count,
        old_value if value is None else value,
    )


def next_ifd_pos(buf: bytes) -> int:
    (ifd,) = struct.unpack_from("<I", buf, 4)
    (n,) = struct.unpack_from("<H", buf, ifd)
    return ifd + 2 + 12 * n


def loop_to_self(buf: bytearray) -> None:
    (ifd,) = struct.unpack_from("<I", buf, 4)
    struct.pack_into("<I", buf, next_ifd_pos(buf), ifd)


def first_ifd_past_eof(buf: bytearray) -> None:
    struct.pack_into("<I", buf, 4, len(buf) + 100)


def huge_dimensions(buf: bytearray) -> None:
    set_entry(buf, 256, typ=4, value=2**31 - 1)
    set_entry(buf, 257, typ=4, value=2**31 - 1)


def zero_width(buf: bytearray) -> None:
    set_entry(buf, 256, value=0)


def tag_count_overflow(buf: bytearray) -> None:
    set_entry(buf, 324, count=2**31)  # TileOffsets claiming 2^31 entries (8 GiB)


def entry_count_absurd(buf: bytearray) -> None:
    (ifd,) = struct.unpack_from("<I", buf, 4)
    struct.pack_into("<H", buf, ifd, 65535)


def tile_offsets_past_eof(buf: bytearray) -> None:
    # Point the TileOffsets array at itself shifted so the values are garbage-but-large.
    pos = entry_offset(buf, 325)  # TileByteCounts -> absurd size for every tile
    _, _, count, value = struct.unpack_from("<HHII", buf, pos)
    for i in range(count):
        struct.pack_into("<I", buf, value + 4 * i, 2**31)


def truncate_in_ifd(buf: bytearray) -> None:
    (ifd,) = struct.unpack_from("<I", buf, 4)
    del buf[ifd + 20 :]


def not_tiff(buf: bytearray) -> None:
    buf[0:2] = b"XX"


def bad_version(buf: bytearray) -> None:
    buf[2] = 41


MALFORMED: dict[str, Callable[[bytearray], None]] = {
    "loop": loop_to_self,
    "ifd_past_eof": first_ifd_past_eof,
    "huge_dimensions": huge_dimensions,
    "zero_width": zero_width,
    "tag_count_overflow": tag_count_overflow,
    "entry_count_absurd": entry_count_absurd,
    "block_bytes_absurd": tile_offsets_past_eof,
    "truncated_ifd": truncate_in_ifd,
    "not_tiff": not_tiff,
    "bad_version": bad_version,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_header_raises_fast_with_bounded_memory(case: str) -> None:
    buf = small_tiff()
    MALFORMED[case](buf)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(cloudroi.TiffFormatError):
            async with cloudroi.open(bytes(buf)) as img:
                await img.read((0, 0, 64, 64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 16 << 20, f"peak traced memory {peak} bytes"


async def test_truncated_files_at_every_cut() -> None:
    full = bytes(small_tiff())
    # Cutting anywhere must give a TiffFormatError (or succeed when every byte needed is there),
    # never another exception.
    for cut in range(0, len(full), max(1, len(full) // 97)):
        try:
            async with cloudroi.open(full[:cut]) as img:
                await img.read((0, 0, 80, 64))
        except cloudroi.TiffFormatError:
            pass


async def test_second_page_is_not_an_overview() -> None:
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tw:
        tw.write(np.zeros((32, 32), np.uint8), tile=(16, 16))
        tw.write(np.ones((16, 16), np.uint8), tile=(16, 16))  # a page, not reduced
    async with cloudroi.open(out.getvalue()) as img:
        assert img.levels == [(32, 32)]


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_byte_flips_in_the_header_only_raise_cloudroi_errors(flips: list[tuple[int, int]]) -> None:
    import asyncio

    buf = small_tiff()
    for pos, value in flips:
        if pos < len(buf):
            buf[pos] = value

    async def go() -> None:
        try:
            async with cloudroi.open(bytes(buf)) as img:
                await img.read((0, 0, img.width, img.height))
        except cloudroi.CloudROIError:
            pass

    asyncio.run(go())
