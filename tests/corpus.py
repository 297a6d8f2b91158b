"""Test corpus: TIFFs written by tifffile and GeoTIFF/COGs written by GDAL (rasterio), plus the
reference readers (tifffile, rasterio) the format tests compare cloudroi with.

Files are small (300 x 200, 64 x 64 tiles) unless a spec asks otherwise, their pixels are derived
from the spec alone (same spec, same bytes), and a ``Corpus`` writes each one once per test session.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
import tifffile
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window as RioWindow

Array = npt.NDArray[Any]
WindowT = tuple[int, int, int, int]

WIDTH, HEIGHT, TILE, ROWS_PER_STRIP = 300, 200, 64, 37


# --------------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------------


def _seed(*parts: object) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(repr(parts))) % (2**32)


def pixels(
    dtype: str, bands: int, height: int, width: int, *, kind: str = "mixed", seed: int = 0
) -> Array:
    """(bands, height, width) test pixels of ``dtype``.

    ``mixed``: a smooth ramp (compressible, exercises predictors), a band of random values over
    the dtype's whole range (exercises the high bytes) and the extremes; floats add NaN, +-inf,
    -0.0 and subnormals. ``smooth``: only the ramp (for lossy codecs). ``finite``: mixed without
    the special float values (LERC). ``bits``: random 0/1.
    """
    dt = np.dtype(dtype)
    rng = np.random.default_rng(_seed(dtype, bands, height, width, kind, seed))
    if kind == "bits":
        return rng.integers(0, 2, (bands, height, width), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([(x * 3 + y * 5 + b * 40) for b in range(bands)]).astype(np.float64)
    if dt.kind == "f":
        out = (ramp / 7.0 - 50.0).astype(dt)
    else:
        info = np.iinfo(dt)
        span = min(int(info.max) - int(info.min), 250)
        out = (ramp.astype(np.int64) % (span + 1) + max(int(info.min), -100)).astype(dt)
    if kind == "smooth":
        # Slowly varying, well inside the range: what lossy codecs are made for.
        wave = np.stack([np.sin(x / 17.0 + b) * np.cos(y / 23.0 - b) for b in range(bands)])
        return (127.0 + 90.0 * wave).astype(dt)
    noisy = slice(height // 3, height // 3 + max(1, height // 8))
    if dt.kind == "f":
        finfo = np.finfo(dt)
        out[:, noisy] = (rng.standard_normal(out[:, noisy].shape) * 1e3).astype(dt)
        out[:, -1, -1] = finfo.max
        out[:, -1, -2] = finfo.min
        if kind != "finite":
            out[:, 0, 0] = np.nan
            out[:, 0, 1] = np.inf
            out[:, 0, 2] = -np.inf
            out[:, 1, 0] = -0.0
            out[:, 1, 1] = finfo.smallest_subnormal
    else:
        info = np.iinfo(dt)
        out[:, noisy] = rng.integers(
            int(info.min), int(info.max), out[:, noisy].shape, dtype=dt, endpoint=True
        )
        out[:, -1, -1] = info.max
        out[:, -1, -2] = info.min
    return out


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def windows(width: int, height: int, block: tuple[int, int]) -> dict[str, WindowT]:
    """Named windows (col, row, w, h) that cover the interesting cases for a block grid."""
    bh, bw = block
    last_c, last_r = (width - 1) // bw * bw, (height - 1) // bh * bh
    out = {
        "whole": (0, 0, width, height),
        "interior": (
            min(bw // 2 + 3, width - 1),
            min(bh // 2 + 1, height - 1),
            max(1, min(bw + 7, width - bw // 2 - 3)),
            max(1, min(bh + 5, height - bh // 2 - 1)),
        ),
        "one-block": (0, 0, min(bw, width), min(bh, height)),
        "edge": (
            max(0, width - bw // 2 - 10),
            max(0, height - bh // 2 - 10),
            min(width, bw // 2 + 10),
            min(height, bh // 2 + 10),
        ),
        "last-block": (last_c, last_r, width - last_c, height - last_r),
        "row": (0, height // 2, width, 1),
        "column": (width - 1, 0, 1, height),
        "pixel": (width // 3, height // 3, 1, 1),
        "corner": (width - 1, height - 1, 1, 1),
    }
    return out


def window_slice(arr: Array, window: WindowT) -> Array:
    """``arr[..., rows, cols]`` of a (bands, h, w) array."""
    c, r, w, h = window
    return arr[..., r : r + h, c : c + w]


# --------------------------------------------------------------------------------------------
# tifffile-written files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiffSpec:
    """One tifffile-written file; ``compression`` uses tifffile's names ("zlib" is code 8,
    "deflate" code 32946)."""

    dtype: str = "uint16"
    bands: int = 1
    tiled: bool = True
    planar: bool = False
    byteorder: str = "<"
    bigtiff: bool = False
    compression: str | None = None
    predictor: int = 1
    width: int = WIDTH
    height: int = HEIGHT
    kind: str = "mixed"
    photometric: str | None = None
    bitspersample: int | None = None
    compressionargs: tuple[tuple[str, Any], ...] = ()
    extrasamples: tuple[str, ...] = ()
    rowsperstrip: int = ROWS_PER_STRIP

    @property
    def id(self) -> str:
        parts = [
            "bigtiff" if self.bigtiff else "classic",
            "be" if self.byteorder == ">" else "le",
            "tiled" if self.tiled else "strips",
            "planar" if self.planar else "chunky",
            f"{self.bands}b",
            self.dtype if self.bitspersample is None else f"{self.bitspersample}bit",
            self.compression or "none",
            f"p{self.predictor}",
        ]
        if self.compressionargs:
            parts.append("-".join(f"{k}={v}" for k, v in self.compressionargs))
        if self.photometric:
            parts.append(self.photometric)
        if (self.width, self.height) != (WIDTH, HEIGHT):
            parts.append(f"{self.width}x{self.height}")
        return "-".join(parts)

    @property
    def block(self) -> tuple[int, int]:
        if self.tiled:
            return (TILE, TILE)
        return (min(self.rowsperstrip, self.height), self.width)

    def array(self) -> Array:
        """The pixels written, (bands, h, w); 1-bit data as uint8 0/1."""
        if self.bitspersample is not None and self.bitspersample > 1:
            dt = np.dtype(self.dtype)
            raw = pixels("uint64", self.bands, self.height, self.width, seed=7).astype(np.uint64)
            return (raw % (1 << self.bitspersample)).astype(dt)
        if self.dtype == "bool":
            return pixels("uint8", self.bands, self.height, self.width, kind="bits")
        return pixels(self.dtype, self.bands, self.height, self.width, kind=self.kind)

    def write(self) -> bytes:
        arr = self.array()
        data = arr.astype(bool) if self.dtype == "bool" else arr
        data = data if self.planar else np.moveaxis(data, 0, -1)
        if self.bands == 1:
            data = data.reshape(self.height, self.width)
        kwargs: dict[str, Any] = {
            "byteorder": self.byteorder,
            "bigtiff": self.bigtiff,
            "photometric": self.photometric
            or ("rgb" if self.bands in (3, 4) and data.dtype == np.uint8 else "minisblack"),
            "planarconfig": "separate" if self.planar else "contig",
            "compression": self.compression,
            "compressionargs": dict(self.compressionargs) or None,
            "predictor": self.predictor if self.predictor != 1 else None,
            "metadata": None,
        }
        if self.tiled:
            kwargs["tile"] = (TILE, TILE)
        else:
            kwargs["rowsperstrip"] = self.rowsperstrip
        if self.bitspersample is not None:
            kwargs["bitspersample"] = self.bitspersample
        if self.extrasamples:
            kwargs["extrasamples"] = self.extrasamples
        buf = io.BytesIO()
        tifffile.imwrite(buf, data, **kwargs)
        return buf.getvalue()


def tifffile_pages(data: bytes) -> list[Array]:
    """Every page of a TIFF as tifffile decodes it, as (bands, h, w) (bool -> uint8)."""
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        return [_as_bands(page) for page in tf.pages]


def tifffile_levels(data: bytes) -> list[Array]:
    """The levels of the first series (full resolution, then each reduced resolution)."""
    with tifffile.TiffFile(io.BytesIO(data)) as tf:
        return [_as_bands(level.keyframe, level.asarray()) for level in tf.series[0].levels]


def _as_bands(page: Any, arr: Array | None = None) -> Array:
    arr = page.asarray() if arr is None else arr
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if page.samplesperpixel == 1:
        return arr.reshape(1, page.imagelength, page.imagewidth)
    if page.planarconfig == 2:
        return arr.reshape(page.samplesperpixel, page.imagelength, page.imagewidth)
    return np.moveaxis(arr.reshape(page.imagelength, page.imagewidth, -1), -1, 0)


# --------------------------------------------------------------------------------------------
# GDAL-written files
# --------------------------------------------------------------------------------------------

#: A north-up UTM transform (GDAL order is derived from it) used unless a spec says otherwise.
DEFAULT_TRANSFORM = (500000.0, 10.0, 0.0, 4100000.0, 0.0, -10.0)


@dataclass(frozen=True)
class GdalSpec:
    """One file written by GDAL through rasterio. ``driver="COG"`` writes a GTiff first and
    copies it with the COG driver (which builds the overviews); ``options`` are creation options.

    ``mask``: "none", "internal" (``write_mask``: a GDAL internal mask IFD), "alpha" (last band is
    alpha). ``sparse``: only some blocks are written (SPARSE_OK=TRUE). ``nbits``: NBITS option.
    """

    name: str
    dtype: str = "uint8"
    bands: int = 1
    width: int = WIDTH
    height: int = HEIGHT
    driver: str = "GTiff"
    options: tuple[tuple[str, str], ...] = ()
    nodata: float | None = None
    crs: str | None = "EPSG:32633"
    transform: tuple[float, float, float, float, float, float] | None = DEFAULT_TRANSFORM
    area_or_point: str | None = None
    mask: str = "none"
    sparse: bool = False
    kind: str = "mixed"
    overview_factors: tuple[int, ...] = ()
    config: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return self.name

    def array(self) -> Array:
        """The pixels given to GDAL (before any lossy codec or NBITS truncation)."""
        dt = np.dtype(self.dtype)
        nbits = dict(self.options).get("NBITS")
        if nbits is not None and dt.kind in "iu":
            raw = pixels("uint64", self.bands, self.height, self.width, seed=11)
            return (raw % (1 << int(nbits))).astype(dt)
        arr = pixels(self.dtype, self.bands, self.height, self.width, kind=self.kind, seed=3)
        if self.nodata is not None:
            # Some nodata pixels, and a whole nodata block, so masks have something to show.
            fill = np.array(self.nodata).astype(dt)
            arr[:, 10:30, 20:90] = fill
            arr[:, 128:192, 0:64] = fill
            if dt.kind == "f" and np.isfinite(self.nodata) and abs(self.nodata) < 65504:
                # The half float nearest nodata: valid data unless it is nodata itself.
                arr[:, 5, 5:10] = np.float16(self.nodata)
        if self.mask == "alpha":
            alpha = np.full((self.height, self.width), np.iinfo(dt).max, dtype=dt)
            alpha[40:90, 100:220] = 0
            alpha[120:130, :] = np.iinfo(dt).max // 2
            # Every level of partial transparency, where rescaling rules would show.
            ramp = np.arange(self.width, dtype=np.float64) / (self.width - 1) * np.iinfo(dt).max
            alpha[150:160, :] = ramp.astype(dt)
            alpha[160:162, :256] = np.arange(256, dtype=dt)
            arr[-1] = alpha
        return arr

    def mask_array(self) -> Array:
        m = np.full((self.height, self.width), 255, dtype=np.uint8)
        m[50:110, 60:170] = 0
        m[:, -7:] = 0
        m[3, 5] = 0
        return m

    def sparse_windows(self) -> list[RioWindow]:
        """The windows written in a sparse file (the other blocks are never written)."""
        if dict(self.options).get("TILED") != "YES":
            rows = int(dict(self.options).get("BLOCKYSIZE", ROWS_PER_STRIP))
            return [
                RioWindow(0, rows, self.width, rows),
                RioWindow(0, 3 * rows, self.width, 2 * rows),
            ]
        return [
            RioWindow(64, 0, 64, 64),
            RioWindow(0, 64, 128, 64),
            RioWindow(256, 128, self.width - 256, self.height - 128),
        ]

    def profile(self) -> dict[str, Any]:
        """rasterio's creation profile of the file (or of the GTiff a COG is copied from)."""
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": self.bands,
            "dtype": self.dtype,
        }
        if self.crs is not None:
            profile["crs"] = self.crs
        if self.transform is not None:
            profile["transform"] = rasterio.Affine.from_gdal(*self.transform)
        if self.nodata is not None:
            profile["nodata"] = self.nodata
        if self.mask == "alpha":
            profile["photometric"] = "RGB" if self.bands == 4 else "MINISBLACK"
            profile["alpha"] = "YES"
        if self.driver == "GTiff":
            profile.update(self.options)
        else:
            profile.update({"tiled": True, "blockxsize": 64, "blockysize": 64})
        if self.sparse:
            profile["sparse_ok"] = True
        return profile

    def write(self, path: Path, scratch: Path) -> None:
        target = path if self.driver == "GTiff" else scratch / f"{self.name}.src.tif"
        env = {"GDAL_TIFF_INTERNAL_MASK": True, **dict(self.config)}
        with quiet(), rasterio.Env(**env):
            with rasterio.open(target, "w", **self.profile()) as ds:
                if self.area_or_point is not None:
                    ds.update_tags(AREA_OR_POINT=self.area_or_point)
                self._write_pixels(ds)
                if self.overview_factors and self.driver == "GTiff":
                    ds.build_overviews(list(self.overview_factors), Resampling.nearest)
            if self.driver == "COG":
                rio_copy(target, path, driver="COG", **dict(self.options))

    def _write_pixels(self, ds: Any) -> None:
        """The data (and the internal mask), whole or only the windows of a sparse file."""
        arr = self.array()
        windows = self.sparse_windows() if self.sparse else [None]
        for w in windows:
            ds.write(arr if w is None else window_slice(arr, _win(w)), window=w)
            if self.mask == "internal":
                mask = self.mask_array()
                ds.write_mask(mask if w is None else window_slice(mask, _win(w)), window=w)


