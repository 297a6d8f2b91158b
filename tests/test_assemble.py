"""Assembling blocks into a window, as properties: every pixel lands once, in the right place."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudroi.read.assemble import fill_block, paste
from cloudroi.read.masks import valid_mask
from cloudroi.read.plan import blocks_for_window
from cloudroi.tiff.index import IndexArray
from cloudroi.tiff.structure import ImageIFD
from cloudroi.types import Window


def make_ifd(
    width: int, height: int, bw: int, bh: int, samples: int, planar: int, tiled: bool
) -> ImageIFD:
    return ImageIFD(
        offset=8,
        subfile_type=0,
        width=width,
        height=height,
        tiled=tiled,
        block_width=bw,
        block_height=bh,
        samples=samples,
        bits=16,
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


@st.composite
def layouts(draw: st.DrawFn) -> tuple[ImageIFD, Window, list[int]]:
    width, height = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    tiled = draw(st.booleans())
    samples = draw(st.integers(1, 4))
    planar = draw(st.sampled_from([1, 2])) if samples > 1 else 1
    bw = draw(st.sampled_from([8, 16, 32])) if tiled else width
    bh = draw(st.sampled_from([8, 16, 32])) if tiled else draw(st.integers(1, height))
    ifd = make_ifd(width, height, bw, bh, samples, planar, tiled)
    col = draw(st.integers(-20, width + 5))
    row = draw(st.integers(-20, height + 5))
    win = Window(col, row, draw(st.integers(1, 60)), draw(st.integers(1, 60)))
    bands = draw(st.lists(st.integers(0, samples - 1), min_size=1, max_size=4))
    return ifd, win, bands


@given(layouts())
@settings(max_examples=300, deadline=None)
def test_paste_reproduces_the_window(layout: tuple[ImageIFD, Window, list[int]]) -> None:
    ifd, win, samples = layout
    rng = np.random.default_rng(0)
    image = rng.integers(1, 60000, (ifd.samples, ifd.height, ifd.width), dtype=np.uint16)
    out = np.zeros((len(samples), win.height, win.width), np.uint16)
    inner = win.clip(ifd.width, ifd.height)
    if inner is not None:
        planes = sorted(set(samples)) if ifd.planar == 2 else [0]
        for ref in blocks_for_window(ifd, inner, planes):
            # A block as a decoder returns it: full block size, padded with garbage at the edge.
            rows = ifd.block_height if ifd.tiled else ifd.block_rows(ref.row)
            block = np.full((rows, ifd.block_width, ifd.block_samples), 7777, np.uint16)
            r0, c0 = ref.row * ifd.block_height, ref.col * ifd.block_width
            part = image[:, r0 : r0 + rows, c0 : c0 + ifd.block_width]
            part = part[ref.plane : ref.plane + 1] if ifd.planar == 2 else part
            block[: part.shape[1], : part.shape[2], :] = np.moveaxis(part, 0, -1)
            paste(out, block, ref, ifd, win, samples)
    expected = np.zeros_like(out)
    if inner is not None:
        rs = slice(inner.row_off - win.row_off, inner.row_end - win.row_off)
        cs = slice(inner.col_off - win.col_off, inner.col_end - win.col_off)
        expected[:, rs, cs] = image[samples][
            :, inner.row_off : inner.row_end, inner.col_off : inner.col_end
        ]
    np.testing.assert_array_equal(out, expected)


@given(layouts())
@settings(max_examples=100, deadline=None)
def test_fill_block_touches_only_its_block(layout: tuple[ImageIFD, Window, list[int]]) -> None:
    ifd, win, samples = layout
    inner = win.clip(ifd.width, ifd.height)
    if inner is None:
        return
    planes = sorted(set(samples)) if ifd.planar == 2 else [0]
    refs = blocks_for_window(ifd, inner, planes)
    out = np.zeros((len(samples), win.height, win.width), np.int32)
    for ref in refs:
        fill_block(out, 1, ref, ifd, win, samples)
    # Filling every block once covers exactly the part of the window inside the image, once.
    expected = np.zeros_like(out)
    rs = slice(inner.row_off - win.row_off, inner.row_end - win.row_off)
    cs = slice(inner.col_off - win.col_off, inner.col_end - win.col_off)
    expected[:, rs, cs] = 1
    np.testing.assert_array_equal(out, expected)


def test_valid_mask_any_band_rule() -> None:
    data = np.array([[[0, 5], [np.nan, 0]], [[0, 0], [1, np.nan]]], np.float32)
    assert valid_mask(data, 0.0).tolist() == [[0, 255], [255, 255]]
    nan_data = np.array([[[np.nan, 1.0]]], np.float32)
    assert valid_mask(nan_data, float("nan")).tolist() == [[0, 255]]
