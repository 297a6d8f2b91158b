"""The Lambda function's cold start: a light handler import, no map warm-up on the first request,
the SnapStart hooks (in-process, called as the runtime calls them, and under the real runtime
client in snap-start mode against a local Runtime API), and the cold-start benchmark's smoke run.
"""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import snapshot_restore_py

import cloudroi.serverless
from cloudroi.cog import write_cog
from cloudroi.service import core, lambda_handler, snapstart
from cloudroi.testing import RangeServer
from tests.lambda_runtime_api import RuntimeClient

ROOT = Path(__file__).resolve().parent.parent
#: What the handler's import must not load: the request path (numpy, aiohttp, the reader) and
#: the extras (s3fs/botocore, pyproj, morecantile), all loaded when first needed.
HEAVY = (
    "numpy",
    "aiohttp",
    "imagecodecs",
    "tifffile",
    "fsspec",
    "s3fs",
    "botocore",
    "pyproj",
    "morecantile",
    "cloudroi.context",
    "cloudroi.service.core",
)


def loaded_after(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def scene() -> bytes:
    data = (np.arange(256 * 256, dtype=np.uint32) % 5000).astype(np.uint16).reshape(256, 256)
    return write_cog(
        data, tile=128, epsg=32633, transform=(500000.0, 10.0, 0.0, 6100000.0, 0.0, -10.0)
    )


def function_url_event(path: str, query: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "tests" / "events" / "function-url.json").read_text())
    doc["rawPath"] = doc["requestContext"]["http"]["path"] = path
    doc["rawQueryString"] = query
    return doc


def test_handler_import_loads_nothing_heavy_and_a_region_needs_no_map_path(
    server: RangeServer, scene: bytes
) -> None:
    """``import cloudroi.serverless`` stays light; the first /region loads the reader but not
    the web-map machinery (warp, morecantile), which only a tile request or the SnapStart hook
    loads."""
    server.add("cold/scene.tif", scene)
    event = function_url_event(
        "/region", f"url={server.url('cold/scene.tif')}&window=0,0,256,256&format=npy"
    )
    code = f"""
import json, sys
import cloudroi.serverless as fn
after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
answer = fn.handler(json.loads({json.dumps(json.dumps(event))}))
after_region = sorted(m for m in ("cloudroi.warp", "morecantile") if m in sys.modules)
import cloudroi
assert callable(cloudroi.read) and callable(cloudroi.info), cloudroi.read
fn.reset()
print(json.dumps({{"import": after_import, "status": answer["statusCode"],
                  "region": after_region, "numpy": "numpy" in sys.modules}}))
"""
    env = {"CLOUDROI_ALLOWED_SOURCES": server.url("cold/"), "PATH": "/usr/bin:/bin"}
    result = loaded_after(code, env)
    assert result["import"] == []
    assert result["status"] == 200
    assert result["numpy"] is True  # the request did load the reader
    assert result["region"] == []


#: Service modules /info has no use for: other endpoints' (imported by their first request)
#: and the OpenAPI document's (by /openapi.json).
UNUSED_BY_INFO = (
    "cloudroi.service.tiles",
    "cloudroi.service.mapparams",
    "cloudroi.service.cog",
    "cloudroi.service.statistics",
    "cloudroi.service.statsparams",
    "cloudroi.service.viewer",
    "cloudroi.service.openapi",
)
#: imagecodecs' extension modules of the codecs a Deflate COG never needs.
OTHER_CODECS = ("_imcd", "_lzma", "_zstd", "_tiff", "_webp", "_lerc")


def test_every_route_resolves_to_its_endpoint() -> None:
    """Endpoints are imported by their first request: each route names one that exists."""
    core.load_endpoints()
    lazy = [r for r in core.ROUTER.routes if isinstance(r.handler, core.Endpoint)]
    assert {r.handler.module for r in lazy} == set(core.ENDPOINT_MODULES)
    for route in lazy:
        assert inspect.iscoroutinefunction(route.handler.resolve()), route.name


def test_a_first_info_loads_no_codec_and_a_region_only_its_own(
    server: RangeServer, scene: bytes
) -> None:
    """imagecodecs loads a codec's extension module when it is looked up (1-5 ms each): the
    reader looks each up when a block first needs it, so /info loads none and a /region of a
    Deflate COG only Deflate's."""
    server.add("codecs/scene.tif", scene)
    url = server.url("codecs/scene.tif")
    info, region = (
        json.dumps(json.dumps(function_url_event(path, query)))
        for path, query in (
            ("/info", f"url={url}"),
            ("/region", f"url={url}&window=0,0,256,256&format=npy"),
        )
    )
    code = f"""
import json, sys
import cloudroi.serverless as fn
def codecs():
    return sorted(m.split(".")[1] for m in sys.modules if m.startswith("imagecodecs._"))
statuses = [fn.handler(json.loads({info}))["statusCode"]]
after_info = codecs()
endpoints = sorted(m for m in {UNUSED_BY_INFO!r} if m in sys.modules)
statuses.append(fn.handler(json.loads({region}))["statusCode"])
fn.reset()
print(json.dumps({{"statuses": statuses, "info": after_info, "region": codecs(),
                  "endpoints": endpoints}}))
"""
    env = {"CLOUDROI_ALLOWED_SOURCES": server.url("codecs/"), "PATH": "/usr/bin:/bin"}
    result = loaded_after(code, env)
    assert result["statuses"] == [200, 200]
    assert not set(result["info"]) & {"_deflate", *OTHER_CODECS}, result["info"]
    assert result["endpoints"] == []
    assert "_deflate" in result["region"] or "_zlib" in result["region"], result["region"]
    assert not set(result["region"]) & set(OTHER_CODECS), result["region"]


