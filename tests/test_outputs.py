"""Output encoders: golden decodes with numpy, imagecodecs, tifffile and rasterio (GDAL)."""

from __future__ import annotations

import asyncio
import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile

from cloudroi.outputs import (
    GeoRef,
    encode,
    encode_async,
    encode_geotiff,
    encode_npy,
    format_for_path,
    render,
    render_bands,
)
from cloudroi.region.geometry import scaled_transform

GT = (500000.0, 10.0, 0.0, 4200000.0, 0.0, -10.0)


def ramp(bands: int, h: int, w: int, dtype: str) -> np.ndarray:
    values = np.arange(bands * h * w, dtype=np.float64).reshape(bands, h, w)
    if np.dtype(dtype).kind in "iu":
        values %= np.iinfo(dtype).max
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64"])
def test_npy_round_trips_every_dtype(dtype: str) -> None:
    data = ramp(3, 7, 5, dtype)
    back = np.load(io.BytesIO(encode_npy(data)), allow_pickle=False)
    assert back.dtype == data.dtype
    np.testing.assert_array_equal(back, data)


def read_with_rasterio(
    path: Path,
) -> tuple[np.ndarray, tuple[float, ...], int | None, float | None]:
    with rasterio.open(path) as ds:
        gt = ds.transform.to_gdal()
        epsg = ds.crs.to_epsg() if ds.crs else None
        return ds.read(), tuple(gt), epsg, ds.nodata


@pytest.mark.parametrize(
    ("bands", "h", "w", "dtype", "crs", "nodata"),
    [
        (1, 300, 280, "float32", 32633, -9999.0),  # tiled, projected
        (3, 40, 50, "uint8", 32633, None),  # strips, RGB
        (4, 20, 30, "uint16", 4326, 0),  # geographic
        (2, 10, 10, "float64", None, float("nan")),
    ],
)
def test_geotiff_keeps_pixels_and_georeferencing(
    tmp_path: Path, bands: int, h: int, w: int, dtype: str, crs: int | None, nodata: float | None
) -> None:
    data = ramp(bands, h, w, dtype)
    gt = GT if crs != 4326 else (10.0, 0.001, 0.0, 50.0, 0.0, -0.001)
    body = encode_geotiff(data, GeoRef(gt, crs, nodata))
    path = tmp_path / "out.tif"
    path.write_bytes(body)

    back = tifffile.imread(path)  # chunky (h, w, bands), as GDAL's COG driver writes it
    back = back.reshape(h, w, bands) if back.ndim == 2 else back
    np.testing.assert_array_equal(np.moveaxis(back, -1, 0), data)

    pixels, got_gt, got_crs, got_nodata = read_with_rasterio(path)
    np.testing.assert_array_equal(pixels, data)
    assert got_gt == pytest.approx(gt)
    assert got_crs == crs
    if nodata is None:
        assert got_nodata is None
    elif np.isnan(nodata):
        assert got_nodata is not None
        assert np.isnan(got_nodata)
    else:
        assert got_nodata == nodata


def test_geotiff_rotated_transform_uses_the_model_transformation(tmp_path: Path) -> None:
    gt = (1000.0, 2.0, 0.5, 2000.0, 0.25, -2.0)
    path = tmp_path / "rot.tif"
    path.write_bytes(encode_geotiff(ramp(1, 8, 9, "int16"), GeoRef(gt, 32633)))
    _, got_gt, got_crs, _ = read_with_rasterio(path)
    assert got_gt == pytest.approx(gt)
    assert got_crs == 32633


