"""``read_many``: many windows or regions of many files, each file opened once, the blocks of
neighbouring reads fetched together.

For each file: open it once; plan every read on it (the blocks each needs, at the level it
reads; a region's warp plan names its source windows); take the reads in batches, nearest
first, and for each batch fetch the union of its blocks through the Image's block store in one
call, so blocks next to each other in the file travel in one coalesced GET and a block two
reads share is fetched once; pin them, run the reads (served from the pinned bytes, a block
decoded once for all through the decoded-block cache), unpin. Reads go through the same
``Image.read`` and region-warp code as single reads, so their pixels are the same.

Errors: a malformed request raises ``BatchRequestError`` before any I/O. A read that fails
(a window outside the image, a file that is missing, a server error) fails alone: with
``errors="raise"`` (default) the first failure in request order is raised once every read has
finished, as the typed error it is (a note names the request); with ``errors="return"`` its
slot of the result holds the exception instead of an array.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy.typing as npt

from ..context import Context
from ..errors import BatchRequestError, CloudROIError
from ..read.plan import BlockRef
from ..tasks import gather_all
from ..types import Stats
from .requests import ChipRequest, as_requests

if TYPE_CHECKING:
    from ..image import Image
    from ..warp.plan import WarpPlan

__all__ = ["Opener", "Result", "finish", "read_many", "read_requests"]

Result = npt.NDArray[Any] | CloudROIError
Errors = Literal["raise", "return"]
#: ``opener(url)``: an async context manager giving that file's Image.
Opener = Callable[[str], "AbstractAsyncContextManager[Image]"]

#: Reads of one file fetched together: the blocks of a batch are pinned while it runs.
BATCH_READS = 64
#: Files read at once.
FILES_AT_ONCE = 8


@dataclass(slots=True)
class _Planned:
    """One read planned on its file: its slot, the level it reads and the blocks it needs."""

    slot: int
    req: ChipRequest
    level: int = 0
    blocks: list[BlockRef] = field(default_factory=list)
    warp: WarpPlan | None = None
    order: tuple[int, int, int] = (0, 0, 0)


async def read_many(
    requests: Any,
    *,
    context: Context | None = None,
    errors: Errors = "raise",
    batch_reads: int = BATCH_READS,
    files_at_once: int = FILES_AT_ONCE,
    stats: Stats | None = None,
    **open_options: Any,
) -> list[Result]:
    """One array per request, in order: (bands, height, width) in the file's dtype.

    ``requests``: ``ChipRequest``s, mappings with its fields (url, window | bounds [+ crs],
    out_shape, level, bands, boundless, resampling), (url, window[, out_shape]) tuples, or a
    pandas DataFrame with those columns. A region (``bounds``) is read as ``Image.read_region``
    reads it, its invalid pixels holding the file's nodata (else 0). ``open_options`` go to
    ``cloudroi.open`` for every file; ``stats`` (optional) counts every file's requests.
    """
    check_errors(errors)
    reqs = as_requests(requests)
    ctx = context if context is not None else Context()

    @contextlib.asynccontextmanager
    async def opened(url: str) -> AsyncIterator[Image]:
        from ..opening import open_image

        async with await open_image(url, context=ctx, stats=stats, **open_options) as img:
            yield img

    try:
        out = await read_requests(reqs, opened, batch_reads, files_at_once)
    finally:
        if context is None:
            await ctx.close()
    return finish(reqs, out, errors)


def check_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise BatchRequestError(f"errors must be 'raise' or 'return', got {errors!r}")


def finish(reqs: Sequence[ChipRequest], out: list[Result], errors: str) -> list[Result]:
    """``out``, or with ``errors="raise"`` the first failure in request order, raised."""
    if errors == "raise":
        for i, got in enumerate(out):
            if isinstance(got, CloudROIError):
                got.add_note(f"cloudroi.read_many: request {i} ({reqs[i].url})")
                raise got
    return out


async def read_requests(
    reqs: Sequence[ChipRequest],
    opener: Opener,
    batch_reads: int = BATCH_READS,
    files_at_once: int = FILES_AT_ONCE,
) -> list[Result]:
    """Each request's array or CloudROIError, in order; ``opener(url)`` is an async context
    manager giving the file's Image (opened once per file here)."""
    results: list[Result | None] = [None] * len(reqs)
    by_url: dict[str, list[int]] = {}
    for i, r in enumerate(reqs):
        by_url.setdefault(r.url, []).append(i)
    gate = asyncio.Semaphore(max(1, files_at_once))

    async def one_file(url: str, slots: list[int]) -> None:
        items = [(i, reqs[i]) for i in slots]
        async with gate:
            try:
                async with opener(url) as img:
                    await _read_file(img, items, results, batch_reads)
            except CloudROIError as exc:  # the open failed
                for slot, _ in items:
                    if results[slot] is None:
                        results[slot] = exc

    await gather_all(one_file(u, s) for u, s in by_url.items())
    out = [r for r in results if r is not None]
    assert len(out) == len(reqs)
    return out


