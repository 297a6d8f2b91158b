"""Coordinates for regions: CRS bbox -> pixel window of a level, output sizes, output transforms.

Pure functions over an image's levels and geotransform, shared by the service core and the CLI.
They raise ``ValueError`` with a message meant for the person who asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..outputs import GeoRef, scaled_transform
from ..types import Window

__all__ = ["bbox_window", "inside", "out_geo", "out_shape", "to_pixel"]

Transform = tuple[float, float, float, float, float, float]
Levels = Sequence[tuple[int, int]]


def to_pixel(gt: Transform | None) -> Callable[[float, float], tuple[float, float]]:
    """A function mapping CRS (x, y) to fractional level-0 (col, row) through ``gt``."""
    if gt is None:
        raise ValueError("the image has no georeferencing; use pixel coordinates")
    x0, dx, rx, y0, ry, dy = gt
    det = dx * dy - rx * ry
    if det == 0 or not math.isfinite(det):
        raise ValueError("the image's geotransform cannot be inverted")

    def convert(x: float, y: float) -> tuple[float, float]:
        u, v = x - x0, y - y0
        return (dy * u - rx * v) / det, (-ry * u + dx * v) / det

    return convert


def bbox_window(
    levels: Levels, gt: Transform | None, bbox: tuple[float, float, float, float], level: int
) -> Window:
    """The smallest window of ``level``'s grid covering ``bbox`` (minx, miny, maxx, maxy); it may
    reach outside the image, but must intersect it."""
    convert = to_pixel(gt)
    x0, y0, x1, y1 = bbox
    corners = [convert(x, y) for x in (x0, x1) for y in (y0, y1)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
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


def inside(win: Window, width: int, height: int) -> bool:
    return win.col_off >= 0 and win.row_off >= 0 and win.col_end <= width and win.row_end <= height


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


def out_geo(
    levels: Levels,
    gt: Transform | None,
    crs: int | None,
    nodata: float | int | None,
    level: int,
    win: Window,
    out_w: int,
    out_h: int,
) -> GeoRef:
    """Georeferencing of an ``out_w`` x ``out_h`` output covering ``win`` of ``level``."""
    transform = None
    if gt is not None:
        (w0, h0), (wl, hl) = levels[0], levels[level]
        fx, fy = w0 / wl, h0 / hl
        transform = scaled_transform(
            gt, win.col_off * fx, win.row_off * fy, win.width * fx, win.height * fy, out_w, out_h
        )
    return GeoRef(transform=transform, crs=crs, nodata=nodata)
