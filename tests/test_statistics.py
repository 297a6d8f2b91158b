"""Dataset statistics (``Image.statistics``, ``/statistics``, ``/cog/statistics``, ``cloudroi
stats``) against rio-tiler's ``Reader(path).statistics()`` on the same GDAL-written files, served
by the real range server: uint8 RGB with overviews, a float32 DEM with nodata and NaNs, one with
an internal mask, one with an alpha band, one entirely nodata. Counts must be equal, floats
equal to 1e-9 relative (they come out equal exactly)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from aiohttp.test_utils import TestClient, TestServer
from rasterio.enums import Resampling

import cloudroi
from cloudroi.region.plan import fit_max_size
from cloudroi.region.stats import StatisticsError
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.test_cli import cloudroi as run_cli
from tests.upstream import Upstream
from tests.warp_data import quiet

Client = TestClient[Any, Any]
GT = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_200_000.0)


def _write(path: Path, data: np.ndarray, *, mask: np.ndarray | None = None, **kw: Any) -> None:
    """A tiled GeoTIFF with overviews written by GDAL, copied to a COG."""
    count, height, width = data.shape
    tmp = path.with_suffix(".src.tif")
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype,
        "crs": "EPSG:32633",
        "transform": GT,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        **kw,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            if mask is not None:
                dst.write_mask(mask)
        with rasterio.open(tmp, "r+") as dst:
            dst.build_overviews([2, 4, 8], Resampling.nearest)
        rasterio.shutil.copy(tmp, path, driver="COG", blocksize=256, overviews="FORCE_USE_EXISTING")
    tmp.unlink()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(13)
    yy, xx = np.mgrid[0:1100, 0:1500]
    noise = rng.integers(0, 256, yy.shape)
    rgb = np.stack([(xx * 7 + yy) % 256, (yy * 3) % 256, noise]).astype(np.uint8)
    dem = (np.sin(xx / 50.0) * 300 + yy * 0.37 + rng.normal(0, 3, yy.shape)).astype(np.float32)
    dem[:300, :400] = -9999
    dem[700:705, :] = np.nan
    valid = np.full(yy.shape, 255, np.uint8)
    valid[:, :200] = 0
    valid[900:, 700:] = 0
    alpha = np.where((xx + yy) % 97 < 80, 255, np.where(xx % 2, 0, 128)).astype(np.uint8)
    out = {name: d / f"{name}.tif" for name in ("rgb", "dem", "masked", "rgba", "empty")}
    with quiet():
        _write(out["rgb"], rgb)
        _write(out["dem"], dem[None], nodata=-9999)
        _write(out["masked"], rgb[:, :900, :1300], mask=valid[:900, :1300])
        _write(out["rgba"], np.concatenate([rgb, alpha[None]]), photometric="RGB", alpha="YES")
        _write(out["empty"], np.full((1, 300, 500), -1, np.int16), nodata=-1)
    return out


@pytest.fixture
def upstream(server: RangeServer, files: dict[str, Path]) -> Upstream:
    return Upstream.publish(server, {p.name: p.read_bytes() for p in files.values()}, "stats")


def rio_tiler_stats(path: Path, **kw: Any) -> dict[str, dict[str, Any]]:
    from rio_tiler.io import Reader

    with quiet(), Reader(str(path)) as src:
        return {k: v.model_dump() for k, v in src.statistics(**kw).items()}


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Equal keys in the same order, equal counts, floats to 1e-9 relative; NaN matches NaN or
    null (a JSON answer's NaN)."""
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), where
        for k in theirs:
            assert_same(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float) and math.isnan(theirs):
        assert ours is None or (isinstance(ours, float) and math.isnan(ours)), where
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-9, abs=0), where
    else:
        assert ours == theirs, where


