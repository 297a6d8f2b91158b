"""The lazy STAC stack: an xarray DataArray (time, band, y, x) over Dask, one chunk per
(item, asset, ``chunksize`` x ``chunksize`` piece of the grid), as stackstac chunks it.

Each chunk is a task that reads its piece of the grid from its asset's file on the worker
process's cloudroi runtime (``cloudroi.xarray.runtime``): the file is opened once per process
however many chunks read it; pixels as ``cloudroi.stac.read_cell`` gives them (a window on the
grid's lattice, else a warp). A chunk outside its item's footprint (the item's ``bbox``) is
filled without a read.

    arr = cloudroi.stac.lazy.stack(items, ["B04", "B08"], crs=32633, resolution=10,
                                   bounds=(minx, miny, maxx, maxy))
    arr.mean("time").compute()

Needs the ``xarray`` extra (xarray, dask, pyproj).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import BatchRequestError, CloudROIError, LimitExceededError, MissingExtraError
from ..types import Window
from .read import Stack, blank, fill, plan_stack, read_cell, sub_grid

if TYPE_CHECKING:
    from ..warp import Grid

__all__ = ["stack", "to_dask"]

CHUNKSIZE = 1024
#: Largest chunk side (a 8192 x 8192 float64 chunk is 512 MiB).
MAX_CHUNKSIZE = 8192
#: Most chunks (times x assets x chunk rows x chunk columns) a lazy stack may have.
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
    light: Stack, href: str, nodata: float | None, grid: Grid, open_options: dict[str, Any]
) -> npt.NDArray[Any]:
    """A task: one (item, asset) on one piece of the grid, as the stack's dtype."""
    from ..spec import ImageSpec
    from ..xarray import runtime

    async def go() -> npt.NDArray[Any]:
        img = await runtime.open_spec(ImageSpec.create(href, **open_options))
        data, valid = await read_cell(img, grid, resampling=light.resampling, nodata=nodata)
        return fill(light, data, valid, img.dtype)

    return runtime.run(go())


def _native(st: Stack, open_options: dict[str, Any]) -> np.dtype[Any]:
    """The first asset file's dtype (one open, on this process's runtime)."""
    from ..spec import ImageSpec
    from ..xarray import runtime

    href = next(it.hrefs[a] for it in st.items for a in st.assets if a in it.hrefs)

    async def go() -> np.dtype[Any]:
        return (await runtime.open_spec(ImageSpec.create(href, **open_options))).dtype

    return runtime.run(go())


def _footprint(st: Stack, t: int) -> tuple[float, float, float, float] | None:
    """Item ``t``'s bbox in the grid's CRS (None when unknown)."""
    box = st.items[t].bbox
    if box is None:
        return None
    from ..region.georef import carry_bounds

    try:
        return carry_bounds(box, "EPSG:4326", st.grid.crs)
    except CloudROIError:
        return None


def _touches(foot: tuple[float, float, float, float] | None, grid: Grid) -> bool:
    """Whether a footprint may reach ``grid`` (True when unknown)."""
    if foot is None:
        return True
    from ..region.geometry import grid_bounds

    minx, miny, maxx, maxy = foot
    gx0, gy0, gx1, gy1 = grid_bounds(grid.transform, grid.width, grid.height)
    return minx < gx1 and gx0 < maxx and miny < gy1 and gy0 < maxy


def _check_chunks(st: Stack, chunksize: int) -> None:
    """Refuse, before building anything, a chunk size out of range or a graph of more than
    ``MAX_CHUNKS`` chunks (a huge grid would take the memory and minutes just to plan)."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise BatchRequestError(f"chunksize must be an integer, got {chunksize!r}")
    if not 1 <= chunksize <= MAX_CHUNKSIZE:
        raise BatchRequestError(f"chunksize must be 1..{MAX_CHUNKSIZE}, got {chunksize}")
    per_band = math.ceil(st.grid.height / chunksize) * math.ceil(st.grid.width / chunksize)
    total = len(st.items) * len(st.assets) * per_band
    if total > MAX_CHUNKS:
        raise LimitExceededError(
            f"chunks of a {st.grid.width} x {st.grid.height} grid", total, MAX_CHUNKS
        )


def to_dask(st: Stack, *, chunksize: int = CHUNKSIZE, **open_options: Any) -> Any:
    """``st`` as a lazy Dask array (time, band, y, x)."""
    dask, _ = _modules()
    da = dask.array
    _check_chunks(st, chunksize)
    dtype = st.dtype or _native(st, open_options)
    light = replace(st, items=(), dtype=np.dtype(dtype))
    make = dask.delayed(read_chunk, pure=True)
    empty = dask.delayed(blank, pure=True)
    h, w = st.grid.height, st.grid.width
    rows = [(r, min(chunksize, h - r)) for r in range(0, h, chunksize)]
    cols = [(c, min(chunksize, w - c)) for c in range(0, w, chunksize)]
    times = []
    for t, it in enumerate(st.items):
        foot = _footprint(st, t)
        bands = []
        for asset in st.assets:
            pieces = []
            for r, ch in rows:
                line = []
                for c, cw in cols:
                    grid = sub_grid(st.grid, Window(c, r, cw, ch))
                    if asset in it.hrefs and _touches(foot, grid):
                        task = make(
                            light, it.hrefs[asset], it.nodata.get(asset), grid, open_options
                        )
                        line.append(da.from_delayed(task, (ch, cw), dtype))
                    else:
                        cell = empty(light, (ch, cw), np.dtype(dtype))
                        line.append(da.from_delayed(cell, (ch, cw), dtype))
                pieces.append(line)
            bands.append(da.block(pieces))
        times.append(da.stack(bands))
    return da.stack(times)


def stack(
    items: Any,
    assets: Any = None,
    *,
    crs: Any = None,
    resolution: float | None = None,
    bounds: Any = None,
    chunksize: int = CHUNKSIZE,
    resampling: str = "nearest",
    dtype: Any = "float64",
    fill_value: float | int | None = math.nan,
    **open_options: Any,
) -> Any:
    """The items as a lazy ``xarray.DataArray`` (time, band, y, x) on one grid (see
    ``cloudroi.stac.plan_stack`` for the defaults), with coordinates time, band (asset keys),
    id (per time), y and x (pixel centres) and attributes crs, transform, resolution."""
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
    x0, dx, _, y0, _, dy = st.grid.transform
    return xarray.DataArray(
        arr,
        dims=("time", "band", "y", "x"),
        coords={
            "time": np.array([it.time for it in st.items]),
            "id": ("time", [it.id for it in st.items]),
            "band": list(st.assets),
            "y": y0 + dy * (np.arange(st.grid.height) + 0.5),
            "x": x0 + dx * (np.arange(st.grid.width) + 0.5),
        },
        attrs={
            "crs": st.grid.crs,
            "transform": tuple(st.grid.transform),
            "resolution": abs(dx),
        },
        name="stack",
    )
