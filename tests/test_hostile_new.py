"""Hostile input against the day's new features: resampling kernels on big levels without
overviews, and what else a hostile pass found. Every case here failed before its fix."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator

import imagecodecs
import numpy as np
import pytest
import rasterio
import rasterio.transform
import tifffile
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.batch.many import read_many
from cloudroi.read import resampled
from cloudroi.read.jpeg_ijg import ijg9_available
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.upstream import Upstream

#: A level without overviews, 8192 x 8192 uint8 of zeros in 512 x 512 deflate tiles (256
#: tiles, about 70 kB): 64 M source pixels behind a 64 x 64 preview.
BIG = 8192


def _zero_tiles(n: int) -> Iterator[np.ndarray]:
    tile = np.zeros((512, 512), np.uint8)
    for _ in range(n):
        yield tile


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("hostile_new")
    big = root / "big.tif"
    tifffile.imwrite(
        big,
        _zero_tiles((BIG // 512) ** 2),
        shape=(BIG, BIG),
        dtype=np.uint8,
        tile=(512, 512),
        compression="zlib",
    )
    rng = np.random.default_rng(16)
    small = rng.integers(0, 6, (2, 300, 340), dtype=np.uint8)
    small[:, 40:90, 100:180] = 0
    noisy = root / "small.tif"
    tifffile.imwrite(
        noisy,
        small,
        photometric="minisblack",
        planarconfig="separate",
        tile=(64, 64),
        extratags=[(42113, "s", 0, "0", True)],  # GDAL_NODATA
    )
    extreme = root / "extreme.tif"
    values = np.ones((64, 64), np.float32)
    values[:32] = np.finfo(np.float32).max
    values[32:] = -np.finfo(np.float32).max
    tifffile.imwrite(extreme, values, tile=(32, 32))
    geo = root / "geo.tif"
    profile = {"driver": "GTiff", "width": 256, "height": 256, "count": 1, "dtype": "uint8"}
    transform = rasterio.transform.Affine(10, 0, 500000, 0, -10, 100000)
    with rasterio.open(geo, "w", crs="EPSG:32631", transform=transform, **profile) as dst:
        dst.write(np.ones((1, 256, 256), np.uint8))
    return {
        "geo.tif": geo.read_bytes(),
        "big.tif": big.read_bytes(),
        "small.tif": noisy.read_bytes(),
        "extreme.tif": extreme.read_bytes(),
    }


@pytest.fixture(scope="module")
def upstream(range_server: RangeServer, files: dict[str, bytes]) -> Upstream:
    return Upstream.publish(range_server, files, "hostile_new")


@pytest.mark.parametrize("kind", ["average", "mode", "cubic"])
async def test_kernel_on_a_big_level_holds_bounded_memory(upstream: Upstream, kind: str) -> None:
    # Before: the whole 64 MB source window was read, then converted to float64 (average:
    # 2.8 GB peak RSS, 11 s for 16384 x 16384 into 64 x 64). Now it is read in chunks.
    async with cloudroi.open(upstream.url("big.tif")) as img:
        tracemalloc.start()
        try:
            got = await img.read(out_shape=(64, 64), resampling=kind, max_tiles=1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got.shape == (1, 64, 64)
    assert not got.any()
    assert peak < 160 << 20, peak


async def test_chunked_kernel_budgets_cover_the_whole_window(upstream: Upstream) -> None:
    async with cloudroi.open(upstream.url("big.tif")) as img:
        before = upstream.gets("big.tif")
        with pytest.raises(cloudroi.LimitExceededError, match="tiles"):
            await img.read(out_shape=(64, 64), resampling="average", max_tiles=255)
        assert upstream.gets("big.tif") == before  # refused before any block


@pytest.mark.parametrize("kind", ["bilinear", "cubic", "average", "mode"])
async def test_chunked_kernel_equals_the_whole_window(
    upstream: Upstream, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cloudroi.open(upstream.url("small.tif")) as img:
        assert img.nodata == 0
        cases = [((0, 0, 340, 300), (37, 41)), ((-20, 13, 300, 280), (70, 90))]
        want = []
        for win, shape in cases:
            data = await img.read(win, out_shape=shape, resampling=kind, boundless=True)
            mask = await img.read_mask(win, out_shape=shape, resampling=kind, boundless=True)
            want.append((data, mask))
        monkeypatch.setattr(resampled, "WHOLE_CELLS", 1 << 13)
        monkeypatch.setattr(resampled, "CHUNK_CELLS", 1 << 12)
        for (win, shape), (data, mask) in zip(cases, want, strict=True):
            got = await img.read(win, out_shape=shape, resampling=kind, boundless=True)
            np.testing.assert_array_equal(got, data)
            got_mask = await img.read_mask(win, out_shape=shape, resampling=kind, boundless=True)
            np.testing.assert_array_equal(got_mask, mask)


async def test_service_counts_the_kernel_window(upstream: Upstream) -> None:
    # Before: the estimate counted the 64 x 64 output only, so a 32 MB request limit let a
    # preview hold the whole 64 MB source window and its float64 copy.
    cfg = ServiceConfig(
        allowed_sources=(upstream.root,), max_request_bytes=32 << 20, memory_budget_bytes=1 << 30
    )
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        params = {"url": upstream.url("big.tif"), "max_size": "64", "format": "npy"}
        async with client.get("/preview", params={**params, "resampling": "average"}) as resp:
            assert resp.status == 413, await resp.text()
            assert "would hold" in json.loads(await resp.read())["detail"]
        async with client.get("/preview", params=params) as resp:
            assert resp.status == 200  # nearest streams block by block
    finally:
        await client.close()
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,)))))
    await client.start_server()
    try:
        async with client.get("/preview", params={**params, "resampling": "average"}) as resp:
            assert resp.status == 200, await resp.text()
            got = np.load(io.BytesIO(await resp.read()))
        assert got.shape == (1, 64, 64)
        assert not got.any()
    finally:
        await client.close()


async def test_a_timed_out_kernel_stops_working(upstream: Upstream) -> None:
    # Before: the 504 came on time but the kernel ran on in its pool thread for the whole
    # window (16384^2 mode: 2.9 s of CPU in the 3 s after the answer); chunks stop it now.
    cfg = ServiceConfig(allowed_sources=(upstream.root,), request_timeout=0.5)
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        params = {"url": upstream.url("big.tif"), "max_size": "64", "resampling": "mode"}
        async with client.get("/preview", params={**params, "format": "npy"}) as resp:
            assert resp.status == 504
        cpu = time.process_time()
        await asyncio.sleep(1.5)
        assert time.process_time() - cpu < 0.5
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("path", "name", "extra"),
    [
        # every output -inf (stored as float32's lowest): the default stretch's histogram
        ("/preview", "small.tif", {"expression": "log(0*b1)", "max_size": "32"}),
        ("/preview", "small.tif", {"expression": "b1*1e309", "max_size": "32"}),
        # values spanning -max..max: the range overflows
        ("/statistics", "extreme.tif", {"histogram_bins": "7"}),
        ("/statistics", "small.tif", {"expression": "b1*1e38*1e270", "histogram_bins": "3"}),
        ("/preview", "extreme.tif", {"max_size": "32", "format": "png"}),
    ],
)
async def test_extreme_values_get_a_histogram(
    upstream: Upstream, path: str, name: str, extra: dict[str, str]
) -> None:
    # Before: 500 (numpy: "Too many bins for data range", or an overflow and IndexError).
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,)))))
    await client.start_server()
    try:
        async with client.get(path, params={"url": upstream.url(name), **extra}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.read()
    finally:
        await client.close()
    if name == "extreme.tif" and path == "/preview":
        # before the fix the span overflowed float32: the top half (max) rendered 0, not 255
        grey = imagecodecs.png_decode(body)[..., 0]
        assert (grey[:16] == 255).all()
        assert (grey[16:] == 0).all()
    if path == "/statistics":
        stats = json.loads(body)
        counts, edges = next(iter(stats.values()))["histogram"]
        assert sum(counts) == next(iter(stats.values()))["valid_pixels"] > 0
        assert all(np.isfinite(edges))
        assert edges == sorted(edges)


_IJG_CHILD = """
import sys
import imagecodecs, numpy as np
from cloudroi.read.jpeg_ijg import decode_ijg9
img = np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8)
base = bytes(imagecodecs.jpeg_encode(img, colorspace="rgb", outcolorspace="ycbcr"))
sof = base.index(b"\\xff\\xc0")
assert decode_ijg9(base, None) is not None
for h, w in ((65535, 65535), (65501, 32), (32, 65501)):
    b = bytearray(base)
    b[sof + 5 : sof + 9] = h.to_bytes(2, "big") + w.to_bytes(2, "big")
    print(h, w, decode_ijg9(bytes(b), None), flush=True)
