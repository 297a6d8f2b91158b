"""YCbCr JPEG decoded as GDAL decodes it: ``jpeg_decoder="ijg9"`` against rasterio (whose PyPI
wheel links IJG libjpeg 9), and the default libjpeg-turbo decoder's measured difference.

The files are written by GDAL (rasterio) with sharp saturated colour edges, where the two
libjpegs' chroma upsampling differs most: COGs with 256 tiles and overviews, a tiled GTiff with
built overviews, a striped file; 770 x 610 pixels (not a multiple of 16 or of the tile size, so
there are edge tiles and partial MCUs).
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.enums import Resampling

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.context import ContextOptions
from cloudroi.errors import OptionError
from cloudroi.testing import RangeServer
from tests.corpus import quiet, rio_open, rio_read

pytest.importorskip("jpeglib", reason="the jpeg-ijg9 extra (jpeglib) is not installed")

W, H = 770, 610
ROOT = Path(__file__).resolve().parents[1]
#: red, green, blue, yellow, cyan, magenta
PALETTE = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]],
    np.uint8,
)


def checker(cell: int) -> np.ndarray:
    """Random saturated cells of ``cell`` pixels: a chroma edge every ``cell`` pixels."""
    idx = np.random.default_rng(cell).integers(0, 4, (-(-H // cell), -(-W // cell)))
    return np.ascontiguousarray(PALETTE[idx].repeat(cell, 0).repeat(cell, 1)[:H, :W])


def lines() -> np.ndarray:
    """1-2 px coloured lines on white and grey."""
    rng = np.random.default_rng(7)
    img = np.full((H, W, 3), 128, np.uint8)
    img[:, : W // 2] = 255
    for k in range(0, H, 7):
        img[k, :] = PALETTE[rng.integers(0, 6)]
    for k in range(3, W, 11):
        img[:, k : k + 1 + (k // 11) % 2] = PALETTE[rng.integers(0, 6)]
    return img


def _write(path: Path, img: np.ndarray, **profile: Any) -> None:
    bands = img.shape[2]
    with (
        quiet(),
        rasterio.open(path, "w", width=W, height=H, count=bands, dtype="uint8", **profile) as dst,
    ):
        dst.write(img.transpose(2, 0, 1))


def _cog(path: Path, img: np.ndarray, quality: int) -> None:
    # driver=COG: 3-band JPEG is PHOTOMETRIC=YCBCR (4:2:0) by default, its overviews too
    _write(path, img, driver="COG", COMPRESS="JPEG", QUALITY=str(quality), BLOCKSIZE="256")


def _gtiff_overviews(path: Path, img: np.ndarray) -> None:
    env = {"COMPRESS_OVERVIEW": "JPEG", "PHOTOMETRIC_OVERVIEW": "YCBCR"}
    with rasterio.Env(**env, GDAL_TIFF_OVR_BLOCKSIZE="256"):
        _write(
            path,
            img,
            driver="GTiff",
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="JPEG",
            photometric="YCBCR",
            JPEG_QUALITY="90",
        )
        with quiet(), rasterio.open(path, "r+") as ds:
            ds.build_overviews([2, 4], Resampling.average)


def _strips(path: Path, img: np.ndarray) -> None:
    # 32 rows per strip: the last of 610 rows holds 2
    _write(
        path,
        img,
        driver="GTiff",
        tiled=False,
        blockysize=32,
        compress="JPEG",
        photometric="YCBCR",
        JPEG_QUALITY="90",
    )


YCBCR: dict[str, Callable[[Path], None]] = {
    "cog-checker2-q90": lambda p: _cog(p, checker(2), 90),
    "cog-checker3-q100": lambda p: _cog(p, checker(3), 100),
    "cog-lines-q75": lambda p: _cog(p, lines(), 75),
    "gtiff-checker1-ovr": lambda p: _gtiff_overviews(p, checker(1)),
    "strips-lines": lambda p: _strips(p, lines()),
}
OTHER: dict[str, Callable[[Path], None]] = {
    "gray": lambda p: _cog(p, checker(2)[:, :, :1], 90),
    "rgb": lambda p: _write(
        p, checker(2), driver="GTiff", tiled=True, compress="JPEG", photometric="RGB"
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jpeg_parity")
    out = {}
    for name, build in {**YCBCR, **OTHER}.items():
        out[name] = folder / f"{name}.tif"
        build(out[name])
    return out


def rasterio_libjpeg() -> str:
    """Which libjpeg the installed rasterio's GDAL uses, from the libraries its wheel bundles:
    "ijg9" (libjpeg.so.9, the PyPI wheels), else "other"."""
    libs = Path(rasterio.__file__).resolve().parent.parent / "rasterio.libs"
    found = [p.name for p in libs.glob("libjpeg*")] if libs.is_dir() else []
    return "ijg9" if any(".so.9" in name for name in found) else "other"


needs_ijg9_rasterio = pytest.mark.skipif(
    rasterio_libjpeg() != "ijg9", reason="rasterio here is not the PyPI wheel with IJG libjpeg 9"
)


async def read_levels(url: str, **options: Any) -> list[np.ndarray]:
    async with cloudroi.open(url, **options) as img:
        return [await img.read(level=lv) for lv in range(len(img.levels))]


def reference(path: Path, levels: int) -> list[np.ndarray]:
    out = []
    for lv in range(levels):
        with rio_open(path, lv) as ds:
            w, h = ds.width, ds.height
        out.append(rio_read(path, (0, 0, w, h), lv))
    return out


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def serve(server: RangeServer, path: Path) -> str:
    url_path = f"/jpeg_parity/{path.name}"
    server.add(url_path, path.read_bytes())
    return server.url(url_path)


@needs_ijg9_rasterio
@pytest.mark.parametrize("name", sorted(YCBCR))
async def test_ijg9_matches_rasterio_at_every_level(
    name: str, files: dict[str, Path], server: RangeServer
) -> None:
    path = files[name]
    got = await read_levels(serve(server, path), jpeg_decoder="ijg9")
    ref = reference(path, len(got))
    assert len(got) >= (1 if name.startswith("strips") else 2)  # overviews are YCbCr too
    for lv, (a, b) in enumerate(zip(got, ref, strict=True)):
        worst = int(diff(a, b).max())
        assert worst <= 2, f"{name} level {lv}: max |ijg9 - rasterio| = {worst} DN"  # measured 0


#: The default decoder (libjpeg-turbo's triangle-filter chroma upsampling) against rasterio's
#: wheel (IJG 9's 16x16 chroma IDCT) at full resolution, measured on these files (max |diff| in
#: DN, mean in brackets); the luma decodes identically, so gray JPEG never differs.
TURBO_VS_RASTERIO = {
    "cog-checker2-q90": (180, 255),  # measured 227 (mean 26.0)
    "cog-checker3-q100": (150, 255),  # 202 (22.2)
    "cog-lines-q75": (100, 255),  # 149 (10.2)
    "gtiff-checker1-ovr": (180, 255),  # 255 (18.8)
    "strips-lines": (100, 255),  # 176 (10.2)
}


@needs_ijg9_rasterio
@pytest.mark.parametrize("name", sorted(YCBCR))
async def test_turbo_default_differs_from_rasterio_at_chroma_edges(
    name: str, files: dict[str, Path], server: RangeServer
) -> None:
    path = files[name]
    url = serve(server, path)
    turbo = (await read_levels(url))[0]  # the default
    ijg9 = (await read_levels(url, jpeg_decoder="ijg9"))[0]
    d = diff(turbo, rio_read(path, (0, 0, W, H)))
    low, high = TURBO_VS_RASTERIO[name]
    assert low <= int(d.max()) <= high, int(d.max())
    assert float(d.mean()) > 5.0  # these images are all chroma edges
    assert int(diff(ijg9, rio_read(path, (0, 0, W, H))).max()) == 0


@pytest.mark.parametrize("name", sorted(OTHER))
async def test_gray_and_rgb_jpeg_are_unaffected(
    name: str, files: dict[str, Path], server: RangeServer
) -> None:
    path = files[name]
    url = serve(server, path)
    turbo = await read_levels(url, jpeg_decoder="turbo")
    ijg9 = await read_levels(url, jpeg_decoder="ijg9")
    for lv, (a, b, ref) in enumerate(zip(turbo, ijg9, reference(path, len(turbo)), strict=True)):
        assert int(diff(a, b).max()) == 0, lv
        assert int(diff(a, ref).max()) == 0, lv


@needs_ijg9_rasterio
async def test_decoded_blocks_are_cached_per_decoder(
    files: dict[str, Path], server: RangeServer
) -> None:
    path = files["cog-checker2-q90"]
    url = serve(server, path)
    ref = rio_read(path, (0, 0, W, H))
    cache = LRUCache[Any](64 << 20, sizeof=lambda a: int(a.nbytes))
    async with cloudroi.Context(decoded_cache=cache) as ctx:
        async with cloudroi.open(url, context=ctx) as img:
            turbo = await img.read()
        async with cloudroi.open(url, context=ctx, jpeg_decoder="ijg9") as img:
            first = await img.read()
            assert img.stats.decoded_cache_hits == 0  # not the turbo blocks
            again = await img.read()
            assert img.stats.decoded_cache_hits > 0
    assert int(diff(turbo, ref).max()) > 100
    assert int(diff(first, ref).max()) == int(diff(again, ref).max()) == 0


async def test_context_default_env_and_per_image_override(
    files: dict[str, Path], server: RangeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = serve(server, files["cog-checker2-q90"])
    monkeypatch.setenv("CLOUDROI_JPEG_DECODER", "ijg9")
    assert ContextOptions().jpeg_decoder == "ijg9"
    async with cloudroi.Context() as ctx:
        async with cloudroi.open(url, context=ctx) as img:
            from_env = await img.read(level=1)
        async with cloudroi.open(url, context=ctx, jpeg_decoder="turbo") as img:
            turbo = await img.read(level=1)
    monkeypatch.setenv("CLOUDROI_JPEG_DECODER", "libjpeg")
    with pytest.raises(OptionError, match="turbo, ijg9"):
        cloudroi.Context()
    monkeypatch.delenv("CLOUDROI_JPEG_DECODER")
    assert ContextOptions().jpeg_decoder == "turbo"
    default = await read_levels(url)
    assert int(diff(turbo, default[1]).max()) == 0
    assert int(diff(from_env, turbo).max()) > 50
    with pytest.raises(OptionError, match="jpeg_decoder"):
        await read_levels(url, jpeg_decoder="fancy")


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_missing_extra_is_a_typed_error(files: dict[str, Path]) -> None:
    """Without jpeglib (hidden from the import system), asking for ijg9 names the extra, on
    Context creation and on open; the default decoder still reads."""
    result = run_python(f"""
        import sys
        sys.modules["jpeglib"] = None  # as if the extra were not installed
        import cloudroi
        from cloudroi.errors import MissingExtraError
        data = {str(files["cog-lines-q75"])!r}
        for attempt in (lambda: cloudroi.Context(jpeg_decoder="ijg9"),
                        lambda: cloudroi.read(data, (0, 0, 8, 8), jpeg_decoder="ijg9")):
            try:
                attempt()
            except MissingExtraError as exc:
                assert exc.extra == "jpeg-ijg9", exc
                print(exc)
            else:
                raise SystemExit("no MissingExtraError")
        print(cloudroi.read(data, (0, 0, 8, 8)).shape)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == lines[1]
    assert "pip install 'cloudroi[jpeg-ijg9]'" in lines[0]
    assert lines[2] == "(3, 8, 8)"


