"""The ``cloudroi`` command against the real range server, moto's S3, local files and its own
running service: run through its main function in this process, and as a child process where
the process is the point (console script, terminal and file streams, pipes, signals, serve)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
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

from cloudroi.cli import main as cli_main
from cloudroi.cog import write_cog
from cloudroi.sample import SAMPLE_NAME, sample_cog_bytes
from cloudroi.testing import RangeServer

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


def cloudroi_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m cloudroi.cli ARGS`` as a child process: for what only a process shows (its
    exit status from the interpreter, its streams as pipes, terminals and files, signals)."""
    return subprocess.run(
        [sys.executable, "-m", "cloudroi.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cloudroi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command run in this process through ``cloudroi.cli.main`` (what ``python -m
    cloudroi.cli`` calls), with ``env`` added to the environment and stdout and stderr captured
    as non-terminal streams: the same exit status and output as the child process, without an
    interpreter's start-up (about 1 s) per call. An exception escaping ``main`` (the child's
    traceback) fails the test."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = cli_main(list(args))
            except SystemExit as exc:  # argparse: usage errors, --help, --version
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def text(stream: io.TextIOWrapper) -> str:
        stream.flush()
        assert isinstance(stream.buffer, io.BytesIO)
        return stream.buffer.getvalue().decode()

    return subprocess.CompletedProcess(
        ["cloudroi", *args], status, stdout=text(stdout), stderr=text(stderr)
    )


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("cloudroi")
    assert script.exists()
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
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
    tif = tmp_path / "b.tif"
    # bbox of pixels (100..300, 50..150) at 5 m
    bbox = f"{300000 + 100 * 5},{5000000 - 150 * 5},{300000 + 300 * 5},{5000000 - 50 * 5}"
    result = cloudroi("read", url, "--bbox", bbox, "--bands", "2", "-o", str(tif), "-q")
    assert result.returncode == 0, result.stderr
    with rasterio.open(tif) as ds:
        np.testing.assert_array_equal(ds.read(), pixels()[[1], 50:150, 100:300])
        assert ds.transform.to_gdal() == pytest.approx(
            (300000 + 100 * 5, 5.0, 0.0, 5000000 - 50 * 5, 0.0, -5.0)
        )
        assert ds.crs.to_epsg() == 32633
    small = tmp_path / "s.npy"
    result = cloudroi(
        "read", url, "--window", "0,0,600,500", "--size", "150,125", "-o", str(small), "-q"
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(small), pixels()[:, ::4, ::4])
    for ext, decode in ((".jpg", imagecodecs.jpeg8_decode), (".webp", imagecodecs.webp_decode)):
        out = tmp_path / f"x{ext}"
        result = cloudroi("read", url, "--window", "0,0,64,32", "-o", str(out), "-q")
        assert result.returncode == 0, result.stderr
        assert decode(out.read_bytes()).shape[:2] == (32, 64)


