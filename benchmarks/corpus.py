"""The benchmark corpus: large COGs written by GDAL (through rasterio) on first use, then reused.

Five files, each a kind of image users keep in object storage:

- ``dem``: float32 elevation, DEFLATE + floating-point predictor (3), 256x256 blocks, overviews;
- ``rgb``: 8-bit RGB, JPEG (YCbCr, as GDAL writes it), 512x512 blocks, overviews;
- ``multi``: 4-band uint16, LZW + horizontal predictor (2), 256x256 blocks, overviews;
- ``ortho``: 8-bit RGB, DEFLATE + predictor 2, 512x512 blocks, overviews;
- ``sparse``: 200000x200000 uint8 BigTIFF, SPARSE_OK (only a few blocks written), no overviews.

Every file goes through GDAL's COG driver, so it carries the ghost area (block leader and trailer).
The smoke corpus has the same five kinds at toy sizes, for CI.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
_VERSION = 2  # bump to regenerate every corpus on the next run


@dataclass(frozen=True)
class FileSpec:
    name: str
    width: int
    height: int
    blocksize: int
    #: Written blocks of the sparse file: (col, row) block coordinates.
    written: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    dem: FileSpec
    rgb: FileSpec
    multi: FileSpec
    ortho: FileSpec
    sparse: FileSpec

    def files(self) -> list[FileSpec]:
        return [self.dem, self.rgb, self.multi, self.ortho, self.sparse]


FULL = CorpusSpec(
    "full",
    dem=FileSpec("dem", 10000, 10000, 256),
    rgb=FileSpec("rgb", 8192, 8192, 512),
    multi=FileSpec("multi", 6000, 6000, 256),
    ortho=FileSpec("ortho", 6000, 6000, 512),
    sparse=FileSpec(
        "sparse",
        200_000,
        200_000,
        512,
        written=((195, 195), (196, 195), (195, 196), (196, 196), (10, 20), (380, 7)),
    ),
)

SMOKE = CorpusSpec(
    "smoke",
    dem=FileSpec("dem", 1100, 1000, 256),
    rgb=FileSpec("rgb", 1024, 1024, 256),
    multi=FileSpec("multi", 700, 600, 256),
    ortho=FileSpec("ortho", 800, 800, 256),
    sparse=FileSpec(
        "sparse",
        20_000,
        20_000,
        256,
        written=((39, 39), (40, 39), (39, 40), (40, 40), (3, 70)),
    ),
)


def corpus_dir(spec: CorpusSpec) -> Path:
    return CORPUS_DIR / spec.name


def path_of(spec: CorpusSpec, name: str) -> Path:
    return corpus_dir(spec) / f"{name}.tif"


# -- pixel content -------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise: a random grid of ``cell``-pixel spacing, bilinearly upsampled to (h, w)."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _terrain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Elevation-like float32: several octaves of smooth noise, quantised to centimetres."""
    z = np.full((h, w), 800.0, dtype=np.float32)
    for cell, amp in ((2048, 600.0), (512, 150.0), (128, 40.0), (32, 8.0), (8, 1.5)):
        if cell < max(h, w):
            z += amp * _smooth_noise(rng, h, w, cell)
    z += rng.standard_normal((h, w), dtype=np.float32) * 0.05
    return np.round(z * 100) / 100


def _picture(rng: np.random.Generator, h: int, w: int, bands: int, scale: float) -> np.ndarray:
    """Photo-like bands: smooth structure plus a little grain (so that lossless codecs compress
    about as well as on real imagery, 1.5-3x), clipped to [0, scale]."""
    out = np.empty((bands, h, w), dtype=np.float32)
    for b in range(bands):
        v = 0.5 + 0.18 * _smooth_noise(rng, h, w, 256) + 0.08 * _smooth_noise(rng, h, w, 24)
        v += rng.standard_normal((h, w), dtype=np.float32) * 0.003
        out[b] = np.clip(v, 0, 1) * scale
    return out


# -- writing -------------------------------------------------------------------------------


