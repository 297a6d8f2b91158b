"""The service's peak RSS under requests built to make it allocate: ``cloudroi serve`` in its own
process (as deployed), its high-water mark read from /proc after each group of requests.

The inputs are the hardening findings: a 159 KB file of 65536 x 65536 zstd tiles without
overviews asked for a 64-pixel-wide region or preview (once 4.2 GB each, 8.2 GB for two at once),
and a 32-band float64 file asked for in full (once a 4 GiB body and 12.5 GB peak) or with one band
repeated."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")

#: The idle service (~60 MiB), the 128 MiB decoded-block cache, blocks in flight and the
#: allocator's arenas (379 MiB measured for this sequence; 4-12 GiB before the fix).
PEAK_LIMIT_MIB = 512


def _write(path: Path) -> None:
    tifffile.imwrite(
        path / "huge.tif",
        (np.zeros((2048, 2048), np.uint8) for _ in range(1024)),
        shape=(65536, 65536),
        dtype=np.uint8,
        tile=(2048, 2048),
        compression="zstd",
        metadata=None,
    )
    tiles = (np.zeros((256, 256, 32), np.float64) for _ in range(256))
    tifffile.imwrite(
        path / "bands32.tif",
        tiles,
        shape=(4096, 4096, 32),
        dtype=np.float64,
        tile=(256, 256),
        planarconfig="contig",
        photometric="minisblack",
        compression="zstd",
        metadata=None,
    )


def _status_mib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    root = tmp_path_factory.mktemp("hostile")
    _write(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "CLOUDROI_ALLOWED_SOURCES": f"{root}/",
        "CLOUDROI_PORT": str(port),
        "CLOUDROI_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudroi.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the service did not start")
        yield base, proc.pid, root
    finally:
        proc.terminate()
        proc.wait(10)


def test_peak_rss_stays_bounded_under_hostile_requests(service: tuple[str, int, Path]) -> None:
    base, pid, root = service
    region = f"{base}/region?url={root}/huge.tif&window=0,0,65536,65536&width=64&format=npy"
    preview = f"{base}/preview?url={root}/huge.tif&max_size=64"
    idle = _status_mib(pid, "VmRSS")
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(_get, [region, region]))
    answers.append(_get(preview))
    for status, body in answers:
        assert status == 200, body[:300]
    assert np.load(io.BytesIO(answers[0][1])).shape == (1, 64, 64)
    status, body = _get(f"{base}/region?url={root}/bands32.tif&window=0,0,4096,4096&format=npy")
    assert status == 413, body[:300]
    assert json.loads(body)["code"] == "request_too_large"
    status, body = _get(
        f"{base}/region?url={root}/bands32.tif&window=0,0,4096,4096&format=npy"
        "&bands=" + ",".join(["1"] * 64)
    )
    assert status == 400
    assert json.loads(body)["code"] == "invalid_bands"
    peak = _status_mib(pid, "VmHWM")
    print(f"service RSS idle {idle} MiB, peak {peak} MiB")
    assert peak < PEAK_LIMIT_MIB, f"peak RSS {peak} MiB (idle {idle} MiB)"
