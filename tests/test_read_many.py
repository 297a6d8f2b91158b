"""``cloudroi.read_many`` over HTTP from the range server: the same pixels as single
``Image.read``/``read_region`` calls and as rasterio (GDAL) reading the same GDAL-written files;
each file opened once and neighbouring windows fetched in shared GETs; bad entries as typed
errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window as RioWindow

import cloudroi
from cloudroi.errors import (
    BandError,
    BatchRequestError,
    CloudROIError,
    SourceNotFoundError,
    WindowError,
)
from cloudroi.testing import RangeServer
from tests.warp_data import texture, write_cog


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("many")
    t = texture(1024, 1280, 1)
    u16 = np.stack([t.astype(np.uint16) * 3, texture(1024, 1280, 2).astype(np.uint16)])
    u16[:, :40, :40] = 9999
    rgb = np.stack([texture(900, 1100, s) for s in (3, 4, 5)])
    utm = Affine(10.0, 0, 500000.0, 0, -10.0, 4600000.0)
    geo = Affine(0.0001, 0, 12.0, 0, -0.0001, 45.0)
    return {
        "u16": write_cog(d / "u16.tif", u16, "EPSG:32633", utm, 9999),
        "rgb": write_cog(d / "rgb.tif", rgb, "EPSG:4326", geo, None),
    }


def _serve(server: RangeServer, files: dict[str, Path], tag: str) -> dict[str, str]:
    out = {}
    for k, p in files.items():
        server.add(f"/many-{tag}/{p.name}", p.read_bytes())
        out[k] = server.url(f"/many-{tag}/{p.name}")
    return out


def _chips(n: int, seed: int) -> list[tuple[str, list[int]]]:
    rng = np.random.default_rng(seed)
    sizes = {"u16": (1280, 1024), "rgb": (1100, 900)}
    out = []
    for i in range(n):
        k = "u16" if i % 2 else "rgb"
        w, h = sizes[k]
        out.append((k, [int(rng.integers(0, w - 64)), int(rng.integers(0, h - 64)), 64, 64]))
    return out


async def test_windows_equal_single_reads_and_rasterio(
    server: RangeServer, files: dict[str, Path]
) -> None:
    urls = _serve(server, files, "eq")
    chips = _chips(30, 7)
    reqs: list[Any] = [(urls[k], win) for k, win in chips]
    reqs.append({"url": urls["u16"], "window": [0, 0, 1280, 1024], "out_shape": (100, 128)})
    reqs.append({"url": urls["rgb"], "window": [1000, 800, 200, 200], "boundless": True})
    reqs.append({"url": urls["rgb"], "window": [8, 8, 50, 40], "bands": [3, 1]})
    smooth = {"url": urls["u16"], "window": [0, 0, 1280, 1024], "out_shape": (100, 128)}
    reqs.append({**smooth, "resampling": "average"})
    got = await cloudroi.read_many(reqs)
    assert len(got) == len(reqs)
    singles = {}
    for k, url in urls.items():
        singles[k] = await cloudroi.open(url)
    try:
        for (k, win), arr in zip(chips, got, strict=False):
            want = await singles[k].read(win)
            assert isinstance(arr, np.ndarray)
            assert arr.dtype == want.dtype
            np.testing.assert_array_equal(arr, want)
            with rasterio.open(files[k]) as ds:
                np.testing.assert_array_equal(arr, ds.read(window=RioWindow(*win)))
        small = await singles["u16"].read(None, out_shape=(100, 128))
        np.testing.assert_array_equal(got[-4], small)
        edge = await singles["rgb"].read([1000, 800, 200, 200], boundless=True)
        np.testing.assert_array_equal(got[-3], edge)
        assert got[-3].shape == (3, 200, 200)
        average = await singles["u16"].read(None, out_shape=(100, 128), resampling="average")
        np.testing.assert_array_equal(got[-1], average)
        assert not np.array_equal(average, small)
    finally:
        for img in singles.values():
            await img.close()
    with rasterio.open(files["rgb"]) as ds:
        want = ds.read([3, 1], window=RioWindow(8, 8, 50, 40))
    np.testing.assert_array_equal(got[-2], want)


async def test_regions_equal_read_region(server: RangeServer, files: dict[str, Path]) -> None:
    urls = _serve(server, files, "region")
    boxes = [
        (12.01, 44.95, 12.03, 44.97),
        (12.02, 44.96, 12.05, 44.99),
        (11.99, 44.98, 12.01, 45.01),  # reaches outside the image: filled
    ]
    reqs: list[Any] = [
        {"url": urls["rgb"], "bounds": b, "crs": "EPSG:4326", "out_shape": (80, 96)} for b in boxes
    ]
    # the UTM file read on a WGS84 grid: reprojected
    reqs.append(
        {
            "url": urls["u16"],
            "bbox": (15.0, 41.44, 15.05, 41.48),
            "crs": 4326,
            "out_shape": (64, 64),
        }
    )
    got = await cloudroi.read_many(reqs)
    async with await cloudroi.open(urls["rgb"]) as img:
        for b, arr in zip(boxes, got, strict=False):
            want = await img.read_region(b, 4326, shape=(80, 96))
            np.testing.assert_array_equal(arr, want.data)
    async with await cloudroi.open(urls["u16"]) as img:
        want = await img.read_region((15.0, 41.44, 15.05, 41.48), 4326, shape=(64, 64))
        np.testing.assert_array_equal(got[-1], want.data)
        assert (got[-1] != 0).any()


async def test_each_file_opened_once_and_neighbours_share_gets(
    server: RangeServer, files: dict[str, Path]
) -> None:
    urls = _serve(server, files, "traffic")
    # a 4x4 grid of block-aligned 256x256 chips (the top-left 1024x1024 of u16), shuffled, and
    # some random chips of rgb: in the file, rows of blocks lie one after another
    grid = [[c * 256, r * 256, 256, 256] for r in range(4) for c in range(4)]
    rng = np.random.default_rng(3)
    reqs: list[Any] = [(urls["u16"], grid[i]) for i in rng.permutation(len(grid))]
    reqs += [(urls["rgb"], win) for k, win in _chips(20, 5) if k == "rgb"]
    server.reset()
    got = await cloudroi.read_many(reqs)
    assert all(isinstance(a, np.ndarray) for a in got)
    u16_path = "/" + urls["u16"].split("/", 3)[3]
    rgb_path = "/" + urls["rgb"].split("/", 3)[3]
    u16_log = server.requests_for(u16_path)
    rgb_log = server.requests_for(rgb_path)
    # one open each: one GET starting at byte 0
    assert sum(1 for e in u16_log if e.range and e.range.startswith("bytes=0-")) == 1
    assert sum(1 for e in rgb_log if e.range and e.range.startswith("bytes=0-")) == 1
    # the 16 blocks of u16's 4 block rows (x 2 bands, pixel interleaved: one block each) lie in
    # 4 runs of the file: 4 GETs at most, not 16
    assert len(u16_log) - 1 <= 4
    # the same chips read one by one (one Image, so the open is paid once) need 16 GETs
    server.reset()
    async with await cloudroi.open(urls["u16"]) as img:
        img.context.block_cache.clear()
        img.context.decoded_cache.clear()
        for win in grid:
            await img.read(win)
    singles = len(server.requests_for(u16_path)) - 1
    assert singles == 16
    # every block once: no more bytes than the blocks' total (+ the header)
    with rasterio.open(files["u16"]) as ds:
        assert ds.block_size(1, 0, 0) > 0
    total = sum(e.body_bytes for e in u16_log)
    assert total <= files["u16"].stat().st_size


async def test_bad_entries_fail_alone_when_returned(
    server: RangeServer, files: dict[str, Path]
) -> None:
    urls = _serve(server, files, "errors")
    missing = server.url("/many-errors/none.tif")
    reqs: list[Any] = [
        (urls["u16"], [0, 0, 32, 32]),
        (urls["u16"], [1270, 0, 32, 32]),  # outside, not boundless
        (missing, [0, 0, 8, 8]),
        {"url": urls["rgb"], "window": [0, 0, 8, 8], "bands": [4]},
        {"url": urls["u16"], "bounds": (0, 0, 1, 1), "crs": "EPSG:not-a-crs"},
        (urls["rgb"], [0, 0, 16, 16]),
    ]
    got = await cloudroi.read_many(reqs, errors="return")
    assert isinstance(got[0], np.ndarray)
    assert got[0].shape == (2, 32, 32)
    assert isinstance(got[1], WindowError)
    assert isinstance(got[2], SourceNotFoundError)
    assert isinstance(got[3], BandError)
    assert isinstance(got[4], CloudROIError)
    assert isinstance(got[5], np.ndarray)
    assert got[5].shape == (3, 16, 16)
    # raise: the first failure in request order, typed, naming the request
    with pytest.raises(WindowError) as info:
        await cloudroi.read_many(reqs)
    assert "request 1" in " ".join(getattr(info.value, "__notes__", []))


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"window": [0, 0, 1, 1]}, "url"),
        ({"url": "x", "window": [0, 0, 1, 1], "bounds": [0, 0, 1, 1]}, "exactly one"),
        ({"url": "x"}, "exactly one"),
        ({"url": "x", "window": [0, 0, 1]}, "window"),
        ({"url": "x", "window": [0, 0, 1.5, 1]}, "window"),
        ({"url": "x", "bounds": [0, 0, "a", 1]}, "bounds"),
        ({"url": "x", "window": [0, 0, 1, 1], "out_shape": [0, 3]}, "out_shape"),
        ({"url": "x", "window": [0, 0, 1, 1], "bands": []}, "bands"),
        ({"url": "x", "window": [0, 0, 1, 1], "crs": 4326}, "crs"),
        ({"url": "x", "window": [0, 0, 1, 1], "colour": 1}, "unknown"),
        (42, "ChipRequest"),
    ],
)
async def test_malformed_entries_raise_before_any_request(
    server: RangeServer, files: dict[str, Path], entry: Any, words: str
) -> None:
    urls = _serve(server, files, "malformed")
    server.reset()
    with pytest.raises(BatchRequestError, match=words) as info:
        await cloudroi.read_many([(urls["u16"], [0, 0, 4, 4]), entry])
    assert info.value.index == 1
    assert server.request_count == 0


async def test_a_dataframe_of_requests(server: RangeServer, files: dict[str, Path]) -> None:
    pd = pytest.importorskip("pandas")
    urls = _serve(server, files, "frame")
    frame = pd.DataFrame(
        {
            "url": [urls["u16"], urls["rgb"], urls["rgb"]],
            "window": [(0, 0, 16, 16), None, (5, 5, 10, 10)],
            "bbox": [None, (12.0, 44.98, 12.01, 44.99), None],
            "crs": [None, "EPSG:4326", None],
            "out_shape": [None, (20, 20), None],
        }
    )
    got = await cloudroi.read_many(frame)
    assert [a.shape for a in got] == [(2, 16, 16), (3, 20, 20), (3, 10, 10)]  # type: ignore[union-attr]
    with rasterio.open(files["rgb"]) as ds:
        np.testing.assert_array_equal(got[2], ds.read(window=RioWindow(5, 5, 10, 10)))


def test_dask_chips_open_each_file_once_per_process(
    server: RangeServer, files: dict[str, Path]
) -> None:
    """The Dask counterpart (threaded scheduler: every task in this process): the same arrays
    as read_many, each file opened once by the process's runtime however many tasks read it."""
    pytest.importorskip("dask")
    from cloudroi.batch.lazy import chips, read_many_dask
    from cloudroi.xarray import runtime

    urls = _serve(server, files, "dask")
    reqs: list[Any] = [{"url": urls[k], "window": win} for k, win in _chips(24, 11)]
    u16 = [r for r in reqs if r["url"] == urls["u16"]]
    opens = runtime.counters().opens
    server.reset()
    arr = chips(u16, reads_per_task=4)  # dtype and bands from the first file: one open
    assert arr.shape == (len(u16), 2, 64, 64)
    assert arr.numblocks[0] == 3
    got = arr.compute(scheduler="threads")
    assert runtime.counters().opens - opens == 1  # one open, shared by the client and 3 tasks
    want = cloudroi.read_many(u16)
    np.testing.assert_array_equal(got, np.stack(_run(want)))
    # ragged requests and errors returned in their slots
    mixed = [*reqs, (urls["u16"], [1270, 0, 32, 32])]
    out = read_many_dask(mixed, errors="return", reads_per_task=5, scheduler="threads")
    assert isinstance(out[-1], WindowError)
    for a, b in zip(out[:-1], _run(cloudroi.read_many(reqs)), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WindowError):
        read_many_dask(mixed, scheduler="threads")


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)
