"""``read_many`` on Dask: the requests split into tasks by file, each task a ``read_many`` of
its part on the worker process's cloudroi runtime (``cloudroi.xarray.runtime``: one event loop,
one Context, one open Image per file per process). So a file is opened once per worker however
many tasks read it, and the reads of one task share coalesced GETs as ``read_many``'s do.

    chips = cloudroi.batch.lazy.chips(frame, dtype="uint16", count=1)   # (n, 1, 256, 256)
    batch = chips[:512].compute()

Needs the ``xarray`` extra (dask).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import BatchRequestError, MissingExtraError
from .many import Errors, Result, check_errors, finish, read_requests
from .requests import ChipRequest, as_requests

if TYPE_CHECKING:
    from ..image import Image

__all__ = ["chips", "partition", "read_many_delayed", "read_many_dask"]

#: Requests per Dask task: enough for a task's reads to share GETs, few enough to spread.
READS_PER_TASK = 256


def _dask() -> Any:
    try:
        import dask
        import dask.array
    except ImportError:
        raise MissingExtraError("cloudroi.batch.lazy", "xarray") from None
    return dask


def partition(reqs: Sequence[ChipRequest], reads_per_task: int) -> list[list[int]]:
    """Request indices grouped by file, each file's split into runs of ``reads_per_task``."""
    if reads_per_task < 1:
        raise BatchRequestError(f"reads_per_task must be at least 1, got {reads_per_task}")
    by_url: dict[str, list[int]] = {}
    for i, r in enumerate(reqs):
        by_url.setdefault(r.url, []).append(i)
    return [
        slots[k : k + reads_per_task]
        for slots in by_url.values()
        for k in range(0, len(slots), reads_per_task)
    ]


def run_part(reqs: list[ChipRequest], open_options: dict[str, Any]) -> list[Result]:
    """A task: ``reqs`` read on this process's runtime, each file's Image the process's."""
    from ..spec import ImageSpec
    from ..xarray import runtime

    @contextlib.asynccontextmanager
    async def opener(url: str) -> AsyncIterator[Image]:
        yield await runtime.open_spec(ImageSpec.create(url, **open_options))

    return runtime.run(read_requests(reqs, opener))


def _stacked(reqs: list[ChipRequest], open_options: dict[str, Any]) -> npt.NDArray[Any]:
    out = run_part(reqs, open_options)
    finish(reqs, out, "raise")
    return np.stack([np.asarray(a) for a in out])


def read_many_delayed(
    requests: Any, *, reads_per_task: int = READS_PER_TASK, **open_options: Any
) -> tuple[list[Any], list[list[int]]]:
    """(one Dask delayed per task, each giving its requests' results; each task's request
    indices)."""
    dask = _dask()
    reqs = as_requests(requests)
    parts = partition(reqs, reads_per_task)
    run = dask.delayed(run_part, pure=True)
    return [run([reqs[i] for i in p], open_options) for p in parts], parts


def read_many_dask(
    requests: Any,
    *,
    errors: Errors = "raise",
    reads_per_task: int = READS_PER_TASK,
    scheduler: Any = None,
    **open_options: Any,
) -> list[Result]:
    """``read_many`` computed on Dask (the current client or ``scheduler``): one array (or,
    with ``errors="return"``, CloudROIError) per request, in order."""
    check_errors(errors)
    dask = _dask()
    reqs = as_requests(requests)
    tasks, parts = read_many_delayed(reqs, reads_per_task=reads_per_task, **open_options)
    done = dask.compute(*tasks, scheduler=scheduler)
    out: list[Result | None] = [None] * len(reqs)
    for part, results in zip(parts, done, strict=True):
        for i, r in zip(part, results, strict=True):
            out[i] = r
    return finish(reqs, [r for r in out if r is not None], errors)


def _chip_shape(reqs: Sequence[ChipRequest], count: int) -> tuple[int, int, int]:
    shapes = set()
    for r in reqs:
        if r.out_shape is not None:
            hw = r.out_shape
        elif r.window is not None:
            hw = (r.window.height, r.window.width)
        else:
            raise BatchRequestError("a region request needs out_shape to be a chip")
        shapes.add((len(r.bands) if r.bands else count, *hw))
    if len(shapes) != 1:
        raise BatchRequestError(f"chips must all have one shape, got {sorted(shapes)[:4]}")
    return shapes.pop()


def _describe(url: str, open_options: dict[str, Any]) -> tuple[np.dtype[Any], int]:
    from ..spec import ImageSpec
    from ..xarray import runtime

    async def go() -> tuple[np.dtype[Any], int]:
        img = await runtime.open_spec(ImageSpec.create(url, **open_options))
        return img.dtype, img.count

    return runtime.run(go())


def chips(
    requests: Any,
    *,
    dtype: Any = None,
    count: int | None = None,
    reads_per_task: int = READS_PER_TASK,
    **open_options: Any,
) -> Any:
    """Same-shaped requests as one lazy Dask array (n, bands, height, width), in request
    order; one chunk per task. ``dtype``/``count`` (bands) default to the first file's (read
    here: one open). A failed read fails the computation with its typed error."""
    dask = _dask()
    da = dask.array
    reqs = as_requests(requests)
    if not reqs:
        raise BatchRequestError("no requests")
    if dtype is None or count is None:
        found = _describe(reqs[0].url, open_options)
        dtype = found[0] if dtype is None else dtype
        count = found[1] if count is None else count
    bands, h, w = _chip_shape(reqs, count)
    parts = partition(reqs, reads_per_task)
    make = dask.delayed(_stacked, pure=True)
    blocks = [
        da.from_delayed(make([reqs[i] for i in p], open_options), (len(p), bands, h, w), dtype)
        for p in parts
    ]
    arr = da.concatenate(blocks, axis=0)
    order = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if np.array_equal(order, np.arange(len(reqs))):
        return arr
    return arr[np.argsort(order)]
