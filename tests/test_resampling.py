"""Resampled reads with bilinear, cubic, average and mode, against GDAL's RasterIO (rasterio).

Small files written by GDAL (600 x 500): an 8-bit RGB COG with overviews, a 16-bit and a float32
COG, an 8-bit COG with nodata, an 8-bit GTiff without overviews, and 8-bit RGB COGs whose
validity is an internal mask or an alpha band. Windows cover downsampling
by 2 (an overview copied as it is), 3.7 and 10 (between overviews) and an upsampling. The
agreement measured here is the table in the README.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from aiohttp.test_utils import TestClient, TestServer
from rasterio import shutil as rio_shutil
from rasterio.enums import Resampling
from rasterio.windows import Window as RioWindow

import cloudroi
from cloudroi.region import RegionRequest, plan_region, read_region
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.corpus import quiet
from tests.upstream import Upstream

WIDTH, HEIGHT = 600, 500
KINDS = ("nearest", "bilinear", "cubic", "average", "mode")
#: (window, out_shape (h, w)): factor 2 (an overview as it is), 3.7 off the overviews' grid,
#: 10 and 12 (a coarse overview, more), an upsampling inside one overview block.
CASES = (
    ((0, 0, 600, 500), (250, 300)),
    ((13, 7, 555, 470), (127, 150)),
    ((0, 0, 600, 500), (50, 60)),
    ((37, 41, 300, 200), (30, 20)),
    ((100, 100, 50, 40), (87, 109)),
)


def _pixels(dtype: str, bands: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = (np.sin(xx / 17.0) + np.cos(yy / 23.0)) * 60 + 128
    arr = np.stack([base + rng.normal(0, 20, (HEIGHT, WIDTH)) + 10 * b for b in range(bands)])
    if dtype == "uint16":
        arr = arr * 200
    top = np.iinfo(dtype).max if dtype != "float32" else 1e9
    return np.asarray(np.clip(arr, 0, top), dtype=dtype)


def _write(
    path: Path,
    arr: np.ndarray,
    *,
    nodata: float | None = None,
    cog: bool = True,
    mask: np.ndarray | None = None,
    alpha: bool = False,
) -> Path:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": WIDTH,
        "height": HEIGHT,
        "count": arr.shape[0],
        "dtype": str(arr.dtype),
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": "deflate",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if alpha:
        profile.update(photometric="RGB", alpha="YES")
    plain = path.with_suffix(".plain.tif")
    env = rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True)
    with quiet(), env, rasterio.open(plain, "w", **profile) as ds:
        ds.write(arr)
        if mask is not None:
            ds.write_mask(mask)
    if not cog:
        return plain
    with quiet():
        rio_shutil.copy(plain, path, driver="COG", BLOCKSIZE=128, OVERVIEW_RESAMPLING="AVERAGE")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resampling")
    nodata = _pixels("uint8", 1, 3)
    nodata[:, 100:180, 200:330] = 0
    nodata[:, np.random.default_rng(9).random((HEIGHT, WIDTH)) < 0.05] = 0
    valid = (nodata[0] != 0).astype(np.uint8) * 255
    rgb = _pixels("uint8", 3, 5)
    return {
        "rgb8_mask": _write(root / "rgbmask.tif", rgb, mask=valid),
        "rgba8": _write(root / "rgba.tif", np.concatenate([rgb, valid[None]]), alpha=True),
        "rgb8": _write(root / "rgb8.tif", _pixels("uint8", 3, 0)),
        "u16": _write(root / "u16.tif", _pixels("uint16", 1, 1)),
        "f32": _write(root / "f32.tif", _pixels("float32", 1, 2)),
        "u8_nodata": _write(root / "u8nodata.tif", nodata, nodata=0),
        "u8_no_overviews": _write(root / "plain.tif", _pixels("uint8", 1, 4), cog=False),
    }


@pytest.fixture(scope="module")
def upstream(range_server: RangeServer, files: dict[str, Path]) -> Upstream:
    return Upstream.publish(
        range_server, {f"{k}.tif": p.read_bytes() for k, p in files.items()}, "resamp"
    )


def rio(path: Path, window: tuple[int, ...], shape: tuple[int, int], kind: str) -> np.ndarray:
    with quiet(), rasterio.open(path) as ds:
        return np.asarray(
            ds.read(
                window=RioWindow(*window),
                out_shape=(ds.count, *shape),
                resampling=Resampling[kind],
            )
        )


def agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float, float]:
    """(mean |diff|, max |diff|, share of pixels differing)."""
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float(diff.mean()), float(diff.max()), float((diff > 0).mean())


@pytest.mark.parametrize(
    "name", ["rgb8", "u16", "f32", "u8_nodata", "u8_no_overviews", "rgb8_mask", "rgba8"]
)
async def test_kernels_agree_with_gdal(
    name: str, files: dict[str, Path], upstream: Upstream
) -> None:
    path = files[name]
    async with cloudroi.open(upstream.url(f"{name}.tif")) as img:
        assert img.has_mask == (name == "rgb8_mask")
        assert img.alpha_band == (4 if name == "rgba8" else None)
        for kind in KINDS:
            table = []
            for window, shape in CASES:
                got = await img.read(window, out_shape=shape, resampling=kind)
                want = rio(path, window, shape, kind)
                assert got.shape == want.shape
                assert got.dtype == want.dtype
                table.append(agreement(got, want))
            mean = float(np.mean([t[0] for t in table]))
            worst = max(t[1] for t in table)
            share = max(t[2] for t in table)
            what = f"{name} {kind}: mean {mean:.4f} max {worst} share {share:.4f}"
            if kind in ("nearest", "mode") or (kind != "average" and img.dtype.kind != "f"):
                assert worst == 0, what  # measured exact (GDAL 3.10)
            elif img.dtype.kind == "f":
                assert worst <= 1e-4, what  # a float32 ulp at the data's ~200
            else:
                # average: ties at x.5 (when upsampling) round either way, by 1
                assert mean <= 0.05, what
                assert worst <= 1, what
                assert share <= 0.02, what


async def test_only_the_padded_footprint_is_fetched(upstream: Upstream) -> None:
    """A 40 x 40 window in the middle of the file without overviews, into 10 x 10 with cubic:
    the kernel reaches radius 2 x ratio 4 = 8 pixels around each output's centre, so the
    source is 52 x 52 pixels at (294, 194) (taps from ``floor(302 - 8 + 0.5)`` to
    ``int(338 + 8 + 0.5)``), all in block (1, 2) of the 128-pixel grid: one block fetched."""
    url = upstream.url("u8_no_overviews.tif")
    async with cloudroi.open(url) as img:
        plan = img.plan((300, 200, 40, 40), out_shape=(10, 10), resampling="cubic")
        assert tuple(plan.window) == (294, 194, 52, 52)
        assert [b.index for b in plan.blocks] == [7]
        wide = img.plan((300, 200, 80, 80), out_shape=(10, 10), resampling="cubic")
        assert tuple(wide.window) == (288, 188, 104, 104)  # reach 16: across four blocks
        assert sorted(b.index for b in wide.blocks) == [7, 8, 12, 13]
        nearest = img.plan((300, 200, 40, 40), out_shape=(10, 10))
        assert tuple(nearest.window) == (302, 202, 37, 37)  # the sampled pixels only
        before = len(upstream.requests("u8_no_overviews.tif"))
        await img.read((300, 200, 40, 40), out_shape=(10, 10), resampling="cubic")
        sent = len(upstream.requests("u8_no_overviews.tif")) - before
        assert sent == plan.request_count


async def test_masks_follow_the_kernel(upstream: Upstream) -> None:
    async with cloudroi.open(upstream.url("u8_nodata.tif")) as img:
        for kind in ("bilinear", "cubic", "average", "mode"):
            data = await img.read(out_shape=(50, 60), resampling=kind)
            mask = await img.read_mask(out_shape=(50, 60), resampling=kind)
            # the hole (rows 100..180, cols 200..330 of 600 x 500) is nodata and invalid
            assert (data[0, 12:16, 22:31] == 0).all()
            assert (mask[12:16, 22:31] == 0).all()
            # elsewhere valid, never the nodata value (GDAL's replacement value)
            np.testing.assert_array_equal(mask == 255, data[0] != 0)
            assert (mask == 255).mean() > 0.9


async def test_boundless_resampled_read(upstream: Upstream) -> None:
    async with cloudroi.open(upstream.url("rgb8.tif")) as img:
        win = (500, 400, 200, 200)  # half of it outside the image
        data = await img.read(win, out_shape=(40, 40), boundless=True, resampling="bilinear")
        mask = await img.read_mask(win, out_shape=(40, 40), boundless=True, resampling="bilinear")
        assert data.shape == (3, 40, 40)
        assert (mask[:, 21:] == 0).all()
        assert (mask[21:, :] == 0).all()
        assert (mask[:19, :19] == 255).all()
        assert (data[:, 21:, :] == 0).all()
        inside = await img.read((500, 400, 100, 100), out_shape=(20, 20), resampling="bilinear")
        # away from the image's edge, the same pixels as a read of the inside part
        np.testing.assert_array_equal(data[:, :18, :18], inside[:, :18, :18])


async def test_bad_and_paletted_resampling_are_refused(
    range_server: RangeServer, tmp_path: Path
) -> None:
    path = tmp_path / "pal.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8"}
    profile["photometric"] = "palette"
    with quiet(), rasterio.open(path, "w", **profile) as ds:
        ds.write((np.arange(64 * 64) % 7).reshape(1, 64, 64).astype(np.uint8))
        ds.write_colormap(1, {i: (i * 30, 255 - i * 30, 0, 255) for i in range(7)})
    up = Upstream.publish(range_server, {"pal.tif": path.read_bytes()}, "pal")
    async with cloudroi.open(up.url("pal.tif")) as img:
        for kind in ("bilinear", "cubic", "average"):
            with pytest.raises(cloudroi.ResamplingError, match="paletted"):
                await img.read(out_shape=(16, 16), resampling=kind)
        mode = await img.read(out_shape=(16, 16), resampling="mode")
        np.testing.assert_array_equal(mode, rio(path, (0, 0, 64, 64), (16, 16), "mode"))
        with pytest.raises(cloudroi.ResamplingError, match="must be one of"):
            await img.read(out_shape=(16, 16), resampling="lanczos")
        with pytest.raises(cloudroi.ResamplingError):
            img.plan(out_shape=(16, 16), resampling=3)  # type: ignore[arg-type]
        # the region layer refuses it while planning, before anything is fetched
        with pytest.raises(cloudroi.ResamplingError):
            plan_region(img, RegionRequest(width=16, resampling="average"))


async def test_warps_of_a_paletted_image_refuse_blending_kernels(
    range_server: RangeServer, tmp_path: Path
) -> None:
    # Before: read_region/tile with bilinear, cubic or average blended palette indices into
    # colours of other entries (gdalwarp warns and does the same).
    from affine import Affine

    path = tmp_path / "pal-geo.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8"}
    profile |= {"photometric": "palette", "crs": "EPSG:32633"}
    profile["transform"] = Affine(30.0, 0, 500000.0, 0, -30.0, 4600000.0)
    with quiet(), rasterio.open(path, "w", **profile) as ds:
        ds.write((np.arange(64 * 64) % 7).reshape(1, 64, 64).astype(np.uint8))
        ds.write_colormap(1, {i: (i * 30, 255 - i * 30, 0, 255) for i in range(7)})
    up = Upstream.publish(range_server, {"pal-geo.tif": path.read_bytes()}, "palgeo")
    box = (500300.0, 4598500.0, 501500.0, 4599700.0)
    async with cloudroi.open(up.url("pal-geo.tif")) as img:
        import morecantile

        west, south, east, north = img.bounds_in(4326)
        t = morecantile.tms.get("WebMercatorQuad").tile((west + east) / 2, (south + north) / 2, 14)
        z, x, y = t.z, t.x, t.y
        for kind in ("bilinear", "cubic", "average"):
            with pytest.raises(cloudroi.ResamplingError, match="palette indices"):
                await img.read_region(box, crs=None, shape=(16, 16), resampling=kind)
            with pytest.raises(cloudroi.ResamplingError, match="palette indices"):
                await img.tile(x, y, z, resampling=kind)
        got = await img.read_region(box, crs=None, shape=(16, 16), resampling="nearest")
        assert set(np.unique(got.data)) <= set(range(7))
        assert img.tile_exists(x, y, z)
        tile = await img.tile(x, y, z)
        assert tile.mask is not None
        assert set(np.unique(tile.data[:, tile.mask > 0])) <= set(range(7))
        # io_resampling only picks the overview level: any of its names, mode included, serves
        # (a first version of this check refused mode and lanczos as unknown warp kernels)
        for io in ("mode", "lanczos", "bilinear"):
            got_io = await img.tile(x, y, z, io_resampling=io)
            np.testing.assert_array_equal(got_io.data, tile.data)


def test_sync_read_takes_resampling(upstream: Upstream, files: dict[str, Path]) -> None:
    got = cloudroi.read(
        upstream.url("f32.tif"), (13, 7, 555, 470), out_shape=(127, 150), resampling="cubic"
    )
    want = rio(files["f32"], (13, 7, 555, 470), (127, 150), "cubic")
    np.testing.assert_array_equal(got, want)


async def test_service_preview_and_region(upstream: Upstream, files: dict[str, Path]) -> None:
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,)))))
    await client.start_server()
    try:
        url = upstream.url("rgb8.tif")
        params = {"url": url, "max_size": "256", "resampling": "average", "format": "npy"}
        async with client.get("/preview", params=params) as resp:
            assert resp.status == 200, await resp.text()
            got = np.load(io.BytesIO(await resp.read()))
        async with cloudroi.open(url) as img:
            request = RegionRequest(max_size=256, resampling="average")
            want = (await read_region(img, plan_region(img, request))).data
            nearest = await img.read(out_shape=want.shape[1:])
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, nearest)  # the kernel did apply
        region = {"url": url, "window": "13,7,555,470", "width": "150", "format": "npy"}
        async with client.get("/region", params={**region, "resampling": "cubic"}) as resp:
            assert resp.status == 200
            got = np.load(io.BytesIO(await resp.read()))
        want = rio(files["rgb8"], (13, 7, 555, 470), (127, 150), "cubic")
        np.testing.assert_array_equal(got, want)
        async with client.get("/cog/preview.npy", params={**params, "resampling": "mode"}) as r:
            assert r.status == 200, await r.text()
        for path, bad in (("/preview", "lanczos"), ("/cog/preview.npy", "lanczos")):
            async with client.get(path, params={**params, "resampling": bad}) as resp:
                assert resp.status == 400
                assert "must be one of" in json.loads(await resp.read())["detail"]
    finally:
        await client.close()


def test_cli_read_resampling(upstream: Upstream, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    url = upstream.url("u16.tif")
    argv = ["read", url, "--window", "37,41,300,200", "--size", "20,30", "--resampling", "mode"]
    result = subprocess.run(
        [sys.executable, "-m", "cloudroi.cli", *argv, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    got = np.load(out)
    want = cloudroi.read(url, (37, 41, 300, 200), out_shape=(30, 20), resampling="mode")
    np.testing.assert_array_equal(got, want)


def test_mode_of_a_footprint_without_valid_pixels() -> None:
    """Float data whose last footprint is all nodata: the output there is nodata and invalid
    (this once raised IndexError on the sample DEM)."""
    from cloudroi.read.resample import resample
    from cloudroi.read.resample_plan import plan_resample

    src = np.array([[[1.0, 2.0, 2.0, -9999.0, -9999.0, -9999.0]]], dtype=np.float32)
    valid = src[0] != -9999.0
    plan = plan_resample("mode", (0.0, 0.0, 6.0, 1.0), (0, 0), (1, 2), (6, 1), 256)
    out, ok = resample(src, [valid], plan, -9999.0)
    np.testing.assert_array_equal(out, [[[2.0, -9999.0]]])
    assert ok is not None
    np.testing.assert_array_equal(ok, [[[True, False]]])


@pytest.mark.parametrize("nodata", [float("nan"), -9999.0, None], ids=["nan", "-9999", "none"])
async def test_nan_and_inf_reach_only_the_outputs_that_take_them(
    nodata: float | None, tmp_path: Path
) -> None:
    """Float pixels that are NaN or infinite (NaN as nodata, beside another nodata, or with
    none): GDAL's loops carry them only into the outputs that take them as taps (masked ones
    too, unless a row has no valid tap; an infinity times 0 is NaN, and GDAL's masked
    convolutions store an infinity as the largest float), its average skips masked pixels,
    and its mode counts NaNs as one value. A weight matrix product once spread a single NaN
    or infinity over every output (NaN x 0 is NaN)."""
    rng = np.random.default_rng(7)
    a = (rng.random((2, 64, 64)) * 1000).astype(np.float32)
    a[0, 0, 0] = a[0, 10, 17] = a[1, 50, 3] = np.nan
    a[:, 30:33, 40:42] = np.nan  # a cluster: some rows have no valid tap at all
    a[0, 5, 50] = a[1, 20, 20] = np.inf  # infinities: inf x 0 is NaN too; +inf -inf NaN
    a[0, 6, 52] = a[1, 60, 60] = -np.inf
    path = tmp_path / "nan.tif"
    with quiet(), rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=2, dtype="float32",
        nodata=nodata, tiled=True, blockxsize=32, blockysize=32,
    ) as ds:  # fmt: skip
        ds.write(a)
    window = (0, 0, 64, 64)
    async with cloudroi.open(str(path)) as img:
        for kind in ("bilinear", "cubic", "average", "mode"):
            # average when upsampling: values at a float32 ulp on more pixels (README); mode
            # of a footprint without a valid pixel: GDAL writes 0 for a NaN nodata (README)
            shapes = [(16, 16), (21, 13)] + ([(100, 90)] if kind in ("bilinear", "cubic") else [])
            for shape in shapes:
                got = await img.read(window, out_shape=shape, resampling=kind)
                want = rio(path, window, shape, kind)
                nans = int(np.isnan(want).sum())
                nan_nodata = nodata is not None and np.isnan(nodata)
                if kind == "mode" and nan_nodata:
                    assert nans == 0, (kind, shape)  # masked pixels are skipped
                elif kind != "mode" and not (kind == "average" and nan_nodata):
                    assert 0 < nans < want.size // 4, (kind, shape, nans)
                    huge = np.abs(np.nan_to_num(want, nan=0.0)) >= np.finfo(np.float32).max
                    assert huge.any(), (kind, shape)  # an infinity, or the largest float
                what = f"{kind} {shape}"
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
                # the values: a float32 ulp apart at most (the order of GDAL's sums)
                np.testing.assert_allclose(got, want, rtol=3e-7, equal_nan=True, err_msg=what)


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "uint64", "float32", "float64"])
async def test_mode_ties_go_where_gdals_do(dtype: str, tmp_path: Path) -> None:
    """Noisy data (12 values) at non-integer factors, where most footprints hold ties: GDAL
    3.10 keeps the value that reaches the top count first, for every data type (the 8-bit
    rule; other types once took the value seen first, 650-1,300 of 6,700 pixels off)."""
    rng = np.random.default_rng(3)
    path = tmp_path / f"{dtype}.tif"
    with quiet(), rasterio.open(
        path, "w", driver="GTiff", width=301, height=203, count=1, dtype=dtype,
        tiled=True, blockxsize=64, blockysize=64,
    ) as ds:  # fmt: skip
        ds.write(rng.integers(0, 12, (1, 203, 301)).astype(dtype))
    window = (0, 0, 301, 203)
    async with cloudroi.open(str(path)) as img:
        for shape in ((67, 100), (50, 75), (13, 29)):
            got = await img.read(window, out_shape=shape, resampling="mode")
            np.testing.assert_array_equal(got, rio(path, window, shape, "mode"), str(shape))


async def test_infinities_beside_an_internal_mask_stay_infinite(tmp_path: Path) -> None:
    """With only a mask band (no nodata value) GDAL keeps an infinity its convolutions make;
    with a nodata value it stores the largest float instead (the test above)."""
    a = np.arange(400, dtype=np.float32).reshape(1, 20, 20)
    a[0, 5, 5] = np.inf
    a[0, 12, 3] = -np.inf
    mask = np.full((20, 20), 255, np.uint8)
    mask[15, 15] = 0
    path = tmp_path / "mask-inf.tif"
    with quiet(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
        path, "w", driver="GTiff", width=20, height=20, count=1, dtype="float32"
    ) as ds:  # fmt: skip
        ds.write(a)
        ds.write_mask(mask)
    async with cloudroi.open(str(path)) as img:
        assert img.has_mask
        for kind in ("bilinear", "cubic", "average"):
            got = await img.read((0, 0, 20, 20), out_shape=(10, 10), resampling=kind)
            want = rio(path, (0, 0, 20, 20), (10, 10), kind)
            assert np.isinf(want).any(), kind
            np.testing.assert_array_equal(got, want, err_msg=kind)
