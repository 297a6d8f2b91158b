"""Which version of an HTTP object a read is pinned to when the server sends no ETag: its
Last-Modified (sent back as If-Unmodified-Since, compared on every answer), else only its size, as
``Image.info()["version_pinned"]`` says. The range server alternates two same-size versions of one
object between requests, as an object rewritten while it is read would be served."""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

import cloudroi
from cloudroi.cache import LRUCache
from cloudroi.cog import write_cog
from cloudroi.service import ServiceConfig, create_app
from cloudroi.testing import RangeServer
from cloudroi.tiff.structure import TiffStructure

#: Two versions of one uncompressed COG: same layout, same size, other pixels.
PIXELS = np.random.default_rng(81).integers(0, 65535, (512, 384), dtype=np.uint16)
OTHER = PIXELS ^ np.uint16(0x5A5A)
V1 = write_cog(PIXELS, tile=128, compression="none", overviews=0)
V2 = write_cog(OTHER, tile=128, compression="none", overviews=0)
assert len(V1) == len(V2)
assert V1 != V2
_names = itertools.count()


def _context() -> cloudroi.Context:
    """Own caches: nothing carried between tests."""
    return cloudroi.Context(
        block_cache=LRUCache[bytes](32 << 20, sizeof=len),
        decoded_cache=LRUCache[Any](32 << 20, sizeof=lambda a: int(a.nbytes)),
        header_cache=LRUCache[TiffStructure](16),
    )


def _name() -> str:
    return f"v-{next(_names)}.tif"


@pytest.mark.parametrize("multirange", [False, True], ids=["ranges", "multi-range"])
@pytest.mark.parametrize("honour", [True, False], ids=["honours-if-unmodified-since", "ignores-it"])
async def test_alternating_versions_with_last_modified_are_never_mixed(
    honour: bool, multirange: bool
) -> None:
    with RangeServer(etags=False, last_modified=True, honour_if_match=honour) as srv:
        name = _name()
        srv.alternate(name, [V1, V2])
        async with (
            _context() as ctx,
            cloudroi.open(
                srv.url(name), context=ctx, coalesce_gap=0, coalesce_max=1, multirange=multirange
            ) as img,
        ):
            with pytest.raises(cloudroi.ObjectChangedError):
                await img.read()
            info = img.info()
            assert info["version_pinned"] == "last-modified"
            assert info["etag"] is None
            assert info["last_modified"]
        later = srv.requests_for(name)[1:]
        assert later
        # A server honouring If-Unmodified-Since refuses the other version (412); otherwise
        # the client compares the date of each answer.
        assert any(e.status == 412 for e in later) == honour


@pytest.mark.parametrize(
    ("etags", "header"),
    [(False, "If-Unmodified-Since"), (True, "If-Match")],
    ids=["last-modified-only", "etag-and-last-modified"],
)
async def test_the_validator_is_sent_back_with_every_range(etags: bool, header: str) -> None:
    seen: list[dict[str, str]] = []

    def record(request: Any, etag: str) -> None:
        seen.append(dict(request.headers))

    with RangeServer(etags=etags, last_modified=True, fault=record) as srv:
        srv.add("a.tif", V1)
        async with _context() as ctx, cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            np.testing.assert_array_equal((await img.read())[0], PIXELS)
    first, *later = seen
    assert "If-Unmodified-Since" not in first
    assert "If-Match" not in first
    assert later
    other = {"If-Match", "If-Unmodified-Since"} - {header}
    for headers in later:
        assert header in headers
        assert not other & set(headers)


async def test_last_modified_pins_the_block_cache_across_images() -> None:
    """Blocks are shared between Images under (url, Last-Modified, size) and a new version is
    never served from the old one's blocks."""
    with RangeServer(etags=False, last_modified=True) as srv:
        name = _name()
        srv.add(name, V1)
        async with _context() as ctx:
            async with cloudroi.open(srv.url(name), context=ctx) as img:
                np.testing.assert_array_equal((await img.read())[0], PIXELS)
            ctx.decoded_cache.clear()
            async with cloudroi.open(srv.url(name), context=ctx) as img:
                np.testing.assert_array_equal((await img.read())[0], PIXELS)
                assert img.stats.cache_hits > 0
                assert img.stats.tile_requests == 0
            srv.add(name, V2)  # same size, a later Last-Modified
            ctx.decoded_cache.clear()
            async with cloudroi.open(srv.url(name), context=ctx) as img:
                np.testing.assert_array_equal((await img.read())[0], OTHER)
                assert img.stats.cache_hits == 0


async def test_without_any_validator_info_says_size_only() -> None:
    """Nothing identifies the version: cloudroi says so rather than pretend. A change of size is
    still seen (Content-Range total)."""
    with RangeServer(etags=False) as srv:
        name = _name()
        srv.add(name, V1)
        async with _context() as ctx, cloudroi.open(srv.url(name), context=ctx) as img:
            info = img.info()
            assert info["version_pinned"] == "size-only"
            assert info["etag"] is None
            assert info["last_modified"] is None
            srv.add(name, V1 + b"\0" * 100)
            with pytest.raises(cloudroi.ObjectChangedError, match="size changed"):
                await img.read()
    with RangeServer() as srv:
        srv.add("a.tif", V1)
        async with _context() as ctx, cloudroi.open(srv.url("a.tif"), context=ctx) as img:
            assert img.info()["version_pinned"] == "etag"


async def test_service_never_mixes_alternating_versions() -> None:
    """The service reads an alternating object twice (it retries a changed object once), then
    answers 502 source_changed; /info tells how the version is pinned."""
    with RangeServer(etags=False, last_modified=True, honour_if_match=False) as srv:
        name = _name()
        srv.alternate(name, [V1, V2])
        srv.add("stable.tif", V1)
        config = ServiceConfig(allowed_sources=(srv.url(""),))
        client = TestClient(TestServer(create_app(config)))
        await client.start_server()
        try:
            for _ in range(3):
                params = {"url": srv.url(name), "window": "0,0,384,512", "format": "npy"}
                async with client.get("/region", params=params) as resp:
                    body = await resp.read()
                    assert resp.status == 502, body
                    assert resp.headers["Content-Type"] == "application/problem+json"
                    assert (await resp.json(content_type=None))["code"] == "source_changed"
            params = {"url": srv.url("stable.tif"), "window": "0,0,384,512", "format": "npy"}
            async with client.get("/region", params=params) as resp:
                assert resp.status == 200
                np.testing.assert_array_equal(np.load(io.BytesIO(await resp.read()))[0], PIXELS)
            async with client.get("/info", params={"url": srv.url("stable.tif")}) as resp:
                assert resp.status == 200
                assert (await resp.json())["version_pinned"] == "last-modified"
        finally:
            await client.close()
