"""Coordinates for regions: CRS bbox -> pixel window of a level, output sizes, output transforms.

Pure functions over an image's levels and geotransform. They raise ``ValueError`` with a message
meant for the person who asked (the region planner turns it into a typed error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import WindowError
from ..types import Window

__all__ = [
    "bbox_window",
    "checked_bounds",
    "grid_bounds",
    "inverse",
    "out_shape",
    "scaled_transform",
    "to_pixel",
    "window_transform",
]

Transform = tuple[float, float, float, float, float, float]
Levels = Sequence[tuple[int, int]]


def inverse(gt: Transform) -> Transform:
    """The inverse geotransform as GDAL's GDALInvGeoTransform computes it (with its exact
    north-up case), so a coordinate on a pixel edge lands where GDAL and rasterio put it."""
    x0, dx, rx, y0, ry, dy = gt
    det = dx * dy - rx * ry
    if det == 0 or not math.isfinite(det):
        raise ValueError("the image's geotransform cannot be inverted")
    if rx == 0.0 and ry == 0.0:
        return (-x0 / dx, 1.0 / dx, 0.0, -y0 / dy, 0.0, 1.0 / dy)
    inv = 1.0 / det
    return (
        (rx * y0 - x0 * dy) * inv,
        dy * inv,
        -rx * inv,
        (-dx * y0 + x0 * ry) * inv,
        -ry * inv,
        dx * inv,
    )


def to_pixel(gt: Transform) -> Callable[[float, float], tuple[float, float]]:
    """A function mapping CRS (x, y) to fractional level-0 (col, row) through ``gt``."""
    i0, i1, i2, i3, i4, i5 = inverse(gt)

    def convert(x: float, y: float) -> tuple[float, float]:
        return i0 + x * i1 + y * i2, i3 + x * i4 + y * i5

    return convert


def bbox_window(
    levels: Levels, gt: Transform, bbox: tuple[float, float, float, float], level: int
) -> Window:
    """The smallest window of ``level``'s grid covering ``bbox`` (minx, miny, maxx, maxy); it may
    reach outside the image, but must intersect it."""
    convert = to_pixel(gt)
    x0, y0, x1, y1 = bbox
    corners = [convert(x, y) for x in (x0, x1) for y in (y0, y1)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    if not all(math.isfinite(v) for v in (*cols, *rows)):
        raise ValueError("bbox does not map to pixels through the image's geotransform")
    (w0, h0), (wl, hl) = levels[0], levels[level]
    fx, fy = wl / w0, hl / h0
    eps = 1e-6  # a bbox edge on a pixel edge must not pull in the neighbouring pixel
    c0 = math.floor(min(cols) * fx + eps)
    r0 = math.floor(min(rows) * fy + eps)
    c1 = math.ceil(max(cols) * fx - eps)
    r1 = math.ceil(max(rows) * fy - eps)
    if c1 <= 0 or r1 <= 0 or c0 >= wl or r0 >= hl:
        raise ValueError("bbox does not intersect the image")
    return Window(c0, r0, max(1, c1 - c0), max(1, r1 - r0))


def out_shape(win: Window, width: int | None, height: int | None) -> tuple[int, int] | None:
    """(height, width) of the output for a requested width and/or height (aspect ratio kept when
    only one is given); None when neither is."""
    if width is None and height is None:
        return None
    if width is not None and height is not None:
        return height, width
    if width is not None:
        return max(1, round(win.height * width / win.width)), width
    assert height is not None
    return height, max(1, round(win.width * height / win.height))


def scaled_transform(
    gt: Transform,
    col_off: float,
    row_off: float,
    width: float,
    height: float,
    out_width: int,
    out_height: int,
) -> Transform:
    """The geotransform of an ``out_width`` x ``out_height`` grid covering the window
    (``col_off``, ``row_off``, ``width``, ``height``) of the grid ``gt`` describes."""
    x0, dx, rx, y0, ry, dy = gt
    sx, sy = width / out_width, height / out_height
    return (
        x0 + col_off * dx + row_off * rx,
        dx * sx,
        rx * sy,
        y0 + col_off * ry + row_off * dy,
        ry * sx,
        dy * sy,
    )


def window_transform(
    levels: Levels, gt: Transform, level: int, win: Window, out_w: int, out_h: int
) -> Transform:
    """The geotransform of an ``out_w`` x ``out_h`` output covering ``win`` of ``level``."""
    (w0, h0), (wl, hl) = levels[0], levels[level]
    fx, fy = w0 / wl, h0 / hl
    return scaled_transform(
        gt, win.col_off * fx, win.row_off * fy, win.width * fx, win.height * fy, out_w, out_h
    )


def grid_bounds(gt: Transform, width: int, height: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a ``width`` x ``height`` grid placed by ``gt``."""
    corners = [(0, 0), (width, 0), (0, height), (width, height)]
    xs = [gt[0] + col * gt[1] + row * gt[2] for col, row in corners]
    ys = [gt[3] + col * gt[4] + row * gt[5] for col, row in corners]
    return (min(xs), min(ys), max(xs), max(ys))


def checked_bounds(bounds: Any) -> tuple[float, float, float, float]:
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
