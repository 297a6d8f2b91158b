"""Image's georeferenced verbs end to end, over HTTP from the range server: tiles, regions in
other CRSs, bounds, zoom ranges and points, against rio-tiler and rasterio (GDAL) reading the
same GDAL-written files from disk."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine

import cloudroi
from cloudroi.errors import ArgumentError, BandError, TileOutsideBoundsError, WindowError
from cloudroi.testing import RangeServer
from tests.warp_data import TILES, quiet, rio_tiler_tile

pytestmark = pytest.mark.asyncio


def _serve(server: RangeServer, path: Path, tag: str = "") -> str:
    name = f"/georef{tag}/{path.name}"
    server.add(name, path.read_bytes())
    return server.url(name)


# one tile per file kind, across overview levels, the pole and the antimeridian
PICKED = [TILES[i] for i in (0, 3, 6, 9, 14, 15, 17, 21, 24, 25, 27)]


IDS = [f"{k}-{z}/{x}/{y}" for k, (z, x, y) in PICKED]


@pytest.mark.parametrize(("key", "zxy"), PICKED, ids=IDS)
async def test_tile_equals_rio_tiler(
    server: RangeServer, warp_files: dict[str, Path], key: str, zxy: tuple[int, int, int]
) -> None:
    z, x, y = zxy
    path = warp_files[key]
    ref, ref_mask = rio_tiler_tile(path, z, x, y, "nearest")
    async with await cloudroi.open(_serve(server, path)) as img:
        assert img.tile_exists(x, y, z)
        tile = await img.tile(x, y, z)
    assert tile.data.shape == ref.shape
    assert tile.mask is not None
    valid = tile.mask > 0
    both = valid & ref_mask
    assert both.sum() > 0
    same = (tile.data[:, both] == ref[:, both]).all(axis=0)
    assert same.mean() >= 0.995
    assert (valid != ref_mask).sum() <= 2 * (tile.width + tile.height)
    assert tile.crs is not None
    assert tile.crs == 3857
    assert tile.bounds is not None


async def test_a_tile_reads_only_the_blocks_it_needs(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    path = warp_files["antimeridian"]
    url = _serve(server, path, "-fresh")  # not in the shared block cache yet
    size = path.stat().st_size
    async with await cloudroi.open(url) as img:
        header = img.stats.bytes_fetched
        tile = await img.tile(127, 67, 7)  # just east of 179 E, in a file of 170..190 E
        fetched = img.stats.bytes_fetched - header
        assert tile.mask is not None
        assert tile.mask.all()
        # west of 180, as a region in Web Mercator: the file's far columns only
        before = img.stats.bytes_fetched
        west = await img.read_region(
            (-20037508.34, -2504688.54, -19724422.59, -2191602.47), crs=3857, shape=(256, 256)
        )
        west_fetched = img.stats.bytes_fetched - before
    assert 0 < fetched < size / 8
    assert west.mask is not None
    assert west.mask.mean() > 0.5
    assert 0 < west_fetched < size / 8


async def test_outside_tile_raises_and_tile_exists_agrees(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    async with await cloudroi.open(_serve(server, warp_files["utm"])) as img:
        assert not img.tile_exists(0, 0, 10)
        with pytest.raises(TileOutsideBoundsError):
            await img.tile(0, 0, 10)
        with pytest.raises(WindowError):
            await img.tile(0, 0, 10, tilesize=0)
        with pytest.raises(BandError):
            await img.tile(*TILES[0][1][1:], TILES[0][1][0], bands=[4])


@pytest.mark.parametrize("key", ["utm", "wgs84", "polar", "antimeridian"])
async def test_bounds_and_zoom_range_equal_rio_tiler(
    server: RangeServer, warp_files: dict[str, Path], key: str
) -> None:
    from rio_tiler.io import Reader

    path = warp_files[key]
    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        ref_bounds = r.get_geographic_bounds(rasterio.crs.CRS.from_epsg(4326))
        ref_zooms = (r.minzoom, r.maxzoom)
    async with await cloudroi.open(_serve(server, path)) as img:
        assert img.zoom_range() == ref_zooms
        assert (img.minzoom, img.maxzoom) == ref_zooms
        assert np.allclose(img.bounds_in(4326), ref_bounds, atol=1e-9, rtol=0)
        assert np.allclose(img.bounds_in(img.crs), img.bounds)


async def test_read_region_equals_rasterio_reproject(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    path = warp_files["utm"]
    bounds, shape = (14.78, 45.42, 15.02, 45.58), (160, 240)
    async with await cloudroi.open(_serve(server, path)) as img:
        got = await img.read_region(bounds, crs=4326, shape=shape, level=0)
        with pytest.raises(WindowError):
            await img.read_region((1, 1, 0, 2), crs=4326, shape=shape)
    h, w = shape
    dst_t = Affine.from_gdal(*got.transform) if got.transform else None
    assert dst_t is not None
    ref = np.zeros((4, h, w), np.uint8)
    with quiet(), rasterio.open(path) as ds:
        rasterio.warp.reproject(
            ds.read(),
            ref,
            src_transform=ds.transform,
            src_crs=ds.crs,
            dst_transform=dst_t,
            dst_crs="EPSG:4326",
            resampling=rasterio.warp.Resampling.nearest,
            dst_alpha=4,
            warp_mem_limit=512,
            SRC_FILL_RATIO_HEURISTICS="NO",
        )
    assert got.crs == 4326
    assert got.data.shape == (3, h, w)
    assert got.bounds is not None
    assert np.allclose(got.bounds, bounds)
    assert got.mask is not None
    both = (got.mask > 0) & (ref[3] > 0)
    assert both.mean() > 0.9
    assert (got.data[:, both] == ref[:3, both]).all(axis=0).mean() >= 0.995


async def test_read_region_fills_outside_with_nodata(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    async with await cloudroi.open(_serve(server, warp_files["utm"])) as img:
        # half of the box is east of the file
        _west, south, east, north = img.bounds_in(4326)
        box = (east - 0.1, south + 0.05, east + 0.1, north - 0.05)
        got = await img.read_region(box, crs=4326, shape=(64, 64), nodata=7, bands=[2])
    assert got.mask is not None
    assert got.data.shape == (1, 64, 64)
    assert 0 < (got.mask > 0).mean() < 1
    assert (got.data[0][got.mask == 0] == 7).all()
    assert got.nodata == 7


@pytest.mark.parametrize("nodata", [float("nan"), 0.5, -1, 70000, float("inf")])
async def test_read_region_refuses_a_nodata_the_dtype_cannot_hold(
    server: RangeServer, warp_files: dict[str, Path], nodata: float
) -> None:
    # Before: the masked pixels took 0 while ImageData.nodata said NaN (or 0.5, -1...), so a
    # GeoTIFF or .npy answer declared a nodata its pixels did not hold.
    async with await cloudroi.open(_serve(server, warp_files["utm"], "-nd")) as img:
        assert img.dtype.kind == "u"
        _west, south, east, north = img.bounds_in(4326)
        box = (east - 0.1, south + 0.05, east + 0.1, north - 0.05)
        with pytest.raises(ArgumentError, match="cannot be held by the image's uint"):
            await img.read_region(box, crs=4326, shape=(32, 32), nodata=nodata, bands=[1])
        got = await img.read_region(box, crs=4326, shape=(32, 32), nodata=3.0, bands=[1])
    assert got.mask is not None
    assert (got.data[0][got.mask == 0] == 3).all()
    assert got.nodata == 3


@pytest.mark.parametrize(
    ("dtype", "nodata", "held"),
    [
        ("float32", 1e40, None),
        ("float32", 1e-50, None),
        ("float16", 70000.0, None),
        ("float32", 0.1, float(np.float32(0.1))),
        ("float32", float("-inf"), float("-inf")),
        ("float64", 1e-50, 1e-50),
        ("uint8", 255, 255),
        ("int16", -9999, -9999),
    ],
)
async def test_refill_records_the_nodata_the_pixels_hold(
    dtype: str, nodata: float, held: float | None
) -> None:
    # Before: float dtypes recorded any nodata: float32 1e40 filled inf, 1e-50 filled 0, while
    # ImageData.nodata said 1e40 / 1e-50 (and numpy warned of an overflow).
    from cloudroi.region.data import ImageData, refill
    from cloudroi.types import Window

    def region() -> ImageData:
        data = np.ones((1, 2, 2), dtype)
        mask = np.array([[0, 255], [255, 255]], np.uint8)
        return ImageData(data, mask, None, None, None, (1,), 0, Window(0, 0, 2, 2))

    if held is None:
        with pytest.raises(ArgumentError, match=f"cannot be held by the image's {dtype}"):
            refill(region(), nodata)
        lenient = refill(region(), nodata, strict=False)
        assert lenient.nodata is None
        assert lenient.data[0, 0, 0] == 0
        return
    got = refill(region(), nodata)
    assert got.nodata == held
    assert got.data[0, 0, 0] == np.array(held, dtype)
    assert got.data[0, 1, 1] == 1


async def test_point_in_lon_lat_equals_rasterio(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    path = warp_files["utm"]
    async with await cloudroi.open(_serve(server, path)) as img:
        with quiet(), rasterio.open(path) as ds:
            for lon, lat in [(14.9, 45.5), (14.80001, 45.45), (15.0, 45.59)]:
                xs, ys = rasterio.warp.transform("EPSG:4326", ds.crs, [lon], [lat])
                row, col = ds.index(xs[0], ys[0])
                pixel = ds.read(window=((row, row + 1), (col, col + 1)))
                expected = [int(v) for v in pixel[:, 0, 0]]
                got = await img.point(lon, lat)
                assert (got.row, got.col) == (row, col)
                assert got.values == expected
            # on a pixel edge, in the file's own CRS: rasterio's index() convention
            x = ds.transform.c + 1000 * ds.transform.a
            y = ds.transform.f + 700 * ds.transform.e
            got = await img.point(x, y, crs=None)
            assert (got.row, got.col) == ds.index(x, y)
        with pytest.raises(WindowError):
            await img.point(0.0, 0.0)
