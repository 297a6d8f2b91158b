"""Points: which pixel of a grid holds a map coordinate.

GDAL and rasterio (``DatasetReader.index``) take the floor of the inverse geotransform applied
to the point, so a point exactly on a pixel edge belongs to the pixel to its right / below. The
inverse is :meth:`~.grid.Grid.inverse` (GDALInvGeoTransform's exact north-up case), so a point
on an edge lands on an integer without rounding noise. A point in another CRS is transformed
first, the way GDAL's coordinate transformation does it (web-mercator shortcuts included).
"""

from __future__ import annotations

import math

import numpy as np

from .grid import Grid, WarpError
from .transform import reproject_xy, same_crs

__all__ = ["point_index"]


def point_index(grid: Grid, x: float, y: float, crs: str | None = None) -> tuple[int, int]:
    """``(row, col)`` of the pixel of ``grid`` holding the point ``(x, y)`` (x/y in ``crs``,
    the grid's CRS by default; longitude/latitude order for geographic CRSs). The pixel may lie
    outside the grid: callers check ``0 <= row < height`` and ``0 <= col < width``."""
    xs, ys = np.array([x], np.float64), np.array([y], np.float64)
    if crs is not None and not same_crs(crs, grid.crs):
        xs, ys = reproject_xy(crs, grid.crs, xs, ys)
    c, r = grid.to_pixel(xs, ys)
    col, row = float(c[0]), float(r[0])
    if not (math.isfinite(col) and math.isfinite(row)):
        raise WarpError(f"point ({x}, {y}) does not map into the grid's CRS")
    return math.floor(row), math.floor(col)