async def _read_file(
    img: Image,
    items: list[tuple[int, ChipRequest]],
    results: list[Result | None],
    batch_reads: int,
) -> None:
    planned: list[_Planned] = []
    for slot, req in items:
        try:
            planned.append(await _plan(img, slot, req))
        except CloudROIError as exc:
            results[slot] = exc
    planned.sort(key=lambda p: p.order)
    for start in range(0, len(planned), max(1, batch_reads)):
        await _run_batch(img, planned[start : start + batch_reads], results)


async def _plan(img: Image, slot: int, req: ChipRequest) -> _Planned:
    """The level and blocks of one read (a region's through its warp plan)."""
    if req.bounds is None:
        assert req.window is not None
        plan = img.plan(
            req.window,
            req.level,
            req.bands,
            boundless=req.boundless,
            out_shape=req.out_shape,
            resampling=req.resampling,
        )
        blocks = list(plan.blocks)
        row, col = plan.window.row_off, plan.window.col_off
        return _Planned(slot, req, plan.level, blocks, None, (plan.level, row, col))
    from ..region import georef

    box = georef.checked_bounds(req.bounds)
    warp = await georef.plan_region_async(
        img, box, req.crs, shape=req.out_shape, resampling=req.resampling, level=req.level or None
    )
    blocks = []
    for w in warp.windows:
        blocks += img.plan(w, warp.level, req.bands, boundless=True).blocks
    first = warp.windows[0] if warp.windows else (0, 0, 0, 0)
    return _Planned(slot, req, warp.level, blocks, warp, (warp.level, first[1], first[0]))


async def _run_batch(img: Image, batch: list[_Planned], results: list[Result | None]) -> None:
    """Fetch the union of the batch's blocks together, then run its reads from them."""
    reader = img._reader
    pinned: list[Hashable] = []
    try:
        for level in sorted({p.level for p in batch}):
            refs = [b for p in batch if p.level == level for b in p.blocks]
            # On failure each read then fetches (and fails) on its own.
            with contextlib.suppress(CloudROIError):
                pinned += await reader.pin(img.structure.levels[level], refs)
        done = await asyncio.gather(*(_read_one(img, p) for p in batch), return_exceptions=True)
    finally:
        reader.unpin(pinned)
    for p, got in zip(batch, done, strict=True):
        if isinstance(got, BaseException) and not isinstance(got, CloudROIError):
            raise got
        results[p.slot] = got


async def _read_one(img: Image, p: _Planned) -> npt.NDArray[Any]:
    req = p.req
    if p.warp is None:
        return await img.read(
            req.window,
            req.level,
            req.bands,
            out_shape=req.out_shape,
            boundless=req.boundless,
            resampling=req.resampling,
        )
    from ..region import georef

    data = await georef.read_warped(
        img, p.warp, bands=_bands(img, req.bands), executor=img.context.executor
    )
    return georef.refill(data, img.nodata, strict=False).data


def _bands(img: Image, bands: Sequence[int] | None) -> tuple[int, ...] | None:
    if bands is None:
        return None
    img._samples(bands)  # BandError for a band the image does not have
    return tuple(bands)
