"""The tile benchmark's files: two RGB COGs written by GDAL (through rasterio) on first use.

- ``utm``: UTM zone 33N (EPSG:32633), 10 m pixels, about 15 E 46.5 N: Web Mercator tiles over
  it are reprojected;
- ``merc``: Web Mercator (EPSG:3857), 10 m pixels over the same area, not aligned to the tile
  grid (as ``gdalwarp -t_srs EPSG:3857 -tr 10 10`` writes it): tiles over it are resampled but
  not reprojected.

Both are 8-bit RGB, DEFLATE with the horizontal predictor, 512 x 512 blocks and GDAL's overviews
(AVERAGE) down to one block, no nodata: a typical orthophoto COG. The smoke corpus has the same
two files at 1024 x 1024, for CI. Files live in ``benchmarks/corpus/tiles-<name>/`` (git-ignored)
and are rewritten when their spec changes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.corpus import CORPUS_DIR, _picture, _write_cog

_VERSION = 1  # bump to regenerate the tile corpus on the next run


@dataclass(frozen=True)
class TileFile:
    name: str
    crs: str
    #: upper-left corner (x, y) in ``crs`` units
    origin: tuple[float, float]
    res: float
    size: int
    blocksize: int = 512


@dataclass(frozen=True)
class TileCorpus:
    name: str
    files: tuple[TileFile, ...]


FULL = TileCorpus(
    "full",
    (
        TileFile("utm", "EPSG:32633", (460000.0, 5190000.0), 10.0, 8192),
        TileFile("merc", "EPSG:3857", (1630000.0, 5900000.0), 10.0, 8192),
    ),
)
SMOKE = TileCorpus(
    "smoke",
    (
        TileFile("utm", "EPSG:32633", (500000.0, 5150000.0), 10.0, 1024),
        TileFile("merc", "EPSG:3857", (1670000.0, 5860000.0), 10.0, 1024),
    ),
)


def _generate(f: TileFile, seed: int, dst: Path) -> None:
    rng = np.random.default_rng(seed)
    data = _picture(rng, f.size, f.size, 3, 255.0)
    _write_cog(
        dst,
        data,
        "uint8",
        f.blocksize,
        crs=f.crs,
        origin=f.origin,
        res=f.res,
        COMPRESS="DEFLATE",
        PREDICTOR="YES",
        OVERVIEW_RESAMPLING="AVERAGE",
    )


def ensure_tile_corpus(spec: TileCorpus, log: bool = True) -> dict[str, Path]:
    """Paths of the corpus's files, generating whichever are missing or from an older spec."""
    folder = CORPUS_DIR / f"tiles-{spec.name}"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "spec.json"
    want = json.dumps({"version": _VERSION, "spec": asdict(spec)}, sort_keys=True)
    if stamp.exists() and stamp.read_text() != want:
        for old in folder.glob("*.tif"):
            old.unlink()
    out: dict[str, Path] = {}
    for i, f in enumerate(spec.files):
        dst = folder / f"{f.name}.tif"
        if not dst.exists():
            t0 = time.perf_counter()
            part = dst.with_suffix(".part.tif")
            _generate(f, 7000 + i, part)
            os.replace(part, dst)
            if log:
                mib = dst.stat().st_size / 2**20
                print(
                    f"  tile corpus: wrote {dst.name} ({mib:.1f} MiB) in "
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
        out[f.name] = dst
    stamp.write_text(want)
    return out
