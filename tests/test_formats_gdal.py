"""The GDAL-written format matrix: GeoTIFFs and COGs written by rasterio with GTiff/COG creation
options, read by cloudroi window by window and level by level and compared with rasterio's reads:
pixels (exact for lossless codecs), masks (``dataset_mask``), nodata, georeferencing, sparse
blocks and nearest-neighbour resampled reads."""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np
import pyproj
import pytest
import tifffile

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.read.masks import alpha_mask, mask_source, valid_mask
from cloudroi.read.plan import choose_overview, level_factors, nearest_source
from cloudroi.testing import RangeServer
from cloudroi.types import ByteRange, Window
from tests.corpus import (
    Array,
    Corpus,
    GdalSpec,
    assert_same,
    rio_mask,
    rio_open,
    rio_read,
    windows,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("gdal-corpus"))


def _ids(specs: list[GdalSpec]) -> list[str]:
    return [s.id for s in specs]


def _opts(*pairs: tuple[str, str], tiled: bool = True) -> tuple[tuple[str, str], ...]:
    base = (
        (("TILED", "YES"), ("BLOCKXSIZE", "64"), ("BLOCKYSIZE", "64"))
        if tiled
        else (("BLOCKYSIZE", "37"),)
    )
    return base + tuple(pairs)


def _lossy(spec: GdalSpec) -> bool:
    return dict(spec.options).get("COMPRESS") == "JPEG"


async def check_level(
    img: cloudroi.Image, path: Any, level: int, *, atol: float = 0, bands: int | None = None
) -> None:
    """Every named window of ``level`` against rasterio's windowed read of the same level."""
    w, h = img.levels[level]
    ifd = img.structure.levels[level]
    for name, win in windows(w, h, (ifd.block_height, ifd.block_width)).items():
        got = await img.read(win, level=level)
        want = rio_read(path, win, level)
        assert_same(got, want, f"level {level} {name} {win}", atol=atol)
        if atol and name == "whole":
            mean = np.abs(got.astype(np.float64) - want).mean()
            assert mean <= atol / 4, f"level {level}: mean difference {mean}"
    if bands is not None and bands > 1:
        win = windows(w, h, (64, 64))["interior"]
        got = await img.read(win, level=level, bands=[bands, 1])
        assert_same(got, rio_read(path, win, level, bands=[bands, 1]), "band subset", atol=atol)


async def check_metadata(img: cloudroi.Image, path: Any) -> None:
    with rio_open(path) as src:
        assert (img.width, img.height, img.count) == (src.width, src.height, src.count)
        assert len(img.levels) == len(src.overviews(1)) + 1
        if src.dtypes[0] == "float32" and img.dtype == np.float16:
            pass  # GDAL 3.10 has no Float16 type: it returns half floats as Float32
        else:
            assert img.dtype == np.dtype(src.dtypes[0])
        if src.nodata is None:
            assert img.nodata is None
        elif np.isnan(src.nodata):
            assert isinstance(img.nodata, float)
            assert np.isnan(img.nodata)
        else:
            assert img.nodata == src.nodata
        if src.crs is None:
            assert img.crs is None
        else:
            assert img.crs is not None
            if img.crs.epsg is not None:
                assert img.crs == src.crs.to_epsg()
            want = pyproj.CRS.from_wkt(src.crs.to_wkt())
            assert want.equals(img.crs.to_pyproj(), ignore_axis_order=True)
        if img.transform is None:
            assert src.transform.is_identity
        else:
            assert img.transform == pytest.approx(src.transform.to_gdal(), rel=1e-12, abs=1e-9)


# --------------------------------------------------------------------------------------------
# GTiff: codecs x predictors x dtypes, layouts, bit depths
# --------------------------------------------------------------------------------------------

