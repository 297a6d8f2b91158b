"""STAC stacks on one grid: items (pystac objects, item dicts, ItemCollection JSON) read as a
(time, band, y, x) array on a target CRS, resolution and bounds, reprojecting the items that
are not on it. ``plan_stack`` + ``read_stack`` read eagerly (async); ``cloudroi.stac.dask``
builds the lazy, chunked array."""

from __future__ import annotations

from .items import StackItem, parse_items
from .read import Stack, StackData, plan_stack, read_cell, read_stack, sub_grid

__all__ = [
    "Stack",
    "StackData",
    "StackItem",
    "parse_items",
    "plan_stack",
    "read_cell",
    "read_stack",
    "sub_grid",
]
