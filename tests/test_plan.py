"""The pure planner: block selection, coalescing, GDAL leader ranges, overview choice, sampling."""

from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudroi.errors import TiffFormatError, WindowError
from cloudroi.read.plan import (
    block_ranges,
    blocks_for_window,
    check_window,
    choose_overview,
    coalesce,
    leader_ends,
    leader_ranges,
    nearest_indices,
)
from cloudroi.tiff.index import IndexArray
from cloudroi.tiff.leader import strip_leader
from cloudroi.tiff.structure import ImageIFD
from cloudroi.types import ByteRange, Window


def make_ifd(
    width: int, height: int, bw: int, bh: int, samples: int = 1, planar: int = 1
) -> ImageIFD:
    return ImageIFD(
        offset=8,
        subfile_type=0,
        width=width,
        height=height,
        tiled=True,
        block_width=bw,
        block_height=bh,
        samples=samples,
        bits=8,
        sample_format=1,
        planar=planar,
        compression=1,
        predictor=1,
        photometric=1,
        extra_samples=(),
        fill_order=1,
        byteorder="<",
        offsets=IndexArray.from_values(()),
        byte_counts=IndexArray.from_values(()),
    )


ranges_st = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(1, 500)).map(
        lambda t: ByteRange(t[0], t[0] + t[1])
    ),
    min_size=1,
    max_size=40,
)


@given(ranges_st, st.integers(0, 2000), st.integers(1, 5000))
@settings(max_examples=300, deadline=None)
def test_coalesce_covers_every_range_once(ranges: list[ByteRange], gap: int, max_size: int) -> None:
    groups = coalesce(ranges, gap, max_size)
    members = sorted(m for g in groups for m in g.members)
    assert members == list(range(len(ranges)))
    for g in groups:
        for m in g.members:
            assert g.range.contains(ranges[m])
        # A group passes the size cap only through overlapping members (which must merge).
        if len(g.members) > 1 and g.range.length > max_size:
            spans = sorted((ranges[m].start, ranges[m].end) for m in g.members)
            assert any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    starts = [g.range.start for g in groups]
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(groups):
        assert b.range.start >= a.range.end  # groups never overlap


@given(ranges_st, st.integers(0, 2000))
@settings(max_examples=200, deadline=None)
def test_coalesce_gap_rule(ranges: list[ByteRange], gap: int) -> None:
    groups = coalesce(ranges, gap, 10**9)
    for a, b in itertools.pairwise(groups):
        assert b.range.start - a.range.end > gap  # anything closer would have merged


def test_coalesce_examples() -> None:
    r = [ByteRange(0, 10), ByteRange(10, 20), ByteRange(25, 30), ByteRange(100, 110)]
    assert [g.range for g in coalesce(r, 0, 1000)] == [
        ByteRange(0, 20),
        ByteRange(25, 30),
        ByteRange(100, 110),
    ]
    assert [g.range for g in coalesce(r, 5, 1000)] == [ByteRange(0, 30), ByteRange(100, 110)]
    assert [g.range for g in coalesce(r, 5, 25)] == [
        ByteRange(0, 20),
        ByteRange(25, 30),
        ByteRange(100, 110),
    ]


@given(
    st.integers(1, 700),
    st.integers(1, 700),
    st.sampled_from([16, 64, 256]),
    st.data(),
)
@settings(max_examples=200, deadline=None)
def test_blocks_for_window_is_exact(
    width: int, height: int, block: int, data: st.DataObject
) -> None:
    ifd = make_ifd(width, height, block, block)
    col = data.draw(st.integers(0, width - 1))
    row = data.draw(st.integers(0, height - 1))
    w = data.draw(st.integers(1, width - col))
    h = data.draw(st.integers(1, height - row))
    refs = blocks_for_window(ifd, Window(col, row, w, h), [0])
    got = {(r.row, r.col) for r in refs}
    want = {
        (by, bx)
        for by in range(ifd.blocks_down)
        for bx in range(ifd.blocks_across)
        if by * block < row + h
        and (by + 1) * block > row
        and bx * block < col + w
        and (bx + 1) * block > col
    }
    assert got == want
    assert all(r.index == r.row * ifd.blocks_across + r.col for r in refs)


