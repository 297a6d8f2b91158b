"""The tile benchmark: Web Mercator 256 x 256 PNG tiles from ``cloudroi serve`` and from TiTiler,
as a map panning and zooming asks them, over a UTM COG (reprojected) and a 3857 COG (not).

    .venv/bin/python -m benchmarks.tiles [--runs 3] [--concurrency 1,4,16] [--latency 0.02]
                                         [--readers cloudroi,titiler] [--quick] [--smoke]
                                         [--json out.json] [--profile]

Both services run in their own process (``cloudroi serve``; TiTiler's ``titiler.core``
TilerFactory under ``uvicorn --workers 1`` with the GDAL settings TiTiler recommends for dynamic
tiling, ``TITILER_GDAL_ENV``), fresh for every run (cold caches), against one
``cloudroi.testing.RangeServer`` on 127.0.0.1 that adds ``--latency`` seconds to every request and
logs it: requests and bytes per tile come from that log. This process is the load generator:
``--concurrency`` aiohttp clients in a closed loop over one deterministic tile sequence (seeded
pan/zoom sessions over both files, the same for every reader). "cold": the sequence once, from a
fresh service; "warm": the same sequence again from the same process. Every answer is checked to
be a 256 x 256 PNG, and cloudroi's tiles are compared with TiTiler's pixel by pixel.

Writes ``benchmarks/results/tiles-latest.{md,json}`` (``tiles-smoke`` with ``--smoke``), prints
the markdown. ``benchmarks/tile_costs.py`` breaks one tile's time down in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import imagecodecs
import numpy as np

from benchmarks.tile_corpus import FULL, SMOKE, TileCorpus, ensure_tile_corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
TILE = 256
READERS = ("cloudroi", "titiler")
#: ``cloudroi-lib``: the library's tile path in a bare aiohttp app (benchmarks/tile_standin.py);
#: ``cloudroi-preload``: ``cloudroi serve`` with the map path imported and pyproj initialised
#: before it listens (a what-if: the service imports them on its first tile request)
ALL_READERS = (*READERS, "cloudroi-lib", "cloudroi-preload")

#: what ``cloudroi-preload`` runs before ``cloudroi serve``
PRELOAD = """
import sys
import cloudroi.warp
from pyproj import Transformer
from cloudroi.region import georef
georef.tile_matrix_set("WebMercatorQuad")
Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(15.0, 46.0)
from cloudroi.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: TiTiler's "Recommended Configuration for dynamic tiling" (docs: advanced/performance_tuning),
#: verbatim, plus GDAL_INGESTED_BYTES_AT_OPEN from its docker-compose and Lambda settings.
TITILER_GDAL_ENV = {
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_CACHEMAX": "200",
    "CPL_VSIL_CURL_CACHE_SIZE": "20000000",
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "5000000",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
}


@dataclass(frozen=True, order=True)
class Req:
    file: str
    z: int
    x: int
    y: int

    @property
    def key(self) -> str:
        return f"{self.file}/{self.z}/{self.x}/{self.y}"


# -- the workload: pan/zoom sessions ------------------------------------------------------------


@dataclass
class FileZooms:
    """What a map client knows of a file: its zoom range and which tiles touch it."""

    name: str
    minzoom: int
    maxzoom: int
    #: z -> (xmin, ymin, xmax, ymax) of the tiles over the file's bounds
    ranges: dict[int, tuple[int, int, int, int]]
    exists: set[tuple[int, int, int]]


def file_zooms(name: str, path: Path) -> FileZooms:
    """Zoom range and existing tiles of a file, from rio-tiler's Reader on the local file."""
    from rio_tiler.io import Reader

    with Reader(str(path)) as r:
        w, s, e, n = r.get_geographic_bounds("EPSG:4326")
        ranges: dict[int, tuple[int, int, int, int]] = {}
        exists: set[tuple[int, int, int]] = set()
        for z in range(r.minzoom, r.maxzoom + 1):
            ul, lr = r.tms.tile(w, n, z), r.tms.tile(e, s, z)
            ranges[z] = (ul.x, ul.y, lr.x, lr.y)
            for x in range(ul.x - 2, lr.x + 3):
                for y in range(ul.y - 2, lr.y + 3):
                    if r.tile_exists(x, y, z):
                        exists.add((z, x, y))
        return FileZooms(name, r.minzoom, r.maxzoom, ranges, exists)


