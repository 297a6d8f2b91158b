"""The region service end to end: aiohttp's test server on a real socket, the real range server
and moto's S3 server as upstreams, outputs decoded with numpy, imagecodecs, tifffile and rasterio,
and every error status provoked for real."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import rasterio
import tifffile
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.sample import SAMPLE_NAME, sample_cog_bytes
from cloudroi.service import CoreRequest, ServiceConfig, ServiceState, create_app, handle
from cloudroi.service.app import start_site
from cloudroi.service.config import settings_table
from cloudroi.testing import Fault, RangeServer
from tests.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
RGB_GT = (500000.0, 10.0, 0.0, 4200000.0, 0.0, -10.0)
DEM_GT = (10.0, 0.001, 0.0, 50.0, 0.0, -0.001)
NODATA = -9999.0


def rgb_pixels() -> np.ndarray:
    yy, xx = np.mgrid[0:500, 0:600]
    return np.stack([xx % 251, yy % 241, (xx + 2 * yy) % 239]).astype(np.uint8)


def rgb_mask() -> np.ndarray:
    mask = np.full((500, 600), 255, np.uint8)
    mask[:50, :80] = 0
    return mask


def dem_pixels() -> np.ndarray:
    yy, xx = np.mgrid[0:400, 0:500]
    dem = (xx * 1.5 + yy * 0.25).astype(np.float32)
    dem[200:260, 300:380] = NODATA
    return dem


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    j2k = io.BytesIO()
    tifffile.imwrite(j2k, rgb_pixels()[0, :64, :64], tile=(32, 32), compression="jpeg2000")
    plain = io.BytesIO()
    tifffile.imwrite(plain, rgb_pixels()[0, :64, :64], tile=(32, 32), compression="zlib")
    return {
        "plain.tif": plain.getvalue(),
        "rgb.tif": write_cog(rgb_pixels(), tile=128, mask=rgb_mask(), epsg=32633, transform=RGB_GT),
        "dem.tif": write_cog(
            dem_pixels(), tile=128, predictor=3, nodata=NODATA, epsg=4326, transform=DEM_GT
        ),
        "j2k.tif": j2k.getvalue(),
    }


@pytest.fixture
def upstream(server: RangeServer, images: dict[str, bytes]) -> Upstream:
    return Upstream.publish(server, images, "svc")


Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(upstream: Upstream) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(**overrides: Any) -> Client:
        overrides.setdefault("allowed_sources", (upstream.root,))
        client = TestClient(TestServer(create_app(ServiceConfig(**overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


async def get(client: Client, path: str, **params: Any) -> tuple[int, CIMultiDict[str], bytes]:
    async with client.get(path, params={k: str(v) for k, v in params.items()}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


async def problem(client: Client, path: str, status: int, **params: Any) -> dict[str, Any]:
    got, headers, body = await get(client, path, **params)
    assert got == status, body
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Cache-Control"] == "no-store"
    doc = json.loads(body)
    assert doc["status"] == status
    assert doc["type"] == "about:blank"
    assert doc["title"]
    assert doc["detail"]
    return doc


# --------------------------------------------------------------------------------------------
# endpoints
# --------------------------------------------------------------------------------------------


async def test_healthz_never_touches_storage(client: Client, upstream: Upstream) -> None:
    status, headers, body = await get(client, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    assert headers["Cache-Control"] == "no-store"
    assert upstream.requests() == []


async def test_info(client: Client, upstream: Upstream) -> None:
    status, headers, body = await get(client, "/info", url=upstream.url("rgb.tif"))
    assert status == 200
    doc = json.loads(body)
    assert (doc["width"], doc["height"], doc["count"], doc["dtype"]) == (600, 500, 3, "uint8")
    assert doc["levels"] == [[600, 500], [300, 250], [150, 125], [75, 63]]
    assert doc["overviews"] == 3
    assert doc["crs"] == 32633
    assert doc["transform"] == list(RGB_GT)
    assert doc["bounds"] == [500000.0, 4195000.0, 506000.0, 4200000.0]
    assert doc["has_mask"] is True
    assert doc["block_shape"] == [128, 128]
    assert re.fullmatch(r'"[0-9a-f]{32}"', headers["ETag"])
    assert headers["Cache-Control"] == "public, max-age=3600"
    dem = json.loads((await get(client, "/info", url=upstream.url("dem.tif")))[2])
    assert (dem["nodata"], dem["crs"], dem["dtype"]) == (NODATA, 4326, "float32")


async def test_etag_and_conditional_requests(client: Client, upstream: Upstream) -> None:
    params = {"url": upstream.url("rgb.tif"), "window": "0,0,256,256"}
    _, headers, body = await get(client, "/region", **params)
    etag = headers["ETag"]
    _, again, body2 = await get(client, "/region", **params)
    assert again["ETag"] == etag
    assert body2 == body
    _, other, _ = await get(client, "/region", **{**params, "window": "0,0,256,255"})
    assert other["ETag"] != etag
    before = len(upstream.requests())
    async with client.get("/region", params=params, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
        assert resp.headers["ETag"] == etag
        assert await resp.read() == b""
    # A 304 costs only the open (the source's ETag must be checked), no tile reads.
    assert len(upstream.requests()) - before == 1


async def test_keyed_answers_are_private_to_shared_caches(
    make_client: MakeClient, upstream: Upstream
) -> None:
    """With API keys a shared cache (a CDN in front of the service) must not hand a keyed answer
    to a client without a key: 200s and 304s are ``private`` and vary on the key headers. Without
    keys they stay ``public``."""
    key = "k-3c1f0e9a7b5d2468"
    keyed = await make_client(api_keys=(key,))
    open_ = await make_client()
    for path, params in (
        ("/info", {}),
        ("/region", {"window": "0,0,64,64"}),
        ("/preview", {"max_size": "64"}),
        ("/point", {"col": "3", "row": "4"}),
    ):
        query = {"url": upstream.url("rgb.tif"), **params}
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            async with keyed.get(path, params=query, headers=headers) as resp:
                assert resp.status == 200, (path, await resp.text())
                assert resp.headers["Cache-Control"] == "private, max-age=3600", path
                varies = {v.strip().lower() for v in resp.headers["Vary"].split(",")}
                assert {"x-api-key", "authorization"} <= varies, path
                etag = resp.headers["ETag"]
            async with keyed.get(
                path, params=query, headers={**headers, "If-None-Match": etag}
            ) as resp:
                assert resp.status == 304, path
                assert resp.headers["Cache-Control"] == "private, max-age=3600", path
                assert "x-api-key" in resp.headers["Vary"].lower(), path
        async with keyed.get(path, params=query) as resp:
            assert resp.status == 401
            assert resp.headers["Cache-Control"] == "no-store"
        async with open_.get(path, params=query) as resp:
            assert resp.status == 200, (path, await resp.text())
            assert resp.headers["Cache-Control"] == "public, max-age=3600", path
            assert "Vary" not in resp.headers, path
    async with keyed.get("/openapi.json", headers={"X-API-Key": key}) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "private, max-age=300"
        assert "x-api-key" in resp.headers["Vary"].lower()
    async with open_.get("/openapi.json") as resp:
        assert resp.headers["Cache-Control"] == "public, max-age=300"


async def test_region_png_is_the_window_with_the_mask_as_alpha(
    client: Client, upstream: Upstream
) -> None:
    status, headers, body = await get(
        client, "/region", url=upstream.url("rgb.tif"), window="40,30,200,100"
    )
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    png = imagecodecs.png_decode(body)
    assert png.shape == (100, 200, 4)
    expected = rgb_pixels()[:, 30:130, 40:240]
    np.testing.assert_array_equal(np.moveaxis(png[:, :, :3], -1, 0), expected)
    np.testing.assert_array_equal(png[:, :, 3], rgb_mask()[30:130, 40:240])


async def test_region_npy_keeps_every_band_and_the_dtype(
    client: Client, upstream: Upstream
) -> None:
    status, headers, body = await get(
        client, "/region", url=upstream.url("rgb.tif"), window="300,200,300,300", format="npy"
    )
    assert status == 200
    assert headers["Content-Type"] == "application/x-npy"
    arr = np.load(io.BytesIO(body), allow_pickle=False)
    np.testing.assert_array_equal(arr, rgb_pixels()[:, 200:500, 300:600])
    _, _, body = await get(
        client,
        "/region",
        url=upstream.url("rgb.tif"),
        window="10,20,30,40",
        level=1,
        bands="3,1",
        format="npy",
    )
    arr = np.load(io.BytesIO(body))
    np.testing.assert_array_equal(arr, rgb_pixels()[[2, 0], ::2, ::2][:, 20:60, 10:40])


async def test_multirange_setting_asks_upstream_once_per_read(
    make_client: MakeClient, upstream: Upstream
) -> None:
    client = await make_client(multirange=True)
    upstream.server.reset()
    status, _, body = await get(
        client, "/region", url=upstream.url("rgb.tif"), window="300,100,200,300", format="npy"
    )
    assert status == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), rgb_pixels()[:, 100:400, 300:500])
    multi = [e for e in upstream.server.log if e.range and "," in e.range]
    assert multi  # the window's 3 block rows came in multi-range GETs
    assert all(e.status == 206 for e in multi)
    assert ServiceConfig.from_env({"CLOUDROI_MULTIRANGE": "true"}).multirange
    assert not ServiceConfig.from_env({}).multirange


async def test_region_geotiff_keeps_georeferencing(
    client: Client, upstream: Upstream, tmp_path: Path
) -> None:
    status, headers, body = await get(
        client,
        "/region",
        url=upstream.url("dem.tif"),
        window="50,60,200,100",
        level=1,
        format="tif",
    )
    assert status == 200
    assert headers["Content-Type"] == "image/tiff; application=geotiff"
    path = tmp_path / "region.tif"
    path.write_bytes(body)
    expected = dem_pixels()[::2, ::2][60:160, 50:250]
    np.testing.assert_array_equal(tifffile.imread(path), expected)
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), expected)
        assert ds.crs.to_epsg() == 4326
        assert ds.nodata == NODATA
        # Level 1 pixels are twice the size; the window starts at level-0 pixel (100, 120).
        assert ds.transform.to_gdal() == pytest.approx(
            (10.0 + 100 * 0.001, 0.002, 0.0, 50.0 - 120 * 0.001, 0.0, -0.002)
        )


async def test_region_bbox_and_boundless_bbox(client: Client, upstream: Upstream) -> None:
    url = upstream.url("dem.tif")
    status, _, body = await get(
        client, "/region", url=url, bbox="10.1,49.75,10.3,49.9", format="npy"
    )
    assert status == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(body))[0], dem_pixels()[100:250, 100:300])
    # Half outside the image: filled with nodata, transparent in PNG.
    bbox = "9.95,49.95,10.05,50.05"
    _, _, body = await get(client, "/region", url=url, bbox=bbox, format="npy")
    arr = np.load(io.BytesIO(body))[0]
    assert arr.shape == (100, 100)
    assert (arr[:50] == NODATA).all()
    assert (arr[:, :50] == NODATA).all()
    np.testing.assert_array_equal(arr[50:, 50:], dem_pixels()[:50, :50])
    _, headers, body = await get(client, "/region", url=url, bbox=bbox, rescale="0,100")
    png = imagecodecs.png_decode(body)
    assert png.shape == (100, 100, 2)
    assert (png[:50, :, 1] == 0).all()
    assert (png[50:, 50:, 1] == 255).all()
    assert headers["X-Cloudroi-Rescale"] == "0,100"


async def test_nodata_becomes_alpha(client: Client, upstream: Upstream) -> None:
    url = upstream.url("dem.tif")
    for params in (
        {"window": "280,190,120,90"},
        {"window": "140,95,60,45", "level": 1},
        {"window": "0,0,500,400", "width": 125},
    ):
        status, _, body = await get(client, "/region", url=url, rescale="0,900", **params)
        assert status == 200
        png = imagecodecs.png_decode(body)
        win = tuple(int(v) for v in params["window"].split(","))
        level = int(params.get("level", 0))
        out_shape = (png.shape[0], png.shape[1]) if "width" in params else None
        async with cloudroi.open(url) as img:
            mask = await img.read_mask(win, level, out_shape=out_shape)
            data = await img.read(win, level, out_shape=out_shape)
        assert (mask == 0).any()
        np.testing.assert_array_equal(png[:, :, 1], mask)
        expected = np.clip(np.trunc(data[0].astype(np.float64) * 255 / 900), 0, 255)
        valid = mask > 0
        np.testing.assert_array_equal(png[:, :, 0][valid], expected[valid])


async def test_region_width_height_read_the_best_overview(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("rgb.tif")
    status, _, body = await get(
        client, "/region", url=url, window="0,0,600,500", width=150, format="npy"
    )
    assert status == 200
    arr = np.load(io.BytesIO(body))
    assert arr.shape == (3, 125, 150)
    async with cloudroi.open(url) as img:
        expected = await img.read((0, 0, 600, 500), out_shape=(125, 150))
        assert img.stats.tile_requests <= 2  # from the smallest overview, not level 0
    np.testing.assert_array_equal(arr, expected)
    _, _, body = await get(
        client, "/region", url=url, window="100,100,300,200", width=64, height=48, format="npy"
    )
    assert np.load(io.BytesIO(body)).shape == (3, 48, 64)


async def test_preview(client: Client, upstream: Upstream) -> None:
    url = upstream.url("rgb.tif")
    status, _headers, body = await get(client, "/preview", url=url, max_size=300)
    assert status == 200
    png = imagecodecs.png_decode(body)
    assert png.shape == (250, 300, 4)
    async with cloudroi.open(url) as img:
        expected = await img.read(out_shape=(250, 300))
    np.testing.assert_array_equal(np.moveaxis(png[:, :, :3], -1, 0), expected)
    # Only the overview's blocks were read (level 1 has 3 x 2 tiles, plus its mask's).
    tile_reads = [
        e for e in upstream.requests("rgb.tif") if e.range and not e.range.startswith("bytes=0-")
    ]
    assert 0 < len(tile_reads) <= 12


async def test_jpeg_and_webp(client: Client, upstream: Upstream) -> None:
    url = upstream.url("rgb.tif")
    expected = np.moveaxis(rgb_pixels()[:, 100:228, 100:228], 0, -1).astype(int)
    for fmt, decode, channels in (
        ("jpeg", imagecodecs.jpeg8_decode, 3),
        ("webp", imagecodecs.webp_decode, 4),
    ):
        status, headers, body = await get(
            client, "/region", url=url, window="100,100,128,128", format=fmt, quality=95
        )
        assert status == 200
        assert headers["Content-Type"] == f"image/{fmt}"
        img = decode(body)
        assert img.shape[:2] == (128, 128)
        assert img.shape[2] in (3, channels)  # an all-opaque alpha may be left out
        # Lossy codecs on a busy synthetic pattern: close on average, not exact.
        assert np.abs(img[:, :, :3].astype(int) - expected).mean() < 20


async def test_point(client: Client, upstream: Upstream) -> None:
    url = upstream.url("dem.tif")
    status, headers, body = await get(client, "/point", url=url, x="10.2505", y="49.8505")
    assert status == 200
    doc = json.loads(body)
    assert (doc["col"], doc["row"]) == (250, 149)
    assert doc["values"] == [float(dem_pixels()[149, 250])]
    assert doc["valid"] is True
    assert doc["x"] == pytest.approx(10.2505)
    assert "ETag" in headers
    doc = json.loads((await get(client, "/point", url=url, col=310, row=210))[2])
    assert doc["values"] == [NODATA]
    assert doc["valid"] is False
    doc = json.loads((await get(client, "/point", url=upstream.url("rgb.tif"), col=5, row=5))[2])
    assert doc["values"] == rgb_pixels()[:, 5, 5].tolist()
    assert doc["valid"] is False  # inside the masked corner


async def test_head_and_client_headers_are_not_forwarded(
    client: Client, upstream: Upstream
) -> None:
    seen: list[dict[str, str]] = []

    def record(request, etag):  # type: ignore[no-untyped-def]
        seen.append(dict(request.headers))

    upstream.server.fault = record
    secret = {
        "Authorization": "Bearer secret-token",
        "Cookie": "session=1",
        "X-Amz-Security-Token": "t",
    }
    params = {"url": upstream.url("rgb.tif"), "window": "0,0,64,64"}
    async with client.get("/region", params=params, headers=secret) as resp:
        assert resp.status == 200
    async with client.head("/region", params=params, headers=secret) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert await resp.read() == b""
    assert seen
    for headers in seen:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert "authorization" not in lowered
        assert "cookie" not in lowered
        assert "x-amz-security-token" not in lowered
        assert "secret-token" not in json.dumps(headers)


async def test_metrics_count_requests_and_upstream_traffic(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("rgb.tif")
    await get(client, "/region", url=url, window="0,0,256,256")
    await get(client, "/region", url=url, window="0,0,256,256")
    await get(client, "/info", url=upstream.url("missing.tif"))
    status, headers, body = await get(client, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    values = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE)
    }
    assert values['cloudroi_requests_total{endpoint="/region",status="200"}'] == 2
    assert values['cloudroi_requests_total{endpoint="/info",status="404"}'] == 1
    assert values['cloudroi_request_duration_seconds_count{endpoint="/region"}'] == 2
    assert values['cloudroi_request_duration_seconds_bucket{endpoint="/region",le="+Inf"}'] == 2
    # Requests of opens that failed (the 404) have no Image to count them.
    upstream_logs = [e for e in upstream.requests() if e.status != 404]
    assert values["cloudroi_upstream_requests_total"] == len(upstream_logs)
    assert values["cloudroi_upstream_bytes_total"] == sum(e.body_bytes for e in upstream_logs)
    # The second read was served from cache (decoded blocks, or compressed ones decoded again).
    cached = values["cloudroi_block_cache_hits_total"] + values["cloudroi_decoded_cache_hits_total"]
    assert cached > 0
    assert values["cloudroi_requests_in_flight"] == 0
    assert "# TYPE cloudroi_request_duration_seconds histogram" in text


async def test_source_replaced_mid_read_is_read_again_from_its_new_version(
    client: Client, upstream: Upstream
) -> None:
    name = upstream.prefix + "rgb.tif"
    newer = write_cog(255 - rgb_pixels(), tile=128, mask=rgb_mask(), epsg=32633, transform=RGB_GT)
    swapped: list[bool] = []

    def replace_after_first_tile(request, etag):  # type: ignore[no-untyped-def]
        rng = request.headers.get("Range", "")
        if request.path == "/" + name and not rng.startswith("bytes=0-") and not swapped:
            swapped.append(True)
            upstream.server.add(name, newer)  # this request still gets the old bytes
        return None

    upstream.server.fault = replace_after_first_tile
    # Blocks of rows 0 and 3: far apart in the file, so two tile GETs; the second sees a new
    # ETag (412), and the whole read starts again from the new version.
    status, _, body = await get(
        client, "/region", url=upstream.url("rgb.tif"), window="0,0,128,500", format="npy"
    )
    assert swapped
    assert status == 200, body
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), 255 - rgb_pixels()[:, :, :128])
    statuses = [e.status for e in upstream.requests("rgb.tif")]
    assert 412 in statuses


# --------------------------------------------------------------------------------------------
# errors, each provoked for real
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/region", {"window": "0,0,10,10"}, "missing_parameter"),  # no url
        ("/region", {"url": "@", "window": "0,0,10"}, "invalid_parameter"),
        ("/region", {"url": "@", "window": "a,b,c,d"}, "invalid_parameter"),
        ("/region", {"url": "@", "window": "0,0,0,10"}, "invalid_parameter"),
        ("/region", {"url": "@"}, "missing_parameter"),
        ("/region", {"url": "@", "window": "0,0,1,1", "bbox": "0,0,1,1"}, "conflicting_parameters"),
        ("/region", {"url": "@", "bbox": "1,0,0,1"}, "invalid_parameter"),
        ("/region", {"url": "@", "bbox": "0,0,nan,1"}, "invalid_parameter"),
        (
            "/region",
            {"url": "@", "window": "0,0,1,1", "level": "1", "width": "5"},
            "conflicting_parameters",
        ),
        ("/region", {"url": "@", "window": "0,0,1,1", "format": "gif"}, "invalid_parameter"),
        ("/region", {"url": "@", "window": "0,0,1,1", "rescale": "5,1"}, "invalid_parameter"),
        ("/region", {"url": "@", "window": "0,0,1,1", "quality": "0"}, "invalid_parameter"),
        ("/region", {"url": "@", "window": "0,0,1,1", "windw": "1"}, "unknown_parameter"),
        (
            "/region",
            {"url": "@", "window": "0,0,1,1", "width": "99999999999999999"},
            "invalid_parameter",
        ),
        ("/region", {"url": "@rgb", "window": "0,0,1,1", "level": "7"}, "invalid_level"),
        ("/region", {"url": "@rgb", "window": "590,0,20,20"}, "invalid_window"),
        ("/region", {"url": "@rgb", "window": "0,0,20,20", "bands": "4"}, "invalid_bands"),
        ("/region", {"url": "@rgb", "window": "0,0,20,20", "bands": "0"}, "invalid_parameter"),
        (
            "/region",
            {"url": "@rgb", "window": "0,0,20,20", "format": "npy", "bands": "1,1,1,1"},
            "invalid_bands",
        ),
        ("/region", {"url": "@rgb", "window": "0,0,20,20", "bands": "1,2"}, "invalid_bands"),
        ("/region", {"url": "@rgb", "bbox": "0,0,1,1"}, "invalid_window"),
        ("/region", {"url": "@plain", "bbox": "0,0,1,1"}, "no_georeference"),
        ("/point", {"url": "@rgb", "col": "600", "row": "0"}, "invalid_window"),
        ("/point", {"url": "@rgb", "x": "1"}, "missing_parameter"),
        (
            "/point",
            {"url": "@rgb", "x": "1", "y": "2", "col": "1", "row": "1"},
            "conflicting_parameters",
        ),
        ("/point", {"url": "@plain", "x": "1", "y": "2"}, "no_georeference"),
        ("/preview", {"url": "@rgb", "max_size": "100000"}, "invalid_parameter"),
        ("/info", {"url": "relative/path.tif"}, "invalid_url"),
    ],
)
async def test_bad_requests_are_400(
    client: Client, upstream: Upstream, path: str, params: dict[str, str], code: str
) -> None:
    if "url" in params:
        value = params["url"]
        if value.startswith("@"):
            name = value[1:]
            params = {
                **params,
                "url": upstream.url(name + ".tif")
                if name and "/" not in name
                else upstream.root + name.lstrip("/"),
            }
    doc = await problem(client, path, 400, **params)
    assert doc["code"] == code
    assert doc["instance"] == path


async def test_duplicate_parameters_are_400(client: Client, upstream: Upstream) -> None:
    url = upstream.url("rgb.tif")
    async with client.get(f"/region?url={url}&window=0,0,1,1&window=0,0,2,2") as resp:
        assert resp.status == 400
        assert "more than once" in (await resp.json())["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/elsewhere/rgb.tif",
        "http://127.0.0.1:{port}@evil.example/{prefix}rgb.tif",
        "http://localhost:{port}/{prefix}rgb.tif",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/{prefix}rgb.tif",
        "s3://bucket/{prefix}rgb.tif",
        "file:///etc/passwd",
        "/etc/passwd",
        "memory://x",
    ],
)
async def test_sources_outside_the_allowlist_are_403_without_upstream_requests(
    client: Client, upstream: Upstream, url: str
) -> None:
    url = url.format(port=upstream.server.port, prefix=upstream.prefix)
    before = upstream.server.request_count
    doc = await problem(client, "/region", 403, url=url, window="0,0,8,8")
    assert doc["code"] == "source_not_allowed"
    assert upstream.server.request_count == before


async def test_redirect_to_a_private_address_is_403(
    make_client: MakeClient, upstream: Upstream
) -> None:
    with RangeServer({"x/rgb.tif": b"not reached"}) as other:

        def redirect(request, etag):  # type: ignore[no-untyped-def]
            if request.path.endswith("/moved.tif"):
                return Fault("status", status=302, headers={"Location": other.url("x/rgb.tif")})
            return None

        upstream.server.add(upstream.prefix + "moved.tif", b"")
        upstream.server.fault = redirect
        client = await make_client()
        doc = await problem(client, "/info", 403, url=upstream.url("moved.tif"))
        assert doc["code"] == "source_not_allowed"
        # Allowlisting the other server by name does not help: it resolves to loopback.
        named = f"http://localhost:{other.port}/x/"
        client = await make_client(allowed_sources=(upstream.root, named))
        upstream.server.fault = lambda request, etag: (
            Fault("status", status=302, headers={"Location": named + "rgb.tif"})
            if request.path.endswith("/moved.tif")
            else None
        )
        doc = await problem(client, "/info", 403, url=upstream.url("moved.tif"))
        assert "address" in doc["detail"]
        assert other.request_count == 0


async def test_missing_source_and_unknown_endpoint_are_404(
    client: Client, upstream: Upstream
) -> None:
    doc = await problem(client, "/region", 404, url=upstream.url("nope.tif"), window="0,0,1,1")
    assert doc["code"] == "source_not_found"
    doc = await problem(client, "/tiles/1/2/3", 404)
    assert doc["code"] == "not_found"


async def test_other_methods_are_405(client: Client) -> None:
    async with client.post("/region", data=b"x") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, HEAD"
        assert resp.headers["Content-Type"] == "application/problem+json"


async def test_limits_are_413_before_any_tile_fetch(
    make_client: MakeClient, upstream: Upstream
) -> None:
    client = await make_client(max_output_pixels=10_000, max_tiles=4)
    url = upstream.url("rgb.tif")
    doc = await problem(client, "/region", 413, url=url, window="0,0,101,100")
    assert (doc["code"], doc["limit"], doc["value"]) == ("too_many_pixels", 10_000, 10_100)
    doc = await problem(client, "/preview", 413, url=url, max_size=500)
    assert doc["code"] == "too_many_pixels"
    # 9600 output pixels, but 5 level-0 blocks to read: too many tiles.
    doc = await problem(client, "/region", 413, url=url, window="0,0,600,16", format="npy")
    assert (doc["code"], doc["limit"], doc["value"]) == ("limit_exceeded", 4, 5)
    # Resampled: a 64 x 64 output of a 600 x 500 window comes from overview 3 (one block), but
    # from level 0 ... it would need 20 blocks; the overview is what is read and checked.
    status, _, _ = await get(
        client, "/region", url=url, window="0,0,600,500", width=64, format="npy"
    )
    assert status == 200
    # Every refusal was decided from the header alone: the refused requests fetched no tile
    # (the one tile read is the resampled 200 above, from the overview).
    ranges = [e.range for e in upstream.requests("rgb.tif")]
    tile_reads = [r for r in ranges if r is None or not r.startswith("bytes=0-")]
    assert len(ranges) == 5
    assert len(tile_reads) <= 2
    client = await make_client(max_fetch_bytes=100)
    doc = await problem(client, "/region", 413, url=url, window="0,0,64,64", format="npy")
    assert doc["code"] == "limit_exceeded"
    client = await make_client(max_response_bytes=10_000)
    doc = await problem(client, "/region", 413, url=url, window="0,0,64,64", format="npy")
    assert (doc["code"], doc["value"]) == ("response_too_large", 3 * 64 * 64 + 128)
    status, _, _ = await get(client, "/region", url=url, window="0,0,32,32", format="npy")
    assert status == 200


async def test_unsupported_tiff_is_422(client: Client, upstream: Upstream) -> None:
    doc = await problem(
        client, "/region", 422, url=upstream.url("j2k.tif"), window="0,0,8,8", format="npy"
    )
    assert doc["code"] == "unsupported_tiff"
    assert "JPEG 2000" in doc["feature"]
    upstream.server.add(upstream.prefix + "text.tif", b"this is not a TIFF at all" * 10)
    doc = await problem(client, "/info", 422, url=upstream.url("text.tif"))
    assert doc["code"] == "invalid_tiff"


async def test_upstream_failures_are_502(client: Client, upstream: Upstream) -> None:
    upstream.server.fault = lambda request, etag: Fault("ignore_range")
    doc = await problem(client, "/info", 502, url=upstream.url("rgb.tif"))
    assert doc["code"] == "range_not_supported"
    upstream.server.fault = lambda request, etag: Fault("status", status=500)
    doc = await problem(client, "/info", 502, url=upstream.url("dem.tif"))
    assert doc["code"] == "upstream_error"
    assert "injected" not in json.dumps(doc)  # upstream bodies are never echoed
    upstream.server.fault = lambda request, etag: Fault("status", status=403)
    doc = await problem(client, "/info", 403, url=upstream.url("dem.tif"))
    assert doc["code"] == "upstream_access_denied"


async def test_deadline_is_504(make_client: MakeClient, upstream: Upstream) -> None:
    client = await make_client(request_timeout=0.3)
    upstream.server.latency = 2.0
    started = asyncio.get_running_loop().time()
    doc = await problem(client, "/info", 504, url=upstream.url("rgb.tif"))
    assert doc["code"] == "timeout"
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_overload_is_503_with_retry_after(
    make_client: MakeClient, upstream: Upstream
) -> None:
    client = await make_client(max_concurrency=1, retry_after=7)
    upstream.server.latency = 0.4
    slow = asyncio.ensure_future(get(client, "/info", url=upstream.url("rgb.tif")))
    await asyncio.sleep(0.15)
    async with client.get("/info", params={"url": upstream.url("dem.tif")}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert (await resp.json())["code"] == "overloaded"
    status, _, _ = await get(client, "/healthz")  # not subject to admission
    assert status == 200
    assert (await slow)[0] == 200
    metrics = (await get(client, "/metrics"))[2].decode()
    assert "cloudroi_requests_shed_total 1" in metrics


# --------------------------------------------------------------------------------------------
# other sources: S3 (moto) and local files; the default allowlist
# --------------------------------------------------------------------------------------------


async def test_s3_sources(
    make_client: MakeClient, s3_server: str, s3_client: Any, images: dict[str, bytes]
) -> None:
    bucket = f"svc-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="ok/rgb.tif", Body=images["rgb.tif"])
    s3_client.put_object(Bucket=bucket, Key="private/rgb.tif", Body=images["rgb.tif"])
    client = await make_client(allowed_sources=(f"s3://{bucket}/ok/",), s3_endpoint_url=s3_server)
    status, _, body = await get(
        client, "/region", url=f"s3://{bucket}/ok/rgb.tif", window="10,10,100,50", format="npy"
    )
    assert status == 200, body
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), rgb_pixels()[:, 10:60, 10:110])
    await problem(client, "/info", 403, url=f"s3://{bucket}/private/rgb.tif")
    await problem(client, "/info", 404, url=f"s3://{bucket}/ok/missing.tif")


async def test_local_files_stay_under_their_roots(
    make_client: MakeClient, tmp_path: Path, images: dict[str, bytes]
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "dem.tif").write_bytes(images["dem.tif"])
    secret = tmp_path / "secret.tif"
    secret.write_bytes(images["rgb.tif"])
    os.symlink(secret, root / "link.tif")
    client = await make_client(allowed_sources=(f"{root}/",))
    for url in (str(root / "dem.tif"), f"file://{root}/dem.tif"):
        status, _, body = await get(client, "/point", url=url, col=1, row=2)
        assert status == 200
        assert json.loads(body)["values"] == [float(dem_pixels()[2, 1])]
    for url in (
        str(root / "link.tif"),
        f"{root}/../secret.tif",
        str(secret),
        f"file://{root}/../secret.tif",
    ):
        await problem(client, "/info", 403, url=url)
    await problem(client, "/info", 404, url=str(root / "missing.tif"))


async def _wake_fifo_readers(fifo: Path) -> None:
    """Open the write end of ``fifo`` until no reader is left: a thread stuck opening it for
    reading (what the service did before it refused non-regular files) returns, so that a
    failing test ends instead of leaving the thread pool blocked."""
    for _ in range(500):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader has it open
                return
            raise
        os.close(fd)
        await asyncio.sleep(0.01)


@pytest.mark.timeout(60)
async def test_open_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    try:
        for url in (str(fifo), f"file://{fifo}", str(tmp_path), "/dev/null"):
            started = time.perf_counter()
            async with asyncio.timeout(5):
                with pytest.raises(cloudroi.SourceNotFoundError, match="not a regular file"):
                    await cloudroi.open(url)
            assert time.perf_counter() - started < 2, url
    finally:
        await _wake_fifo_readers(fifo)


@pytest.mark.timeout(90)
async def test_a_fifo_in_an_allowed_directory_does_not_block_the_service(
    make_client: MakeClient, tmp_path: Path, images: dict[str, bytes]
) -> None:
    """Opening a FIFO for reading waits for a writer: each such request used to hold a worker
    thread forever, and after a handful of them ordinary files timed out too. Now a FIFO is a
    404 at once and the thread pool stays free."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "dem.tif").write_bytes(images["dem.tif"])
    fifo = root / "pipe.tif"
    os.mkfifo(fifo)
    client = await make_client(
        allowed_sources=(f"{root}/",), request_timeout=3.0, max_concurrency=64
    )
    try:
        async with asyncio.timeout(20):
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(get(client, "/info", url=str(fifo)) for _ in range(6)),
                *(get(client, "/region", url=f"file://{fifo}", window="0,0,8,8") for _ in range(6)),
            )
            fifo_time = time.perf_counter() - started
            for status, _, body in answers:
                assert status == 404, body
                assert json.loads(body)["code"] == "source_not_found"
            assert fifo_time < 3.0, fifo_time
            started = time.perf_counter()
            status, _, body = await get(client, "/point", url=str(root / "dem.tif"), col=1, row=2)
            ordinary_time = time.perf_counter() - started
            assert status == 200, body
            assert json.loads(body)["values"] == [float(dem_pixels()[2, 1])]
            assert ordinary_time < 3.0, ordinary_time
    finally:
        await _wake_fifo_readers(fifo)


