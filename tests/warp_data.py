"""GDAL-written COGs for the warp tests, and the harness that compares cloudroi.warp with GDAL.

The files (written once per session by GDAL's COG driver through rasterio, so overviews, block
layout and georeferencing are what GDAL produces; ~4 s in all):

* ``utm``: UTM 33N, RGB, 10 m, 2048 x 2048 (about 15 E 45.5 N), overviews 2, 4, 8, no nodata;
* ``wgs84``: EPSG:4326, one band, nodata 0 and a nodata hole, 2048 x 1024 over 0..20 E 30..40 N;
* ``polar``: Antarctic polar stereographic (EPSG:3031), 1024 x 1024 at 6 km, nodata outside a disc;
* ``antimeridian``: EPSG:4326 on a 0..360 grid, 170 E .. 190 E, 20 S .. 0, 1024 x 1024;
* ``world``: whole-world EPSG:4326, 4096 x 2048, for antimeridian- and pole-crossing targets;
* ``equator``: EPSG:4326, 1024 x 1024 at 0.00305 degrees (about 340 m): its zoom-8 tiles need
  a 1.8x reduction, where the nearest and the other RasterIO thresholds pick different levels.

References: tiles against rio-tiler's ``Reader.tile()`` (GDAL's WarpedVRT underneath); regions
against ``rasterio.warp.reproject`` of the same level into the same grid, in one warp chunk
(``SRC_FILL_RATIO_HEURISTICS=NO``, ample warp memory) with a destination alpha band.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import Resampling as RioResampling
from rasterio.warp import reproject

from cloudroi import warp as W

TMS = morecantile.tms.get("WebMercatorQuad")
KERNELS: tuple[W.Resampling, ...] = W.RESAMPLINGS

# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def texture(h: int, w: int, seed: int) -> npt.NDArray[np.uint8]:
    """Smooth gradients + sinusoids + sharp-edged patches + noise: flat areas where all
    kernels agree, edges where they differ, noise for ties."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 60 + 50 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + 40 * (xx / w) + 30 * (yy / h)
    for _ in range(40):
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        rh, cw = rng.integers(8, max(9, h // 6)), rng.integers(8, max(9, w // 6))
        img[r0 : r0 + rh, c0 : c0 + cw] += rng.integers(-60, 60)
    img += rng.normal(0, 12, size=(h, w))
    return np.clip(np.rint(img), 1, 255).astype(np.uint8)


def write_cog(
    path: Path,
    data: npt.NDArray[Any],
    crs: str,
    transform: Affine,
    nodata: float | None,
    *,
    block: int = 256,
    driver: str = "COG",
    **options: Any,
) -> Path:
    """``data`` (bands, h, w), any dtype, written by GDAL: a COG (``block``-pixel blocks,
    DEFLATE, overviews), or another ``driver``; ``options`` are its creation options."""
    bands, h, w = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": bands,
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    creation = {"COMPRESS": "DEFLATE", **options}
    if driver == "COG":
        creation.setdefault("BLOCKSIZE", block)
    with quiet(), MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
        with mem.open() as ds:
            rasterio.shutil.copy(ds, path, driver=driver, **creation)
    return path


@contextmanager
def quiet() -> Iterator[None]:
    """rasterio and rio-tiler call affine's deprecated ``*`` (PendingDeprecationWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


def build(directory: Path) -> dict[str, Path]:
    """Write the five test files into ``directory``; returns them by key."""
    with quiet():
        return _build(directory)


def _build(d: Path) -> dict[str, Path]:
    polar = texture(1024, 1024, 5)
    yy, xx = np.mgrid[0:1024, 0:1024]
    polar[(yy - 511.5) ** 2 + (xx - 511.5) ** 2 > 500.0**2] = 0
    wgs84 = texture(1024, 2048, 4)
    wgs84[300:420, 700:900] = 0
    rgb = np.stack([texture(2048, 2048, s) for s in (1, 2, 3)])
    return {
        "utm": write_cog(
            d / "utm_rgb.tif",
            rgb,
            "EPSG:32633",
            from_origin(480000.0, 5050000.0, 10.0, 10.0),
            None,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
        "wgs84": write_cog(
            d / "wgs84_nodata.tif",
            wgs84[None],
            "EPSG:4326",
            from_origin(0.0, 40.0, 20.0 / 2048, 10.0 / 1024),
            0,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
        "polar": write_cog(
            d / "polar_3031.tif",
            polar[None],
            "EPSG:3031",
            from_origin(-3072000.0, 3072000.0, 6000.0, 6000.0),
            0,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
        "antimeridian": write_cog(
            d / "antimeridian.tif",
            texture(1024, 1024, 6)[None],
            "EPSG:4326",
            from_origin(170.0, 0.0, 20.0 / 1024, 20.0 / 1024),
            None,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
        "equator": write_cog(
            d / "equator.tif",
            texture(1024, 1024, 8)[None],
            "EPSG:4326",
            from_origin(10.0, 1.5, 0.00305, 0.00305),
            None,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
        "world": write_cog(
            d / "world.tif",
            texture(2048, 4096, 7)[None],
            "EPSG:4326",
            from_origin(-180.0, 90.0, 360.0 / 4096, 180.0 / 2048),
            None,
            OVERVIEW_RESAMPLING="AVERAGE",
        ),
    }


@dataclass(frozen=True)
class Source:
    """A test COG opened once: its level-0 grid, level sizes, nodata, block shape and every
    level read fully (``arrays[i]`` is level i, ``(bands, h, w)``)."""

    path: Path
    grid: W.Grid
    levels: list[tuple[int, int]]
    nodata: float | None
    block: tuple[int, int]
    arrays: list[npt.NDArray[Any]]

    @property
    def bands(self) -> int:
        return int(self.arrays[0].shape[0])

    def blocks(self, plan: W.WarpPlan, bands: int | None = None) -> list[W.SourceBlock]:
        """The plan's windows of the plan's level, as the region layer would read them."""
        arr = self.arrays[plan.level][: bands or self.bands]
        return [
            W.SourceBlock(w, arr[:, w.row_off : w.row_end, w.col_off : w.col_end])
            for w in plan.windows
        ]


@cache
def open_source(path: Path) -> Source:
    with quiet():
        return _open_source(path)


def _open_source(path: Path) -> Source:
    with rasterio.open(path) as ds:
        grid = W.Grid(ds.crs.to_string(), ds.transform.to_gdal(), ds.width, ds.height)
        nodata, block, count = ds.nodata, ds.block_shapes[0], len(ds.overviews(1))
    levels, arrays = [], []
    for i in range(count + 1):
        with rasterio.open(path, overview_level=i - 1) if i else rasterio.open(path) as o:
            levels.append((o.width, o.height))
            arrays.append(o.read())
    return Source(path, grid, levels, nodata, block, arrays)


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------


def _t(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    t = TMS.tile(lon, lat, z)
    return (z, t.x, t.y)


#: (file key, (z, x, y)) compared with rio-tiler's Reader.tile(): overview levels, full
#: resolution, overzoom, file corners, the nodata hole, the pole, the antimeridian.
TILES: list[tuple[str, tuple[int, int, int]]] = [
    *[("utm", _t(14.85, 45.45, z)) for z in (9, 10, 11, 12, 13, 14, 15)],
    ("utm", _t(14.75, 45.58, 12)),
    ("utm", _t(15.0, 45.415, 14)),
    *[("wgs84", _t(7.8, 36.6, z)) for z in (4, 6, 7, 8, 9)],
    ("wgs84", _t(20.0, 30.0, 7)),
    *[("polar", (2, x, 3)) for x in range(4)],
    *[("polar", (3, x, 7)) for x in (0, 3, 6)],
    ("polar", (4, 5, 14)),
    *[("antimeridian", (z, 2**z - 1, _t(179, -10, z)[2])) for z in (3, 5, 7)],
    *[("world", t) for t in ((1, 0, 0), (1, 1, 1), (2, 3, 1), (3, 7, 3))],
]

#: (name, file key, destination grid) compared with rasterio.warp.reproject
REGIONS: list[tuple[str, str, W.Grid]] = [
    (
        "world->UTM60S (crosses 180)",
        "world",
        W.Grid.from_bounds("EPSG:32760", (300000, 7600000, 1000000, 8000000), 448, 256),
    ),
    (
        "world->EPSG:3832 (crosses 180)",
        "world",
        W.Grid.from_bounds("EPSG:3832", (-1000000, -3000000, 7000000, 3000000), 400, 300),
    ),
    (
        "world->EPSG:3031 (pole inside)",
        "world",
        W.Grid.from_bounds("EPSG:3031", (-4000000, -4000000, 4000000, 4000000), 320, 320),
    ),
    (
        "polar->EPSG:4326 (ring, 180 inside)",
        "polar",
        W.Grid.from_bounds("EPSG:4326", (-180, -90, 180, -55), 720, 70),
    ),
    ("antimeridian->3857 5/0/16 (west of 180)", "antimeridian", W.tile_grid(TMS, 0, 16, 5)),
    ("antimeridian->3857 7/0/67 (west of 180)", "antimeridian", W.tile_grid(TMS, 0, 67, 7)),
    (
        "utm->EPSG:4326",
        "utm",
        W.Grid.from_bounds("EPSG:4326", (14.75, 45.40, 15.05, 45.60), 300, 200),
    ),
    (
        "wgs84->UTM32N",
        "wgs84",
        W.Grid.from_bounds("EPSG:32632", (300000, 3900000, 700000, 4300000), 400, 400),
    ),
]

# --------------------------------------------------------------------------------------------
# agreement
# --------------------------------------------------------------------------------------------


@dataclass
class Agreement:
    """How the engine's output compares with GDAL's on one request."""

    case: str
    kernel: str
    level: int
    windows: int
    both: int  # pixels valid in both
    differing: int  # of them, pixels with a different value in some band
    max_diff: int
    mean_diff: float  # mean |diff| over `both` pixels and bands
    mask_diff: int  # pixels whose validity differs
    mask_diff_inner: int  # ... more than 1 px away from GDAL's mask edge
    missing: int  # engine kernel taps outside the planned windows (must be 0)
    plan_ms: float
    exec_ms: float

    @property
    def identical(self) -> float:
        return 1.0 - self.differing / self.both if self.both else 1.0

    def row(self) -> str:
        return (
            f"| {self.case} | {self.kernel} | {self.level} | {self.windows} | {self.both} | "
            f"{100 * self.identical:.3f} | {self.differing} | {self.max_diff} | "
            f"{self.mean_diff:.4f} | {self.mask_diff} | {self.mask_diff_inner} | "
            f"{self.plan_ms:.1f} | {self.exec_ms:.1f} |"
        )


HEADER = (
    "| case | kernel | level | windows | valid px | identical % | differing px | max diff | "
    "mean diff | mask diff | mask diff (>1px from edge) | plan ms | exec ms |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _near_edge(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Pixels within one pixel (8-neighbourhood) of a change of ``mask``, or of the border."""
    p = np.pad(mask, 1, mode="constant", constant_values=False)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= p[dy : dy + h, dx : dx + w] != mask
    return out


def compare(
    case: str,
    kernel: str,
    plan: W.WarpPlan,
    mine: W.WarpResult,
    ref: npt.NDArray[Any],
    ref_mask: npt.NDArray[np.bool_],
    times: tuple[float, float],
) -> Agreement:
    both = mine.mask & ref_mask
    d = np.abs(mine.data[:, both].astype(np.int64) - ref[:, both].astype(np.int64))
    differing = int((d != 0).any(axis=0).sum())
    mdiff = mine.mask != ref_mask
    return Agreement(
        case,
        kernel,
        plan.level,
        len(plan.windows),
        int(both.sum()),
        differing,
        int(d.max(initial=0)),
        float(d.mean()) if d.size else 0.0,
        int(mdiff.sum()),
        int((mdiff & ~_near_edge(ref_mask)).sum()),
        mine.missing,
        *times,
    )


def run_engine(
    src: Source, plan_fn: Any, bands: int | None = None
) -> tuple[W.WarpPlan, W.WarpResult, tuple[float, float]]:
    t0 = time.perf_counter()
    plan = plan_fn()
    t1 = time.perf_counter()
    blocks = src.blocks(plan, bands)
    if not blocks:  # nothing to read: a block anywhere, every pixel stays nodata
        arr = src.arrays[plan.level]
        blocks = [W.SourceBlock(W.Window(0, 0, 1, 1), arr[: bands or src.bands, :1, :1])]
    res = W.execute(plan, blocks, src_nodata=src.nodata)
    t2 = time.perf_counter()
    return plan, res, ((t1 - t0) * 1e3, (t2 - t1) * 1e3)


def rio_tiler_tile(
    path: Path, z: int, x: int, y: int, kernel: str, io: str = "nearest"
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    from rio_tiler.io import Reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Reader(str(path)) as r:
            img = r.tile(x, y, z, tilesize=256, resampling_method=io, reproject_method=kernel)
    return np.asarray(img.array.data), ~np.asarray(img.array.mask)[0]


def tile_vs_rio_tiler(
    path: Path, z: int, x: int, y: int, kernel: W.Resampling, io: str = "nearest"
) -> Agreement:
    """The engine's tile against rio-tiler's ``Reader.tile()``."""
    src = open_source(path)
    bands = W.rio_tiler_vrt_bands(src.bands, src.nodata)
    plan, mine, times = run_engine(
        src,
        lambda: W.plan_tile(
            src.grid, src.levels, TMS, x, y, z, kernel,
            vrt_bands=bands, block_shape=src.block, io_resampling=io,
        ),
    )  # fmt: skip
    ref, ref_mask = rio_tiler_tile(path, z, x, y, kernel, io)
    return compare(f"{path.stem} {z}/{x}/{y}", kernel, plan, mine, ref, ref_mask, times)


def region_vs_reproject(
    path: Path, dst: W.Grid, kernel: W.Resampling, level: int | None = None, name: str = ""
) -> Agreement:
    """The engine's region against ``rasterio.warp.reproject`` of the same (fully read) level
    into the same grid, in one warp chunk, with a destination alpha band."""
    src = open_source(path)
    plan, mine, times = run_engine(
        src,
        lambda: W.plan_region(
            src.grid, src.levels, dst, kernel, block_shape=src.block, level=level
        ),
    )
    out = np.zeros((src.bands + 1, dst.height, dst.width), src.arrays[0].dtype)
    with quiet():
        _reproject(plan, src, dst, kernel, out)
    ref, ref_mask = out[: src.bands], out[src.bands] > 0
    return compare(name or f"{path.stem} region", kernel, plan, mine, ref, ref_mask, times)


def _reproject(
    plan: W.WarpPlan, src: Source, dst: W.Grid, kernel: str, out: npt.NDArray[Any]
) -> None:
    kwargs: dict[str, Any] = {} if src.nodata is None else {"src_nodata": src.nodata}
    reproject(
        src.arrays[plan.level],
        out,
        src_transform=Affine.from_gdal(*plan.src.transform),
        src_crs=plan.src.crs,
        dst_transform=Affine.from_gdal(*dst.transform),
        dst_crs=dst.crs,
        resampling=RioResampling[kernel],
        dst_alpha=src.bands + 1,
        warp_mem_limit=512,
        SRC_FILL_RATIO_HEURISTICS="NO",
        **kwargs,
    )


#: regions whose scale makes gdalwarp -ovr AUTO read an overview (levels 1 to 4)
DOWNSAMPLED: list[tuple[str, str, W.Grid]] = [
    (
        "utm->EPSG:4326 (2x overview)",
        "utm",
        W.Grid.from_bounds("EPSG:4326", (14.75, 45.40, 15.05, 45.60), 300, 200),
    ),
    (
        "wgs84->UTM32N (4x overview)",
        "wgs84",
        W.Grid.from_bounds("EPSG:32632", (300000, 3300000, 1100000, 4450000), 200, 200),
    ),
    (
        "world->3857 (16x overview)",
        "world",
        W.Grid.from_bounds(
            "EPSG:3857", (-20037508.34, -19971868.88, 20037508.34, 19971868.88), 100, 100
        ),
    ),
]


def region_vs_gdalwarp(path: Path, dst: W.Grid, kernel: W.Resampling, name: str) -> Agreement:
    """The engine's region at the level it picks against ``gdalwarp -ovr AUTO -te -ts`` (the
    application, from rasterio's GDAL): one warp chunk, a destination alpha band."""
    from tests.gdalwarp import gdalwarp

    src = open_source(path)
    plan, mine, times = run_engine(
        src, lambda: W.plan_region(src.grid, src.levels, dst, kernel, block_shape=src.block)
    )
    out = path.parent / f"gdalwarp-{abs(hash((name, kernel)))}.tif"
    args = ["-of", "GTiff", "-overwrite", "-ovr", "AUTO", "-r", kernel, "-dstalpha"]
    args += [
        "-t_srs",
        dst.crs,
        "-te",
        *map(repr, dst.bounds),
        "-ts",
        str(dst.width),
        str(dst.height),
    ]
    args += ["-wm", "512", "-wo", "SRC_FILL_RATIO_HEURISTICS=NO"]
    with quiet():
        gdalwarp(path, out, args)
        with rasterio.open(out) as ds:
            ref = ds.read()
    out.unlink()
    return compare(name, kernel, plan, mine, ref[: src.bands], ref[src.bands] > 0, times)
