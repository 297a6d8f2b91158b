"""Batch benchmarks on Dask, every reader side by side in one run:

- B1: random 256x256 chips over 8 COGs: cloudroi's batch API (``cloudroi.batch.lazy.chips``)
  vs rioxarray with ``chunks=`` (GDAL /vsicurl/) vs tifffile ``aszarr`` + fsspec;
- B2: mean over time of a region of a local STAC stack: ``cloudroi.stac.lazy.stack`` vs
  stackstac (and odc-stac when it is installed), on the same grid, nearest; cloudroi and
  stackstac each with both chunkings: one chunk per (item, piece), their default, and "per
  piece", every item of a 1024x1024 piece in one chunk (``chunksize=(-1, 1, 1024, 1024)``);
  and cloudroi's ``stac.lazy.composite`` (the mean computed where each piece is read).

    .venv/bin/python -m benchmarks.batch [--smoke] [--runs N] [--latency 0.02] [--workers 2]
                                         [--only B1,B2] [--out DIR]

The files (benchmarks/batch_corpus.py) are served by a ``cloudroi.testing.RangeServer`` on
127.0.0.1 with the latency injected per request; every (benchmark, reader, run) gets a fresh
``distributed.LocalCluster`` of ``--workers`` processes (cold caches, per-worker peak RSS).
Requests and bytes are the server's counts (graph building on the client included); the
minimum is the compressed bytes of the blocks the reads touch plus the headers. Pixels: B1
against rasterio reading the local files; B2 every reader against cloudroi (and cloudroi's
scene-by-scene mean against rasterio's). Writes DIR/batch[-smoke].json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import batch_readers as R
from benchmarks.batch_corpus import (
    FULL,
    SMOKE,
    UTM,
    BatchSpec,
    chip_files,
    ensure,
    region_bounds,
    scene_files,
    scene_origin,
    stac_items,
)
from benchmarks.minimum import FileIndex, minimum_bytes

HERE = Path(__file__).resolve().parent
B1_READERS = {"cloudroi": R.b1_cloudroi, "rioxarray": R.b1_rioxarray, "tifffile": R.b1_tifffile}
B2_READERS = {
    "cloudroi": R.b2_cloudroi,
    "stackstac": R.b2_stackstac,
    "odc-stac": R.b2_odc,
    "cloudroi:pieces": R.b2_cloudroi_pieces,
    "stackstac:pieces": R.b2_stackstac_pieces,
    "cloudroi:composite": R.b2_cloudroi_composite,
}
#: The module that says whether a reader is installed.
MODULES = {
    "tifffile": "zarr",
    "odc-stac": "odc.stac",
    "cloudroi:pieces": "cloudroi",
    "stackstac:pieces": "stackstac",
    "cloudroi:composite": "cloudroi",
}


def make_chips(spec: BatchSpec, urls: dict[str, str]) -> list[tuple[str, str, list[int]]]:
    """(file name, url, window) of ``spec.chips`` random chips, files taken in turn."""
    rng = np.random.default_rng(20241201)
    names = [p.name for p in chip_files(spec)]
    out = []
    for i in range(spec.chips):
        name = names[i % len(names)]
        c, r = (int(v) for v in rng.integers(0, spec.size - 256, 2))
        out.append((name, urls[name], [c, r, 256, 256]))
    return out


def b1_reference(spec: BatchSpec, chips: list[tuple[str, str, list[int]]]) -> np.ndarray:
    import rasterio
    from rasterio.windows import Window

    paths = {p.name: p for p in chip_files(spec)}
    handles: dict[str, Any] = {}
    try:
        out = []
        for name, _, win in chips:
            if name not in handles:
                handles[name] = rasterio.open(paths[name])
            out.append(handles[name].read(window=Window(*win)))
        return np.stack(out)
    finally:
        for h in handles.values():
            h.close()


def b1_minimum(spec: BatchSpec, chips: list[tuple[str, str, list[int]]]) -> int:
    total = 0
    for path in chip_files(spec):
        reads = [(0, win) for name, _, win in chips if name == path.name]
        header, blocks, _ = minimum_bytes(FileIndex.load(path), reads)
        total += header + blocks
    return total


def b2_minimum(spec: BatchSpec) -> int:
    minx, _, _, maxy = region_bounds(spec)
    total = 0
    for i, path in enumerate(scene_files(spec)):
        x, y = scene_origin(spec, i)
        win = [round((minx - x) / 10), round((y - maxy) / 10), spec.region, spec.region]
        header, blocks, _ = minimum_bytes(FileIndex.load(path), [(0, win)])
        total += header + blocks
    return total


def b2_reference(spec: BatchSpec) -> np.ndarray:
    """rasterio: each scene's window of the region, nodata as NaN, mean over scenes."""
    import rasterio
    from rasterio.windows import Window

    minx, _, _, maxy = region_bounds(spec)
    stack = []
    for i, path in enumerate(scene_files(spec)):
        x, y = scene_origin(spec, i)
        c, r = round((minx - x) / 10), round((y - maxy) / 10)
        with rasterio.open(path) as ds:
            a = ds.read(1, window=Window(c, r, spec.region, spec.region)).astype("float64")
        a[a == 0] = np.nan
        stack.append(a)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.nanmean(np.stack(stack), axis=0)[None]


