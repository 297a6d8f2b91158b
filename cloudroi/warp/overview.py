"""Which source level a warp reads: gdalwarp's ``-ovr AUTO`` and a WarpedVRT's implicit overview.

* Regions (``gdalwarp_overview_level``, gdalwarp_lib.cpp of GDAL 3.10): for an explicit target
  grid (``-te`` with ``-ts``/``-tr``) 10 x 10 destination points, edges included, go to the
  source; the ratio is the smaller of their box's width and height over the destination's
  (GDAL #7019). gdalwarp keeps the coarsest level whose factor is below ``ratio + 0.1``,
  stopping at one within 0.1 of the ratio (GDAL #10873): 3x picks the 2x overview, 3.97x and
  exactly 4x the 4x one.
* ``rasterio.warp.reproject`` never picks an overview: it warps what it is given.
* WarpedVRT read into a smaller buffer (``vrt_overview_level``, what rio-tiler's ``tile()``
  goes through, ``VRTWarpedRasterBand::GetBestOverviewLevel``): implicit overview i of the VRT
  has ``int(vrt / (w0 / w_i) + 0.5)`` pixels; the desired factor is the least-reduced axis of
  the request; GDAL keeps the largest overview factor below ``desired * threshold``, the
  threshold being 1.2 for a nearest RasterIO and 1.01 otherwise. GDAL then warps that source
  overview directly into the requested grid (it does not warp the VRT grid and decimate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .grid import Grid
from .transform import PixelTransform

__all__ = ["gdalwarp_overview_level", "vrt_overview_level"]

Levels = Sequence[tuple[int, int]]
#: GDALWARP_OVERSAMPLING_THRESHOLD's default.
OVERSAMPLING_THRESHOLD = 1.0
#: gdalwarp's tolerance on overview factors (numerical instability).
_RATIO_EPSILON = 0.1


def target_ratio(src: Grid, dst: Grid) -> float:
    """Source (``src``) pixels per destination pixel as gdalwarp estimates them for an explicit
    target grid; 0 when the destination does not map."""
    cols, rows = np.meshgrid(dst.width * np.arange(10.0) / 9, dst.height * np.arange(10.0) / 9)
    x, y = PixelTransform(dst, src)(cols.ravel(), rows.ravel())
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 0.0
    x, y = x[ok], y[ok]
    rx = float(x.max() - x.min()) / dst.width if x.max() > x.min() else 0.0
    ry = float(y.max() - y.min()) / dst.height if y.max() > y.min() else 0.0
    return min(rx, ry)


def gdalwarp_overview_level(src: Grid, levels: Levels, dst: Grid) -> int:
    """The level ``gdalwarp -ovr AUTO -te ... -ts/-tr ...`` warps ``dst`` from (module
    docstring); ``src`` is level 0 and ``levels`` the ``(width, height)`` of level 0 then of
    each overview."""
    if len(levels) < 2:
        return 0
    target = target_ratio(src, dst)
    if target <= 1.0:
        return 0
    w0 = levels[0][0]
    best, best_ratio = 0, 0.0
    for i, ratio in enumerate([1.0] + [w0 / w for w, _ in levels[1:]]):
        if ratio >= target * OVERSAMPLING_THRESHOLD + _RATIO_EPSILON or ratio <= best_ratio:
            continue
        best, best_ratio = i, ratio
        if abs(target - ratio) < _RATIO_EPSILON:
            break
    return best


def vrt_overview_level(
    levels: Levels,
    vrt_size: tuple[int, int],
    out_size: tuple[int, int],
    io_resampling: str = "nearest",
) -> int:
    """The source level GDAL warps from when a WarpedVRT of ``vrt_size`` (width, height) is
    read into ``out_size`` (width, height) with RasterIO resampling ``io_resampling``."""
    vw, vh = vrt_size
    bw, bh = out_size
    if bw >= vw and bh >= vh:
        return 0
    desired = vw / bw if (vw / bw < vh / bh or bh == 1) else vh / bh
    threshold = 1.2 if io_resampling == "nearest" else 1.0 + 1e-2
    w0 = levels[0][0]
    best, best_factor = 0, 0.0
    for i, (w, _h) in enumerate(levels[1:], start=1):
        ratio = w0 / w
        ow, oh = int(vw / ratio + 0.5), int(vh / ratio + 0.5)
        if ow < 1 or oh < 1:
            break
        factor = min(vw / ow, vh / oh)
        if factor < desired * threshold and factor > best_factor:
            best, best_factor = i, factor
    return best
