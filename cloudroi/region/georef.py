"""Regions on other grids: reprojected regions, web-map tiles, points and bounds in any CRS.

Over ``cloudroi.warp`` (GDAL's warper, reproduced; imported here lazily, only when a request
needs it: it needs the ``geo`` extra, pyproj and morecantile). A warp is planned from the header
alone (which level, which block-aligned windows), the windows are read with the Image's own read
pipeline (only the blocks the mapped footprint touches), and the plan is executed in the thread
pool; the result is an ``ImageData`` on the requested grid, invalid where no valid source pixel
reaches (outside the source, nodata, masked).
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Executor
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..crs import CRS
from ..errors import (
    CRSError,
    LimitExceededError,
    MissingExtraError,
    NotGeoreferencedError,
    TileOutsideBoundsError,
    WindowError,
)
from ..outputs import RENDERED
from ..tasks import gather_all
from ..types import Window
from .data import ImageData, PointData, RequestBytes, estimate_region, fill_for_dtype, refill
from .describe import source_extra
from .geometry import checked_bounds

if TYPE_CHECKING:
    from morecantile import TileMatrixSet

    from ..image import Image
    from ..warp import Grid, Resampling, SourceBlock, WarpPlan
    from .expression import Expression

__all__ = [
    "bounds_in",
    "carry_bounds",
    "image_crs",
    "max_size_shape",
    "same_crs",
    "check_tile",
    "checked_bounds",
    "plan_region_async",
    "plan_tile_async",
    "refill",
    "crs_text",
    "source_blocks",
    "estimate_warp",
    "point_at",
    "read_tile",
    "read_warped",
    "region_grid",
    "region_plan",
    "source_grid",
    "tile_matrix_set",
    "tile_plan",
]

Bounds = tuple[float, float, float, float]
#: Samples per edge when bounds are carried into another CRS (as GDAL's transform_bounds).
DENSIFY = 21


def require_geo(feature: str) -> None:
    """MissingExtraError unless pyproj and morecantile (the ``geo`` extra) import."""
    try:
        import morecantile  # noqa: F401
        import pyproj  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(feature, "geo") from exc


def kernel(name: str, paletted: bool = False) -> Resampling:
    """A warp kernel's name, checked: nearest, bilinear, cubic or average; a blending one on a
    paletted image is ``ResamplingError`` (its values are palette indices; gdalwarp warns and
    blends them)."""
    from ..read.resampled import refuse_blending
    from ..warp import RESAMPLINGS

    refuse_blending(name, paletted, "nearest")
    for known in RESAMPLINGS:
        if name == known:
            return known
    raise WindowError(f"resampling {name!r} is not one of {', '.join(RESAMPLINGS)}")


def crs_text(crs: Any) -> str:
    """A CRS as text pyproj reads: "EPSG:n" where there is a code, else its WKT."""
    value = CRS.from_user_input(crs)
    return f"EPSG:{value.epsg}" if value.epsg is not None else value.to_wkt()


def source_grid(img: Image) -> Grid:
    """Level 0 of ``img`` as a warp grid; NotGeoreferencedError without CRS or transform."""
    require_geo("reprojection")
    from ..warp import Grid

    if img.crs is None or img.transform is None:
        raise NotGeoreferencedError(
            "the image has no CRS or geotransform: map coordinates cannot be placed on it"
        )
    return Grid(crs_text(img.crs), img.transform, img.width, img.height)


@lru_cache(maxsize=32)
def tile_matrix_set(name: str) -> TileMatrixSet:
    """One of the OGC TileMatrixSets morecantile knows (WebMercatorQuad, WorldCRS84Quad...)."""
    require_geo("web-map tiles")
    import morecantile

    try:
        return morecantile.tms.get(name)
    except Exception as exc:  # morecantile's InvalidIdentifier
        known = ", ".join(morecantile.tms.list())
        raise WindowError(f"unknown tile matrix set {name!r}; one of {known}") from exc


def image_crs(img: Image) -> CRS:
    """The image's CRS; NotGeoreferencedError without one."""
    if img.crs is None:
        raise NotGeoreferencedError("the image has no CRS")
    return img.crs


def same_crs(img: Image, crs: Any) -> bool:
    """Whether ``crs`` is the image's own CRS."""
    return img.crs is not None and CRS.from_user_input(crs) == img.crs


