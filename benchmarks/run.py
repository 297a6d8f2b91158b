"""The benchmark suite: cloudroi beside rasterio (/vsicurl/), tifffile+fsspec, async-tiff and
aiocogeo: same corpus, same range server, same workloads, one run.

    .venv/bin/python -m benchmarks.run [--runs N] [--latency 0.02] [--quick] [--smoke]
                                       [--readers a,b] [--workloads W1,W2] [--profile]

Generates the corpus with GDAL on first use (benchmarks/corpus/, git-ignored), serves it from a
``cloudroi.testing.RangeServer`` on 127.0.0.1 with the injected latency, runs every (workload,
reader) pair in a fresh subprocess per run (cold caches, per-reader peak RSS), takes requests and
bytes from the server's log, checks every reader's pixels against rasterio reading the local file,
and writes results/latest.json and results/latest.md (git-ignored), printing the markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import FULL, SMOKE, CorpusSpec, ensure_corpus
from benchmarks.minimum import FileIndex, minimum_bytes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
ACG_VENV = HERE / ".venv-aiocogeo"
READERS = ["cloudroi", "rasterio", "tifffile", "async-tiff", "aiocogeo"]
LOSSY = {"rgb"}  # JPEG: other decoders differ from GDAL's by a few levels
JPEG_MAX_DIFF = 12
JPEG_MEAN_DIFF = 1.0

Read = tuple[str, int, list[int]]


@dataclass
class Workload:
    key: str
    title: str
    reads: list[Read]
    latency: float | None = None  # None: the suite's --latency
    concurrency: int = 32
    threads: int = 16
    split_open: bool = False


@dataclass
class Cell:
    """One reader on one workload: every run's measurements, and the pixel check."""

    reader: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    pixels: str = "not checked"
    pixels_ok: bool | None = None

    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r.get("ok")]

    def median(self, key: str) -> float | None:
        vals = [r[key] for r in self.ok_runs() if r.get(key) is not None]
        return statistics.median(vals) if vals and self.error is None else None


# -- workloads -----------------------------------------------------------------------------