def run_with_terminal_stderr(*args: str, timeout: float = 60) -> tuple[int, str]:
    """The command with a pseudo-terminal as its stderr (as in an interactive shell); returns
    the exit status and what it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudroi.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not chunk:
                break
            out += chunk
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, out.decode()


def test_read_many_tiles_shows_progress_on_a_terminal(url: str, tmp_path: Path) -> None:
    png = tmp_path / "all.png"
    status, err = run_with_terminal_stderr("read", url, "--window", "0,0,600,500", "-o", str(png))
    assert status == 0, err
    assert "80/80 tiles" in err
    assert "[" + "#" * 30 + "]" in err
    assert "\r[" in err
    np.testing.assert_array_equal(
        imagecodecs.png_decode(png.read_bytes()), np.moveaxis(pixels(), 0, -1)
    )
    status, err = run_with_terminal_stderr(
        "read", url, "--window", "0,0,600,500", "-o", str(png), "-q"
    )
    assert status == 0, err
    assert "80/80" not in err
    assert "wrote" in err


def test_no_progress_bar_when_stderr_is_not_a_terminal(url: str, tmp_path: Path) -> None:
    # stderr into a file, as in a log: no carriage-return redraws, just the summary line.
    log = tmp_path / "log.txt"
    with log.open("w") as f:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cloudroi.cli",
                "read",
                url,
                "--window",
                "0,0,600,500",
                "-o",
                str(tmp_path / "all.npy"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=f,
            timeout=60,
        )
    assert result.returncode == 0
    text = log.read_text()
    assert "\r" not in text
    assert "tiles" not in text
    assert text.startswith("wrote "), text
    assert text.count("\n") == 1, text
    # the same into a pipe
    piped = cloudroi_process("read", url, "--window", "0,0,600,500", "-o", str(tmp_path / "b.npy"))
    assert piped.returncode == 0
    assert "\r" not in piped.stderr
    assert piped.stderr.startswith("wrote "), piped.stderr
    assert piped.stderr.count("\n") == 1, piped.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["read", "{url}", "--window", "590,0,20,20", "-o", "x.npy"], 1, "outside"),
        (["read", "{missing}", "--window", "0,0,2,2", "-o", "x.npy"], 1, "404"),
        (["read", "{url}", "--window", "0,0,2,2", "-o", "x.gif"], 2, "cannot tell"),
        (["read", "{url}", "--window", "0,0,2", "-o", "x.npy"], 2, "4 comma-separated"),
        (
            ["read", "{url}", "--window", "0,0,2,2", "--bands", "1,2", "-o", "x.png"],
            2,
            "1 or 3 bands",
        ),
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
    result = cloudroi(
        "read",
        f"s3://{bucket}/a/img.tif",
        "--window",
        "0,0,32,16",
        "--s3-endpoint",
        s3_server,
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out), pixels()[:, :16, :32])
    result = cloudroi(
        "info", f"s3://{bucket}/a/img.tif", "--json", env={"CLOUDROI_S3_ENDPOINT_URL": s3_server}
    )
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
    result = cloudroi(
        "demo", "-o", str(out), "--latency", "0", env={"CLOUDROI_SAMPLE_DIR": str(sample_dir)}
    )
    assert result.returncode == 0, result.stderr
    assert "range request(s)" in result.stdout
    assert "identical pixels: yes" in result.stdout
    png = imagecodecs.png_decode(out.read_bytes())
    assert png.shape == (1024, 1024, 2)  # grey + alpha
    assert (png[:, :, 1] == 0).any()  # the nodata "sea" is transparent
    assert (png[:, :, 1] == 255).any()


# --------------------------------------------------------------------------------------------
# hardening: coordinates, flags, pipes, connection errors, empty windows
# --------------------------------------------------------------------------------------------

#: A geotransform whose numbers are not short decimals: 6 significant digits lose whole pixels.
ODD_GT = (612345.123456789, 0.299999999, 0.0, 6100690.987654321, 0.0, -0.299999999)


@pytest.fixture(scope="module")
def odd_tif(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 700 x 600 GeoTIFF written by GDAL (rasterio) with the ODD_GT geotransform."""
    from rasterio.transform import Affine

    data = (np.arange(600 * 700) % 251).astype(np.uint8).reshape(1, 600, 700)
    path = tmp_path_factory.mktemp("odd") / "odd.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=700,
        height=600,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine.from_gdal(*ODD_GT),
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as ds:
        ds.write(data)
    return path, data


def _field(text: str, name: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(name))
    return line[len(name) :].strip().split(", ")


