"""Band math (``expression=``): parsed against a whitelist and compiled over numpy (never
Python's eval), only the bands it names fetched, results equal to rio-tiler's
``Reader.tile/part/preview(expression=...)`` on GDAL-written COGs served by the real range
server, through the library, the service (native and TiTiler ``/cog`` routes) and the CLI;
hostile expressions are typed errors / 400s, answered fast."""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import tifffile
from affine import Affine
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.cli import main as cli_main
from cloudroi.errors import BandError, CloudROIError
from cloudroi.region import (
    ArgumentError,
    Expression,
    ExpressionError,
    ImageData,
    RegionRequest,
    parse_expression,
    plan_region,
    read_region,
)
from cloudroi.region.expression import MAX_NODES
from cloudroi.service import ServiceConfig, create_app
from cloudroi.service.app import STATE
from cloudroi.testing import RangeServer
from tests.test_cli import cloudroi as run_cli
from tests.upstream import Upstream
from tests.warp_data import quiet, write_cog

Client = TestClient[Any, Any]
HALF = 20037508.342789244
TILE = 2 * HALF / 1024
#: Web Mercator: the image's pixels are those of the zoom 10 tiles from (512, 500) on.
GT = Affine(TILE / 256, 0.0, 0.0, 0.0, -TILE / 256, HALF - 500 * TILE)
NDVI = "(b4-b3)/(b4+b3)"
TWO = "b1*0.5+b2;sqrt(b3)-b4/3"
TILES = [(10, 513, 501), (10, 514, 502), (9, 256, 250)]


def _write(path: Path, data: npt.NDArray[Any], nodata: float | None, **options: Any) -> Path:
    return write_cog(path, data, "EPSG:3857", GT, nodata, **options)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("expression")
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:600, 0:800]
    four = np.stack(
        [
            1000
            + 800 * np.sin(xx / (40 + 10 * i))
            + 500 * np.cos(yy / (50 + 7 * i))
            + rng.integers(0, 200, xx.shape)
            for i in range(4)
        ]
    ).astype(np.uint16)
    # nodata (0) in different places in different bands; 0/0 where b3 and b4 both are
    four[0, 100:160, 100:200] = 0
    four[2, 300:340, 500:700] = 0
    four[3, :30, :] = 0
    four[2:4, 400:420, 0:40] = 0
    # band-separate (PLANARCONFIG=SEPARATE), incompressible: each band's blocks are its own
    planar = rng.integers(0, 65535, (4, 512, 512), dtype=np.uint16)
    f64 = np.stack([xx[:256, :256] + 0.25, yy[:256, :256] - 100.0]).astype(np.float64)
    rgb = rng.integers(1, 255, (3, 400, 500), dtype=np.uint8)
    mask = np.full((400, 500), 255, np.uint8)
    mask[50:150, 60:300] = 0
    masked = d / "masked.tif"
    profile: dict[str, Any] = {"driver": "GTiff", "width": 500, "height": 400, "count": 3}
    profile.update(dtype="uint8", crs="EPSG:3857", transform=GT)
    with quiet(), rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(rgb)
            ds.write_mask(mask)
        with mem.open() as ds:
            rasterio.shutil.copy(ds, masked, driver="COG", BLOCKSIZE=256)
    return {
        "four": _write(d / "four.tif", four, 0, BLOCKSIZE=256),
        "planar": _write(
            d / "planar.tif",
            planar,
            None,
            driver="GTiff",
            TILED="YES",
            BLOCKXSIZE=256,
            BLOCKYSIZE=256,
            INTERLEAVE="BAND",
        ),
        "f64": _write(d / "f64.tif", f64, None, BLOCKSIZE=256),
        "masked": masked,
    }


@pytest.fixture
def upstream(server: RangeServer, files: dict[str, Path]) -> Upstream:
    return Upstream.publish(server, {f"{k}.tif": p.read_bytes() for k, p in files.items()}, "expr")


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[Client]:
    client = TestClient(TestServer(create_app(ServiceConfig(allowed_sources=(upstream.root,)))))
    await client.start_server()
    yield client
    await client.close()


def _rio(path: Path, call: str, *a: Any, **kw: Any) -> Any:
    from rio_tiler.io import Reader

    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        return getattr(r, call)(*a, **kw)


def _agree(ours: ImageData, ref: Any) -> int:
    """Our result equals rio-tiler's: the same validity (valid where every band named is) and,
    on valid pixels, rio-tiler's float64 values rounded to float32. Returns the valid count."""
    assert ours.mask is not None
    return _agree_arrays(ours.data, ours.mask, ref)