def test_planar_block_indices() -> None:
    ifd = make_ifd(100, 100, 50, 50, samples=3, planar=2)
    refs = blocks_for_window(ifd, Window(0, 0, 10, 10), [0, 2])
    assert [(r.plane, r.index) for r in refs] == [(0, 0), (2, 8)]


def test_block_ranges_sparse_and_bounds() -> None:
    offsets = np.array([100, 0, 300], dtype=np.uint64)
    counts = np.array([50, 10, 0], dtype=np.uint64)
    assert block_ranges(offsets, counts, 1000, 1000) == [ByteRange(100, 150), None, None]
    with pytest.raises(TiffFormatError, match="past the end"):
        block_ranges(np.array([990], np.uint64), np.array([20], np.uint64), 1000, 1000)
    with pytest.raises(TiffFormatError, match="cap"):
        block_ranges(np.array([10], np.uint64), np.array([500], np.uint64), 1000, 100)


def _leadered(blocks: list[bytes], start: int) -> tuple[bytes, list[int]]:
    out = bytearray(b"\0" * start)
    offsets = []
    for b in blocks:
        out += struct.pack("<I", len(b))
        offsets.append(len(out))
        out += b + b[-4:]
    return bytes(out), offsets


def test_leader_ranges_and_strip() -> None:
    blocks = [b"abcdefgh", b"0123456789", b"xyzw"]
    data, offsets = _leadered(blocks, 16)
    offs = np.array(offsets, np.uint64)
    ends = leader_ends(offs, offs, len(data))
    assert ends.tolist() == [offsets[1] - 4, offsets[2] - 4, len(data)]
    ranges = leader_ranges(offs, ends, len(data), 1000)
    for rng, block in zip(ranges, blocks, strict=True):
        assert isinstance(rng, ByteRange)
        assert strip_leader(data[rng.start : rng.end]) == block
    # A corrupted trailer is refused, so the caller falls back to TileByteCounts.
    rng = ranges[0]
    assert isinstance(rng, ByteRange)
    bad = bytearray(data[rng.start : rng.end])
    bad[-1] ^= 0xFF
    assert strip_leader(bytes(bad)) is None
    assert leader_ranges(np.array([0], np.uint64), np.array([5], np.int64), 100, 10) == [None]
    # Only the first and last blocks known: the first one's range would swallow the middle block
    # and exceed a tight cap, so no leader range is offered for it.
    sparse_known = np.array([offsets[0], offsets[2]], np.uint64)
    far = leader_ranges(offs[:1], leader_ends(offs[:1], sparse_known, len(data)), len(data), 10)
    assert far == [False]


def test_choose_overview_matches_gdal_rule() -> None:
    levels = [(1000, 1000), (500, 500), (250, 250), (125, 125)]
    win = Window(0, 0, 1000, 1000)
    assert choose_overview(levels, win, (1000, 1000)) == 0
    assert choose_overview(levels, win, (500, 500)) == 1
    # Factor 2.5 wanted: overview 2 (factor 4) is more than 1.2x coarser, so overview 1.
    assert choose_overview(levels, win, (400, 400)) == 1
    # Factor 3.5: overview 2 (factor 4 < 3.5 * 1.2) qualifies.
    assert choose_overview(levels, win, (286, 286)) == 2
    # The least-reduced axis decides.
    assert choose_overview(levels, win, (125, 1000)) == 0
    assert choose_overview(levels, win, (10, 10)) == 3


def test_nearest_indices() -> None:
    assert nearest_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest_indices(3, 3).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "bad", [(0, 0, 0, 5), (0, 0, 5, -1), (0, 0, 5), (0.5, 0, 5, 5), ("a", 0, 1, 1)]
)
def test_check_window_rejects(bad: tuple[object, ...]) -> None:
    with pytest.raises(WindowError):
        check_window(bad)  # type: ignore[arg-type]