"""


def test_ijg9_never_sees_a_frame_it_dies_of() -> None:
    # Before: a frame over IJG's 65500-pixel limit passed the validator and libjpeg's error
    # killed the process (SIGSEGV, found by fuzzing 5882 mutated streams in a child).
    if not ijg9_available():
        pytest.skip("jpeg-ijg9 extra not installed")
    run = subprocess.run(
        [sys.executable, "-c", _IJG_CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.split("\n")[:3] == ["65535 65535 None", "65501 32 None", "32 65501 None"]


def _stac_item() -> dict[str, object]:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "far",
        "bbox": [2.5, 0.1, 3.0, 0.5],
        "geometry": None,
        "properties": {"datetime": "2024-01-01T00:00:00Z", "proj:epsg": 32631},
        "assets": {"b": {"href": "http://127.0.0.1:9/x.tif", "type": "image/tiff"}},
    }


def test_lazy_stack_of_a_huge_grid_is_refused_or_lazy() -> None:
    from cloudroi.stac import lazy

    # Before: a 1e10 x 1e10 grid spent 17 s and 3.6 GB building its graph, then MemoryError;
    # chunksize=0 was a bare ValueError from range().
    with pytest.raises(cloudroi.LimitExceededError, match="chunks"):
        lazy.stack([_stac_item()], crs="EPSG:32631", resolution=10, bounds=[0, 0, 1e11, 1e11])
    with pytest.raises(cloudroi.BatchRequestError, match="chunksize"):
        lazy.stack([_stac_item()], crs="EPSG:32631", resolution=10, chunksize=0)
    # Chunks no item touches were filled at once (np.full): 2 x 128 MiB here. Now lazy.
    tracemalloc.start()
    try:
        arr = lazy.stack(
            [_stac_item()],
            crs="EPSG:32631",
            resolution=10,
            bounds=[0, 0, 81920, 40960],
            chunksize=4096,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert arr.shape == (1, 1, 4096, 8192)
    assert peak < 32 << 20, peak
    assert np.isnan(arr[0, 0, :2, :2].values).all()


async def test_a_region_grid_too_big_to_plan_is_refused(upstream: Upstream) -> None:
    # Before: numpy MemoryError (74 GiB of float64 coordinates for a 99805^2 grid at the
    # image's resolution; with overcommit, an allocation that could take the host down).
    url = upstream.url("geo.tif")
    with pytest.raises(cloudroi.LimitExceededError, match="output pixels"):
        await read_many([{"url": url, "bounds": [170, 80, 179, 89], "crs": "EPSG:4326"}])
    async with cloudroi.open(url) as img:
        with pytest.raises(cloudroi.LimitExceededError, match="output pixels"):
            await img.read_region([500000, 97440, 502560, 100000], shape=(10**6, 10**6))
        small = await img.read_region([500000, 97440, 502560, 100000], shape=(16, 16))
    assert small.data.shape == (1, 16, 16)


def test_files_fixture_is_small(files: dict[str, bytes]) -> None:
    assert len(files["big.tif"]) < 1 << 20  # 64 M pixels stay a small file to serve
