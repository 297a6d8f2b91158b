"""One benchmark run of one reader, in its own process: ``python -m benchmarks.worker JOB.json``.

The job names the files (URLs on the benchmark's range server), the reads to make (file, level,
window), the concurrency, and where to save the pixels. The worker imports its reader, records
its resident memory, opens the files, makes the reads, and prints one JSON line: wall time, open
time, the monotonic clock at the end of the opens (to split the server's log into open and read
traffic), resident memory before the work and the process's peak, or the error.

A fresh process per run means every run is cold (no header, block or connection cache survives)
and peak RSS is the reader's own. aiocogeo runs in ``aiocogeo_worker.py`` in its own venv.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from benchmarks.tilegrid import paste_tiles, tiles_for_window

#: TiTiler's recommended GDAL settings for COGs over HTTP, plus its Lambda header size.
TITILER_GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
}

Read = tuple[str, int, list[int]]
Result = tuple[list[np.ndarray], float]  # arrays in read order, perf_counter at end of opens


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    """This process's high-water RSS. Not ru_maxrss: Linux carries that across exec from the
    parent, so a worker would report the orchestrator's peak (which holds the corpus)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> float:
    """User + system CPU seconds of this process, all threads: less noisy than wall time."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _files_used(reads: list[Read]) -> list[str]:
    return list(dict.fromkeys(f for f, _, _ in reads))


# -- cloudroi ------------------------------------------------------------------------------


async def run_cloudroi(job: dict[str, Any]) -> Result:
    import cloudroi

    reads: list[Read] = job["reads"]
    variant = job.get("variant", {})
    session = None
    if "session" in variant:  # an experiment: cloudroi over a differently configured session
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), auto_decompress=False, **variant["session"]
        )
    ctx = cloudroi.Context(session=session, **variant.get("context", {}))
    opts = variant.get("open", {})
    try:
        names = _files_used(reads)
        imgs = await asyncio.gather(
            *(cloudroi.open(job["files"][n]["url"], context=ctx, **opts) for n in names)
        )
        images = dict(zip(names, imgs, strict=True))
        t_open = time.perf_counter()
        sem = asyncio.Semaphore(job["concurrency"])

        async def one(f: str, level: int, win: list[int]) -> np.ndarray:
            async with sem:
                return await images[f].read(win, level)

        arrays = await asyncio.gather(*(one(f, lv, w) for f, lv, w in reads))
        for img in imgs:
            await img.close()
    finally:
        await ctx.close()
        if session is not None:
            await session.close()
    return list(arrays), t_open


# -- rasterio over /vsicurl/ ----------------------------------------------------------------


def run_rasterio(job: dict[str, Any]) -> Result:
    import rasterio
    from rasterio.windows import Window

    reads: list[Read] = job["reads"]
    local = threading.local()

    def dataset(f: str, level: int) -> Any:
        cache = local.__dict__.setdefault("ds", {})
        key = (f, level)
        if key not in cache:
            url = "/vsicurl/" + job["files"][f]["url"]
            kw = {"overview_level": level - 1} if level else {}
            cache[key] = rasterio.open(url, **kw)
        return cache[key]

    def one(f: str, level: int, win: list[int]) -> np.ndarray:
        c, r, w, h = win
        return dataset(f, level).read(window=Window(c, r, w, h))

    with rasterio.Env(**TITILER_GDAL):
        if len(reads) == 1:
            f, level, win = reads[0]
            dataset(f, level)
            t_open = time.perf_counter()
            arrays = [one(f, level, win)]
        else:
            # Open each file once up front (as the async readers do), then read from a pool
            # whose threads open their own handles (GDAL datasets are not thread-safe); those
            # later opens hit GDAL's process-wide /vsicurl/ cache.
            for f in _files_used(reads):
                dataset(f, 0)
            t_open = time.perf_counter()
            with ThreadPoolExecutor(job["threads"]) as pool:
                arrays = list(pool.map(lambda r: one(*r), reads))
    return arrays, t_open


# -- tifffile over fsspec HTTP -------------------------------------------------------------


class _TifffileImage:
    """tifffile parses the header through an fsspec HTTP file; tiles come from ``cat_ranges``."""

    def __init__(self, fs: Any, url: str) -> None:
        import tifffile

        self.fs = fs
        self.url = url
        self.fh = fs.open(url, mode="rb", block_size=32768, cache_type="readahead")
        self.tif = tifffile.TiffFile(self.fh)
        self.levels = [lv.keyframe for lv in self.tif.series[0].levels]
        self.lock = threading.Lock()

    def read(self, level: int, win: list[int]) -> np.ndarray:
        page = self.levels[level]
        tw, th = page.tilewidth, page.tilelength
        ntx = -(-page.imagewidth // tw)
        xy = tiles_for_window(win, tw, th, page.imagewidth, page.imagelength)
        with self.lock:  # tifffile loads tag values lazily through the shared file handle
            offsets, counts = page.dataoffsets, page.databytecounts
        idx = [r * ntx + c for c, r in xy]
        wanted = [i for i in idx if offsets[i] and counts[i]]
        datas = self.fs.cat_ranges(
            [self.url] * len(wanted),
            [offsets[i] for i in wanted],
            [offsets[i] + counts[i] for i in wanted],
        )
        by_index = dict(zip(wanted, datas, strict=True))
        bands = page.samplesperpixel
        tiles: dict[tuple[int, int], np.ndarray | None] = {}
        for (c, r), i in zip(xy, idx, strict=True):
            data = by_index.get(i)
            if data is None:
                tiles[(c, r)] = None
                continue
            seg, _, _ = page.decode(data, i, jpegtables=page.jpegtables)
            tiles[(c, r)] = np.moveaxis(seg.reshape(th, tw, bands), -1, 0)
        fill = page.nodata if page.nodata is not None else 0
        return paste_tiles(win, tw, th, tiles, bands, page.dtype, fill)


def run_tifffile(job: dict[str, Any]) -> Result:
    import fsspec

    reads: list[Read] = job["reads"]
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    images = {f: _TifffileImage(fs, job["files"][f]["url"]) for f in _files_used(reads)}
    t_open = time.perf_counter()
    if len(reads) == 1:
        f, level, win = reads[0]
        arrays = [images[f].read(level, win)]
    else:
        with ThreadPoolExecutor(job["threads"]) as pool:
            arrays = list(pool.map(lambda r: images[r[0]].read(r[1], r[2]), reads))
    return arrays, t_open


# -- async-tiff (obstore) ------------------------------------------------------------------


async def run_async_tiff(job: dict[str, Any]) -> Result:
    from async_tiff import TIFF
    from obstore.store import HTTPStore

    reads: list[Read] = job["reads"]
    store = HTTPStore.from_url(job["base_url"], client_options={"allow_http": True})
    names = _files_used(reads)
    tiffs = await asyncio.gather(
        *(TIFF.open(job["files"][n]["path"], store=store, prefetch=32768) for n in names)
    )
    images = dict(zip(names, tiffs, strict=True))
    t_open = time.perf_counter()
    sem = asyncio.Semaphore(job["concurrency"])

    async def one(f: str, level: int, win: list[int]) -> np.ndarray:
        ifd = images[f].ifds[level]
        tw, th = ifd.tile_width, ifd.tile_height
        w, h = ifd.image_width, ifd.image_height
        xy = tiles_for_window(win, tw, th, w, h)
        offsets, counts = ifd.tile_offsets, ifd.tile_byte_counts
        ntx = -(-w // tw)
        present = [(c, r) for c, r in xy if offsets[r * ntx + c] and counts[r * ntx + c]]
        async with sem:
            fetched = await images[f].fetch_tiles(present, level) if present else []
            decoded = await asyncio.gather(*(t.decode() for t in fetched))
        bands = ifd.samples_per_pixel
        tiles: dict[tuple[int, int], np.ndarray | None] = dict.fromkeys(xy)
        for (c, r), arr in zip(present, decoded, strict=True):
            a = np.asarray(arr)
            tiles[(c, r)] = a if int(ifd.planar_configuration) == 2 else np.moveaxis(a, -1, 0)
        dtype = _dtype_of(ifd.sample_format[0], ifd.bits_per_sample[0])
        nodata = ifd.gdal_nodata
        fill = float(nodata) if nodata not in (None, "") else 0
        return paste_tiles(win, tw, th, tiles, bands, dtype, fill)

    arrays = await asyncio.gather(*(one(f, lv, w) for f, lv, w in reads))
    return list(arrays), t_open


def _dtype_of(sample_format: Any, bits: int) -> np.dtype[Any]:
    kind = {1: "u", 2: "i", 3: "f"}[int(sample_format)]
    return np.dtype(f"{kind}{bits // 8}")


# -- driver --------------------------------------------------------------------------------

READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "cloudroi": run_cloudroi,
    "rasterio": run_rasterio,
    "tifffile": run_tifffile,
    "async-tiff": run_async_tiff,
}


def _import_reader(name: str) -> None:
    """Import a reader's modules before the baseline RSS, so it counts the work, not imports."""
    mods = {
        "cloudroi": ["cloudroi", "aiohttp"],
        "rasterio": ["rasterio"],
        "tifffile": ["tifffile", "fsspec", "aiohttp", "imagecodecs"],
        "async-tiff": ["async_tiff", "obstore"],
    }[name.split("[")[0]]
    for m in mods:
        __import__(m)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    name = job["reader"]
    out: dict[str, Any] = {"reader": name, "ok": False}
    try:
        _import_reader(name)
        out["rss_before"] = rss_now()
        fn = READERS[name.split("[")[0]]
        profiler = None
        if job.get("profile"):
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="enabled")
            profiler.start()
        cpu0 = _cpu()
        t0 = time.perf_counter()
        if asyncio.iscoroutinefunction(fn):
            arrays, t_open = asyncio.run(fn(job))
        else:
            arrays, t_open = fn(job)
        t1 = time.perf_counter()
        cpu = _cpu() - cpu0
        if profiler is not None:
            profiler.stop()
            with open(job["profile"], "w") as f:
                f.write(profiler.output_text(unicode=False, color=False, show_all=False))
        out.update(
            ok=True,
            wall=t1 - t0,
            cpu=cpu,
            open_wall=t_open - t0,
            # the server stamps its log with time.monotonic(), one clock for every process
            open_done=time.monotonic() - (t1 - t_open),
            rss_peak=rss_peak(),
        )
        if job.get("save"):
            np.savez(job["save"], *[np.asarray(a) for a in arrays])
    except BaseException as exc:  # reported to the orchestrator, which shows the cell as failed
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
    return out


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    result = run_job(job)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