@dataclass
class Session:
    """One map view (``cols`` x ``rows`` tiles) panning and zooming over one file; the client
    keeps the tiles it has (a browser's cache), so each move asks only for new tiles, nearest
    the view's centre first, and only tiles that touch the file."""

    f: FileZooms
    rng: np.random.Generator
    cols: int = 4
    rows: int = 3
    seen: set[tuple[int, int, int]] = field(default_factory=set)

    def start(self) -> list[Req]:
        lo = self.f.minzoom + (self.f.maxzoom - self.f.minzoom) // 2
        self.z = int(self.rng.integers(lo, self.f.maxzoom + 1))
        x0, y0, x1, y1 = self.f.ranges[self.z]
        self.cx = int(self.rng.integers(x0, x1 + 1))
        self.cy = int(self.rng.integers(y0, y1 + 1))
        return self.view()

    def view(self) -> list[Req]:
        xs = range(self.cx - (self.cols - 1) // 2, self.cx + self.cols // 2 + 1)
        ys = range(self.cy - (self.rows - 1) // 2, self.cy + self.rows // 2 + 1)
        todo = [
            (self.z, x, y)
            for y in ys
            for x in xs
            if (self.z, x, y) in self.f.exists and (self.z, x, y) not in self.seen
        ]
        todo.sort(key=lambda t: ((t[1] - self.cx - 0.5) ** 2 + (t[2] - self.cy) ** 2, t))
        self.seen.update(todo)
        return [Req(self.f.name, *t) for t in todo]

    def move(self) -> list[Req]:
        kind = self.rng.choice(["pan", "pan", "pan", "in", "out"])
        if kind == "in" and self.z < self.f.maxzoom:
            self.z += 1
            self.cx = 2 * self.cx + int(self.rng.integers(0, 2))
            self.cy = 2 * self.cy + int(self.rng.integers(0, 2))
        elif kind == "out" and self.z > self.f.minzoom:
            self.z -= 1
            self.cx //= 2
            self.cy //= 2
        else:
            dx, dy = [(1, 0), (-1, 0), (0, 1), (0, -1)][int(self.rng.integers(0, 4))]
            x0, y0, x1, y1 = self.f.ranges[self.z]
            if not (x0 <= self.cx + dx <= x1 and y0 <= self.cy + dy <= y1):
                dx, dy = -dx, -dy  # bounce off the file's edge
            self.cx, self.cy = self.cx + dx, self.cy + dy
        return self.view()


def tile_sequence(files: list[FileZooms], sessions: int, steps: int, seed: int) -> list[Req]:
    """``sessions`` sessions (alternating files) of ``steps`` moves each, their batches
    interleaved round-robin (several users at once): the tiles in the order they are asked."""
    rng = np.random.default_rng(seed)
    users = [Session(files[i % len(files)], rng) for i in range(sessions)]
    batches = [[u.start()] for u in users]
    for _ in range(steps):
        for u, b in zip(users, batches, strict=True):
            b.append(u.move())
    out: list[Req] = []
    for step in range(steps + 1):
        for b in batches:
            out.extend(b[step])
    return out


# -- the services -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_hwm(pid: int) -> int:
    """Peak RSS (VmHWM) of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Service:
    """One reader's tile service in a subprocess on a free port, allowed to read ``prefix``."""

    def __init__(self, reader: str, prefix: str, profile: Path | None = None) -> None:
        self.reader = reader
        self.prefix = prefix
        self.port = free_port()
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __aexit__

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "NO_PROXY": "127.0.0.1"}
        py = sys.executable
        if self.reader == "titiler":
            env.update(TITILER_GDAL_ENV)
            cmd = [py, "-m", "uvicorn", "benchmarks.titiler_app:app", "--host", "127.0.0.1"]
            cmd += ["--port", str(self.port), "--workers", "1", "--no-access-log"]
            cmd += ["--log-level", "warning"]
        elif self.reader == "cloudroi":
            cmd = [py, "-m", "cloudroi.cli", "serve", "--port", str(self.port)]
            cmd += ["--allow", self.prefix]
        elif self.reader == "cloudroi-preload":
            cmd = [py, "-c", PRELOAD, "serve", "--port", str(self.port), "--allow", self.prefix]
        elif self.reader == "cloudroi-lib":
            cmd = [py, "-m", "benchmarks.tile_standin", "--port", str(self.port)]
        else:
            raise ValueError(f"unknown reader {self.reader!r}")
        if self.profile is not None:
            pyspy = shutil.which("py-spy") or str(Path(py).with_name("py-spy"))
            rec = [pyspy, "record", "-r", "200", "--threads", "--idle", "-f", "raw"]
            cmd = [*rec, "-o", str(self.profile), "--", *cmd]
        return cmd, env

    def url(self, file_url: str, r: Req) -> str:
        path = f"/tiles/WebMercatorQuad/{r.z}/{r.x}/{r.y}.png"
        if self.reader == "titiler":
            path = "/cog" + path
        return f"{self.base}{path}?url={file_url}"

    @property
    def pid(self) -> int:
        """The service's own process (py-spy's child when profiled)."""
        assert self.proc is not None
        if self.profile is None:
            return self.proc.pid
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(kids[0]) if kids else self.proc.pid

    def cpu(self) -> float:
        return _proc_cpu(self.pid)

    def peak_rss(self) -> int:
        return _proc_hwm(self.pid)

    async def __aenter__(self) -> Service:
        cmd, env = self.command()
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started before any load
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr
        )
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.reader} did not start: {self.errors()}")
                await asyncio.sleep(0.1)

    def errors(self) -> str:
        """The tail of what the service wrote to stderr."""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its profile, uvicorn shuts down
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()


