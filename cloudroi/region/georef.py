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
from ..errors import LimitExceededError, NotGeoreferencedError, TileOutsideBoundsError, WindowError
from ..tasks import gather_all
from ..types import Window
from .data import ImageData, PointData

if TYPE_CHECKING:
    from morecantile import TileMatrixSet

    from ..image import Image
    from ..warp import Grid, Resampling, SourceBlock, WarpPlan

__all__ = [
    "bounds_in",
    "checked_bounds",
    "plan_region_async",
    "plan_tile_async",
    "refill",
    "crs_text",
    "point_at",
    "read_tile",
    "read_warped",
    "region_plan",
    "source_grid",
    "tile_matrix_set",
    "tile_plan",
]

Bounds = tuple[float, float, float, float]
#: Samples per edge when bounds are carried into another CRS (as GDAL's transform_bounds).
DENSIFY = 21


def kernel(name: str) -> Resampling:
    """A warp kernel's name, checked: nearest, bilinear, cubic or average."""
    from ..warp import RESAMPLINGS

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
    from ..warp import Grid

    if img.crs is None or img.transform is None:
        raise NotGeoreferencedError(
            "the image has no CRS or geotransform: map coordinates cannot be placed on it"
        )
    return Grid(crs_text(img.crs), img.transform, img.width, img.height)


@lru_cache(maxsize=32)
def tile_matrix_set(name: str) -> TileMatrixSet:
    """One of the OGC TileMatrixSets morecantile knows (WebMercatorQuad, WorldCRS84Quad...)."""
    import morecantile

    try:
        return morecantile.tms.get(name)
    except Exception as exc:  # morecantile's InvalidIdentifier
        known = ", ".join(morecantile.tms.list())
        raise WindowError(f"unknown tile matrix set {name!r}; one of {known}") from exc


def bounds_in(img: Image, crs: Any = 4326) -> Bounds:
    """(minx, miny, maxx, maxy) of the image in ``crs``, its edges densified (21 points)."""
    from pyproj import Transformer

    bounds = img.bounds
    if bounds is None or img.crs is None:
        raise NotGeoreferencedError("the image has no georeferencing")
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
) -> WarpPlan:
    """The warp of ``bounds`` in ``crs`` onto a grid of ``shape`` (h, w) or ``resolution``
    (CRS units per pixel) from the level ``gdalwarp -ovr AUTO`` would pick (or ``level``)."""
    from ..warp import Grid, plan_region

    target = crs_text(crs)
    if shape is not None:
        height, width = shape
        dst = Grid.from_bounds(target, bounds, width, height)
    elif resolution is not None:
        dst = Grid.from_resolution(target, bounds, resolution)
    else:  # the resolution GDAL suggests for the whole image in the target CRS
        from ..warp import suggested_warp_output

        native = suggested_warp_output(source_grid(img), target)
        dst = Grid.from_resolution(
            target, bounds, (abs(native.transform[1]), abs(native.transform[5]))
        )
    return plan_region(
        source_grid(img),
        img.levels,
        dst,
        kernel(resampling),
        block_shape=img.block_shape,
        level=level,
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
) -> WarpPlan:
    """Tile ``z/x/y`` as rio-tiler's ``Reader.tile()`` gets it from GDAL; a tile that does not
    touch the image is ``TileOutsideBoundsError``."""
    from ..warp import plan_tile, rio_tiler_vrt_bands, tile_exists

    src = source_grid(img)
    if not tile_exists(tms, src, x, y, z):
        raise TileOutsideBoundsError(f"tile {z}/{x}/{y} of {tms.id} is outside the image")
    bands = rio_tiler_vrt_bands(img.count, img.nodata, img.alpha_band is not None)
    return plan_tile(
        src,
        img.levels,
        tms,
        x,
        y,
        z,
        kernel(resampling),
        vrt_bands=bands,
        tilesize=tilesize,
        block_shape=img.block_shape,
        io_resampling=io_resampling,
    )