def carry_bounds(bounds: Bounds, src: Any, dst: Any) -> Bounds:
    """``bounds`` in ``src`` carried into ``dst`` with densified edges (21 points each, as
    GDAL's transform_bounds); WindowError when they do not land in ``dst``'s domain."""
    a, b = crs_text(src), crs_text(dst)
    if a == b:
        return bounds
    require_geo("coordinate transforms")
    from pyproj import Transformer
    from pyproj.exceptions import ProjError

    from ..warp import WarpError
    from ..warp.transform import horizontal

    try:
        horizontal(a)
        horizontal(b)
        transformer = Transformer.from_crs(a, b, always_xy=True)
        out = tuple(float(v) for v in transformer.transform_bounds(*bounds, densify_pts=DENSIFY))
    except (ProjError, WarpError) as exc:  # unknown, vertical, of another body, broken
        raise CRSError(f"no transformation from {a[:40]} to {b[:40]}: {exc}") from None
    if not all(math.isfinite(v) for v in out) or not (out[0] < out[2] and out[1] < out[3]):
        raise WindowError(f"bounds {bounds} in {a[:40]} do not transform into {b[:40]}")
    return (out[0], out[1], out[2], out[3])


def max_size_shape(
    img: Image, bounds: Bounds, crs: Any, max_size: int | None
) -> tuple[int, int] | None:
    """(height, width) of ``bounds`` in ``crs`` at the image's resolution there (GDAL's
    suggestion), shrunk so the longest side is at most ``max_size``; None without max_size."""
    if max_size is None:
        return None
    from ..warp import suggested_warp_output
    from ..warp.transform import horizontal

    native = suggested_warp_output(source_grid(img), horizontal(crs_text(crs)))
    width = (bounds[2] - bounds[0]) / abs(native.transform[1])
    height = (bounds[3] - bounds[1]) / abs(native.transform[5])
    scale = min(1.0, max_size / max(width, height, 1e-9))
    return max(1, round(height * scale)), max(1, round(width * scale))


def bounds_in(img: Image, crs: Any = 4326) -> Bounds:
    """(minx, miny, maxx, maxy) of the image in ``crs``, its edges densified (21 points)."""
    from pyproj import Transformer

    bounds = img.bounds
    if bounds is None or img.crs is None:
        raise NotGeoreferencedError("the image has no georeferencing")
    from ..warp.transform import horizontal

    horizontal(crs_text(crs))
    transformer = Transformer.from_crs(crs_text(img.crs), crs_text(crs), always_xy=True)
    out = transformer.transform_bounds(*bounds, densify_pts=DENSIFY)
    return (float(out[0]), float(out[1]), float(out[2]), float(out[3]))


def region_plan(
    img: Image,
    bounds: Bounds,
    crs: Any,
    *,
    shape: tuple[int, int] | None = None,
    resolution: float | tuple[float, float] | None = None,
    resampling: str = "nearest",
    level: int | None = None,
    max_pixels: int | None = None,
) -> WarpPlan:
    """The warp of ``bounds`` in ``crs`` onto a grid of ``shape`` (h, w) or ``resolution``
    (CRS units per pixel) from the level ``gdalwarp -ovr AUTO`` would pick (or ``level``);
    LimitExceededError, before planning, for a grid over ``max_pixels`` (default: the image's
    ``max_output_bytes`` over 16 bytes of planner coordinates plus the bands, a pixel)."""
    from ..warp import plan_region

    dst = region_grid(img, bounds, crs, shape=shape, resolution=resolution)
    if max_pixels is None and img.options.max_output_bytes:
        max_pixels = img.options.max_output_bytes // (16 + img.count * img.dtype.itemsize)
    if max_pixels is not None and dst.width * dst.height > max_pixels:
        raise LimitExceededError(
            f"output pixels ({dst.width}x{dst.height})", dst.width * dst.height, max_pixels
        )
    return plan_region(
        source_grid(img),
        img.levels,
        dst,
        kernel(resampling, img.colormap is not None),
        block_shape=img.block_shape,
        level=level,
    )


def region_grid(
    img: Image,
    bounds: Bounds,
    crs: Any,
    *,
    shape: tuple[int, int] | None = None,
    resolution: float | tuple[float, float] | None = None,
) -> Grid:
    """The output grid of ``region_plan`` (cheap: no warp planned)."""
    from ..warp import Grid, suggested_warp_output
    from ..warp.transform import horizontal

    target = crs_text(crs)
    horizontal(target)
    if shape is not None:
        return Grid.from_bounds(target, bounds, shape[1], shape[0])
    if resolution is None:  # the resolution GDAL suggests for the whole image in the CRS
        gt = suggested_warp_output(source_grid(img), target).transform
        resolution = (abs(gt[1]), abs(gt[5]))
    return Grid.from_resolution(target, bounds, resolution)


