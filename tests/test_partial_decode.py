"""Decoding only the first rows of a block (a window ending inside it): exact against tifffile's
whole-block decode for every codec that stops early, and correct through the decoded-block cache
when a later read needs more rows of a block decoded in part."""

from __future__ import annotations

import io
from itertools import product
from typing import Any

import numpy as np
import pytest
import tifffile

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.errors import TiffFormatError
from cloudroi.read.decode import BlockDecoder

RNG = np.random.default_rng(11)


def _image(dtype: str, bands: int) -> np.ndarray:
    """Smooth rows with noise: LZW and Deflate both emit long matches and literals, and Deflate
    stored blocks where the noise wins."""
    shape = (200, 300, bands) if bands > 1 else (200, 300)
    walk = np.cumsum(RNG.normal(0, 3, shape), axis=1)
    if np.dtype(dtype).kind == "f":
        return walk.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(walk * 40 + RNG.integers(0, 64, shape), info.min, info.max).astype(dtype)


CASES = [
    (comp, pred, dtype, bands, tiled, bo)
    for comp, pred, dtype, bands, tiled, bo in product(
        ("lzw", "zlib"),
        (1, 2, 3),
        ("uint8", "uint16", "int32", "float32", "float64"),
        (1, 3),
        (True, False),
        "<>",
    )
    if not (pred == 3 and dtype[0] != "f") and not (pred == 2 and dtype[0] == "f")
]


def _blocks(data: bytes) -> tuple[Any, list[tuple[int, bytes, np.ndarray]]]:
    """tifffile's page and, per block, (block row, compressed bytes, tifffile's decode)."""
    tif = tifffile.TiffFile(io.BytesIO(data))
    page = tif.pages[0]
    across = -(-page.imagewidth // page.tilewidth) if page.is_tiled else 1
    out = []
    for i, (off, cnt) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
        raw = data[off : off + cnt]
        decoded = page.decode(raw, i)[0]  # (1, rows, cols, samples)
        out.append((i // across, raw, decoded[0]))
    return page, out


@pytest.mark.parametrize(
    ("comp", "pred", "dtype", "bands", "tiled", "bo"),
    CASES,
    ids=[
        f"{c}-p{p}-{d}-{b}b-{'tile' if t else 'strip'}-{'LE' if o == '<' else 'BE'}"
        for c, p, d, b, t, o in CASES
    ],
)
async def test_prefix_rows_equal_whole_block(
    comp: str, pred: int, dtype: str, bands: int, tiled: bool, bo: str
) -> None:
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        _image(dtype, bands),
        byteorder=bo,
        compression=comp,
        predictor=pred,
        photometric="rgb" if bands == 3 else "minisblack",
        **({"tile": (64, 128)} if tiled else {"rowsperstrip": 48}),
    )
    data = buf.getvalue()
    page, blocks = _blocks(data)
    async with cloudroi.open(data) as img:
        decoder = BlockDecoder(img.structure.levels[0])
    height = page.tilelength if tiled else 48
    for block_row, raw, whole in blocks[:4]:
        full = decoder.decode(raw, block_row)
        np.testing.assert_array_equal(full, whole[: len(full)])
        for rows in (1, 2, 7, height // 3, height // 3 + 1, height - 1, height):
            got = decoder.decode(raw, block_row, rows)
            assert len(got) >= min(rows, len(full))
            np.testing.assert_array_equal(got, full[: len(got)], err_msg=f"{rows} rows")
            if comp == "lzw" or rows * 3 <= height:
                # the codec stopped early: exactly the rows asked for
                assert len(got) == min(rows, len(full)), (rows, len(got))


async def test_prefix_of_a_damaged_deflate_block_is_a_format_error() -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, _image("uint16", 1), compression="zlib", tile=(64, 128))
    data = buf.getvalue()
    _, blocks = _blocks(data)
    block_row, raw, _ = blocks[0]
    async with cloudroi.open(data) as img:
        decoder = BlockDecoder(img.structure.levels[0])
    with pytest.raises(TiffFormatError):
        decoder.decode(b"\x78\x9c" + bytes(64), block_row, 2)  # zlib header, garbage stream
    with pytest.raises(TiffFormatError):
        decoder.decode(raw[:40], block_row, 20)  # the stream ends before the rows asked


@pytest.mark.parametrize(("compression", "predictor"), [("lzw", 2), ("deflate", 2), ("deflate", 3)])
async def test_partly_decoded_blocks_in_the_cache(compression: str, predictor: int) -> None:
    dtype = "float32" if predictor == 3 else "uint16"
    pixels = _image(dtype, 1)
    cog = write_cog(pixels, tile=64, compression=compression, predictor=predictor, overviews=0)
    ctx = cloudroi.Context()
    try:
        async with cloudroi.open(cog, context=ctx) as img:
            # Ends 5 rows into block row 1: that row's blocks are decoded only to row 5.
            top = await img.read((10, 20, 100, 49))
            np.testing.assert_array_equal(top[0], pixels[20:69, 10:110])
            decoded = img.stats.tiles_decoded
            # Needs all of block row 1: the cached prefixes are not enough, decoded again.
            deeper = await img.read((10, 64, 100, 60))
            np.testing.assert_array_equal(deeper[0], pixels[64:124, 10:110])
            assert img.stats.tiles_decoded > decoded
            # Within the rows now cached: served decoded, nothing decoded again.
            hits, decoded = img.stats.decoded_cache_hits, img.stats.tiles_decoded
            again = await img.read((0, 64, 120, 30))
            np.testing.assert_array_equal(again[0], pixels[64:94, 0:120])
            assert img.stats.tiles_decoded == decoded
            assert img.stats.decoded_cache_hits > hits
            tiles = [t async for t in img.iter_tiles((0, 0, 128, 70))]
            for t in tiles:
                w = t.window
                np.testing.assert_array_equal(
                    t.data[0], pixels[w.row_off : w.row_end, w.col_off : w.col_end]
                )
    finally:
        await ctx.close()