@contextlib.contextmanager
def cluster(workers: int, threads: int) -> Iterator[Any]:
    """A LocalCluster of ``workers`` processes and a Client on it."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as lc,
        Client(lc) as client,
    ):
        yield client


def run_one(
    fn: Any, args: tuple[Any, ...], opts: argparse.Namespace, server: Any
) -> dict[str, Any]:
    """``fn(*args)`` on a fresh cluster (``opts.client``: the shared one, in smoke mode): wall,
    traffic, per-worker peak RSS, cloudroi's opens, result."""
    with contextlib.ExitStack() as stack:
        client = opts.client or stack.enter_context(cluster(opts.workers, opts.threads))
        # the workers up and the reader's modules imported there and here: not timed
        client.run(R.warm, fn.__name__)
        R.warm(fn.__name__)
        ours = fn.__name__.startswith(("b1_cloudroi", "b2_cloudroi"))
        before = client.run(R.cloudroi_opens) if ours else {}
        server.reset()
        t0 = time.perf_counter()
        try:
            result = fn(*args)
            error = None
        except Exception as exc:  # a reader that fails is reported, not fatal
            result, error = None, f"{type(exc).__name__}: {exc}"[:300]
        wall = time.perf_counter() - t0
        log = list(server.log)
        rss = sorted(client.run(R.peak_rss).values())
        opens = None
        if ours:
            after = client.run(R.cloudroi_opens)
            opens = sorted(after[w] - before.get(w, 0) for w in after)
    return {
        "wall": wall,
        "requests": len(log),
        "bytes": sum(e.body_bytes for e in log),
        "rss": rss,
        "opens": opens,
        "error": error,
        "result": result,
    }


def bench(
    key: str,
    readers: dict[str, Any],
    args: tuple[Any, ...],
    opts: argparse.Namespace,
    server: Any,
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in readers}
    for _ in range(opts.runs):
        for name, fn in readers.items():  # readers take turns within each round
            if runs[name] and runs[name][-1]["error"]:
                continue
            print(f"  {key} {name} ...", flush=True)
            got = run_one(fn, args, opts, server)
            runs[name].append(got)
            print(f"    {got['wall']:.2f} s, {got['requests']} requests, "
                  f"{got['bytes'] / 2**20:.1f} MiB {got['error'] or ''}", flush=True)  # fmt: skip
    out = {}
    for name, rs in runs.items():
        last = rs[-1]
        ok = [r for r in rs if r["error"] is None]
        out[name] = {
            "error": last["error"],
            "runs": len(ok),
            "wall": statistics.median(r["wall"] for r in ok) if ok else None,
            "walls": [round(r["wall"], 3) for r in ok],
            "requests": statistics.median(r["requests"] for r in ok) if ok else None,
            "bytes": statistics.median(r["bytes"] for r in ok) if ok else None,
            "rss": [max(r["rss"][i] for r in ok) for i in range(len(ok[0]["rss"]))] if ok else [],
            "opens": last["opens"],
            "result": last["result"],
        }
    return out


