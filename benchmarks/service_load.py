"""Load on the region service: requests/s, p50/p99 latency of /region 512x512 PNGs, cold and warm.

    .venv/bin/python -m benchmarks.service_load [--latency 0.02] [--concurrency 8] [--quick]
                                                [--json out.json]

The bundled sample COG (4096 x 4096 float32, 256-pixel tiles) is served by a RangeServer on
127.0.0.1 with an injected per-request latency; ``cloudroi serve`` runs in its own process (as in
production) and this process is the load generator (aiohttp, a fixed number of clients in a
closed loop). "cold": a freshly started service and windows whose tiles it has never read (the
8 x 8 grid of disjoint 512 x 512 windows, each four tiles); "warm": the same windows again, every
tile in the block cache (each request still re-validates the source with one header GET).
Every response is checked to be a 512 x 512 PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import imagecodecs

from cloudroi.sample import SAMPLE_NAME, ensure_sample
from cloudroi.testing import RangeServer

ROOT = Path(__file__).resolve().parent.parent
TILE = 512


@dataclass
class Row:
    cache: str
    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    upstream_requests_per_request: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``cloudroi serve`` in a subprocess, allowed to read exactly ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Service:
        env = {**os.environ, "CLOUDROI_MAX_CONCURRENCY": "256", "CLOUDROI_BLOCK_CACHE_MB": "512"}
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
            [
                sys.executable,
                "-m",
                "cloudroi.cli",
                "serve",
                "--port",
                str(self.port),
                "--allow",
                self.prefix,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"service did not start: {self.proc.stderr}")
                await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)


def grid_windows(size: int) -> list[tuple[int, int]]:
    n = size // TILE
    cells = [(c * TILE, r * TILE) for r in range(n) for c in range(n)]
    random.Random(1).shuffle(cells)
    return cells


async def load(
    base: str, url: str, windows: list[tuple[int, int]], total: int, concurrency: int
) -> tuple[list[float], int, float]:
    """``total`` requests over ``windows`` (in order, cycling) from ``concurrency`` clients."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    checked = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, checked
        for i in counter:
            col, row = windows[i % len(windows)]
            params = {
                "url": url,
                "window": f"{col},{row},{TILE},{TILE}",
                "format": "png",
                "rescale": "0,2000",
            }
            began = time.perf_counter()
            async with session.get(base + "/region", params=params) as resp:
                body = await resp.read()
                ok = resp.status == 200
            latencies.append(time.perf_counter() - began)
            if not ok:
                errors += 1
            elif checked < 8:
                checked += 1
                if imagecodecs.png_decode(body).shape[:2] != (TILE, TILE):
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, errors, elapsed


def summarize(
    cache: str, concurrency: int, latencies: list[float], errors: int, elapsed: float, upstream: int
) -> Row:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return Row(
        cache,
        concurrency,
        len(latencies),
        round(elapsed, 3),
        round(len(latencies) / elapsed, 1),
        round(statistics.median(ordered) * 1000, 1),
        round(p99 * 1000, 1),
        round(upstream / len(latencies), 2),
        errors,
    )


async def run(args: argparse.Namespace) -> list[Row]:
    path = ensure_sample()
    data = path.read_bytes()
    rows: list[Row] = []
    with RangeServer({"load/" + SAMPLE_NAME: data}, latency=args.latency) as upstream:
        url = upstream.url("load/" + SAMPLE_NAME)
        prefix = upstream.url("load/")
        windows = grid_windows(4096)
        for concurrency in args.concurrency:
            cold: list[float] = []
            errors, elapsed, requests = 0, 0.0, 0
            for _ in range(args.cold_rounds):
                async with Service(prefix) as service:  # a fresh process: empty caches
                    upstream.reset()
                    lat, err, took = await load(
                        service.base, url, windows, len(windows), concurrency
                    )
                    cold += lat
                    errors += err
                    elapsed += took
                    requests += upstream.request_count
            rows.append(summarize("cold", concurrency, cold, errors, elapsed, requests))
            async with Service(prefix) as service:
                await load(service.base, url, windows, len(windows), concurrency)  # fill caches
                upstream.reset()
                lat, err, took = await load(
                    service.base, url, windows, args.warm_requests, concurrency
                )
                rows.append(summarize("warm", concurrency, lat, err, took, upstream.request_count))
    return rows


def markdown(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"`/region` 512 x 512 PNG (float32 DEM rendered with rescale, 4 tiles per window) from "
        f"`cloudroi serve`; upstream RangeServer with {args.latency * 1000:.0f} ms per request; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load generator and "
        "upstream in one process, the service in another.",
        "",
        "| cache | clients | requests | req/s | p50 ms | p99 ms | upstream GETs/request | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.cache} | {r.concurrency} | {r.requests} | {r.rps} | {r.p50_ms} | {r.p99_ms} "
        f"| {r.upstream_requests_per_request} | {r.errors} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.02, help="upstream seconds per request")
    ap.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8],
        help="client counts, comma separated (default 1,8)",
    )
    ap.add_argument(
        "--cold-rounds",
        type=int,
        default=3,
        help="fresh service processes for the cold measurement (64 windows each)",
    )
    ap.add_argument("--warm-requests", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="one cold round, 64 warm requests")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    args = ap.parse_args()
    if args.quick:
        args.cold_rounds, args.warm_requests = 1, 64
    rows = asyncio.run(run(args))
    text = markdown(rows, args)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": [asdict(r) for r in rows], "markdown": text, "latency": args.latency},
                indent=1,
            )
        )
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
