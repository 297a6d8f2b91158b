"""Cold start of the Lambda function, measured as Lambda would start it, without AWS.

Each sample is a fresh ``python -m awslambdaric cloudroi.serverless.handler`` process against a
Runtime API on 127.0.0.1 (``tests/lambda_runtime_api.py``), its event queued before the process
starts, so the figure is process start -> first response, the whole cold path: interpreter,
runtime client, handler import, service state, the request itself. The sources are COGs served
by ``cloudroi.testing.RangeServer`` (no latency added). Three requests, each in its own process:
``/info``, a ``/region`` PNG and a reprojected ``/tiles`` PNG. Also measured: a second (warm)
request in the same process, the process's peak RSS (``VmHWM``) after both, and the handler's
import alone (``python -X importtime -c "import cloudroi.serverless"``, in a fresh process).

    python -m benchmarks.lambda_cold                  # 5 samples each (about 30 s)
    python -m benchmarks.lambda_cold --runs 1 --json out.json    # the smoke version (CI)
    python -m benchmarks.lambda_cold --snapstart      # run the SnapStart hooks as Lambda does
    python -m benchmarks.lambda_cold --package deploy/aws-sam/.build/package    # a built zip

``--package DIR`` runs the function from an unpacked ``build_zip.py`` package instead of this
source tree, as Lambda does: ``python -S`` (no site-packages), ``PYTHONPATH=DIR``, the directory
never written to. From the source tree, the benchmark first compiles cloudroi's byte code (the
zip ships it; dependencies have theirs from pip), and no function process writes byte code: a
sample never includes compiling cloudroi, nor does one sample warm the next.

``--snapstart`` sets ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``: the runtime client runs the
before-snapshot hooks, asks the Runtime API for ``/restore/next`` and runs the after-restore hooks
before the first invocation. The clock then starts when the restore is answered (what a restored
execution environment pays); the init before it is reported separately.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloudroi.cog import write_cog
from cloudroi.testing import RangeServer
from tests.lambda_runtime_api import RuntimeClient

ROOT = Path(__file__).resolve().parent.parent
HANDLER = "cloudroi.serverless.handler"
#: Targets on the development machine (issue 15).
TARGET_FIRST_RESPONSE_S = 0.5
TARGET_IMPORT_MS = 150.0
#: The environment template-zip.yaml gives the function besides its CLOUDROI_* settings (a test
#: checks they agree): the function runs here as it is configured there.
FUNCTION_ENV = {"OPENBLAS_NUM_THREADS": "1"}
#: Set by some shells and CI images, never by Lambda: they choose the trust store, so a function
#: started with them would not load TLS as it does on Lambda (cloudroi.service.trust).
LAMBDA_UNSET = ("SSL_CERT_FILE", "SSL_CERT_DIR", "PROJ_CURL_CA_BUNDLE")
#: A tile of the UTM 33N scene below, at zoom 12 in WebMercatorQuad (reprojected).
TILE = (12, 2220, 1296)


@dataclass
class Sample:
    first_s: float  # process start (or restore) -> first response
    warm_s: float  # the same request again, same process
    rss_mb: float  # peak RSS (VmHWM) after both
    cpu_s: float  # the process's CPU time (user + system) up to the first response (from the
    # restore with --snapstart)
    init_s: float = 0.0  # --snapstart: process start -> snapshot point


@dataclass
class Result:
    request: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))


def corpus() -> dict[str, bytes]:
    """A 2048 x 2048 uint16 COG in UTM 33N (EPSG:32633) with overviews."""
    yy, xx = np.mgrid[0:2048, 0:2048]
    data = ((xx * 7 + yy * 3) % 4096).astype(np.uint16)
    transform = (500000.0, 10.0, 0.0, 6100000.0, 0.0, -10.0)
    return {"scene.tif": write_cog(data, tile=256, epsg=32633, transform=transform, overviews=3)}


def event(path: str, query: str) -> dict[str, Any]:
    doc = json.loads((ROOT / "tests" / "events" / "function-url.json").read_text())
    doc["rawPath"] = doc["requestContext"]["http"]["path"] = path
    doc["rawQueryString"] = query
    return doc


#: Run with ``-S`` from an unpacked zip package (PYTHONPATH = the package): does it use what it
#: ships for the cold start? The code table (``compiled``: generated texts compiled anyway,
#: ``unserved``: generating modules loaded without their shim), the pattern table (``patterns``:
#: installed by the handler's import; ``pattern_table``: written by this Python's re; ``parsed``:
#: [module, pattern] parsed anyway) and the CA directory (``loaded``: CAs parsed up front by
#: aiohttp's contexts). test_deploy.py and check_arm64.py run it.
PACKAGE_CHECK = """
import builtins, json, os, sys
import re._parser
parsed = []
parse = re._parser.parse
def spy_parse(pattern, *args):  # a pattern parsed: one the pattern table did not serve
    caller = sys._getframe(1)
    while caller.f_globals.get("__name__", "") in ("re", "re._compiler"):
        caller = caller.f_back
    if isinstance(pattern, (str, bytes)):  # (bytes shown by repr: str() warns under -b)
        text = pattern if isinstance(pattern, str) else repr(pattern)
        parsed.append([caller.f_globals.get("__name__"), text[:300]])
    return parse(pattern, *args)
