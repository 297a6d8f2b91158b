"""The region layer: one set of argument rules for every front end, plans decided from the
header, and reads that equal the Image verbs they are made of."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import cloudroi
from cloudroi.cli import build_parser
from cloudroi.cog import write_cog
from cloudroi.errors import BandError, LevelError, NotGeoreferencedError, WindowError
from cloudroi.region import ArgumentError, RegionRequest, plan_point, plan_region, read_region
from cloudroi.region import args as region_args
from cloudroi.service.params import parse_region
from cloudroi.service.problems import Problem

GT = (500000.0, 10.0, 0.0, 4200000.0, 0.0, -10.0)
PIXELS = (np.arange(3 * 300 * 400, dtype=np.uint32).reshape(3, 300, 400) % 251).astype(np.uint8)


def _dem() -> np.ndarray:
    yy, xx = np.mgrid[0:300, 0:400]
    dem = (xx + yy).astype(np.float32)
    dem[:40, :60] = -9999.0
    return dem


RGB = write_cog(PIXELS, tile=64, epsg=32633, transform=GT)
DEM = write_cog(_dem(), tile=64, nodata=-9999.0, epsg=32633, transform=GT)
PLAIN = write_cog(PIXELS[0], tile=64)


# --------------------------------------------------------------------------------------------
# one set of rules: the service's query and the CLI's options accept and refuse alike
# --------------------------------------------------------------------------------------------

CASES = [
    ("window", "0,0,10,10", True),
    ("window", "-5,-5,10,10", True),  # parses; planning wants boundless for it
    ("window", "0,0,0,10", False),
    ("window", "0,0,10", False),
    ("window", "a,b,c,d", False),
    ("window", "0,0,10,99999999999999", False),
    ("bbox", "0,0,1,1", True),
    ("bbox", "1,0,0,1", False),
    ("bbox", "0,0,nan,1", False),
    ("bbox", "0,0,1e999,1", False),
    ("bands", "1,2,3", True),
    ("bands", "0", False),
    ("bands", "x", False),
    ("rescale", "0,1", True),
    ("rescale", "1,0", False),
    ("quality", "1", True),
    ("quality", "100", True),
    ("quality", "0", False),
    ("quality", "101", False),
]


def _service_accepts(name: str, text: str) -> bool:
    query = [("url", "x"), ("window" if name != "window" else name, "0,0,1,1")]
    if name == "window":
        query = [("url", "x"), ("window", text), ("boundless", "true")]
    elif name == "bbox":
        query = [("url", "x"), ("bbox", text)]
    else:
        query.append((name, text))
    try:
        parse_region(query)
    except Problem:
        return False
    return True


def _cli_accepts(name: str, text: str) -> bool:
    argv = ["read", "x.tif", "-o", "x.npy", f"--{name}={text}"]
    if name != "window" and name != "bbox":
        argv.append("--window=0,0,1,1")
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            return False
    return True


@pytest.mark.parametrize(("name", "text", "valid"), CASES)
def test_service_and_cli_judge_arguments_alike(name: str, text: str, valid: bool) -> None:
    parse = {
        "window": region_args.window,
        "bbox": region_args.bbox,
        "bands": region_args.bands,
        "rescale": region_args.rescale,
        "quality": region_args.quality,
    }[name]
    try:
        parse(text)
        rule = True
    except ArgumentError:
        rule = False
    assert rule is valid
    assert _service_accepts(name, text) is valid
    assert _cli_accepts(name, text) is valid


def test_contradicting_requests_are_refused_by_the_request_itself() -> None:
    with pytest.raises(ArgumentError) as exc:
        RegionRequest(window=(0, 0, 1, 1), bbox=(0, 0, 1, 1))
    assert exc.value.code == "conflicting_parameters"
    with pytest.raises(ArgumentError):
        RegionRequest(level=1, width=10)
    with pytest.raises(ArgumentError):
        RegionRequest(max_size=10, height=10)


# --------------------------------------------------------------------------------------------
# plans: from the header, with typed refusals
# --------------------------------------------------------------------------------------------


async def test_plans_and_their_refusals() -> None:
    async with cloudroi.open(RGB) as img, cloudroi.open(PLAIN) as plain:
        plan = plan_region(img, RegionRequest(window=(10, 20, 100, 50)))
        assert (plan.level, tuple(plan.window), plan.out_shape, plan.boundless) == (
            0,
            (10, 20, 100, 50),
            None,
            False,
        )
        with pytest.raises(WindowError, match="outside the 400x300 image"):
            plan_region(img, RegionRequest(window=(-5, 0, 10, 10)))
        plan = plan_region(img, RegionRequest(window=(-5, 0, 10, 10), boundless=True))
        assert plan.boundless
        # a bbox: the window covering it, pixel edges exact
        plan = plan_region(img, RegionRequest(bbox=(500100.0, 4199000.0, 500300.0, 4199900.0)))
        assert tuple(plan.window) == (10, 10, 20, 90)
        with pytest.raises(NotGeoreferencedError):
            plan_region(plain, RegionRequest(bbox=(0, 0, 1, 1)))
        with pytest.raises(LevelError):
            plan_region(img, RegionRequest(window=(0, 0, 1, 1), level=9))
        with pytest.raises(BandError):
            plan_region(img, RegionRequest(window=(0, 0, 1, 1), bands=(4,)))
        with pytest.raises(BandError):
            plan_region(img, RegionRequest(window=(0, 0, 1, 1), bands=(1, 2)), rendered=True)
        with pytest.raises(BandError):  # repeats cannot multiply a request past the band count
            plan_region(img, RegionRequest(window=(0, 0, 1, 1), bands=(1, 1, 1, 1)))
        assert plan_region(plain, RegionRequest(bands=(1, 1, 1))).bands == (1, 1, 1)
        # sizes: the aspect kept with one side given; max_size bounds the longer side
        assert plan_region(img, RegionRequest(width=200)).out_shape == (150, 200)
        assert plan_region(img, RegionRequest(height=60)).out_shape == (60, 80)
        assert plan_region(img, RegionRequest(max_size=100)).out_shape == (75, 100)
        assert plan_region(img, RegionRequest(max_size=1000)).out_shape is None
        # an 8-bit rendering of a 3-band source shows bands 1-3
        assert plan_region(img, RegionRequest(), rendered=True).bands == (1, 2, 3)


# --------------------------------------------------------------------------------------------
# reads: equal to the Image verbs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        RegionRequest(window=(30, 20, 200, 150)),
        RegionRequest(window=(30, 20, 200, 150), width=50),
        RegionRequest(window=(350, 250, 100, 100), boundless=True),
        RegionRequest(bbox=(499000.0, 4198000.0, 501000.0, 4200500.0)),
        RegionRequest(max_size=64),
    ],
)
async def test_read_region_is_read_and_read_mask(request_: RegionRequest) -> None:
    async with cloudroi.open(DEM) as img:
        plan = plan_region(img, request_)
        region = await read_region(img, plan)
        kwargs = {"out_shape": plan.out_shape, "boundless": plan.boundless}
        want = await img.read(plan.window, plan.level, **kwargs)
        want_mask = await img.read_mask(plan.window, plan.level, **kwargs)
    np.testing.assert_array_equal(region.data, want)
    # the mask comes from the data (no second read) where it is the nodata test of every band,
    # and from read_mask otherwise: equal either way
    assert region.mask is not None
    np.testing.assert_array_equal(region.mask, want_mask)
    assert region.transform is not None
    assert region.bands == (1,)
    assert region.nodata == -9999.0


async def test_image_data_knows_where_it_is() -> None:
    async with cloudroi.open(RGB) as img:
        region = await read_region(img, plan_region(img, RegionRequest(window=(10, 20, 40, 30))))
    assert region.mask is None  # nothing can be invalid: no mask, alpha, nodata or outside
    assert region.bounds == (500100.0, 4199500.0, 500500.0, 4199800.0)
    assert region.crs == 32633
    encoded = region.render("png")
    assert encoded.media_type == "image/png"
    assert encoded.any_valid


async def test_point_on_a_pixel_edge_is_where_rasterio_index_puts_it() -> None:
    """GDAL's pixel-edge convention: x/y exactly on an edge (as computed from the transform)
    belongs to the pixel right of / below it, through GDAL's inverse geotransform; a plain
    inverse put thousands of these in the pixel before."""
    from affine import Affine
    from rasterio.transform import rowcol

    gt = (412345.67, 0.3, 0.0, 5123456.78, 0.0, -0.3)
    data = write_cog(PIXELS[0][:, :300], tile=64, epsg=32633, transform=gt)
    affine = Affine.from_gdal(*gt)
    checked = 0
    async with cloudroi.open(data) as img:
        for col in range(0, 300, 7):
            for row in range(0, 300, 13):
                x, y = gt[0] + col * gt[1], gt[3] + row * gt[5]
                plan = plan_point(img, (x, y))
                assert (plan.row, plan.col) == tuple(rowcol(affine, x, y)) == (row, col)
                checked += 1
    assert checked > 900
