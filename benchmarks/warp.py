"""Timings of cloudroi.warp on 256 x 256 web-mercator tiles: planning and executing, per kernel,
for 1 and 3 bands (best and median of ``--runs``, one thread, arrays already in memory).

    .venv/bin/python -m benchmarks.warp [--runs 15]

The files are the warp tests' COGs (tests/warp_data.py), written into a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudroi import warp as W
from tests.warp_data import TMS, build, open_source

#: (file key, lon, lat, zoom): full resolution (4-sample kernels), a 0.74 downsampling (widened
#: kernels), a one-band file with nodata, a polar tile
CASES = [
    ("utm", 14.85, 45.45, 15),
    ("utm", 14.85, 45.45, 13),
    ("wgs84", 7.8, 36.6, 7),
    ("polar", 0.0, -80.0, 3),
]


def _times(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return min(out), statistics.median(out)


def _path(plan: W.WarpPlan) -> str:
    if plan.resampling in ("nearest", "average"):
        return "-"
    scale = min(min(c.scale) for c in plan.chunks if c.src is not None)
    return "4-sample" if scale >= 0.95 else f"widened ({scale:.2f})"


def _row(files: dict[str, Path], case: tuple[str, float, float, int], runs: int) -> None:
    key, lon, lat, z = case
    src = open_source(files[key])
    t = TMS.tile(lon, lat, z)
    vrt = W.rio_tiler_vrt_bands(src.bands, src.nodata)
    for bands in sorted({1, src.bands}):
        for kernel in W.RESAMPLINGS:

            def plan(k: W.Resampling = kernel) -> W.WarpPlan:
                return W.plan_tile(src.grid, src.levels, TMS, t.x, t.y, z, k, vrt_bands=vrt)

            p = plan()
            blocks = src.blocks(p, bands)
            pb, pm = _times(plan, runs)
            eb, em = _times(lambda p=p, b=blocks: W.execute(p, b, src_nodata=src.nodata), runs)
            print(
                f"| {key} {z}/{t.x}/{t.y} | {bands} | {kernel} | {_path(p)} | "
                f"{pb:.1f} / {pm:.1f} | {eb:.1f} / {em:.1f} |",
                flush=True,
            )


def main(runs: int) -> None:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp))
        print("| tile | bands | kernel | kernel path | plan ms (best / median) | execute ms |")
        print("|---|---|---|---|---|---|")
        for case in CASES:
            _row(files, case, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    main(parser.parse_args().runs)
