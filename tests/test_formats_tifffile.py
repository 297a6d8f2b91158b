"""The tifffile-written format matrix: every layout, codec, predictor and dtype, read window by
window and compared bit for bit with the pixels written, tifffile's decode and GDAL's (rasterio)."""

from __future__ import annotations

import io
import struct
from itertools import product
from typing import Any

import numpy as np
import pytest
import tifffile

import cloudroi
from cloudroi.testing import RangeServer
from tests.corpus import (
    ROWS_PER_STRIP,
    Array,
    Corpus,
    TiffSpec,
    assert_same,
    rio_memory_read,
    tifffile_levels,
    tifffile_pages,
    window_slice,
    windows,
)

INT_DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]
FLOAT_DTYPES = ["float16", "float32", "float64"]
LOSSLESS = [None, "zlib", "deflate", "lzw", "packbits", "lzma", "zstd"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("tifffile-corpus"))


def _ids(specs: list[TiffSpec]) -> list[str]:
    return [s.id for s in specs]


def _rio_whole(data: bytes, spec: TiffSpec) -> Array:
    return rio_memory_read(data, (0, 0, spec.width, spec.height))


async def check_reads(
    img: cloudroi.Image,
    spec: TiffSpec,
    references: dict[str, Array],
    *,
    atol: dict[str, float] | None = None,
) -> None:
    """Every named window (all bands, then a reordered band subset) against each reference."""
    atol = atol or {}
    assert (img.width, img.height, img.count) == (spec.width, spec.height, spec.bands)
    assert img.block_shape == spec.block
    for name, win in windows(spec.width, spec.height, spec.block).items():
        got = await img.read(win)
        for ref_name, ref in references.items():
            assert_same(
                got, window_slice(ref, win), f"{ref_name} {name} {win}", atol=atol.get(ref_name, 0)
            )
    if spec.bands > 1:
        bands = [spec.bands, 1]
        win = windows(spec.width, spec.height, spec.block)["edge"]
        got = await img.read(win, bands=bands)
        for ref_name, ref in references.items():
            want = window_slice(ref, win)[[b - 1 for b in bands]]
            assert_same(got, want, f"{ref_name} bands {bands}", atol=atol.get(ref_name, 0))


async def check_lossless(
    data: bytes, spec: TiffSpec, *, with_gdal: bool = True, with_written: bool = True
) -> None:
    written = spec.array()
    (decoded, *_) = tifffile_pages(data)
    refs = {"tifffile": decoded}
    if with_written:
        assert_same(decoded, written, "tifffile round trip")  # the file holds what we meant
        refs["written"] = written
    if with_gdal:
        refs["rasterio"] = _rio_whole(data, spec)
    async with cloudroi.open(data) as img:
        assert img.dtype == written.dtype
        await check_reads(img, spec, refs)


# --------------------------------------------------------------------------------------------
# layouts: byte order x classic/BigTIFF x tiles/strips x chunky/planar x band count
# --------------------------------------------------------------------------------------------

LAYOUT_SPECS = [
    TiffSpec(
        dtype="uint16",
        bands=bands,
        planar=planar,
        tiled=tiled,
        byteorder=bo,
        bigtiff=big,
        compression="zlib",
        predictor=2,
    )
    for bo, big, tiled, (bands, planar) in product(
        "<>",
        (False, True),
        (True, False),
        [(1, False), (3, False), (3, True), (7, False), (7, True)],
    )
]


@pytest.mark.parametrize("spec", LAYOUT_SPECS, ids=_ids(LAYOUT_SPECS))
async def test_layout(spec: TiffSpec, corpus: Corpus) -> None:
    data = corpus.tifffile(spec)
    await check_lossless(data, spec)
    async with cloudroi.open(data) as img:
        assert img.info()["bigtiff"] is spec.bigtiff
        assert img.interleave == ("band" if spec.planar else "pixel")


# --------------------------------------------------------------------------------------------
# lossless codecs x predictors x dtypes x byte order
# --------------------------------------------------------------------------------------------

CODEC_SPECS = [
    TiffSpec(dtype=dt, bands=2, compression=comp, predictor=pred, byteorder=bo)
    for dt, comp, bo in product(INT_DTYPES + FLOAT_DTYPES, LOSSLESS, "<>")
    for pred in ((1, 3 if dt.startswith("float") else 2) if comp else (1,))
]