def _win(w: RioWindow) -> WindowT:
    return (int(w.col_off), int(w.row_off), int(w.width), int(w.height))


@contextmanager
def quiet() -> Iterator[None]:
    """Silence rasterio's notes on files without georeferencing and on nodata shadowing an alpha
    band: both are cases the tests create on purpose (and pytest runs with -W error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.simplefilter("ignore", NodataShadowWarning)
        yield


def rio_open(path: Path | str, level: int = 0) -> Any:
    """rasterio dataset of ``path``; ``level`` > 0 opens that overview as its own dataset."""
    with quiet():
        if level:
            return rasterio.open(path, overview_level=level - 1)
        return rasterio.open(path)


def rio_read(
    path: Path | str,
    window: WindowT,
    level: int = 0,
    bands: Sequence[int] | None = None,
    out_shape: tuple[int, int] | None = None,
) -> Array:
    with rio_open(path, level) as src, quiet():
        idx = list(bands) if bands is not None else list(range(1, src.count + 1))
        kwargs: dict[str, Any] = {"window": RioWindow(*window), "indexes": idx}
        if out_shape is not None:
            kwargs["out_shape"] = (len(idx), *out_shape)
            kwargs["resampling"] = Resampling.nearest
        return np.asarray(src.read(**kwargs))


def rio_mask(
    path: Path | str, window: WindowT, level: int = 0, out_shape: tuple[int, int] | None = None
) -> Array:
    with rio_open(path, level) as src, quiet():
        kwargs: dict[str, Any] = {"window": RioWindow(*window)}
        if out_shape is not None:
            kwargs["out_shape"] = out_shape
            kwargs["resampling"] = Resampling.nearest
        return np.asarray(src.dataset_mask(**kwargs))


def rio_memory_read(data: bytes, window: WindowT) -> Array:
    """rasterio's read of an in-memory TIFF (used for tifffile-written files)."""
    with quiet(), rasterio.MemoryFile(data) as mf, mf.open() as src:
        return np.asarray(src.read(window=RioWindow(*window)))