def build_workloads(spec: CorpusSpec, idx: dict[str, FileIndex]) -> list[Workload]:
    smoke = spec.name == "smoke"
    dem = idx["dem"].levels
    w1 = [300, 200, 512, 512] if smoke else [3100, 4100, 512, 512]
    rng = np.random.default_rng(20240605)
    files = ["dem", "rgb", "multi", "ortho"]
    chips: list[Read] = []
    for i in range(20 if smoke else 200):
        f = files[i % len(files)]
        lv = idx[f].levels[0]
        col = int(rng.integers(0, lv.width - 256))
        row = int(rng.integers(0, lv.height - 256))
        chips.append((f, 0, [col, row, 256, 256]))
    overviews = list(range(1, len(dem))) or [0]
    w3_level = min(overviews, key=lambda k: abs(dem[k].width - 1024))
    w3_win = [0, 0, dem[w3_level].width, dem[w3_level].height]
    w4 = [100, 100, 768, 768] if smoke else [1000, 1500, 4096, 4096]
    bs = spec.sparse.blocksize
    c, r = spec.sparse.written[0]
    w5 = [c * bs + bs // 2, r * bs + bs // 2, bs, bs]
    return [
        Workload("W1", "cold open + one 512x512 window (dem)", [("dem", 0, w1)]),
        Workload(
            "W2",
            f"{len(chips)} random 256x256 chips over 4 files "
            "(async: 32 concurrent; sync: 16 threads)",
            chips,
        ),
        Workload(
            "W3",
            f"whole overview level {w3_level} ({w3_win[2]}x{w3_win[3]}) of dem",
            [("dem", w3_level, w3_win)],
        ),
        Workload(
            "W4",
            f"{w4[2]}x{w4[3]} window of dem, no latency (decode-bound)",
            [("dem", 0, w4)],
            latency=0.0,
        ),
        Workload(
            "W5",
            f"open the {spec.sparse.width}x{spec.sparse.height} sparse file, "
            f"read one {bs}x{bs} window",
            [("sparse", 0, w5)],
            split_open=True,
        ),
    ]


def reference_pixels(paths: dict[str, Path], reads: list[Read]) -> list[np.ndarray]:
    """What rasterio (GDAL) reads from the local files: the pixels every reader must match."""
    import rasterio
    from rasterio.windows import Window

    out = []
    handles: dict[tuple[str, int], Any] = {}
    try:
        for f, level, (c, r, w, h) in reads:
            if (f, level) not in handles:
                kw = {"overview_level": level - 1} if level else {}
                handles[(f, level)] = rasterio.open(paths[f], **kw)
            out.append(handles[(f, level)].read(window=Window(c, r, w, h)))
    finally:
        for ds in handles.values():
            ds.close()
    return out


def compare(reads: list[Read], got: list[np.ndarray], want: list[np.ndarray]) -> tuple[bool, str]:
    """(all equal, a per-file summary): exact for lossless files, a tolerance for JPEG."""
    if len(got) != len(want):
        return False, f"{len(got)} arrays for {len(want)} reads"
    bad: dict[str, int] = {}
    total: dict[str, int] = {}
    first_bad: dict[str, str] = {}
    worst_lossy = 0.0
    for (f, _, win), a, b in zip(reads, got, want, strict=True):
        total[f] = total.get(f, 0) + 1
        why = ""
        if a.shape != b.shape:
            why = f"shape {a.shape} != {b.shape}"
        elif f in LOSSY:
            d = np.abs(a.astype(np.int32) - b.astype(np.int32))
            worst_lossy = max(worst_lossy, float(d.max()))
            if d.max() > JPEG_MAX_DIFF or d.mean() > JPEG_MEAN_DIFF:
                why = f"max diff {d.max()}, mean {d.mean():.2f}"
        elif a.dtype != b.dtype:
            why = f"dtype {a.dtype} != {b.dtype}"
        elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            why = f"{np.count_nonzero(a != b)} of {a.size} pixels differ"
        if why:
            bad[f] = bad.get(f, 0) + 1
            first_bad.setdefault(f, f"{why} at {win}")
    if bad:
        parts = [f"{f}: {n}/{total[f]} reads differ ({first_bad[f]})" for f, n in bad.items()]
        return False, "**MISMATCH** " + "; ".join(parts)
    if any(f in LOSSY for f in total):
        return True, f"equal (JPEG max diff {worst_lossy:g})"
    return True, "equal"


def decode_floor(paths: dict[str, Path], reads: list[Read], runs: int) -> float:
    """Median seconds to decode every block the reads touch, from bytes already in memory, with
    tifffile's codecs on one thread per core: no I/O, no assembly, the floor under any reader."""
    import tifffile

    from benchmarks.tilegrid import tiles_for_window

    jobs: list[tuple[Any, bytes, int]] = []
    seen: set[tuple[str, int, int]] = set()
    handles = {}
    try:
        for f, level, win in reads:
            if f not in handles:
                handles[f] = tifffile.TiffFile(paths[f])
            page = handles[f].series[0].levels[level].keyframe
            ntx = -(-page.imagewidth // page.tilewidth)
            for c, r in tiles_for_window(
                win, page.tilewidth, page.tilelength, page.imagewidth, page.imagelength
            ):
                i = r * ntx + c
                off, cnt = page.dataoffsets[i], page.databytecounts[i]
                if (f, level, i) in seen or not off or not cnt:
                    continue
                seen.add((f, level, i))
                fh = handles[f].filehandle
                fh.seek(off)
                jobs.append((page, fh.read(cnt), i))
        decoders = [(page.decode, data, i, page.jpegtables) for page, data, i in jobs]
        times = []
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            for _ in range(max(runs, 1)):
                t0 = time.perf_counter()
                list(pool.map(lambda j: j[0](j[1], j[2], jpegtables=j[3]), decoders))
                times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        for h in handles.values():
            h.close()


# -- aiocogeo's own venv --------------------------------------------------------------------


def _old_python() -> str | None:
    """An interpreter aiocogeo's pins (aiohttp 3.6) have wheels for: 3.8, else None."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python"))]
    candidates += [c for c in (shutil.which("python3.8"),) if c]
    for c in candidates:
        probe = subprocess.run(
            [c, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and "(3, 8)" in probe.stdout:
            return c
    return None


def ensure_aiocogeo(build: bool) -> tuple[str | None, str]:
    """(python of the aiocogeo venv or None, why not)."""
    py = ACG_VENV / "bin" / "python"
    marker = ACG_VENV / "READY"
    if marker.exists():
        return str(py), ""
    failed = ACG_VENV / "FAILED"
    if failed.exists():
        return None, failed.read_text().strip()
    if not build:
        return None, "its venv (benchmarks/.venv-aiocogeo) is not built; the full suite builds it"
    base = _old_python() or sys.executable
    print(f"  aiocogeo: building {ACG_VENV.name} with {base} ...", flush=True)
    steps = [
        [base, "-m", "venv", str(ACG_VENV)],
        # pydantic<2 and botocore: aiocogeo 0.3's imports need them and its metadata omits them
        [str(py), "-m", "pip", "install", "-q", "aiocogeo==0.3.0", "pydantic<2", "botocore"],
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            why = f"`{' '.join(cmd[-3:])}` failed: {' / '.join(tail)}"[:400]
            ACG_VENV.mkdir(exist_ok=True)
            failed.write_text(why)
            return None, why
    check = subprocess.run([str(py), "-c", "import aiocogeo"], capture_output=True, text=True)
    if check.returncode != 0:
        why = "import aiocogeo failed: " + check.stderr.strip().splitlines()[-1][:300]
        failed.write_text(why)
        return None, why
    marker.write_text(base)
    return str(py), ""


# -- running -------------------------------------------------------------------------------


def _worker_cmd(reader: str, acg_python: str | None, job_path: Path) -> list[str]:
    if reader == "aiocogeo":
        assert acg_python is not None
        return [acg_python, str(HERE / "aiocogeo_worker.py"), str(job_path)]
    return [sys.executable, "-m", "benchmarks.worker", str(job_path)]


#: The row of cloudroi with ``multirange=True``.
MULTIRANGE = "cloudroi[multirange]"


def parse_variants(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``--variant NAME=JSON``: extra cloudroi rows, e.g. ``notrust={"context":
    {"trust_env": false}}``; keys ``context`` (ContextOptions), ``open`` (ImageOptions),
    ``session`` (aiohttp.ClientSession keyword arguments)."""
    out = {}
    for spec in specs:
        name, _, js = spec.partition("=")
        out[f"cloudroi[{name}]"] = json.loads(js)
    return out


def run_worker(
    reader: str,
    job: dict[str, Any],
    acg_python: str | None,
    tmp: Path,
    timeout: float,
    prefix: list[str] | None = None,
) -> dict[str, Any]:
    job_path = tmp / f"job-{reader}-{time.monotonic_ns()}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ)
    env.update(
        {
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
        }
    )
    try:
        proc = subprocess.run(
            (prefix or []) + _worker_cmd(reader, acg_python, job_path),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    finally:
        job_path.unlink(missing_ok=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"worker exited {proc.returncode}: {err}"[:500]}


def traffic(log: list[Any], latency: float, open_done: float | None) -> dict[str, Any]:
    """Requests, bytes and sequential round trips from the server's log of one run."""
    times = sorted(e.at for e in log)
    rounds = None
    if latency > 0 and times:
        rounds = 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > latency / 2)
    out: dict[str, Any] = {
        "requests": len(log),
        "bytes": sum(e.body_bytes for e in log),
        "rounds": rounds,
        "ranges": [e.range for e in log][:50],
    }
    if open_done is not None:
        opened = [e for e in log if e.at <= open_done]
        out["open_requests"] = len(opened)
        out["open_bytes"] = sum(e.body_bytes for e in opened)
        out["read_requests"] = len(log) - len(opened)
        out["read_bytes"] = out["bytes"] - out["open_bytes"]
    return out


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_workload(
    wl: Workload,
    readers: list[str],
    runs: int,
    server: Any,
    files: dict[str, dict[str, str]],
    reference: list[np.ndarray],
    unavailable: dict[str, str],
    acg_python: str | None,
    tmp: Path,
    base_latency: float,
    profile_dir: Path | None,
    variants: dict[str, dict[str, Any]],
) -> dict[str, Cell]:
    latency = base_latency if wl.latency is None else wl.latency
    server.latency = latency
    cells = {r: Cell(r) for r in readers}
    for r, why in unavailable.items():
        if r in cells:
            cells[r].error = f"not runnable: {why}"
    base_job = {
        "files": files,
        "reads": [list(x) for x in wl.reads],
        "base_url": server.url(""),
        "concurrency": wl.concurrency,
        "threads": wl.threads,
    }
    timeout = 600.0
    for run in range(runs):
        # Readers take turns within each round, so drift in the machine's speed hits all alike.
        for reader in readers:
            cell = cells[reader]
            if cell.error is not None:
                continue
            save = tmp / f"{wl.key}-{reader}.npz" if run == 0 else None
            job = {
                **base_job,
                "reader": reader,
                "save": str(save) if save else None,
                "variant": variants.get(reader, {}),
            }
            server.reset()
            cpu0 = _own_cpu()
            res = run_worker(reader, job, acg_python, tmp, timeout)
            # This process only waits on the worker meanwhile, so its CPU is the server's.
            res["server_cpu"] = _own_cpu() - cpu0
            log = list(server.log)
            res.update(traffic(log, latency, res.get("open_done") if wl.split_open else None))
            res.pop("traceback", None) if res.get("ok") else None
            cell.runs.append(res)
            if not res.get("ok"):
                cell.error = f"failed: {res.get('error')}"
                continue
            if save is not None:
                with np.load(save) as z:
                    got = [z[f"arr_{i}"] for i in range(len(z.files))]
                cell.pixels_ok, cell.pixels = compare(wl.reads, got, reference)
                save.unlink()
    if profile_dir is not None and "cloudroi" in readers and cells["cloudroi"].error is None:
        out = profile_dir / f"profile-{wl.key}-cloudroi.txt"
        server.reset()
        run_worker(
            "cloudroi",
            {**base_job, "reader": "cloudroi", "profile": str(out)},
            acg_python,
            tmp,
            timeout,
        )
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if Path(pyspy).exists():
            from benchmarks.pyspy_summary import summarise as summarise_pyspy

            # py-spy sees every thread (the decode pool too) and native waits; pyinstrument
            # sees only the event loop's thread.
            raw = profile_dir / f"pyspy-{wl.key}-cloudroi.raw"
            server.reset()
            prefix = [
                pyspy,
                "record",
                "-r",
                "250",
                "--threads",
                "--idle",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--",
            ]
            run_worker(
                "cloudroi", {**base_job, "reader": "cloudroi"}, acg_python, tmp, timeout, prefix
            )
            if raw.exists():
                (profile_dir / f"pyspy-{wl.key}-cloudroi.txt").write_text(
                    summarise_pyspy(raw, 250) + "\n"
                )
    return cells


# -- reporting -----------------------------------------------------------------------------


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 2**20:
        return f"{n / 2**20:.2f} MiB"
    return f"{n / 2**10:.1f} KiB"


def summarise(wl: Workload, cells: dict[str, Cell], minimum: dict[str, int]) -> dict[str, Any]:
    rows = {}
    for name, cell in cells.items():
        ok = cell.ok_runs()
        growth = [r["rss_peak"] - r["rss_before"] for r in ok if "rss_peak" in r]
        row: dict[str, Any] = {
            "error": cell.error,
            "runs": len(ok),
            "wall_median": cell.median("wall"),
            "wall_min": min((r["wall"] for r in ok), default=None),
            "wall_max": max((r["wall"] for r in ok), default=None),
            "open_median": cell.median("open_wall"),
            "cpu_median": cell.median("cpu"),
            "server_cpu_median": cell.median("server_cpu"),
            "requests": cell.median("requests"),
            "rounds": cell.median("rounds"),
            "bytes": cell.median("bytes"),
            "rss_peak": cell.median("rss_peak"),
            "rss_growth": statistics.median(growth) if growth and cell.error is None else None,
            "pixels": cell.pixels,
            "pixels_ok": cell.pixels_ok,
        }
        if wl.split_open:
            for k in ("open_requests", "open_bytes", "read_requests", "read_bytes"):
                row[k] = cell.median(k)
        if row["bytes"] is not None and minimum["total"]:
            row["bytes_ratio"] = row["bytes"] / minimum["total"]
        rows[name] = row
    base = rows.get("cloudroi", {}).get("wall_median")
    for row in rows.values():
        other = row["wall_median"]
        row["cloudroi_ratio"] = base / other if base and other else None
    return {
        "key": wl.key,
        "title": wl.title,
        "minimum": minimum,
        "rows": rows,
        "latency": wl.latency,
    }


def markdown_table(s: dict[str, Any], latency: float) -> str:
    lat = latency if s["latency"] is None else s["latency"]
    m = s["minimum"]
    lines = [
        f"### {s['key']}: {s['title']}",
        "",
        f"latency {lat * 1000:.0f} ms per request; minimum bytes {_fmt_bytes(m['total'])} "
        f"(header {_fmt_bytes(m['header'])} + {m['blocks']} blocks "
        f"{_fmt_bytes(m['block_bytes'])}); decode floor {s.get('decode_floor', 0):.3f} s "
        "(the same blocks decoded from memory by tifffile's codecs, one thread per core); "
        f"load average {s.get('loadavg', 0):.2f}",
        "",
    ]
    split = any("open_bytes" in r for r in s["rows"].values())
    head = [
        "reader",
        "median s",
        "min-max s",
        "CPU s",
        "server CPU s",
        "requests",
        "rounds",
        "bytes",
        "bytes/min",
    ]
    if split:
        head += ["open req", "open bytes", "read req", "read bytes"]
    head += ["peak RSS MiB", "RSS growth MiB", "cloudroi / reader", "pixels vs rasterio"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in s["rows"].items():
        if r["error"]:
            cells = [name, r["error"].replace("|", "/")] + [""] * (len(head) - 2)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [
            name,
            f"{r['wall_median']:.3f}",
            f"{r['wall_min']:.3f}-{r['wall_max']:.3f}",
            "-" if r["cpu_median"] is None else f"{r['cpu_median']:.2f}",
            "-" if r.get("server_cpu_median") is None else f"{r['server_cpu_median']:.2f}",
            f"{r['requests']:.0f}",
            "-" if r["rounds"] is None else f"{r['rounds']:.0f}",
            _fmt_bytes(r["bytes"]),
            f"{r.get('bytes_ratio', 0):.2f}x",
        ]
        if split:
            cells += [
                f"{r['open_requests']:.0f}",
                _fmt_bytes(r["open_bytes"]),
                f"{r['read_requests']:.0f}",
                _fmt_bytes(r["read_bytes"]),
            ]
        cells += [
            _mib(r["rss_peak"]),
            _mib(r["rss_growth"]),
            "-"
            if r["cloudroi_ratio"] is None or name == "cloudroi"
            else f"{r['cloudroi_ratio']:.2f}",
            r["pixels"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """(workload, target, measured, met) for the issue's targets."""
    out: list[tuple[str, str, str, bool | None]] = []

    def row(key: str, name: str) -> dict[str, Any] | None:
        s = summaries.get(key)
        r = s["rows"].get(name) if s else None
        return r if r and not r["error"] else None

    def time_ratio(key: str, limit: float) -> None:
        c, g = row(key, "cloudroi"), row(key, "rasterio")
        if c and g:
            ratio = c["wall_median"] / g["wall_median"]
            out.append(
                (
                    key,
                    f"time <= {limit}x rasterio",
                    f"{ratio:.2f}x ({c['wall_median']:.3f} vs {g['wall_median']:.3f} s)",
                    ratio <= limit,
                )
            )
        else:
            out.append((key, f"time <= {limit}x rasterio", "not measured", None))

    def byte_ratio(key: str, limit: float) -> None:
        c = row(key, "cloudroi")
        if c and "bytes_ratio" in c:
            out.append(
                (
                    key,
                    f"bytes <= {limit}x minimum",
                    f"{c['bytes_ratio']:.3f}x",
                    c["bytes_ratio"] <= limit,
                )
            )

    c1 = row("W1", "cloudroi")
    if c1:
        out.append(("W1", "<= 3 requests", f"{c1['requests']:.0f}", c1["requests"] <= 3))
        m1 = row("W1", MULTIRANGE)
        if m1:
            out.append(
                (
                    "W1",
                    "<= 3 requests (multirange=True)",
                    f"{m1['requests']:.0f}",
                    m1["requests"] <= 3,
                )
            )
        if c1["rounds"] is not None:
            out.append(("W1", "<= 2 round trips", f"{c1['rounds']:.0f}", c1["rounds"] <= 2))
    byte_ratio("W1", 1.1)
    time_ratio("W1", 0.5)
    time_ratio("W2", 0.5)
    byte_ratio("W2", 1.1)
    time_ratio("W3", 0.5)
    time_ratio("W4", 0.7)
    byte_ratio("W4", 1.1)
    c5 = row("W5", "cloudroi")
    if c5 and c5.get("open_bytes") is not None:
        out.append(
            ("W5", "open <= 64 KiB", _fmt_bytes(c5["open_bytes"]), c5["open_bytes"] <= 64 * 1024)
        )
        m = summaries["W5"]["minimum"]
        out.append(
            (
                "W5",
                "read adds only index slices + blocks",
                f"{_fmt_bytes(c5['read_bytes'])} read vs {_fmt_bytes(m['block_bytes'])} of blocks",
                c5["read_bytes"] <= 1.1 * m["block_bytes"] + 64 * 1024,
            )
        )
    if c5 and c5.get("rss_growth") is not None:
        out.append(
            (
                "W5",
                "RSS growth <= 50 MiB",
                _mib(c5["rss_growth"]) + " MiB",
                c5["rss_growth"] <= 50 * 2**20,
            )
        )
    return out


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for pkg in (
        "cloudroi",
        "rasterio",
        "tifffile",
        "imagecodecs",
        "fsspec",
        "aiohttp",
        "async-tiff",
        "obstore",
        "numpy",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        import rasterio

        versions["GDAL"] = rasterio.__gdal_version__
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def service_load(args: argparse.Namespace, tmp: Path) -> tuple[str, dict[str, Any] | None]:
    """W6 comes from benchmarks/service_load.py (written with the service) when it exists."""
    script = HERE / "service_load.py"
    if not script.exists():
        return (
            "W6 (/region 512x512 PNG requests/s): pending (benchmarks/service_load.py "
            "does not exist yet)",
            None,
        )
    out = tmp / "service_load.json"
    cmd = [sys.executable, "-m", "benchmarks.service_load", "--json", str(out)]
    if args.quick or args.smoke:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return "W6: failed: benchmarks.service_load timed out", None
    if proc.returncode != 0 or not out.exists():
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"W6: failed: benchmarks.service_load exited {proc.returncode}: {err}", None
    data = json.loads(out.read_text())
    md = data.get("markdown") if isinstance(data, dict) else None
    body = md or "```\n" + json.dumps(data, indent=1)[:4000] + "\n```"
    return "### W6: the service, /region 512x512 PNG\n\n" + body, data


def render(report: dict[str, Any], latency: float) -> str:
    mach = report["machine"]
    v = mach["versions"]
    parts = [
        "## Benchmark results",
        "",
        f"{report['when']}; {report['runs']} run(s) per cell, median shown; "
        f"corpus `{report['corpus']}`; injected latency {latency * 1000:.0f} ms.",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, "
        f"Python {mach['python']}, GDAL {v.get('GDAL')}, rasterio {v.get('rasterio')}, "
        f"tifffile {v.get('tifffile')}, imagecodecs {v.get('imagecodecs')}, "
        f"async-tiff {v.get('async-tiff')}, obstore {v.get('obstore')}.",
        "",
        "Every run is a fresh process (cold caches). Time covers opening the files and all reads. "
        "Requests and bytes are counted by the server. Rounds = sequential round trips seen by "
        "the server. Peak RSS is the worker process's high-water RSS (VmHWM); RSS growth is that "
        "peak minus "
        "the RSS after imports. CPU s is the worker's user+system time (all threads): steadier "
        "than wall time when the machine is shared; server CPU s is the range server's (it shares "
        "the two cores with the reader). `cloudroi / reader` < 1 means cloudroi is "
        "faster. Load average is the machine's at the start of each workload.",
        "",
    ]
    for s in report["workloads"].values():
        parts += [markdown_table(s, latency), ""]
    parts += [report["w6"], ""]
    if report["targets"]:
        parts += [
            "### Targets (cloudroi)",
            "",
            "| workload | target | measured | met |",
            "|---|---|---|---|",
        ]
        for key, target, measured, met in report["targets"]:
            mark = "n/a" if met is None else ("yes" if met else "**no**")
            parts.append(f"| {key} | {target} | {measured} | {mark} |")
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 5; quick 3)")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to each request")
    ap.add_argument("--quick", action="store_true", help="3 runs per cell")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="toy corpus, 1 run, no timing claims: every reader runs, pixels match",
    )
    ap.add_argument(
        "--readers",
        default=None,
        help=f"comma-separated, of {','.join(READERS)} (default: all, plus {MULTIRANGE})",
    )
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile cloudroi on each workload (pyinstrument and py-spy; "
        "results/profile-*.txt, results/pyspy-*.txt)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="add a cloudroi row with other options (see parse_variants)",
    )
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.smoke else 3 if args.quick else 5)
    spec = SMOKE if args.smoke else FULL
    readers = [r for r in (args.readers or ",".join(READERS)).split(",") if r]
    # cloudroi with multi-range GETs (opt-in: S3 and GCS do not answer them; this server does,
    # as nginx and Apache do) beside the default, unless the readers were chosen by hand.
    variants: dict[str, dict[str, Any]] = (
        {} if args.readers else {MULTIRANGE: {"open": {"multirange": True}}}
    )
    variants.update(parse_variants(args.variant))
    readers += list(variants)
    wanted = set(args.workloads.split(","))

    from cloudroi.testing import RangeServer

    print(f"corpus {spec.name}:", flush=True)
    paths = ensure_corpus(spec)
    idx = {name: FileIndex.load(p) for name, p in paths.items()}
    workloads = [w for w in build_workloads(spec, idx) if w.key in wanted]

    unavailable: dict[str, str] = {}
    acg_python = None
    if "aiocogeo" in readers:
        acg_python, why = ensure_aiocogeo(build=not args.smoke)
        if acg_python is None:
            unavailable["aiocogeo"] = why
    for r in readers:
        mod = {"async-tiff": "async_tiff", "tifffile": "fsspec"}.get(r)
        if mod:
            try:
                __import__(mod)
            except ImportError as exc:
                unavailable[r] = f"not installed ({exc})"

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
        "corpus": spec.name,
        "latency": args.latency,
        "machine": machine(),
        "readers": readers,
        "unavailable": unavailable,
        "workloads": {},
        "w6": "",
    }
    server = RangeServer(latency=args.latency)
    for name, p in paths.items():
        server.add(f"{name}.tif", p.read_bytes())
    with server, tempfile.TemporaryDirectory(prefix="cloudroi-bench-") as tmpdir:
        tmp = Path(tmpdir)
        files = {n: {"url": server.url(f"{n}.tif"), "path": f"{n}.tif"} for n in paths}
        for wl in workloads:
            t0 = time.perf_counter()
            load = os.getloadavg()[0]
            print(f"{wl.key}: {wl.title} ...", flush=True)
            per_file: dict[str, list[tuple[int, list[int]]]] = {}
            for f, level, win in wl.reads:
                per_file.setdefault(f, []).append((level, win))
            header = block_bytes = blocks = 0
            for f, rs in per_file.items():
                h, b, n = minimum_bytes(idx[f], rs)
                header, block_bytes, blocks = header + h, block_bytes + b, blocks + n
            minimum = {
                "header": header,
                "block_bytes": block_bytes,
                "blocks": blocks,
                "total": header + block_bytes,
            }
            reference = reference_pixels(paths, wl.reads)
            floor = decode_floor(paths, wl.reads, runs)
            cells = run_workload(
                wl,
                readers,
                runs,
                server,
                files,
                reference,
                unavailable,
                acg_python,
                tmp,
                args.latency,
                args.out if args.profile else None,
                variants,
            )
            summary = summarise(wl, cells, minimum)
            summary["decode_floor"] = floor
            summary["loadavg"] = load
            summary["raw"] = {n: c.runs for n, c in cells.items()}
            report["workloads"][wl.key] = summary
            print(markdown_table(summary, args.latency), flush=True)
            print(f"  ({time.perf_counter() - t0:.1f} s)\n", flush=True)
        if "W6" in wanted:
            report["w6"], report["w6_data"] = service_load(args, tmp)
    report["targets"] = [] if args.smoke else targets(report["workloads"])
    md = render(report, args.latency)
    stem = "smoke" if args.smoke else "latest"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / f"{stem}.md").write_text(md + "\n")
    print(md)
    failed_pixels = [
        f"{k}/{n}"
        for k, s in report["workloads"].items()
        for n, r in s["rows"].items()
        if r["pixels_ok"] is False
    ]
    if failed_pixels:
        print("pixel mismatches: " + ", ".join(failed_pixels), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
