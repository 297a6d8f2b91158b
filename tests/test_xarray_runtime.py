"""The per-process runtime (cloudroi.xarray.runtime): one loop, one Context, one open per file,
from many threads and across fork; picklable specs; the sync helpers on the shared loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cloudroi
from cloudroi import ImageSpec
from cloudroi.cog import write_cog
from cloudroi.context import default_executor
from cloudroi.testing import RangeServer
from cloudroi.xarray import runtime
from tests.upstream import Upstream

# random pixels: the file (~700 kB) is far bigger than the first GET's prefix
DATA = np.random.default_rng(3).integers(0, 60_000, (3, 300, 400), dtype=np.uint16)
COG = write_cog(DATA, tile=64, compression="deflate", predictor=2)
WINDOWS = [(c, r, 64, 64) for r in range(0, 256, 64) for c in range(0, 384, 64)]


def header_gets(up: Upstream, name: str) -> int:
    """GETs from byte 0: the opens (the prefix GET of each)."""
    return sum(1 for e in up.requests(name) if (e.range or "").startswith("bytes=0-"))


def test_threads_share_one_open_and_get_the_right_pixels(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "rt-threads")
    spec = ImageSpec.create(up.url("a.tif"))
    with ThreadPoolExecutor(8) as pool:
        arrays = list(pool.map(lambda w: runtime.read_sync(spec, w), WINDOWS))
    for (c, r, w, h), arr in zip(WINDOWS, arrays, strict=True):
        np.testing.assert_array_equal(arr, DATA[:, r : r + h, c : c + w])
    # 24 windows from 8 threads: one open, i.e. one header GET (a fresh asyncio.run + session
    # per call, as cloudroi.read did, opens the file 24 times).
    assert header_gets(up, "a.tif") == 1
    assert runtime.counters().pid > 0


def test_spec_pickles_small_and_carries_the_header_size(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG, "b.tif": COG}, "rt-spec")

    async def describe() -> ImageSpec:
        # a prefix too short for the header: the open needs a second GET
        async with cloudroi.open(up.url("a.tif"), prefix_bytes=256) as img:
            assert img.stats.requests == 2
            return img.spec()

    spec = cloudroi.xarray.runtime.run(describe())
    blob = pickle.dumps(spec)
    assert len(blob) < 1024, len(blob)
    assert spec.header_bytes > 256
    assert spec.open_options == {"prefix_bytes": 256}
    # The same spec for a URL this process has never opened: the header size it carries makes
    # the open a single GET (without it, two).
    moved = ImageSpec.create(
        up.url("b.tif"), prefix_bytes=256, header_bytes=pickle.loads(blob).header_bytes
    )
    runtime.read_sync(moved, (0, 0, 8, 8))
    assert len(up.requests("b.tif")) == 2  # the header GET and one block
    assert header_gets(up, "b.tif") == 1


async def test_an_image_refuses_to_pickle_and_points_to_its_spec(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "rt-pickle")
    async with cloudroi.open(up.url("a.tif")) as img:
        with pytest.raises(TypeError, match=r"image\.spec\(\)"):
            pickle.dumps(img)
    async with cloudroi.open(COG) as mem:
        with pytest.raises(TypeError, match="bytes"):
            mem.spec()


def test_run_on_the_runtime_loop_raises_instead_of_deadlocking() -> None:
    async def nested() -> str:
        inner = asyncio.sleep(0, "never")
        try:
            runtime.run(inner)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "own event loop" in runtime.run(nested(), timeout=10)


async def test_sync_helpers_share_the_runtime_session(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "rt-sync")
    # From a thread running its own event loop (this test's), as before.
    first = cloudroi.read(up.url("a.tif"), (0, 0, 32, 32))
    np.testing.assert_array_equal(first, DATA[:, :32, :32])
    ctx = runtime.run(runtime.shared_context())
    session = ctx.http_session()
    info = await asyncio.to_thread(cloudroi.info, up.url("a.tif"))
    assert info["width"] == 400
    # The helpers used the one session (not a session per call, closed after it) and did not
    # close it.
    assert runtime.run(runtime.shared_context()).http_session() is session
    assert not session.closed


def test_run_from_many_threads_at_once() -> None:
    async def tag(i: int) -> tuple[int, str]:
        await asyncio.sleep(0.01)
        return i, threading.current_thread().name

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: runtime.run(tag(i)), range(64)))
    assert [i for i, _ in results] == list(range(64))
    assert {name for _, name in results} == {"cloudroi-runtime"}


def _child_read(spec: ImageSpec) -> tuple[int, bytes]:
    arr = runtime.read_sync(spec, (64, 64, 100, 50))
    return runtime.counters().pid, arr.tobytes()


def test_a_forked_child_gets_its_own_loop(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "rt-fork")
    spec = ImageSpec.create(up.url("a.tif"))
    runtime.read_sync(spec, (0, 0, 8, 8))  # the parent's loop, session and Image exist
    parent = runtime.counters()
    # Every thread of the parent's decode pool exists (and is idle) at the fork: a child that
    # kept the pool would queue its decodes to threads it does not have, and hang.
    pool_threads = default_executor()._max_workers
    barrier = threading.Barrier(pool_threads + 1)
    started = [default_executor().submit(barrier.wait, 10) for _ in range(pool_threads)]
    barrier.wait(10)
    for f in started:
        f.result(10)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pid, raw = pool.apply_async(_child_read, (spec,)).get(timeout=20)
    assert pid != parent.pid
    expected = DATA[:, 64:114, 64:164]
    np.testing.assert_array_equal(np.frombuffer(raw, np.uint16).reshape(expected.shape), expected)
    # The parent's runtime still works after the fork.
    np.testing.assert_array_equal(runtime.read_sync(spec, (64, 64, 100, 50)), expected)


def test_a_changed_object_is_reopened_on_the_next_read(server: RangeServer) -> None:
    up = Upstream.publish(server, {"a.tif": COG}, "rt-changed")
    spec = ImageSpec.create(up.url("a.tif"))
    np.testing.assert_array_equal(runtime.read_sync(spec, (0, 0, 8, 8)), DATA[:, :8, :8])
    server.add(up.prefix + "a.tif", write_cog(DATA + 1, tile=64, compression="deflate"))
    with pytest.raises(cloudroi.ObjectChangedError):
        runtime.read_sync(spec, (200, 200, 8, 8))
    np.testing.assert_array_equal(
        runtime.read_sync(spec, (200, 200, 8, 8)), DATA[:, 200:208, 200:208] + 1
    )
    assert header_gets(up, "a.tif") == 2