# -- load -------------------------------------------------------------------------------------


@dataclass
class Answers:
    latencies: list[float]
    statuses: list[int]
    bodies: list[bytes]
    elapsed: float


async def load(urls: list[str], concurrency: int) -> Answers:
    """GET every URL, in order, from ``concurrency`` clients each in a closed loop."""
    n = len(urls)
    latencies = [0.0] * n
    statuses = [0] * n
    bodies = [b""] * n
    counter = iter(range(n))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in counter:
            began = time.perf_counter()
            try:
                async with session.get(urls[i]) as resp:
                    bodies[i] = await resp.read()
                    statuses[i] = resp.status
            except aiohttp.ClientError:
                statuses[i] = -1
            latencies[i] = time.perf_counter() - began

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Answers(latencies, statuses, bodies, elapsed)


# -- checks -----------------------------------------------------------------------------------


def rgba(body: bytes) -> np.ndarray:
    """A PNG as (h, w, 4) uint8: RGB gets an opaque alpha."""
    a = imagecodecs.png_decode(body)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (1, 2):  # grey (+ alpha)
        grey = np.repeat(a[:, :, :1], 3, axis=2)
        alpha = a[:, :, 1:] if a.shape[2] == 2 else np.full_like(a[:, :, :1], 255)
        a = np.concatenate([grey, alpha], axis=2)
    elif a.shape[2] == 3:
        a = np.concatenate([a, np.full_like(a[:, :, :1], 255)], axis=2)
    return np.asarray(a)


def bad_answers(a: Answers) -> list[str]:
    """Why answers are not 256 x 256 PNGs (status, decoding, shape), first few."""
    out: list[str] = []
    for i, (status, body) in enumerate(zip(a.statuses, a.bodies, strict=True)):
        if status != 200:
            out.append(f"#{i}: status {status}: {body[:120]!r}")
            continue
        try:
            shape = rgba(body).shape
        except Exception as exc:  # any decoder error is the answer's fault here
            out.append(f"#{i}: not a PNG ({exc})")
            continue
        if shape[:2] != (TILE, TILE):
            out.append(f"#{i}: shape {shape}")
    return out