ALL_INTS = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def _codec_specs() -> list[GdalSpec]:
    specs = [
        GdalSpec(f"none-{dt}", dtype=dt, bands=2, options=_opts())
        for dt in [*ALL_INTS, "float32", "float64"]
    ]
    specs += [
        GdalSpec(
            f"deflate-{dt}-p{pred}",
            dtype=dt,
            bands=2,
            options=_opts(("COMPRESS", "DEFLATE"), ("PREDICTOR", str(pred))),
        )
        for dt, pred in product(ALL_INTS, (1, 2))
    ]
    specs += [
        GdalSpec(
            f"{comp.lower()}-{dt}-p{pred}",
            dtype=dt,
            bands=2,
            options=_opts(("COMPRESS", comp), ("PREDICTOR", str(pred))),
        )
        for comp, dt, pred in product(
            ("DEFLATE", "LZW", "ZSTD", "LZMA"), ("float32", "float64"), (1, 2, 3)
        )
    ]
    specs += [
        GdalSpec(
            f"{comp.lower()}-{dt}-p2",
            dtype=dt,
            bands=2,
            options=_opts(("COMPRESS", comp), ("PREDICTOR", "2")),
        )
        for comp, dt in product(("LZW", "ZSTD", "LZMA"), ("uint8", "int16", "uint32", "int64"))
    ]
    specs += [
        GdalSpec(f"packbits-{dt}", dtype=dt, bands=2, options=_opts(("COMPRESS", "PACKBITS")))
        for dt in ("uint8", "int16", "float32")
    ]
    specs += [
        GdalSpec(
            f"{comp.lower()}-{dt}",
            dtype=dt,
            bands=2,
            kind="finite",
            options=_opts(("COMPRESS", comp), ("MAX_Z_ERROR", "0")),
        )
        for comp, dt in product(
            ("LERC", "LERC_DEFLATE", "LERC_ZSTD"),
            ("uint8", "int8", "int16", "uint16", "int32", "float32", "float64"),
        )
    ]
    specs += [
        GdalSpec(
            "lerc-float32-3b-band",
            dtype="float32",
            bands=3,
            kind="finite",
            options=_opts(("COMPRESS", "LERC_ZSTD"), ("INTERLEAVE", "BAND")),
        ),
        # NaN (and inf) pixels: GDAL writes a LERC mask (one per band when pixel-interleaved)
        # and reads NaN back where it is 0
        *(
            GdalSpec(
                f"lerc-{dt}-nan-{inter.lower()}",
                dtype=dt,
                bands=3,
                options=_opts(("COMPRESS", comp), ("INTERLEAVE", inter)),
            )
            for dt, inter, comp in (
                ("float32", "PIXEL", "LERC"),
                ("float32", "BAND", "LERC_DEFLATE"),
                ("float64", "PIXEL", "LERC_ZSTD"),
            )
        ),
        GdalSpec(
            "lerc-uint16-strips",
            dtype="uint16",
            bands=1,
            kind="finite",
            options=_opts(("COMPRESS", "LERC_DEFLATE"), tiled=False),
        ),
        GdalSpec(
            "webp-lossless-rgb",
            bands=3,
            options=_opts(("COMPRESS", "WEBP"), ("WEBP_LOSSLESS", "TRUE")),
        ),
        GdalSpec(
            "webp-lossless-rgba",
            bands=4,
            mask="alpha",
            options=_opts(("COMPRESS", "WEBP"), ("WEBP_LOSSLESS", "TRUE")),
        ),
        GdalSpec(
            "zstd-int16-7b-pixel",
            dtype="int16",
            bands=7,
            options=_opts(("COMPRESS", "ZSTD"), ("PREDICTOR", "2")),
        ),
        GdalSpec(
            "zstd-int16-7b-band",
            dtype="int16",
            bands=7,
            options=_opts(("COMPRESS", "ZSTD"), ("PREDICTOR", "2"), ("INTERLEAVE", "BAND")),
        ),
    ]
    return specs


def _layout_specs() -> list[GdalSpec]:
    specs = []
    for tiled, band, big, be in product((True, False), repeat=4):
        name = "-".join(
            [
                "tiled" if tiled else "strips",
                "band" if band else "pixel",
                "bigtiff" if big else "classic",
                "be" if be else "le",
            ]
        )
        opts = _opts(
            ("COMPRESS", "DEFLATE"),
            ("PREDICTOR", "2"),
            ("INTERLEAVE", "BAND" if band else "PIXEL"),
            ("BIGTIFF", "YES" if big else "NO"),
            ("ENDIANNESS", "BIG" if be else "LITTLE"),
            tiled=tiled,
        )
        specs.append(GdalSpec(f"layout-{name}", dtype="uint16", bands=3, options=opts))
    return specs


def _bits_specs() -> list[GdalSpec]:
    specs = [
        GdalSpec("nbits1-tiled", options=_opts(("NBITS", "1"), ("COMPRESS", "DEFLATE"))),
        GdalSpec("nbits1-strips", width=301, options=_opts(("NBITS", "1"), tiled=False)),
        GdalSpec("nbits2", options=_opts(("NBITS", "2"), ("COMPRESS", "LZW"))),
        GdalSpec(
            "nbits4-3b-band",
            bands=3,
            options=_opts(("NBITS", "4"), ("INTERLEAVE", "BAND"), tiled=False),
        ),
        GdalSpec("nbits7-be", options=_opts(("NBITS", "7"), ("ENDIANNESS", "BIG"))),
        GdalSpec("float16", dtype="float32", options=_opts(("NBITS", "16"))),
    ]
    for end in ("LITTLE", "BIG"):
        e = end.lower()
        specs += [
            GdalSpec(
                f"nbits12-{e}",
                dtype="uint16",
                bands=2,
                options=_opts(("NBITS", "12"), ("ENDIANNESS", end), tiled=False),
            ),
            GdalSpec(
                f"nbits24-{e}",
                dtype="uint32",
                options=_opts(("NBITS", "24"), ("ENDIANNESS", end), ("COMPRESS", "ZSTD")),
            ),
            GdalSpec(
                f"float16-p3-{e}",
                dtype="float32",
                bands=2,
                options=_opts(
                    ("NBITS", "16"),
                    ("COMPRESS", "DEFLATE"),
                    ("PREDICTOR", "3"),
                    ("ENDIANNESS", end),
                ),
            ),
        ]
    return specs