@pytest.mark.parametrize("spec", CODEC_SPECS, ids=_ids(CODEC_SPECS))
async def test_codec(spec: TiffSpec, corpus: Corpus) -> None:
    # libtiff (GDAL) applies no predictor to PackBits blocks: see test_packbits_predictor.
    gdal_agrees = not (spec.compression == "packbits" and spec.predictor != 1)
    await check_lossless(corpus.tifffile(spec), spec, with_gdal=gdal_agrees)


async def test_packbits_predictor(corpus: Corpus) -> None:
    """tifffile writes and reads a Predictor with PackBits; libtiff ignores it for PackBits. No
    GDAL-written file has both, so cloudroi follows the writer (tifffile), and GDAL differs."""
    spec = TiffSpec(dtype="uint16", bands=2, compression="packbits", predictor=2)
    data = corpus.tifffile(spec)
    async with cloudroi.open(data) as img:
        got = await img.read()
    assert_same(got, spec.array(), "cloudroi vs written")
    assert not np.array_equal(got, _rio_whole(data, spec)), "GDAL now applies the predictor"


#: Predictors per plane (planar) and per pixel (chunky), in tiles and strips, big-endian.
PREDICTOR_SPECS = [
    TiffSpec(
        dtype=dt,
        bands=3,
        planar=planar,
        tiled=tiled,
        byteorder=">",
        compression="zstd",
        predictor=3 if dt.startswith("float") else 2,
    )
    for dt, planar, tiled in product(
        ["uint8", "int16", "uint32", "int64", "float16", "float32", "float64"],
        (False, True),
        (True, False),
    )
]


@pytest.mark.parametrize("spec", PREDICTOR_SPECS, ids=_ids(PREDICTOR_SPECS))
async def test_predictor_layouts(spec: TiffSpec, corpus: Corpus) -> None:
    await check_lossless(corpus.tifffile(spec), spec)


# --------------------------------------------------------------------------------------------
# image codecs: JPEG (lossy), WebP (lossless), LERC (lossless by default)
# --------------------------------------------------------------------------------------------

LERC_SPECS = [
    TiffSpec(dtype=dt, bands=1, compression="lerc", kind="finite")
    for dt in ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
] + [
    TiffSpec(dtype="float32", bands=3, compression="lerc", kind="finite"),
    TiffSpec(dtype="float32", bands=3, planar=True, compression="lerc", kind="finite"),
    TiffSpec(dtype="uint16", bands=2, tiled=False, compression="lerc", kind="finite"),
    TiffSpec(
        dtype="float32",
        bands=2,
        compression="lerc",
        kind="finite",
        compressionargs=(("compression", "deflate"),),
    ),
    TiffSpec(
        dtype="int16",
        bands=1,
        compression="lerc",
        kind="finite",
        compressionargs=(("compression", "zstd"),),
    ),
]


@pytest.mark.parametrize("spec", LERC_SPECS, ids=_ids(LERC_SPECS))
async def test_lerc(spec: TiffSpec, corpus: Corpus) -> None:
    await check_lossless(corpus.tifffile(spec), spec)


WEBP_SPECS = [
    TiffSpec(
        dtype="uint8",
        bands=3,
        compression="webp",
        kind="mixed",
        compressionargs=(("lossless", True),),
    ),
    TiffSpec(
        dtype="uint8",
        bands=4,
        compression="webp",
        kind="mixed",
        extrasamples=("unassalpha",),
        compressionargs=(("lossless", True),),
    ),
    TiffSpec(
        dtype="uint8",
        bands=3,
        tiled=False,
        compression="webp",
        kind="mixed",
        compressionargs=(("lossless", True),),
    ),
]


@pytest.mark.parametrize("spec", WEBP_SPECS, ids=_ids(WEBP_SPECS))
async def test_webp_lossless(spec: TiffSpec, corpus: Corpus) -> None:
    await check_lossless(corpus.tifffile(spec), spec)


