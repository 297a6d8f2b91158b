"""The default stretch: renderings of non-uint8 data without ``rescale`` use each band's
2nd..98th percentile of the dataset's statistics, computed once per object version and shared
by every tile, region and preview (and concurrent requests), so neighbouring tiles get the same
contrast. Checked against rio-tiler's ``Reader(path).statistics()`` on GDAL-written COGs served
by the real range server, over HTTP (the service), the library and the CLI."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt
import pytest
import rasterio
from affine import Affine
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from rasterio.windows import Window as RioWindow

import cloudroi
from cloudroi.service import ServiceConfig, create_app
from cloudroi.service.app import STATE
from cloudroi.testing import RangeServer
from tests.test_cli import cloudroi as run_cli
from tests.upstream import Upstream
from tests.warp_data import quiet, write_cog

Client = TestClient[Any, Any]
#: Web Mercator: the image's pixels are those of the zoom 10 tiles from (512, 500) on.
HALF = 20037508.342789244
TILE = 2 * HALF / 1024
GT = Affine(TILE / 256, 0.0, 0.0, 0.0, -TILE / 256, HALF - 500 * TILE)
Z, X, Y = 10, 513, 501
NODATA = -9999.0


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stretch")
    rng = np.random.default_rng(13)
    yy, xx = np.mgrid[0:1200, 0:1200]
    dem = (np.sin(xx / 70.0) * 400 + yy * 1.3 + 800 + rng.normal(0, 5, yy.shape)).astype(np.float32)
    dem[:300, :300] = NODATA
    dem[:80, 300:400] = 9000.0  # outliers the percentiles leave out
    invalid = dem == NODATA
    three = np.stack(
        [dem, np.where(invalid, NODATA, dem * 0.5 + 100), np.where(invalid, NODATA, -dem)]
    )
    grey = ((xx + 2 * yy) % 256).astype(np.uint8)[np.newaxis]
    return {
        "dem": write_cog(d / "dem.tif", dem[np.newaxis], "EPSG:3857", GT, NODATA),
        "three": write_cog(d / "three.tif", three.astype(np.float32), "EPSG:3857", GT, NODATA),
        "grey": write_cog(d / "grey.tif", grey, "EPSG:3857", GT, None),
        "empty": write_cog(
            d / "empty.tif", np.full((1, 600, 600), NODATA, np.float32), "EPSG:3857", GT, NODATA
        ),
    }


@pytest.fixture
def upstream(server: RangeServer, files: dict[str, Path]) -> Upstream:
    return Upstream.publish(
        server, {f"{k}.tif": p.read_bytes() for k, p in files.items()}, "stretch"
    )


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[Client]:
    config = ServiceConfig(allowed_sources=(upstream.root,))
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    yield client
    await client.close()


def _computed(client: Client) -> int:
    return int(client.server.app[STATE].context.stretch_computed)


def _rio_ranges(path: Path) -> list[tuple[float, float]]:
    from rio_tiler.io import Reader

    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        stats = r.statistics()
    return [(s.percentile_2, s.percentile_98) for s in stats.values()]


def _header(ranges: list[tuple[float, float]]) -> str:
    pairs = [f"{lo:.17g},{hi:.17g}" for lo, hi in ranges]
    return pairs[0] if len(set(pairs)) == 1 else ";".join(pairs)


def _manual(values: npt.NDArray[Any], lo: float, hi: float) -> npt.NDArray[np.uint8]:
    """``values`` mapped lo..hi -> 0..255 by hand, as rio-tiler's ``rescale_image`` does
    (float64, stored back in the data's dtype, truncated)."""
    scaled = (np.clip(values, lo, hi, dtype=np.float64) - lo) / np.float64(hi - lo) * 255
    stored = scaled.astype(values.dtype)
    return np.clip(np.nan_to_num(stored.astype(np.float64)), 0, 255).astype(np.uint8)


def _file_window(path: Path, col: int, row: int, w: int, h: int) -> npt.NDArray[Any]:
    with quiet(), rasterio.open(path) as ds:
        return np.asarray(ds.read(window=RioWindow(col, row, w, h)))


async def get(client: Client, path: str, **params: Any) -> tuple[int, CIMultiDict[str], bytes]:
    async with client.get(path, params={k: str(v) for k, v in params.items()}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


def _assert_rendered(png: bytes, expected: npt.NDArray[np.uint8], valid: Any) -> None:
    pixels = np.asarray(imagecodecs.png_decode(png))
    assert pixels.ndim == 3
    assert pixels.shape[2] in (2, 4)
    colour = np.moveaxis(pixels[:, :, :-1], -1, 0)
    alpha = pixels[:, :, -1]
    assert np.array_equal(alpha > 0, valid)
    assert np.array_equal(colour[:, valid], expected[:, valid])


# --------------------------------------------------------------------------------------------
# the service
# --------------------------------------------------------------------------------------------


async def test_adjacent_tiles_share_the_statistics_stretch(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    (lo, hi) = _rio_ranges(files["dem"])[0]
    url = upstream.url("dem.tif")
    seen = []
    for x in (X - 1, X):  # (512, 501) holds nodata and the outliers, (513, 501) neither
        status, headers, body = await get(
            client, f"/tiles/WebMercatorQuad/{Z}/{x}/{Y}.png", url=url
        )
        assert status == 200
        seen.append(headers["X-Cloudroi-Rescale"])
        # the tile's pixels are the file's own (the grid is the tile grid)
        values = _file_window(files["dem"], (x - 512) * 256, (Y - 500) * 256, 256, 256)
        _assert_rendered(body, _manual(values, lo, hi), values[0] != NODATA)
    assert seen == [_header([(lo, hi)])] * 2
    assert _computed(client) == 1


async def test_adjacent_regions_and_preview_share_the_stretch(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    (lo, hi) = _rio_ranges(files["dem"])[0]
    url = upstream.url("dem.tif")
    for col in (200, 456):
        status, headers, body = await get(
            client, "/region", url=url, window=f"{col},0,256,300", format="png"
        )
        assert status == 200
        assert headers["X-Cloudroi-Rescale"] == _header([(lo, hi)])
        values = _file_window(files["dem"], col, 0, 256, 300)
        _assert_rendered(body, _manual(values, lo, hi), values[0] != NODATA)
    status, headers, _ = await get(client, "/preview", url=url, max_size=300, format="png")
    assert status == 200
    assert headers["X-Cloudroi-Rescale"] == _header([(lo, hi)])
    status, headers, _ = await get(client, "/cog/preview.png", url=url, max_size=300)
    assert status == 200
    assert headers["X-Cloudroi-Rescale"] == _header([(lo, hi)])
    assert _computed(client) == 1


async def test_stretch_is_computed_once_for_concurrent_requests(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("dem.tif")
    paths = [f"/tiles/WebMercatorQuad/{Z}/{x}/{y}.png" for x in (513, 514) for y in (500, 501)]
    answers = await asyncio.gather(
        *(get(client, p, url=url) for p in paths),
        *(
            get(client, "/region", url=url, window=f"{c},600,200,200", format="png")
            for c in (0, 300, 600)
        ),
    )
    assert [a[0] for a in answers] == [200] * 7
    assert len({a[1]["X-Cloudroi-Rescale"] for a in answers}) == 1
    assert _computed(client) == 1
    # the answer's ETag is that of its parameters and the source's version, and stays valid
    _status, headers, _ = await get(client, paths[0], url=url)
    assert headers["ETag"] == answers[0][1]["ETag"]
    assert _computed(client) == 1


async def test_explicit_rescale_wins(client: Client, upstream: Upstream) -> None:
    url = upstream.url("dem.tif")
    status, headers, _ = await get(
        client, f"/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png", url=url, rescale="0,1000"
    )
    assert status == 200
    assert headers["X-Cloudroi-Rescale"] == "0,1000"
    status, headers, _ = await get(
        client, "/region", url=url, window="0,0,400,400", format="png", rescale="5,6"
    )
    assert status == 200
    assert headers["X-Cloudroi-Rescale"] == "5,6"
    status, headers, _body = await get(client, "/region", url=url, window="0,0,4,4", format="npy")
    assert status == 200
    assert "X-Cloudroi-Rescale" not in headers
    assert _computed(client) == 0


async def test_uint8_is_shown_as_it_is(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    url = upstream.url("grey.tif")
    status, headers, body = await get(
        client, "/region", url=url, window="100,100,64,64", format="png"
    )
    assert status == 200
    assert "X-Cloudroi-Rescale" not in headers
    grey = np.asarray(imagecodecs.png_decode(body))
    assert np.array_equal(grey, _file_window(files["grey"], 100, 100, 64, 64)[0])
    status, headers, _ = await get(client, f"/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png", url=url)
    assert status == 200
    assert "X-Cloudroi-Rescale" not in headers
    assert _computed(client) == 0


async def test_each_band_gets_its_own_range(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    ranges = _rio_ranges(files["three"])
    assert len(set(ranges)) == 3
    status, headers, body = await get(
        client, "/region", url=upstream.url("three.tif"), window="250,250,300,200", format="png"
    )
    assert status == 200
    assert headers["X-Cloudroi-Rescale"] == _header(ranges)
    values = _file_window(files["three"], 250, 250, 300, 200)
    expected = np.stack([_manual(values[b], *ranges[b]) for b in range(3)])
    _assert_rendered(body, expected, values[0] != NODATA)


async def test_all_nodata_falls_back_to_each_rendering(client: Client, upstream: Upstream) -> None:
    url = upstream.url("empty.tif")
    async with cloudroi.Context() as ctx, await cloudroi.open(url, context=ctx) as img:
        assert await img.default_rescale() is None
        assert await img.default_rescale() is None
        assert ctx.stretch_computed == 1  # its emptiness is kept too
    status, headers, body = await get(client, "/region", url=url, window="0,0,64,64", format="png")
    assert status == 200
    assert "X-Cloudroi-Rescale" not in headers
    assert not np.asarray(imagecodecs.png_decode(body))[:, :, -1].any()
    status, _, _ = await get(client, "/tiles/WebMercatorQuad/10/512/500.png", url=url)
    assert status == 200
    assert _computed(client) == 0  # the stretch cache is process-wide, as the block cache


# --------------------------------------------------------------------------------------------
# the library and the CLI
# --------------------------------------------------------------------------------------------


async def test_library_shares_one_computation(upstream: Upstream, files: dict[str, Path]) -> None:
    url = upstream.url("three.tif")
    async with cloudroi.Context() as ctx:
        images = [await cloudroi.open(url, context=ctx) for _ in range(2)]
        try:
            got = await asyncio.gather(*(img.default_rescale() for img in images * 4))
            assert ctx.stretch_computed == 1
            assert set(got) == {tuple(_rio_ranges(files["three"]))}
            assert await images[0].default_rescale(2) == (_rio_ranges(files["three"])[1],)
            assert ctx.stretch_computed == 2  # other bands, another stretch
        finally:
            for img in images:
                await img.close()


async def test_a_cancelled_computation_is_taken_over(
    server: RangeServer, upstream: Upstream, files: dict[str, Path]
) -> None:
    url = upstream.url("dem.tif")
    server.latency = 0.05
    async with cloudroi.Context() as ctx, await cloudroi.open(url, context=ctx) as img:
        first = asyncio.ensure_future(img.default_rescale())
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(img.default_rescale())
        await asyncio.sleep(0.02)
        first.cancel()
        assert await second == tuple(_rio_ranges(files["dem"]))
        assert first.cancelled()
        assert ctx.stretch_computed == 1


@pytest.mark.parametrize("command", ["read", "tile"])
def test_cli_uses_the_default_stretch(
    command: str, upstream: Upstream, files: dict[str, Path], tmp_path: Path
) -> None:
    (lo, hi) = _rio_ranges(files["dem"])[0]
    out = tmp_path / "out.png"
    where = ["--window", "256,256,256,256"] if command == "read" else [str(Z), str(X), str(Y)]
    result = run_cli(command, upstream.url("dem.tif"), *where, "-o", str(out))
    assert result.returncode == 0, result.stderr
    values = _file_window(files["dem"], 256, 256, 256, 256)
    grey = np.asarray(imagecodecs.png_decode(out.read_bytes()))
    assert np.array_equal(grey.reshape(256, 256, -1)[:, :, 0], _manual(values[0], lo, hi))


async def test_a_statistics_read_over_the_limits_falls_back(
    upstream: Upstream, files: dict[str, Path]
) -> None:
    """The statistics read (1024 x 1024 float32: about 58 MiB held) is held to the service's
    per-request limit; refused, each tile stretches itself as before, and nothing is cached."""
    config = ServiceConfig(allowed_sources=(upstream.root,), max_request_bytes=32 << 20)
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        url = upstream.url("dem.tif")
        for _ in range(2):
            status, headers, _ = await get(
                client, f"/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png", url=url
            )
            assert status == 200
            values = _file_window(files["dem"], 256, 256, 256, 256)[0]
            valid = values[values != NODATA]
            own = (float(valid.min()), float(valid.max()))
            assert headers["X-Cloudroi-Rescale"] == _header([own])
        assert _computed(client) == 0
    finally:
        await client.close()