def checked_bounds(bounds: Any) -> Bounds:
    """``bounds`` as four finite floats with min < max on both axes, else WindowError."""
    try:
        box = tuple(float(v) for v in bounds)
    except (TypeError, ValueError) as exc:
        raise WindowError(f"bounds must be four numbers, got {bounds!r}") from exc
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise WindowError(f"bounds must be four finite numbers, got {bounds!r}")
    minx, miny, maxx, maxy = box
    if not (minx < maxx and miny < maxy):
        raise WindowError(f"bounds need minx < maxx and miny < maxy, got {box}")
    return (minx, miny, maxx, maxy)


async def plan_tile_async(
    img: Image, tms: str, x: int, y: int, z: int, tilesize: int, resampling: str, io: str
) -> WarpPlan:
    """``tile_plan`` in the thread pool (planning a warp transforms a few thousand points)."""
    matrix_set = tile_matrix_set(tms)
    return await asyncio.get_running_loop().run_in_executor(
        img.context.executor,
        lambda: tile_plan(
            img, matrix_set, x, y, z, tilesize=tilesize, resampling=resampling, io_resampling=io
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


def refill(data: ImageData, nodata: float | int | None) -> ImageData:
    """``data`` with its invalid pixels set to ``nodata`` (and ``nodata`` recorded), when given."""
    if nodata is None:
        return data
    if data.mask is not None:
        fill = np.asarray(nodata).astype(data.data.dtype)
        data.data[:, data.mask == 0] = fill
    data.nodata = nodata
    return data


async def _block(
    img: Image, plan: WarpPlan, win: Window, bands: tuple[int, ...] | None, budgets: dict[str, Any]
) -> SourceBlock:
    from ..warp import SourceBlock

    data = await img.read(win, plan.level, bands, **budgets)
    valid = None
    if img.has_mask or img.alpha_band is not None:
        valid = await img.read_mask(win, plan.level, **budgets) > 0
    return SourceBlock(win, data, valid)


async def read_warped(
    img: Image,
    plan: WarpPlan,
    *,
    bands: tuple[int, ...] | None = None,
    max_tiles: int | None = None,
    max_bytes: int | None = None,
    executor: Executor | None = None,
) -> ImageData:
    """Read the plan's source windows and warp them: pixels, mask (0 where nothing valid
    reaches) and the destination grid's georeferencing."""
    from ..warp import execute

    if max_tiles is not None:  # the budget is the whole warp's, not each window's
        tiles = sum(len(img.plan(w, plan.level, bands).blocks) for w in plan.windows)
        if tiles > max_tiles:
            raise LimitExceededError("tiles", tiles, max_tiles)
    budgets = {"max_tiles": None, "max_bytes": max_bytes}
    blocks = await gather_all(_block(img, plan, Window(*w), bands, budgets) for w in plan.windows)
    if blocks:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            executor, lambda: execute(plan, blocks, src_nodata=img.nodata)
        )
        data, mask = result.data, np.where(result.mask, 255, 0).astype(np.uint8)
    else:  # nothing of the source under the grid (execute needs a block): all invalid
        n = len(bands) if bands else img.count
        data = np.full((n, plan.dst.height, plan.dst.width), img.nodata or 0, dtype=img.dtype)
        mask = np.zeros((plan.dst.height, plan.dst.width), np.uint8)
    return ImageData(
        data=data,
        mask=mask,
        transform=plan.dst.transform,
        crs=CRS.from_user_input(plan.dst.crs),
        nodata=img.nodata,
        bands=bands or tuple(range(1, img.count + 1)),
        level=plan.level,
        window=Window(0, 0, plan.src.width, plan.src.height),
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


async def point_at(img: Image, x: float, y: float, crs: Any = None) -> PointData:
    """The values at map coordinate (x, y) in ``crs`` (the image's when None), with GDAL's
    pixel-edge convention: a point on an edge belongs to the pixel right of / below it."""
    from ..warp import point_index
    from .plan import PointPlan
    from .read import read_point

    src = source_grid(img)
    row, col = point_index(src, x, y, None if crs is None else crs_text(crs))
    if not (0 <= col < img.width and 0 <= row < img.height):
        raise WindowError(f"point ({x}, {y}) is outside the image")
    return await read_point(img, PointPlan(col, row))
