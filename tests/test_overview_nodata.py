"""The dataset's nodata applies to every level, as GDAL applies it: a file whose overview IFDs
carry no GDAL_NODATA tag (only the full-resolution IFD does) still masks nodata in its
overviews, in read_mask, resampled reads and the service's previews."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.service import ServiceConfig, create_app

NODATA = -9999.0


def _write(path: Path, subifds: bool) -> np.ndarray:
    """float64, nodata in the top-left quarter, two overviews without GDAL_NODATA."""
    data = np.random.default_rng(7).uniform(0, 100, (512, 512))
    data[:128, :128] = NODATA
    tag = [(42113, "s", 0, f"{NODATA:g}", True)]
    with tifffile.TiffWriter(path) as w:
        w.write(data, tile=(64, 64), extratags=tag, subifds=2 if subifds else None)
        for step in (2, 4):
            w.write(np.ascontiguousarray(data[::step, ::step]), tile=(64, 64), subfiletype=1)
    return data


@pytest.mark.parametrize("subifds", [False, True], ids=["ifds", "subifds"])
async def test_overview_levels_mask_the_dataset_nodata(tmp_path: Path, subifds: bool) -> None:
    path = tmp_path / "ov.tif"
    _write(path, subifds)
    with tifffile.TiffFile(path) as tf:  # the premise: overviews really lack the tag
        pages = [tf.pages[0], *(tf.pages[0].pages if subifds else tf.pages[1:])]
        assert [42113 in p.tags for p in pages] == [True, False, False]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not georeferenced
        with rasterio.open(path) as ds:
            assert ds.overviews(1) == [2, 4]
            refs = {s: ds.dataset_mask(out_shape=(s, s)) for s in (512, 256, 128, 100)}
    async with cloudroi.open(str(path)) as img:
        assert img.levels == [(512, 512), (256, 256), (128, 128)]
        for level, size in enumerate((512, 256, 128)):
            mask = await img.read_mask(level=level)
            assert np.array_equal(mask.reshape(size, size), refs[size]), level
        whole = (0, 0, 512, 512)
        for size in (128, 100):
            mask = await img.read_mask(window=whole, out_shape=(size, size))
            assert np.array_equal(mask.reshape(size, size), refs[size]), size


async def test_preview_of_overviews_is_transparent_at_nodata(tmp_path: Path) -> None:
    path = tmp_path / "ov.tif"
    _write(path, False)
    app = create_app(ServiceConfig(allowed_sources=(str(tmp_path),)))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        query = {"url": str(path), "max_size": "128", "format": "png"}
        async with client.get("/preview", params=query) as resp:
            assert resp.status == 200, await resp.text()
            grey_alpha = np.asarray(imagecodecs.png_decode(await resp.read()))
    finally:
        await client.close()
    assert grey_alpha.shape == (128, 128, 2)  # read from the 4x overview
    alpha = grey_alpha[..., 1]
    assert (alpha[:32, :32] == 0).all()
    assert (alpha[32:, :] == 255).all()
    assert (alpha[:, 32:] == 255).all()