JPEG_SPECS = [
    TiffSpec(dtype="uint8", bands=1, compression="jpeg", kind="smooth"),
    TiffSpec(dtype="uint8", bands=3, compression="jpeg", kind="smooth"),  # YCbCr 2x2
    TiffSpec(
        dtype="uint8", bands=3, tiled=False, rowsperstrip=16, compression="jpeg", kind="smooth"
    ),
    TiffSpec(dtype="uint8", bands=3, planar=True, compression="jpeg", kind="smooth"),
]

#: JPEG is lossy. cloudroi decodes with tifffile's decoder and must match tifffile exactly.
#: Grayscale and planar JPEG match GDAL exactly too; YCbCr (2x2 chroma subsampling) differs from
#: GDAL by up to 9 levels (mean 0.45) on these images, on the 16-pixel MCU edges: the two
#: libjpeg builds upsample chroma differently, and imagecodecs offers no switch for it.
JPEG_TOLERANCE = {"written": 24.0, "rasterio": 10.0}


@pytest.mark.parametrize("spec", JPEG_SPECS, ids=_ids(JPEG_SPECS))
async def test_jpeg(spec: TiffSpec, corpus: Corpus) -> None:
    data = corpus.tifffile(spec)
    refs = {
        "written": spec.array(),
        "tifffile": tifffile_pages(data)[0],
        "rasterio": _rio_whole(data, spec),
    }
    async with cloudroi.open(data) as img:
        assert img.compression == "jpeg"
        await check_reads(img, spec, refs, atol=JPEG_TOLERANCE)
        whole = (await img.read()).astype(np.float64)
    mean_diff = np.abs(whole - refs["rasterio"]).mean()
    assert mean_diff < (1.0 if spec.bands == 3 and not spec.planar else 1e-9), mean_diff


# --------------------------------------------------------------------------------------------
# bit depths below a byte: 1-bit as uint8 0/1 (as GDAL), packed 2..24-bit integers
# --------------------------------------------------------------------------------------------

BILEVEL_SPECS = [
    TiffSpec(dtype="bool", width=w, tiled=tiled, compression=comp, photometric="minisblack")
    for (w, tiled), comp in product(
        [(300, True), (301, True), (301, False), (300, False)], [None, "packbits", "zlib"]
    )
] + [
    TiffSpec(dtype="bool", width=301, tiled=False, compression="lzw"),  # MinIsWhite (default)
    TiffSpec(
        dtype="bool",
        bands=3,
        width=301,
        tiled=True,
        planar=True,
        compression="zlib",
        photometric="minisblack",
    ),
]


@pytest.mark.parametrize("spec", BILEVEL_SPECS, ids=_ids(BILEVEL_SPECS))
async def test_bilevel(spec: TiffSpec, corpus: Corpus) -> None:
    data = corpus.tifffile(spec)
    await check_lossless(data, spec)
    async with cloudroi.open(data) as img:
        assert img.dtype == np.uint8
        whole = await img.read()
        assert set(np.unique(whole).tolist()) == {0, 1}


PACKED_SPECS = [
    TiffSpec(dtype="uint8", bitspersample=2, tiled=False, width=301),
    TiffSpec(dtype="uint8", bitspersample=4, bands=3, photometric="rgb", tiled=False, width=301),
    TiffSpec(dtype="uint8", bitspersample=5, tiled=True, width=301),
    TiffSpec(dtype="uint16", bitspersample=12, tiled=False, width=301),
    TiffSpec(dtype="uint16", bitspersample=12, bands=3, planar=True, tiled=True, byteorder=">"),
    TiffSpec(dtype="uint32", bitspersample=24, tiled=False),
]


@pytest.mark.parametrize("spec", PACKED_SPECS, ids=_ids(PACKED_SPECS))
async def test_packed_bits(spec: TiffSpec, corpus: Corpus) -> None:
    # tifffile's writer packs big-endian samples of odd bit depths wrongly (its reader and GDAL
    # agree on what the file holds, which is not the array given): compare with the readers only.
    await check_lossless(corpus.tifffile(spec), spec, with_written=spec.byteorder == "<")


# --------------------------------------------------------------------------------------------
# reduced-resolution images: a chain of IFDs and SubIFDs; later pages are not overviews
# --------------------------------------------------------------------------------------------


