"""GeoTIFF answers keep what the source has and are valid COGs: the internal mask or the alpha
band as the source has them, nodata, the CRS in full (user-defined ones too), band
descriptions, scales and offsets; tiled, with overviews past 512 pixels, accepted by
``rio cogeo validate``. Sources written by GDAL (rasterio), served on the range server; the
answers read back with rasterio."""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from aiohttp.test_utils import TestClient, TestServer
from rasterio.crs import CRS as RioCRS
from rasterio.enums import ColorInterp
from rasterio.shutil import copy as rio_copy

import cloudroi
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.upstream import Upstream

Client = TestClient[Any, Any]
LAEA = (
    'PROJCS["custom LAEA",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,'
    '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],'
    'PROJECTION["Lambert_Azimuthal_Equal_Area"],PARAMETER["latitude_of_center",52.5],'
    'PARAMETER["longitude_of_center",13.25],PARAMETER["false_easting",1000000],'
    'PARAMETER["false_northing",2000000],UNIT["metre",1]]'
)


def _cog(path: Path, data: np.ndarray, **profile: Any) -> None:
    """A GDAL COG (the COG driver from a temporary GTiff) with the profile's extras."""
    mask = profile.pop("mask", None)
    descriptions = profile.pop("descriptions", None)
    scales = profile.pop("scales", None)
    offsets = profile.pop("offsets", None)
    tmp = path.with_suffix(".src.tif")
    base = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype,
        "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 6100000.0),
        "crs": "EPSG:32633",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(tmp, "w", **{**base, **profile}) as ds:
                ds.write(data)
                if mask is not None:
                    ds.write_mask(mask)
                if descriptions:
                    for i, d in enumerate(descriptions, 1):
                        ds.set_band_description(i, d)
                if scales:
                    ds.scales = scales
                if offsets:
                    ds.offsets = offsets
            with rasterio.open(tmp) as src:
                rio_copy(src, path, driver="COG")


def _picture(bands: int, h: int, w: int, dtype: str = "uint8") -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(1, 200, (bands, h, w)).astype(dtype)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    masked = _picture(3, 700, 600)
    valid = np.full((700, 600), 255, np.uint8)
    valid[100:300, 50:400] = 0
    _cog(tmp_path / "masked.tif", masked, mask=valid)
    rgba = _picture(4, 300, 300)
    rgba[3] = 255
    rgba[3, :80, :] = 0
    _cog(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    dem = _picture(2, 900, 1300, "int16")
    _cog(
        tmp_path / "laea.tif",
        dem,
        crs=RioCRS.from_wkt(LAEA),
        nodata=-32768,
        descriptions=["height", "quality"],
        scales=[0.5, 1.0],
        offsets=[-10.0, 0.0],
    )
    for name in ("masked", "rgba", "laea"):
        out[name] = tmp_path / f"{name}.tif"
    return out


@pytest.fixture
async def client(server: RangeServer, files: dict[str, Path]) -> AsyncIterator[Client]:
    up = Upstream.publish(server, {p.name: p.read_bytes() for p in files.values()}, "geotiff")
    app = create_app(ServiceConfig(allowed_sources=(up.root,)))
    c: Client = TestClient(TestServer(app))
    await c.start_server()
    c.up = up  # type: ignore[attr-defined]
    yield c
    await c.close()


async def _tif(client: Client, name: str, tmp_path: Path, **params: str) -> Path:
    query = {"url": client.up.url(name), "format": "tif", **params}  # type: ignore[attr-defined]
    async with client.get("/region", params=query) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.read()
    path = tmp_path / f"answer-{name}"
    path.write_bytes(body)
    return path


def _valid_cog(path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ok, errors, warns = cog_validate(str(path), strict=True, quiet=True)
    assert ok, (errors, warns)


async def test_internal_mask_is_kept(
    client: Client, files: dict[str, Path], tmp_path: Path
) -> None:
    out = await _tif(client, "masked.tif", tmp_path, window="0,0,600,700")
    _valid_cog(out)
    with rasterio.open(files["masked"]) as src, rasterio.open(out) as got:
        assert got.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
        assert np.array_equal(got.dataset_mask(), src.dataset_mask())
        valid = src.dataset_mask() > 0
        assert np.array_equal(got.read()[:, valid], src.read()[:, valid])
        assert got.overviews(1) == [2]  # 700 px > 512: one overview, down to one block
        assert got.block_shapes[0] == (512, 512)
        assert got.crs == src.crs
        assert got.transform == src.transform


async def test_alpha_band_stays_alpha(
    client: Client, files: dict[str, Path], tmp_path: Path
) -> None:
    out = await _tif(client, "rgba.tif", tmp_path, window="10,20,200,150")
    _valid_cog(out)
    with rasterio.open(files["rgba"]) as src, rasterio.open(out) as got:
        assert got.count == 4
        assert got.colorinterp[3] == ColorInterp.alpha
        window = rasterio.windows.Window(10, 20, 200, 150)
        assert np.array_equal(got.read(), src.read(window=window))
        assert np.array_equal(got.dataset_mask(), src.dataset_mask(window=window))


async def test_user_defined_crs_nodata_and_band_properties(
    client: Client, files: dict[str, Path], tmp_path: Path
) -> None:
    async with client.get("/info", params={"url": client.up.url("laea.tif")}) as resp:  # type: ignore[attr-defined]
        info = await resp.json()
    assert info["crs_wkt"]  # a user-defined CRS is described, not "none"
    out = await _tif(client, "laea.tif", tmp_path, window="0,0,1300,900")
    _valid_cog(out)
    with rasterio.open(files["laea"]) as src, rasterio.open(out) as got:
        assert pyproj.CRS.from_wkt(got.crs.to_wkt()).equals(pyproj.CRS.from_wkt(src.crs.to_wkt()))
        assert got.crs.to_epsg() is None
        assert got.nodata == src.nodata == -32768
        assert got.descriptions == src.descriptions == ("height", "quality")
        assert got.scales == src.scales == (0.5, 1.0)
        assert got.offsets == src.offsets == (-10.0, 0.0)
        assert np.array_equal(got.read(), src.read())
        assert got.overviews(1) == src.overviews(1) == [2, 4]


async def test_reprojected_region_is_a_valid_cog_with_its_mask(
    server: RangeServer, files: dict[str, Path], tmp_path: Path
) -> None:
    up = Upstream.publish(server, {"m.tif": files["masked"].read_bytes()}, "geotiff-lib")
    async with cloudroi.open(up.url("m.tif")) as img:
        west, south, east, north = img.bounds_in(4326)
        region = await img.read_region((west, south, east, north), crs=4326, shape=(300, 260))
        body = region.render("tif").body
    path = tmp_path / "warped.tif"
    path.write_bytes(body)
    _valid_cog(path)
    with rasterio.open(io.BytesIO(body)) as got:
        assert got.crs.to_epsg() == 4326
        assert np.array_equal(got.dataset_mask() > 0, region.mask > 0)
        assert 0 < (got.dataset_mask() == 0).mean() < 1
