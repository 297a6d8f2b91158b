"""Which source level a warp reads: gdalwarp's ``-ovr AUTO`` and a WarpedVRT's implicit overview.

* Regions (``gdalwarp_overview_level``): the source-pixels-per-destination-pixel ratio is the
  inverse pixel size of ``GDALSuggestedWarpOutput2`` run with the transformer *into the
  destination's pixels*; gdalwarp takes the first level whose factor is below that ratio while
  the next one is above it, or that is within 0.1 of it, else the coarsest. So 3x picks the 2x
  overview, exactly 4x the 4x one and 3.97x the 2x one (the first bracket wins).
* ``rasterio.warp.reproject`` never picks an overview: it warps what it is given.
* WarpedVRT read into a smaller buffer (``vrt_overview_level``, what rio-tiler's ``tile()``
  goes through, ``VRTWarpedRasterBand::GetBestOverviewLevel``): implicit overview i of the VRT
  has ``int(vrt / (w0 / w_i) + 0.5)`` pixels; the desired factor is the least-reduced axis of
  the request; GDAL keeps the largest overview factor below ``desired * threshold``, the
  threshold being 1.2 for a nearest RasterIO and 1.01 otherwise. GDAL then warps that source
  overview directly into the requested grid (it does not warp the VRT grid and decimate).

gdalwarp's ratio uses the main path of ``GDALSuggestedWarpOutput2`` with 21 samples per edge
(:func:`edge_samples`): the diagonal of the transformed corners (the whole function is
:func:`~.suggest.suggested_warp_output`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .grid import BoolArray, FloatArray, Grid
from .transform import PixelTransform

__all__ = ["edge_samples", "gdalwarp_overview_level", "vrt_overview_level"]

Levels = Sequence[tuple[int, int]]


def edge_samples(w: int, h: int, steps: int = 20) -> tuple[FloatArray, FloatArray]:
    """GDALSuggestedWarpOutput2's samples: ``steps + 1`` points along the top, bottom, left and
    right edges (pixel edges), in that order; the first is (0, 0) and the last (w, h)."""
    r = np.array([1.0 if i == steps else i / steps for i in range(steps + 1)])
    xs = np.concatenate([r * w, r * w, np.zeros_like(r), np.full_like(r, w)])
    ys = np.concatenate([np.zeros_like(r), np.full_like(r, h), r * h, r * h])
    return xs, ys


def _diagonal(fx: FloatArray, fy: FloatArray, ok: BoolArray) -> tuple[float, float]:
    """The first-to-last sample vector when both map and it is not degenerate, else the
    extent of the mapped samples."""
    if ok[0] and ok[-1]:
        d = (float(fx[-1] - fx[0]), float(fy[-1] - fy[0]))
        if d[0] != 0.0 and d[1] != 0.0 and math.isfinite(d[0]) and math.isfinite(d[1]):
            return d
    return float(fx[ok].max() - fx[ok].min()), float(fy[ok].max() - fy[ok].min())


def _overview_ratio(src: Grid, dst: Grid) -> float | None:
    """Source pixels per destination pixel as gdalwarp -ovr AUTO estimates them."""
    xs, ys = edge_samples(src.width, src.height)
    fx, fy = PixelTransform(dst, src).forward(xs, ys)
    ok = np.isfinite(fx) & np.isfinite(fy)
    if ok.sum() < 2:
        return None
    pixel = math.hypot(*_diagonal(fx, fy, ok)) / math.hypot(src.width, src.height)
    return 1.0 / pixel if pixel > 0 else None


def gdalwarp_overview_level(src: Grid, levels: Levels, dst: Grid) -> int:
    """The level ``gdalwarp -ovr AUTO`` warps ``dst`` from (module docstring); ``src`` is
    level 0 and ``levels`` the ``(width, height)`` of level 0 then of each overview."""
    if len(levels) < 2:
        return 0
    target = _overview_ratio(src, dst)
    if target is None or target <= 1.0:
        return 0
    w0 = levels[0][0]
    ratios = [1.0] + [w0 / w for w, _ in levels[1:]]
    for i in range(len(ratios) - 1):
        if ratios[i] < target < ratios[i + 1] or abs(ratios[i] - target) < 0.1:
            return i
    return len(ratios) - 1


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