def _pyramid(subifds: bool, byteorder: str = "<") -> tuple[bytes, list[Array]]:
    base = TiffSpec(dtype="int16", bands=2, width=300, height=200).array()
    levels = [base, base[:, ::2, ::2], base[:, ::4, ::4], base[:, ::8, ::8]]
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf, byteorder=byteorder) as tw:
        opts: dict[str, Any] = {
            "tile": (64, 64),
            "compression": "zlib",
            "predictor": 2,
            "photometric": "minisblack",
            "planarconfig": "separate",
            "metadata": None,
        }
        tw.write(levels[0], subifds=3 if subifds else None, **opts)
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **opts)
        tw.write(levels[0][:, :50, :60] + 1, **opts)  # a second page: another image
    return buf.getvalue(), levels


@pytest.mark.parametrize("prefix", [1 << 16, 300], ids=["prefix-64k", "prefix-300"])
@pytest.mark.parametrize(
    ("subifds", "byteorder"),
    [(False, "<"), (True, "<"), (True, ">")],
    ids=["ifd-chain", "subifds", "subifds-be"],
)
async def test_reduced_resolution_levels(subifds: bool, byteorder: str, prefix: int) -> None:
    """tifffile lists SubIFDs in the tag *and* chains them: not a loop. A short prefix makes the
    header parser stop and resume between IFDs."""
    data, levels = _pyramid(subifds, byteorder)
    ref_levels = tifffile_levels(data)
    assert len(ref_levels) == len(levels)
    async with cloudroi.open(data, prefix_bytes=prefix, remember_header_size=False) as img:
        assert img.levels == [(lv.shape[2], lv.shape[1]) for lv in levels]
        for i, (lv, ref) in enumerate(zip(levels, ref_levels, strict=True)):
            assert_same(ref, lv, f"tifffile level {i}")
            h, w = lv.shape[1:]
            for name, win in windows(w, h, (64, 64)).items():
                got = await img.read(win, level=i)
                assert_same(got, window_slice(lv, win), f"level {i} {name} {win}")


# --------------------------------------------------------------------------------------------
# the same files over the real HTTP range server
# --------------------------------------------------------------------------------------------

HTTP_SPECS = [
    LAYOUT_SPECS[0],
    next(s for s in LAYOUT_SPECS if s.bigtiff and s.byteorder == ">" and s.planar and s.tiled),
    next(s for s in LAYOUT_SPECS if not s.tiled and s.bands == 7 and not s.planar),
    next(
        s
        for s in CODEC_SPECS
        if s.dtype == "float64"
        and s.predictor == 3
        and s.compression == "lzw"
        and s.byteorder == ">"
    ),
    LERC_SPECS[-2],
    WEBP_SPECS[1],
    JPEG_SPECS[1],
    BILEVEL_SPECS[4],
]


@pytest.mark.parametrize("spec", HTTP_SPECS, ids=_ids(HTTP_SPECS))
async def test_over_http(spec: TiffSpec, corpus: Corpus, server: RangeServer) -> None:
    data = corpus.tifffile(spec)
    path = f"/formats/tifffile/{spec.id}.tif"
    server.add(path, data)
    ref = tifffile_pages(data)[0]
    async with cloudroi.open(data) as mem, cloudroi.open(server.url(path)) as img:
        for name, win in windows(spec.width, spec.height, spec.block).items():
            got = await img.read(win)
            assert_same(got, await mem.read(win), f"http vs memory {name}")
            if spec.compression != "jpeg":
                assert_same(got, window_slice(ref, win), f"http vs tifffile {name}")
    assert server.request_count > 0
    assert all(entry.status in (200, 206) for entry in server.log)


def test_corpus_ids_are_unique() -> None:
    """Parametrized ids double as cache keys and server paths: a collision would hide a case."""
    specs = LAYOUT_SPECS + CODEC_SPECS + PREDICTOR_SPECS + LERC_SPECS + WEBP_SPECS + JPEG_SPECS
    specs += BILEVEL_SPECS + PACKED_SPECS
    assert len({s.id for s in specs}) == len(specs)


# --------------------------------------------------------------------------------------------
# photometric interpretations GDAL returns raw, and FillOrder 2
# --------------------------------------------------------------------------------------------