def _agree_arrays(data: npt.NDArray[Any], mask: npt.NDArray[Any], ref: Any) -> int:
    ref_valid = ~np.logical_or.reduce(np.ma.getmaskarray(ref.array), axis=0)
    assert data.shape == ref.array.shape
    assert data.dtype == np.float32
    valid = mask > 0
    np.testing.assert_array_equal(valid, ref_valid)
    # float32 rounding of the same value: at most half an ulp apart
    np.testing.assert_allclose(data[:, valid], ref.array.data[:, valid], rtol=6e-8, atol=0)
    return int(valid.sum())


def _npy(body: bytes) -> npt.NDArray[Any]:
    return np.load(io.BytesIO(body), allow_pickle=False)


# --------------------------------------------------------------------------------------------
# parsing: a whitelist, typed errors, bounded work
# --------------------------------------------------------------------------------------------

HOSTILE = [
    "__import__('os')",
    "__import__('os').system('true')",
    "b1.real",
    "b1.__class__",
    "(lambda: b1)()",
    "[b1 for b1 in b2]",
    "{b1: 1}",
    "b1[0]",
    "b1 if b2 else b3",
    "b1 and b2",
    "eval('1')",
    "open('/etc/passwd')",
    "x + b1",
    "sqrt(b1, b2)",
    "sqrt(x=b1)",
    "'a' + b1",
    "True * b1",
    "b1 @ b2",
    "b1 +",
    "b1\x00",
    "(b1 := 2)",
    "b0",
    "b1 + " * 3000 + "b1",  # 15k characters
    "+".join(["b1"] * (MAX_NODES + 1)),  # too many terms, under the length limit
    "(" * 300 + "b1" + ")" * 300,
    ";;",
    "b1;;b2",
    "",
    " ; ",
    "1 + 2",  # no band
    "9" * 400 + ".0e999999999",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_expressions_are_typed_errors_fast(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert time.perf_counter() - started < 1  # typically < 2 ms; generous on a busy machine
    err = info.value
    assert isinstance(err, CloudROIError)
    assert isinstance(err, ArgumentError)
    assert (err.name, err.code) == ("expression", "invalid_expression")
    assert len(str(err)) < 600


def test_evaluation_is_float_bounded_and_warning_free() -> None:
    # pytest turns warnings into errors: overflow, 0/0, x/0 and log(0) must not leak any
    data = np.array([[[0, 1, 3, 65535]], [[0, 0, 2, 1]]], np.uint16)
    started = time.perf_counter()
    big = parse_expression("b1**99999999").evaluate(data[:1])  # floats: overflows to inf at once
    assert time.perf_counter() - started < 1
    top = np.finfo(np.float32).max
    np.testing.assert_array_equal(big[0, 0], [0, 1, top, top])  # inf -> largest float32
    out = parse_expression("b1/b2;log(b2);where(b1 > b2, b1, -1);(B1 < b2) | ~(b2 == 2)").evaluate(
        data
    )
    assert out.dtype == np.float32
    assert out.shape == (4, 1, 4)
    # as rio-tiler (numpy.nan_to_num): NaN -> 0, +-inf -> +-largest finite
    np.testing.assert_array_equal(out[0, 0], [0, top, 1.5, 65535])
    np.testing.assert_array_equal(out[1, 0], [-top, -top, np.log(np.float32(2)), 0])
    np.testing.assert_array_equal(out[2, 0], [-1, 1, 3, 65535])
    np.testing.assert_array_equal(out[3, 0], [1, 1, 0, 1])
    assert parse_expression("b1*2").evaluate(np.ones((1, 2, 2), np.float64)).dtype == np.float64
    # a huge output is evaluated strip by strip: its working copies stay a strip's
    expr = parse_expression("b2 - b1")
    assert expr.bands == (1, 2)
    assert expr.working_bytes(10_000, 10_000) < 32 << 20


def test_parse_normalises_and_names_bands() -> None:
    e = parse_expression(" (B4 - b3) / (b4 + b3) ; b1 ;")
    assert e.bands == (1, 3, 4)
    assert e.outputs == ("(B4 - b3) / (b4 + b3)", "b1")
    assert e.count == 2
    assert Expression.parse(e.text) == e
    with pytest.raises(BandError, match="b99"):
        parse_expression("b99 + b1").check_bands(4)


# --------------------------------------------------------------------------------------------
# the library: rio-tiler's results, only the bands named fetched
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [NDVI, TWO])
async def test_library_equals_rio_tiler(
    upstream: Upstream, files: dict[str, Path], text: str
) -> None:
    path = files["four"]
    expr = parse_expression(text)
    async with await cloudroi.open(upstream.url("four.tif")) as img:
        for z, x, y in TILES:
            assert (
                _agree(
                    await img.tile(x, y, z, expression=text),
                    _rio(path, "tile", x, y, z, expression=text),
                )
                > 10_000
            )
        for size in (256, 800):
            plan = plan_region(img, RegionRequest(max_size=size, expression=expr))
            ref = _rio(path, "preview", max_size=size, expression=text)
            _agree(await read_region(img, plan), ref)
        with quiet():
            x0, y0 = GT * (100, 590)
            x1, y1 = GT * (420, 250)
        box = (x0, y0, x1, y1)
        for shape in ({}, {"width": 160, "height": 170}):
            plan = plan_region(img, RegionRequest(bbox=box, expression=expr, **shape))
            ref = _rio(path, "part", box, bounds_crs=img.crs, expression=text, **shape)
            _agree(await read_region(img, plan), ref)
        data = await read_region(img, plan)
        assert data.nodata is None
        assert data.palette is None
        assert [m["description"] for m in data.extra["band_meta"]] == list(expr.outputs)
        with pytest.raises(ExpressionError, match="not both"):
            await img.tile(513, 501, 10, bands=(1,), expression=text)
        with pytest.raises(BandError, match="b7"):
            await img.tile(513, 501, 10, expression="b7/b1")
        with pytest.raises(BandError, match="b5"):
            plan_region(img, RegionRequest(max_size=64, expression=parse_expression("b5")))


async def test_statistics_equal_rio_tilers(upstream: Upstream, files: dict[str, Path]) -> None:
    async with await cloudroi.open(upstream.url("four.tif")) as img:
        ours = await img.statistics(expression=TWO)
        with pytest.raises(ExpressionError, match="not both"):
            await img.statistics(bands=1, expression=TWO)
    ref = _rio(files["four"], "statistics", expression=TWO)
    assert list(ours) == list(ref) == ["b1", "b2"]
    for key, theirs in ref.items():
        mine, expected = ours[key].as_dict(), theirs.model_dump()
        assert mine["description"] == expected["description"]
        assert mine["valid_pixels"] == expected["valid_pixels"] > 400_000
        for name in ("min", "max", "mean", "percentile_2", "percentile_98"):
            assert mine[name] == pytest.approx(expected[name], rel=1e-6), name


async def test_other_kernels_warp_each_band_with_its_nodata(
    upstream: Upstream, files: dict[str, Path]
) -> None:
    """Bilinear: a band's nodata pixels are not blended into its neighbours, and the output is
    valid where every band is (rio-tiler's mask exactly); the values are those of each band's
    own warp (the warp's agreement with GDAL is tests/test_warp_*'s subject)."""
    z, x, y = 11, 1028, 1004  # nodata of b3 and b4 in different places
    async with await cloudroi.open(upstream.url("four.tif")) as img:
        ours = await img.tile(x, y, z, expression=NDVI, resampling="bilinear")
        b3 = await img.tile(x, y, z, bands=(3,), resampling="bilinear")
        b4 = await img.tile(x, y, z, bands=(4,), resampling="bilinear")
    ref = _rio(files["four"], "tile", x, y, z, expression=NDVI, reproject_method="bilinear")
    ref_valid = ~np.logical_or.reduce(np.ma.getmaskarray(ref.array), axis=0)
    assert ours.mask is not None
    assert b3.mask is not None
    assert b4.mask is not None
    valid = ours.mask > 0
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_array_equal(valid, (b3.mask > 0) & (b4.mask > 0))
    assert 0 < valid.sum() < valid.size
    own = parse_expression(NDVI).evaluate(np.concatenate([b3.data, b4.data]))
    np.testing.assert_array_equal(ours.data[:, valid], own[:, valid])


async def test_only_the_bands_named_are_fetched(upstream: Upstream, files: dict[str, Path]) -> None:
    """A band-separate file: an expression over b2 and b4 fetches their blocks and no other."""
    with tifffile.TiffFile(files["planar"]) as tif:
        page = tif.pages[0]
        assert page.planarconfig == 2  # SEPARATE
        offsets, counts = page.dataoffsets, page.databytecounts
    per_band = len(offsets) // 4
    spans = {
        b: (offsets[(b - 1) * per_band], offsets[b * per_band - 1] + counts[b * per_band - 1])
        for b in range(1, 5)
    }
    band_bytes = {b: sum(counts[(b - 1) * per_band : b * per_band]) for b in range(1, 5)}
    results: dict[str, tuple[int, int, int]] = {}
    for label, expression in (("all", None), ("b4-b2", "b4-b2"), ("b3", "b3*2")):
        name = f"planar-{label}.tif"  # a URL of its own: the process-wide caches know none
        upstream.server.add(upstream.prefix + name, files["planar"].read_bytes())
        expr = None if expression is None else parse_expression(expression)
        request = RegionRequest(window=(0, 0, 512, 512), expression=expr)
        async with await cloudroi.open(upstream.url(name)) as img:
            data = await read_region(img, plan_region(img, request))
            stats = img.stats
            results[label] = (stats.tile_requests, stats.tile_bytes, stats.tiles_read)
        if expr is not None:
            tile_gets = [e for e in upstream.requests(name) if e.range][1:]  # after the header
            assert len(tile_gets) == stats.tile_requests
            for entry in tile_gets:
                first, last = (int(v) for v in entry.range.split("=")[1].split("-"))
                assert any(
                    spans[b][0] - 16 <= first and last < spans[b][1] + 16 for b in expr.bands
                )
            assert stats.tile_bytes <= sum(band_bytes[b] for b in expr.bands) + 64 * per_band
            assert data.data.shape == (1, 512, 512)
    _requests_all, bytes_all, tiles_all = results["all"]
    assert tiles_all == 4 * per_band
    assert results["b4-b2"][2] == 2 * per_band
    assert results["b3"][2] == per_band
    assert results["b4-b2"][1] <= bytes_all * 0.51
    assert results["b3"][1] <= bytes_all * 0.26
    print("planar 512x512x4 (tile GETs, tile bytes, blocks):", results)


async def test_an_internal_mask_is_every_bands_validity(
    upstream: Upstream, files: dict[str, Path]
) -> None:
    """uint8 RGB with a GDAL internal mask: the shared mask decides, as in rio-tiler."""
    text = "b1/b2;b3-b1"
    async with await cloudroi.open(upstream.url("masked.tif")) as img:
        assert img.has_mask
        tile = await img.tile(512, 500, 10, expression=text)
        plan = plan_region(img, RegionRequest(max_size=256, expression=parse_expression(text)))
        preview = await read_region(img, plan)
    assert 0 < _agree(tile, _rio(files["masked"], "tile", 512, 500, 10, expression=text)) < 65536
    _agree(preview, _rio(files["masked"], "preview", max_size=256, expression=text))


async def test_float64_sources_stay_float64(upstream: Upstream, files: dict[str, Path]) -> None:
    async with await cloudroi.open(upstream.url("f64.tif")) as img:
        expr = parse_expression("b1 * b2 / 3")
        data = await read_region(img, plan_region(img, RegionRequest(expression=expr)))
    assert data.data.dtype == np.float64
    assert data.mask is None
    ref = _rio(files["f64"], "preview", max_size=256, expression="b1 * b2 / 3")
    np.testing.assert_array_equal(data.data, ref.array.data)


# --------------------------------------------------------------------------------------------
# the service
# --------------------------------------------------------------------------------------------


async def _get(client: Client, path: str, **params: str) -> tuple[int, dict[str, str], bytes]:
    async with client.get(path, params=params) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_service_endpoints_equal_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    url, path = upstream.url("four.tif"), files["four"]
    z, x, y = TILES[0]
    for route in ("/tiles/WebMercatorQuad", "/cog/tiles/WebMercatorQuad"):
        status, _, body = await _get(client, f"{route}/{z}/{x}/{y}.npy", url=url, expression=TWO)
        assert status == 200, body
        arr = _npy(body)  # the outputs, then the mask band (rio-tiler's npy layout)
        ref = _rio(path, "tile", x, y, z, expression=TWO)
        _agree_arrays(arr[:2], arr[2], ref)
    status, _, body = await _get(
        client, "/cog/preview.npy", url=url, expression=NDVI, max_size="256"
    )
    assert status == 200, body
    arr = _npy(body)
    ref = _rio(path, "preview", max_size=256, expression=NDVI)
    _agree_arrays(arr[:1], arr[1], ref)
    status, _, body = await _get(
        client, "/preview", url=url, expression=NDVI, format="npy", max_size="256"
    )
    assert status == 200
    assert np.array_equal(_npy(body)[0], arr[0])
    status, _, body = await _get(
        client, "/region", url=url, window="0,0,200,100", expression=TWO, format="npy"
    )
    assert status == 200
    assert _npy(body).shape == (2, 100, 200)
    assert _npy(body).dtype == np.float32
    with quiet():
        bx0, by0 = GT * (100, 400)
        bx1, by1 = GT * (300, 200)
    status, _, body = await _get(
        client,
        f"/bbox/{bx0},{by0},{bx1},{by1}.npy",
        url=url,
        expression=NDVI,
        coord_crs="EPSG:3857",
    )
    assert status == 200, body
    assert _npy(body).shape == (2, 200, 200)  # the output and the mask band
    # an empty expression is none, as TiTiler has it
    status, _, body = await _get(client, f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.npy", url=url)
    status_empty, _, empty = await _get(
        client, f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.npy", url=url, expression=""
    )
    assert status == status_empty == 200
    assert empty == body
    status, _, body = await _get(client, "/tilejson.json", url=url, expression=NDVI)
    assert status == 200
    assert "expression=%28b4-b3%29" in json.loads(body)["tiles"][0]


async def test_renderings_stretch_each_expression_by_its_own_statistics(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    url = upstream.url("four.tif")
    z, x, y = TILES[0]
    ranges = {}
    for text in (NDVI, "b3/b4"):
        status, headers, body = await _get(
            client, f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", url=url, expression=text
        )
        assert status == 200, body
        ranges[text] = [float(v) for v in headers["X-Cloudroi-Rescale"].split(",")]
        ref = _rio(files["four"], "statistics", expression=text)["b1"]
        assert ranges[text] == pytest.approx([ref.percentile_2, ref.percentile_98], rel=1e-5)
    assert ranges[NDVI] != ranges["b3/b4"]
    assert client.server.app[STATE].context.stretch_computed == 2
    # the image's own bands keep their own stretch
    status, headers, _ = await _get(
        client, f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", url=url, bidx="3"
    )
    assert status == 200
    assert [float(v) for v in headers["X-Cloudroi-Rescale"].split(",")] != ranges[NDVI]
    assert client.server.app[STATE].context.stretch_computed == 3


REFUSED = [
    ({"expression": "__import__('os')"}, "invalid_expression", "__import__"),
    ({"expression": "b1.real"}, "invalid_expression", "attribute"),
    ({"expression": "b1+" * 800 + "b1"}, "invalid_expression", "longer"),
    ({"expression": ";;"}, "invalid_expression", "empty output"),
    ({"expression": "b99/b1"}, "invalid_bands", "b99"),
    ({"expression": "b1;b2"}, "invalid_bands", "1 or 3"),  # two outputs as png
    ({"expression": NDVI, "bidx": "1"}, "conflicting_parameters", "not both"),
]


@pytest.mark.parametrize(("query", "code", "words"), REFUSED)
async def test_service_refusals(
    client: Client, upstream: Upstream, query: dict[str, str], code: str, words: str
) -> None:
    url = upstream.url("four.tif")
    z, x, y = TILES[0]
    region = {k.replace("bidx", "bands"): v for k, v in query.items()}
    for path, extra in (
        (f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", query),
        ("/cog/preview.png", query),
        ("/region", {"window": "0,0,64,64", **region}),
        ("/preview", region),
    ):
        started = time.perf_counter()
        status, _headers, body = await _get(client, path, url=url, **extra)
        assert status == 400, (path, body)
        doc = json.loads(body)
        assert doc["code"] == code, (path, doc)
        assert words in doc["detail"], (path, doc)
        assert time.perf_counter() - started < 2


async def test_points_and_statistics_equal_rio_tilers(
    client: Client, upstream: Upstream, files: dict[str, Path]
) -> None:
    url, path = upstream.url("four.tif"), files["four"]
    with quiet():
        inside = GT * (150.5, 120.5)  # b1 is nodata there: NDVI is valid, TWO is not
        valid_pixel = GT * (600.5, 500.5)
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(3857, 4326, always_xy=True)
    for xy, text in ((inside, NDVI), (inside, TWO), (valid_pixel, TWO)):
        lon, lat = to_lonlat.transform(*xy)
        status, _, body = await _get(client, f"/cog/point/{lon},{lat}", url=url, expression=text)
        assert status == 200, body
        doc = json.loads(body)
        ref = _rio(path, "point", lon, lat, expression=text)
        assert doc["band_names"] == ref.band_names
        assert doc["band_descriptions"] == list(parse_expression(text).outputs)
        ref_valid = not bool(np.ma.getmaskarray(ref.array).any())
        assert doc["valid"] is ref_valid
        if ref_valid:
            assert doc["values"] == pytest.approx(list(ref.array.data), rel=6e-8)
        else:
            assert doc["values"] == [None] * len(ref.band_names)
    status, _, body = await _get(client, "/cog/statistics", url=url, expression=TWO)
    assert status == 200, body
    doc = json.loads(body)
    ref_stats = _rio(path, "statistics", expression=TWO)
    assert list(doc) == list(ref_stats)
    for key, theirs in ref_stats.items():
        assert doc[key]["valid_pixels"] == theirs.valid_pixels
        assert doc[key]["percentile_98"] == pytest.approx(theirs.percentile_98, rel=1e-6)


async def test_openapi_documents_the_parameter(client: Client) -> None:
    _status, _, body = await _get(client, "/openapi.json")
    doc = json.loads(body)
    for route in ("/region", "/preview", "/bbox/{minx},{miny},{maxx},{maxy}.{format}"):
        matches = [
            p
            for path, item in doc["paths"].items()
            if path.startswith(route.split("{")[0])
            for p in item["get"]["parameters"]
            if p["name"] == "expression"
        ]
        assert matches, route
        assert "b4-b3" in json.dumps(matches[0])


# --------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------


def test_cli_read_and_tile(
    upstream: Upstream, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = upstream.url("four.tif")
    z, x, y = TILES[0]
    tile = tmp_path / "t.npy"
    # the installed command, end to end (one subprocess: they cost seconds on a busy machine)
    result = run_cli("tile", url, str(z), str(x), str(y), "--expression", TWO, "-o", str(tile))
    assert result.returncode == 0, result.stderr
    ref = _rio(files["four"], "tile", x, y, z, expression=TWO)
    got = np.load(tile)
    valid = ~np.logical_or.reduce(np.ma.getmaskarray(ref.array), axis=0)
    np.testing.assert_allclose(got[:, valid], ref.array.data[:, valid], rtol=6e-8)
    # the rest in process: the same main()
    out = tmp_path / "ndvi.npy"
    assert (
        cli_main(["read", url, "--window", "0,0,300,200", "--expression", NDVI, "-o", str(out)])
        == 0
    )
    arr = np.load(out)
    assert arr.shape == (1, 200, 300)
    assert arr.dtype == np.float32
    png = tmp_path / "ndvi.png"
    assert (
        cli_main(["read", url, "--window", "0,0,300,200", "--expression", NDVI, "-o", str(png)])
        == 0
    )
    assert "shown as 0..255" in capsys.readouterr().err  # the expression's default stretch
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "read",
                url,
                "--window",
                "0,0,8,8",
                "--bands",
                "1",
                "--expression",
                NDVI,
                "-o",
                str(out),
            ]
        )
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["read", url, "--window", "0,0,8,8", "--expression", "b1.real", "-o", str(out)])
    assert exit_info.value.code == 2
    assert "attribute" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a usage error, naming the band
        cli_main(["read", url, "--window", "0,0,8,8", "--expression", "b9", "-o", str(out)])
    assert exit_info.value.code == 2
    assert "b9" in capsys.readouterr().err


async def test_expression_reads_its_bands_with_the_requested_kernel(
    upstream: Upstream, files: dict[str, Path]
) -> None:
    """``resampling`` reaches the bands an expression reads: the outputs are the expression
    applied to each band as ``Image.read`` resamples it (and differ from nearest)."""
    expr = parse_expression("b2*2;b1-b2")
    async with await cloudroi.open(upstream.url("four.tif")) as img:
        outs = {}
        for kind in ("nearest", "average"):
            req = RegionRequest(max_size=150, expression=expr, resampling=kind)
            plan = plan_region(img, req)
            got = await read_region(img, plan)
            bands = await img.read(None, 0, (1, 2), out_shape=plan.out_shape, resampling=kind)
            b1, b2 = bands.astype(np.float64)
            valid = (b1 != 0) & (b2 != 0)
            assert got.mask is not None
            assert np.array_equal(got.mask.astype(bool), valid)
            want = np.stack([b2 * 2, b1 - b2]).astype(np.float32)
            assert np.array_equal(got.data[:, valid], want[:, valid])
            outs[kind] = got.data
        assert not np.array_equal(outs["nearest"], outs["average"])