def check_tile(tms: TileMatrixSet, x: int, y: int, z: int) -> None:
    """A zoom the matrix set defines (WindowError) and a tile inside its matrix
    (TileOutsideBoundsError)."""
    if not tms.minzoom <= z <= tms.maxzoom:
        raise WindowError(f"zoom {z} is not in {tms.id}'s {tms.minzoom}..{tms.maxzoom}")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise TileOutsideBoundsError(
            f"tile {z}/{x}/{y} is outside {tms.id}'s {matrix.matrixWidth}x{matrix.matrixHeight}"
            " matrix"
        )


def tile_plan(
    img: Image,
    tms: TileMatrixSet,
    x: int,
    y: int,
    z: int,
    *,
    tilesize: int = 256,
    resampling: str = "nearest",
    io_resampling: str = "nearest",
    nodata: float | None = None,
) -> WarpPlan:
    """Tile ``z/x/y`` as rio-tiler's ``Reader.tile()`` gets it from GDAL (``nodata`` overriding
    the image's); a tile that does not touch the image is ``TileOutsideBoundsError``."""
    from ..warp import plan_tile, rio_tiler_vrt_bands, tile_exists

    src = source_grid(img)
    check_tile(tms, x, y, z)
    if not tile_exists(tms, src, x, y, z):
        raise TileOutsideBoundsError(f"tile {z}/{x}/{y} of {tms.id} is outside the image")
    src_nodata = img.nodata if nodata is None else nodata
    bands = rio_tiler_vrt_bands(img.count, src_nodata, img.alpha_band is not None)
    # only the warp's kernel blends; io_resampling picks the overview level (any name of
    # IO_RESAMPLINGS, mode included, is fine on palette indices)
    paletted = img.colormap is not None
    return plan_tile(
        src,
        img.levels,
        tms,
        x,
        y,
        z,
        kernel(resampling, paletted),
        vrt_bands=bands,
        tilesize=tilesize,
        block_shape=img.block_shape,
        io_resampling=io_resampling,
    )


async def plan_tile_async(
    img: Image,
    tms: str,
    x: int,
    y: int,
    z: int,
    tilesize: int,
    resampling: str,
    io: str,
    nodata: float | None = None,
) -> WarpPlan:
    """``tile_plan`` in the thread pool (planning a warp transforms a few thousand points)."""
    matrix_set = tile_matrix_set(tms)
    return await asyncio.get_running_loop().run_in_executor(
        img.context.executor,
        lambda: tile_plan(
            img,
            matrix_set,
            x,
            y,
            z,
            tilesize=tilesize,
            resampling=resampling,
            io_resampling=io,
            nodata=nodata,
        ),
    )


async def plan_region_async(img: Image, bounds: Bounds, crs: Any, **kwargs: Any) -> WarpPlan:
    """``region_plan`` in the thread pool, for the image's own CRS when ``crs`` is None."""
    target = img.crs if crs is None else crs
    if target is None:
        raise NotGeoreferencedError("the image has no CRS: give the region's crs")
    return await asyncio.get_running_loop().run_in_executor(
        img.context.executor, lambda: region_plan(img, bounds, target, **kwargs)
    )


async def _block(
    img: Image, plan: WarpPlan, win: Window, bands: tuple[int, ...] | None, budgets: dict[str, Any]
) -> SourceBlock:
    from ..warp import SourceBlock

    data = await img.read(win, plan.level, bands, **budgets)
    valid = None
    if img.has_mask or img.alpha_band is not None:
        valid = await img.read_mask(win, plan.level, **budgets) > 0
    return SourceBlock(win, data, valid)


#: Bytes per output pixel planning a warp holds at its peak (its approximated transform of every
#: pixel): 75.8-80.4 under tracemalloc, 2048^2 and 4096^2 grids in, around and off the image.
WARP_PLAN_BYTES = 88

#: Bytes per output pixel a warp holds while it runs, beyond its output: source coordinates
#: (two float64), their approximation rows, kernel weights and validity (an upper bound).
WARP_WORKING_BYTES = 64


def estimate_warp(
    img: Image, plan: WarpPlan, fmt: str, bands: int, expression: Expression | None = None
) -> RequestBytes:
    """What the answer of a warp encoded as ``fmt`` holds at its peak, from the plan alone: the
    source windows read (and their validity), the warp's working arrays (float64 samples of
    each band and coordinates per output pixel), then the output as a region answer (with an
    ``expression``, the bands it refers to are warped, then its outputs computed)."""
    if expression is not None:
        from .bandmath import estimate_warped_expression

        return estimate_warped_expression(img, plan, fmt, bands, expression)
    itemsize = img.dtype.itemsize
    source = sum(w[2] * w[3] for w in plan.windows) * (bands * itemsize + 1)
    pixels = plan.dst.width * plan.dst.height
    working = pixels * (8 * bands + WARP_WORKING_BYTES)
    out = estimate_region(
        height=plan.dst.height,
        width=plan.dst.width,
        bands=bands,
        itemsize=itemsize,
        rendered=fmt in RENDERED,
        mask_bytes=2 * pixels,
    )
    return RequestBytes(out.data + source + working, out.mask, out.rendering, out.body)