def test_malformed_blocks_never_reach_libjpeg_errors(files: dict[str, Path]) -> None:
    """IJG's entry point cannot survive a libjpeg error (the process dies), so malformed or
    unusual blocks must be refused before it. Hundreds of damaged tiles, decoded in a child
    process: each decodes (damaged entropy data only gives libjpeg warnings) or raises
    TiffFormatError; the child must exit normally."""
    result = run_python(f"""
        import random, tifffile
        import numpy as np
        from cloudroi.read.jpeg_ijg import decode_ijg9
        raw = open({str(files["cog-checker2-q90"])!r}, "rb").read()
        with tifffile.TiffFile({str(files["cog-checker2-q90"])!r}) as tf:
            page = tf.pages[0]
            tables = page.jpegtables
            off, n = page.dataoffsets[0], page.databytecounts[0]
        tile = raw[off:off + n]
        assert decode_ijg9(tile, tables) is not None
        rng = random.Random(5)
        sos = tile.index(b"\\xff\\xda")
        variants = [tile[:k] for k in (2, 4, 20, sos, sos + 14, len(tile) // 2, len(tile) - 2)]
        variants += [b"\\xff\\xd8" + bytes(rng.randrange(256) for _ in range(600))]
        for _ in range(400):
            b = bytearray(tile)
            for _ in range(rng.choice((1, 2, 8))):
                at = rng.randrange(2, sos + 14) if rng.random() < 0.6 else rng.randrange(len(b))
                b[at] = rng.randrange(256)
            variants.append(bytes(b))
        tables_bad = [tables[:40] + b"\\xff\\xd9", tables.replace(b"\\xff\\xc4", b"\\xff\\xcc", 1)]
        decoded = refused = other = 0
        for k, v in enumerate(variants + [tile, tile]):
            t = tables_bad[k - len(variants)] if k >= len(variants) else tables
            try:
                out = decode_ijg9(v, t)
            except ValueError:
                refused += 1
                continue
            if out is None:
                other += 1
            else:
                decoded += 1
        print(decoded, refused, other, len(variants) + 2)
    """)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    print("decoded, refused, kept from IJG, total:", result.stdout)
    decoded, refused, fallback, total = map(int, result.stdout.split())
    assert decoded + refused + fallback == total
    assert decoded > 50  # damaged streams did reach libjpeg (and only gave warnings)
    assert fallback > 50  # and malformed ones were kept from it


