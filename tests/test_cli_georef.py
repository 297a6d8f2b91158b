"""The georeferenced side of the ``cloudroi`` command (``tile``, ``point``, ``read`` onto
another grid, what ``info`` adds), run through its main function (tests/test_cli.py's
``cloudroi``; stdout as a pipe and the missing geo extra in child processes) against the real
range server serving the GDAL-written files of tests/warp_data.py, and compared with the
library's own verbs, rio-tiler's ``Reader.tile()`` and ``rasterio.warp.reproject`` on the same
grid."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt
import pytest
import rasterio
import rasterio.warp
from affine import Affine

import cloudroi
from cloudroi.cli import EXIT_TILE_OUTSIDE
from cloudroi.cog import write_cog
from cloudroi.region import ArgumentError, ImageData
from cloudroi.region import args as region_args
from cloudroi.testing import RangeServer
from tests.test_cli import cloudroi as run
from tests.warp_data import TILES, quiet, rio_tiler_tile


def serve(server: RangeServer, path: Path) -> str:
    name = f"cli-georef-{uuid.uuid4().hex[:8]}/{path.name}"
    server.add(name, path.read_bytes())
    return server.url(name)


def library_tile(url: str, z: int, x: int, y: int, **kwargs: Any) -> ImageData:
    async def go() -> ImageData:
        async with await cloudroi.open(url) as img:
            return await img.tile(x, y, z, **kwargs)

    return asyncio.run(go())


def one_line_error(result: subprocess.CompletedProcess[str], status: int, text: str) -> str:
    """The command failed with ``status`` and said why in one last line holding ``text``."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cloudroi "), result.stderr
    assert text in last, result.stderr
    return last


def colour_and_alpha(png: bytes) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """A decoded PNG as (bands, h, w) colour and its alpha as a validity mask."""
    pixels = imagecodecs.png_decode(png)
    assert pixels.ndim == 3
    return np.moveaxis(pixels[:, :, :-1], -1, 0), pixels[:, :, -1] > 0


# --------------------------------------------------------------------------------------------
# tile
# --------------------------------------------------------------------------------------------

# RGB UTM at full resolution, one band with nodata from an overview, the polar file
CASES = [
    (*TILES[3], "nearest"),
    (*TILES[3], "bilinear"),
    (*TILES[12], "nearest"),
    (*TILES[15], "cubic"),
]