async def source_blocks(
    img: Image,
    plan: WarpPlan,
    bands: tuple[int, ...],
    max_tiles: int | None,
    max_bytes: int | None,
) -> list[SourceBlock]:
    """The plan's source windows of ``bands`` read (with their validity, from an internal mask
    or alpha band); ``max_tiles`` bounds the blocks of all windows together."""
    if max_tiles is not None:  # the budget is the whole warp's, not each window's
        tiles = sum(len(img.plan(w, plan.level, bands).blocks) for w in plan.windows)
        if tiles > max_tiles:
            raise LimitExceededError("tiles", tiles, max_tiles)
    budgets = {"max_tiles": None, "max_bytes": max_bytes}
    return await gather_all(_block(img, plan, Window(*w), bands, budgets) for w in plan.windows)


async def read_warped(
    img: Image,
    plan: WarpPlan,
    *,
    bands: tuple[int, ...] | None = None,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
    executor: Executor | None = None,
    src_nodata: float | None = None,
    expression: Expression | None = None,
) -> ImageData:
    """Read the plan's source windows and warp them: pixels, mask (0 where nothing valid
    reaches) and the destination grid's georeferencing. ``bands`` default to every band but
    the alpha band (which becomes the mask); ``src_nodata`` overrides the image's nodata. With
    an ``expression`` (not with ``bands``), the bands it refers to are warped and its outputs
    are the result, valid where all of them are."""
    from ..warp import execute

    if expression is not None:
        from .bandmath import read_warped_expression

        return await read_warped_expression(
            img, plan, expression, executor, max_tiles, max_bytes, src_nodata
        )
    if bands is None:
        bands = tuple(b for b in range(1, img.count + 1) if b != img.alpha_band)
    nodata = img.nodata if src_nodata is None else src_nodata
    blocks = await source_blocks(img, plan, bands, max_tiles, max_bytes)
    if blocks:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            executor, lambda: execute(plan, blocks, src_nodata=nodata)
        )
        data, mask = result.data, np.where(result.mask, 255, 0).astype(np.uint8)
    else:  # nothing of the source under the grid (execute needs a block): all invalid
        shape = (len(bands), plan.dst.height, plan.dst.width)
        data = np.full(shape, fill_for_dtype(nodata, img.dtype), dtype=img.dtype)
        mask = np.zeros((plan.dst.height, plan.dst.width), np.uint8)
    return ImageData(
        data=data,
        mask=mask,
        transform=plan.dst.transform,
        crs=CRS.from_user_input(plan.dst.crs),
        nodata=nodata,
        bands=bands,
        level=plan.level,
        window=Window(0, 0, plan.src.width, plan.src.height),
        extra=source_extra(img, bands),
        palette=img.colormap,
    )


async def read_tile(
    img: Image,
    x: int,
    y: int,
    z: int,
    *,
    tms: str = "WebMercatorQuad",
    tilesize: int = 256,
    resampling: str = "nearest",
    io_resampling: str = "nearest",
    bands: tuple[int, ...] | None = None,
    executor: Executor | None = None,
) -> ImageData:
    """Tile ``z/x/y`` of ``tms`` as an ImageData (``TileOutsideBoundsError`` outside)."""
    plan = await plan_tile_async(img, tms, x, y, z, tilesize, resampling, io_resampling)
    return await read_warped(img, plan, bands=bands, executor=executor)


async def point_at(
    img: Image,
    x: float,
    y: float,
    crs: Any = None,
    *,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
) -> PointData:
    """The values at map coordinate (x, y) in ``crs`` (the image's when None), with GDAL's
    pixel-edge convention: a point on an edge belongs to the pixel right of / below it."""
    from ..warp import point_index
    from .plan import PointPlan
    from .read import read_point

    src = source_grid(img)
    row, col = point_index(src, x, y, None if crs is None else crs_text(crs))
    if not (0 <= col < img.width and 0 <= row < img.height):
        raise WindowError(f"point ({x}, {y}) is outside the image")
    return await read_point(img, PointPlan(col, row), max_tiles=max_tiles, max_bytes=max_bytes)
