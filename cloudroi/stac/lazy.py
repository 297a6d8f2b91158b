"""The lazy STAC stack: an xarray DataArray (time, band, y, x) over Dask, chunked as stackstac
chunks it: ``chunksize`` 1024 (or ``(rows, cols)``) is one chunk per (item, asset, 1024 x 1024
piece of the grid); a 4-tuple ``(times, bands, rows, cols)`` (-1: the whole axis) puts several
items and assets in one chunk, which is what a reduction over time (``.mean("time")``,
``.median("time")``) wants: the chunk reduces where it is read, instead of moving every item's
piece between workers.

Each chunk is a task that reads its cells (item, asset on its piece of the grid) concurrently on
the worker process's cloudroi runtime (``cloudroi.xarray.runtime``): the files are opened once
per process however many chunks read them; pixels as ``cloudroi.stac.read_cell`` gives them (a
window on the grid's lattice, else a warp). The chunk is assembled in the task's own thread, not
on the runtime's event loop. A cell outside its item's footprint (the item's ``bbox``), or of an
item without the asset, is filled without a read.

    arr = cloudroi.stac.lazy.stack(items, ["B04", "B08"], crs=32633, resolution=10,
                                   bounds=(minx, miny, maxx, maxy), chunksize=(-1, 1, 1024, 1024))
    arr.mean("time").compute()

Needs the ``xarray`` extra (xarray, dask, pyproj).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import BatchRequestError, LimitExceededError, MissingExtraError
from ..types import Window
from .composite import Reduction, check_how, result_dtype
from .pieces import Cell, footprints, spans
from .pieces import cells as piece_cells
from .read import CELLS_AT_ONCE, Stack, fill_for, place, plan_stack, read_cell, sub_grid

if TYPE_CHECKING:
    from ..warp import Grid

__all__ = ["composite", "stack", "to_dask"]

CHUNKSIZE = 1024
#: Largest chunk side (a 8192 x 8192 float64 chunk is 512 MiB).
MAX_CHUNKSIZE = 8192
#: Largest chunk, in bytes of the stack's dtype (times x bands x rows x cols).
MAX_CHUNK_BYTES = 1 << 30
#: Most chunks (time chunks x band chunks x chunk rows x chunk columns) a lazy stack may have.
MAX_CHUNKS = 1 << 14


def _modules() -> tuple[Any, Any]:
    try:
        import dask
        import dask.array
        import xarray
    except ImportError:
        raise MissingExtraError("cloudroi.stac.lazy", "xarray") from None
    return dask, xarray


def read_chunk(
    light: Stack,
    cells: tuple[Cell, ...],
    grid: Grid,
    open_options: dict[str, Any],
    depth: tuple[int, int],
) -> npt.NDArray[Any]:
    """A task: the chunk (times, bands, rows, cols) of ``depth`` = (times, bands) on ``grid``,
    its ``cells`` read concurrently, the others filled."""
    read = _read_cells(light, cells, grid, open_options)
    # assembled here, in the task's thread: the runtime's one event loop serves every task
    # of the process and must not convert or copy pixels
    out = blank(light, depth, (grid.height, grid.width), np.dtype(light.dtype))
    for (t, b, _, _), (data, valid) in zip(cells, read, strict=True):
        place(light, out[t, b], data, valid)
    return out


def _read_cells(
    light: Stack, cells: tuple[Cell, ...], grid: Grid, open_options: dict[str, Any]
) -> list[tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]]:
    """Each cell's (data, valid) on ``grid``, read concurrently on this process's runtime."""
    from ..spec import ImageSpec
    from ..xarray import runtime

    async def one(href: str, nodata: float | None) -> tuple[Any, Any]:
        img = await runtime.open_spec(ImageSpec.create(href, **open_options))
        return await read_cell(img, grid, resampling=light.resampling, nodata=nodata)

    async def go() -> list[tuple[Any, Any]]:
        return list(await asyncio.gather(*(one(href, nd) for _, _, href, nd in cells)))

    return runtime.run(go())


def composite_chunk(
    light: Stack, how: str, cells: tuple[Cell, ...], grid: Grid, open_options: dict[str, Any]
) -> npt.NDArray[Any]:
    """A task: ``how`` over time of one band on ``grid`` (1, rows, cols), from its cells read
    ``CELLS_AT_ONCE`` at a time, concurrently, and reduced in the task's thread as each group
    arrives."""
    reduction = Reduction(how, (grid.height, grid.width))
    for i in range(0, len(cells), CELLS_AT_ONCE):
        reduction.add(_read_cells(light, cells[i : i + CELLS_AT_ONCE], grid, open_options))
    return reduction.result()[None]


def blank(
    light: Stack, depth: tuple[int, int], shape: tuple[int, int], dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    """An all-fill chunk (no cell of it is read)."""
    return np.full((*depth, *shape), fill_for(light, dtype), dtype=dtype)


def _native(st: Stack, open_options: dict[str, Any]) -> np.dtype[Any]:
    """The first asset file's dtype (one open, on this process's runtime)."""
    from ..spec import ImageSpec
    from ..xarray import runtime

    href = next(it.hrefs[a] for it in st.items for a in st.assets if a in it.hrefs)

    async def go() -> np.dtype[Any]:
        return (await runtime.open_spec(ImageSpec.create(href, **open_options))).dtype

    return runtime.run(go())


def _side(value: Any, size: int, axis: str, limit: int) -> int:
    """One axis's chunk length: a positive integer up to ``limit``, or -1 for ``size``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise BatchRequestError(f"chunksize must hold integers, got {value!r} for {axis}")
    if value == -1:
        return max(1, size)
    if not 1 <= value <= limit:
        raise BatchRequestError(f"chunksize for {axis} must be 1..{limit} or -1, got {value}")
    return min(int(value), max(1, size))