# --------------------------------------------------------------------------------------------
# the session cache
# --------------------------------------------------------------------------------------------


class Corpus:
    """Writes each spec's file once (tifffile specs kept as bytes, GDAL specs as files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._bytes: dict[TiffSpec, bytes] = {}
        self._paths: dict[str, Path] = {}

    def tifffile(self, spec: TiffSpec) -> bytes:
        data = self._bytes.get(spec)
        if data is None:
            data = self._bytes[spec] = spec.write()
        return data

    def gdal(self, spec: GdalSpec) -> Path:
        path = self._paths.get(spec.name)
        if path is None:
            path = self.root / f"{spec.name}.tif"
            spec.write(path, self.root)
            self._paths[spec.name] = path
        return path


def assert_same(actual: Array, expected: Array, what: str, *, atol: float = 0) -> None:
    """Equal shapes and values (NaN equals NaN); a tolerance only where a codec is lossy."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if atol:
        diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        assert diff.max(initial=0) <= atol, f"{what}: max difference {diff.max()} > {atol}"
        return
    if actual.dtype == expected.dtype and actual.dtype.kind == "f":
        # Bit for bit: NaN payloads and the sign of zero included.
        uint = np.dtype(f"u{actual.dtype.itemsize}")
        actual, expected = actual.view(uint), expected.view(uint)
    elif actual.dtype.kind == "f" or expected.dtype.kind == "f":
        # Different float widths (GDAL returns Float16 as Float32): compare values.
        np.testing.assert_array_equal(
            actual.astype(np.float64), expected.astype(np.float64), err_msg=what
        )
        return
    if not np.array_equal(actual, expected):
        bad = np.argwhere(actual != expected)
        first = tuple(int(v) for v in bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {actual.size} values differ; first at {first}: "
            f"{actual[first]!r} != {expected[first]!r}"
        )
