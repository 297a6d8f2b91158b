"""Reprojection that reproduces GDAL 3.10's warper: regions, web-map tiles and points.

Pure (numpy + pyproj + morecantile, no I/O, no asyncio). The region layer plans a warp, reads
the planned windows itself and hands the arrays back::

    src = Grid(img.crs.to_string(), img.transform, img.width, img.height)    # level 0
    plan = plan_tile(src, img.levels, tms, x, y, z, "bilinear",
                     vrt_bands=rio_tiler_vrt_bands(img.count, img.nodata),
                     block_shape=img.block_shape)
    # or: plan_region(src, img.levels, Grid.from_bounds("EPSG:4326", bounds, w, h), "cubic")
    blocks = [SourceBlock(w, await img.read(w, level=plan.level)) for w in plan.windows]
    result = execute(plan, blocks, src_nodata=img.nodata)   # data (bands, h, w), mask (h, w)

What is reproduced, and the GDAL function each module mirrors:

* :mod:`.grid` -- grids, overview georeferencing, GDALInvGeoTransform;
* :mod:`.transform` -- the GenImgProj transformer (PROJ, GDAL's 3857 <-> 4326 formulas,
  CENTER_LONG wrapping); :mod:`.approx` -- GDALApproxTransform's per-row approximation;
* :mod:`.window` -- ComputeSourceWindow and PerformWarp's kernel scale;
* :mod:`.overview` -- gdalwarp -ovr AUTO, the WarpedVRT implicit-overview choice,
  GDALSuggestedWarpOutput2 (main path); :mod:`.tiles` -- rio-tiler's tile level, zoom range,
  tile existence;
* :mod:`.chunk`, :mod:`.coverage`, :mod:`.plan` -- warp chunks, the windows to read, plans;
* :mod:`.canvas`, :mod:`.kernels`, :mod:`.average`, :mod:`.execution` -- the kernels of
  gdalwarpkernel.cpp (nearest, bilinear, cubic, widened, average), validity and storing;
* :mod:`.points` -- point -> pixel, the GDAL/rasterio pixel-edge convention.

Conventions: geotransforms in GDAL order ``(x0, dx, rx, y0, ry, dy)``; CRSs as strings pyproj
accepts; windows ``(col_off, row_off, width, height)`` in pixels of the level read; levels
``(width, height)``; block shapes and chunk shapes ``(rows, cols)``; arrays ``(bands, rows,
cols)``; x/y in longitude/latitude order for geographic CRSs. Behaviours of GDAL 3.10 found by
measurement rather than in its source are isolated and documented where they live
(:func:`~.window.source_probe_always`, :func:`~.window.kernel_scale`'s ``with_extra``, the
average kernel's antimeridian rule in :mod:`.average`). Bad input raises :class:`WarpError`
(a ``WindowError``, so a 400 in the service). See docs/warp.md.
"""

from ..types import Window
from .approx import MAX_ERROR, Footprint, approx_transform
from .canvas import SourceBlock
from .chunk import ChunkPlan
from .coverage import blocks_to_windows, needed_pixel_ranges
from .execution import WarpResult, execute, warp
from .grid import GeoTransform, Grid, WarpError, level_grids
from .overview import gdalwarp_overview_level, vrt_overview_level
from .plan import RESAMPLINGS, Resampling, WarpPlan, plan_region, plan_tile
from .points import point_index
from .suggest import suggested_warp_output
from .tiles import (
    rio_tiler_vrt_bands,
    rio_tiler_vrt_size,
    tile_exists,
    tile_grid,
    tile_level,
    zoom_range,
)
from .transform import PixelTransform

__all__ = [
    "MAX_ERROR",
    "RESAMPLINGS",
    "ChunkPlan",
    "Footprint",
    "GeoTransform",
    "Grid",
    "PixelTransform",
    "Resampling",
    "SourceBlock",
    "WarpError",
    "WarpPlan",
    "WarpResult",
    "Window",
    "approx_transform",
    "blocks_to_windows",
    "execute",
    "gdalwarp_overview_level",
    "level_grids",
    "needed_pixel_ranges",
    "plan_region",
    "plan_tile",
    "point_index",
    "rio_tiler_vrt_bands",
    "rio_tiler_vrt_size",
    "suggested_warp_output",
    "tile_exists",
    "tile_grid",
    "tile_level",
    "vrt_overview_level",
    "warp",
    "zoom_range",
]
