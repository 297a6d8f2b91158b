"""Reading a STAC stack on one grid: each (item, asset) cell is the asset's file read onto the
grid (or a chunk of it), through the region layer.

A file already on the grid's CRS and pixel lattice (same resolution, whole-pixel offset, north
up) is read as a pixel window (``Image.read``, boundless), which is what a nearest-neighbour
warp onto that grid gives, without the warp; any other is warped with ``Image.read_region``
(``cloudroi.warp``). Pixels outside the file, or invalid in it (its nodata, internal mask or
alpha, or the asset's ``raster:bands`` nodata), take ``fill_value``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..context import Context
from ..errors import BatchRequestError
from ..tasks import gather_all
from ..types import Window
from .items import StackItem, parse_items, pick_assets, snap_bounds

if TYPE_CHECKING:
    from ..image import Image
    from ..warp import Grid

__all__ = ["Stack", "StackData", "plan_stack", "read_cell", "read_stack", "sub_grid"]

#: Cells (item, asset) read at once by ``read_stack``.
CELLS_AT_ONCE = 16


@dataclass(frozen=True, slots=True)
class Stack:
    """What a stack reads: items (by time), the asset of each band, the grid, and the output
    dtype and fill."""

    items: tuple[StackItem, ...]
    assets: tuple[str, ...]
    grid: Grid
    resampling: str
    dtype: np.dtype[Any] | None
    fill_value: float | int | None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.items), len(self.assets), self.grid.height, self.grid.width)


@dataclass(slots=True)
class StackData:
    """An eagerly read stack: ``data`` is (time, band, y, x)."""

    stack: Stack
    data: npt.NDArray[Any]


def _grid_crs(items: Sequence[StackItem], crs: Any) -> str:
    from ..region.georef import crs_text

    if crs is not None:
        return crs_text(crs)
    found = {it.crs for it in items}
    if len(found) != 1 or None in found:
        raise BatchRequestError(
            "the items do not share one CRS (proj:code / proj:epsg): give crs", None
        )
    return str(found.pop())


def _grid_resolution(items: Sequence[StackItem], crs: str, resolution: Any) -> float:
    if resolution is not None:
        try:
            res = float(resolution)
        except (TypeError, ValueError):
            res = math.nan
        if not (math.isfinite(res) and res > 0):
            raise BatchRequestError(f"resolution must be positive, got {resolution!r}")
        return res
    for it in items:
        if it.crs == crs and it.resolution is not None:
            return it.resolution
    raise BatchRequestError("no item gives its pixel size in the grid's CRS: give resolution")


def _grid_bounds(
    items: Sequence[StackItem], crs: str, bounds: Any
) -> tuple[float, float, float, float]:
    from ..region.georef import carry_bounds, checked_bounds

    if bounds is not None:
        return checked_bounds(bounds)
    boxes = [carry_bounds(it.bbox, "EPSG:4326", crs) for it in items if it.bbox is not None]
    if not boxes:
        raise BatchRequestError("the items have no bbox: give bounds")
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def plan_stack(
    items: Any,
    assets: Sequence[str] | str | None = None,
    *,
    crs: Any = None,
    resolution: float | None = None,
    bounds: Sequence[float] | None = None,
    resampling: str = "nearest",
    dtype: Any = "float64",
    fill_value: float | int | None = math.nan,
) -> Stack:
    """The stack of ``items`` on one grid: ``crs`` (default: the items' common one),
    ``resolution`` in its units (default: the first item's in that CRS), ``bounds`` in it
    (default: the union of the items' bboxes), grown outward to whole pixels."""
    from ..warp import Grid
    from ..warp.transform import horizontal

    parsed = parse_items(items)
    bands = pick_assets(parsed, assets)
    # a CRS pyproj knows, with a map plane (as region reads check theirs): refused here, not
    # by the first chunk computed
    target = horizontal(_grid_crs(parsed, crs))
    res = _grid_resolution(parsed, target, resolution)
    minx, miny, maxx, maxy = snap_bounds(_grid_bounds(parsed, target, bounds), res)
    grid = Grid.from_resolution(target, (minx, miny, maxx, maxy), res)
    out = None if dtype is None else np.dtype(dtype)
    return Stack(tuple(parsed), tuple(bands), grid, resampling, out, fill_value)


def sub_grid(grid: Grid, window: Window) -> Grid:
    """The part of ``grid`` under ``window`` (col_off, row_off, width, height)."""
    from ..warp import Grid

    x0, dx, rx, y0, ry, dy = grid.transform
    c, r = window.col_off, window.row_off
    gt = (x0 + c * dx + r * rx, dx, rx, y0 + c * ry + r * dy, ry, dy)
    return Grid(grid.crs, gt, window.width, window.height)


def _aligned(img: Image, grid: Grid) -> Window | None:
    """The window of ``img`` that is ``grid`` pixel for pixel, when there is one."""
    from ..region.georef import same_crs

    gt, g = img.transform, grid.transform
    if gt is None or gt[2] or gt[4] or g[2] or g[4]:
        return None
    if not (math.isclose(gt[1], g[1], rel_tol=1e-9) and math.isclose(gt[5], g[5], rel_tol=1e-9)):
        return None
    col, row = (g[0] - gt[0]) / gt[1], (g[3] - gt[3]) / gt[5]
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    if not same_crs(img, grid.crs):
        return None
    return Window(round(col), round(row), grid.width, grid.height)


async def read_cell(
    img: Image, grid: Grid, *, resampling: str = "nearest", nodata: float | None = None
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Band 1 of ``img`` on ``grid`` in the file's dtype, and where it is valid."""
    win = _aligned(img, grid) if resampling == "nearest" else None
    if win is not None:
        data = (await img.read(win, 0, 1, boundless=True))[0]
        valid = await _window_valid(img, win, data)
    else:
        bounds = _grid_bounds_of(grid)
        region = await img.read_region(
            bounds, grid.crs, shape=(grid.height, grid.width), resampling=resampling, bands=1
        )
        data = region.data[0]
        valid = np.ones(data.shape, bool) if region.mask is None else region.mask > 0
    if nodata is not None and nodata != img.nodata:
        valid &= ~np.isnan(data) if math.isnan(nodata) else data != nodata
    return data, valid


async def _window_valid(img: Image, win: Window, data: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Where band 1 of a window read is valid: ``read_mask``'s answer, derived from the data
    in hand for a one-band file whose only mask is its nodata (no second read)."""
    from ..region.read import needs_mask

    boundless = not win.within(img.width, img.height)
    if not needs_mask(img, boundless):
        return np.ones(data.shape, bool)
    if img.has_mask or img.alpha_band is not None or img.count != 1:
        return await img.read_mask(win, boundless=True) > 0
    nodata = img.nodata
    if nodata is None:
        valid = np.ones(data.shape, bool)
    elif isinstance(nodata, float) and math.isnan(nodata):
        valid = ~np.isnan(data)
    else:
        valid = data != nodata
    if boundless:  # pixels outside the image
        r0, c0 = max(0, -win.row_off), max(0, -win.col_off)
        r1 = max(r0, min(win.height, img.height - win.row_off))
        c1 = max(c0, min(win.width, img.width - win.col_off))
        inside = np.zeros(data.shape, bool)
        inside[r0:r1, c0:c1] = True
        valid &= inside
    return valid


def _grid_bounds_of(grid: Grid) -> tuple[float, float, float, float]:
    from ..region.geometry import grid_bounds

    return grid_bounds(grid.transform, grid.width, grid.height)


def fill_for(stack: Stack, dtype: np.dtype[Any]) -> float | int:
    """What invalid pixels become in ``dtype``: the stack's fill value (0 for NaN or None in
    an integer dtype)."""
    value = stack.fill_value
    if value is None or (dtype.kind in "iub" and math.isnan(value)):
        return 0
    return value


def fill(
    stack: Stack, data: npt.NDArray[Any], valid: npt.NDArray[np.bool_], native: np.dtype[Any]
) -> npt.NDArray[Any]:
    """``data`` in the stack's dtype with invalid pixels set to its fill value (in place when
    the dtype is the file's: the array is the read's own)."""
    out = data.astype(stack.dtype or native, copy=False)
    if not valid.all():
        out[~valid] = fill_for(stack, out.dtype)
    return out


def place(
    stack: Stack, out: npt.NDArray[Any], data: npt.NDArray[Any], valid: npt.NDArray[np.bool_]
) -> None:
    """``data`` written into ``out`` (the stack's dtype), invalid pixels as the fill value."""
    np.copyto(out, data, casting="unsafe")
    if not valid.all():
        np.copyto(out, fill_for(stack, out.dtype), where=~valid, casting="unsafe")


def blank(stack: Stack, shape: tuple[int, int], native: np.dtype[Any] | None) -> Any:
    """An all-fill cell (an item without the asset)."""
    dtype = stack.dtype or native or np.dtype("float64")
    return np.full(shape, fill_for(stack, dtype), dtype=dtype)


async def read_stack(stack: Stack, *, context: Context | None = None) -> StackData:
    """Every cell of ``stack`` read now, as one (time, band, y, x) array."""
    from ..opening import open_image

    ctx = context if context is not None else Context()
    gate = asyncio.Semaphore(CELLS_AT_ONCE)
    cells: dict[tuple[int, int], tuple[npt.NDArray[Any], npt.NDArray[np.bool_], Any]] = {}

    async def one(t: int, b: int, href: str, nodata: float | None) -> None:
        async with gate, await open_image(href, context=ctx) as img:
            data, valid = await read_cell(
                img, stack.grid, resampling=stack.resampling, nodata=nodata
            )
            cells[t, b] = (data, valid, img.dtype)

    try:
        jobs = []
        for t, it in enumerate(stack.items):
            for b, asset in enumerate(stack.assets):
                if asset in it.hrefs:
                    jobs.append(one(t, b, it.hrefs[asset], it.nodata.get(asset)))
        await gather_all(jobs)
    finally:
        if context is None:
            await ctx.close()
    native = next((c[2] for c in cells.values()), None)
    shape = (stack.grid.height, stack.grid.width)
    planes = [
        [
            fill(stack, *cells[t, b]) if (t, b) in cells else blank(stack, shape, native)
            for b in range(len(stack.assets))
        ]
        for t in range(len(stack.items))
    ]
    return StackData(stack, np.array(planes))
