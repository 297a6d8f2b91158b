"""GDAL's suggested output grid for a warp (``GDALSuggestedWarpOutput2``).

What rasterio's ``calculate_default_transform`` returns and what rio-tiler takes as a dataset's
native resolution in a TMS CRS (its zoom range, the size of its WarpedVRTs). The rules:

* ``n = clamp(int(min(w, h) / 50 + 0.5), 20, 100)`` steps along each source edge (pixel edges),
  transformed source pixel -> target CRS; a sample landing on -180 is taken as +180 when all
  the others are on the eastern side (and vice versa) and both transform back alike;
* when a sample fails, or does not transform back to within ``size / n`` source pixels of where
  it came from, an ``(n + 1) x (n + 1)`` grid over the source is sampled instead;
* the bounding box of the samples, refined along rows by bisection (16 halvings) wherever two
  neighbours straddle a failure or a sign change of x (the antimeridian);
* a projected source going to a geographic target: a pole inside the source widens the box to
  -180..180 and to that pole, and the box is united with the CRS's own bounds transform;
* one square pixel size = the top-left to bottom-right sample distance over the source diagonal
  in pixels (the box's diagonal when that vector has a zero component); sizes ``int(v + 0.5)``;
* the pixel width (height) shrunk by 0.1%, 1%, 10% or 100% of a pixel over the row when the
  right (bottom) border of the grid does not transform back and forth at all; a geographic
  target's box is clamped at 180 E and 90 S.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .bounds import transform_bounds
from .grid import BoolArray, FloatArray, Grid, WarpError
from .transform import PixelTransform, crs_of, is_geographic, same_crs, transformer

__all__ = ["suggested_warp_output"]

_BISECTIONS = 16
_RATIOS = (0.0, 0.001, 0.01, 0.1, 1.0)
Box = list[float]  # [minx, miny, maxx, maxy]


def _steps(w: int, h: int) -> int:
    return min(100, max(20, int(min(w, h) / 50 + 0.5)))


def _ratios(n: int) -> FloatArray:
    step = 1.0 / n
    return np.array([1.0 if i == n else i * step for i in range(n + 1)])


def _edges(w: int, h: int, n: int) -> tuple[FloatArray, FloatArray]:
    """Samples along the top, bottom, left and right edges, in that order."""
    r = _ratios(n)
    zero, one = np.zeros_like(r), np.ones_like(r)
    return np.concatenate([r * w, r * w, zero, one * w]), np.concatenate(
        [zero, one * h, r * h, r * h]
    )


def _grid(w: int, h: int, n: int) -> tuple[FloatArray, FloatArray]:
    """Samples over the whole source, row by row from the top."""
    r = _ratios(n)
    return np.tile(r * w, n + 1), np.repeat(r * h, n + 1)


def _fix_sign(pt: PixelTransform, x: FloatArray, y: FloatArray, ok: BoolArray) -> FloatArray:
    """A sample on -180 (+180) when all the others lie east (west) of 0 is taken as the other
    side, when both transform back to the same source pixel."""
    sign = 0
    for v in x[ok]:
        fits = [s for s in (-1, 1) if (0 < s * v <= 180.0) or abs(v + s * 180.0) < 1e-8]
        if sign == 0:
            sign = fits[0] if fits else 2
        elif sign in (-1, 1) and sign not in fits:
            sign = 2
    if sign not in (-1, 1):
        return x
    x = x.copy()
    for i in np.flatnonzero(ok & (np.abs(x + sign * 180.0) < 1e-8)):
        bx, by = pt(np.array([-sign * 180.0, sign * 180.0]), np.array([y[i], y[i]]))
        if abs(bx[0] - bx[1]) < 1e-8 and abs(by[0] - by[1]) < 1e-8:
            x[i] = sign * 180.0
    return x


def _reverts(
    pt: PixelTransform, sx: FloatArray, sy: FloatArray, x: FloatArray, y: FloatArray, n: int
) -> bool:
    """Whether every edge sample transforms back to within ``size / n`` pixels of its origin."""
    bx, by = pt(x, y)
    src = pt.src
    with np.errstate(invalid="ignore"):
        near = (np.abs(bx - sx) <= src.width / n) & (np.abs(by - sy) <= src.height / n)
    return bool(near.all())


def _bisect(
    pt: PixelTransform,
    pts: list[tuple[float, float]],
    seg: tuple[float, ...],
    bad: tuple[bool, bool],
) -> None:
    """GDAL's search for a failure or a sign change of x between two neighbouring samples:
    every point that transforms is added to ``pts``."""
    xin_b, xin_a, y_in, xb, xa = seg
    bad_b, bad_a = bad
    for _ in range(_BISECTIONS):
        if not (bad_b or bad_a or xb * xa < 0.0):
            return
        mid = (xin_b + xin_a) / 2.0
        fx, fy = pt.forward(np.array([mid]), np.array([y_in]))
        x, y = float(fx[0]), float(fy[0])
        if math.isfinite(x) and math.isfinite(y):
            pts.append((x, y))
            if bad_b or xb * x < 0:
                bad_a, xin_a, xa = False, mid, x
            else:
                bad_b, xb, xin_b = False, x, mid
        elif bad_b:
            xin_b = mid
        elif bad_a:
            xin_a = mid
        else:
            return


def _box(pt: PixelTransform, x: FloatArray, y: FloatArray, n: int, grid: bool) -> Box | None:
    """Bounding box of the samples that transformed, refined by bisection along rows."""
    w, h = pt.src.width, pt.src.height
    ok = np.isfinite(x) & np.isfinite(y)
    pts = list(zip(x[ok].tolist(), y[ok].tolist(), strict=True))
    rows = n + 1 if grid else 2
    for i in range(1, rows * (n + 1)):
        xi, yi = i % (n + 1), (i // (n + 1)) * (1 if grid else n)
        if xi > 0 and (ok[i - 1] or ok[i]):
            seg = ((xi - 1) * w / n, xi * w / n, yi * h / n, float(x[i - 1]), float(x[i]))
            _bisect(pt, pts, seg, (not ok[i - 1], not ok[i]))
    if ok.size - int(ok.sum()) > ok.size - 10:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs), max(ys)]


def _poles(pt: PixelTransform, box: Box) -> None:
    """A projected source going to a degree-based geographic target: a pole inside the source
    extends the box to -180..180 and to that pole."""
    src, dst_crs = pt.src, pt.dst.crs
    back = transformer(dst_crs, src.crs)
    for sign in (-1, 1):
        bx, by = back.transform(0.0, 90.0 * sign, errcheck=False)
        c, r = src.to_pixel(np.array([bx]), np.array([by]))
        eps = 1e-5
        if -eps <= c[0] <= src.width + eps and -eps <= r[0] <= src.height + eps:
            _, lat = transformer(src.crs, dst_crs).transform(bx, by, errcheck=False)
            if abs(lat - 90.0 * sign) <= 1e-6:
                box[0], box[2] = -180.0, 180.0
                box[1 if sign < 0 else 3] = 90.0 * sign


def _crs_bounds(pt: PixelTransform, box: Box) -> bool:
    """GDAL's special case of a reprojection between plain geotransforms: poles (for a
    geographic target) and the union with the CRS's own bounds transform. Returns whether the
    target is a degree-based geographic CRS (its box is then clamped at 180 E and 90 S)."""
    src, dst_crs = pt.src, pt.dst.crs
    geographic = is_geographic(dst_crs) and not is_geographic(src.crs)
    if geographic:
        _poles(pt, box)
    gt = src.transform
    if gt[2] == 0.0 and gt[4] == 0.0:
        b = transform_bounds(src.crs, dst_crs, src.bounds, 2)
        if b is not None:
            box[:] = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
    return geographic


def _round_trip_fails(
    pt: PixelTransform, x: FloatArray, y: FloatArray, tol: tuple[float, float]
) -> bool:
    """Whether every target point fails to transform to the source and back to itself."""
    sx, sy = pt(x, y)
    fx, fy = pt.forward(sx, sy)
    with np.errstate(invalid="ignore"):
        good = (np.abs(fx - x) <= tol[0]) & (np.abs(fy - y) <= tol[1])
    return not bool(good.any())


def _border_ratios() -> FloatArray:
    """``for (r = 0; r <= 1.01; r += 0.05) { if (r > 0.99) r = 1; ... }``, as in C."""
    out, r = [], 0.0
    while r <= 1.01:
        if r > 0.99:
            r = 1.0
        out.append(r)
        r += 0.05
    return np.array(out)


def _adjust(
    pt: PixelTransform, box: Box, size: tuple[int, int], px: tuple[float, float]
) -> tuple[float, float]:
    """Shrink the pixel width (height) when the right (bottom) border does not round-trip."""
    (nx, ny), (psx, psy) = size, px
    minx, maxy = box[0], box[3]
    r = _border_ratios()
    for ratio in _RATIOS:
        tx = psx - psx * ratio / nx
        right = (np.full_like(r, minx + nx * tx), maxy - psy * r * ny)
        if not _round_trip_fails(pt, *right, (tx, psy)):
            psx = tx
            break
    for ratio in _RATIOS:
        ty = psy - psy * ratio / ny
        bottom = (minx + psx * r * nx, np.full_like(r, maxy - ny * ty))
        if not _round_trip_fails(pt, *bottom, (psx, ty)):
            psy = ty
            break
    return psx, psy


@lru_cache(maxsize=64)
def suggested_warp_output(src: Grid, dst_crs: str) -> Grid:
    """The grid ``GDALSuggestedWarpOutput2`` proposes for ``src`` in ``dst_crs`` (module
    docstring); raises :class:`~.grid.WarpError` when the source does not transform. Cached
    (64 grids): a dataset's tiles all ask for the same one."""
    if same_crs(src.crs, dst_crs):
        return src
    crs_of(dst_crs)
    pt = PixelTransform(Grid(dst_crs, (0.0, 1.0, 0.0, 0.0, 0.0, 1.0), 1, 1), src)
    w, h = src.width, src.height
    n = _steps(w, h)
    sx, sy = _edges(w, h, n)
    x, y = pt.forward(sx, sy)
    ok = np.isfinite(x) & np.isfinite(y)
    x = _fix_sign(pt, x, y, ok)
    grid = not ok.all() or not _reverts(pt, sx, sy, x, y, n)
    if grid:
        x, y = pt.forward(*_grid(w, h, n))
        ok = np.isfinite(x) & np.isfinite(y)
    box = _box(pt, x, y, n, grid)
    if box is None:
        raise WarpError(f"the grid does not transform to {dst_crs!r}")
    geographic = _crs_bounds(pt, box)
    d = (float(x[-1] - x[0]), float(y[-1] - y[0])) if ok[0] and ok[-1] else (0.0, 0.0)
    if d[0] == 0.0 or d[1] == 0.0:
        d = (box[2] - box[0], box[3] - box[1])
    px = math.sqrt(d[0] * d[0] + d[1] * d[1]) / math.sqrt(float(w) * w + float(h) * h)
    # at least one pixel: a box narrower than half the pixel size would divide by zero below
    nx = max(1, int((box[2] - box[0]) / px + 0.5))
    ny = max(1, int((box[3] - box[1]) / px + 0.5))
    psx, psy = _adjust(pt, box, (nx, ny), (px, px))
    maxx = box[0] + nx * psx
    if geographic and ((box[2] <= 180 and maxx > 180) or box[2] == 180):
        psx = (180.0 - box[0]) / nx
    miny = box[3] - ny * psy
    if geographic and box[1] >= -90 and miny < -90:
        psy = (box[3] + 90.0) / ny
    return Grid(dst_crs, (box[0], psx, 0.0, box[3], 0.0, -psy), max(nx, 1), max(ny, 1))