LOSSLESS_SPECS = _codec_specs() + _layout_specs() + _bits_specs()


@pytest.mark.parametrize("spec", LOSSLESS_SPECS, ids=_ids(LOSSLESS_SPECS))
async def test_gtiff_lossless(spec: GdalSpec, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        await check_metadata(img, path)
        await check_level(img, path, 0, bands=spec.bands)
        whole = await img.read()
    nbits = dict(spec.options).get("NBITS")
    if nbits != "16":  # half floats are a rounding of what was written
        assert_same(whole, spec.array(), "cloudroi vs the pixels written")
    if nbits == "1":
        assert whole.dtype == np.uint8
        assert set(np.unique(whole).tolist()) == {0, 1}


#: YCbCr JPEG (GDAL's default for RGB): cloudroi decodes with imagecodecs' libjpeg-turbo, and
#: its chroma upsampling differs from GDAL's at 8x8 chroma block edges. Measured on these smooth
#: images: up to 7 levels at full resolution, more on busy overviews; on noise up to 120. Gray,
#: RGB (PHOTOMETRIC=RGB) and band-interleaved JPEG decode bit-exactly as GDAL does.
JPEG_SPECS = [
    (GdalSpec("jpeg-gray", kind="mixed", options=_opts(("COMPRESS", "JPEG"))), 0.0),
    (
        GdalSpec(
            "jpeg-rgb",
            bands=3,
            kind="mixed",
            options=_opts(("COMPRESS", "JPEG"), ("PHOTOMETRIC", "RGB")),
        ),
        0.0,
    ),
    (
        GdalSpec(
            "jpeg-band",
            bands=3,
            kind="mixed",
            options=_opts(("COMPRESS", "JPEG"), ("INTERLEAVE", "BAND")),
        ),
        0.0,
    ),
    (
        GdalSpec(
            "jpeg-ycbcr",
            bands=3,
            kind="smooth",
            options=_opts(("COMPRESS", "JPEG"), ("PHOTOMETRIC", "YCBCR")),
        ),
        10.0,
    ),
    (
        GdalSpec(
            "jpeg-ycbcr-strips",
            bands=3,
            kind="smooth",
            options=(("COMPRESS", "JPEG"), ("PHOTOMETRIC", "YCBCR"), ("BLOCKYSIZE", "32")),
        ),
        10.0,
    ),
    (
        GdalSpec(
            "jpeg-ycbcr-q50",
            bands=3,
            kind="smooth",
            options=_opts(("COMPRESS", "JPEG"), ("PHOTOMETRIC", "YCBCR"), ("JPEG_QUALITY", "50")),
        ),
        10.0,
    ),
]


@pytest.mark.parametrize(("spec", "atol"), JPEG_SPECS, ids=[s.id for s, _ in JPEG_SPECS])
async def test_gtiff_jpeg(spec: GdalSpec, atol: float, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        assert img.compression == "jpeg"
        await check_metadata(img, path)
        await check_level(img, path, 0, atol=atol)
        whole = (await img.read()).astype(np.float64)
    mean = np.abs(whole - rio_read(path, (0, 0, spec.width, spec.height))).mean()
    assert mean < (1.0 if atol else 1e-12), f"mean difference {mean}"


# --------------------------------------------------------------------------------------------
# overviews: COGs (driver="COG") and GTiffs with overviews added after the data
# --------------------------------------------------------------------------------------------

BIG = {"width": 700, "height": 500}


def _cog(name: str, *opts: tuple[str, str], **kw: Any) -> GdalSpec:
    options = (("BLOCKSIZE", "64"), ("OVERVIEW_RESAMPLING", "NEAREST"), *opts)
    return GdalSpec(name, driver="COG", options=options, **{**BIG, **kw})


COG_SPECS = [
    (_cog("cog-deflate-u16", ("COMPRESS", "DEFLATE"), dtype="uint16", bands=2), 0.0),
    (_cog("cog-zstd-f32-pred", ("COMPRESS", "ZSTD"), ("PREDICTOR", "YES"), dtype="float32"), 0.0),
    (_cog("cog-lzw-i16-nodata", ("COMPRESS", "LZW"), dtype="int16", nodata=-9999), 0.0),
    (
        _cog(
            "cog-lerc-zstd-f64",
            ("COMPRESS", "LERC_ZSTD"),
            ("MAX_Z_ERROR", "0"),
            dtype="float64",
            kind="finite",
        ),
        0.0,
    ),
    (
        _cog(
            "cog-webp-lossless",
            ("COMPRESS", "WEBP"),
            ("QUALITY", "100"),
            ("WEBP_LOSSLESS", "TRUE"),
            bands=3,
        ),
        0.0,
    ),
    (_cog("cog-bigtiff-lzma", ("COMPRESS", "LZMA"), ("BIGTIFF", "YES"), dtype="uint32"), 0.0),
    # Overviews of these images are busy, and the chroma upsampling differences grow with
    # them: measured max 7/12/18/35/66 levels (means 0.4/0.7/1.4/4.0/11.6) on levels 0..4, while
    # cloudroi and GDAL stay equally far from the pixels written (means 1.4 vs 1.5 ... 25 vs 24).
    (_cog("cog-jpeg-ycbcr", ("COMPRESS", "JPEG"), bands=3, kind="smooth"), 80.0),
    (
        GdalSpec(
            "gtiff-overviews",
            dtype="int16",
            bands=2,
            overview_factors=(2, 4, 8),
            options=_opts(("COMPRESS", "DEFLATE"), ("PREDICTOR", "2")),
            **BIG,
        ),
        0.0,
    ),
    (
        GdalSpec(
            "gtiff-overviews-3-9",
            dtype="uint8",
            overview_factors=(3, 9),
            options=_opts(("COMPRESS", "ZSTD")),
            **BIG,
        ),
        0.0,
    ),
    (
        GdalSpec(
            "gtiff-overviews-strips",
            dtype="uint16",
            overview_factors=(2, 4),
            options=_opts(("COMPRESS", "LZW"), tiled=False),
            **BIG,
        ),
        0.0,
    ),
]


@pytest.mark.parametrize(("spec", "atol"), COG_SPECS, ids=[s.id for s, _ in COG_SPECS])
async def test_overview_levels(spec: GdalSpec, atol: float, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        await check_metadata(img, path)
        assert len(img.levels) > 2
        if spec.driver == "COG":
            assert img.info()["cog_layout"] == "IFDS_BEFORE_DATA"
        for level in range(len(img.levels)):
            await check_level(img, path, level, atol=atol, bands=spec.bands)


# --------------------------------------------------------------------------------------------
# masks: internal mask IFDs, alpha bands, nodata, none; compared with rasterio's dataset_mask()
# --------------------------------------------------------------------------------------------

MASK_SPECS = [
    GdalSpec("mask-none", options=_opts(("COMPRESS", "DEFLATE"))),
    GdalSpec(
        "mask-nodata-u16", dtype="uint16", bands=2, nodata=0, options=_opts(("COMPRESS", "DEFLATE"))
    ),
    GdalSpec("mask-nodata-i16", dtype="int16", nodata=-9999, options=_opts(("COMPRESS", "LZW"))),
    GdalSpec(
        "mask-nodata-f32-nan",
        dtype="float32",
        bands=2,
        nodata=float("nan"),
        options=_opts(("COMPRESS", "ZSTD")),
    ),
    GdalSpec("mask-nodata-f64", dtype="float64", nodata=-1e20, options=_opts()),
    GdalSpec("mask-alpha-rgba", bands=4, mask="alpha", options=_opts(("COMPRESS", "DEFLATE"))),
    GdalSpec(
        "mask-alpha-rgba-band",
        bands=4,
        mask="alpha",
        options=_opts(("COMPRESS", "DEFLATE"), ("INTERLEAVE", "BAND")),
    ),
    GdalSpec("mask-alpha-gray", bands=2, mask="alpha", options=_opts(("COMPRESS", "LZW"))),
    GdalSpec("mask-internal", bands=3, mask="internal", options=_opts(("COMPRESS", "DEFLATE"))),
    GdalSpec(
        "mask-internal-strips",
        dtype="int16",
        mask="internal",
        options=_opts(("COMPRESS", "LZW"), tiled=False),
    ),
    GdalSpec(
        "mask-internal-overviews",
        bands=2,
        mask="internal",
        overview_factors=(2, 4),
        options=_opts(("COMPRESS", "DEFLATE")),
        **BIG,
    ),
    _cog("mask-cog-internal", ("COMPRESS", "DEFLATE"), bands=3, mask="internal"),
    _cog("mask-cog-rgba-jpeg", ("COMPRESS", "JPEG"), bands=4, mask="alpha", kind="smooth"),
    _cog("mask-cog-nodata", ("COMPRESS", "ZSTD"), dtype="float32", nodata=-9999),
    GdalSpec("sparse-zero", dtype="uint16", sparse=True, options=_opts(("COMPRESS", "DEFLATE"))),
    GdalSpec(
        "sparse-nodata",
        dtype="int16",
        sparse=True,
        nodata=-5,
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
    GdalSpec(
        "sparse-nodata-strips", dtype="float32", sparse=True, nodata=7.5, options=_opts(tiled=False)
    ),
    GdalSpec(
        "sparse-internal-mask",
        bands=3,
        sparse=True,
        mask="internal",
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
    # the mask's unwritten blocks are 0 (invalid), not the data's nodata
    GdalSpec(
        "sparse-internal-mask-nodata",
        dtype="int16",
        sparse=True,
        nodata=-5,
        mask="internal",
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
]


@pytest.mark.parametrize("spec", MASK_SPECS, ids=_ids(MASK_SPECS))
async def test_masks(spec: GdalSpec, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        await check_metadata(img, path)
        assert img.has_mask == (spec.mask == "internal" or "jpeg" in spec.name)
        for level in range(len(img.levels)):
            w, h = img.levels[level]
            for name, win in windows(w, h, (64, 64)).items():
                got = await img.read_mask(win, level=level)
                want = rio_mask(path, win, level)
                assert got.dtype == np.uint8
                assert_same(got, want, f"mask level {level} {name} {win}")
        if spec.sparse or spec.nodata is not None:
            # Sparse blocks read as nodata (or 0), as GDAL fills them.
            await check_level(img, path, 0)
    if spec.sparse:
        with tifffile.TiffFile(path) as tf:
            assert 0 in tf.pages[0].dataoffsets, "GDAL wrote every block: nothing sparse tested"
    if spec.mask == "internal" and not spec.sparse:
        whole = rio_mask(path, (0, 0, spec.width, spec.height))
        assert_same(whole, spec.mask_array(), "GDAL kept the mask written")


#: Where GDAL and rasterio take a mask from is subtle: see ``assemble.mask_source``.
RULE_SPECS = [
    # 16-bit alpha: GDAL divides by 257 but keeps non-zero alpha non-zero (1..513 -> 1).
    GdalSpec(
        "rule-alpha-rgba-u16",
        dtype="uint16",
        bands=4,
        mask="alpha",
        options=_opts(("COMPRESS", "ZSTD")),
    ),
    # Nodata shadows the alpha band; rasterio then masks where band 4 equals nodata.
    GdalSpec(
        "rule-alpha-rgba-nodata",
        bands=4,
        mask="alpha",
        nodata=0,
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
    # With two bands and nodata, the nodata rule over both bands.
    GdalSpec(
        "rule-alpha-gray-nodata",
        bands=2,
        mask="alpha",
        nodata=7,
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
    # GDAL uses only 8- and 16-bit unsigned alpha bands as masks.
    GdalSpec("rule-alpha-int16", dtype="int16", bands=4, mask="alpha", options=_opts()),
    # The internal mask wins over nodata.
    GdalSpec(
        "rule-internal-and-nodata",
        dtype="int16",
        nodata=-9999,
        mask="internal",
        options=_opts(("COMPRESS", "DEFLATE")),
    ),
]


@pytest.mark.parametrize("spec", RULE_SPECS + MASK_SPECS, ids=_ids(RULE_SPECS + MASK_SPECS))
async def test_mask_rules(spec: GdalSpec, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    whole = (0, 0, spec.width, spec.height)
    want = rio_mask(path, whole)
    async with cloudroi.open(str(path)) as img:
        base = img.structure.levels[0]
        source, band = mask_source(
            img.count, base.extra_samples, img.dtype, img.has_mask, img.nodata is not None
        )
        data = await img.read()
        got = await img.read_mask()
    if source == "mask":
        rule = got
    elif source == "alpha":
        assert band is not None
        rule = alpha_mask(data[band - 1])
    elif source == "alpha_nodata":
        assert band is not None
        rule = np.where(data[band - 1] != img.nodata, 255, 0).astype(np.uint8)
    elif source == "nodata":
        assert img.nodata is not None
        rule = valid_mask(data, img.nodata)
    else:
        rule = np.full((spec.height, spec.width), 255, np.uint8)
    assert_same(rule, want, f"assemble.mask_source rule ({source}) vs dataset_mask")
    if not np.array_equal(got, want):
        pytest.xfail("Image.read_mask does not follow assemble.mask_source yet (see report)")
    assert_same(got, want, "read_mask vs dataset_mask")


async def test_sparse_blocks_fetch_nothing(corpus: Corpus) -> None:
    """A window wholly inside unwritten blocks is filled without a block request."""
    spec = next(s for s in MASK_SPECS if s.name == "sparse-nodata")
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        before = img.stats.tiles_read
        arr = await img.read((0, 0, 64, 64))
        assert img.stats.tiles_read == before
        assert img.stats.sparse_tiles >= 1
        assert (arr == -5).all()
        assert (await img.read_mask((0, 0, 64, 64)) == 0).all()


@pytest.mark.parametrize("name", ["sparse-nodata", "sparse-zero"])
async def test_sparse_blocks_hold_nodata_whatever_the_fill_value(name: str, corpus: Corpus) -> None:
    """As GDAL: an unwritten block reads as nodata (else 0); ``fill_value`` is for pixels
    outside the image only (it once filled sparse blocks too). rasterio's boundless read of
    the same window with the same fill value is the reference."""
    import warnings

    from rasterio.windows import Window as RioWindow

    path = corpus.gdal(next(s for s in MASK_SPECS if s.name == name))
    win = (-16, -16, 96, 96)
    with warnings.catch_warnings(), rio_open(path) as ds:
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # rasterio's boundless VRT
        want = ds.read(window=RioWindow(*win), boundless=True, fill_value=17)
        inside = ds.read(window=RioWindow(0, 0, 64, 64))
    async with cloudroi.open(str(path)) as img:
        got = await img.read(win, boundless=True, fill_value=17)
        assert (got[:, :16] == 17).all()  # outside: the fill value
        assert (got[:, 16:80, 16:80] == (-5 if name == "sparse-nodata" else 0)).all()
        assert_same(got, want, "boundless read with fill_value vs rasterio")
        assert_same(await img.read((0, 0, 64, 64), fill_value=17), inside, "inside")


# --------------------------------------------------------------------------------------------
# georeferencing: EPSG code and geotransform vs rasterio
# --------------------------------------------------------------------------------------------

GEO_SPECS = [
    GdalSpec("geo-utm"),
    GdalSpec("geo-4326", crs="EPSG:4326", transform=(-10.5, 0.01, 0.0, 51.25, 0.0, -0.01)),
    GdalSpec(
        "geo-3857",
        crs="EPSG:3857",
        transform=(-20037508.34, 156543.03, 0.0, 20037508.34, 0.0, -156543.03),
    ),
    GdalSpec("geo-2056", crs="EPSG:2056", transform=(2600000.0, 0.5, 0.0, 1200000.0, 0.0, -0.5)),
    GdalSpec("geo-point", area_or_point="Point"),
    GdalSpec(
        "geo-point-4326",
        crs="EPSG:4326",
        area_or_point="Point",
        transform=(5.0, 0.25, 0.0, 45.0, 0.0, -0.25),
    ),
    GdalSpec("geo-rotated", transform=(500000.0, 9.8, 1.5, 4100000.0, 1.2, -9.9)),
    GdalSpec("geo-south-up", transform=(500000.0, 10.0, 0.0, 4000000.0, 0.0, 10.0)),
    GdalSpec("geo-no-crs", crs=None),
    GdalSpec("geo-none", crs=None, transform=None),
    GdalSpec(
        "geo-custom-crs",
        crs="+proj=tmerc +lat_0=0 +lon_0=13.7 +k=0.9997 +x_0=70000 "
        "+y_0=0 +ellps=bessel +units=m +no_defs",
    ),
    GdalSpec("geo-bigtiff-be", options=_opts(("BIGTIFF", "YES"), ("ENDIANNESS", "BIG"))),
    _cog("geo-cog-4326", crs="EPSG:4326", transform=(100.0, 0.001, 0.0, 10.0, 0.0, -0.001)),
]


@pytest.mark.parametrize("spec", GEO_SPECS, ids=_ids(GEO_SPECS))
async def test_georeferencing(spec: GdalSpec, corpus: Corpus) -> None:
    path = corpus.gdal(spec)
    async with cloudroi.open(str(path)) as img:
        await check_metadata(img, path)
        with rio_open(path) as src:
            if src.crs is not None and src.crs.to_epsg() is None:
                assert img.crs is not None  # user-defined: its definition, not an EPSG code
                assert img.crs.epsg is None
                assert img.crs.note is None
            if img.transform is not None:
                x0, dx, rx, y0, ry, dy = src.transform.to_gdal()
                corners = [(0, 0), (src.width, 0), (0, src.height), (src.width, src.height)]
                xs = [x0 + c * dx + r * rx for c, r in corners]
                ys = [y0 + c * ry + r * dy for c, r in corners]
                want = (min(xs), min(ys), max(xs), max(ys))
                assert img.bounds == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------
# out_shape: the overview GDAL picks and GDAL's nearest-neighbour sampling
# --------------------------------------------------------------------------------------------

RESAMPLE_FILES = {
    "cog": _cog("resample-cog", ("COMPRESS", "DEFLATE"), dtype="uint16", bands=2),
    "cog-nodata": _cog("resample-cog-nodata", ("COMPRESS", "DEFLATE"), dtype="int16", nodata=-9999),
    "cog-mask": _cog("resample-cog-mask", ("COMPRESS", "DEFLATE"), bands=3, mask="internal"),
    "overviews-3-9": COG_SPECS[8][0],
}
RESAMPLE_CASES = [
    ((0, 0, 700, 500), (100, 140)),
    ((0, 0, 700, 500), (500, 700)),
    ((0, 0, 700, 500), (1, 1)),
    ((3, 5, 301, 203), (61, 87)),  # factors 3.33 / 3.46: the 1.2 threshold plus GDAL's epsilon
    ((3, 5, 301, 203), (100, 140)),
    ((101, 77, 250, 250), (33, 47)),
    ((101, 77, 250, 250), (500, 520)),  # upsampling from level 0
    ((650, 450, 50, 50), (7, 3)),
    ((17, 33, 99, 101), (50, 50)),
    ((1, 1, 698, 498), (200, 199)),
    ((0, 250, 700, 1), (1, 90)),
    ((120, 0, 7, 500), (40, 7)),
]
RESAMPLE_PARAMS = [
    pytest.param(f, win, shape, id=f"{f}-{win}-{shape[0]}x{shape[1]}".replace(" ", ""))
    for f, (win, shape) in product(RESAMPLE_FILES, RESAMPLE_CASES)
]


def _gdal_rule(
    img: cloudroi.Image, full: list[Array], win: tuple[int, int, int, int], shape: tuple[int, int]
) -> Array:
    """What plan.choose_overview + plan.nearest_source select, cut from whole levels."""
    level = choose_overview(img.levels, Window(*win), shape)
    src, rows, cols = nearest_source(
        Window(*win), shape, level_factors(img.levels, level), img.levels[level]
    )
    return full[level][..., src.row_off : src.row_end, src.col_off : src.col_end][..., rows, :][
        ..., cols
    ]


@pytest.mark.parametrize(("name", "win", "shape"), RESAMPLE_PARAMS)
async def test_resampled_read(
    name: str, win: tuple[int, int, int, int], shape: tuple[int, int], corpus: Corpus
) -> None:
    path = corpus.gdal(RESAMPLE_FILES[name])
    want = rio_read(path, win, out_shape=shape)
    want_mask = rio_mask(path, win, out_shape=shape)
    async with cloudroi.open(str(path)) as img:
        levels = [await img.read(level=i) for i in range(len(img.levels))]
        masks = [await img.read_mask(level=i) for i in range(len(img.levels))]
        # The planner's rule reproduces GDAL's pick of overview and of pixels.
        assert_same(_gdal_rule(img, levels, win, shape), want, "plan rule vs rasterio")
        assert_same(_gdal_rule(img, masks, win, shape), want_mask, "plan rule vs dataset_mask")
        got = await img.read(win, out_shape=shape)
        got_mask = await img.read_mask(win, out_shape=shape)
    if not (np.array_equal(got, want) and np.array_equal(got_mask, want_mask)):
        pytest.xfail("Image.read/read_mask do not use plan.nearest_source yet (see report)")
    assert_same(got, want, "read(out_shape) vs rasterio")
    assert_same(got_mask, want_mask, "read_mask(out_shape) vs dataset_mask")


# --------------------------------------------------------------------------------------------
# a representative subset over the real HTTP range server
# --------------------------------------------------------------------------------------------

HTTP_SPECS = [
    COG_SPECS[0][0],
    COG_SPECS[6][0],
    next(s for s in LOSSLESS_SPECS if s.name == "layout-strips-band-bigtiff-be"),
    next(s for s in LOSSLESS_SPECS if s.name == "nbits1-strips"),
    next(s for s in MASK_SPECS if s.name == "mask-cog-internal"),
    next(s for s in MASK_SPECS if s.name == "sparse-nodata"),
]


@pytest.mark.parametrize("spec", HTTP_SPECS, ids=_ids(HTTP_SPECS))
async def test_over_http(spec: GdalSpec, corpus: Corpus, server: RangeServer) -> None:
    path = corpus.gdal(spec)
    url_path = f"/formats/gdal/{spec.name}.tif"
    server.add(url_path, path.read_bytes())
    atol = 80.0 if _lossy(spec) else 0.0
    async with cloudroi.open(server.url(url_path)) as img:
        for level in range(len(img.levels)):
            w, h = img.levels[level]
            for name, win in windows(w, h, (64, 64)).items():
                got = await img.read(win, level=level)
                assert_same(
                    got, rio_read(path, win, level), f"http level {level} {name}", atol=atol
                )
                mask = await img.read_mask(win, level=level)
                assert_same(mask, rio_mask(path, win, level), f"http mask {level} {name}")
    assert server.request_count > 0
    assert {entry.status for entry in server.log} <= {200, 206}


def test_spec_names_are_unique() -> None:
    specs = LOSSLESS_SPECS + [s for s, _ in JPEG_SPECS] + [s for s, _ in COG_SPECS]
    specs += [*MASK_SPECS, *RULE_SPECS, *GEO_SPECS, *RESAMPLE_FILES.values()]
    names = [s.name for s in specs]
    dupes = {n for n in names if names.count(n) > 1}
    # The same spec may appear in two lists; two different specs may not share a name.
    for n in dupes:
        assert len({s for s in specs if s.name == n}) == 1, n


# --------------------------------------------------------------------------------------------
# GDAL_NODATA text as GDAL applies it
# --------------------------------------------------------------------------------------------

#: (dtype, nodata given to rasterio, text patched into the tag or None, nodata GDAL applies)
NODATA_CASES = {
    "u16-half": ("uint16", 0.5, None, 0),  # integer bands truncate toward zero
    "i16-minus-1.5": ("int16", -1.5, None, -1),
    "u8-out-of-range": ("uint8", 255, "300", None),  # nothing masked
    "u16-trailing-junk": ("uint16", 7000, "7abc", 7),  # atof: the leading number
    "i64-exponent": ("int64", -(2**63), None, -9),  # 64-bit bands: the leading integer
    "i8-min": ("int8", -128, None, -128),
    "f32-1e20": ("float32", 1e20, None, float(np.float32(1e20))),  # single precision
    "f32-minus-inf": ("float32", float("-inf"), None, float("-inf")),
    "f64-max": ("float64", float(np.finfo(np.float64).max), None, float(np.finfo(np.float64).max)),
    "f16-9999": ("float16", -9999, None, -9999.0),
}


def _patch_nodata(path: Any, text: str) -> None:
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags[42113]
        old, offset = tag.value, tag.valueoffset
    assert len(text) == len(old), (text, old)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(text.encode("ascii"))


@pytest.mark.parametrize("case", list(NODATA_CASES))
async def test_nodata_as_gdal_applies_it(case: str, tmp_path: Any) -> None:
    dtype, given, text, applied = NODATA_CASES[case]
    options = _opts(("NBITS", "16")) if dtype == "float16" else _opts()
    spec = GdalSpec(
        f"nodata-{case}",
        dtype="float32" if dtype == "float16" else dtype,
        nodata=given,
        options=options,
    )
    path = Corpus(tmp_path).gdal(spec)
    if text is not None:
        _patch_nodata(path, text)
    if dtype == "float16":
        # Half floats next to the nodata value: -9999 is stored as -9992 by GDAL, -10000 is
        # what float16(-9999) rounds to; GDAL compares in single precision and masks neither.
        with rio_open(path) as src:
            assert src.nodata == -9999
    whole = (0, 0, spec.width, spec.height)
    async with cloudroi.open(str(path)) as img:
        if applied is None:
            assert img.nodata is None
        else:
            assert img.nodata == applied
            assert type(img.nodata) is type(applied)
        assert_same(await img.read_mask(), rio_mask(path, whole), "mask vs dataset_mask")
        assert_same(await img.read(), rio_read(path, whole), "pixels vs rasterio")
        if applied is not None:
            # What the mask hides is exactly the pixels equal to the nodata GDAL applies.
            data = await img.read()
            hidden = await img.read_mask() == 0
            if dtype == "float16":
                assert not hidden.any()
                assert (data[0, 5, 5:10] == np.float16(-9999)).all()  # -10000, kept valid
            else:
                assert np.array_equal(hidden, (data == applied).any(axis=0))


# --------------------------------------------------------------------------------------------
# plan() and read() share one planner: the plan of a read is the requests it sends
# --------------------------------------------------------------------------------------------

PLAN_SPECS = (
    LOSSLESS_SPECS
    + [s for s, _ in JPEG_SPECS]
    + [s for s, _ in COG_SPECS]
    + [s for s in MASK_SPECS if s.name not in {t.name for t in LOSSLESS_SPECS}]
)


def _sent(server: RangeServer, path: str) -> list[ByteRange]:
    out = []
    for entry in server.requests_for(path):
        assert entry.range is not None, entry
        assert entry.range.startswith("bytes="), entry
        first, last = entry.range[len("bytes=") :].split("-")
        out.append(ByteRange(int(first), int(last) + 1))
    return out


@pytest.mark.parametrize("spec", PLAN_SPECS, ids=_ids(PLAN_SPECS))
async def test_the_plan_of_a_read_is_what_it_sends(
    spec: GdalSpec, corpus: Corpus, server: RangeServer
) -> None:
    path = corpus.gdal(spec)
    url_path = f"/formats/plan/{spec.name}.tif"
    server.add(url_path, path.read_bytes())
    # No caches: every read fetches what its plan says, nothing is served from memory.
    ctx = cloudroi.Context(block_cache=LRUCache(0), decoded_cache=LRUCache(0))
    try:
        # A small first GET, so that the header and block reads are requests of their own.
        async with cloudroi.open(
            server.url(url_path), context=ctx, prefix_bytes=2048, remember_header_size=False
        ) as img:
            for level in range(len(img.levels)):
                w, h = img.levels[level]
                for name in ("interior", "edge", "whole"):
                    win = windows(w, h, (64, 64))[name]
                    plan = img.plan(win, level)
                    server.reset()
                    await img.read(win, level=level)
                    assert plan.requests is not None, (level, name)
                    planned = sorted(plan.index_requests + plan.requests)
                    assert sorted(_sent(server, url_path)) == planned, (level, name)
            whole = (0, 0, img.width, img.height)
            out_shape = (max(1, img.height // 5), max(1, img.width // 7))
            plan = img.plan(whole, out_shape=out_shape)
            server.reset()
            await img.read(whole, out_shape=out_shape)
            assert plan.requests is not None
            assert sorted(_sent(server, url_path)) == sorted(plan.requests), "resampled"
    finally:
        await ctx.close()
