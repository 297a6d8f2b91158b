"""Loads the sample COG into the compose file's MinIO: waits for the store, creates the bucket,
generates the sample (cloudroi.sample) and uploads it, unless it is already there.

Settings come from the environment: CLOUDROI_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, SAMPLE_BUCKET, SAMPLE_KEY, and SAMPLE_SIZE (pixels a side, default 4096).
"""

import os
import sys
import time

import s3fs

from cloudroi.sample import SAMPLE_SIZE, sample_cog_bytes


def wait_for_store(fs: s3fs.S3FileSystem, deadline: float) -> None:
    while True:
        try:
            fs.ls("")
            return
        except OSError as exc:  # botocore's connection errors surface as OSError subclasses
            if time.monotonic() > deadline:
                raise SystemExit(f"S3 store not reachable: {exc}") from exc
            time.sleep(1)


def main() -> int:
    bucket = os.environ.get("SAMPLE_BUCKET", "cloudroi-sample")
    key = os.environ.get("SAMPLE_KEY", "sample-dem.tif")
    size = int(os.environ.get("SAMPLE_SIZE", str(SAMPLE_SIZE)))
    fs = s3fs.S3FileSystem(
        endpoint_url=os.environ.get("CLOUDROI_S3_ENDPOINT_URL") or None,
        skip_instance_cache=True,
    )
    wait_for_store(fs, time.monotonic() + float(os.environ.get("SAMPLE_WAIT", "60")))
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    path = f"{bucket}/{key}"
    if fs.exists(path):
        print(f"s3://{path} is already there")
        return 0
    data = sample_cog_bytes(size)
    fs.pipe_file(path, data)
    print(f"uploaded s3://{path} ({len(data)} bytes, {size} x {size} pixels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
