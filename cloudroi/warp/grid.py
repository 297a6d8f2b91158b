"""Georeferenced pixel grids: the source levels and the destination of a warp.

A :class:`Grid` is a CRS, a GDAL-order geotransform ``(x0, dx, rx, y0, ry, dy)`` and a size.
Pixel ``(col, row)`` has its top-left corner at ``to_xy(col, row)`` and its centre at
``(col + 0.5, row + 0.5)``, the convention of every GDAL transformer. The rules mirrored here:

* ``GDALInvGeoTransform``'s exact north-up case (``-x0 / dx``, ``1 / dx``), which is why a point
  on a pixel edge maps to an integer pixel coordinate without rounding noise;
* the georeferencing of an overview (``GDALOverviewDataset``): the geotransform scaled by the
  size ratio of each axis;
* ``gdalwarp -te -tr``'s output size, ``int((extent + res / 2) / res)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from ..errors import WindowError
from ..region.geometry import inverse
from ..types import Window

__all__ = ["BoolArray", "FloatArray", "GeoTransform", "Grid", "IntArray", "WarpError"]

GeoTransform: TypeAlias = tuple[float, float, float, float, float, float]
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.intp]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
Bounds: TypeAlias = tuple[float, float, float, float]


class WarpError(WindowError):
    """A reprojection that cannot be planned: an unknown CRS, a grid that is empty or whose
    geotransform cannot be inverted, an unsupported resampling, blocks that do not fit."""


@dataclass(frozen=True, slots=True)
class Grid:
    """A georeferenced pixel grid: ``crs`` (anything pyproj accepts: ``"EPSG:32633"``, WKT,
    a PROJ string), the GDAL geotransform ``transform`` and ``width`` x ``height`` pixels."""

    crs: str
    transform: GeoTransform
    width: int
    height: int

    def __post_init__(self) -> None:
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise WarpError(f"a grid needs a CRS string, not {self.crs!r}")
        if self.width < 1 or self.height < 1:
            raise WarpError(f"a grid needs at least one pixel, not {self.width} x {self.height}")
        gt = self.transform
        if len(gt) != 6 or not all(math.isfinite(v) for v in gt):
            raise WarpError(f"geotransform {gt} is not six finite numbers")
        if abs(gt[1] * gt[5] - gt[2] * gt[4]) < 1e-300:
            raise WarpError(f"geotransform {gt} is not invertible")

    @classmethod
    def from_bounds(cls, crs: str, bounds: Bounds, width: int, height: int) -> Grid:
        """North-up grid of ``width`` x ``height`` pixels over ``(minx, miny, maxx, maxy)``."""
        minx, miny, maxx, maxy = bounds
        if not maxx > minx or not maxy > miny:
            raise WarpError(f"bounds {bounds} are empty")
        dx, dy = (maxx - minx) / width, (miny - maxy) / height
        return cls(crs, (minx, dx, 0.0, maxy, 0.0, dy), width, height)

    @classmethod
    def from_resolution(
        cls, crs: str, bounds: Bounds, resolution: float | tuple[float, float]
    ) -> Grid:
        """North-up grid at ``resolution`` (CRS units per pixel, one value or ``(x, y)``) from
        the top-left corner of ``bounds``; its size is gdalwarp's ``int((extent + res/2) / res)``
        (at least 1), so the grid may end a fraction of a pixel short of or past the bounds."""
        xres, yres = resolution if isinstance(resolution, tuple) else (resolution, resolution)
        if not (xres > 0 and yres > 0 and math.isfinite(xres) and math.isfinite(yres)):
            raise WarpError(f"resolution {resolution} must be positive")
        minx, miny, maxx, maxy = bounds
        if not maxx > minx or not maxy > miny:
            raise WarpError(f"bounds {bounds} are empty")
        width = max(1, int((maxx - minx + xres / 2) / xres))
        height = max(1, int((maxy - miny + yres / 2) / yres))
        return cls(crs, (minx, xres, 0.0, maxy, 0.0, -yres), width, height)

    @property
    def bounds(self) -> Bounds:
        """``(minx, miny, maxx, maxy)`` of the four corners."""
        xs, ys = self.to_xy(
            np.array([0.0, self.width, 0.0, self.width]),
            np.array([0.0, 0.0, self.height, self.height]),
        )
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size along columns and rows, in CRS units (always positive)."""
        gt = self.transform
        return math.hypot(gt[1], gt[4]), math.hypot(gt[2], gt[5])

    def to_xy(self, cols: FloatArray, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Pixel coordinates -> CRS coordinates (GDALApplyGeoTransform)."""
        x0, dx, rx, y0, ry, dy = self.transform
        return x0 + cols * dx + rows * rx, y0 + cols * ry + rows * dy

    def inverse(self) -> GeoTransform:
        """The inverse geotransform as GDALInvGeoTransform computes it, including its exact
        north-up special case."""
        return inverse(self.transform)

    def to_pixel(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """CRS coordinates -> fractional pixel coordinates ``(col, row)``."""
        i0, i1, i2, i3, i4, i5 = self.inverse()
        return i0 + x * i1 + y * i2, i3 + x * i4 + y * i5

    def overview(self, width: int, height: int) -> Grid:
        """The grid of an overview of ``width`` x ``height`` pixels of this grid."""
        fx, fy = self.width / width, self.height / height
        x0, dx, rx, y0, ry, dy = self.transform
        return Grid(self.crs, (x0, dx * fx, rx * fy, y0, ry * fx, dy * fy), width, height)

    def subgrid(self, win: Window) -> Grid:
        """The grid of the window ``win`` of this grid (same pixel size)."""
        x, y = self.to_xy(np.array([float(win.col_off)]), np.array([float(win.row_off)]))
        _, dx, rx, _, ry, dy = self.transform
        return Grid(self.crs, (float(x[0]), dx, rx, float(y[0]), ry, dy), win.width, win.height)


def level_grids(src: Grid, levels: Sequence[tuple[int, int]]) -> list[Grid]:
    """The grid of each level, level 0 (``src``) first: ``levels`` are the ``(width, height)``
    of level 0 and then of each overview, as ``Image.levels`` lists them."""
    if not levels:
        raise WarpError("an image has at least one level")
    if tuple(levels[0]) != (src.width, src.height):
        raise WarpError(f"level 0 is {levels[0]}, the grid {src.width} x {src.height}")
    return [src] + [src.overview(w, h) for w, h in levels[1:]]