@pytest.mark.parametrize(
    ("key", "zxy", "kernel"), CASES, ids=[f"{k}-{z}/{x}/{y}-{r}" for k, (z, x, y), r in CASES]
)
def test_tile_png_is_the_library_tile_and_rio_tilers(
    server: RangeServer,
    warp_files: dict[str, Path],
    tmp_path: Path,
    key: str,
    zxy: tuple[int, int, int],
    kernel: str,
) -> None:
    z, x, y = zxy
    path = warp_files[key]
    url = serve(server, path)
    out = tmp_path / "t.png"
    result = run("tile", url, str(z), str(x), str(y), "--resampling", kernel, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"tile {z}/{x}/{y} of WebMercatorQuad, 256x256" in result.stderr
    # exactly the library's tile, rendered
    lib = library_tile(url, z, x, y, resampling=kernel)
    assert out.read_bytes() == lib.render("png").body
    colour, valid = colour_and_alpha(out.read_bytes())
    assert lib.mask is not None
    np.testing.assert_array_equal(valid, lib.mask > 0)
    np.testing.assert_array_equal(colour[:, valid], lib.data[:, valid])  # uint8: shown as is
    # and rio-tiler's (GDAL's WarpedVRT) on >= 99.5 % of the pixels valid in both
    ref, ref_valid = rio_tiler_tile(path, z, x, y, kernel)
    assert colour.shape == ref.shape
    both = valid & ref_valid
    assert both.sum() > 1000
    assert (colour[:, both] == ref[:, both]).all(axis=0).mean() >= 0.995
    assert (valid != ref_valid).sum() <= 2 * 512


def test_tile_to_stdout_and_other_formats(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    (z, x, y) = TILES[3][1]
    url = serve(server, warp_files["utm"])
    args = ["tile", url, str(z), str(x), str(y)]
    png = tmp_path / "t.png"
    assert run(*args, "-o", str(png)).returncode == 0
    piped = subprocess.run(
        [sys.executable, "-m", "cloudroi.cli", *args], capture_output=True, timeout=60
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == png.read_bytes()  # png when nothing names a format
    dash = subprocess.run(
        [sys.executable, "-m", "cloudroi.cli", *args, "-o", "-", "--format", "jpg"],
        capture_output=True,
        timeout=60,
    )
    assert dash.returncode == 0, dash.stderr
    assert imagecodecs.jpeg8_decode(dash.stdout).shape == (256, 256, 3)
    lib = library_tile(url, z, x, y, tilesize=512, bands=[2])
    npy = tmp_path / "t.npy"
    result = run(*args, "--tilesize", "512", "--bands", "2", "-o", str(npy))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(npy), lib.data)
    assert np.load(npy).shape == (1, 512, 512)
    tif = tmp_path / "t.tif"
    assert run(*args, "-o", str(tif)).returncode == 0
    with quiet(), rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 3857
        assert ds.transform.to_gdal() == pytest.approx(library_tile(url, z, x, y).transform)


def test_tile_refusals(server: RangeServer, warp_files: dict[str, Path], tmp_path: Path) -> None:
    url = serve(server, warp_files["utm"])
    out = str(tmp_path / "t.png")
    # a tile of the matrix that does not touch the image: its own status, one sentence
    last = one_line_error(
        run("tile", url, "10", "0", "0", "-o", out), EXIT_TILE_OUTSIDE, "is outside the image"
    )
    assert last == "cloudroi tile: error: tile 10/0/0 of WebMercatorQuad is outside the image"
    assert not Path(out).exists()
    (z, x, y) = TILES[3][1]
    zxy = [str(z), str(x), str(y)]
    usage = [
        (["tile", url, "25", "0", "0"], "zoom 25 is not in WebMercatorQuad's 0..24"),
        (["tile", url, "2", "4", "0"], "tile 2/4/0 is outside WebMercatorQuad's 4x4 matrix"),
        (["tile", url, "1", "0", "0", "--tms", "WorldCRS84Quad"], None),  # -180..-90: off
        (["tile", url, "0", "0", "1", "--tms", "WorldCRS84Quad"], "WorldCRS84Quad's 2x1 matrix"),
        (["tile", url, "z", "0", "0"], "z must be an integer, got 'z'"),
        (["tile", url, *zxy, "--tms", "Nowhere"], "unknown tile matrix set 'Nowhere'"),
        (["tile", url, *zxy, "--resampling", "lanczos"], "--resampling must be one of"),
        (["tile", url, *zxy, "--io-resampling", "sharp"], "--io-resampling must be one of"),
        (["tile", url, *zxy, "--tilesize", "0"], "--tilesize must be in 1..4096"),
        (["tile", url, *zxy, "--bands", "4"], "bands are numbered 1..3"),
        (["tile", url, *zxy, "--bands", "1,2"], "1 or 3 bands"),
        (["tile", url, *zxy, "-o", str(tmp_path / "t.gif")], "cannot tell the output format"),
        (["tile", url, *zxy, "-o", out, "--format", "webp"], "contradicts the extension"),
    ]
    for argv, message in usage:
        result = run(*argv, "-o", out) if "-o" not in argv else run(*argv)
        if message is None:  # a tile of the matrix (WorldCRS84Quad's zoom 1 is 4 x 2)
            assert result.returncode == EXIT_TILE_OUTSIDE, result.stderr
            continue
        one_line_error(result, 2, message)


def test_tile_of_an_image_without_georeferencing(server: RangeServer, tmp_path: Path) -> None:
    name = f"cli-georef-{uuid.uuid4().hex[:8]}/plain.tif"
    server.add(name, write_cog(np.zeros((1, 64, 64), np.uint8), tile=64))
    result = run("tile", server.url(name), "0", "0", "0", "-o", str(tmp_path / "t.png"))
    one_line_error(result, 2, "no CRS or geotransform")
    point = run("point", server.url(name), "1", "1", "--crs", "EPSG:4326")
    one_line_error(point, 2, "no CRS or geotransform")
    info = run("info", server.url(name), "--json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert (doc["wgs84_bounds"], doc["minzoom"], doc["maxzoom"]) == (None, None, None)
    assert "Zoom range" not in run("info", server.url(name)).stdout


# --------------------------------------------------------------------------------------------
# read onto another grid
# --------------------------------------------------------------------------------------------


def reproject_like(
    path: Path, tif: Path, kernel: str = "nearest"
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """What the CLI wrote in ``tif`` and rasterio.warp.reproject of the file's full resolution
    onto the same grid (one warp chunk, a destination alpha band), with GDAL's validity."""
    with quiet(), rasterio.open(tif) as got, rasterio.open(path) as src:
        ref = np.zeros((src.count + 1, got.height, got.width), src.dtypes[0])
        rasterio.warp.reproject(
            src.read(),
            ref,
            src_transform=src.transform,
            src_crs=src.crs,
            src_nodata=src.nodata,
            dst_transform=got.transform,
            dst_crs=got.crs,
            resampling=rasterio.warp.Resampling[kernel],
            dst_alpha=src.count + 1,
            warp_mem_limit=512,
            SRC_FILL_RATIO_HEURISTICS="NO",
        )
        return got.read(), ref[:-1], ref[-1] > 0


def test_reprojected_read_equals_rasterio_reproject(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    path = warp_files["utm"]
    url = serve(server, path)
    lonlat = (14.78, 45.42, 15.02, 45.58)
    tif = tmp_path / "r.tif"
    box = ",".join(map(str, lonlat))
    result = run(
        "read", url, "--bbox", box, "--bbox-crs", "EPSG:4326", "--dst-crs", "4326",
        "--size", "240,160", "--level", "0", "-o", str(tif),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr
    with quiet(), rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 4326
        assert (ds.width, ds.height) == (240, 160)
        assert ds.bounds == pytest.approx(lonlat)
    got, ref, ref_valid = reproject_like(path, tif)
    assert ref_valid.mean() > 0.9
    assert (got[:, ref_valid] == ref[:, ref_valid]).all(axis=0).mean() >= 0.995


def test_bbox_carried_into_the_destination_crs(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    path = warp_files["utm"]
    url = serve(server, path)
    lonlat = (14.8, 45.44, 15.0, 45.56)
    tif = tmp_path / "m.tif"
    result = run(
        "read", url, "--bbox", ",".join(map(str, lonlat)), "--bbox-crs", "EPSG:4326",
        "--dst-crs", "EPSG:3857", "--resolution", "20", "--resampling", "bilinear",
        "--level", "0", "-o", str(tif),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # GDAL's transform_bounds, 21 points an edge, gives the grid's corner
    with quiet():
        minx, miny, maxx, maxy = rasterio.warp.transform_bounds(
            "EPSG:4326", "EPSG:3857", *lonlat, densify_pts=21
        )
    with quiet(), rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 3857
        t = ds.transform
        assert (t.a, t.e, t.b, t.d) == (20.0, -20.0, 0.0, 0.0)
        assert (t.c, t.f) == pytest.approx((minx, maxy), abs=1e-6)
        assert (ds.width, ds.height) == (int((maxx - minx + 10) / 20), int((maxy - miny + 10) / 20))
    got, ref, ref_valid = reproject_like(path, tif, "bilinear")
    assert ref_valid.mean() > 0.9
    assert (got[:, ref_valid] == ref[:, ref_valid]).all(axis=0).mean() >= 0.995


def test_default_grid_is_gdals_suggested_resolution_and_png_has_the_mask(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    path = warp_files["wgs84"]  # one band, nodata 0 and a nodata hole
    url = serve(server, path)
    utm = (300000, 3900000, 700000, 4300000)
    tif, png = tmp_path / "u.tif", tmp_path / "u.png"
    common = ["read", url, "--bbox", ",".join(map(str, utm)), "--dst-crs", "EPSG:32632"]
    assert run(*common, "-o", str(tif)).returncode == 0
    with quiet(), rasterio.open(path) as src:
        suggested, _, _ = rasterio.warp.calculate_default_transform(
            src.crs, "EPSG:32632", src.width, src.height, *src.bounds
        )
    with quiet(), rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 32632
        assert ds.nodata == 0
        assert ds.transform.a == pytest.approx(suggested.a, rel=1e-9)
        assert ds.transform.e == pytest.approx(suggested.e, rel=1e-9)
        assert (ds.transform.c, ds.transform.f) == (utm[0], utm[3])
    result = run(*common, "--size", "400,400", "--level", "0", "-o", str(png))
    assert result.returncode == 0, result.stderr
    colour, valid = colour_and_alpha(png.read_bytes())
    tif400 = tmp_path / "u400.tif"
    assert run(*common, "--size", "400,400", "--level", "0", "-o", str(tif400)).returncode == 0
    _, ref, ref_valid = reproject_like(path, tif400)
    assert 0.3 < ref_valid.mean() < 1  # the file's edge and its nodata hole are in the box
    assert (valid != ref_valid).sum() <= 2 * 800
    both = valid & ref_valid
    assert (colour[:, both] == ref[:, both]).all(axis=0).mean() >= 0.995


def test_a_box_off_the_image_is_all_invalid(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    url = serve(server, warp_files["utm"])

    async def library() -> ImageData:
        async with await cloudroi.open(url) as img:
            return await img.read_region((0, 0, 1, 1), crs=4326, shape=(8, 8))

    # before the fix in georef.read_warped: WarpError "execute needs at least one source block"
    got = asyncio.run(library())
    assert got.mask is not None
    assert got.data.shape == (3, 8, 8)
    assert not got.mask.any()
    assert not got.data.any()
    png = tmp_path / "off.png"
    args = ["--bbox", "0,0,1,1", "--bbox-crs", "4326", "--size", "8,8"]
    result = run("read", url, *args, "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert "no valid pixel" in result.stderr
    _, valid = colour_and_alpha(png.read_bytes())
    assert not valid.any()


def test_read_refusals(server: RangeServer, warp_files: dict[str, Path], tmp_path: Path) -> None:
    url = serve(server, warp_files["utm"])
    out = str(tmp_path / "x.tif")
    box = ["--bbox", "14.8,45.44,15.0,45.56"]
    cases = [
        (["--window", "0,0,8,8", "--dst-crs", "4326"], "give --bbox, not --window"),
        ([*box, "--bbox-crs", "4326", "--size", "8,8", "--resolution", "1"], "not both"),
        ([*box, "--width", "8", "--height", "8", "--resolution", "1"], "not both"),
        ([*box, "--dst-crs", "EPSG:999999"], "unknown CRS 'EPSG:999999'"),
        ([*box, "--dst-crs", "+proj=nonsense"], "argument --dst-crs: --dst-crs must be an EPSG"),
        ([*box, "--width", "8"], "give --width and --height together"),
        ([*box, "--width", "8", "--height", "0"], "--height must be in 1..1048576, got 0"),
        ([*box, "--bbox-crs", "4326", "--resolution", "0"], "--resolution must be positive"),
        ([*box, "--bbox-crs", "4326", "--resampling", "mode"], "--resampling must be one of"),
        # the whole world at 10 m: refused before anything is read
        (["--bbox=-180,-80,180,80", "--bbox-crs", "4326"], "the output would be"),
    ]
    for extra, message in cases:
        result = run("read", url, *extra, "-o", out)
        one_line_error(result, 2, message)
        assert not Path(out).exists()


# --------------------------------------------------------------------------------------------
# point, info
# --------------------------------------------------------------------------------------------


def test_point_in_another_crs_equals_rasterio_and_rio_tiler(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    from rio_tiler.io import Reader

    path = warp_files["utm"]
    url = serve(server, path)
    with quiet(), rasterio.open(path) as ds, Reader(str(path)) as r:
        for lon, lat in [(14.9, 45.5), (15.0, 45.59)]:
            xs, ys = rasterio.warp.transform("EPSG:4326", ds.crs, [lon], [lat])
            row, col = ds.index(xs[0], ys[0])
            expected = [int(v) for v in ds.read(window=((row, row + 1), (col, col + 1)))[:, 0, 0]]
            assert [int(v) for v in r.point(lon, lat).data] == expected
            result = run("point", url, str(lon), str(lat), "--crs", "EPSG:4326")
            assert result.returncode == 0, result.stderr
            doc = json.loads(result.stdout)
            assert (doc["row"], doc["col"], doc["values"]) == (row, col, expected)
            assert doc["valid"] is True
            # the same place in the image's own CRS, as the service's /point
            native = run("point", url, repr(xs[0]), repr(ys[0]))
            assert native.returncode == 0, native.stderr
            assert json.loads(native.stdout) == doc
    one_line_error(run("point", url, "0", "0", "--crs", "4326"), 1, "outside the image")
    one_line_error(run("point", url, "0", "0"), 1, "outside the 2048x2048 image")
    one_line_error(run("point", url, "1", "2", "--crs", "EPSG:0"), 2, "EPSG code out of range")
    one_line_error(run("point", url, "1", "2", "--crs", "+proj=utm"), 2, "argument --crs")
    one_line_error(run("point", url, "1", "nan"), 2, "Y must be a number")


def test_info_adds_zoom_range_and_wgs84_bounds(
    server: RangeServer, warp_files: dict[str, Path]
) -> None:
    from rio_tiler.io import Reader

    path = warp_files["polar"]
    with warnings.catch_warnings(), quiet(), Reader(str(path)) as r:
        warnings.simplefilter("ignore")
        bounds = r.get_geographic_bounds(rasterio.crs.CRS.from_epsg(4326))
        zooms = (r.minzoom, r.maxzoom)
    url = serve(server, path)
    result = run("info", url, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["minzoom"], doc["maxzoom"]) == zooms
    assert doc["wgs84_bounds"] == pytest.approx(bounds, abs=1e-9)
    assert doc["crs"] == 3031  # what was there is still there
    text = run("info", url)
    assert f"Zoom range   {zooms[0]}..{zooms[1]} (WebMercatorQuad)" in text.stdout
    assert "WGS84 bounds " in text.stdout


#: A child process without pyproj and morecantile (as where the geo extra is not installed) runs
#: the commands given as JSON through ``main``, answering [status, stdout, stderr] for each.
WITHOUT_GEO = """
import contextlib, io, json, sys
sys.modules['pyproj'] = None
sys.modules['morecantile'] = None
from cloudroi.cli import main
answers = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    answers.append([status, out.getvalue(), err.getvalue()])
print(json.dumps(answers))
"""


def test_without_the_geo_extra(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    url = serve(server, warp_files["utm"])
    commands = [
        ["info", url, "--json"],
        ["tile", url, "12", "2200", "1400"],
        ["read", url, "--bbox", "1,2,3,4", "--dst-crs", "4326", "-o", "x.tif"],
        ["read", url, "--window", "0,0,8,8", "-o", str(tmp_path / "w.npy")],
        ["point", url, "480005", "5049995"],
    ]
    child = subprocess.run(
        [sys.executable, "-c", WITHOUT_GEO, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    info, tile, reproject, plain, native = (
        subprocess.CompletedProcess(argv, status, out, err)
        for argv, (status, out, err) in zip(commands, json.loads(child.stdout), strict=True)
    )
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert (doc["crs"], doc["minzoom"], doc["wgs84_bounds"]) == (32633, None, None)
    one_line_error(tile, 2, "pip install 'cloudroi[geo]'")
    one_line_error(reproject, 2, "pyproj")
    assert plain.returncode == 0, plain.stderr
    assert (tmp_path / "w.npy").exists()
    assert native.returncode == 0, native.stderr
    assert json.loads(native.stdout)["col"] == 0


# --------------------------------------------------------------------------------------------
# the shared rules (the service parses the same arguments with them)
# --------------------------------------------------------------------------------------------


def test_shared_georeferencing_rules() -> None:
    """The CLI's options go through the validators the service's query parameters use."""
    from cloudroi import warp
    from cloudroi.cli import build_parser

    assert region_args.KERNELS == warp.RESAMPLINGS
    assert region_args.crs("4326") == "EPSG:4326"
    assert region_args.crs("OGC:CRS84") == "EPSG:4326"
    assert region_args.resolution("10") == (10.0, 10.0)
    assert region_args.resolution("10,20") == (10.0, 20.0)
    for parse, text in [
        (region_args.resolution, "1,2,3"),
        (region_args.resolution, "nan"),
        (region_args.resolution, "-1"),
    ]:
        with pytest.raises(ArgumentError):
            parse(text)
    ns = build_parser().parse_args(
        ["read", "u", "--bbox", "1,2,3,4", "--dst-crs", "urn:ogc:def:crs:EPSG::3857",
         "--bbox-crs", "CRS:84", "--resampling", "Bilinear", "--resolution", "2.5", "-o", "x"]
    )  # fmt: skip
    assert (ns.dst_crs, ns.bbox_crs, ns.resampling) == ("EPSG:3857", "EPSG:4326", "bilinear")
    assert ns.resolution == (2.5, 2.5)
    ns = build_parser().parse_args(["tile", "u", "1", "2", "3", "--io-resampling", "Average"])
    assert (ns.tms, ns.tilesize, ns.resampling, ns.io_resampling) == (
        "WebMercatorQuad",
        256,
        "nearest",
        "average",
    )


def test_plain_read_still_reads_level_0(warp_files: dict[str, Path], tmp_path: Path) -> None:
    # --level's default is now None (a warp picks its own overview); a plain read still reads
    # level 0, pixel for pixel
    path = warp_files["utm"]
    out = tmp_path / "w.npy"
    result = run("read", str(path), "--window", "100,100,64,64", "-o", str(out))
    assert result.returncode == 0, result.stderr
    with quiet(), rasterio.open(path) as ds:
        np.testing.assert_array_equal(np.load(out), ds.read(window=((100, 164), (100, 164))))


def test_reprojected_tif_keeps_georeferencing_exactly(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    url = serve(server, warp_files["utm"])
    tif = tmp_path / "g.tif"
    result = run(
        "read", url, "--bbox", "490000,5030000,500000,5040000", "--dst-crs", "EPSG:32632",
        "--bbox-crs", "EPSG:32633", "--resolution", "25,50", "-o", str(tif),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with quiet():
        minx, _, _, maxy = rasterio.warp.transform_bounds(
            "EPSG:32633", "EPSG:32632", 490000, 5030000, 500000, 5040000, densify_pts=21
        )
    with quiet(), rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 32632
        assert ds.transform.almost_equals(Affine(25.0, 0.0, minx, 0.0, -50.0, maxy))


def test_read_width_height_is_the_library_read_region(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    path = warp_files["utm"]
    url = serve(server, path)
    lonlat = (14.8, 45.44, 15.0, 45.56)
    with quiet():
        merc = rasterio.warp.transform_bounds("EPSG:4326", "EPSG:3857", *lonlat, densify_pts=21)

    async def library() -> ImageData:
        async with await cloudroi.open(url) as img:
            return await img.read_region(merc, crs=3857, shape=(150, 200), resampling="cubic")

    lib = asyncio.run(library())
    npy = tmp_path / "r.npy"
    result = run(
        "read", url, "--bbox", ",".join(map(str, lonlat)), "--bbox-crs", "EPSG:4326",
        "--dst-crs", "EPSG:3857", "--width", "200", "--height", "150", "--resampling", "cubic",
        "-o", str(npy),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr
    assert "200x150" in result.stderr
    got = np.load(npy)
    assert got.shape == (3, 150, 200)
    np.testing.assert_array_equal(got, lib.data)  # pixel for pixel the library's
    assert lib.mask is not None
    assert lib.mask.mean() > 200  # mostly inside the image


def test_tile_io_resampling_is_the_library_and_rio_tilers(
    server: RangeServer, warp_files: dict[str, Path], tmp_path: Path
) -> None:
    key, (z, x, y) = TILES[12]  # one band with nodata, read from an overview
    path = warp_files[key]
    url = serve(server, path)
    out = tmp_path / "t.npy"
    argv = ["tile", url, str(z), str(x), str(y), "--io-resampling", "bilinear", "-o", str(out)]
    result = run(*argv)
    assert result.returncode == 0, result.stderr
    lib = library_tile(url, z, x, y, io_resampling="bilinear")
    np.testing.assert_array_equal(np.load(out), lib.data)
    assert lib.mask is not None
    ref, ref_valid = rio_tiler_tile(path, z, x, y, "nearest", "bilinear")
    valid = lib.mask > 0
    both = valid & ref_valid
    assert both.sum() > 1000
    assert (lib.data[:, both] == ref[:, both]).all(axis=0).mean() >= 0.995
