"""engine="cloudroi" arrays computed by dask.distributed: a LocalCluster of two worker processes
(one for the module) reading from the range server and moto's S3. Results equal rasterio's; each
process opens a file once; a transient fault is retried (our policy, then Dask) without wrong
pixels; a worker killed mid-graph and the graph re-run give the same pixels."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr
from rasterio.io import MemoryFile

import cloudroi
from cloudroi.cog import write_cog
from cloudroi.testing import Fault, RangeServer
from cloudroi.xarray import runtime
from cloudroi.xarray.backend import open_image_spec
from tests.upstream import Upstream

distributed = pytest.importorskip("distributed")

RAW = np.random.default_rng(5).integers(0, 60_000, (2, 320, 448), dtype=np.uint16)
COG = write_cog(
    RAW,
    tile=64,
    compression="deflate",
    predictor=2,
    epsg=32633,
    transform=(500_000.0, 10.0, 0.0, 6_100_000.0, 0.0, -10.0),
)
CHUNKS = 5 * 7


def rasterio_read(data: bytes) -> Any:
    with MemoryFile(data) as mem, mem.open() as src:
        return src.read()


@pytest.fixture(scope="module")
def client(s3_server: str) -> Iterator[Any]:
    """Two worker processes (started after the S3 credentials are in the environment).

    Forked from a fork server that has imported cloudroi's backend, xarray, dask and s3fs once:
    spawned workers would each import them (~15 s on a loaded 2-core box; the tests pass with
    spawn too), and forking this multi-threaded process is unsafe. A worker the nanny replaces
    comes from the same server.
    """
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        ctx = distributed.utils.get_mp_context()  # sets distributed's own preload list
        ctx.set_forkserver_preload([*_PRELOAD, "cloudroi.xarray.backend", "s3fs"])
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
        )
        with cluster, distributed.Client(cluster) as dask_client:
            yield dask_client


_PRELOAD = ["distributed", "numpy", "dask", "dask.array", "xarray", "aiohttp", "imagecodecs"]


def opens(client: Any) -> dict[str, int]:
    """Images each worker process's runtime has opened so far."""
    return {addr: c.opens for addr, c in client.run(runtime.counters).items()}


def header_gets(up: Upstream, name: str) -> int:
    return sum(1 for e in up.requests(name) if (e.range or "").startswith("bytes=0-"))


def test_cluster_matches_rasterio_and_opens_once_per_process(
    client: Any, server: RangeServer
) -> None:
    up = Upstream.publish(server, {"c.tif": COG}, "xr-dask")
    before = opens(client)
    da = xr.open_dataarray(up.url("c.tif"), engine="cloudroi", chunks={})
    assert da.data.npartitions == CHUNKS
    out = da.compute()
    np.testing.assert_array_equal(out.values, rasterio_read(COG))
    grew = {addr: n - before.get(addr, 0) for addr, n in opens(client).items()}
    assert all(n <= 1 for n in grew.values()), grew
    # the client's open + at most one per worker process, for 35 tasks
    assert header_gets(up, "c.tif") == 1 + sum(grew.values()) <= 3
    np.testing.assert_array_equal(out.values, cloudroi.read(up.url("c.tif")))


def test_cluster_reads_s3(client: Any, s3_client: Any, s3_server: str) -> None:
    bucket = "cloudroi-xr-dask"
    if bucket not in {b["Name"] for b in s3_client.list_buckets().get("Buckets", [])}:
        s3_client.create_bucket(Bucket=bucket)
    s3_client.put_object(Bucket=bucket, Key="c.tif", Body=COG)
    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}
    da = xr.open_dataarray(
        f"s3://{bucket}/c.tif",
        engine="cloudroi",
        chunks={"y": 128, "x": 128},
        storage_options=options,
    )
    before = opens(client)
    np.testing.assert_array_equal(da.isel(y=slice(30, 300)).compute().values, RAW[:, 30:300])
    grew = {addr: n - before.get(addr, 0) for addr, n in opens(client).items()}
    assert all(n <= 1 for n in grew.values()), grew  # 12 tasks, one open per process


def _fail_range(path: str, header: str, times: int) -> Any:
    """A fault hook: 503 for the first ``times`` GETs of one range of one file."""
    seen = itertools.count()
    lock = threading.Lock()

    def hook(request: Any, etag: str) -> Fault | None:
        if request.path != path or request.headers.get("Range") != header:
            return None
        with lock:
            return Fault("status", status=503) if next(seen) < times else None

    return hook


def test_a_transient_fault_is_retried_without_wrong_pixels(
    client: Any, server: RangeServer
) -> None:
    up = Upstream.publish(server, {"c.tif": COG}, "xr-fault")
    da = xr.open_dataarray(up.url("c.tif"), engine="cloudroi", chunks={})
    img, _ = open_image_spec(up.url("c.tif"))
    plan = img.plan((64, 128, 64, 64))
    assert plan.requests is not None
    assert len(plan.requests) == 1
    rng = plan.requests[0]
    header = f"bytes={rng.start}-{rng.start + rng.length - 1}"
    # 5 failures: the task's 4 attempts (RetryPolicy) all fail, Dask runs it again, and its
    # second attempt gets the block.
    server.fault = _fail_range("/" + up.prefix + "c.tif", header, 5)
    out = client.compute(da.data, retries=2).result()
    np.testing.assert_array_equal(out, RAW)
    asked = [e for e in up.requests("c.tif") if e.range == header]
    assert [e.status for e in asked] == [503] * 5 + [206]


def test_a_killed_worker_and_a_rerun_give_the_same_pixels(client: Any, server: RangeServer) -> None:
    up = Upstream.publish(server, {"c.tif": COG}, "xr-kill")
    da = xr.open_dataarray(up.url("c.tif"), engine="cloudroi", chunks={"y": 64, "x": 64})
    server.latency = 0.1  # ~35 tasks x 0.1 s over 4 threads: time to kill one mid-graph
    future = client.compute(da.data)
    victim_pid = next(iter(client.run(os.getpid).values()))
    deadline = time.monotonic() + 10
    while len(up.requests("c.tif")) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not future.done()  # mid-graph
    os.kill(victim_pid, signal.SIGKILL)
    out = future.result(timeout=60)
    np.testing.assert_array_equal(out, RAW)
    client.wait_for_workers(2, timeout=30)
    assert victim_pid not in client.run(os.getpid).values()  # the nanny started another
    server.latency = 0.0
    again = client.compute(da.data).result(timeout=60)
    np.testing.assert_array_equal(again, out)