@dataclass
class Agreement:
    """Pixel agreement of two readers' tiles, accumulated tile by tile."""

    tiles: int = 0
    valid: int = 0
    same: int = 0
    alpha_same: int = 0
    pixels: int = 0
    worst: float = 1.0
    worst_tile: str | None = None

    def add(self, key: str, a: np.ndarray, b: np.ndarray) -> None:
        both = (a[:, :, 3] == 255) & (b[:, :, 3] == 255)
        eq = np.all(a[:, :, :3] == b[:, :, :3], axis=2) & both
        n_valid, n_same = int(both.sum()), int(eq.sum())
        self.tiles += 1
        self.valid += n_valid
        self.same += n_same
        self.alpha_same += int((a[:, :, 3] == b[:, :, 3]).sum())
        self.pixels += a.shape[0] * a.shape[1]
        if n_valid and n_same / n_valid < self.worst:
            self.worst, self.worst_tile = n_same / n_valid, key

    def as_dict(self) -> dict[str, Any]:
        return {
            "tiles": self.tiles,
            "valid_pixels": self.valid,
            "identical": self.same / self.valid if self.valid else None,
            "alpha_identical": self.alpha_same / self.pixels if self.pixels else None,
            "worst_tile": self.worst_tile,
            "worst_identical": self.worst,
        }


def warp_reference(paths: dict[str, Path], reqs: list[Req], ours: list[bytes]) -> dict[str, Any]:
    """``ours`` against rio-tiler's ``Reader.tile()`` on the local files forced through GDAL's
    warper (a ``vrt_options`` makes rio-tiler read through a WarpedVRT even in the file's own
    CRS). TiTiler reads a same-CRS tile with a decimating RasterIO instead, whose nearest
    sampling from an overview picks other source pixels than a warp does: this tells a
    difference of method from a wrong pixel."""
    from rio_tiler.io import Reader

    per: dict[str, Agreement] = {"all": Agreement()}
    readers = {name: Reader(str(p)) for name, p in paths.items()}
    try:
        for r, body in zip(reqs, ours, strict=True):
            try:
                a = rgba(body)
            except Exception:  # counted by bad_answers
                continue
            t = readers[r.file].tile(r.x, r.y, r.z, vrt_options={"src_nodata": None})
            b = np.concatenate([np.moveaxis(t.data, 0, -1), t.mask[:, :, None]], axis=2)
            if a.shape != b.shape:
                continue
            per["all"].add(r.key, a, b)
            per.setdefault(r.file, Agreement()).add(r.key, a, b)
    finally:
        for rd in readers.values():
            rd.close()
    return {k: v.as_dict() for k, v in per.items()}


def agreement(reqs: list[Req], ours: list[bytes], theirs: list[bytes]) -> dict[str, Any]:
    """Identical RGB on the pixels both readers call valid (alpha 255), and identical alpha,
    over every tile both answered as a PNG of the same shape: for all tiles and per file."""
    per: dict[str, Agreement] = {"all": Agreement()}
    for r, a_body, b_body in zip(reqs, ours, theirs, strict=True):
        try:
            a, b = rgba(a_body), rgba(b_body)
        except Exception:  # counted by bad_answers
            continue
        if a.shape != b.shape:
            continue
        per["all"].add(r.key, a, b)
        per.setdefault(r.file, Agreement()).add(r.key, a, b)
    return {k: v.as_dict() for k, v in per.items()}


