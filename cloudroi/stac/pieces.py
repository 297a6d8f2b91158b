"""The pieces of a stack's grid and the cells (item, asset) each piece reads: shared by the lazy
stack and composites (``cloudroi.stac.lazy``) and the eager composite (``read_composite``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CloudROIError
from .read import Stack

if TYPE_CHECKING:
    from ..warp import Grid

__all__ = ["Cell", "Footprint", "cells", "footprints", "spans", "touches"]

#: One cell a chunk reads: (time in the chunk, band in the chunk, href, asset nodata).
Cell = tuple[int, int, str, "float | None"]
Footprint = tuple[float, float, float, float] | None


def footprint(st: Stack, t: int) -> Footprint:
    """Item ``t``'s bbox in the grid's CRS (None when unknown)."""
    box = st.items[t].bbox
    if box is None:
        return None
    from ..region.georef import carry_bounds

    try:
        return carry_bounds(box, "EPSG:4326", st.grid.crs)
    except CloudROIError:
        return None


def footprints(st: Stack) -> list[Footprint]:
    """Every item's ``footprint``, in order."""
    return [footprint(st, t) for t in range(len(st.items))]


def touches(foot: Footprint, grid: Grid) -> bool:
    """Whether a footprint may reach ``grid`` (True when unknown)."""
    if foot is None:
        return True
    from ..region.geometry import grid_bounds

    minx, miny, maxx, maxy = foot
    gx0, gy0, gx1, gy1 = grid_bounds(grid.transform, grid.width, grid.height)
    return minx < gx1 and gx0 < maxx and miny < gy1 and gy0 < maxy


def spans(size: int, step: int) -> list[tuple[int, int]]:
    """(start, length) of the pieces of ``size`` cut every ``step``."""
    return [(i, min(step, size - i)) for i in range(0, size, step)]


def cells(
    st: Stack, feet: list[Any], times: tuple[int, int], bands: tuple[int, int], grid: Grid
) -> tuple[Cell, ...]:
    """The cells of one chunk (``times`` and ``bands`` as (start, count)) that need a read: the
    item has the asset and may reach ``grid``."""
    out = []
    for t in range(times[0], times[0] + times[1]):
        it = st.items[t]
        if not touches(feet[t], grid):
            continue
        for b in range(bands[0], bands[0] + bands[1]):
            asset = st.assets[b]
            if asset in it.hrefs:
                out.append((t - times[0], b - bands[0], it.hrefs[asset], it.nodata.get(asset)))
    return tuple(out)