def test_geotiff_without_georeferencing_is_a_plain_tiff(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    path.write_bytes(encode_geotiff(ramp(1, 5, 5, "uint8")))
    with tifffile.TiffFile(path) as tif:
        assert 34735 not in tif.pages[0].tags
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio warns about the missing georeferencing
        with rasterio.open(path) as ds:
            assert ds.crs is None


def test_scaled_transform_covers_the_window() -> None:
    # 100 x 50 pixels of level 0 starting at (10, 20), written as 25 x 25 output pixels.
    gt = scaled_transform(GT, 10, 20, 100, 50, 25, 25)
    assert gt == (500100.0, 40.0, 0.0, 4199800.0, 0.0, -20.0)


def test_render_uint8_as_is_and_mask_as_alpha() -> None:
    data = ramp(3, 4, 6, "uint8")
    mask = np.full((4, 6), 255, np.uint8)
    mask[0, :] = 0
    out = render(data, mask=mask)
    assert out.rescale is None
    assert out.pixels.shape == (4, 6, 4)
    np.testing.assert_array_equal(out.pixels[:, :, :3], np.moveaxis(data, 0, -1))
    np.testing.assert_array_equal(out.pixels[:, :, 3], mask)
    black = render(data, mask=mask, alpha=False).pixels
    assert black.shape == (4, 6, 3)
    assert not black[0].any()
    np.testing.assert_array_equal(black[1:], np.moveaxis(data, 0, -1)[1:])


def test_render_rescales_other_dtypes() -> None:
    data = np.array([[[0.0, 500.0, 1000.0, 2000.0, np.nan, -9999.0]]], dtype=np.float32)
    explicit = render(data, rescale=(0.0, 1000.0))
    assert explicit.rescale == (0.0, 1000.0)
    assert explicit.pixels[0, :, 0].tolist() == [0, 127, 255, 255, 0, 0]  # 127.5 truncated
    # Without a range: the valid values' own range (NaN and nodata left out).
    auto = render(data, nodata=-9999.0)
    assert auto.rescale == (0.0, 2000.0)
    assert auto.pixels[0, :4, 0].tolist() == [0, 63, 127, 255]  # as TiTiler: truncated


def test_render_bands_rules() -> None:
    assert render_bands(1, None) == [1]
    assert render_bands(2, None) == [1]
    assert render_bands(3, None) == [1, 2, 3]
    assert render_bands(5, None) == [1, 2, 3]
    assert render_bands(4, None, alpha_band=4) == [1, 2, 3]
    assert render_bands(2, None, alpha_band=2) == [1]
    assert render_bands(5, [4, 2, 1]) == [4, 2, 1]
    with pytest.raises(ValueError, match="1 or 3"):
        render_bands(5, [1, 2])


def test_png_is_lossless_with_alpha() -> None:
    data = ramp(3, 33, 47, "uint8")
    mask = np.zeros((33, 47), np.uint8)
    mask[5:20, 7:30] = 255
    body, used = encode("png", data, mask=mask)
    assert used is None
    back = imagecodecs.png_decode(body)
    assert back.shape == (33, 47, 4)
    np.testing.assert_array_equal(back[:, :, :3], np.moveaxis(data, 0, -1))
    np.testing.assert_array_equal(back[:, :, 3], mask)
    grey, _ = encode("png", data[:1])
    np.testing.assert_array_equal(imagecodecs.png_decode(grey), data[0])


def smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 2, yy * 2, (xx + yy)]).astype(np.uint8)


def test_jpeg_and_webp_decode_close_to_the_source() -> None:
    data = smooth(64, 96)
    mask = np.full((64, 96), 255, np.uint8)
    mask[:8] = 0
    jpeg, _ = encode("jpeg", data, mask=mask, quality=95)
    back = imagecodecs.jpeg8_decode(jpeg)
    assert back.shape == (64, 96, 3)  # no alpha in JPEG: masked pixels are black instead
    assert np.abs(back[16:].astype(int) - np.moveaxis(data, 0, -1)[16:]).mean() < 3
    assert back[:6].mean() < 8
    webp, _ = encode("webp", data, mask=mask, quality=95)
    wback = imagecodecs.webp_decode(webp)
    assert wback.shape == (64, 96, 4)
    assert np.abs(wback[8:, :, :3].astype(int) - np.moveaxis(data, 0, -1)[8:]).mean() < 3
    assert (wback[:8, :, 3] == 0).all()
    assert (wback[8:, :, 3] == 255).all()
    grey_webp, _ = encode("webp", data[:1], quality=95)
    assert imagecodecs.webp_decode(grey_webp).shape == (64, 96, 3)


def test_unknown_format_and_wrong_band_counts_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        encode("gif", ramp(1, 2, 2, "uint8"))
    with pytest.raises(ValueError, match="1 or 3 bands"):
        encode("png", ramp(2, 2, 2, "uint8"))


def test_format_for_path() -> None:
    assert format_for_path("a/b.PNG") == "png"
    assert format_for_path("x.jpg") == "jpeg"
    assert format_for_path("x.tiff") == "tif"
    assert format_for_path("x.npy") == "npy"
    assert format_for_path("x.webp") == "webp"
    with pytest.raises(ValueError, match="cannot tell"):
        format_for_path("x.gif")


async def test_encode_async_runs_off_the_event_loop_thread() -> None:
    seen: list[str] = []
    loop_thread = threading.current_thread().name

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
            def wrapped():  # type: ignore[no-untyped-def]
                seen.append(threading.current_thread().name)
                return fn(*args, **kwargs)

            return super().submit(wrapped)

    with Recording(1, thread_name_prefix="encoder") as pool:
        body, _ = await encode_async("png", ramp(1, 16, 16, "uint8"), executor=pool)
    await asyncio.sleep(0)
    assert imagecodecs.png_decode(body).shape == (16, 16)
    assert seen
    assert all(name.startswith("encoder") for name in seen)
    assert loop_thread not in seen
