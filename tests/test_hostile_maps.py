"""Hostile inputs to the map endpoints: each case once broke the service (a 500, or minutes of
CPU and gigabytes of memory before a 504). Bad input must be a 4xx JSON problem, and limits
must be decided before any planning or fetching."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.errors import WindowError
from cloudroi.region import args, georef
from cloudroi.region.summary import plan_statistics
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.upstream import Upstream

Client = TestClient[Any, Any]
_MOON = (
    'GEOGCS["moon",DATUM["m",SPHEROID["m",1737400,0]],PRIMEM["G",0],'
    'UNIT["degree",0.0174532925199433]]'
)


@pytest.fixture
def upstream(server: RangeServer, warp_files: dict[str, Path]) -> Upstream:
    files = {f"{k}.tif": warp_files[k].read_bytes() for k in ("utm", "wgs84", "world")}
    return Upstream.publish(server, files, "hostile")


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[Client]:
    cfg = ServiceConfig(allowed_sources=(upstream.root,))
    async with TestClient(TestServer(create_app(cfg))) as c:
        yield c


async def problem(client: Client, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    async with client.get(path, params=params) as resp:
        assert resp.content_type == "application/problem+json", await resp.text()
        return resp.status, json.loads(await resp.read())


@pytest.mark.parametrize(
    ("path", "name", "params"),
    [
        ("/bbox/-180,-90,180,90/999999x999999.png", "wgs84", {"dst_crs": "EPSG:3857"}),
        (
            "/bbox/-20037508,-20037508,20037508,20037508.png",
            "utm",
            {"coord_crs": "EPSG:3857", "dst_crs": "EPSG:3031"},
        ),
        ("/cog/bbox/14,45,15,46.png", "utm", {"dst_crs": "EPSG:3857"}),
    ],
    ids=["huge-size", "world-in-polar", "native-resolution"],
)
async def test_huge_warped_bbox_is_413_before_planning(
    client: Client, upstream: Upstream, path: str, name: str, params: dict[str, str]
) -> None:
    """Was a 500 (numpy could not allocate 7 TiB / 515 TiB for the plan's coordinates) or a
    504 after 30 s of CPU and >6 GB of RSS: the plan was built before the pixel limit."""
    status, body = await problem(client, path, url=upstream.url(f"{name}.tif"), **params)
    assert status == 413, body
    assert body["value"] > body["limit"] == ServiceConfig().max_output_pixels
    assert len(upstream.requests(f"{name}.tif")) <= 2  # the header only: no pixel block


@pytest.mark.parametrize("dst_crs", ["EPSG:999999", _MOON])
async def test_unusable_dst_crs_is_400(client: Client, upstream: Upstream, dst_crs: str) -> None:
    """Was a 500: pyproj's CRSError / ProjError escaped carry_bounds."""
    status, body = await problem(
        client, "/bbox/14,45,15,46.png", url=upstream.url("utm.tif"), dst_crs=dst_crs
    )
    assert (status, body["code"]) == (400, "invalid_crs"), body


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/tilejson.json", {"minzoom": "20", "maxzoom": "2"}),
        ("/WMTSCapabilities.xml", {"minzoom": "30", "maxzoom": "0"}),
        ("/GNOSISGlobalGrid/WMTSCapabilities.xml", {"maxzoom": "30"}),
        ("/cog/WebMercatorQuad/tilejson.json", {"maxzoom": "30"}),
    ],
    ids=["tilejson-inverted", "wmts-inverted", "wmts-beyond-gnosis", "tilejson-beyond-24"],
)
async def test_tileset_zooms_are_checked(
    client: Client, upstream: Upstream, path: str, params: dict[str, str]
) -> None:
    """Were a 200 with an inverted or impossible zoom range, or a 500 (morecantile has no
    GNOSISGlobalGrid matrix 29)."""
    status, body = await problem(client, path, url=upstream.url("world.tif"), **params)
    assert status == 400, body
    assert "zoom" in body["detail"]


