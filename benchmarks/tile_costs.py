"""Where one tile's time goes, in-process, one tile at a time: cloudroi's steps (open, plan,
fetch, decode, assemble, warp, encode) timed one by one, cold (empty caches) and warm (the same
tile again), for a reprojected tile (UTM file) and a same-CRS tile (3857 file); beside them
TiTiler's own path in the same process (rio-tiler ``Reader`` open, ``tile()``, titiler's PNG
rendering) with TiTiler's GDAL settings.

    .venv/bin/python -m benchmarks.tile_costs [--runs 7] [--latency 0.02] [--smoke]

The files are the tile benchmark's (``benchmarks/tile_corpus.py``), served by a
``cloudroi.testing.RangeServer`` on 127.0.0.1 with the latency added to every request. The tiles
are the file's central tile at its maximum zoom (full-resolution level, the costliest a map asks)
and at maxzoom - 2 (an overview). Each cold run uses fresh caches (a new ``Context`` with its own
caches; for GDAL, a never-seen URL, so the /vsicurl/ caches are cold too). Times are medians over
``--runs`` in milliseconds; "total" is the whole tile timed end to end (``open`` + ``tile`` +
``render``), not the sum of the steps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudroi
from benchmarks.tile_corpus import FULL, SMOKE, ensure_tile_corpus
from benchmarks.tiles import TITILER_GDAL_ENV, file_zooms
from cloudroi import Context
from cloudroi.cache import LRUCache
from cloudroi.outputs import DEFAULT_PNG_LEVEL
from cloudroi.read.assemble import WindowTarget
from cloudroi.read.reader import Budgets
from cloudroi.region import georef
from cloudroi.tiff.structure import TiffStructure
from cloudroi.types import Window

STEPS = ("open", "plan", "fetch", "decode", "assemble", "warp", "mask", "encode")


@dataclass(frozen=True)
class Case:
    label: str
    file: str
    z: int
    x: int
    y: int


def fresh_context() -> Context:
    """A Context with caches of its own (the process-wide ones stay untouched)."""
    return Context(
        block_cache=LRUCache(256 << 20, sizeof=len),
        decoded_cache=LRUCache(128 << 20, sizeof=lambda a: int(a.nbytes)),
        header_cache=LRUCache(64 << 20, sizeof=TiffStructure.footprint),
        header_sizes=LRUCache(4096),
    )


class Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        self._t = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] += (now - self._t) * 1000
        self._t = now


async def cloudroi_steps(ctx: Context, url: str, c: Case) -> dict[str, float]:
    """One tile through cloudroi's steps, each timed alone (sequential: no overlap)."""
    t = Timer()
    img = await cloudroi.open(url, context=ctx)
    t.lap("open")
    plan = georef.tile_plan(img, georef.tile_matrix_set("WebMercatorQuad"), c.x, c.y, c.z)
    t.lap("plan")
    reader = img._reader
    ifd = reader.structure.levels[plan.level]
    samples = list(range(img.count))
    wins = [Window(*w) for w in plan.windows]
    refs = {ref.index: ref for w in wins for ref in reader.refs(ifd, WindowTarget(w), samples)}
    todo = [r for r in refs.values() if reader.decoded_cache.get(reader.key(ifd, r.index)) is None]
    sources = await reader.sources(ifd, todo, None, Budgets())
    datas = [b"" if s is None else await s for s in sources]
    t.lap("fetch")
    whole = WindowTarget(Window(0, 0, ifd.width, ifd.height))
    for ref, data in zip(todo, datas, strict=True):
        if data:
            reader.decode(ifd, ref, data, whole)
    t.lap("decode")
    from cloudroi.warp import SourceBlock, execute

    blocks = [SourceBlock(w, await img.read(w, plan.level), None) for w in wins]
    t.lap("assemble")
    result = execute(plan, blocks, src_nodata=img.nodata)
    t.lap("warp")
    data = await georef.read_warped(img, plan)  # for its ImageData; timed apart below
    t = _mask_and_encode(t, result, data)
    await img.close()
    return t.ms


def _mask_and_encode(t: Timer, result: Any, data: Any) -> Timer:
    import numpy as np

    t._t = time.perf_counter()
    np.where(result.mask, 255, 0).astype(np.uint8)
    t.lap("mask")
    data.render("png", png_level=DEFAULT_PNG_LEVEL)
    t.lap("encode")
    return t


