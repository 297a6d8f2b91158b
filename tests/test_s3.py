"""Reading COGs from S3 (moto in server mode, through s3fs): accounting, pinning, overwrite."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

import cloudroi
from cloudroi.testing.cog import write_cog

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