# (name, rio-tiler's keywords, Image.statistics' keywords, the service's query)
CASES = [
    ("rgb", {}, {}, {}),
    (
        "rgb",
        {"percentiles": [5, 50, 95], "hist_options": {"bins": 7}, "indexes": [3, 1]},
        {"percentiles": [5, 50, 95], "histogram_bins": 7, "bands": [3, 1]},
        {"p": ["5", "50", "95"], "histogram_bins": "7", "bidx": "3,1"},
    ),
    ("rgb", {"max_size": 300}, {"max_size": 300}, {"max_size": "300"}),
    ("dem", {}, {}, {}),
    (
        "dem",
        {"max_size": 1500, "percentiles": [1, 99], "hist_options": {"range": [0, 500]}},
        {"max_size": 1500, "percentiles": [1, 99], "histogram_range": [0, 500]},
        {"max_size": "1500", "p": "1,99", "histogram_range": "0,500"},
    ),
    (
        "dem",
        {"hist_options": {"bins": [-400, 0, 100, 900]}, "nodata": 0},
        {"histogram_bins": [-400, 0, 100, 900], "nodata": 0},
        {"histogram_bins": "-400,0,100,900", "nodata": "0"},
    ),
    ("masked", {}, {}, {}),
    (
        "masked",
        {"max_size": 200, "categorical": True, "categories": [0, 1, 2, 300]},
        {"max_size": 200, "categorical": True, "categories": [0, 1, 2, 300]},
        {"max_size": "200", "categorical": "true", "c": ["0", "1,2", "300"]},
    ),
    ("rgba", {}, {}, {}),
    ("empty", {}, {}, {}),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def _expected(files: dict[str, Path], name: str, ref: dict[str, Any]) -> Any:
    return rio_tiler_stats(files[name], **ref)


@pytest.mark.parametrize(("name", "ref", "kw", "query"), CASES, ids=IDS)
async def test_library_matches_rio_tiler(
    files: dict[str, Path], upstream: Upstream, name: str, ref: Any, kw: Any, query: Any
) -> None:
    expected = _expected(files, name, ref)
    async with cloudroi.open(upstream.url(f"{name}.tif")) as img:
        ours = await img.statistics(**kw)
    assert_same({k: v.as_dict() for k, v in ours.items()}, expected, name)
    for band in ours.values():
        for p, value in band.percentiles:
            assert getattr(band, f"percentile_{p}") is value


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[Client]:
    config = ServiceConfig(allowed_sources=(upstream.root,), max_output_pixels=2_000_000)
    c = TestClient(TestServer(create_app(config)))
    await c.start_server()
    yield c
    await c.close()


def _query(upstream: Upstream, name: str, query: dict[str, Any]) -> list[tuple[str, str]]:
    items = [("url", upstream.url(f"{name}.tif"))]
    for k, v in query.items():
        items.extend((k, x) for x in (v if isinstance(v, list) else [v]))
    return items


@pytest.mark.parametrize("prefix", ["", "/cog"])
@pytest.mark.parametrize(("name", "ref", "kw", "query"), CASES, ids=IDS)
async def test_service_matches_rio_tiler(
    files: dict[str, Path],
    upstream: Upstream,
    client: Client,
    prefix: str,
    name: str,
    ref: Any,
    kw: Any,
    query: Any,
) -> None:
    expected = _expected(files, name, ref)
    async with client.get(f"{prefix}/statistics", params=_query(upstream, name, query)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["ETag"]
        assert resp.headers["Cache-Control"].startswith("public, max-age=")
        doc = json.loads(await resp.read())
    assert_same(doc, expected, f"{prefix}/statistics {name}")


def test_cli_matches_rio_tiler(files: dict[str, Path], server: RangeServer) -> None:
    up = Upstream.publish(server, {"dem.tif": files["dem"].read_bytes()}, "stats-cli")
    for ref, opts in (
        ({}, []),
        (
            {"percentiles": [10, 90], "hist_options": {"bins": 5}, "max_size": 600},
            ["--percentiles", "10,90", "--histogram-bins", "5", "--max-size", "600"],
        ),
    ):
        result = run_cli("stats", up.url("dem.tif"), *opts)
        assert result.returncode == 0, result.stderr
        assert_same(json.loads(result.stdout), rio_tiler_stats(files["dem"], **ref), "cli")


def test_cli_refuses_bad_options(upstream: Upstream) -> None:
    for opts, message in (
        (["--percentiles", "101"], "--percentiles must be in 0..100"),
        (["--bands", "4"], "bands [4] are not all in 1..3"),
        (["--level", "1", "--max-size", "10"], "not allowed with argument"),
    ):
        result = run_cli("stats", upstream.url("rgb.tif"), *opts)
        assert result.returncode == 2, result
        assert message in result.stderr


@pytest.mark.parametrize(
    ("height", "width", "max_size"),
    [(1100, 1500, 1024), (1500, 1100, 1024), (1000, 3000, 1024), (7, 3001, 1024)]
    + [(1024, 1024, 1024)]
    + [(h, w, m) for h in (1, 99, 333, 1025) for w in (2, 97, 1000, 4097) for m in (1, 64, 1000)],
)
def test_fit_max_size_is_rio_tilers(height: int, width: int, max_size: int) -> None:
    from rio_tiler.reader import output_size

    expected = output_size(dataset_height=height, dataset_width=width, max_size=max_size)
    assert fit_max_size(height, width, max_size) == expected


async def test_level_reads_the_overview_at_full_size(
    files: dict[str, Path], upstream: Upstream
) -> None:
    async with cloudroi.open(upstream.url("rgb.tif")) as img:
        ours = await img.statistics(level=2, max_size=None)
    with quiet(), rasterio.open(files["rgb"], OVERVIEW_LEVEL=1) as src:
        assert (src.width, src.height) == (375, 275)
        data = src.read()
    for b in range(3):
        band = data[b].astype(np.float64)
        s = ours[f"b{b + 1}"]
        assert s.count == band.size == 375 * 275
        assert s.mean == pytest.approx(band.mean(), rel=1e-12)
        assert (s.min, s.max) == (band.min(), band.max())


async def test_library_refuses_bad_options(upstream: Upstream) -> None:
    async with cloudroi.open(upstream.url("rgb.tif")) as img:
        for kw in (
            {"percentiles": [101]},
            {"histogram_bins": 0},
            {"histogram_bins": [3, 1]},
            {"histogram_range": [5, 1]},
            {"max_size": 0},
        ):
            with pytest.raises(StatisticsError):
                await img.statistics(**kw)
        with pytest.raises(cloudroi.errors.BandError):
            await img.statistics([4])
        with pytest.raises(cloudroi.errors.LevelError):
            await img.statistics(level=9)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"p": "101"}, "invalid_parameter"),
        ({"p": "x"}, "invalid_parameter"),
        ({"histogram_bins": "0"}, "invalid_parameter"),
        ({"histogram_bins": "5,1"}, "invalid_parameter"),
        ({"histogram_range": "5"}, "invalid_parameter"),
        ({"histogram_range": "9,1"}, "invalid_parameter"),
        ({"categorical": "maybe"}, "invalid_parameter"),
        ({"c": "one"}, "invalid_parameter"),
        ({"max_size": "0"}, "invalid_parameter"),
        ({"level": "1", "max_size": "100"}, "conflicting_parameters"),
        ({"level": "9"}, "invalid_level"),
        ({"bidx": "4"}, "invalid_bands"),
        ({"bidx": "0"}, "invalid_parameter"),
        ({"resampling": "bilinear"}, "unsupported_parameter"),
        ({"unscale": "true"}, "unsupported_parameter"),
        ({"expression": "b1.real"}, "invalid_expression"),
        ({"expression": "b9"}, "invalid_bands"),
        ({"expression": "b1", "bidx": "1"}, "conflicting_parameters"),
        ({"width": "100"}, "unsupported_parameter"),
    ],
)
async def test_bad_input_is_a_400(
    upstream: Upstream, client: Client, query: dict[str, str], code: str
) -> None:
    params = {"url": upstream.url("rgb.tif"), **query}
    async with client.get("/cog/statistics", params=params) as resp:
        assert resp.status == 400, await resp.text()
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert (await resp.json())["code"] == code