_CMAP = np.random.default_rng(5).integers(0, 65535, (3, 256), dtype=np.uint16)
PHOTOMETRIC_CASES: dict[str, tuple[Array, dict[str, Any]]] = {
    "palette": (
        TiffSpec(dtype="uint8").array()[0],
        {"photometric": "palette", "colormap": _CMAP, "compression": "lzw"},
    ),
    "miniswhite-u8": (
        TiffSpec(dtype="uint8").array()[0],
        {"photometric": "miniswhite", "compression": "zlib"},
    ),
    "cmyk": (
        np.moveaxis(TiffSpec(dtype="uint8", bands=4).array(), 0, -1),
        {"photometric": "separated", "tile": (64, 64), "compression": "zstd"},
    ),
    "rgb-extra-samples": (
        np.moveaxis(TiffSpec(dtype="uint16", bands=5).array(), 0, -1),
        {
            "photometric": "rgb",
            "extrasamples": ("unspecified", "unassalpha"),
            "tile": (64, 64),
            "compression": "zlib",
            "predictor": 2,
        },
    ),
}


@pytest.mark.parametrize("case", list(PHOTOMETRIC_CASES))
async def test_photometric_raw_values(case: str) -> None:
    """Palette indices, MinIsWhite values and extra samples come back as stored, as GDAL
    returns them; CMYK comes back as stored (as tifffile returns it), which GDAL does not."""
    arr, kwargs = PHOTOMETRIC_CASES[case]
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, metadata=None, **kwargs)
    data = buf.getvalue()
    want = arr[np.newaxis] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    h, w = want.shape[1:]
    gdal = rio_memory_read(data, (0, 0, w, h))
    if case == "cmyk":
        # GDAL converts 8-bit CMYK to RGBA through libtiff (integer arithmetic below); tifffile
        # and cloudroi return the stored inks. Check that this is the only difference.
        c, m, y, k = (want[i].astype(np.int64) for i in range(4))
        rgba = [
            (255 - k) * (255 - c) // 255,
            (255 - k) * (255 - m) // 255,
            (255 - k) * (255 - y) // 255,
            np.full_like(k, 255),
        ]
        assert_same(gdal, np.stack(rgba).astype(np.uint8), "GDAL's CMYK to RGBA")
        gdal = want
    async with cloudroi.open(data) as img:
        for name, win in windows(w, h, img.block_shape).items():
            got = await img.read(win)
            assert_same(got, window_slice(want, win), f"written {name}")
            assert_same(got, window_slice(gdal, win), f"rasterio {name}")


def _fill_order_2(data: bytes) -> bytes:
    """``data`` with FillOrder = 2: the tag tifffile will not write is put in place of a
    CellLength tag written for the purpose, and every strip's bytes are bit-reversed."""
    out = bytearray(data)
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        page = tf.pages[0]
        entry = page.tags[265].offset
        fmt = tf.byteorder + "H"
        strips = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    assert struct.unpack_from(fmt, out, entry)[0] == 265
    struct.pack_into(fmt, out, entry, 266)
    for off, cnt in strips:
        raw = np.frombuffer(bytes(out[off : off + cnt]), np.uint8)
        out[off : off + cnt] = np.packbits(np.unpackbits(raw, bitorder="little")).tobytes()
    return bytes(out)


@pytest.mark.parametrize("compression", [None, "packbits", "zlib"])
async def test_fill_order_2(compression: str | None) -> None:
    spec = TiffSpec(
        dtype="bool", width=301, tiled=False, compression=compression, photometric="minisblack"
    )
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        spec.array()[0].astype(bool),
        photometric="minisblack",
        rowsperstrip=ROWS_PER_STRIP,
        compression=compression,
        metadata=None,
        extratags=[(265, 3, 1, 2, True)],
    )
    data = _fill_order_2(buf.getvalue())
    (decoded, *_) = tifffile_pages(data)
    assert_same(decoded, spec.array(), "tifffile reads FillOrder 2")
    refs = {"written": spec.array(), "rasterio": _rio_whole(data, spec)}
    async with cloudroi.open(data) as img:
        await check_reads(img, spec, refs)