async def test_a_block_refused_for_ijg_decodes_as_by_default(files: dict[str, Path]) -> None:
    """A block kept from IJG (here a tile whose end, and EOI, were zeroed) takes the default
    decoder's path, with its result or its error; the file's other tiles still decode by IJG."""
    path = files["cog-lines-q75"]
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        off, n = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    data[off + n // 3 : off + n] = bytes(n - n // 3)
    got = {}
    for decoder in ("turbo", "ijg9"):
        async with cloudroi.open(bytes(data), jpeg_decoder=decoder) as img:
            got[decoder] = await img.read((0, 0, 512, 256))
    assert int(diff(got["ijg9"][:, :, :256], got["turbo"][:, :, :256]).max()) == 0
    ref = rio_read(path, (256, 0, 256, 256))
    assert int(diff(got["ijg9"][:, :, 256:], ref).max()) == 0
    assert int(diff(got["turbo"][:, :, 256:], ref).max()) > 50


@needs_ijg9_rasterio
def test_cli_jpeg_decoder_option(files: dict[str, Path], tmp_path: Path) -> None:
    path = files["cog-checker2-q90"]
    out = tmp_path / "a.npy"
    window = "0,0,128,96"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloudroi.cli",
            "read",
            str(path),
            "--window",
            window,
            "--jpeg-decoder",
            "ijg9",
            "-o",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(diff(np.load(out), rio_read(path, (0, 0, 128, 96))).max()) == 0


@needs_ijg9_rasterio
async def test_service_reads_with_the_decoder_of_the_environment(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudroi.service import CoreRequest, ServiceConfig, ServiceState, handle

    path = files["cog-checker2-q90"]
    monkeypatch.setenv("CLOUDROI_JPEG_DECODER", "ijg9")
    state = await ServiceState.start(ServiceConfig(allowed_sources=(f"{path.parent}/",)))
    try:
        query = {"url": str(path), "window": "0,0,128,96", "format": "npy"}
        resp = await handle(CoreRequest.build("get", "/region", query), state)
    finally:
        await state.close()
    assert resp.status == 200, resp.body
    got = np.load(io.BytesIO(resp.body))
    assert int(diff(got, rio_read(path, (0, 0, 128, 96))).max()) == 0


@needs_ijg9_rasterio
@pytest.mark.parametrize(("subsampling", "turbo_max"), [((1, 1), 0), ((2, 1), 133)])
def test_ijg9_matches_rasterio_on_other_subsamplings(
    subsampling: tuple[int, int], turbo_max: int, tmp_path: Path
) -> None:
    """4:4:4 and 4:2:2 YCbCr JPEG (written by tifffile: GDAL writes 4:2:0 only), read by
    rasterio: IJG 9 upsamples 4:2:2 chroma with a 16x8 IDCT, libjpeg-turbo with its filter."""
    path = tmp_path / "sub.tif"
    img = checker(2)[:300, :400]
    tifffile.imwrite(
        path,
        img,
        photometric="ycbcr",
        compression="jpeg",
        compressionargs={"level": 90},
        subsampling=subsampling,
        tile=(256, 256),
    )
    ref = rio_read(path, (0, 0, 400, 300))
    assert int(diff(cloudroi.read(str(path), jpeg_decoder="ijg9"), ref).max()) == 0
    assert int(diff(cloudroi.read(str(path)), ref).max()) == turbo_max  # measured


@needs_ijg9_rasterio
def test_ijg9_decodes_concurrently(files: dict[str, Path]) -> None:
    """Many threads decoding at once (the decode pool does) get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    from cloudroi.read.jpeg_ijg import decode_ijg9

    path = files["cog-checker3-q100"]
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        tables = page.jpegtables
        raw = path.read_bytes()
        tiles = [raw[o : o + n] for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
    serial = [decode_ijg9(t, tables) for t in tiles]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda t: decode_ijg9(t, tables), tiles * 6))
    for k, got in enumerate(parallel):
        want = serial[k % len(tiles)]
        assert got is not None
        assert want is not None
        assert np.array_equal(got, want), k
    ref = rio_read(path, (0, 0, 256, 256))
    assert serial[0] is not None
    assert int(diff(serial[0].transpose(2, 0, 1), ref).max()) == 0


def test_cli_unknown_decoder_in_the_environment_is_one_line(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cloudroi.cli import main

    monkeypatch.setenv("CLOUDROI_JPEG_DECODER", "bogus")
    assert main(["info", str(files["gray"])]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip() == "cloudroi info: error: jpeg_decoder must be one of turbo, ijg9; got 'bogus'"
    )
