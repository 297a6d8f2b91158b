"""The map viewer in a real browser: headless Chromium loads ``/map?url=...`` from a running
service, the page fetches TileJSON and then web-map tiles from the service, and the screenshot
shows the image (not a blank map). The service's own /metrics counts the tile answers.

Chromium is a system package (``.ci/run`` installs Debian's ``chromium``); without it the test is
skipped locally, but CI sets ``CLOUDROI_REQUIRE_BROWSER=1`` so a missing browser fails there.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import imagecodecs
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from cloudroi.sample import ensure_sample
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.upstream import Upstream

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
WIDTH, HEIGHT = 800, 600


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CLOUDROI_REQUIRE_BROWSER") == "1":
        pytest.fail("CLOUDROI_REQUIRE_BROWSER=1 but no Chromium on PATH (apt-get install chromium)")
    pytest.skip("no Chromium on PATH (CI installs Debian's chromium)")


@pytest.fixture
async def service(server: RangeServer, warp_files: dict[str, Path]) -> AsyncIterator[Any]:
    up = Upstream.publish(server, {"utm.tif": warp_files["utm"].read_bytes()}, "browser")
    app = create_app(ServiceConfig(allowed_sources=(up.root,)))
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    srv.source_url = up.url("utm.tif")  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        await srv.close()


async def _screenshot(browser: str, url: str, out: Path) -> str:
    """Run headless Chromium on ``url`` until the page's network settles (bounded)."""
    args = [
        browser,
        "--headless",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--user-data-dir={out.parent / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=15000",
        f"--screenshot={out}",
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("Chromium did not finish within 90 s")
    return output.decode(errors="replace")


def _count(metrics: str, endpoint: str, status: str) -> int:
    """The service's request counter for one endpoint and status."""
    labels = (f'endpoint="{endpoint}"', f'status="{status}"')
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("cloudroi_requests_total{") and all(x in line for x in labels)
    )


async def _metrics(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        return await resp.text()


def _drawn(shot: Path) -> tuple[float, int]:
    """The share of the 800x600 view the layer covers, and its number of distinct colours."""
    if os.environ.get("CLOUDROI_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CLOUDROI_KEEP_SCREENSHOT"])
    rgb = np.asarray(imagecodecs.png_decode(shot.read_bytes()))[..., :3]
    assert rgb.shape[:2] == (HEIGHT, WIDTH)
    # Leaflet's empty map is one flat grey (#ddd); its controls and labels are white boxes.
    grey = np.all(rgb == 221, axis=-1)
    whiteish = np.all(rgb >= 240, axis=-1)
    drawn = ~(grey | whiteish)
    return float(drawn.mean()), len(np.unique(rgb[drawn].reshape(-1, 3), axis=0))


async def test_map_page_draws_tiles_in_chromium(service: Any, tmp_path: Path) -> None:
    """An RGB UTM COG on a range server, reprojected into Web Mercator tiles."""
    browser = _browser()
    base = f"http://127.0.0.1:{service.port}"
    page = f"{base}/map?{urlencode({'url': service.source_url})}"
    shot = tmp_path / "map.png"
    log = await _screenshot(browser, page, shot)
    assert shot.exists(), f"Chromium wrote no screenshot:\n{log[-2000:]}"

    metrics = await _metrics(base)  # of the service that answered the browser
    tilejson = _count(metrics, "/tilejson.json", "200")
    tiles = _count(metrics, "/tiles", "200")
    assert tilejson >= 1, f"the page never fetched TileJSON:\n{metrics}"
    assert tiles >= 4, f"only {tiles} tile answers reached the browser:\n{metrics}"
    share, colours = _drawn(shot)
    assert share > 0.2, f"screenshot mostly blank: {share:.1%} drawn"
    assert colours > 100, f"only {colours} distinct colours: not an image"
    assert not re.search(r"cannot show the layer|some tiles failed", log)


async def test_quick_start_map_link_in_chromium(tmp_path: Path) -> None:
    """README's quick start: `cloudroi serve` with its defaults prints a web-map link to the
    sample; that link, opened in a browser, shows the sample's tiles."""
    browser = _browser()
    sample_dir = tmp_path / "sample"
    await asyncio.to_thread(ensure_sample, sample_dir / "sample-dem.tif")
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "CLOUDROI_ALLOWED_SOURCES" and not k.lower().endswith("_proxy")
    }
    env.update(CLOUDROI_SAMPLE_DIR=str(sample_dir), CLOUDROI_PORT=str(port), NO_PROXY="*")
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "cloudroi"),
        "serve",
        "--host",
        "127.0.0.1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        link = await asyncio.wait_for(_printed_link(proc), timeout=60)
        assert link.startswith(f"http://127.0.0.1:{port}/map?url=")
        shot = tmp_path / "quick.png"
        log = await _screenshot(browser, link, shot)
        assert shot.exists(), f"Chromium wrote no screenshot:\n{log[-2000:]}"
        metrics = await _metrics(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=15)
    assert _count(metrics, "/tiles", "200") >= 1, metrics
    share, colours = _drawn(shot)
    assert share > 0.05, f"screenshot mostly blank: {share:.1%} drawn"
    assert colours > 20, f"only {colours} distinct colours: not the DEM"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _printed_link(proc: asyncio.subprocess.Process) -> str:
    """The web-map link `cloudroi serve` prints, once the server accepts connections."""
    assert proc.stdout is not None
    lines: list[str] = []
    while line := (await proc.stdout.readline()).decode():
        lines.append(line)
        m = re.search(r"web map of the sample: (\S+)", line)
        if m:
            port = int(m.group(1).split(":")[2].split("/")[0])
            for _ in range(300):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                return m.group(1)
            break
    raise AssertionError("cloudroi serve printed no web-map link:\n" + "".join(lines))