re._parser.parse = spy_parse
calls = []
def spy(name):
    real = getattr(builtins, name)
    def call(source, *args, **kwargs):  # which module compiles a text (sorted out below)
        if isinstance(source, str):
            caller = sys._getframe(1)
            calls.append((caller.f_globals.get("__name__"), caller.f_code, source[:200]))
        return real(source, *args, **kwargs)
    return call
for name in ("compile", "exec", "eval"):
    setattr(builtins, name, spy(name))
import cloudroi.serverless
from cloudroi.service import codecache, patterncache, snapstart
snapstart.prepare()
import attr._make, collections, typing
from aiohttp import connector
# a text compiled by a generating module, or by the code table's fallback (a text it lacks)
texts = [t for m, c, t in calls if m in codecache.SITES or c is codecache._compile.__code__]
loaded = [m for m in codecache.SITES if m in sys.modules]  # the generating modules loaded
print(json.dumps({
    "table": codecache.installed(),
    "compiled": len(texts),
    "sample": texts[:3],
    "served": sorted(m for m in loaded if codecache.SITES[m] in vars(sys.modules[m])),
    "unserved": sorted(m for m in loaded if codecache.SITES[m] not in vars(sys.modules[m])),
    "patterns": patterncache.installed(),
    "pattern_table": patterncache._load(patterncache.table_path()) is not None,  # this re's
    "parsed": parsed,
    "loaded": len(connector._SSL_CONTEXT_VERIFIED.get_ca_certs()),
    "env": sorted(k for k in os.environ if k.startswith("SSL_CERT")),
}))
"""
#: Patterns that differ from process to process, so that no table can serve them: email's
#: character classes built from sets (whose order follows the per-process string hash), as
#: ``[^...]+`` and ``([...]+)``.
_MEMBERS = r"(?:\\.|[^\\\]])+"  # a character class's members: escapes, other characters
UNSTABLE_PATTERNS = {"email._header_value_parser": rf"\[\^{_MEMBERS}\]\+|\(\[{_MEMBERS}\]\+\)"}


def unexplained(parsed: list[list[str]]) -> list[list[str]]:
    """PACKAGE_CHECK's patterns parsed at run time, but for those of ``UNSTABLE_PATTERNS``."""
    return [
        [module, pattern]
        for module, pattern in parsed
        if not (
            module in UNSTABLE_PATTERNS and re.fullmatch(UNSTABLE_PATTERNS[module], pattern, re.S)
        )
    ]


#: ``--floor``: what each request cannot do without, in a process of the package (``-S``): the
#: helpers ``cloudroi.serverless`` installs first (which import cloudroi's package and errors),
#: the runtime client, asyncio, numpy and aiohttp (the TIFF parser, the HTTP client), then the
#: least each request asks of its libraries: a CRS description for ``/info``, a deflate decode
#: and a PNG for ``/region``, those and a tile matrix set and a transformer for ``/tiles``. No
#: endpoint, no read. Timed from process start to ``os._exit`` (no teardown): the least a first
#: response can take here with these libraries, whatever cloudroi does.
FLOOR_BASE = """
import os
from cloudroi.service import patterncache
patterncache.install()
from cloudroi.service import codecache, gcpause, trust
gcpause.pause(), trust.use_packaged_ca(), codecache.install()
import asyncio, awslambdaric.bootstrap, aiohttp, numpy
"""
_PNG = "imagecodecs.zlib_decode(imagecodecs.zlib_encode(b'x'))\n" + (
    "imagecodecs.png_encode(numpy.zeros((8, 8), 'u1'))\n"
)
FLOORS = {
    "/info": "import pyproj\npyproj.CRS(32633).to_wkt()\n",
    "/region": "import imagecodecs\n" + _PNG,
    "/tiles": "import imagecodecs, morecantile, pyproj\nmorecantile.tms.get('WebMercatorQuad')\n"
    + "pyproj.Transformer.from_crs(32633, 3857, always_xy=True).transform(5e5, 6.1e6)\n"
    + _PNG,
}


