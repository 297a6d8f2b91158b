"""Valid TIFFs using features cloudroi does not read: each raises UnsupportedTiffError naming the
feature, at open and before any block is fetched; an unreadable overview is skipped instead."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile

import cloudroi
from cloudroi.testing import RangeServer
from tests.corpus import quiet, tifffile_pages

RNG = np.random.default_rng(42)
RGB = RNG.integers(0, 255, (64, 80, 3), dtype=np.uint8)
GRAY16 = RNG.integers(0, 4000, (64, 80), dtype=np.int16)


def _tifffile(arr: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, metadata=None, **kwargs)
    return buf.getvalue()


def _patch(data: bytes, tag: int, values: tuple[int, ...], index: int = 0) -> bytes:
    """``data`` with SHORT values of ``tag`` in the first IFD overwritten from item ``index``
    (the header stays valid; only what the tag says changes)."""
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        entry = tf.pages[0].tags[tag]
        assert entry.dtype == 3, "only SHORT tags are patched"
        fmt = tf.byteorder + "H" * len(values)
        offset = entry.valueoffset + 2 * index
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _gdal(tmp: Path, name: str, arr: Any, dtype: str, **options: Any) -> bytes:
    path = tmp / f"{name}.tif"
    count, height, width = arr.shape
    with (
        quiet(),
        rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=dtype,
            **options,
        ) as ds,
    ):
        ds.write(arr)
    return path.read_bytes()


def _bits(h: int = 64, w: int = 80) -> Any:
    return RNG.integers(0, 2, (1, h, w), dtype=np.uint8)


def _complex(dtype: str) -> Any:
    re = RNG.integers(-100, 100, (1, 32, 40))
    return (re + 1j * re[:, ::-1]).astype(dtype)


#: name -> (builder(tmp dir) -> bytes, words the message must contain)
CASES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "jpeg2000": (lambda t: _tifffile(RGB, compression="jpeg2000", tile=(32, 32)), "JPEG 2000"),
    "jpegxl": (lambda t: _tifffile(RGB, compression="jpegxl", tile=(32, 32)), "JPEG XL"),
    "jpegxr": (lambda t: _tifffile(RGB, compression="jpegxr"), "JPEG XR"),
    "png": (lambda t: _tifffile(RGB, compression="png", tile=(32, 32)), "PNG"),
    "ccitt-rle": (
        lambda t: _gdal(t, "rle", _bits(), "uint8", nbits=1, compress="CCITTRLE"),
        "CCITT RLE",
    ),
    "ccitt-fax3": (
        lambda t: _gdal(t, "fax3", _bits(), "uint8", nbits=1, compress="CCITTFAX3"),
        "CCITT Group 3",
    ),
    "ccitt-fax4": (
        lambda t: _gdal(t, "fax4", _bits(), "uint8", nbits=1, compress="CCITTFAX4"),
        "CCITT Group 4",
    ),
    "old-style-jpeg": (
        lambda t: _patch(_tifffile(RGB, photometric="rgb"), 259, (6,)),
        "old-style JPEG",
    ),
    "complex64-tifffile": (
        lambda t: _tifffile(_complex("complex64")[0]),
        "complex floating-point samples (SampleFormat 6)",
    ),
    "cint16-gdal": (
        lambda t: _gdal(t, "cint16", _complex("complex64"), "complex_int16"),
        "complex integer samples (SampleFormat 5)",
    ),
    "cfloat64-gdal": (
        lambda t: _gdal(t, "cf64", _complex("complex128"), "complex"),
        "complex floating-point samples (SampleFormat 6)",
    ),
    "void-samples": (
        lambda t: _patch(_tifffile(GRAY16), 339, (4,)),
        "undefined samples (SampleFormat 4)",
    ),
    "ycbcr-uncompressed": (
        lambda t: _tifffile(RGB, photometric="ycbcr"),
        "YCbCr samples without JPEG",
    ),
    "volumetric": (
        lambda t: _tifffile(
            RNG.integers(0, 255, (32, 48, 64), dtype=np.uint8), volumetric=True, tile=(16, 16, 16)
        ),
        "ImageDepth",
    ),
    "mixed-bits": (
        lambda t: _patch(_tifffile(RGB, photometric="rgb"), 258, (16,), index=1),
        "mixed BitsPerSample",
    ),
    "float-predictor-on-ints": (
        lambda t: _patch(_tifffile(GRAY16, compression="zlib", predictor=2), 317, (3,)),
        "floating-point predictor on integer samples",
    ),
    "unknown-predictor": (
        lambda t: _patch(_tifffile(GRAY16, compression="zlib", predictor=2), 317, (34894,)),
        "predictor 34894",
    ),
    "unknown-compression": (
        lambda t: _patch(_tifffile(GRAY16), 259, (65000,)),
        "compression 65000",
    ),
}

#: The exact feature each case names (message: "unsupported TIFF feature: <feature>").
EXACT = {
    "jpeg2000": "JPEG 2000 compression",
    "ccitt-fax4": "CCITT Group 4 compression",
    "old-style-jpeg": "old-style JPEG compression",
    "unknown-compression": "compression 65000",
}


@pytest.mark.parametrize("case", list(CASES))
async def test_unsupported_feature_is_named(case: str, tmp_path: Path) -> None:
    build, words = CASES[case]
    data = build(tmp_path)
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        assert len(tf.pages) >= 1  # a well-formed TIFF as far as tifffile's parser goes
    with pytest.raises(cloudroi.UnsupportedTiffError) as info:
        await cloudroi.open(data)
    assert words in str(info.value)
    assert words in info.value.feature
    if case in EXACT:
        assert info.value.feature == EXACT[case]
    assert isinstance(info.value, cloudroi.TiffFormatError)


@pytest.mark.parametrize("case", ["jpeg2000", "ccitt-fax4", "complex64-tifffile"])
async def test_refused_at_open_without_block_requests(
    case: str, tmp_path: Path, server: RangeServer
) -> None:
    """The refusal costs the header only: no block of the image is ever requested."""
    data = CASES[case][0](tmp_path)
    path = f"/unsupported/{case}.tif"
    server.add(path, data)
    with pytest.raises(cloudroi.UnsupportedTiffError):
        await cloudroi.open(server.url(path))
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        first_block = min(int(o) for o in tf.pages[0].dataoffsets if o)
    starts = [int(e.range.split("=")[1].split("-")[0]) for e in server.log if e.range]
    assert starts, "the header was read with a range request"
    assert all(s < first_block for s in starts), (starts, first_block)


async def test_unreadable_overview_is_skipped() -> None:
    """A reduced-resolution image in an unsupported codec is left out of ``levels``; the image
    and its readable overviews still read exactly."""
    base = RNG.integers(0, 255, (128, 160), dtype=np.uint8)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(base, tile=(32, 32), compression="zlib", metadata=None)
        tw.write(base[::2, ::2], tile=(32, 32), compression="jpeg2000", subfiletype=1)
        tw.write(base[::4, ::4], tile=(32, 32), compression="zstd", subfiletype=1)
    data = buf.getvalue()
    pages = tifffile_pages(data)
    async with cloudroi.open(data) as img:
        assert img.levels == [(160, 128), (40, 32)]
        assert np.array_equal((await img.read())[0], base)
        assert np.array_equal(await img.read(level=1), pages[2])


async def test_supported_neighbours_still_read() -> None:
    """The patched files' unpatched originals read fine: the refusals above come from the one
    feature changed, not from the way the files were made."""
    for data, want in [
        (_tifffile(RGB, photometric="rgb"), np.moveaxis(RGB, -1, 0)),
        (_tifffile(GRAY16, compression="zlib", predictor=2), GRAY16[np.newaxis]),
        (_tifffile(GRAY16), GRAY16[np.newaxis]),
    ]:
        async with cloudroi.open(data) as img:
            assert np.array_equal(await img.read(), want)
