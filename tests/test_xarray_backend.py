"""The engine="cloudroi" xarray backend against a GDAL-written GeoTIFF on the range server:
what rasterio and rioxarray read, the blocks a slice touches, overviews, DataTree, chunks,
load_async, and Dask's threaded scheduler opening the file once."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

import cloudroi
from cloudroi.testing import RangeServer
from cloudroi.xarray import runtime
from cloudroi.xarray.backend import open_image_spec
from tests.upstream import Upstream

# rasterio and rioxarray still use affine's deprecated `*` (affine 2.4)
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")

RAW = np.random.default_rng(11).integers(1, 4000, (2, 300, 420), dtype=np.uint16)
RAW[:, :40, :50] = 0  # nodata corner
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 6_100_000.0)


@pytest.fixture(scope="module")
def gdal_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiled (64 px) GeoTIFF written by GDAL: 2 bands, nodata 0, scale 0.5 / offset 10,
    EPSG:32633, two overviews."""
    path = tmp_path_factory.mktemp("xr") / "gdal.tif"
    profile = {
        "driver": "GTiff",
        "width": 420,
        "height": 300,
        "count": 2,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": TRANSFORM,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(RAW)
        dst.scales = (0.5, 0.5)
        dst.offsets = (10.0, 10.0)
        dst.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    return path


@pytest.fixture
def up(server: RangeServer, gdal_tif: Path) -> Upstream:
    return Upstream.publish(server, {"g.tif": gdal_tif.read_bytes()}, "xr-backend")


def header_gets(up: Upstream) -> int:
    return sum(1 for e in up.requests("g.tif") if (e.range or "").startswith("bytes=0-"))


def test_dataarray_matches_rasterio_and_rioxarray(up: Upstream, gdal_tif: Path) -> None:
    import rioxarray

    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi", mask_and_scale=False)
    ref = rioxarray.open_rasterio(gdal_tif)
    assert da.dims == ("band", "y", "x")
    assert da.shape == (2, 300, 420)
    np.testing.assert_array_equal(da.values, RAW)
    np.testing.assert_array_equal(da.band, ref.band)
    np.testing.assert_allclose(da.x, ref.x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(da.y, ref.y, rtol=0, atol=1e-6)
    # rioxarray's accessor reads our CRS, transform and nodata
    assert da.rio.crs == ref.rio.crs == rasterio.crs.CRS.from_epsg(32633)
    assert da.rio.transform() == ref.rio.transform() == TRANSFORM
    assert da.rio.nodata == 0 == ref.rio.nodata
    assert da.attrs["_FillValue"] == ref.attrs["_FillValue"] == 0
    assert da.attrs["scale_factor"] == ref.attrs["scale_factor"] == 0.5
    assert da.attrs["add_offset"] == ref.attrs["add_offset"] == 10.0
    ref_attrs = ref.spatial_ref.attrs
    assert da.spatial_ref.attrs["GeoTransform"].split() == ref_attrs["GeoTransform"].split()
    assert da.spatial_ref.attrs["grid_mapping_name"] == ref_attrs["grid_mapping_name"]
    assert da.encoding["grid_mapping"] == "spatial_ref"


def test_mask_and_scale_decodes_as_rioxarray(up: Upstream, gdal_tif: Path) -> None:
    import rioxarray

    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi")  # xarray's default: decode
    ref = rioxarray.open_rasterio(gdal_tif, mask_and_scale=True)
    got = da.isel(y=slice(20, 90), x=slice(30, 100)).values
    want = ref.isel(y=slice(20, 90), x=slice(30, 100)).values
    np.testing.assert_allclose(got, want)
    assert np.isnan(got[0, 0, 0])
    assert not np.isnan(got[0, -1, -1])
    assert da.encoding["_FillValue"] == 0
    assert da.encoding["scale_factor"] == 0.5


def test_a_slice_reads_only_the_blocks_it_touches(up: Upstream) -> None:
    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi", mask_and_scale=False)
    opened = len(up.requests("g.tif"))
    assert header_gets(up) == 1
    window = (130, 70, 70, 30)  # x 130..199: block columns 2-3; y 70..99: block row 1
    img, _ = open_image_spec(up.url("g.tif"))  # the Image the array reads through
    plan = img.plan(window)
    assert plan.requests is not None
    assert len(plan.blocks) == 2
    assert not plan.cached
    sub = da.isel(x=slice(130, 200), y=slice(70, 100)).values
    np.testing.assert_array_equal(sub, RAW[:, 70:100, 130:200])
    sent = up.requests("g.tif")[opened:]
    assert len(sent) == len(plan.requests)
    assert sum(e.body_bytes for e in sent) == plan.bytes
    # steps and integers: the window covering them, then numpy
    np.testing.assert_array_equal(da[1, 5:200:7, ::-3].values, RAW[1, 5:200:7, ::-3])
    assert da[0, 299, 419].item() == RAW[0, 299, 419]
    assert da[:, 10:10, :].shape == (2, 0, 420)
    assert header_gets(up) == 1


def test_overviews_by_level_and_as_a_datatree(up: Upstream, gdal_tif: Path) -> None:
    ov = xr.open_dataarray(
        up.url("g.tif"), engine="cloudroi", overview_level=1, mask_and_scale=False
    )
    with rasterio.open(gdal_tif, OVERVIEW_LEVEL=0) as src:
        want = src.read()
        want_transform = src.transform
    np.testing.assert_array_equal(ov.values, want)
    assert ov.rio.transform() == want_transform
    assert ov.rio.crs == rasterio.crs.CRS.from_epsg(32633)
    tree = xr.open_datatree(up.url("g.tif"), engine="cloudroi", mask_and_scale=False)
    assert sorted(tree.children) == ["level_0", "level_1", "level_2"]
    assert tree["level_2"]["band_data"].shape == (2, 75, 105)
    np.testing.assert_array_equal(tree["level_1"]["band_data"].values, want)
    with pytest.raises(cloudroi.LevelError):
        xr.open_dataarray(up.url("g.tif"), engine="cloudroi", overview_level=3)
    assert header_gets(up) == 1  # every open above shared the process's one Image


def test_chunks_follow_the_block_shape(up: Upstream) -> None:
    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi", chunks={})
    assert da.encoding["preferred_chunks"] == {"band": 2, "y": 64, "x": 64}
    assert da.chunks == ((2,), (64,) * 4 + (44,), (64,) * 6 + (36,))
    # "auto" under a small chunk budget: dask cuts on block boundaries
    with dask.config.set({"array.chunk-size": "64KiB"}):
        auto = xr.open_dataarray(
            up.url("g.tif"), engine="cloudroi", chunks={"band": -1, "y": "auto", "x": "auto"}
        )
    assert auto.chunks is not None
    rows, cols = auto.chunks[1], auto.chunks[2]
    assert len(rows) * len(cols) > 1
    # every chunk boundary is a block boundary
    assert all(b % 64 == 0 for b in np.cumsum(rows[:-1])), rows
    assert all(b % 64 == 0 for b in np.cumsum(cols[:-1])), cols


def test_threaded_scheduler_opens_the_file_once(up: Upstream) -> None:
    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi", chunks={}, mask_and_scale=False)
    assert da.data.npartitions == 35
    # the graph pickles cheaply: specs, not Images
    assert len(pickle.dumps(da.data.dask)) < 64 * 1024
    out = da.compute(scheduler="threads", num_workers=8)
    np.testing.assert_array_equal(out.values, RAW)
    assert header_gets(up) == 1  # 35 tasks on 8 threads, one open


async def test_load_async_reads_on_the_runtime_loop(up: Upstream) -> None:
    da = xr.open_dataarray(up.url("g.tif"), engine="cloudroi", mask_and_scale=False)
    parts = [da.isel(y=slice(r, r + 50)) for r in range(0, 300, 50)]
    loaded = await asyncio.gather(*(p.load_async() for p in parts))
    np.testing.assert_array_equal(np.concatenate([p.values for p in loaded], axis=1), RAW)
    assert header_gets(up) == 1


def test_bad_targets_get_clear_errors(up: Upstream) -> None:
    with pytest.raises(TypeError, match="URL or a path"):
        xr.open_dataarray(b"II*\x00", engine="cloudroi")
    with pytest.raises(cloudroi.SourceNotFoundError):
        xr.open_dataarray(up.url("missing.tif"), engine="cloudroi")
    assert runtime.counters().images >= 1