def floor_s(request: str, fn: Function, runs: int) -> list[float]:
    """``runs`` fresh processes doing only ``FLOORS[request]``: seconds each, start to exit."""
    code = FLOOR_BASE + FLOORS[request] + "os._exit(0)\n"
    env = {k: v for k, v in os.environ.items() if k not in LAMBDA_UNSET}
    env.update({**FUNCTION_ENV, **fn.env, "PYTHONDONTWRITEBYTECODE": "1"})
    env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9"  # (the collector's pause, as on Lambda)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [fn.python, *fn.args, "-c", code],
            cwd=fn.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        times.append(time.perf_counter() - started)
        if done.returncode:
            raise RuntimeError(f"the floor of {request} failed: {done.stderr[-2000:]}")
    return times


def floor_table(results: list[Result], floors: dict[str, list[float]]) -> str:
    """Each request's floor beside its first response; ``rest``: the median of the differences
    of the pairs (a first response and a floor, run one after the other)."""
    lines = [
        "| request | first response, median s | floor, median (min-max) s | the rest, median s |",
        "|---|---|---|---|",
    ]
    for r in results:
        f = floors[r.request]
        rest = statistics.median(s.first_s - t for s, t in zip(r.samples, f, strict=True))
        lines.append(
            f"| {r.request} | {r.median('first_s'):.3f} | **{statistics.median(f):.3f}**"
            f" ({min(f):.3f}-{max(f):.3f}) | {rest:.3f} |"
        )
    return "\n".join(lines)


def calibration_ms() -> float:
    """A fixed pure-Python loop, best of 5, in ms: how fast this box runs the interpreter now
    (it moves from minute to minute here, by up to 1.8x), printed beside the figures."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i % 7
        best = min(best, time.perf_counter() - started)
    return best * 1000


def requests(server: RangeServer) -> dict[str, dict[str, Any]]:
    url = server.url("scene.tif")
    z, x, y = TILE
    return {
        "/info": event("/info", f"url={url}"),
        "/region": event("/region", f"url={url}&window=512,512,512,512&format=png"),
        "/tiles": event(f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", f"url={url}"),
    }


def peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def answered(kind: str, doc: Any) -> None:
    if kind != "response" or doc.get("statusCode") != 200:
        raise RuntimeError(f"the function answered {kind}: {str(doc)[:500]}")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of ``pid`` so far (less sensitive to other load than wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Function:
    """How the function's process starts: the interpreter, its arguments, the directory."""

    python: str = sys.executable
    args: tuple[str, ...] = ()
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def package(cls, path: Path) -> Function:
        """From an unpacked zip package (Lambda: /var/task on PYTHONPATH, no site-packages)."""
        task = str(path.resolve())
        return cls(
            getattr(sys, "_base_executable", sys.executable),
            ("-S",),
            Path(task),
            {"PYTHONPATH": task},
        )


def one_sample(doc: dict[str, Any], env: dict[str, str], snapstart: bool, fn: Function) -> Sample:
    client = RuntimeClient(
        fn.python,
        HANDLER,
        {**env, **fn.env},
        timeout=120,
        cwd=str(fn.cwd),
        python_args=fn.args,
    )
    request_id = client.api.invoke(doc)  # queued before the process exists
    started = time.perf_counter()
    with client:
        init_s = init_cpu = 0.0
        assert client.proc is not None
        if snapstart:
            client.api.wait_restore(120)
            init_s = time.perf_counter() - started
            init_cpu = cpu_seconds(client.proc.pid)
            started = time.perf_counter()
            client.api.restore()
        kind, first = client.api.wait(request_id, 120)
        first_s = time.perf_counter() - started
        answered(kind, first)
        cpu_s = cpu_seconds(client.proc.pid) - init_cpu
        t = time.perf_counter()
        kind, warm = client.invoke(doc)
        warm_s = time.perf_counter() - t
        answered(kind, warm)
        rss = peak_rss_mb(client.proc.pid)
    return Sample(first_s, warm_s, rss, cpu_s, init_s)