def run_hooks(kind: str) -> None:
    """Run the registered hooks as the runtime client does: before-snapshot hooks in reverse
    order of registration, after-restore hooks in order."""
    if kind == "before":
        for func, args, kwargs in reversed(list(snapshot_restore_py.get_before_snapshot())):
            func(*args, **kwargs)
    else:
        for func, args, kwargs in list(snapshot_restore_py.get_after_restore()):
            func(*args, **kwargs)


def test_snapstart_hooks_renew_the_loop_session_and_seeds(
    server: RangeServer, scene: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = [f for f, _, _ in snapshot_restore_py.get_before_snapshot()]
    assert snapstart.before_snapshot in registered
    assert snapstart.after_restore in [f for f, _, _ in snapshot_restore_py.get_after_restore()]

    server.add("snap/scene.tif", scene)
    monkeypatch.setenv("CLOUDROI_ALLOWED_SOURCES", server.url("snap/"))
    event = function_url_event(
        "/region", f"url={server.url('snap/scene.tif')}&window=0,0,256,256&format=npy"
    )
    lambda_handler.reset()
    try:
        assert cloudroi.serverless.handler(event)["statusCode"] == 200
        before = lambda_handler._current()
        assert before.state is not None
        session = before.state.context.http_session()
        run_hooks("before")
        # Nothing that holds a socket, a thread or a loop goes into the snapshot.
        assert lambda_handler._app is None
        assert before.loop.is_closed()
        assert session.closed

        # Two environments restored from one snapshot start from the same random state; the
        # after-restore hook gives each its own seeds.
        snapshot = random.getstate()
        run_hooks("after")
        first = [random.random() for _ in range(4)]
        random.setstate(snapshot)
        run_hooks("after")
        second = [random.random() for _ in range(4)]
        assert first != second

        # The next invocation builds a new loop and session and reads as before.
        answer = cloudroi.serverless.handler(event)
        assert answer["statusCode"] == 200
        after = lambda_handler._current()
        assert after is not before
        assert not after.loop.is_closed()
    finally:
        lambda_handler.reset()


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_snap_start_init_under_the_runtime_client(server: RangeServer, scene: bytes) -> None:
    """``awslambdaric`` in snap-start mode: init and the before-snapshot hook run before the
    Runtime API's /restore/next is answered (pyproj's and the PNG codec's libraries are mapped by
    then), the after-restore hook after it, and the restored function answers a tile."""
    server.add("rie/scene.tif", scene)
    env = {
        "CLOUDROI_ALLOWED_SOURCES": server.url("rie/"),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    }
    event = function_url_event("/tiles/WebMercatorQuad/12/2218/1294.png", "")
    event["rawQueryString"] = f"url={server.url('rie/scene.tif')}"
    with RuntimeClient(sys.executable, "cloudroi.serverless.handler", env, timeout=120) as client:
        client.api.wait_restore(120)
        assert client.proc is not None
        maps = mapped_libraries(client.proc.pid)
        assert "pyproj" in maps
        assert "imagecodecs/_png" in maps
        client.api.restore()
        kind, answer = client.invoke(event)
    assert kind == "response", answer
    assert answer["statusCode"] == 200, answer
    assert client.api.restore_errors == []


def test_cold_start_benchmark_smoke(tmp_path: Path) -> None:
    """``python -m benchmarks.lambda_cold --runs 1`` (the README's command, one sample)."""
    out = tmp_path / "cold.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.lambda_cold", "--runs", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| /tiles |" in proc.stdout
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"/info", "/region", "/tiles"}
    for samples in doc["results"].values():
        (sample,) = samples
        assert 0 < sample["first_s"] < 60
        assert sample["cpu_s"] > 0
        assert sample["rss_mb"] > 30
    assert 0 < doc["import_ms"] < 5000
    assert 0 < doc["calibration_ms"] < 5000


def test_cold_start_floors_run() -> None:
    """``--floor``'s programs (each request's least library work, no cloudroi request code) run
    and exit cleanly; from the source tree here (the benchmark gives them a built package)."""
    from benchmarks.lambda_cold import FLOORS, Function, floor_s

    for request in FLOORS:
        (took,) = floor_s(request, Function(), 1)
        assert 0 < took < 60