# -- runs ---------------------------------------------------------------------------------------


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure(
    reader: str, concurrency: int, cache: str, a: Answers, log: list[Any], cpu: float, own: float
) -> dict[str, Any]:
    lat = sorted(a.latencies)
    n = len(lat)
    bad = bad_answers(a)
    return {
        "reader": reader,
        "concurrency": concurrency,
        "cache": cache,
        "tiles": n,
        "seconds": a.elapsed,
        "tiles_per_s": n / a.elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(n - 1, int(0.99 * n))] * 1000,
        "requests": len(log),
        "bytes": sum(e.body_bytes for e in log),
        "requests_per_tile": len(log) / n,
        "bytes_per_tile": sum(e.body_bytes for e in log) / n,
        "service_cpu_s": cpu,
        "cpu_ms_per_tile": 1000 * cpu / n,
        "harness_cpu_s": own,
        "errors": len(bad),
        "first_errors": bad[:3],
        # the slowest answers: (position in the sequence, ms) -- is the tail the first tiles?
        "slowest": [
            (i, round(a.latencies[i] * 1000)) for i in np.argsort(a.latencies)[::-1][:5].tolist()
        ],
        "loadavg": os.getloadavg()[0],
    }


async def one_service(
    reader: str,
    urls_of: Any,
    upstream: Any,
    concurrency: int,
    warm: bool,
    profile: Path | None,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """A fresh service: the sequence cold, then (``warm``) again; the cold answers' bodies."""
    out: list[dict[str, Any]] = []
    async with Service(reader, upstream.url("tiles/"), profile) as svc:
        urls = urls_of(svc)
        cold_bodies: list[bytes] = []
        for cache in ("cold", "warm") if warm else ("cold",):
            upstream.reset()
            cpu0, own0 = svc.cpu(), _own_cpu()
            a = await load(urls, concurrency)
            cpu, own = svc.cpu() - cpu0, _own_cpu() - own0
            out.append(measure(reader, concurrency, cache, a, list(upstream.log), cpu, own))
            if cache == "cold":
                cold_bodies = a.bodies
        rss = svc.peak_rss()
    for row in out:
        row["service_rss_peak"] = rss
    return out, cold_bodies


@dataclass
class Plan:
    corpus: TileCorpus
    readers: list[str]
    concurrency: list[int]
    runs: int
    latency: float
    warm: bool
    #: tiles per run at each concurrency (a prefix of the sequence)
    limits: dict[int, int]
    sessions: int
    steps: int
    profile_dir: Path | None = None


async def run(plan: Plan) -> dict[str, Any]:
    from cloudroi.testing import RangeServer

    paths = ensure_tile_corpus(plan.corpus)
    files = [file_zooms(name, p) for name, p in paths.items()]
    seq = tile_sequence(files, plan.sessions, plan.steps, seed=12)
    runs: list[dict[str, Any]] = []
    bodies: dict[tuple[str, int], list[bytes]] = {}
    with RangeServer(latency=plan.latency) as upstream:
        for name, p in paths.items():
            upstream.add(f"tiles/{name}.tif", p.read_bytes())
        file_urls = {name: upstream.url(f"tiles/{name}.tif") for name in paths}
        for c in plan.concurrency:
            reqs = seq[: plan.limits.get(c, len(seq))]
            for rep in range(plan.runs):
                # readers take turns within a round, so drift in the machine hits all alike
                for reader in plan.readers:
                    profile = None
                    if plan.profile_dir is not None and rep == 0:
                        profile = plan.profile_dir / f"tiles-pyspy-{reader}-c{c}.raw"

                    def urls_of(svc: Service, reqs: list[Req] = reqs) -> list[str]:
                        return [svc.url(file_urls[r.file], r) for r in reqs]

                    print(f"  {reader} c={c} run {rep + 1}/{plan.runs} ...", flush=True)
                    rows, cold = await one_service(reader, urls_of, upstream, c, plan.warm, profile)
                    for row in rows:
                        row["rep"] = rep
                        print("    " + _brief(row), flush=True)
                    runs += rows
                    if rep == 0:
                        bodies[(reader, c)] = cold
    return {
        "sequence": [r.key for r in seq],
        "warp_reference": _warp_references(plan, seq, bodies, paths),
        "files": {
            f.name: {"minzoom": f.minzoom, "maxzoom": f.maxzoom, "tiles": len(f.exists)}
            for f in files
        },
        "runs": runs,
        "agreement": _agreements(plan, seq, bodies),
    }


def _agreements(
    plan: Plan, seq: list[Req], bodies: dict[tuple[str, int], list[bytes]]
) -> dict[str, Any]:
    """Every cloudroi reader against TiTiler, on the largest run both made."""
    out: dict[str, Any] = {}
    if "titiler" not in plan.readers:
        return out
    c = max(plan.concurrency, key=lambda k: plan.limits.get(k, len(seq)))
    reqs = seq[: plan.limits.get(c, len(seq))]
    for reader in plan.readers:
        if reader != "titiler" and (reader, c) in bodies:
            out[reader] = agreement(reqs, bodies[(reader, c)], bodies[("titiler", c)])
    return out


def _warp_references(
    plan: Plan, seq: list[Req], bodies: dict[tuple[str, int], list[bytes]], paths: dict[str, Path]
) -> dict[str, Any]:
    """Every cloudroi reader against rio-tiler through GDAL's warper, on its largest run."""
    c = max(plan.concurrency, key=lambda k: plan.limits.get(k, len(seq)))
    reqs = seq[: plan.limits.get(c, len(seq))]
    return {
        reader: warp_reference(paths, reqs, bodies[(reader, c)])
        for reader in plan.readers
        if reader != "titiler" and (reader, c) in bodies
    }


def _brief(row: dict[str, Any]) -> str:
    return (
        f"{row['cache']}: {row['tiles']} tiles, {row['tiles_per_s']:.1f} tiles/s, "
        f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
        f"{row['requests_per_tile']:.2f} req/tile, {row['bytes_per_tile'] / 1024:.0f} KiB/tile, "
        f"{row['cpu_ms_per_tile']:.1f} CPU ms/tile, errors {row['errors']}"
    )


# -- summary and report -------------------------------------------------------------------------

SUMMED = (
    "tiles_per_s",
    "p50_ms",
    "p99_ms",
    "requests_per_tile",
    "bytes_per_tile",
    "cpu_ms_per_tile",
    "harness_cpu_s",
    "service_rss_peak",
)


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (reader, concurrency, cache): medians over runs, min and max of each."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["reader"], r["concurrency"], r["cache"]), []).append(r)
    rows = []
    for (reader, c, cache), rs in groups.items():
        row: dict[str, Any] = {
            "reader": reader,
            "concurrency": c,
            "cache": cache,
            "runs": len(rs),
            "tiles": rs[0]["tiles"],
            "errors": sum(r["errors"] for r in rs),
            "first_errors": next((r["first_errors"] for r in rs if r["errors"]), []),
        }
        for k in SUMMED:
            vals = [r[k] for r in rs]
            row[k] = statistics.median(vals)
            row[k + "_min"], row[k + "_max"] = min(vals), max(vals)
        rows.append(row)
    return rows


def ratios(rows: list[dict[str, Any]], ours: str = "cloudroi") -> list[dict[str, Any]]:
    """``ours`` over TiTiler for each (concurrency, cache) both ran."""
    index = {(r["reader"], r["concurrency"], r["cache"]): r for r in rows}
    out = []
    for (reader, c, cache), a in index.items():
        b = index.get(("titiler", c, cache))
        if reader != ours or b is None:
            continue
        out.append(
            {
                "concurrency": c,
                "cache": cache,
                "tiles_per_s": a["tiles_per_s"] / b["tiles_per_s"],
                "p99": a["p99_ms"] / b["p99_ms"],
                "bytes_per_tile": a["bytes_per_tile"] / b["bytes_per_tile"]
                if b["bytes_per_tile"]
                else None,
                "cpu_per_tile": a["cpu_ms_per_tile"] / b["cpu_ms_per_tile"],
            }
        )
    return out


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The issue's targets at 16 clients, cold: (target, measured, met)."""
    out = []
    for q in ratios(rows):
        if q["concurrency"] != 16:
            continue
        tag = f"16 clients, {q['cache']}"
        out.append(
            (f"tiles/s >= 3x TiTiler ({tag})", f"{q['tiles_per_s']:.2f}x", q["tiles_per_s"] >= 3)
        )
        out.append((f"p99 <= 1/3 of TiTiler's ({tag})", f"{q['p99']:.2f}x", q["p99"] <= 1 / 3))
        if q["bytes_per_tile"] is not None:
            out.append(
                (
                    f"upstream bytes/tile <= TiTiler's ({tag})",
                    f"{q['bytes_per_tile']:.2f}x",
                    q["bytes_per_tile"] <= 1,
                )
            )
    return out


def _spread(row: dict[str, Any], k: str, fmt: str) -> str:
    if row["runs"] < 2:
        return format(row[k], fmt)
    return f"{format(row[k], fmt)} ({format(row[k + '_min'], fmt)}-{format(row[k + '_max'], fmt)})"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        "| reader | clients | cache | tiles | tiles/s | p50 ms | p99 ms | upstream req/tile "
        "| upstream KiB/tile | service CPU ms/tile | service peak RSS MiB | errors |"
    )
    lines = [head, "|" + "---|" * 12]
    lines.extend(
        f"| {r['reader']} | {r['concurrency']} | {r['cache']} | {r['tiles']} "
        f"| {_spread(r, 'tiles_per_s', '.1f')} | {_spread(r, 'p50_ms', '.0f')} "
        f"| {_spread(r, 'p99_ms', '.0f')} | {r['requests_per_tile']:.2f} "
        f"| {r['bytes_per_tile'] / 1024:.0f} | {_spread(r, 'cpu_ms_per_tile', '.1f')} "
        f"| {r['service_rss_peak'] / 2**20:.0f} | {r['errors']} |"
        for r in sorted(rows, key=lambda r: (r["concurrency"], r["cache"], r["reader"]))
    )
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    p = report["plan"]
    lines = [
        "## Tile benchmark",
        "",
        f"{report['when']}; {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"GDAL {m['versions'].get('GDAL')}, titiler.core {m['versions'].get('titiler.core')}, "
        f"rio-tiler {m['versions'].get('rio-tiler')}, cloudroi {m['versions'].get('cloudroi')}; "
        f"corpus `{p['corpus']}` ({', '.join(_file_text(k, v) for k, v in report['files'].items())}"
        f"); upstream RangeServer with {p['latency'] * 1000:.0f} ms per request; "
        f"{p['sessions']} pan/zoom sessions of {p['steps']} moves, {len(report['sequence'])} "
        f"tiles; {p['runs']} run(s) per cell, median (min-max); every run a fresh service process.",
        "",
        *_table(report["rows"]),
        "",
    ]
    lines += _ratio_lines("cloudroi", report["ratios"])
    for reader, qs in report.get("variant_ratios", {}).items():
        lines += _ratio_lines(reader, qs)
    for reader, per in report["warp_reference"].items():
        lines += [
            f"Pixels, {reader} vs rio-tiler through GDAL's warper (WarpedVRT, every file):",
            "",
            "| file | tiles | valid pixels identical | alpha identical | worst tile |",
            "|---|---|---|---|---|",
            *(_agreement_row(f, ag) for f, ag in per.items()),
            "",
        ]
    for reader, per in report["agreement"].items():
        lines += [
            f"Pixels, {reader} vs TiTiler:",
            "",
            "| file | tiles | valid pixels identical | alpha identical | worst tile |",
            "|---|---|---|---|---|",
            *(_agreement_row(f, ag) for f, ag in per.items()),
            "",
        ]
    if report["targets"]:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for t, meas, met in report["targets"]:
            lines.append(f"| {t} | {meas} | {'yes' if met else '**no**'} |")
    return "\n".join(lines)