async def test_tile_of_a_matrix_set_far_from_the_image(client: Client, upstream: Upstream) -> None:
    """Was a 500 (ZeroDivisionError in the suggested warp output of the world in Canada's LCC,
    whose box rounds to zero pixels)."""
    async with client.get(
        "/tiles/CanadianNAD83_LCC/0/0/0.png", params={"url": upstream.url("world.tif")}
    ) as resp:
        assert resp.status in (200, 204), await resp.text()
        if resp.status == 200:
            assert resp.content_type == "image/png"


@pytest.mark.parametrize("value", ["0,1e308", "-1e308,1e308", "-1e39,0"])
async def test_rescale_beyond_float32_is_400(
    client: Client, upstream: Upstream, value: str
) -> None:
    """Was a 200 of garbage pixels (float32 overflow: span inf or NaN) with RuntimeWarnings."""
    with pytest.raises(args.ArgumentError):
        args.rescale(value)
    status, body = await problem(
        client, "/tiles/WebMercatorQuad/0/0/0.png", url=upstream.url("wgs84.tif"), rescale=value
    )
    assert status == 400, body
    assert args.rescale("-1e38,1e38") == (-1e38, 1e38)


_UNIT_1E300 = 'GEOGCS["x",DATUM["y",SPHEROID["z",6378137,298]],PRIMEM["G",0],UNIT["degree",1e300]]'


@pytest.mark.parametrize(
    "params",
    [
        {"dst_crs": "EPSG:5714", "max_size": "64"},  # vertical
        {"dst_crs": "EPSG:4978", "max_size": "64"},  # geocentric
        {"coord_crs": "EPSG:5714", "dst_crs": "EPSG:5714", "max_size": "64"},
        {"dst_crs": _UNIT_1E300},
    ],
    ids=["vertical", "geocentric", "vertical-both", "unit-1e300"],
)
async def test_crs_without_a_map_plane_is_400(
    client: Client, upstream: Upstream, params: dict[str, str]
) -> None:
    """Were a 200 after 6 s of CPU (a 64-pixel warp onto a vertical CRS's 'plane'), or a 500
    (ZeroDivisionError: a unit of 1e300 degrees puts every point at 0)."""
    status, body = await problem(
        client, "/bbox/14,45,15,46.png", url=upstream.url("utm.tif"), **params
    )
    assert status == 400, body
    assert body["code"] in ("invalid_crs", "invalid_window"), body


async def test_statistics_hostile_options(client: Client, upstream: Upstream) -> None:
    """histogram_range=-1e308,1e308 was a 500 (numpy: no finite-sized bins); bidx=1 listed 256
    times measured the band 256 times (23.7 s of CPU for a 1024x1024 read) for one answer."""
    url = upstream.url("utm.tif")
    status, body = await problem(client, "/statistics", url=url, histogram_range="-1e308,1e308")
    assert status == 400, body
    bands = ",".join(["1"] * args.MAX_BANDS)
    async with client.get(
        "/statistics", params={"url": url, "bidx": bands, "max_size": "64"}
    ) as resp:
        assert resp.status == 200
        assert list(json.loads(await resp.read())) == ["b1"]
    async with cloudroi.open(url) as img:
        assert plan_statistics(img, [1] * args.MAX_BANDS).bands == (1,)
        assert plan_statistics(img, [2, 1, 2]).bands == (2, 1)


async def test_preview_onto_a_vertical_crs_is_refused_before_work(
    client: Client, upstream: Upstream
) -> None:
    """Took 5 s of CPU (the image's bounds carried into EPSG:5714) before its 400."""
    status, body = await problem(
        client, "/cog/preview.png", url=upstream.url("utm.tif"), dst_crs="EPSG:5714"
    )
    assert status == 400, body
    assert "horizontal" in body["detail"]
    async with cloudroi.open(upstream.url("utm.tif")) as img:
        with pytest.raises(WindowError, match="horizontal"):
            georef.bounds_in(img, "EPSG:5714")