def test_info_coordinates_round_trip_into_bbox(
    odd_tif: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, data = odd_tif
    result = cloudroi("info", str(path))
    assert result.returncode == 0, result.stderr
    assert tuple(float(v) for v in _field(result.stdout, "Transform")) == ODD_GT
    bounds = _field(result.stdout, "Bounds")
    as_json = cloudroi("info", str(path), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert [float(v) for v in bounds] == json.loads(as_json.stdout)["bounds"]
    # What `info` printed, pasted into --bbox, is the whole image: 700 x 600, not 701 x 601.
    for bbox in (",".join(bounds), ",".join(map(str, json.loads(as_json.stdout)["bounds"]))):
        out = tmp_path / "all.npy"
        result = cloudroi("read", str(path), "--bbox", bbox, "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert "700x600" in result.stderr
        np.testing.assert_array_equal(np.load(out), data)


def test_info_prints_whole_numbers_without_exponent(url: str) -> None:
    result = cloudroi("info", url)
    assert result.returncode == 0, result.stderr
    assert _field(result.stdout, "Transform") == ["300000", "5", "0", "5000000", "0", "-5"]
    assert _field(result.stdout, "Bounds") == ["300000", "4997500", "303000", "5000000"]


@pytest.mark.parametrize("quality", ["0", "-5", "101", "high"])
def test_quality_out_of_range_is_a_usage_error(url: str, tmp_path: Path, quality: str) -> None:
    out = tmp_path / "x.jpg"
    result = cloudroi("read", url, "--window", "0,0,8,8", "--quality", quality, "-o", str(out))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cloudroi read: error: argument --quality")
    assert "1 to 100" in last
    assert not out.exists()


@pytest.mark.parametrize("quality", ["1", "100"])
def test_quality_bounds_are_accepted(url: str, tmp_path: Path, quality: str) -> None:
    out = tmp_path / "x.jpg"
    result = cloudroi("read", url, "--window", "0,0,64,32", "--quality", quality, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert imagecodecs.jpeg8_decode(out.read_bytes()).shape[:2] == (32, 64)


def test_boundless_window(url: str, tmp_path: Path) -> None:
    # 100 x 100 over the bottom-right corner of the 600 x 500 image: a quarter inside.
    refused = cloudroi("read", url, "--window", "550,450,100,100", "-o", str(tmp_path / "x.npy"))
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert "outside the 600x500 image" in last
    assert "--boundless" in last
    assert "boundless=True" not in refused.stderr
    npy = tmp_path / "b.npy"
    result = cloudroi("read", url, "--window", "550,450,100,100", "--boundless", "-o", str(npy))
    assert result.returncode == 0, result.stderr
    got = np.load(npy)
    expected = np.zeros((3, 100, 100), dtype=np.uint8)  # no nodata value: outside is 0
    expected[:, :50, :50] = pixels()[:, 450:500, 550:600]
    np.testing.assert_array_equal(got, expected)
    png = tmp_path / "b.png"
    result = cloudroi("read", url, "--window", "550,450,100,100", "--boundless", "-o", str(png))
    assert result.returncode == 0, result.stderr
    rgba = imagecodecs.png_decode(png.read_bytes())
    assert rgba.shape == (100, 100, 4)
    alpha = np.zeros((100, 100), dtype=np.uint8)
    alpha[:50, :50] = 255  # outside pixels are masked
    np.testing.assert_array_equal(rgba[:, :, 3], alpha)
    np.testing.assert_array_equal(rgba[:50, :50, :3], np.moveaxis(expected[:, :50, :50], 0, -1))
    # A window inside the image is read as it is, --boundless or not: no alpha channel added.
    inside = tmp_path / "in.png"
    result = cloudroi("read", url, "--window", "0,0,64,32", "--boundless", "-o", str(inside))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        imagecodecs.png_decode(inside.read_bytes()), np.moveaxis(pixels()[:, :32, :64], 0, -1)
    )


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize(
    "args",
    [["info", "{url}", "--json"], ["info", "{url}"], ["read", "--help"], ["--version"]],
    ids=["info-json", "info", "help", "version"],
)
def test_stdout_reader_gone_exits_quietly_as_sigpipe(
    url: str, args: list[str], unbuffered: str
) -> None:
    # The reader of the pipe has gone before anything was written (as `| head -1` once it has
    # its line): the command stops quietly with 128 + SIGPIPE, as Unix tools do.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cloudroi.cli", *(a.format(url=url) for a in args)],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
        )
    finally:
        os.close(writer)
    assert result.stderr == ""
    if args[0].startswith("--") or "--help" in args:
        # argparse writes help and version itself and ignores a failed write; with unbuffered
        # output nothing is left to flush, so it exits 0 like a finished `--help`.
        assert result.returncode == (0 if unbuffered else 141)
    else:
        assert result.returncode == 128 + signal.SIGPIPE == 141


def test_stdout_pipe_read_to_the_end_still_exits_0(url: str) -> None:
    result = cloudroi("info", url, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["width"] == 600


def test_connection_refused_is_one_sentence() -> None:
    port = free_port()  # bound and closed again: nothing listens there
    result = cloudroi_process("info", f"http://127.0.0.1:{port}/x.tif")  # a real process's stderr
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
    assert (
        describe_client_error(aiohttp.ClientConnectorDNSError(key("nowhere.invalid", 443), gai))
        == "cannot resolve host nowhere.invalid: Name or service not known"
    )
    assert describe_client_error(aiohttp.ServerDisconnectedError()) == (
        "the server closed the connection without answering"
    )
    assert describe_client_error(TimeoutError()) == "timed out"
    assert (
        describe_client_error(
            aiohttp.ConnectionTimeoutError("Connection timeout to host http://10.1.2.3/x")
        )
        == "timed out: Connection timeout to host http://10.1.2.3/x"
    )
    cert = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert describe_client_error(aiohttp.ClientConnectorSSLError(key("127.0.0.1", 8443), cert)) == (
        "TLS handshake with 127.0.0.1:8443 failed: "
        "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"
    )
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert describe_client_error(reset) == "connection failed: Connection reset by peer"


@pytest.fixture(scope="module")
def sample_512() -> bytes:
    return sample_cog_bytes(512)  # nodata "sea" where row + col < 179


def test_read_of_an_all_nodata_window_says_so(
    server: RangeServer, sample_512: bytes, tmp_path: Path
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}/{SAMPLE_NAME}"
    server.add(name, sample_512)
    png = tmp_path / "sea.png"
    result = cloudroi("read", server.url(name), "--window", "0,0,64,64", "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert "shown as" not in result.stderr
    assert "no valid pixel (all nodata or masked): the image is fully transparent" in (
        result.stderr
    )
    grey_alpha = imagecodecs.png_decode(png.read_bytes())
    assert grey_alpha.shape == (64, 64, 2)
    assert not grey_alpha[:, :, 1].any()
    jpg = tmp_path / "sea.jpg"
    result = cloudroi("read", server.url(name), "--window", "0,0,64,64", "-o", str(jpg))
    assert result.returncode == 0, result.stderr
    assert "no valid pixel (all nodata or masked): the image is black" in result.stderr
    # A window with valid pixels still says which values were stretched over 0..255.
    result = cloudroi("read", server.url(name), "--window", "0,0,256,256", "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert "shown as 0..255" in result.stderr
    assert "no valid pixel" not in result.stderr