def chunk_shape(st: Stack, chunksize: Any, *, held: int | None = None) -> tuple[int, int, int, int]:
    """``chunksize`` (an int, (rows, cols) or (times, bands, rows, cols), -1 for a whole axis)
    as the chunk's (times, bands, rows, cols); refused before anything is built when out of
    range, or when the stack would have more than ``MAX_CHUNKS`` chunks or a chunk more than
    ``MAX_CHUNK_BYTES`` (``held``: the (item, asset) planes a task holds at once, when not all
    of the chunk's)."""
    sizes = st.shape
    if isinstance(chunksize, int | np.integer) and not isinstance(chunksize, bool):
        chunksize = (1, 1, chunksize, chunksize)
    elif isinstance(chunksize, tuple | list) and len(chunksize) == 2:
        chunksize = (1, 1, *chunksize)
    if not isinstance(chunksize, tuple | list) or len(chunksize) != 4:
        raise BatchRequestError(
            f"chunksize must be an int, (rows, cols) or (times, bands, rows, cols), "
            f"got {chunksize!r}"
        )
    limits = (1 << 31, 1 << 31, MAX_CHUNKSIZE, MAX_CHUNKSIZE)
    names = ("time", "band", "y", "x")
    shape = tuple(
        _side(v, n, a, lim) for v, n, a, lim in zip(chunksize, sizes, names, limits, strict=True)
    )
    count = math.prod(math.ceil(n / c) for n, c in zip(sizes, shape, strict=True))
    planes = shape[0] * shape[1] if held is None else held
    if count > MAX_CHUNKS:
        raise LimitExceededError(
            f"chunks of a {st.grid.width} x {st.grid.height} grid", count, MAX_CHUNKS
        )
    nbytes = planes * shape[2] * shape[3] * np.dtype(st.dtype or "float64").itemsize
    if nbytes > MAX_CHUNK_BYTES:
        raise LimitExceededError("bytes of one chunk", nbytes, MAX_CHUNK_BYTES)
    return shape  # type: ignore[return-value]


def _tiled(st: Stack, shape: tuple[int, ...], block: Any) -> list[list[Any]]:
    """``block(piece)`` for each piece of ``st``'s grid cut into ``shape[2:]`` (rows, cols), as
    rows of blocks for ``dask.array.block``."""
    rows, cols = spans(st.grid.height, shape[2]), spans(st.grid.width, shape[3])
    return [[block(sub_grid(st.grid, Window(c, r, w, h))) for c, w in cols] for r, h in rows]


def to_dask(st: Stack, *, chunksize: Any = CHUNKSIZE, **open_options: Any) -> Any:
    """``st`` as a lazy Dask array (time, band, y, x)."""
    dask, _ = _modules()
    da = dask.array
    shape = chunk_shape(st, chunksize)
    dtype = np.dtype(st.dtype or _native(st, open_options))
    light = replace(st, items=(), dtype=dtype)
    make = dask.delayed(read_chunk, pure=True)
    empty = dask.delayed(blank, pure=True)
    feet = footprints(st)

    def block(times: tuple[int, int], bands: tuple[int, int], grid: Grid) -> Any:
        cells = piece_cells(st, feet, times, bands, grid)
        depth = (times[1], bands[1])
        task = (
            make(light, cells, grid, open_options, depth)
            if cells
            else empty(light, depth, (grid.height, grid.width), dtype)
        )
        return da.from_delayed(task, (*depth, grid.height, grid.width), dtype)

    out = [
        [
            _tiled(st, shape, partial(block, times, bands))
            for bands in spans(len(st.assets), shape[1])
        ]
        for times in spans(len(st.items), shape[0])
    ]
    return da.block(out)


