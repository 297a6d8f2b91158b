"""STAC stacks on one grid: items (pystac objects, item dicts, ItemCollection JSON) read as a
(time, band, y, x) array on a target CRS, resolution and bounds, reprojecting the items that
are not on it. ``plan_stack`` + ``read_stack`` read eagerly (async); ``cloudroi.stac.lazy``
builds the lazy, chunked array; ``read_composite`` reduces over time now (mean, median, ...)."""

from __future__ import annotations

from .items import StackItem, parse_items
from .read import Stack, StackData, plan_stack, read_cell, read_stack, sub_grid
from .reduce import CompositeData, read_composite

__all__ = [
    "CompositeData",
    "Stack",
    "StackData",
    "StackItem",
    "parse_items",
    "plan_stack",
    "read_cell",
    "read_composite",
    "read_stack",
    "sub_grid",
]
