"""The map endpoints over HTTP: tiles, TileJSON, WMTS, bbox and lon/lat points, native and
under TiTiler's /cog paths, against rio-tiler reading the same GDAL-written files; caching,
outside tiles, unknown parameters, limits."""

from __future__ import annotations

import io
import json
import warnings
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import imagecodecs
import morecantile
import numpy as np
import pytest
import rasterio
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

import cloudroi
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.upstream import Upstream
from tests.warp_data import TILES, quiet, rio_tiler_tile

TMS = morecantile.tms.get("WebMercatorQuad")
Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def upstream(server: RangeServer, warp_files: dict[str, Path]) -> Upstream:
    files = {f"{k}.tif": warp_files[k].read_bytes() for k in ("utm", "wgs84", "polar")}
    return Upstream.publish(server, files, "tiles")


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


async def get(
    client: Client, path: str, headers: dict[str, str] | None = None, **params: Any
) -> tuple[int, CIMultiDict[str], bytes]:
    query = {k: str(v) for k, v in params.items()}
    async with client.get(path, params=query, headers=headers or {}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


def _rgba(body: bytes) -> np.ndarray:
    return np.asarray(imagecodecs.png_decode(body))


def _rio_tiler(path: Path, call: str, *a: Any, **kw: Any) -> Any:
    from rio_tiler.io import Reader

    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        return getattr(r, call)(*a, **kw)


def _zooms(path: Path) -> tuple[int, int]:
    from rio_tiler.io import Reader

    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        return r.minzoom, r.maxzoom


# --------------------------------------------------------------------------------------------
# tiles
# --------------------------------------------------------------------------------------------

UTM_TILES = [zxy for key, zxy in TILES if key == "utm"][:4]


@pytest.mark.parametrize("zxy", UTM_TILES, ids=[f"{z}/{x}/{y}" for z, x, y in UTM_TILES])
async def test_png_tile_equals_rio_tiler(
    client: Client, upstream: Upstream, warp_files: dict[str, Path], zxy: tuple[int, int, int]
) -> None:
    z, x, y = zxy
    status, headers, body = await get(
        client, f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", url=upstream.url("utm.tif")
    )
    assert status == 200, body
    assert headers["Content-Type"] == "image/png"
    rgba = _rgba(body)
    assert rgba.shape == (256, 256, 4)
    ref, ref_mask = rio_tiler_tile(warp_files["utm"], z, x, y, "nearest")
    valid = rgba[:, :, 3] == 255
    both = valid & ref_mask
    assert both.sum() > 0
    same = (np.moveaxis(rgba[:, :, :3], -1, 0)[:, both] == ref[:, both]).all(axis=0)
    assert same.mean() >= 0.995
    assert (valid != ref_mask).sum() <= 4 * 256
    assert headers["Cache-Control"] == "public, max-age=86400"
    assert headers["ETag"].startswith('"')
    left, bottom, right, top = TMS.xy_bounds(morecantile.Tile(x, y, z))
    assert np.allclose(
        [float(v) for v in headers["Content-Bbox"].split(",")], [left, bottom, right, top]
    )


async def test_tile_auto_format_scale_npy_and_cog_paths(
    client: Client, upstream: Upstream, warp_files: dict[str, Path]
) -> None:
    url = upstream.url("utm.tif")
    inner = TMS.tile(14.88, 45.5, 13)  # inside the image: every pixel valid
    edge = TMS.tile(14.745, 45.5, 13)  # on its west edge
    status, headers, _ = await get(
        client, f"/tiles/WebMercatorQuad/13/{inner.x}/{inner.y}", url=url
    )
    assert (status, headers["Content-Type"]) == (200, "image/jpeg")
    status, headers, _ = await get(client, f"/tiles/WebMercatorQuad/13/{edge.x}/{edge.y}", url=url)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    status, _, body = await get(
        client, f"/tiles/WebMercatorQuad/13/{inner.x}/{inner.y}@2x.png", url=url
    )
    assert _rgba(body).shape == (512, 512, 4)
    status, _, body = await get(
        client, f"/cog/tiles/WebMercatorQuad/13/{edge.x}/{edge.y}.npy", url=url, tilesize=256
    )
    arr = np.load(io.BytesIO(body))
    assert arr.shape == (4, 256, 256)  # three bands, then the mask (rio-tiler's npy layout)
    ref, ref_mask = rio_tiler_tile(warp_files["utm"], 13, edge.x, edge.y, "nearest")
    assert set(np.unique(arr[3])) <= {0, 255}
    assert ((arr[3] == 255) != ref_mask).sum() <= 512
    both = (arr[3] == 255) & ref_mask
    assert (arr[:3, both] == ref[:, both]).all(axis=0).mean() >= 0.995
    status, _, body = await get(
        client, f"/tiles/WebMercatorQuad/13/{edge.x}/{edge.y}.npy", url=url, return_mask="false"
    )
    assert np.load(io.BytesIO(body)).shape == (3, 256, 256)


async def test_unknown_parameters_are_ignored_and_keep_the_etag(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("utm.tif")
    t = TMS.tile(14.88, 45.5, 12)
    path = f"/tiles/WebMercatorQuad/12/{t.x}/{t.y}.png"
    s1, h1, b1 = await get(client, path, url=url)
    s2, h2, b2 = await get(client, path, url=url, _="1733040000", access_token="abc", v="2")
    assert s1 == s2 == 200
    assert h1["ETag"] == h2["ETag"]
    assert b1 == b2
    s3, h3, _ = await get(client, path, headers={"If-None-Match": h1["ETag"]}, url=url, _="x")
    assert s3 == 304
    assert h3["ETag"] == h1["ETag"]
    s4, h4, _ = await get(client, path, url=url, bidx="2")
    assert s4 == 200
    assert h4["ETag"] != h1["ETag"]  # a parameter that changes pixels changes the validator
    for refused in (
        {"algorithm": "hillshade"},
        {"buffer": "8"},
        {"padding": "2"},
        {"unscale": "true"},
    ):
        status, _, body = await get(client, path, url=url, **refused)
        assert status == 400, refused
        assert json.loads(body)["code"] == "unsupported_parameter"
    s5, h5, b5 = await get(client, path, url=url, buffer="0", padding="0", unscale="false")
    assert (s5, h5["ETag"], b5) == (200, h1["ETag"], b1)  # neutral values change nothing


async def test_outside_tiles_are_empty_or_transparent(
    make_client: MakeClient, upstream: Upstream
) -> None:
    url = upstream.url("utm.tif")
    client = await make_client()
    status, headers, body = await get(client, "/tiles/WebMercatorQuad/12/0/0.png", url=url)
    assert (status, body) == (204, b"")
    assert "max-age=86400" in headers["Cache-Control"]
    assert "ETag" in headers
    clear = await make_client(tile_outside="transparent", tile_max_age=60)
    status, headers, body = await get(clear, "/tiles/WebMercatorQuad/12/0/0.png", url=url)
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=60"
    rgba = _rgba(body)
    assert rgba.shape == (256, 256, 4)
    assert not rgba[:, :, 3].any()
    # outside the matrix itself, and a zoom the matrix set does not have
    status, _, _ = await get(client, "/tiles/WebMercatorQuad/2/9/0.png", url=url)
    assert status == 204
    status, _, body = await get(client, "/tiles/WebMercatorQuad/30/0/0.png", url=url)
    assert status == 400
    status, _, body = await get(client, "/tiles/NoSuchSet/1/0/0.png", url=url)
    assert status == 400
    assert "WebMercatorQuad" in json.loads(body)["detail"]


async def test_tile_memory_and_pixel_limits_answer_413(
    make_client: MakeClient, upstream: Upstream
) -> None:
    url = upstream.url("utm.tif")
    t = TMS.tile(14.88, 45.5, 12)
    small = await make_client(max_request_bytes=100_000, memory_budget_bytes=1 << 30)
    status, _, body = await get(small, f"/tiles/WebMercatorQuad/12/{t.x}/{t.y}.png", url=url)
    assert status == 413
    assert json.loads(body)["code"] == "request_too_large"
    few = await make_client(max_output_pixels=256 * 256)
    status, _, body = await get(few, f"/tiles/WebMercatorQuad/12/{t.x}/{t.y}@2x.png", url=url)
    assert status == 413
    assert json.loads(body)["code"] == "too_many_pixels"


async def test_grids_the_service_cannot_answer_are_refused_before_planning(
    client: Client, upstream: Upstream
) -> None:
    """A warp's planning holds about 80 bytes an output pixel (measured): the whole world at
    4096 x 4096 once planned for seconds and 1.3 GB before its 413; now the budget refuses
    its planning's bytes up front. A box far beyond the image's grid (with a small output)
    is an invalid window, not an integer overflow; a side past JPEG's or WebP's limit is a
    413 before any read, not the encoder's error."""
    from cloudroi.region import georef

    url = upstream.url("utm.tif")
    world = "/bbox/-180,-85,180,85/4096x4096.npy"
    status, _, body = await get(client, world, url=url, dst_crs="EPSG:3857")
    assert status == 413, body
    doc = json.loads(body)
    assert doc["code"] == "request_too_large"
    assert doc["value"] == 4096 * 4096 * georef.WARP_PLAN_BYTES  # the planning's bytes
    for path, params in (
        ("/bbox/-1e30,-1e30,1e30,1e30/256x256.png", {"coord_crs": "EPSG:32633"}),
        ("/region", {"bbox": "-1e30,-1e30,1e30,1e30", "width": "256"}),
        ("/region", {"bbox": "-1e300,-1e300,1e300,1e300", "width": "256", "height": "9"}),
    ):
        status, _, body = await get(client, path, url=url, **params)
        assert status == 400, (path, params, body)
        assert json.loads(body)["code"] == "invalid_window"
    for fmt, side, limit in (("jpeg", 70000, 65535), ("webp", 20000, 16383)):
        status, _, body = await get(
            client, "/region", url=url, window="0,0,64,64", width=str(side), height="1",
            format=fmt,
        )  # fmt: skip
        assert status == 413, body
        doc = json.loads(body)
        assert (doc["code"], doc["limit"], doc["value"]) == ("too_many_pixels", limit, side)
    ext = {"jpeg": "jpg", "webp": "webp"}
    for fmt in ("jpeg", "webp"):
        box = "/bbox/14.80,45.45,14.95,45.55/1x70000." + ext[fmt]
        status, _, body = await get(client, box, url=url)
        assert status == 413, body
        assert json.loads(body)["code"] == "too_many_pixels"


# --------------------------------------------------------------------------------------------
# tile sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["utm", "wgs84", "polar"])
async def test_tilejson_matches_rio_tiler_and_its_tiles_load(
    client: Client, upstream: Upstream, warp_files: dict[str, Path], key: str
) -> None:
    url = upstream.url(f"{key}.tif")
    status, headers, body = await get(client, "/tilejson.json", url=url, rescale="0,200")
    assert status == 200, body
    doc = json.loads(body)
    bounds = _rio_tiler(warp_files[key], "get_geographic_bounds", rasterio.crs.CRS.from_epsg(4326))
    minzoom, maxzoom = _zooms(warp_files[key])
    assert doc["tilejson"] == "3.0.0"
    assert np.allclose(doc["bounds"], bounds)
    assert (doc["minzoom"], doc["maxzoom"]) == (minzoom, maxzoom)
    template = doc["tiles"][0]
    parts = urlsplit(template)
    assert parts.scheme == "http"
    assert parts.netloc == f"{client.host}:{client.port}"
    assert dict(parse_qsl(parts.query)) == {"url": url, "rescale": "0,200"}
    lon, lat = (doc["bounds"][0] + doc["bounds"][2]) / 2, (doc["bounds"][1] + doc["bounds"][3]) / 2
    t = TMS.tile(lon, lat, maxzoom)
    tile_url = (
        template.replace("{z}", str(maxzoom)).replace("{x}", str(t.x)).replace("{y}", str(t.y))
    )
    async with client.session.get(tile_url) as resp:
        assert resp.status == 200
    assert headers["Vary"] == "Host, X-Forwarded-Proto"


async def test_tilejson_under_cog_and_public_url(
    make_client: MakeClient, upstream: Upstream
) -> None:
    url = upstream.url("utm.tif")
    client = await make_client(public_url="https://tiles.example.org/prefix/")
    status, headers, body = await get(
        client, "/cog/WebMercatorQuad/tilejson.json", url=url, tile_format="webp", minzoom="3"
    )
    assert status == 200, body
    doc = json.loads(body)
    template = doc["tiles"][0]
    assert template.startswith(
        "https://tiles.example.org/prefix/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.webp?"
    )
    assert dict(parse_qsl(urlsplit(template).query)) == {"url": url, "tilesize": "512"}
    assert doc["minzoom"] == 3
    assert "Vary" not in headers
    status, _, _ = await get(client, "/tilejson.json", headers={"Host": "bad host"}, url=url)
    assert status == 200  # the configured public URL, not the Host header
    plain = await make_client()
    status, _, body = await get(plain, "/tilejson.json", headers={"Host": "a b"}, url=url)
    assert status == 400


async def test_wmts_capabilities_describe_the_layer(
    client: Client, upstream: Upstream, warp_files: dict[str, Path]
) -> None:
    url = upstream.url("utm.tif")
    status, headers, body = await get(client, "/WebMercatorQuad/WMTSCapabilities.xml", url=url)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/xml")
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    root = ET.fromstring(body)
    layer = root.find("w:Contents/w:Layer", ns)
    assert layer is not None
    assert layer.findtext("ows:Identifier", namespaces=ns) == "utm.tif"
    resource = layer.find("w:ResourceURL", ns)
    assert resource is not None
    template = resource.get("template", "")
    assert "{TileMatrix}/{TileCol}/{TileRow}.png?" in template
    matrices = root.findall("w:Contents/w:TileMatrixSet/w:TileMatrix", ns)
    lo, hi = _zooms(warp_files["utm"])
    zooms = list(range(lo, hi + 1))
    assert [int(m.findtext("ows:Identifier", namespaces=ns) or -1) for m in matrices] == zooms
    limits = layer.findall("w:TileMatrixSetLink/w:TileMatrixSetLimits/w:TileMatrixLimits", ns)
    z = zooms[-1]
    last = limits[-1]
    row, col = (
        int(last.findtext("w:MinTileRow", namespaces=ns) or -1),
        int(last.findtext("w:MinTileCol", namespaces=ns) or -1),
    )
    tile = template.replace("{TileMatrix}", str(z)).replace("{TileCol}", str(col))
    async with client.session.get(tile.replace("{TileRow}", str(row))) as resp:
        assert resp.status == 200


# --------------------------------------------------------------------------------------------
# bbox, points, info
# --------------------------------------------------------------------------------------------


async def test_bbox_in_lon_lat_on_another_grid_equals_rio_tiler_part(
    client: Client, upstream: Upstream, warp_files: dict[str, Path]
) -> None:
    box = (14.80, 45.45, 14.95, 45.55)
    path = "/bbox/{},{},{},{}/300x200.npy".format(*box)
    status, headers, body = await get(
        client, path, url=upstream.url("utm.tif"), dst_crs="EPSG:4326"
    )
    assert status == 200, body
    arr = np.load(io.BytesIO(body))
    assert arr.shape == (4, 200, 300)
    ref = _rio_tiler(
        warp_files["utm"],
        "part",
        box,
        dst_crs=rasterio.crs.CRS.from_epsg(4326),
        width=300,
        height=200,
    )
    ref_mask = ~np.asarray(ref.array.mask)[0]
    both = (arr[3] == 255) & ref_mask
    assert both.mean() > 0.9
    assert (arr[:3, both] == np.asarray(ref.array.data)[:, both]).all(axis=0).mean() >= 0.995
    assert headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4326>"


async def test_bbox_on_the_image_grid_and_region_with_coord_crs_agree(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("utm.tif")
    box = "14.80,45.45,14.95,45.55"
    s1, _, a = await get(client, f"/bbox/{box}/256x256.npy", url=url, return_mask="false")
    s2, _, b = await get(
        client,
        "/region",
        url=url,
        bbox=box,
        coord_crs="EPSG:4326",
        width=256,
        height=256,
        format="npy",
    )
    assert s1 == s2 == 200
    assert np.array_equal(np.load(io.BytesIO(a)), np.load(io.BytesIO(b)))
    status, _, body = await get(client, "/region", url=url, window="0,0,5,5", coord_crs="EPSG:4326")
    assert status == 400
    status, _, body = await get(client, f"/bbox/{box}.png", url=url, coord_crs="+init=/etc/passwd")
    assert status == 400
    assert json.loads(body)["code"] == "invalid_crs"


@pytest.mark.parametrize("prefix", ["", "/cog"])
async def test_lon_lat_point_equals_rio_tiler_point(
    client: Client, upstream: Upstream, warp_files: dict[str, Path], prefix: str
) -> None:
    lon, lat = 14.9, 45.5
    status, _, body = await get(client, f"{prefix}/point/{lon},{lat}", url=upstream.url("utm.tif"))
    assert status == 200, body
    doc = json.loads(body)
    ref = _rio_tiler(warp_files["utm"], "point", lon, lat)
    assert doc["coordinates"] == [lon, lat]
    assert doc["values"] == [int(v) for v in ref.array.data]
    assert doc["band_names"] == ref.band_names
    status, _, body = await get(
        client, "/point", url=upstream.url("utm.tif"), x=lon, y=lat, coord_crs="EPSG:4326"
    )
    assert json.loads(body)["values"] == doc["values"]
    status, _, _ = await get(client, f"{prefix}/point/0,0", url=upstream.url("utm.tif"))
    assert status == 400


async def test_cog_info_equals_rio_tiler_info(
    client: Client, upstream: Upstream, warp_files: dict[str, Path]
) -> None:
    for key in ("utm", "wgs84"):
        status, _, body = await get(client, "/cog/info", url=upstream.url(f"{key}.tif"))
        assert status == 200, body
        doc = json.loads(body)
        ref = _rio_tiler(warp_files[key], "info").model_dump(exclude_none=True)
        for name in (
            "crs",
            "band_metadata",
            "band_descriptions",
            "dtype",
            "nodata_type",
            "colorinterp",
            "count",
            "width",
            "height",
            "overviews",
            "scales",
            "offsets",
        ):
            assert json.loads(json.dumps(ref[name])) == doc[name], name
        assert np.allclose(doc["bounds"], ref["bounds"])
        assert doc.get("nodata_value") == ref.get("nodata_value")


@pytest.mark.parametrize("name", ["utm", "wgs84", "polar"])
@pytest.mark.parametrize("max_size", [200, 333])
async def test_cog_preview_is_rio_tilers_preview(
    client: Client, upstream: Upstream, warp_files: dict[str, Path], name: str, max_size: int
) -> None:
    """Same size (the short side rounded up, as rio-tiler does), same pixels, same mask."""
    status, _, body = await get(
        client, "/cog/preview.npy", url=upstream.url(f"{name}.tif"), max_size=max_size
    )
    assert status == 200, body
    arr = np.load(io.BytesIO(body))
    ref = _rio_tiler(warp_files[name], "preview", max_size=max_size)
    assert arr.shape == (ref.count + 1, ref.height, ref.width)
    valid = ref.mask > 0
    assert int(((arr[-1] > 0) != valid).sum()) == 0, (int((arr[-1] > 0).sum()), int(valid.sum()))
    assert np.array_equal(arr[:-1][:, valid], ref.data[:, valid])


async def test_cog_preview_in_another_crs(client: Client, upstream: Upstream) -> None:
    url = upstream.url("utm.tif")
    status, _, body = await get(client, "/cog/preview.png", url=url, max_size=200)
    assert status == 200, body
    assert max(_rgba(body).shape[:2]) == 200
    status, headers, body = await get(
        client, "/cog/preview/120x100.png", url=url, dst_crs="EPSG:4326"
    )
    assert status == 200, body
    assert _rgba(body).shape[:2] == (100, 120)
    assert headers["Content-Crs"].endswith("/4326>")


async def test_the_library_tile_and_the_service_tile_are_the_same_pixels(
    client: Client, upstream: Upstream
) -> None:
    url = upstream.url("wgs84.tif")
    t = TMS.tile(7.8, 36.6, 8)
    status, _, body = await get(client, f"/tiles/WebMercatorQuad/8/{t.x}/{t.y}.npy", url=url)
    assert status == 200
    async with await cloudroi.open(url) as img:
        tile = await img.tile(t.x, t.y, 8)
    arr = np.load(io.BytesIO(body))
    assert np.array_equal(arr[:-1], tile.data)
    assert tile.mask is not None
    assert np.array_equal(arr[-1], tile.mask)


@pytest.mark.parametrize("nodata", [float("nan"), None], ids=["nan", "none"])
async def test_rescaled_float_tiles_with_nan_and_inf_equal_rio_tiler_renders(
    server: RangeServer, make_client: MakeClient, tmp_path: Path, nodata: float | None
) -> None:
    """Grey PNG tiles of float32 data with NaN and infinities, ``rescale``d: the pixels of
    rio-tiler's ``tile(...).rescale(...).render("PNG")``, which rescales in float64, stores the
    result back into float32 and truncates (cloudroi once rounded: 1 DN off on thousands of
    pixels a tile). Warping sources with infinities once failed on its second chunk (500)."""
    from affine import Affine

    rng = np.random.default_rng(5)
    data = (rng.random((1, 512, 512)) * 2000 - 300).astype(np.float32)
    data[0, 100:140, 200:260] = np.nan
    data[0, 300, 300] = np.inf
    data[0, 310, 120] = -np.inf
    path = tmp_path / "float.tif"
    with quiet(), rasterio.open(
        path, "w", driver="GTiff", width=512, height=512, count=1, dtype="float32",
        crs="EPSG:32633", transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5040000.0),
        nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
    ) as ds:  # fmt: skip
        ds.write(data)
    up = Upstream.publish(server, {"float.tif": path.read_bytes()}, "float-render")
    client = await make_client(allowed_sources=(up.root,))
    _, maxzoom = _zooms(path)
    with quiet():
        bounds = rasterio.warp.transform_bounds(
            "EPSG:32633", "EPSG:4326", 500000, 5034880, 505120, 5040000
        )
    lon, lat = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    for z in (maxzoom - 1, maxzoom):
        t = TMS.tile(lon, lat, z)
        status, _, body = await get(
            client, f"/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}@2x.png", url=up.url("float.tif"),
            rescale="-300,1700",
        )  # fmt: skip
        assert status == 200, body
        got = np.asarray(imagecodecs.png_decode(body))
        ref = _rio_tiler(path, "tile", t.x, t.y, z, tilesize=512)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rio-tiler casts its NaNs to uint8
            ref.rescale(in_range=((-300.0, 1700.0),))
            want = np.asarray(imagecodecs.png_decode(ref.render(img_format="PNG")))
        assert got.shape == want.shape == (512, 512, 2)
        np.testing.assert_array_equal(got[:, :, 1], want[:, :, 1], err_msg=f"alpha z{z}")
        valid = got[:, :, 1] == 255
        assert valid.mean() > 0.2
        np.testing.assert_array_equal(got[:, :, 0][valid], want[:, :, 0][valid], f"z{z}")