def _ratio_lines(reader: str, qs: list[dict[str, Any]]) -> list[str]:
    if not qs:
        return []
    lines = [
        f"{reader} / TiTiler:",
        "",
        "| clients | cache | tiles/s | p99 | upstream bytes/tile | service CPU/tile |",
        "|---|---|---|---|---|---|",
    ]
    for q in qs:
        b = "-" if q["bytes_per_tile"] is None else f"{q['bytes_per_tile']:.2f}"
        lines.append(
            f"| {q['concurrency']} | {q['cache']} | {q['tiles_per_s']:.2f}x | {q['p99']:.2f}x"
            f" | {b} | {q['cpu_per_tile']:.2f}x |"
        )
    return [*lines, ""]


def _agreement_row(f: str, ag: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.3f} %"

    worst = f"{ag['worst_tile']} ({100 * ag['worst_identical']:.2f} %)" if ag["worst_tile"] else "-"
    return (
        f"| {f} | {ag['tiles']} | {pct(ag['identical'])} | {pct(ag['alpha_identical'])} | {worst} |"
    )


def _file_text(name: str, f: dict[str, Any]) -> str:
    return f"{name}: zooms {f['minzoom']}-{f['maxzoom']}"


def machine() -> dict[str, Any]:
    from benchmarks.run import machine as suite_machine

    m = suite_machine()
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("titiler.core", "rio-tiler", "uvicorn", "fastapi"):
        try:
            m["versions"][pkg] = version(pkg)
        except PackageNotFoundError:
            m["versions"][pkg] = "not installed"
    return m


