"""``cloudroi compare`` and ``cloudroi demo``: the loading strategies side by side, cold and
warm, on one window (the demo serves the sample COG over HTTP on 127.0.0.1 first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..context import Context
from ..errors import LimitExceededError
from ..image import Image
from ..opening import open_image
from ..outputs import encode
from ..region import RegionPlan
from .commands import describe
from .common import UsageError, context, mib, out, plan_from_args

__all__ = ["compare", "demo", "run_compare"]


@dataclass(slots=True)
class Run:
    strategy: str
    cache: str
    requests: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    peak_bytes: int | None = None
    note: str = ""
    pixels: npt.NDArray[Any] | None = None

    def row(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "cache": self.cache,
            "requests": self.requests,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "peak_bytes": self.peak_bytes,
            "note": self.note,
        }


async def _lazy(img: Image, plan: RegionPlan) -> npt.NDArray[Any]:
    return await img.read(plan.window, plan.level)


async def _preload(img: Image, plan: RegionPlan) -> npt.NDArray[Any]:
    await img.preload(plan.level)
    return await img.read(plan.window, plan.level)


async def _stream(img: Image, plan: RegionPlan) -> npt.NDArray[Any]:
    win = plan.window
    pixels = np.zeros((img.count, win.height, win.width), dtype=img.dtype)
    async for tile in img.iter_tiles(win, plan.level):
        tw = tile.window
        pixels[
            :,
            tw.row_off - win.row_off : tw.row_end - win.row_off,
            tw.col_off - win.col_off : tw.col_end - win.col_off,
        ] = tile.data
    return pixels


_STRATEGIES = {"lazy": _lazy, "preload": _preload, "stream": _stream}


async def _measure(
    ctx: Context, url: str, args: argparse.Namespace, run: Run, *, traced: bool
) -> None:
    """One read with ``run.strategy``: timed, or (``traced``) with its peak heap measured."""
    if traced:
        tracemalloc.start()
    began = time.perf_counter()
    img = await open_image(url, context=ctx)
    try:
        plan = plan_from_args(img, args)
        if plan.boundless:
            raise UsageError("compare reads windows inside the image")
        pixels = await _STRATEGIES[run.strategy](img, plan)
        if traced:
            run.peak_bytes = tracemalloc.get_traced_memory()[1]
        else:
            run.seconds = time.perf_counter() - began
            run.requests, run.bytes = img.stats.requests, img.stats.bytes_fetched
            run.pixels = pixels
    except LimitExceededError as exc:
        run.note = f"skipped: {exc}"
    finally:
        if traced:
            tracemalloc.stop()
        await img.close()


async def run_compare(url: str, args: argparse.Namespace) -> list[Run]:
    """Each strategy on a fresh Context (cold), then again on the same Context (warm); then the
    same sequence again with tracemalloc on for the peak heap (tracing slows reads down, so it
    stays out of the timed sequence)."""
    # One unmeasured open first, so that one-time costs (imports, thread start-up, the header
    # size learned for the URL) do not land on whichever strategy happens to run first.
    async with context(args, fresh_caches=True) as ctx:
        img = await open_image(url, context=ctx)
        await img.read((0, 0, 1, 1))
        await img.close()
    runs: list[Run] = []
    for strategy in _STRATEGIES:
        pair = [Run(strategy, "cold"), Run(strategy, "warm")]
        for traced in (False, True):
            async with context(args, fresh_caches=True) as ctx:
                for run in pair:
                    await _measure(ctx, url, args, run, traced=traced)
        runs += pair
    return runs


def _table(runs: list[Run]) -> str:
    head = (
        f"{'strategy':<9} {'cache':<5} {'requests':>8} {'bytes':>11} {'time':>9} {'peak mem':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        if r.seconds is None:
            lines.append(f"{r.strategy:<9} {r.cache:<5} {r.note}")
            continue
        lines.append(
            f"{r.strategy:<9} {r.cache:<5} {r.requests:>8} {mib(r.bytes or 0):>11} "
            f"{r.seconds * 1000:>7.1f}ms {mib(r.peak_bytes or 0):>10}"
        )
    return "\n".join(lines)


def _same_pixels(runs: list[Run]) -> bool:
    arrays = [r.pixels for r in runs if r.pixels is not None]
    return all(
        np.array_equal(arrays[0], a, equal_nan=arrays[0].dtype.kind == "f") for a in arrays[1:]
    )


async def compare(args: argparse.Namespace) -> int:
    runs = await run_compare(args.url, args)
    same = _same_pixels(runs)
    if args.json:
        out(json.dumps({"runs": [r.row() for r in runs], "identical_pixels": same}, indent=2))
    else:
        out(_table(runs))
        out(
            "\nlazy: only the window's tiles; preload: the whole level first, then the read from "
            "memory;\nstream: tiles yielded as they arrive (iter_tiles). Peak mem: traced Python "
            "and NumPy heap."
        )
        out(f"All strategies returned identical pixels: {'yes' if same else 'NO'}")
    return 0 if same else 1


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


async def demo(args: argparse.Namespace) -> int:
    from ..sample import SAMPLE_NAME, default_sample_path, ensure_sample
    from ..testing import RangeServer

    path = default_sample_path()
    if not path.exists():
        out(f"Generating the sample COG at {path} (once; a few seconds)...", flush=True)
    path = await asyncio.to_thread(ensure_sample, path)
    data = await asyncio.to_thread(path.read_bytes)
    with RangeServer({SAMPLE_NAME: data}, latency=args.latency) as server:
        url = server.url(SAMPLE_NAME)
        out(
            f"Serving {path.name} ({mib(len(data))}) at {url} "
            f"with {args.latency * 1000:.0f} ms per request\n"
        )
        arr, mask, size = await _demo_read(args, server, url, len(data))
        runs = await run_compare(url, args)
        out(_table(runs))
        out(f"All strategies returned identical pixels: {'yes' if _same_pixels(runs) else 'NO'}\n")
    loop = asyncio.get_running_loop()
    body, used = await loop.run_in_executor(None, lambda: encode("png", arr, mask=mask))
    await asyncio.to_thread(Path(args.output).write_bytes, body)
    out(
        f"Wrote {args.output} ({size}x{size}; heights {used[0]:g}..{used[1]:g} m as grey, "
        "nodata transparent)"
        if used
        else f"Wrote {args.output}"
    )
    out(
        "\nNext: `cloudroi serve` (allows only the sample by default), then e.g.\n"
        f"  curl -o region.png 'http://127.0.0.1:8080/region?url={path}&window=1024,1024,512,512'\n"
        "or, with the geo extra (pip install 'cloudroi[geo]'), open the web map\n"
        f"  http://127.0.0.1:8080/map?url={path}&rescale=0,2200"
    )
    return 0


async def _demo_read(
    args: argparse.Namespace, server: Any, url: str, file_size: int
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], int]:
    """Describe the sample and read a window across its coastline (so the PNG shows nodata as
    transparent), reporting what it cost; point ``args`` at that window for the comparison."""
    async with context(args, fresh_caches=True) as ctx:
        img = await open_image(url, context=ctx)
        try:
            out(describe(img.info(), img.stats) + "\n")
            size = min(1024, img.width, img.height)
            col = row = min(size // 2, img.width - size, img.height - size)
            window = (col, row, size, size)
            server.reset()
            began = time.perf_counter()
            arr = await img.read(window)
            mask = await img.read_mask(window)
            took = time.perf_counter() - began
            out(
                f"Read window {window} over HTTP: {server.request_count} range request(s), "
                f"{mib(server.bytes_sent)} of the {mib(file_size)} file "
                f"({100 * server.bytes_sent / file_size:.1f}%), {took * 1000:.0f} ms\n"
            )
        finally:
            await img.close()
    args.window, args.bbox, args.level = window, None, 0
    return arr, mask, size