async def cloudroi_total(ctx: Context, url: str, c: Case) -> float:
    t0 = time.perf_counter()
    async with cloudroi.open(url, context=ctx) as img:
        data = await img.tile(c.x, c.y, c.z)
    await asyncio.get_running_loop().run_in_executor(
        ctx.executor, lambda: data.render("png", png_level=DEFAULT_PNG_LEVEL)
    )
    return (time.perf_counter() - t0) * 1000


def titiler_steps(url: str, c: Case) -> dict[str, float]:
    """rio-tiler's Reader and titiler's renderer, as TiTiler's tile endpoint calls them."""
    import rasterio
    from rio_tiler.io import Reader
    from titiler.core.resources.enums import ImageType
    from titiler.core.utils import render_image

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    with rasterio.Env(), Reader(url) as src:
        t1 = time.perf_counter()
        image = src.tile(c.x, c.y, c.z)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    render_image(image, output_format=ImageType.png)
    t4 = time.perf_counter()
    out["open"] = (t1 - t0) * 1000
    out["tile"] = (t2 - t1) * 1000
    out["close"] = (t3 - t2) * 1000
    out["encode"] = (t4 - t3) * 1000
    out["total"] = (t4 - t0) * 1000
    return out


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def measure_cloudroi(
    url_for: Callable[[str], str], c: Case, runs: int
) -> dict[str, dict[str, float]]:
    """(cold, warm) step times and totals, medians over ``runs``."""
    out: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for i in range(runs):
        for kind, fn in (("steps", cloudroi_steps), ("total", None)):
            ctx = fresh_context()
            url = url_for(f"{kind}{i}")
            if fn is not None:
                cold = await fn(ctx, url, c)
                warm = await fn(ctx, url, c)
                out["cold"].append(cold)
                out["warm"].append(warm)
            else:
                out["cold"][-1]["total"] = await cloudroi_total(ctx, url, c)
                out["warm"][-1]["total"] = await cloudroi_total(ctx, url, c)
            await ctx.close()
    return {k: median_of(v) for k, v in out.items()}


def measure_titiler(url_for: Callable[[str], str], c: Case, runs: int) -> dict[str, Any]:
    cold, warm = [], []
    for i in range(runs):
        url = url_for(f"titiler{i}")
        cold.append(titiler_steps(url, c))
        warm.append(titiler_steps(url, c))
    return {"cold": median_of(cold), "warm": median_of(warm)}


def cases(paths: dict[str, Path]) -> list[Case]:
    out = []
    for name, label in (("utm", "reprojected"), ("merc", "same CRS")):
        f = file_zooms(name, paths[name])
        for z in (f.maxzoom, f.maxzoom - 2):
            x0, y0, x1, y1 = f.ranges[z]
            out.append(Case(f"{label}, z{z}", name, z, (x0 + x1) // 2, (y0 + y1) // 2))
    return out


def table(results: list[tuple[Case, dict[str, Any], dict[str, Any]]]) -> str:
    head = (
        "| tile | cache | "
        + " | ".join(STEPS)
        + " | total | TiTiler open / tile / encode / total |"
    )
    lines = [head, "|" + "---|" * (len(STEPS) + 4)]
    for c, ours, theirs in results:
        for cache in ("cold", "warm"):
            o, t = ours[cache], theirs[cache]
            cells = " | ".join(f"{o[s]:.1f}" for s in STEPS)
            lines.append(
                f"| {c.label} {c.z}/{c.x}/{c.y} | {cache} | {cells} | **{o['total']:.1f}** | "
                f"{t['open']:.1f} / {t['tile']:.1f} / {t['encode']:.1f} / **{t['total']:.1f}** |"
            )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> str:
    from cloudroi.testing import RangeServer

    paths = ensure_tile_corpus(SMOKE if args.smoke else FULL)
    results = []
    with RangeServer(latency=args.latency) as upstream:
        datas = {name: p.read_bytes() for name, p in paths.items()}
        for c in cases(paths):
            # a new path per case and cold run: nothing of it is in any cache, GDAL's included
            def url_for(tag: str, c: Case = c) -> str:
                path = f"costs/z{c.z}/{tag}/{c.file}.tif"
                upstream.add(path, datas[c.file])
                return upstream.url(path)

            ours = await measure_cloudroi(url_for, c, args.runs)
            theirs = await asyncio.to_thread(measure_titiler, url_for, c, args.runs)
            results.append((c, ours, theirs))
            print(f"  {c.label}: done", file=sys.stderr, flush=True)
    return table(results)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--smoke", action="store_true", help="the toy corpus")
    args = ap.parse_args()
    os.environ.update(TITILER_GDAL_ENV)  # as TiTiler is configured: before GDAL reads them
    print(asyncio.run(main_async(args)))
