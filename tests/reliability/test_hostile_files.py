"""Hostile files through the service: a small file declaring blocks that decode to far more than
its size is refused from its header (413) before any tile is fetched or decoded."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tifffile
from aiohttp.test_utils import TestClient, TestServer

from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from tests.reliability.fuzz_support import layout, put_int, with_first_block

SIDE = 16384  # one uint16 tile of 16384 x 16384: 512 MiB decoded


@pytest.fixture(scope="module")
def huge_tile_file() -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(
        buf, np.zeros((64, 64), np.uint16), tile=(64, 64), compression="zlib", metadata=None
    )
    seed = buf.getvalue()
    data = bytearray(with_first_block(seed, zlib.compress(bytes(SIDE * SIDE * 2), 1)))
    lay = layout(seed)
    for f in lay.of("entry-value"):
        if f.tag in (256, 257, 322, 323):  # width, height, tile width, tile length
            put_int(data, f, SIDE, lay.byteorder)
    return bytes(data)


@pytest.fixture
def upstream(huge_tile_file: bytes) -> Iterator[RangeServer]:
    with RangeServer({"h/huge.tif": huge_tile_file}) as srv:
        yield srv


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/region", {"window": "0,0,1,1", "format": "npy"}),
        ("/point", {"col": "0", "row": "0"}),
        ("/preview", {"max_size": "16", "format": "npy"}),
    ],
)
async def test_a_huge_declared_block_is_refused_before_any_tile_fetch(
    upstream: RangeServer, huge_tile_file: bytes, path: str, params: dict[str, Any]
) -> None:
    assert len(huge_tile_file) < 4 << 20  # a few MB on disk, 512 MiB once decoded
    config = ServiceConfig(allowed_sources=(upstream.url("h/"),))
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        async with client.get(path, params={"url": upstream.url("h/huge.tif"), **params}) as resp:
            doc = await resp.json(content_type=None)
            assert resp.status == 413, doc
            assert doc["code"] == "limit_exceeded"
            assert doc["value"] == SIDE * SIDE * 2
        # Only the header was read: the one GET of the prefix.
        ranges = [e.range for e in upstream.requests_for("h/huge.tif")]
        assert len(ranges) == 1
        assert ranges[0] is not None
        assert ranges[0].startswith("bytes=0-")
        # /info reads no block, so it still describes the file.
        async with client.get("/info", params={"url": upstream.url("h/huge.tif")}) as resp:
            assert resp.status == 200
            assert (await resp.json())["block_shape"] == [SIDE, SIDE]
    finally:
        await client.close()