# -- command line -------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def make_plan(args: argparse.Namespace) -> Plan:
    readers = [r for r in args.readers.split(",") if r]
    unknown = set(readers) - set(ALL_READERS)
    if unknown:
        raise SystemExit(f"unknown readers {sorted(unknown)}; known: {', '.join(ALL_READERS)}")
    if args.smoke:
        return Plan(SMOKE, readers, [2], 1, args.latency, False, {}, 4, 2)
    if args.quick:
        return Plan(FULL, readers, [16], 1, args.latency, True, {}, args.sessions, args.steps)
    limits = {1: args.tiles_c1, 4: args.tiles_c4}
    return Plan(
        FULL,
        readers,
        args.concurrency,
        args.runs,
        args.latency,
        not args.no_warm,
        limits,
        args.sessions,
        args.steps,
    )


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.tiles", description=(__doc__ or "").splitlines()[0]
    )
    ap.add_argument("--readers", default=",".join(READERS), help=f"of {','.join(ALL_READERS)}")
    ap.add_argument("--concurrency", type=_ints, default=[1, 4, 16])
    ap.add_argument("--runs", type=int, default=3, help="fresh services per cell")
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tiles-c1", type=int, default=80, help="tiles per run with 1 client")
    ap.add_argument("--tiles-c4", type=int, default=200, help="tiles per run with 4 clients")
    ap.add_argument("--no-warm", action="store_true", help="cold runs only")
    ap.add_argument("--quick", action="store_true", help="16 clients, 1 run")
    ap.add_argument("--smoke", action="store_true", help="toy corpus, 2 clients, cold, 1 run (CI)")
    ap.add_argument("--profile", action="store_true", help="py-spy each service's first run")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(list(argv) if argv is not None else None)
    plan = make_plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        plan.profile_dir = args.out
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "plan": {
            "corpus": plan.corpus.name,
            "readers": plan.readers,
            "concurrency": plan.concurrency,
            "runs": plan.runs,
            "latency": plan.latency,
            "sessions": plan.sessions,
            "steps": plan.steps,
            "limits": plan.limits,
            "titiler_env": TITILER_GDAL_ENV,
        },
        **asyncio.run(run(plan)),
    }
    report["rows"] = summarise(report["runs"])
    report["ratios"] = ratios(report["rows"])
    report["variant_ratios"] = {
        r: ratios(report["rows"], r) for r in plan.readers if r not in ("cloudroi", "titiler")
    }
    report["targets"] = [] if args.smoke else targets(report["rows"])
    text = markdown(report)
    stem = "tiles-smoke" if args.smoke else "tiles-latest"
    (args.out / f"{stem}.md").write_text(text + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print(text)
    errors = sum(r["errors"] for r in report["rows"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
