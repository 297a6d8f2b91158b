"""Reading COGs from S3 (moto in server mode, through s3fs): accounting, pinning, overwrite."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

import cloudroi
from cloudroi.cog import write_cog

BUCKET = "cloudroi-s3-tests"
DATA = (np.arange(900 * 1100, dtype=np.uint32).reshape(900, 1100) % 50_000).astype(np.uint16)
COG = write_cog(DATA, tile=128, compression="zstd", predictor=2)
_keys = itertools.count()


@pytest.fixture
def bucket(s3_client: Any) -> str:
    existing = {b["Name"] for b in s3_client.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        s3_client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
async def s3ctx(s3_storage_options: dict[str, dict[str, Any]]) -> AsyncIterator[cloudroi.Context]:
    ctx = cloudroi.Context(storage_options=s3_storage_options)
    yield ctx
    await ctx.close()


def put(client: Any, bucket: str, body: bytes) -> tuple[str, str]:
    key = f"cog-{next(_keys)}.tif"
    client.put_object(Bucket=bucket, Key=key, Body=body)
    return key, f"s3://{bucket}/{key}"


async def test_cold_read_from_s3(s3_client: Any, bucket: str, s3ctx: cloudroi.Context) -> None:
    _, url = put(s3_client, bucket, COG)
    async with cloudroi.open(url, context=s3ctx) as img:
        assert img.stats.requests == 1  # size and ETag came with the first bytes
        plan = img.plan((300, 200, 400, 300))
        arr = await img.read((300, 200, 400, 300))
        np.testing.assert_array_equal(arr[0], DATA[200:500, 300:700])
        assert plan.requests is not None
        assert img.stats.requests == 1 + len(plan.requests)


async def test_overwrite_is_detected_and_new_version_served_after_reopen(
    s3_client: Any, bucket: str, s3ctx: cloudroi.Context
) -> None:
    key, url = put(s3_client, bucket, COG)
    async with cloudroi.open(url, context=s3ctx) as img:
        np.testing.assert_array_equal((await img.read((0, 0, 64, 64)))[0], DATA[:64, :64])
        s3_client.put_object(
            Bucket=bucket, Key=key, Body=write_cog(DATA + 1, tile=128, compression="zstd")
        )
        with pytest.raises(cloudroi.ObjectChangedError):
            await img.read((600, 600, 64, 64))
    async with cloudroi.open(url, context=s3ctx) as img:
        np.testing.assert_array_equal((await img.read((0, 0, 64, 64)))[0], DATA[:64, :64] + 1)
        assert img.stats.header_cache_hits == 0  # a new ETag: the old parsed header is not used


async def test_missing_and_denied(s3_client: Any, bucket: str, s3ctx: cloudroi.Context) -> None:
    with pytest.raises(cloudroi.SourceNotFoundError):
        await cloudroi.open(f"s3://{bucket}/no-such-key.tif", context=s3ctx)
    with pytest.raises(cloudroi.SourceNotFoundError):
        await cloudroi.open("s3://no-such-bucket-cloudroi/x.tif", context=s3ctx)


# --------------------------------------------------------------------------------------------
# one retry policy: s3fs and botocore must not retry under cloudroi's RetryPolicy
# --------------------------------------------------------------------------------------------

_SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>1</RequestId></Error>"
)


class SlowDownProxy:
    """A reverse proxy on 127.0.0.1 in front of moto's server: forwards every request, except
    that the first ``failures`` ranged GETs of a key not ending in ``-header`` answer 503
    SlowDown; counts the ranged GETs it sees (the ones storage would bill)."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream = upstream
        self.failures = failures
        self.gets = 0
        self.refused = 0
        self._runner: Any = None
        self.url = ""

    async def _handle(self, request: Any) -> Any:
        import aiohttp
        from aiohttp import web

        ranged = request.method == "GET" and "Range" in request.headers
        if ranged:
            self.gets += 1
            if not request.headers["Range"].startswith("bytes=0-") and self.refused < self.failures:
                self.refused += 1
                return web.Response(status=503, body=_SLOWDOWN, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        body = await request.read()
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body
            ) as resp,
        ):
            data = await resp.read()
            out_headers = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            return web.Response(status=resp.status, body=data, headers=out_headers)

    async def __aenter__(self) -> SlowDownProxy:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.mark.parametrize(("failures", "expect_ok"), [(2, True), (10, False)])
async def test_one_retry_policy_owns_the_count(
    s3_client: Any, bucket: str, s3_server: str, failures: int, expect_ok: bool
) -> None:
    _, url = put(s3_client, bucket, COG)
    policy = cloudroi.RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002)
    async with SlowDownProxy(s3_server, failures) as proxy:
        options = {"s3": {"endpoint_url": proxy.url, "key": "testing", "secret": "testing"}}
        async with (
            cloudroi.Context(storage_options=options, retry=policy) as ctx,
            cloudroi.open(url, context=ctx) as img,
        ):
            opened = proxy.gets
            if expect_ok:
                arr = await img.read((0, 0, 64, 64))
                np.testing.assert_array_equal(arr[0], DATA[:64, :64])
                # the two 503s and the answer: 3 GETs, as the policy says
                assert proxy.gets - opened == failures + 1
                assert img.stats.retries == failures
            else:
                with pytest.raises(cloudroi.TransientError):
                    await img.read((0, 0, 64, 64))
                # 4 attempts of cloudroi's policy, each one GET: not 4 x s3fs's 5 x botocore's
                assert proxy.gets - opened == policy.attempts