def _available(
    readers: dict[str, Any], modules: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    import importlib

    ok, missing = {}, {}
    for name, fn in readers.items():
        try:
            importlib.import_module(modules.get(name, name))
            ok[name] = fn
        except ImportError as exc:
            missing[name] = f"not installed ({exc})"
    return ok, missing


def check(rows: dict[str, dict[str, Any]], want: np.ndarray, exact: bool = True) -> None:
    for row in rows.values():
        got = row.pop("result", None)
        if got is None:
            row["pixels"] = "-"
            continue
        if got.shape != want.shape:
            row["pixels"] = f"shape {got.shape} != {want.shape}"
        elif np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
            row["pixels"] = "identical"
        else:
            diff = np.nanmax(np.abs(got.astype("float64") - want.astype("float64")))
            row["pixels"] = f"differ (max {diff:g})"


def table(title: str, rows: dict[str, dict[str, Any]], minimum: int, base: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"| reader | time s (median) | vs {base} (same chunking) | requests | MiB "
        "| bytes / minimum | peak RSS per worker MiB | opens per worker | pixels |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for name, r in rows.items():
        if r["wall"] is None:
            lines.append(f"| {name} | failed: {r['error']} | | | | | | | |")
            continue
        suffix = name.partition(":")[2]
        ref = rows.get(f"{base}:{suffix}" if suffix else base, {}).get("wall")
        ratio = f"{r['wall'] / ref:.2f}x" if ref else "-"
        rss = " / ".join(f"{v / 2**20:.0f}" for v in r["rss"])
        opens = " / ".join(str(v) for v in r["opens"]) if r["opens"] else "-"
        lines.append(
            f"| {name} | {r['wall']:.2f} | {ratio} | {r['requests']:.0f} | "
            f"{r['bytes'] / 2**20:.1f} | {r['bytes'] / minimum:.2f} | {rss} | {opens} "
            f"| {r['pixels']} |"
        )
    lines.append(f"\nMinimum: {minimum / 2**20:.1f} MiB.")
    return "\n".join(lines)


def versus(rows: dict[str, dict[str, Any]], other: str) -> list[str]:
    """Each cloudroi row's time over each of ``other``'s rows (all chunkings)."""
    theirs = {k: r["wall"] for k, r in rows.items() if k.split(":")[0] == other and r["wall"]}
    lines = []
    for name, r in rows.items():
        if name.split(":")[0] == "cloudroi" and r["wall"] and theirs:
            each = ", ".join(f"{r['wall'] / w:.2f}x {k}" for k, w in theirs.items())
            lines.append(f"- {name}: {each}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="toy corpus, one run (seconds)")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4, help="threads per worker")
    ap.add_argument("--only", default="B1,B2")
    ap.add_argument("--readers", default="", help="comma list (default: all installed)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    opts = ap.parse_args(argv)
    spec = SMOKE if opts.smoke else FULL
    opts.runs = opts.runs or (1 if opts.smoke else 3)
    os.environ.update(R.gdal_env())
    t0 = time.perf_counter()
    ensure(spec)
    print(f"corpus ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    from cloudroi.testing import RangeServer

    report: dict[str, Any] = {"spec": spec.name, "latency": opts.latency, "workers": opts.workers,
                              "threads": opts.threads, "runs": opts.runs}  # fmt: skip
    md = [
        f"## Batch benchmarks ({spec.name}: {opts.workers} worker processes x {opts.threads} "
        f"threads, {opts.latency * 1000:.0f} ms per request, median of {opts.runs})",
        "",
    ]
    if opts.smoke:
        md += [
            "Smoke: one cluster for every reader, so readers of one library (GDAL: rioxarray, "
            "stackstac, odc-stac) find its caches warm and peak RSS is a running maximum; the "
            "figures check the harness, not the readers.",
            "",
        ]
    wanted = set(opts.readers.split(",")) if opts.readers else None
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RangeServer(latency=opts.latency))
        # smoke: one cluster for every reader (peak RSS is then the running maximum)
        opts.client = (
            stack.enter_context(cluster(opts.workers, opts.threads)) if opts.smoke else None
        )
        urls = {}
        for path in [*chip_files(spec), *scene_files(spec)]:
            server.add(f"/batch/{path.name}", path.read_bytes())
            urls[path.name] = server.url(f"/batch/{path.name}")
        if "B1" in opts.only:
            chips = make_chips(spec, urls)
            readers, missing = _available(B1_READERS, MODULES)
            readers = {k: v for k, v in readers.items() if wanted is None or k in wanted}
            rows = bench("B1", readers, ([(u, w) for _, u, w in chips],), opts, server)
            check(rows, b1_reference(spec, chips))
            minimum = b1_minimum(spec, chips)
            title = (f"B1: {spec.chips} random 256x256 chips over {spec.files} COGs "
                     f"({spec.size}x{spec.size} uint16)")  # fmt: skip
            md += [table(title, rows, minimum, "cloudroi"), ""]
            md += [f"- {k}: {v}" for k, v in missing.items()]
            report["B1"] = {"rows": rows, "minimum": minimum, "missing": missing}
        if "B2" in opts.only:
            items = stac_items(spec, urls)
            bounds = region_bounds(spec)
            readers, missing = _available(B2_READERS, MODULES)
            readers = {k: v for k, v in readers.items() if wanted is None or k in wanted}
            rows = bench("B2", readers, (items, bounds, UTM), opts, server)
            check(rows, b2_reference(spec))
            minimum = b2_minimum(spec)
            title = (f"B2: mean over time of a {spec.region}x{spec.region} region of a "
                     f"{spec.scenes}-scene STAC stack")  # fmt: skip
            md += [table(title, rows, minimum, "cloudroi"), ""]
            md += [*versus(rows, "stackstac"), ""]
            md += [f"- {k}: {v}" for k, v in missing.items()]
            report["B2"] = {"rows": rows, "minimum": minimum, "missing": missing}
    text = "\n".join(md)
    print(text)
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = "batch-smoke" if opts.smoke else "batch"
    (opts.out / f"{stem}.md").write_text(text + "\n")
    (opts.out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