def import_ms(runs: int, fn: Function) -> tuple[float, list[tuple[str, float]]]:
    """The handler's import (ms, best of ``runs`` fresh processes) and its heaviest top-level
    packages (self time summed, ms) in the best run."""
    best: tuple[float, list[tuple[str, float]]] = (float("inf"), [])
    argv = [fn.python, *fn.args, "-X", "importtime", "-c", "import cloudroi.serverless"]
    for _ in range(runs):
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=str(fn.cwd),
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **fn.env},
        )
        total, by_package = parse_importtime(proc.stderr)
        if total < best[0]:
            best = (total, by_package)
    return best


def parse_importtime(text: str) -> tuple[float, list[tuple[str, float]]]:
    total = 0.0
    packages: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if not m:
            continue
        self_us, cumulative_us, name = int(m.group(1)), int(m.group(2)), m.group(4)
        if name == "cloudroi.serverless":
            total = cumulative_us / 1000
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0.0) + self_us / 1000
    heaviest = sorted(packages.items(), key=lambda kv: -kv[1])[:8]
    return total, [(k, round(v, 1)) for k, v in heaviest]


def markdown(results: list[Result], imports: tuple[float, list[tuple[str, float]]]) -> str:
    lines = [
        "| request | first response, median (min-max) s | CPU to first response, median s "
        "| warm, median ms | peak RSS, MB |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        firsts = [s.first_s for s in r.samples]
        lines.append(
            f"| {r.request} | **{r.median('first_s'):.3f}** ({min(firsts):.3f}-{max(firsts):.3f})"
            f" | {r.median('cpu_s'):.2f} | {r.median('warm_s') * 1000:.1f}"
            f" | {max(s.rss_mb for s in r.samples):.0f} |"
        )
    if any(s.init_s for r in results for s in r.samples):
        init = statistics.median(s.init_s for r in results for s in r.samples)
        lines.append(f"\nSnapStart init (process start -> snapshot point), median: {init:.3f} s")
    heavy = ", ".join(f"{k} {v:.0f}" for k, v in imports[1])
    lines.append(f"\nhandler import (best run): **{imports[0]:.0f} ms**; heaviest (ms): {heavy}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per request")
    ap.add_argument("--snapstart", action="store_true", help="run the SnapStart hooks")
    ap.add_argument("--json", type=Path, help="write the samples here")
    ap.add_argument("--package", type=Path, help="run an unpacked build_zip.py package")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--floor", action="store_true", help="also time FLOORS (with --package)")
    args = ap.parse_args(argv)
    if args.floor and (not args.package or args.snapstart):
        ap.error("--floor measures a built package's cold start: give --package, no --snapstart")
    results: list[Result] = []
    for name in LAMBDA_UNSET:  # the function's environment is Lambda's, not this shell's
        os.environ.pop(name, None)
    if args.package:
        fn = Function.package(args.package)
    else:
        fn = Function()
        compileall.compile_dir(ROOT / "cloudroi", quiet=1)
    with RangeServer(corpus()) as server:
        env = {
            **FUNCTION_ENV,
            "CLOUDROI_ALLOWED_SOURCES": server.url(""),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if args.snapstart:
            env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        floors: dict[str, list[float]] = {}
        for name, doc in requests(server).items():
            result = Result(name)
            for _ in range(args.runs):  # with --floor, a floor after each sample (in pairs)
                result.samples.append(one_sample(doc, env, args.snapstart, fn))
                if args.floor:
                    floors.setdefault(name, []).extend(floor_s(name, fn, 1))
            results.append(result)
    imports = import_ms(max(args.runs, 3), fn)
    where = f"package {args.package}" if args.package else "source tree"
    calibration = calibration_ms()
    speed = f"load {os.getloadavg()[0]:.1f}, calibration loop {calibration:.0f} ms"
    print(f"## Lambda cold start ({where}, {args.runs} runs, {speed})\n")
    print(markdown(results, imports))
    if floors:
        print("\nfloor: each request's least library work, no cloudroi endpoint (see FLOORS)\n")
        print(floor_table(results, floors))
    if args.json:
        doc = {
            "results": {r.request: [asdict(s) for s in r.samples] for r in results},
            "import_ms": imports[0],
            "heaviest": imports[1],
            "snapstart": args.snapstart,
            "package": str(args.package) if args.package else None,
            "floor": floors,
            "calibration_ms": calibration,
        }
        args.json.write_text(json.dumps(doc, indent=1))
    missed = [r.request for r in results if r.median("first_s") > TARGET_FIRST_RESPONSE_S]
    if imports[0] > TARGET_IMPORT_MS:
        missed.append("import")
    if missed:
        print(f"\ntargets missed: {missed}")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
