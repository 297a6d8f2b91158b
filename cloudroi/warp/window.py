"""GDAL's source window and kernel scale of a warp chunk.

For every warp chunk GDAL computes the source window it reads (``GDALWarpOperation::
ComputeSourceWindow``) and, from it, the kernel scale (``GDALWarpKernel::PerformWarp``). Both
change results: the window bounds the kernels (taps outside it are dropped, cubic falls back to
bilinear at its border) and the scale decides between the 4-sample bilinear/cubic formulas and
kernels widened for downsampling. The rules:

* 21 samples per chunk edge at pixel *edges*, the ratio accumulated ``r += 0.05`` as in C, exact
  transforms; if one fails, or a pole of a geographic source falls inside the destination, a
  23 x 23 grid instead (GDAL uses the chunk's x size for the y ratios there too);
* the source grid points (23 x 23) that land inside the chunk widen the box
  (``ComputeSourceWindowStartingFromSource``);
* the kernel radius widened to ``ceil(r / scale)`` when the scale is below 0.95; the window
  clamped to the raster, the full width/height when the box covers more than 90% of it; the
  ``extra`` is what the window adds around the raw footprint;
* scale = ``dst / (window - extra)``, 1 when the window lies between ``dst`` and
  ``dst + extra``, snapped to ``1/n`` within 0.05, re-estimated from local samples when y/x
  exceeds 100 (a chunk across the antimeridian).

Measured, not read in 3.10's source (isolated in :func:`source_probe_always` and
:func:`kernel_scale`'s ``with_extra``): GDAL 3.10 runs the source-grid probe on every chunk
(without it the EPSG:3832 antimeridian chunk gets another scale), and its one-chunk WarpedVRT
path does not pass the extras to the kernel (scale = ``dst / window``). Re-check both when GDAL
is upgraded: newer sources pass the extras in that path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..types import Window
from .grid import FloatArray
from .transform import PixelTransform, is_geographic, same_crs, transformer

__all__ = [
    "FILTER_RADIUS",
    "FOUR_SAMPLE_SCALE",
    "SourceProbe",
    "SourceWindow",
    "compute_source_window",
    "kernel_scale",
    "source_probe_always",
]

#: Kernel radius per resampling (the filter radii of gdalwarpkernel.cpp).
FILTER_RADIUS: dict[str, int] = {"nearest": 0, "bilinear": 1, "cubic": 2, "average": 0}
#: GDAL uses the 4-sample bilinear/cubic formulas only when both kernel scales reach this.
FOUR_SAMPLE_SCALE = 0.95
#: Edge sampling of ComputeSourceWindow (its SAMPLE_STEPS default).
SAMPLE_STEPS = 21


def source_probe_always() -> bool:
    """GDAL 3.10 widens every chunk's source box by the source grid points landing in it
    (measured: matching its kernel scale on an EPSG:3832 chunk across 180 needs it)."""
    return True


@dataclass(frozen=True, slots=True)
class SourceWindow:
    """ComputeSourceWindow's answer for one chunk: the window GDAL reads, in pixels of the
    level, and the fractional extra it added around the raw footprint on each axis."""

    window: Window
    extra_x: float
    extra_y: float


@dataclass(frozen=True, slots=True)
class SourceProbe:
    """A 23 x 23 grid of source pixel positions and where each lands in destination pixels,
    computed once per warp (ComputeSourceWindowStartingFromSource's samples)."""

    src_x: FloatArray
    src_y: FloatArray
    dst_x: FloatArray
    dst_y: FloatArray

    @classmethod
    def of(cls, pt: PixelTransform) -> SourceProbe:
        gx, gy = np.meshgrid(
            _grid_ratios(SAMPLE_STEPS, pt.src.width) * pt.src.width,
            _grid_ratios(SAMPLE_STEPS, pt.src.height) * pt.src.height,
        )
        fx, fy = pt.forward(gx.ravel(), gy.ravel())
        return cls(gx.ravel(), gy.ravel(), fx, fy)

    def inside(self, win: Window) -> tuple[float, float, float, float] | None:
        """Source box ``(min_x, max_x, min_y, max_y)`` of the probe points inside ``win``."""
        with np.errstate(invalid="ignore"):
            hit = (
                (self.dst_x >= win.col_off)
                & (self.dst_x <= win.col_end)
                & (self.dst_y >= win.row_off)
                & (self.dst_y <= win.row_end)
            )
        if not hit.any():
            return None
        sx, sy = self.src_x[hit], self.src_y[hit]
        return float(sx.min()), float(sx.max()), float(sy.min()), float(sy.max())


@lru_cache(maxsize=4)
def _edge_ratios(steps: int) -> tuple[float, ...]:
    """``for (r = 0; r <= 1 + step / 2; r += step)``: accumulated, as in C."""
    step = 1.0 / (steps - 1)
    out, r = [], 0.0
    while r <= 1.0 + step * 0.5:
        out.append(r)
        r += step
    return tuple(out)


def _grid_ratios(steps: int, size: int) -> FloatArray:
    step = 1.0 / (steps - 1)
    return np.array([0.5 / size] + [i * step for i in range(steps)] + [1 - 0.5 / size])


@lru_cache(maxsize=128)
def _pole_pixels(src_crs: str, dst_crs: str) -> tuple[tuple[float, float], ...]:
    """The poles of a geographic source CRS in ``dst_crs`` coordinates (where they map)."""
    if not is_geographic(src_crs) or same_crs(src_crs, dst_crs):
        return ()
    # through PROJ itself, as GDAL's special-point search does (no web-mercator shortcut)
    tx, ty = transformer(src_crs, dst_crs).transform(
        np.array([0.0, 0.0]), np.array([-89.9999, 89.9999]), errcheck=False
    )
    pts = zip(np.asarray(tx, np.float64), np.asarray(ty, np.float64), strict=True)
    return tuple((float(a), float(b)) for a, b in pts if math.isfinite(a) and math.isfinite(b))


def _pole_inside(pt: PixelTransform) -> bool:
    """Whether a pole of a geographic source falls in the destination: then ComputeSourceWindow
    samples a grid rather than the chunk edges."""
    for x, y in _pole_pixels(pt.src.crs, pt.dst.crs):
        c, r = pt.dst.to_pixel(np.array([x]), np.array([y]))
        if 0 <= c[0] <= pt.dst.width and 0 <= r[0] <= pt.dst.height:
            return True
    return False


def _sample_points(win: Window, use_grid: bool) -> tuple[FloatArray, FloatArray]:
    xo, yo, w, h = win
    if use_grid:
        rx = _grid_ratios(SAMPLE_STEPS, w)
        gx, gy = np.meshgrid(rx * w + xo, rx * h + yo)  # GDAL uses the x size for y here too
        return gx.ravel(), gy.ravel()
    rr = np.array(_edge_ratios(SAMPLE_STEPS))
    lo_x, hi_x = np.full_like(rr, xo), np.full_like(rr, xo + w)
    px = np.stack([rr * w + xo, rr * w + xo, lo_x, hi_x], 1).ravel()
    py = np.stack([np.full_like(rr, yo), np.full_like(rr, yo + h), rr * h + yo, rr * h + yo], 1)
    return px, py.ravel()


def _sampled_box(
    pt: PixelTransform, win: Window
) -> tuple[tuple[float, float, float, float], int] | None:
    """Source box ``(min_x, max_x, min_y, max_y)`` of the chunk's samples and the number of
    samples that failed; None when (nearly) all fail."""
    use_grid = _pole_inside(pt)
    px, py = _sample_points(win, use_grid)
    sx, sy = pt(px, py)
    ok = np.isfinite(sx) & np.isfinite(sy)
    if not use_grid and not ok.all():
        px, py = _sample_points(win, True)
        sx, sy = pt(px, py)
        ok = np.isfinite(sx) & np.isfinite(sy)
    failed = int((~ok).sum())
    if failed > px.size - 5:
        return None
    box = float(sx[ok].min()), float(sx[ok].max()), float(sy[ok].min()), float(sy[ok].max())
    return box, failed


def _snap(v: float) -> float:
    return float(round(v)) if abs(round(v) - v) < 1e-6 else v


def _axis_window(
    lo: float, hi: float, dst: int, size: int, radius: int, failed: int
) -> tuple[int, int, float]:
    """Offset, size and extra of the window along one axis (box ``[lo, hi]`` in source pixels,
    ``dst`` destination pixels, ``size`` source pixels)."""
    scale = max(1e-3, dst / (hi - lo)) if hi > lo else math.inf
    r = math.ceil(radius / scale) if scale < FOUR_SAMPLE_SCALE else radius
    if failed:
        r += 10
    c0 = int(max(0.0, lo))
    c1 = int(min(math.ceil(hi), size))
    raw = max(0.0, min(float(size - c0), hi - lo))
    if c1 - c0 > 0.9 * size:
        return 0, size, size - raw
    off = max(0, min(c0 - r, size))
    n = max(0, min(size - off, c1 - off + r))
    return off, n, n - raw


def compute_source_window(
    pt: PixelTransform, dst_win: Window, resampling: str, probe: SourceProbe | None = None
) -> SourceWindow | None:
    """``GDALWarpOperation::ComputeSourceWindow`` for the destination chunk ``dst_win`` (module
    docstring); None when nothing of the chunk maps inside the source.

    This is GDAL's *read* window; cloudroi reads the block-compact windows of
    :mod:`cloudroi.warp.coverage` instead, but the kernel scale and the border rules of the
    kernels depend on this one."""
    sampled = _sampled_box(pt, dst_win)
    if sampled is None:
        return None
    (min_x, max_x, min_y, max_y), failed = sampled
    extra = (probe or SourceProbe.of(pt)).inside(dst_win) if source_probe_always() else None
    if extra is not None:
        min_x, max_x = min(min_x, extra[0]), max(max_x, extra[1])
        min_y, max_y = min(min_y, extra[2]), max(max_y, extra[3])
    src_w, src_h = pt.src.width, pt.src.height
    if min_x > src_w or max_x < 0 or min_y > src_h or max_y < 0:
        return None
    min_x, max_x, min_y, max_y = _snap(min_x), _snap(max_x), _snap(min_y), _snap(max_y)
    radius = FILTER_RADIUS[resampling]
    xoff, xsize, extra_x = _axis_window(min_x, max_x, dst_win.width, src_w, radius, failed)
    yoff, ysize, extra_y = _axis_window(min_y, max_y, dst_win.height, src_h, radius, failed)
    if xsize <= 0 or ysize <= 0:
        return None
    return SourceWindow(Window(xoff, yoff, xsize, ysize), extra_x, extra_y)


def _axis_scale(dst: int, size: int, extra: float) -> float:
    raw = size - extra
    scale = dst / raw if raw > 0 else math.inf
    if dst <= size <= dst + extra:
        scale = 1.0
    if scale < 1.0:
        recip = 1.0 / scale
        n = int(recip + 0.5)
        if abs(recip - n) < 0.05:
            scale = 1.0 / n
    return scale


def _local_x_scale(pt: PixelTransform, win: Window) -> float | None:
    """PerformWarp's local re-estimate of the x scale from 10 x 10 points and their right (or
    left) and lower (or upper) neighbours: the mean of the local scales above a tenth of the
    largest one."""
    w, h = win.width, win.height
    npx, npy = min(10, w), min(10, h)
    xs = np.array([0.0 if npx == 1 else ix * w / (npx - 1) for ix in range(npx)])
    ys = np.array([0.0 if npy == 1 else iy * h / (npy - 1) for iy in range(npy)])
    gx, gy = np.meshgrid(xs, ys)
    nx = np.where(np.arange(npx) == npx - 1, xs - 1, xs + 1)[None, :] + 0 * gy
    ny = np.where(np.arange(npy) == npy - 1, ys - 1, ys + 1)[:, None] + 0 * gx
    bx = np.stack([gx, nx, gx], -1).ravel()
    by = np.stack([gy, gy, ny], -1).ravel()
    tx, ty = pt(bx + win.col_off, by + win.row_off)
    tx, ty = tx.reshape(-1, 3), ty.reshape(-1, 3)
    ok = np.isfinite(tx).all(axis=1) & np.isfinite(ty).all(axis=1)
    if not ok.any():
        return None
    step = np.maximum(np.abs(tx[ok, 1] - tx[ok, 0]), np.abs(tx[ok, 2] - tx[ok, 0]))
    local = np.sort(1.0 / step)
    return float(local[local > local[-1] / 10].mean())


def kernel_scale(
    pt: PixelTransform, dst_win: Window, sw: SourceWindow, *, with_extra: bool = True
) -> tuple[float, float]:
    """``GDALWarpKernel::PerformWarp``'s ``(x, y)`` scales: destination pixels per raw source
    pixel of the chunk (module docstring).

    ``with_extra=False`` is GDAL 3.10's one-chunk WarpedVRT RasterIO path, which hands the
    kernel the padded window without its extra sizes, so the scale is destination / window
    (measured: it is what reproduces rio-tiler's tiles bit for bit; the VRT block path and
    ``reproject`` pass the extras)."""
    extra_x, extra_y = (sw.extra_x, sw.extra_y) if with_extra else (0.0, 0.0)
    xs = _axis_scale(dst_win.width, sw.window.width, extra_x)
    ys = _axis_scale(dst_win.height, sw.window.height, extra_y)
    if ys / xs > 100:
        local = _local_x_scale(pt, dst_win)
        if local is not None:
            xs = local
    return xs, ys
