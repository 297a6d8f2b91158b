"""The ``cloudroi`` command driven as a subprocess, against the real range server, moto's S3,
local files and its own running service."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
import rasterio

from cloudroi.testing import RangeServer
from cloudroi.testing.cog import write_cog
from cloudroi.testing.sample import SAMPLE_NAME, sample_cog_bytes

GT = (300000.0, 5.0, 0.0, 5000000.0, 0.0, -5.0)


def pixels() -> np.ndarray:
    yy, xx = np.mgrid[0:500, 0:600]
    return np.stack([xx % 256, yy % 256, (3 * xx + yy) % 256]).astype(np.uint8)


@pytest.fixture(scope="module")
def cog() -> bytes:
    # 64-pixel tiles: a full-resolution read of the whole image is 80 blocks (progress bar).
    return write_cog(pixels(), tile=64, epsg=32633, transform=GT)


@pytest.fixture
def url(server: RangeServer, cog: bytes) -> str:
    name = f"cli-{uuid.uuid4().hex[:8]}/img.tif"
    server.add(name, cog)
    return server.url(name)


def cloudroi(*args: str, env: dict[str, str] | None = None, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudroi.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("cloudroi")
    assert script.exists()
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("cloudroi ")


def test_info_json_and_text(url: str, tmp_path: Path, cog: bytes) -> None:
    result = cloudroi("info", url, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["width"], info["height"], info["count"]) == (600, 500, 3)
    assert info["crs"] == 32633
    assert info["transform"] == list(GT)
    assert info["levels"][:2] == [[600, 500], [300, 250]]
    local = tmp_path / "img.tif"
    local.write_bytes(cog)
    result = cloudroi("info", str(local))
    assert result.returncode == 0, result.stderr
    assert "600 x 500, 3 band(s), uint8" in result.stdout
    assert "EPSG:32633" in result.stdout


def test_read_formats(url: str, tmp_path: Path) -> None:
    npy = tmp_path / "w.npy"
    result = cloudroi("read", url, "--window", "10,20,300,200", "-o", str(npy))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(npy), pixels()[:, 20:220, 10:310])
    assert "wrote" in result.stderr
    assert "20/20 tiles" in result.stderr  # 5 x 4 blocks: enough for a progress bar
    tif = tmp_path / "b.tif"
    # bbox of pixels (100..300, 50..150) at 5 m
    bbox = f"{300000 + 100 * 5},{5000000 - 150 * 5},{300000 + 300 * 5},{5000000 - 50 * 5}"
    result = cloudroi("read", url, "--bbox", bbox, "--bands", "2", "-o", str(tif), "-q")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tif) as ds:
        np.testing.assert_array_equal(ds.read(), pixels()[[1], 50:150, 100:300])
        assert ds.transform.to_gdal() == pytest.approx(
            (300000 + 100 * 5, 5.0, 0.0, 5000000 - 50 * 5, 0.0, -5.0))
        assert ds.crs.to_epsg() == 32633
    small = tmp_path / "s.npy"
    result = cloudroi("read", url, "--window", "0,0,600,500", "--size", "150,125", "-o",
                      str(small), "-q")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(small), pixels()[:, ::4, ::4])
    for ext, decode in ((".jpg", imagecodecs.jpeg8_decode), (".webp", imagecodecs.webp_decode)):
        out = tmp_path / f"x{ext}"
        result = cloudroi("read", url, "--window", "0,0,64,32", "-o", str(out), "-q")
        assert result.returncode == 0, result.stderr
        assert decode(out.read_bytes()).shape[:2] == (32, 64)


def test_read_many_tiles_shows_progress(url: str, tmp_path: Path) -> None:
    png = tmp_path / "all.png"
    result = cloudroi("read", url, "--window", "0,0,600,500", "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert "80/80 tiles" in result.stderr
    assert "[" + "#" * 30 + "]" in result.stderr
    np.testing.assert_array_equal(imagecodecs.png_decode(png.read_bytes()),
                                  np.moveaxis(pixels(), 0, -1))
    quiet = cloudroi("read", url, "--window", "0,0,600,500", "-o", str(png), "-q")
    assert quiet.returncode == 0
    assert "80/80" not in quiet.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["read", "{url}", "--window", "590,0,20,20", "-o", "x.npy"], 1, "outside"),
        (["read", "{missing}", "--window", "0,0,2,2", "-o", "x.npy"], 1, "404"),
        (["read", "{url}", "--window", "0,0,2,2", "-o", "x.gif"], 2, "cannot tell"),
        (["read", "{url}", "--window", "0,0,2", "-o", "x.npy"], 2, "4 comma-separated"),
        (["read", "{url}", "--window", "0,0,2,2", "--bands", "1,2", "-o", "x.png"], 2,
         "1 or 3 bands"),
        (["read", "{url}", "--bbox", "0,0,1,1", "-o", "x.npy"], 2, "does not intersect"),
        (["info", "{text}"], 1, "not a TIFF"),
    ],
)
def test_errors_are_one_line(
    server: RangeServer, url: str, tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    server.add("cli-text.tif", b"hello, not a tiff" * 10)
    values = {"url": url, "missing": url + ".missing", "text": server.url("cli-text.tif")}
    argv = [a.format(**values) if "{" in a else a for a in args]
    argv = [str(tmp_path / a) if a.startswith("x.") else a for a in argv]
    result = cloudroi(*argv)
    assert result.returncode == status
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # One line saying what went wrong (usage errors print argparse's usage above it).
    last = result.stderr.strip().splitlines()[-1]
    assert message in last
    assert last.startswith("cloudroi ")


def test_compare(url: str) -> None:
    result = cloudroi("compare", url, "--window", "100,100,256,256", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["identical_pixels"] is True
    runs = {(r["strategy"], r["cache"]): r for r in doc["runs"]}
    assert set(runs) == {(s, c) for s in ("lazy", "preload", "stream") for c in ("cold", "warm")}
    for strategy in ("lazy", "preload", "stream"):
        cold, warm = runs[strategy, "cold"], runs[strategy, "warm"]
        assert warm["requests"] < cold["requests"]
        assert warm["bytes"] < cold["bytes"]
        assert cold["peak_bytes"] > 0
        assert cold["seconds"] > 0
    # Preloading fetches the whole level; the lazy read only the window's blocks.
    assert runs["preload", "cold"]["bytes"] > runs["lazy", "cold"]["bytes"]
    assert runs["stream", "cold"]["bytes"] == runs["lazy", "cold"]["bytes"]
    text = cloudroi("compare", url, "--window", "0,0,64,64")
    assert text.returncode == 0
    assert "identical pixels: yes" in text.stdout
    assert "peak mem" in text.stdout


def test_s3(s3_server: str, s3_client: Any, cog: bytes, tmp_path: Path) -> None:
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="a/img.tif", Body=cog)
    out = tmp_path / "s3.npy"
    result = cloudroi("read", f"s3://{bucket}/a/img.tif", "--window", "0,0,32,16",
                      "--s3-endpoint", s3_server, "-o", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), pixels()[:, :16, :32])
    result = cloudroi("info", f"s3://{bucket}/a/img.tif", "--json",
                      env={"CLOUDROI_S3_ENDPOINT_URL": s3_server})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["width"] == 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(address: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(address, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_serve(server: RangeServer, url: str) -> None:
    port = free_port()
    allowed = url.rsplit("/", 1)[0] + "/"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudroi.cli", "serve", "--port", str(port), "--allow", allowed],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CLOUDROI_MAX_TILES": "50"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if fetch(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        status, body = fetch(f"{base}/region?url={url}&window=0,0,64,64&format=npy")
        assert status == 200
        np.testing.assert_array_equal(np.load(io.BytesIO(body)), pixels()[:, :64, :64])
        status, body = fetch(f"{base}/region?url={url}&window=0,0,600,500&format=npy")
        assert status == 413  # the environment's limit (80 blocks > 50) applies
        status, body = fetch(f"{base}/info?url=http://127.0.0.1:{server.port}/elsewhere.tif")
        assert status == 403
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"serving on http://127.0.0.1:{port}" in out
    assert allowed in out


def test_demo(tmp_path: Path) -> None:
    # A small sample put where the demo looks for it (building the full one takes seconds).
    sample_dir = tmp_path / "sample"
    sample_dir.mkdir()
    (sample_dir / SAMPLE_NAME).write_bytes(sample_cog_bytes(1024))
    out = tmp_path / "demo.png"
    result = cloudroi("demo", "-o", str(out), "--latency", "0",
                      env={"CLOUDROI_SAMPLE_DIR": str(sample_dir)})
    assert result.returncode == 0, result.stderr
    assert "range request(s)" in result.stdout
    assert "identical pixels: yes" in result.stdout
    png = imagecodecs.png_decode(out.read_bytes())
    assert png.shape == (1024, 1024, 2)  # grey + alpha
    assert (png[:, :, 1] == 0).any()  # the nodata "sea" is transparent
    assert (png[:, :, 1] == 255).any()


def test_connection_refused_is_one_sentence() -> None:
    port = free_port()  # bound and closed again: nothing listens there
    result = cloudroi("info", f"http://127.0.0.1:{port}/x.tif")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ConnectionKey" not in result.stderr
    assert "ClientConnectorError" not in result.stderr
    assert lines[0] == (
        f"cloudroi info: error: cannot connect to 127.0.0.1:{port}: Connection refused "
        f"(http://127.0.0.1:{port}/x.tif)"
    )


def test_describe_client_error() -> None:
    import errno
    import ssl

    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    from cloudroi.source.client_errors import describe_client_error

    def key(host: str, port: int) -> ConnectionKey:
        return ConnectionKey(host, port, False, True, None, None, None, None)

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('::1', 9)")
    assert describe_client_error(aiohttp.ClientConnectorError(key("::1", 9), refused)) == (
        "cannot connect to [::1]:9: Connection refused"
    )
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe_client_error(
        aiohttp.ClientConnectorDNSError(key("nowhere.invalid", 443), gai)
    ) == "cannot resolve host nowhere.invalid: Name or service not known"
    assert describe_client_error(aiohttp.ServerDisconnectedError()) == (
        "the server closed the connection without answering"
    )
    assert describe_client_error(TimeoutError()) == "timed out"
    assert describe_client_error(
        aiohttp.ConnectionTimeoutError("Connection timeout to host http://10.1.2.3/x")
    ) == "timed out: Connection timeout to host http://10.1.2.3/x"
    cert = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert describe_client_error(
        aiohttp.ClientConnectorSSLError(key("127.0.0.1", 8443), cert)
    ) == ("TLS handshake with 127.0.0.1:8443 failed: "
          "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert describe_client_error(reset) == "connection failed: Connection reset by peer"
