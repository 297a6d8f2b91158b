"""From a region request to a plan: which level, window, output size and bands a read takes.

Pure: decided from the header alone, before anything is fetched, so that front ends can check
their limits (pixels, blocks, bytes held) on the plan first. Every refusal is a typed
``WindowError`` (``LevelError``, ``BandError``, ``NotGeoreferencedError``) or an
``ArgumentError`` for requests that contradict themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BandError, LevelError, NotGeoreferencedError, WindowError
from ..outputs import RENDERED, render_bands
from ..read.plan import check_extent
from ..read.resampled import check_resampling
from ..types import Window
from .args import ArgumentError
from .geometry import Transform, bbox_window, out_shape, to_pixel, window_transform

if TYPE_CHECKING:
    from ..image import Image
    from .expression import Expression

__all__ = ["PointPlan", "RegionPlan", "RegionRequest", "plan_point", "plan_region"]


@dataclass(frozen=True, slots=True)
class RegionRequest:
    """A region of an image as any front end asks for it.

    ``window`` (pixels of ``level``) or ``bbox`` (map coordinates in the image's CRS), or
    neither for the whole image; ``level`` or an output size (``width``/``height``, the aspect
    kept when only one is given, or ``max_size`` for the longest side); ``bands`` 1-based (None:
    all, or what an 8-bit rendering shows); ``boundless`` lets a window reach outside the image
    (a bbox always may: its outside parts are filled and masked); ``expression`` (not with
    ``bands``) is band math (``cloudroi.region.expression``): only the bands it refers to are
    read, and each of its outputs is one band of the result; ``resampling`` is the kernel of a
    read to an output size (nearest, bilinear, cubic, average, mode: GDAL's RasterIO).
    """

    window: tuple[int, int, int, int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    level: int | None = None
    width: int | None = None
    height: int | None = None
    max_size: int | None = None
    bands: tuple[int, ...] | None = None
    boundless: bool = False
    expression: Expression | None = None
    resampling: str = "nearest"

    def __post_init__(self) -> None:
        if self.expression is not None and self.bands is not None:
            raise ArgumentError(
                "expression", "give bands or expression, not both", "conflicting_parameters"
            )
        if self.window is not None and self.bbox is not None:
            raise ArgumentError("window", "give window or bbox, not both", "conflicting_parameters")
        sized = self.width is not None or self.height is not None or self.max_size is not None
        if self.level is not None and sized:
            raise ArgumentError(
                "level", "give level or an output size, not both", "conflicting_parameters"
            )
        if self.max_size is not None and (self.width is not None or self.height is not None):
            raise ArgumentError(
                "max_size", "give max_size or width/height, not both", "conflicting_parameters"
            )


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """What reading a region takes: ``window`` of ``level`` (level 0 lets a resampled read pick
    the overview GDAL would), resampled to ``out_shape`` (h, w) when given with ``resampling``;
    ``bands`` as read (None: all; with an ``expression``, the bands it refers to)."""

    level: int
    window: Window
    out_shape: tuple[int, int] | None
    boundless: bool
    bands: tuple[int, ...] | None
    expression: Expression | None = None
    resampling: str = "nearest"

    @property
    def height(self) -> int:
        return self.out_shape[0] if self.out_shape is not None else self.window.height

    @property
    def width(self) -> int:
        return self.out_shape[1] if self.out_shape is not None else self.window.width

    def band_count(self, count: int) -> int:
        return len(self.bands) if self.bands is not None else count


def plan_region(img: Image, req: RegionRequest, *, rendered: bool = False) -> RegionPlan:
    """The plan of ``req`` on ``img``; ``rendered`` for 8-bit images (1 or 3 bands shown)."""
    level = req.level or 0
    if not 0 <= level < len(img.levels):
        raise LevelError(f"level must be 0..{len(img.levels) - 1}, got {level}")
    width, height = img.levels[level]
    if req.window is not None:
        win = Window(*req.window)
        boundless = not win.within(width, height)
        if boundless and not req.boundless:
            where = f" (level {level})" if level else ""
            raise WindowError(f"window {tuple(win)} is outside the {width}x{height} image{where}")
    elif req.bbox is not None:
        win = _bbox_window(img, req.bbox, level)
        boundless = not win.within(width, height)
    else:
        win, boundless = Window(0, 0, width, height), False
    check_extent(win)
    shape = out_shape(win, req.width, req.height)
    if req.max_size is not None:
        fitted = fit_max_size(win.height, win.width, req.max_size)
        if fitted != (win.height, win.width):
            shape = fitted
    kind = check_resampling(req.resampling, img.colormap is not None)
    if req.expression is not None:
        bands = expression_bands(img, req.expression, rendered)
        return RegionPlan(level, win, shape, boundless, bands, req.expression, kind)
    return RegionPlan(level, win, shape, boundless, _bands(img, req.bands, rendered), None, kind)


def expression_bands(img: Image, expression: Expression, rendered: bool) -> tuple[int, ...]:
    """The bands an expression reads, checked against the image (``BandError`` naming a band
    it does not have); an 8-bit rendering shows 1 or 3 outputs."""
    expression.check_bands(img.count)
    if rendered and expression.count not in (1, 3):
        raise BandError(
            f"an image rendering shows 1 or 3 bands, the expression has {expression.count} "
            "outputs; use format=npy or tif for other band counts"
        )
    return expression.bands


def fit_max_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    """(height, width) with the longest side ``max_size`` and the other rounded up, as
    rio-tiler sizes a preview (so /cog/preview and statistics read its pixels); the size itself
    when it is already smaller than ``max_size``."""
    if max(height, width) < max_size:
        return height, width
    ratio = height / width
    if ratio > 1:
        return max_size, max(1, math.ceil(max_size / ratio))
    return max(1, math.ceil(max_size * ratio)), max_size


def _bbox_window(img: Image, bbox: tuple[float, float, float, float], level: int) -> Window:
    if img.transform is None:
        raise NotGeoreferencedError("the image has no georeferencing; use pixel coordinates")
    try:
        return bbox_window(img.levels, img.transform, bbox, level)
    except ValueError as exc:
        raise WindowError(str(exc)) from exc


def _bands(img: Image, bands: tuple[int, ...] | None, rendered: bool) -> tuple[int, ...] | None:
    """The bands read: those asked for (they exist; repeats cannot multiply a request beyond
    the source's band count, or three for a one-band source shown as RGB), or for an 8-bit
    rendering the bands it shows."""
    if bands is not None:
        for b in bands:
            if not 1 <= b <= img.count:
                raise BandError(f"bands are numbered 1..{img.count} in this source, got {b}")
        most = max(img.count, 3)
        if len(bands) > most:
            raise BandError(
                f"at most {most} bands for this {img.count}-band source, got {len(bands)}"
            )
    if not rendered:
        return bands
    try:
        return tuple(render_bands(img.count, bands, img.alpha_band))
    except ValueError as exc:
        raise BandError(f"{exc}; use format=npy or tif for other band counts") from exc


def is_rendered(fmt: str) -> bool:
    return fmt in RENDERED


def output_transform(img: Image, plan: RegionPlan) -> Transform | None:
    """The geotransform of the plan's output grid, or None without georeferencing."""
    if img.transform is None:
        return None
    return window_transform(
        img.levels, img.transform, plan.level, plan.window, plan.width, plan.height
    )


# --------------------------------------------------------------------------------------------
# points
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PointPlan:
    """The level-0 pixel a point falls in."""

    col: int
    row: int


def plan_point(
    img: Image, xy: tuple[float, float] | None = None, colrow: tuple[int, int] | None = None
) -> PointPlan:
    """The pixel of a map coordinate ``xy`` (image CRS) or of ``colrow``, inside the image."""
    if xy is not None:
        if img.transform is None:
            raise NotGeoreferencedError("the image has no georeferencing; use pixel coordinates")
        try:
            c, r = to_pixel(img.transform)(*xy)
        except ValueError as exc:
            raise NotGeoreferencedError(str(exc)) from exc
        if not (math.isfinite(c) and math.isfinite(r)):
            raise WindowError(
                f"point {xy} does not map to a pixel through the image's geotransform"
            )
        col, row = math.floor(c), math.floor(r)
    elif colrow is not None:
        col, row = colrow
    else:
        raise ArgumentError("x", "give x and y, or col and row", "missing_parameter")
    if not (0 <= col < img.width and 0 <= row < img.height):
        raise WindowError(
            f"point (col {col}, row {row}) is outside the {img.width}x{img.height} image"
        )
    return PointPlan(col, row)
