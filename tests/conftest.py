"""Shared fixtures: a real HTTP range server on 127.0.0.1, started once per test session, and
moto's S3 server; tests marked ``slow`` (the long fuzz, soak, load and framing runs) run only
with CLOUDROI_LONG=1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudroi.testing import RangeServer
from tests.longrun import LONG


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") is not None and not LONG:
        pytest.skip("long run: set CLOUDROI_LONG=1")


# --------------------------------------------------------------------------------------------
# parallel runs: pyproject.toml's addopts ask pytest-xdist for ``-n auto --dist loadfile``
# --------------------------------------------------------------------------------------------

#: The test files that take longest, slowest first (as ``--durations`` measured them):
#: each file runs on one worker, and these are handed out first so that the short files fill
#: in around them instead of one long file running alone at the end.
SLOW_FILES_FIRST = (
    "test_deploy.py",
    "test_quality.py",
    "test_benchmarks_smoke.py",
    "test_xarray_dask.py",
    "test_lambda_coldstart.py",
    "test_batch_bench_smoke.py",
    "test_hedging_benchmark.py",
    "test_cli_georef.py",
    "test_browser_map.py",
    "test_readme.py",
    "test_jpeg_parity.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` starts: one per CPU, at least 2 (many tests wait on sockets
    and child processes), for the whole suite or a directory; none (a plain in-process run) when
    the command names test files or tests, which start faster alone, and with CLOUDROI_LONG=1
    (the soak, load and memory runs measure the machine: they run alone).
    $PYTEST_XDIST_AUTO_NUM_WORKERS decides when set."""
    import os

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    if LONG:
        return 0
    here = config.invocation_params.dir
    if any(not (here / arg).is_dir() for arg in config.args):
        return 0
    return max(2, os.cpu_count() or 1)


@pytest.fixture(scope="session")
def range_server() -> Iterator[RangeServer]:
    """One server for the session; tests add files under unique paths and call ``reset()``."""
    with RangeServer() as server:
        yield server


@pytest.fixture
def server(range_server: RangeServer) -> Iterator[RangeServer]:
    """The session server with its request log cleared and no fault hook or latency."""
    range_server.reset()
    range_server.fault = None
    range_server.latency = 0.0
    range_server.multirange = True
    yield range_server
    range_server.fault = None
    range_server.latency = 0.0
    range_server.multirange = True


@pytest.fixture(scope="session")
def warp_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The GDAL-written COGs the warp tests compare with GDAL (tests/warp_data.py), written
    once per session; under pytest-xdist once per run, by the first worker that needs them,
    into the directory the run's workers share (the others wait for it on a lock)."""
    import fcntl
    import json
    import os

    from tests.warp_data import build

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp("warp"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's, one level above each worker's
    index = shared / "warp-files.json"
    with (shared / "warp-files.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not index.exists():
            (shared / "warp").mkdir(exist_ok=True)
            files = build(shared / "warp")
            index.write_text(json.dumps({key: str(path) for key, path in files.items()}))
    return {key: Path(path) for key, path in json.loads(index.read_text()).items()}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1 (a real HTTP endpoint, read through s3fs).

    Yields the endpoint URL. Credentials are dummy values set in the environment for the session.
    """
    import os

    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(_S3_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def s3_client(s3_server: str) -> Any:
    """A boto3 client on the moto server, for putting test objects."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


@pytest.fixture
def s3_storage_options(s3_server: str) -> dict[str, dict[str, Any]]:
    """``ContextOptions.storage_options`` pointing s3:// at the moto server."""
    return {"s3": {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}}