def stack(
    items: Any,
    assets: Any = None,
    *,
    crs: Any = None,
    resolution: float | None = None,
    bounds: Any = None,
    chunksize: Any = CHUNKSIZE,
    resampling: str = "nearest",
    dtype: Any = "float64",
    fill_value: float | int | None = math.nan,
    **open_options: Any,
) -> Any:
    """The items as a lazy ``xarray.DataArray`` (time, band, y, x) on one grid (see
    ``cloudroi.stac.plan_stack`` for the defaults), with coordinates time, band (asset keys),
    id (per time), y and x (pixel centres) and attributes crs, transform, resolution.

    ``chunksize``: an int or (rows, cols) for one chunk per (item, asset, piece of the grid),
    stackstac's default; or (times, bands, rows, cols), -1 for a whole axis, e.g.
    ``(-1, 1, 1024, 1024)`` to read every item of a piece in one task (faster for a reduction
    over time, at the cost of reading items a later selection drops)."""
    _, xarray = _modules()
    st = plan_stack(
        items,
        assets,
        crs=crs,
        resolution=resolution,
        bounds=bounds,
        resampling=resampling,
        dtype=dtype,
        fill_value=fill_value,
    )
    arr = to_dask(st, chunksize=chunksize, **open_options)
    coords, attrs = _georef(st)
    coords = {
        "time": np.array([it.time for it in st.items]),
        "id": ("time", [it.id for it in st.items]),
        **coords,
    }
    return xarray.DataArray(
        arr, dims=("time", "band", "y", "x"), coords=coords, attrs=attrs, name="stack"
    )


def _georef(st: Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    """The band, y and x coordinates (pixel centres) and the crs, transform and resolution
    attributes of ``st``'s grid."""
    x0, dx, _, y0, _, dy = st.grid.transform
    coords = {
        "band": list(st.assets),
        "y": y0 + dy * (np.arange(st.grid.height) + 0.5),
        "x": x0 + dx * (np.arange(st.grid.width) + 0.5),
    }
    attrs = {"crs": st.grid.crs, "transform": tuple(st.grid.transform), "resolution": abs(dx)}
    return coords, attrs


def _composite_dask(st: Stack, how: str, chunksize: Any, open_options: dict[str, Any]) -> Any:
    """``how`` over time of ``st`` as a lazy Dask array (band, y, x): one task per (band,
    piece) reads every item's cell of the piece and reduces them."""
    dask, _ = _modules()
    da = dask.array
    if not isinstance(chunksize, tuple | list):
        chunksize = (chunksize, chunksize)
    if len(chunksize) != 2:
        raise BatchRequestError(f"chunksize must be an int or (rows, cols), got {chunksize!r}")
    # a task holds a group of planes at a time; the median all of them, each about 17 bytes a
    # pixel (its pixels, validity, its float64 copy): counted as two float64 planes
    held = 2 * len(st.items) if how == "median" else min(CELLS_AT_ONCE, len(st.items))
    shape = chunk_shape(replace(st, dtype=np.dtype("float64")), (-1, 1, *chunksize), held=held)
    light = replace(st, items=())
    make = dask.delayed(composite_chunk, pure=True)
    out = result_dtype(how)
    feet = footprints(st)

    def block(b: int, grid: Grid) -> Any:
        cells = piece_cells(st, feet, (0, len(st.items)), (b, 1), grid)
        task = make(light, how, cells, grid, open_options)
        return da.from_delayed(task, (1, grid.height, grid.width), out)

    bands = [_tiled(st, shape, partial(block, b)) for b in range(len(st.assets))]
    return da.block(bands)


def composite(
    items: Any,
    assets: Any = None,
    how: str = "mean",
    *,
    crs: Any = None,
    resolution: float | None = None,
    bounds: Any = None,
    chunksize: Any = CHUNKSIZE,
    resampling: str = "nearest",
    **open_options: Any,
) -> Any:
    """``how`` ("mean", "median", "min", "max", "sum", "count") over time of the items on one
    grid, as a lazy ``xarray.DataArray`` (band, y, x): what ``stack(...).<how>("time")`` gives
    (invalid pixels skipped), computed where the pixels are read. Each task reads every item
    of one ``chunksize`` piece concurrently and reduces them in the files' dtype, so no
    (time, y, x) float64 array is built or moved between workers (except for the median, whose
    task holds its piece of every item)."""
    _, xarray = _modules()
    how = check_how(how)
    st = plan_stack(
        items, assets, crs=crs, resolution=resolution, bounds=bounds, resampling=resampling
    )
    arr = _composite_dask(st, how, chunksize, open_options)
    coords, attrs = _georef(st)
    return xarray.DataArray(
        arr, dims=("band", "y", "x"), coords=coords, attrs={**attrs, "composite": how}, name=how
    )