async def test_full_resolution_of_a_big_image_is_refused_before_fetching(
    upstream: Upstream,
) -> None:
    config = ServiceConfig(allowed_sources=(upstream.root,), max_output_pixels=1_000_000)
    async with TestClient(TestServer(create_app(config))) as c:
        params = {"url": upstream.url("rgb.tif"), "level": "0"}
        before = upstream.gets("rgb.tif")
        async with c.get("/statistics", params=params) as resp:
            assert resp.status == 413
            assert (await resp.json())["code"] == "too_many_pixels"
        header_reads = upstream.gets("rgb.tif") - before
        # the same image's overview 1 (750 x 550) is within the limit and reads its blocks
        async with c.get("/statistics", params={**params, "level": "1"}) as resp:
            assert resp.status == 200
        assert upstream.gets("rgb.tif") - before > 2 * header_reads


async def test_etag_gives_304(upstream: Upstream, client: Client) -> None:
    params = {"url": upstream.url("dem.tif"), "p": "10"}
    async with client.get("/statistics", params=params) as resp:
        assert resp.status == 200
        etag = resp.headers["ETag"]
    async with client.get("/statistics", params=params, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with client.get("/statistics", params={**params, "p": "20"}) as resp:
        assert resp.headers["ETag"] != etag


def test_every_answer_key_is_documented() -> None:
    from cloudroi.service.openapi import openapi_document

    doc = openapi_document()
    for path in ("/statistics", "/cog/statistics"):
        names = {p["name"] for p in doc["paths"][path]["get"]["parameters"]}
        assert {"bidx", "max_size", "p", "c", "categorical", "histogram_bins"} <= names
