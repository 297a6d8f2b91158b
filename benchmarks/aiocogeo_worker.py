"""One benchmark run of aiocogeo, in its own venv (aiocogeo pins aiohttp 3.6, which the main venv
cannot have): ``benchmarks/.venv-aiocogeo/bin/python benchmarks/aiocogeo_worker.py JOB.json``.

Same job and result format as ``benchmarks.worker``; runs on Python 3.8, so no newer syntax here.
Windows are answered with aiocogeo's ``get_tile`` per intersecting tile, pasted as rasterio would.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from tilegrid import paste_tiles, tiles_for_window


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def run(job):
    from aiocogeo import COGReader, config

    # The same header read-ahead as the others get (its env variable arrives as a str, which
    # aiocogeo 0.3 then adds to an int).
    config.INGESTED_BYTES_AT_OPEN = 32768

    reads = job["reads"]
    names = list(dict.fromkeys(f for f, _, _ in reads))
    readers = {}
    for n in names:
        readers[n] = COGReader(job["files"][n]["url"])
    await asyncio.gather(*(r.__aenter__() for r in readers.values()))
    t_open = time.perf_counter()
    sem = asyncio.Semaphore(job["concurrency"])

    async def one(f, level, win):
        cog = readers[f]
        ifd = cog.ifds[level]
        tw, th = ifd.TileWidth.value, ifd.TileHeight.value
        w, h = ifd.ImageWidth.value, ifd.ImageHeight.value
        xy = tiles_for_window(win, tw, th, w, h)
        async with sem:
            got = await asyncio.gather(*(cog.get_tile(c, r, level) for c, r in xy))
        tiles = {}
        for key, arr in zip(xy, got):  # noqa: B905 - runs on Python 3.8 (no strict=)
            tiles[key] = np.asarray(np.ma.getdata(arr))
        return paste_tiles(win, tw, th, tiles, ifd.bands, ifd.dtype, 0)

    try:
        arrays = await asyncio.gather(*(one(f, lv, w) for f, lv, w in reads))
    finally:
        await asyncio.gather(*(r.__aexit__(None, None, None) for r in readers.values()))
    return list(arrays), t_open


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    out = {"reader": "aiocogeo", "ok": False}
    try:
        import aiocogeo  # noqa: F401

        out["rss_before"] = rss_now()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime
        t0 = time.perf_counter()
        loop = asyncio.new_event_loop()
        arrays, t_open = loop.run_until_complete(run(job))
        loop.close()
        t1 = time.perf_counter()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out.update(
            ok=True,
            wall=t1 - t0,
            cpu=ru.ru_utime + ru.ru_stime - cpu0,
            open_wall=t_open - t0,
            open_done=time.monotonic() - (t1 - t_open),
            rss_peak=rss_peak(),
        )
        if job.get("save"):
            np.savez(job["save"], *arrays)
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
