"""A composite read now, without Dask: ``await read_composite(plan, "median")`` gives what the
lazy ``cloudroi.stac.lazy.composite`` computes, on the caller's event loop.

The grid is taken piece by piece (``chunksize``). Each piece reads its items ``CELLS_AT_ONCE`` at
a time, concurrently, and a ``Reduction`` takes them in the context's thread pool. Memory is the
output, one group of planes and the accumulator; the median keeps every item's plane of a piece.
Each file is opened once for the whole composite.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..context import Context
from ..errors import BatchRequestError, LimitExceededError
from ..tasks import gather_all
from ..types import Window
from .composite import Reduction, check_how, result_dtype
from .pieces import Cell, cells, footprints, spans
from .read import CELLS_AT_ONCE, Stack, read_cell, sub_grid

if TYPE_CHECKING:
    from ..image import Image
    from ..warp import Grid

__all__ = ["CompositeData", "read_composite"]

#: Largest piece side.
MAX_PIECE = 8192
#: Largest composite read now (bands x rows x cols of float64 or int64).
MAX_OUTPUT_BYTES = 1 << 32
#: Bytes per pixel of one item's plane a median holds: its pixels (at most 8 bytes), validity
#: and its float64 copy in the cube.
MEDIAN_BYTES = 17
#: Largest piece of a median (every item's plane held at once).
MAX_MEDIAN_BYTES = 1 << 30


@dataclass(slots=True)
class CompositeData:
    """A composite read now: ``data`` is (band, y, x), ``how`` over time of ``stack``."""

    stack: Stack
    how: str
    data: npt.NDArray[Any]


def _piece(chunksize: Any) -> tuple[int, int]:
    sides = chunksize if isinstance(chunksize, tuple | list) else (chunksize, chunksize)
    if len(sides) != 2 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and 1 <= v <= MAX_PIECE
        for v in sides
    ):
        raise BatchRequestError(
            f"chunksize must be an int or (rows, cols), each 1..{MAX_PIECE}; got {chunksize!r}"
        )
    return int(sides[0]), int(sides[1])


def _check(stack: Any, how: str, piece: tuple[int, int]) -> None:
    """Refuse, before any read: not a plan, an output over ``MAX_OUTPUT_BYTES``, or a median
    piece whose items' planes would hold over ``MAX_MEDIAN_BYTES``."""
    if not isinstance(stack, Stack):
        raise BatchRequestError(
            f"read_composite takes a plan (cloudroi.stac.plan_stack), got {type(stack).__name__}"
        )
    grid = stack.grid
    out = len(stack.assets) * grid.height * grid.width * 8
    if out > MAX_OUTPUT_BYTES:
        raise LimitExceededError("bytes of the composite", out, MAX_OUTPUT_BYTES)
    if how == "median":
        pixels = min(piece[0], grid.height) * min(piece[1], grid.width)
        held = len(stack.items) * pixels * MEDIAN_BYTES
        if held > MAX_MEDIAN_BYTES:
            raise LimitExceededError("bytes of a median's piece", held, MAX_MEDIAN_BYTES)


class _Opened:
    """Each href opened once on ``ctx`` (concurrent asks share the open), closed together."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks: dict[str, asyncio.Task[Image]] = {}

    async def get(self, href: str) -> Image:
        from ..opening import open_image

        if href not in self.tasks:
            self.tasks[href] = asyncio.ensure_future(open_image(href, context=self.ctx))
        return await self.tasks[href]

    async def close(self) -> None:
        pending = [task for task in self.tasks.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in self.tasks.values():
            if not task.cancelled() and task.exception() is None:
                await task.result().close()


async def _reduce_piece(
    opened: _Opened, stack: Stack, how: str, todo: tuple[Cell, ...], grid: Grid
) -> npt.NDArray[Any]:
    loop = asyncio.get_running_loop()
    reduction = Reduction(how, (grid.height, grid.width))

    async def one(href: str, nodata: float | None) -> tuple[Any, Any]:
        img = await opened.get(href)
        return await read_cell(img, grid, resampling=stack.resampling, nodata=nodata)

    for i in range(0, len(todo), CELLS_AT_ONCE):
        group = todo[i : i + CELLS_AT_ONCE]
        planes = await gather_all([one(href, nd) for _, _, href, nd in group])
        await loop.run_in_executor(opened.ctx.executor, reduction.add, planes)
    return await loop.run_in_executor(opened.ctx.executor, reduction.result)


async def read_composite(
    stack: Stack,
    how: str = "mean",
    *,
    chunksize: int | tuple[int, int] = 1024,
    context: Context | None = None,
) -> CompositeData:
    """``how`` ("mean", "median", "min", "max", "sum", "count") over time of ``stack``
    (``plan_stack``'s), read now: the lazy composite's result, as (band, y, x)."""
    how = check_how(how)
    rows, cols = _piece(chunksize)
    _check(stack, how, (rows, cols))
    ctx = context if context is not None else Context()
    opened = _Opened(ctx)
    grid = stack.grid
    try:
        out = np.empty((len(stack.assets), grid.height, grid.width), result_dtype(how))
        # the items' bboxes carried to the grid's CRS: pyproj work, off the caller's loop
        feet = await asyncio.get_running_loop().run_in_executor(ctx.executor, footprints, stack)
        for b in range(len(stack.assets)):
            for r, h in spans(grid.height, rows):
                for c, w in spans(grid.width, cols):
                    piece = sub_grid(grid, Window(c, r, w, h))
                    todo = cells(stack, feet, (0, len(stack.items)), (b, 1), piece)
                    out[b, r : r + h, c : c + w] = await _reduce_piece(
                        opened, stack, how, todo, piece
                    )
    finally:
        await opened.close()
        if context is None:
            await ctx.close()
    return CompositeData(stack, how, out)