async def test_default_configuration_allows_only_the_sample(
    make_client: MakeClient, upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDROI_SAMPLE_DIR", str(tmp_path))
    (tmp_path / SAMPLE_NAME).write_bytes(sample_cog_bytes(256))
    (tmp_path / "other.tif").write_bytes(sample_cog_bytes(256))
    client = await make_client(allowed_sources=())
    status, _, body = await get(client, "/info", url=str(tmp_path / SAMPLE_NAME))
    assert status == 200
    assert json.loads(body)["width"] == 256
    await problem(client, "/info", 403, url=str(tmp_path / "other.tif"))
    await problem(client, "/info", 403, url=upstream.url("rgb.tif"))


# --------------------------------------------------------------------------------------------
# answers aiohttp makes itself, on the service as `cloudroi serve` starts it
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def site(upstream: Upstream) -> AsyncIterator[int]:
    """The service started by ``start_site``, as ``run`` starts it; its port."""
    runner = await start_site(ServiceConfig(allowed_sources=(upstream.root,)), "127.0.0.1", 0)
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """``data`` sent as is on a new connection; the first response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):
            writer.write(data)
            # The server may answer and close before it read everything (the answer is there).
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return await read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def raw_problem(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> str:
    got, headers, body = answer
    assert got == status, answer
    assert headers["content-type"] == "application/problem+json", answer
    assert headers["cache-control"] == "no-store"
    doc = json.loads(body)
    assert doc["type"] == "about:blank"
    assert (doc["status"], doc["code"]) == (status, code), doc
    assert doc["title"]
    assert 0 < len(doc["detail"]) < 300  # no echo of the 10 KB line
    return str(doc["detail"])


GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
TLS_HELLO = bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"

#: (id, bytes sent, status, code, words in the detail)
PROTOCOL_ERRORS = [
    (
        "request line of 10000 bytes",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "line_too_long",
        "longer than 8190 bytes",
    ),
    (
        "header line of 10000 bytes",
        GET + b"X-Big: " + b"b" * 10_000 + b"\r\n\r\n",
        400,
        "line_too_long",
        "longer than 8190 bytes",
    ),
    (
        "200 headers",
        GET + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
        400,
        "invalid_http",
        "Too many headers",
    ),
    ("garbage bytes", b"\x00\x01\x02\xff\xfe garbage\r\n\r\n", 400, "invalid_http", "HTTP"),
    ("TLS on the HTTP port", TLS_HELLO, 400, "invalid_http", "HTTP"),
    ("HTTP version 9.x", b"GET /healthz HTTP/9.x\r\nHost: x\r\n\r\n", 400, "invalid_http", "HTTP"),
    ("protocol FTP/1.1", b"GET /healthz FTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_http", "HTTP"),
    ("header without a colon", GET + b"NoColonHere\r\n\r\n", 400, "invalid_http", "HTTP"),
    (
        "bad Content-Length",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n",
        400,
        "invalid_http",
        "Content-Length",
    ),
    ("unknown Expect", GET + b"Expect: teapot\r\n\r\n", 417, "expectation_failed", "teapot"),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", "endpoint"),
    ("CONNECT", b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", "endpoint"),
]


@pytest.mark.parametrize(
    ("data", "status", "code", "words"),
    [case[1:] for case in PROTOCOL_ERRORS],
    ids=[case[0] for case in PROTOCOL_ERRORS],
)
async def test_requests_aiohttp_refuses_get_problem_details(
    site: int, data: bytes, status: int, code: str, words: str
) -> None:
    detail = raw_problem(await exchange(site, data), status, code)
    assert words in detail
    # The service is unharmed.
    status, _, body = await exchange(site, GET + b"\r\n")
    assert (status, json.loads(body)["status"]) == (200, "ok")


async def test_expect_100_continue_still_works(site: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site)
    try:
        async with asyncio.timeout(10):
            writer.write(
                b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"hello")
            status, _, body = await read_response(reader)
            assert (status, json.loads(body)["code"]) == (405, "method_not_allowed")
            # and the connection is kept for the next request
            writer.write(GET + b"\r\n")
            assert (await read_response(reader))[0] == 200
    finally:
        writer.close()
        await writer.wait_closed()


def test_handler_failures_are_problems_too() -> None:
    from cloudroi.service.app import _protocol_problem

    assert _protocol_problem(500, RuntimeError("boom")).document() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal error",
        "code": "internal_error",
    }
    assert _protocol_problem(504, None).code == "timeout"


def test_run_serves_through_start_site_and_stops_gracefully(upstream: Upstream) -> None:
    """``run`` (what ``cloudroi serve`` calls) in its own process: the protocol's answers are
    problem details there too, and SIGTERM lets the request in flight finish."""
    code = (
        "import sys; from cloudroi.service import ServiceConfig; "
        "from cloudroi.service.app import run; "
        "run(ServiceConfig(port=0, allowed_sources=(sys.argv[1],)))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, upstream.root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read() if proc.stderr else line
        port = int(match.group(1))

        async def check() -> None:
            raw_problem(await exchange(port, PROTOCOL_ERRORS[0][1]), 400, "line_too_long")
            upstream.server.latency = 1.0
            query = f"url={upstream.url('rgb.tif')}".encode()
            slow = asyncio.create_task(
                exchange(port, b"GET /info?" + query + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            )
            await asyncio.sleep(0.4)  # the request is in flight, waiting for storage
            proc.send_signal(signal.SIGTERM)
            status, _, body = await slow
            assert (status, json.loads(body)["width"]) == (200, 600)

        asyncio.run(check())
        assert proc.wait(timeout=30) == 0
    finally:
        upstream.server.latency = 0.0
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


# --------------------------------------------------------------------------------------------
# the request core without a transport, and configuration
# --------------------------------------------------------------------------------------------


async def test_core_handle_without_a_transport(upstream: Upstream) -> None:
    state = await ServiceState.start(ServiceConfig(allowed_sources=(upstream.root,)))
    try:
        resp = await handle(
            CoreRequest.build(
                "get",
                "/region",
                {"url": upstream.url("rgb.tif"), "window": "0,0,16,16", "format": "npy"},
            ),
            state,
        )
        assert resp.status == 200
        assert resp.content_type == "application/x-npy"
        np.testing.assert_array_equal(np.load(io.BytesIO(resp.body)), rgb_pixels()[:, :16, :16])
        resp = await handle(CoreRequest.build("GET", "/info", {"url": "http://evil/"}), state)
        assert resp.status == 403
        assert resp.json()["code"] == "source_not_allowed"
    finally:
        await state.close()


def test_config_from_env() -> None:
    config = ServiceConfig.from_env(
        {
            "CLOUDROI_ALLOWED_SOURCES": "s3://a/b/, https://h/p/",
            "CLOUDROI_MAX_TILES": "12",
            "CLOUDROI_REQUEST_TIMEOUT": "2.5",
            "CLOUDROI_S3_ANONYMOUS": "yes",
            "CLOUDROI_PORT": "",
        },
        port=9999,
    )
    assert config.allowed_sources == ("s3://a/b/", "https://h/p/")
    assert (config.max_tiles, config.request_timeout, config.port) == (12, 2.5, 9999)
    assert config.storage_options() == {"s3": {"anon": True}}
    with pytest.raises(ValueError, match="CLOUDROI_MAX_TILES"):
        ServiceConfig.from_env({"CLOUDROI_MAX_TILES": "many"})
    with pytest.raises(ValueError, match="max_tiles"):
        ServiceConfig.from_env({"CLOUDROI_MAX_TILES": "0"})
    with pytest.raises(ValueError, match=r"CIDR|network|does not appear"):
        ServiceConfig.from_env({"CLOUDROI_ALLOWED_NETWORKS": "not-a-net"})


def test_docs_show_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme  # the one copy of the table


def _odd_geotiff(scale: tuple[float, float]) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
        tile=(32, 32),
        extratags=[
            (33550, "d", 3, (scale[0], scale[1], 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, 100.0, 200.0, 0.0), True),
        ],
    )
    return buf.getvalue()


@pytest.mark.parametrize(
    ("scale", "point_xy"),
    [((float("nan"), 1.0), 400), ((float("inf"), 1.0), 400), ((1e308, 1e308), 400)],
)
async def test_non_finite_georeferencing_is_never_a_500(
    make_client: MakeClient, server: RangeServer, scale: tuple[float, float], point_xy: int
) -> None:
    up = Upstream.publish(server, {"odd.tif": _odd_geotiff(scale)}, "oddgeo")
    client = await make_client(allowed_sources=(up.root,))
    url = up.url("odd.tif")
    status, _, body = await get(client, "/info", url=url)
    assert status == 200, body
    doc = json.loads(body)  # valid JSON: no NaN or Infinity tokens
    if not all(np.isfinite(scale)):
        assert doc["transform"] is None  # NaN/Inf numbers describe no grid
    status, _, body = await get(client, "/point", url=url, x="150", y="150")
    assert status == point_xy, body
    status, _, body = await get(client, "/point", url=url, col="63", row="63")
    assert status == 200, body
    point = json.loads(body)
    assert point["values"] == [63 * 64 + 63]
    if all(np.isfinite(scale)):
        assert point["x"] is None  # 100 + 63.5 * 1e308 overflows: null, not a 500
