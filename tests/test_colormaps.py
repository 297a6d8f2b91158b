"""Colormaps: a paletted file's internal palette (as GDAL presents it), named colormaps (as
matplotlib and rio-tiler define them) and JSON colormaps, in the library, the service and the
CLI, against rasterio and rio-tiler reading the same GDAL-written files."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import morecantile
import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import tifffile
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi import colormaps
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.test_cli import cloudroi as run_cli
from tests.upstream import Upstream
from tests.warp_data import quiet

Client = TestClient[Any, Any]
TMS = morecantile.tms.get("WebMercatorQuad")
#: the files cover z=2 tiles x 1..2, y 1..2 at that zoom's resolution: tiles read unwarped
Z, X0, Y0 = 2, 1, 1
SIDE = 512
PALETTE = {
    0: (0, 0, 0, 255),
    1: (34, 139, 34, 255),
    2: (65, 105, 225, 255),
    3: (210, 180, 140, 255),
    4: (220, 20, 60, 128),
    5: (255, 255, 0, 255),
    6: (128, 0, 128, 255),
}
DEM_RANGE = (100.0, 2500.0)


def _bounds() -> tuple[float, float, float, float]:
    left, _, _, top = TMS.xy_bounds(morecantile.Tile(X0, Y0, Z))
    _, bottom, right, _ = TMS.xy_bounds(morecantile.Tile(X0 + 1, Y0 + 1, Z))
    return left, bottom, right, top


def _transform() -> rasterio.Affine:
    left, _, right, top = _bounds()
    res = (right - left) / SIDE
    return rasterio.Affine(res, 0.0, left, 0.0, -res, top)


def _classes() -> npt.NDArray[np.uint8]:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    classes = ((xx // 37 + yy // 53 + (xx * yy) // 4099) % 7).astype(np.uint8)
    classes[:40, :60] = 0  # nodata
    return classes


def _dem() -> npt.NDArray[np.float32]:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    dem = 1300 + 900 * np.sin(xx / 61.0) * np.cos(yy / 47.0) + 0.37 * xx - 0.21 * yy
    dem[300:340, 100:180] = -9999.0
    return dem.astype(np.float32)


def _write(path: Path, data: npt.NDArray[Any], nodata: float, cmap: bool) -> Path:
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": SIDE,
        "height": SIDE,
        "count": 1,
        "dtype": str(data.dtype),
        "crs": "EPSG:3857",
        "transform": _transform(),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if cmap:
        profile["photometric"] = "palette"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if cmap:
            dst.write_colormap(1, PALETTE)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cmaps")
    return {
        "classes": _write(root / "classes.tif", _classes(), 0, cmap=True),
        "dem": _write(root / "dem.tif", _dem(), -9999.0, cmap=False),
    }


@pytest.fixture
def upstream(server: RangeServer, files: dict[str, Path]) -> Upstream:
    return Upstream.publish(
        server, {f"{k}.tif": p.read_bytes() for k, p in files.items()}, "colormaps"
    )


@pytest.fixture
async def client(upstream: Upstream) -> AsyncIterator[Client]:
    cfg = ServiceConfig(allowed_sources=(upstream.root,))
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    yield client
    await client.close()


async def _png(client: Client, path: str, **params: Any) -> npt.NDArray[np.uint8]:
    async with client.get(path, params={k: str(v) for k, v in params.items()}) as resp:
        body = await resp.read()
        assert resp.status == 200, body[:300]
        assert resp.headers["Content-Type"] == "image/png"
    return np.asarray(imagecodecs.png_decode(body))


@pytest.fixture
def rio_reader() -> Iterator[Any]:
    from rio_tiler.io import Reader

    opened: list[Any] = []

    def reader(path: Path) -> Any:
        r = Reader(str(path))
        opened.append(r)
        return r

    with warnings.catch_warnings(), quiet():
        warnings.simplefilter("ignore")
        yield reader
        for r in opened:
            r.close()


def _rio_png(image: Any, **kw: Any) -> npt.NDArray[np.uint8]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = image.render(img_format="PNG", **kw)
    return np.asarray(imagecodecs.png_decode(body))


def _rasterio_palette(path: Path, entries: int) -> npt.NDArray[np.uint8]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile-written files are not georeferenced
        with rasterio.open(path) as src:
            cmap = src.colormap(1)
    return np.array([cmap[i] for i in range(entries)], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# the internal palette in the library
# --------------------------------------------------------------------------------------------


async def test_palette_equals_rasterio(server: RangeServer, files: dict[str, Path]) -> None:
    up = Upstream.publish(server, {"c.tif": files["classes"].read_bytes()}, "palette")
    async with await cloudroi.open(up.url("c.tif")) as img:
        table = img.colormap
        info = img.info()
    assert table is not None
    assert table.shape == (256, 4)
    assert np.array_equal(table, _rasterio_palette(files["classes"], 256))
    assert info["photometric"] == "palette"
    assert info["colormap"]["4"] == [220, 20, 60, 255]  # a TIFF palette has no alpha...
    assert info["colormap"]["0"] == [0, 0, 0, 0]  # ... but GDAL makes the nodata entry clear
    assert len(info["colormap"]) == 7  # trailing unused black entries left out


@pytest.mark.parametrize("kind", ["8bit-values", "multiples-of-256", "full-16bit", "zeros"])
async def test_palette_scaling_rules_equal_gdal(
    server: RangeServer, tmp_path: Path, kind: str
) -> None:
    rng = np.random.default_rng(len(kind))
    values = {
        "8bit-values": rng.integers(0, 256, (3, 256)),
        "multiples-of-256": rng.integers(0, 256, (3, 256)) * 256,
        "full-16bit": rng.integers(0, 65536, (3, 256)),
        "zeros": np.zeros((3, 256)),
    }[kind].astype(np.uint16)
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, np.arange(256, dtype=np.uint8).reshape(16, 16), colormap=values)
    up = Upstream.publish(server, {"p.tif": path.read_bytes()}, "palette-rules")
    async with await cloudroi.open(up.url("p.tif")) as img:
        assert img.colormap is not None
        assert np.array_equal(img.colormap, _rasterio_palette(path, 256))


async def test_uint16_palette_equals_rasterio(server: RangeServer, tmp_path: Path) -> None:
    path = tmp_path / "p16.tif"
    data = (np.arange(64 * 64).reshape(64, 64) * 13 % 70000 % 65536).astype(np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16",
        photometric="palette", crs="EPSG:3857",
        transform=rasterio.Affine(1.0, 0.0, 0.0, 0.0, -1.0, 64.0),
    ) as dst:  # fmt: skip
        dst.write(data, 1)
        dst.write_colormap(1, {0: (1, 2, 3, 255), 1000: (250, 0, 7, 255), 65535: (9, 9, 9, 255)})
    up = Upstream.publish(server, {"p.tif": path.read_bytes()}, "palette16")
    async with await cloudroi.open(up.url("p.tif")) as img:
        assert img.colormap is not None
        assert img.colormap.shape == (65536, 4)
        assert np.array_equal(img.colormap, _rasterio_palette(path, 65536))
        region = await img.read_region((0, 0, 64, 64), shape=(64, 64))
    png = np.asarray(imagecodecs.png_decode(region.render("png").body))
    assert np.array_equal(png, img.colormap[data])


async def test_a_colormap_beside_minisblack_and_minswhite_tables_equal_gdal(
    server: RangeServer, tmp_path: Path
) -> None:
    """As GDAL: a ColorMap makes a band paletted whatever PhotometricInterpretation says
    (GDAL writes MinIsBlack when a colour table is set on a file not created as a palette),
    and a MinIsWhite 8 or 16-bit band reads as palette indices into an inverted grey table.
    Either way the band is 'palette' and blending kernels are refused (GDAL falls back to
    nearest), where they once blended the indices."""
    from cloudroi.region.describe import colorinterp

    data = (np.arange(64 * 64).reshape(1, 64, 64) % 4).astype(np.uint8)
    grey = tmp_path / "grey-cmap.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not georeferenced, on purpose
        with rasterio.open(
            grey, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8"
        ) as dst:
            dst.write(data)
            dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255), 3: (9, 9, 9, 255)})
    with tifffile.TiffFile(grey) as tf:
        assert int(tf.pages[0].photometric) == 1  # MinIsBlack beside the ColorMap
    files = {"grey-cmap.tif": (grey, 256)}
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        path = tmp_path / f"white{bits}.tif"
        values = (np.arange(64 * 64).reshape(64, 64) * 7 % (1 << bits)).astype(dtype)
        tifffile.imwrite(path, values, photometric="miniswhite")
        files[path.name] = (path, 1 << bits)
    up = Upstream.publish(server, {k: p.read_bytes() for k, (p, _) in files.items()}, "cmaps")
    for name, (path, entries) in files.items():
        async with await cloudroi.open(up.url(name)) as img:
            assert img.colormap is not None, name
            assert np.array_equal(img.colormap, _rasterio_palette(path, entries)), name
            assert colorinterp(img) == ["palette"], name
            with pytest.raises(cloudroi.ResamplingError):
                await img.read((0, 0, 64, 64), out_shape=(16, 16), resampling="bilinear")


async def test_library_renders_palette_by_default(
    server: RangeServer, files: dict[str, Path]
) -> None:
    up = Upstream.publish(server, {"c.tif": files["classes"].read_bytes()}, "palette-lib")
    async with await cloudroi.open(up.url("c.tif")) as img:
        region = await img.tile(X0, Y0, Z)
    classes = _classes()[:256, :256]
    rgba = np.asarray(imagecodecs.png_decode(region.render("png").body))
    table = _rasterio_palette(files["classes"], 256)
    assert np.array_equal(rgba[:, :, :3], table[classes][:, :, :3])
    assert np.array_equal(rgba[:, :, 3], np.where(classes == 0, 0, 255))
    indices = np.asarray(imagecodecs.png_decode(region.render("png", colormap=False).body))
    assert np.array_equal(indices[:, :, 0], classes)


# --------------------------------------------------------------------------------------------
# named colormaps: shipped tables
# --------------------------------------------------------------------------------------------


def test_named_tables_equal_matplotlib_and_rio_tiler() -> None:
    import matplotlib
    from rio_tiler.colormap import cmap as rio_cmaps

    names = colormaps.colormap_names()
    assert {"viridis", "magma", "terrain", "gray", "viridis_r", "rdylgn"} <= set(names)
    by_lower = {n.lower(): n for n in matplotlib.colormaps}
    rio_names = set(rio_cmaps.list())
    compared = 0
    for name in names:
        table = colormaps.named(name).colors
        mpl = matplotlib.colormaps[by_lower[name]](np.linspace(0.0, 1.0, 256))
        assert np.array_equal(table, (mpl * 255).astype(np.uint8)), name
        if name in rio_names:
            ref = rio_cmaps.get(name)
            assert np.array_equal(table, np.array([ref[i] for i in range(256)])), name
            compared += 1
    assert compared >= 150


def test_unknown_name_is_an_error() -> None:
    with pytest.raises(colormaps.ColormapError, match="unknown colormap name"):
        colormaps.named("not-a-colormap")


# --------------------------------------------------------------------------------------------
# the service: palette by default, colormap=none, named and custom colormaps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (1, 1)])
async def test_palette_tile_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any, dx: int, dy: int
) -> None:
    x, y = X0 + dx, Y0 + dy
    ours = await _png(
        client, f"/tiles/WebMercatorQuad/{Z}/{x}/{y}.png", url=upstream.url("classes.tif")
    )
    r = rio_reader(files["classes"])
    ref = _rio_png(r.tile(x, y, Z), colormap=r.colormap)
    assert ours.shape == ref.shape == (256, 256, 4)
    assert np.array_equal(ours, ref)
    classes = _classes()[256 * dy : 256 * (dy + 1), 256 * dx : 256 * (dx + 1)]
    assert np.array_equal(ours[:, :, 3] == 0, classes == 0)  # nodata is transparent


async def test_palette_preview_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any
) -> None:
    ours = await _png(client, "/preview", url=upstream.url("classes.tif"), max_size=SIDE)
    r = rio_reader(files["classes"])
    ref = _rio_png(r.preview(max_size=SIDE), colormap=r.colormap)
    assert ours.shape == ref.shape == (SIDE, SIDE, 4)
    assert np.array_equal(ours, ref)


async def test_colormap_none_returns_indices(client: Client, upstream: Upstream) -> None:
    ours = await _png(
        client, f"/tiles/WebMercatorQuad/{Z}/{X0}/{Y0}.png",
        url=upstream.url("classes.tif"), colormap="none",
    )  # fmt: skip
    assert ours.shape == (256, 256, 2)  # grey + alpha
    classes = _classes()[:256, :256]
    assert np.array_equal(ours[:, :, 0], classes)
    assert np.array_equal(ours[:, :, 1], np.where(classes == 0, 0, 255))


@pytest.mark.parametrize("name", ["viridis", "terrain", "magma_r"])
async def test_named_colormap_on_dem_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any, name: str
) -> None:
    from rio_tiler.colormap import cmap as rio_cmaps

    lo, hi = DEM_RANGE
    ours = await _png(
        client, f"/tiles/WebMercatorQuad/{Z}/{X0}/{Y0 + 1}.png",
        url=upstream.url("dem.tif"), rescale=f"{lo},{hi}", colormap_name=name,
    )  # fmt: skip
    image = rio_reader(files["dem"]).tile(X0, Y0 + 1, Z)
    image.rescale(in_range=((lo, hi),))
    ref = _rio_png(image, colormap=rio_cmaps.get(name))
    assert np.array_equal(ours, ref)
    assert (ours[:, :, 3] == 0).sum() == 40 * 80  # the nodata block


async def test_named_colormap_on_region(client: Client, upstream: Upstream) -> None:
    from rio_tiler.colormap import cmap as rio_cmaps
    from rio_tiler.utils import linear_rescale

    lo, hi = DEM_RANGE
    ours = await _png(
        client, "/region", url=upstream.url("dem.tif"), window="64,256,200,100",
        rescale=f"{lo},{hi}", colormap_name="viridis",
    )  # fmt: skip
    values = _dem()[256:356, 64:264]
    index = linear_rescale(values, (lo, hi)).astype(np.uint8)
    viridis = rio_cmaps.get("viridis")
    table = np.array([viridis[i] for i in range(256)], dtype=np.uint8)
    valid = values != -9999.0
    assert np.array_equal(ours[valid], table[index][valid])
    assert (~valid).any()
    assert (ours[~valid, 3] == 0).all()


async def test_custom_discrete_colormap_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any
) -> None:
    custom = {1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 5: (0, 0, 255, 100), 300: (1, 1, 1, 255)}
    text = json.dumps({str(k): list(v) for k, v in custom.items()})
    ours = await _png(
        client, f"/tiles/WebMercatorQuad/{Z}/{X0}/{Y0}.png",
        url=upstream.url("classes.tif"), colormap=text,
    )  # fmt: skip
    ref = _rio_png(rio_reader(files["classes"]).tile(X0, Y0, Z), colormap=custom)
    assert np.array_equal(ours, ref)
    assert (ours[:, :, 3] == 100).any()
    assert (ours[:, :, 3] == 0).any()


async def test_interval_colormap_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any
) -> None:
    intervals = [
        ((-10000, 500), (0, 0, 128, 255)),
        ((500, 1200.5), (0, 160, 0, 255)),
        ((1200.5, 2000), (200, 160, 60, 255)),
        ((1800, 1900), (255, 0, 0, 255)),  # overlaps: the later interval wins
    ]
    text = json.dumps([[list(b), list(c)] for b, c in intervals])
    ours = await _png(
        client, f"/tiles/WebMercatorQuad/{Z}/{X0 + 1}/{Y0}.png",
        url=upstream.url("dem.tif"), colormap=text,
    )  # fmt: skip
    ref = _rio_png(rio_reader(files["dem"]).tile(X0 + 1, Y0, Z), colormap=intervals)
    assert np.array_equal(ours, ref)
    seen = {tuple(int(c) for c in p) for p in ours.reshape(-1, 4)}
    assert {(255, 0, 0, 255), (0, 0, 0, 0), (0, 160, 0, 255)} <= seen


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (json.dumps([[[i, i + 1], [0, 0, 0]] for i in range(1025)]), "1 to 1024 intervals"),
        (json.dumps({"1": [0, 0, 0, 0], "x": "y" * 70000}), "at most 65536 bytes"),
        ("[" * 5000 + "]" * 5000, "(not valid JSON|1 to 1024|interval 0)"),
    ],
)
def test_large_colormaps_are_refused(text: str, says: str) -> None:
    # past the service's URL length: the caps hold for the library, the CLI and Lambda
    with pytest.raises(colormaps.ColormapError, match=says):
        colormaps.parse(text)


def _big_discrete() -> str:
    return json.dumps({str(i): [i % 256, 0, 0] for i in range(257)})


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"colormap": "{not json"}, "not valid JSON"),
        ({"colormap": "42"}, "JSON object"),
        ({"colormap": "{}"}, "1 to 256 entries"),
        ({"colormap": _big_discrete()}, "1 to 256 entries"),
        ({"colormap": '{"1": [0, 0, 256]}'}, "0..255"),
        ({"colormap": '{"1": [0, -1, 0]}'}, "0..255"),
        ({"colormap": '{"1": [0, 1.5, 0]}'}, "0..255"),
        ({"colormap": '{"1": [0, 0]}'}, r"\[r, g, b\]"),
        ({"colormap": '{"1": [0, 0, 0, 0, 0]}'}, r"\[r, g, b\]"),
        ({"colormap": '{"1.5": [0, 0, 0]}'}, "integer values"),
        ({"colormap": "[[[5, 1], [0, 0, 0]]]"}, "min < max"),
        ({"colormap": '[[[0, "a"], [0, 0, 0]]]'}, "finite numbers"),
        ({"colormap": "[[0, 1, 2]]"}, r"\[\[min, max\]"),
        ({"colormap_name": "nope"}, "unknown colormap name"),
        ({"colormap_name": "viridis", "colormap": '{"1": [0, 0, 0]}'}, "not both"),
    ],
)
async def test_bad_colormaps_are_400(
    client: Client, upstream: Upstream, params: dict[str, str], says: str
) -> None:
    for path in (f"/tiles/WebMercatorQuad/{Z}/{X0}/{Y0}.png", "/preview"):
        async with client.get(path, params={"url": upstream.url("dem.tif"), **params}) as resp:
            doc = await resp.json()
            assert resp.status == 400, doc
        assert doc["code"] == "invalid_colormap"
        assert re.search(says, doc["detail"]), doc["detail"]


async def test_colormap_on_three_bands_is_400(
    client: Client, server: RangeServer, tmp_path: Path
) -> None:
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(
        path, np.zeros((3, 32, 32), np.uint8), photometric="rgb", planarconfig="separate"
    )
    up = Upstream.publish(server, {"rgb.tif": path.read_bytes()}, "cm-rgb")
    cfg = ServiceConfig(allowed_sources=(up.root,))
    async with TestClient(TestServer(create_app(cfg))) as c:
        params = {"url": up.url("rgb.tif"), "window": "0,0,32,32", "colormap_name": "viridis"}
        async with c.get("/region", params=params) as resp:
            doc = await resp.json()
            assert resp.status == 400, doc
    assert "one band" in doc["detail"]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*argv)  # in this process, through cloudroi.cli.main


def test_cli_colormap_flag(files: dict[str, Path], tmp_path: Path) -> None:
    from rio_tiler.colormap import cmap as rio_cmaps
    from rio_tiler.utils import linear_rescale

    out = tmp_path / "dem.png"
    lo, hi = DEM_RANGE
    done = _cli(
        "read", str(files["dem"]), "--window", "0,0,64,48", "--rescale", f"{lo},{hi}",
        "--colormap", "viridis", "-o", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rgba = np.asarray(imagecodecs.png_decode(out.read_bytes()))
    viridis = rio_cmaps.get("viridis")
    table = np.array([viridis[i] for i in range(256)], dtype=np.uint8)
    assert np.array_equal(rgba, table[linear_rescale(_dem()[:48, :64], (lo, hi)).astype(np.uint8)])

    classes = tmp_path / "classes.png"
    done = _cli(
        "read", str(files["classes"]), "--window", "0,0,64,48", "--colormap", "none",
        "-o", str(classes),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    grey = np.asarray(imagecodecs.png_decode(classes.read_bytes()))
    assert np.array_equal(grey[:, :, 0], _classes()[:48, :64])

    bad = _cli("read", str(files["dem"]), "--window", "0,0,8,8", "--colormap", "{", "-o", str(out))
    assert bad.returncode == 2
    assert "JSON" in bad.stderr


def test_shipped_tables_are_package_data() -> None:
    pyproject = (pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"colormaps/*.npz"' in pyproject
    assert pathlib.Path(colormaps.__file__).with_name("named.npz").is_file()


async def test_colormap_changes_the_etag(client: Client, upstream: Upstream) -> None:
    path = f"/tiles/WebMercatorQuad/{Z}/{X0}/{Y0}.png"
    etags = []
    for extra in ({}, {"colormap": "none"}, {"colormap_name": "viridis"}):
        async with client.get(path, params={"url": upstream.url("classes.tif"), **extra}) as r:
            assert r.status == 200
            etags.append(r.headers["ETag"])
    assert len(set(etags)) == 3


async def test_cog_info_colormap_equals_rio_tiler(
    client: Client, upstream: Upstream, files: dict[str, Path], rio_reader: Any
) -> None:
    async with client.get("/cog/info", params={"url": upstream.url("classes.tif")}) as resp:
        assert resp.status == 200
        doc = await resp.json()
    ref = rio_reader(files["classes"]).info().model_dump(mode="json")
    assert doc["colormap"] == ref["colormap"]
    assert doc["colorinterp"] == ref["colorinterp"] == ["palette"]
    async with client.get("/cog/info", params={"url": upstream.url("dem.tif")}) as resp:
        assert "colormap" not in await resp.json()


@pytest.mark.parametrize(
    "cmap",
    [
        {-5: (1, 2, 3, 255), 0: (9, 9, 9, 9), 7: (200, 0, 0, 255)},  # negative: searched
        {1: (255, 0, 0, 255), 3: (0, 0, 255, 128), 300: (5, 5, 5, 255)},  # a table
        [((-3, 0), (1, 1, 1, 255)), ((0, 2.5), (2, 2, 2, 255)), ((4, 9), (3, 3, 3, 3))],
        [((-3, 5), (1, 1, 1, 255)), ((2, 4), (2, 2, 2, 255)), ((4, 9), (3, 3, 3, 3))],
    ],
    ids=["discrete-negative", "discrete-table", "intervals-disjoint", "intervals-overlapping"],
)
@pytest.mark.parametrize("dtype", ["int16", "float32", "uint16"])
def test_custom_colormaps_equal_rio_tiler_apply_cmap(cmap: Any, dtype: str) -> None:
    from rio_tiler.colormap import apply_cmap

    rng = np.random.default_rng(3)
    values = rng.integers(-6, 12, (1, 40, 50)).astype(dtype)
    if dtype == "float32":
        values = values + rng.choice([0.0, 0.5], values.shape).astype(np.float32)
        values[0, 0, :5] = np.nan
    if isinstance(cmap, dict):
        text = json.dumps({str(k): list(v) for k, v in cmap.items()})
    else:
        text = json.dumps([[list(b), list(c)] for b, c in cmap])
    ours = colormaps.parse(text).apply(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgb, alpha = apply_cmap(values, cmap)
    assert np.array_equal(np.moveaxis(ours, -1, 0), np.concatenate([rgb, alpha[None]]))


async def test_paletted_region_as_geotiff_keeps_its_palette(
    client: Client, upstream: Upstream, files: dict[str, Path], tmp_path: Path
) -> None:
    params = {"url": upstream.url("classes.tif"), "window": "0,0,100,80", "format": "tif"}
    async with client.get("/region", params=params) as resp:
        assert resp.status == 200
        (tmp_path / "r.tif").write_bytes(await resp.read())
    with rasterio.open(tmp_path / "r.tif") as src:
        assert src.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert np.array_equal(src.read(1), _classes()[:80, :100])
        assert src.nodata == 0
    assert np.array_equal(
        _rasterio_palette(tmp_path / "r.tif", 256), _rasterio_palette(files["classes"], 256)
    )
    params["colormap"] = "none"
    async with client.get("/region", params=params) as resp:
        (tmp_path / "n.tif").write_bytes(await resp.read())
    with rasterio.open(tmp_path / "n.tif") as src:
        assert src.colorinterp[0] == rasterio.enums.ColorInterp.gray