def _write_cog(
    dst: Path,
    data: np.ndarray,
    dtype: str,
    blocksize: int,
    *,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 5200000.0),
    res: float = 10.0,
    **cog_options: str,
) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin

    tmp = dst.with_suffix(".src.tif")
    bands, h, w = data.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": bands,
        "dtype": dtype,
        "crs": crs,
        "transform": from_origin(origin[0], origin[1], res, res),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(data.astype(dtype, copy=False))
    rasterio.shutil.copy(
        tmp, dst, driver="COG", BLOCKSIZE=str(blocksize), BIGTIFF="IF_SAFER", **cog_options
    )
    tmp.unlink()


def _write_sparse(dst: Path, spec: FileSpec, rng: np.random.Generator) -> None:
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    tmp = dst.with_suffix(".src.tif")
    bs = spec.blocksize
    profile = {
        "driver": "GTiff",
        "width": spec.width,
        "height": spec.height,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:3857",
        "transform": from_origin(1000.0, 300000.0, 1.0, 1.0),
        "tiled": True,
        "blockxsize": bs,
        "blockysize": bs,
        "SPARSE_OK": "TRUE",
        "BIGTIFF": "YES",
        "compress": "DEFLATE",
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        for col, row in spec.written:
            block = (_picture(rng, bs, bs, 1, 250.0) + 1).astype("uint8")
            ds.write(block, window=Window(col * bs, row * bs, bs, bs))
    rasterio.shutil.copy(
        tmp,
        dst,
        driver="COG",
        BLOCKSIZE=str(bs),
        BIGTIFF="YES",
        SPARSE_OK="TRUE",
        COMPRESS="DEFLATE",
        OVERVIEWS="NONE",
    )
    tmp.unlink()


def _generate(spec: CorpusSpec, name: str, dst: Path) -> None:
    rng = np.random.default_rng(sum(name.encode()) + 1000 * len(spec.name))
    f = getattr(spec, name)
    if name == "dem":
        data = _terrain(rng, f.height, f.width)[None]
        _write_cog(
            dst,
            data,
            "float32",
            f.blocksize,
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            OVERVIEW_RESAMPLING="AVERAGE",
        )
    elif name == "rgb":
        data = _picture(rng, f.height, f.width, 3, 255.0)
        _write_cog(
            dst,
            data,
            "uint8",
            f.blocksize,
            COMPRESS="JPEG",
            QUALITY="85",
            OVERVIEW_RESAMPLING="AVERAGE",
        )
    elif name == "multi":
        data = _picture(rng, f.height, f.width, 4, 4000.0)
        _write_cog(
            dst,
            data,
            "uint16",
            f.blocksize,
            COMPRESS="LZW",
            PREDICTOR="YES",
            OVERVIEW_RESAMPLING="NEAREST",
        )
    elif name == "ortho":
        data = _picture(rng, f.height, f.width, 3, 255.0)
        _write_cog(
            dst,
            data,
            "uint8",
            f.blocksize,
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            OVERVIEW_RESAMPLING="AVERAGE",
        )
    elif name == "sparse":
        _write_sparse(dst, f, rng)
    else:  # pragma: no cover - programming error
        raise ValueError(name)


def ensure_corpus(spec: CorpusSpec, log: bool = True) -> dict[str, Path]:
    """Paths of the corpus files, generating whichever are missing or from an older spec."""
    folder = corpus_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "spec.json"
    want = json.dumps({"version": _VERSION, "spec": asdict(spec)}, sort_keys=True)
    if stamp.exists() and stamp.read_text() != want:
        for f in folder.glob("*.tif"):
            f.unlink()
    out: dict[str, Path] = {}
    for f in spec.files():
        dst = path_of(spec, f.name)
        if not dst.exists():
            t0 = time.perf_counter()
            part = dst.with_suffix(".part.tif")
            _generate(spec, f.name, part)
            os.replace(part, dst)
            if log:
                mib = dst.stat().st_size / 2**20
                print(
                    f"  corpus: wrote {dst.name} ({mib:.1f} MiB) in "
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
        out[f.name] = dst
    stamp.write_text(want)
    return out
