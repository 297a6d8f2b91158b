"""Byte ranges through fsspec: S3 via s3fs's async client, and any other fsspec filesystem.

For S3 the GET goes through s3fs's own client (``_call_s3("get_object", ...)``) so that one request
both returns the first bytes and the object's size (from ``ContentRange``) and ETag, and so later
reads carry ``IfMatch``: S3 answers 412 when the object was overwritten. Other async filesystems use
``_info`` + ``_cat_file`` (two concurrent calls at open); synchronous ones run in worker threads.
Whatever a backend returns is checked for length, since not every backend honours a range.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import (
    AccessDeniedError,
    ObjectChangedError,
    RangeNotSupportedError,
    SourceError,
    SourceNotFoundError,
    TransientError,
    UpstreamError,
)
from ..types import ByteRange, ObjectMeta
from .base import check_content_range
from .client_errors import describe_client_error

__all__ = ["FsspecSource"]

_S3_RETRYABLE_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "503"}
)


def _client_error_of(exc: BaseException) -> Any | None:
    """The botocore ClientError behind an exception s3fs translated, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if getattr(cur, "response", None) is not None and hasattr(cur, "operation_name"):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _translate(exc: BaseException, url: str) -> SourceError:
    err = _client_error_of(exc)
    if err is not None:
        response = err.response
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"S3 {code or status}"
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
            return SourceNotFoundError(message, url=url)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or (
            status in (401, 403)
        ):
            return AccessDeniedError(message, url=url)
        if code == "PreconditionFailed" or status == 412:
            return ObjectChangedError(f"{message}: ETag no longer matches", url=url)
        if code == "InvalidRange" or status == 416:
            return ObjectChangedError(f"{message}: range no longer satisfiable", url=url)
        if code in _S3_RETRYABLE_CODES or (isinstance(status, int) and status >= 500):
            return TransientError(message, url=url, status=status)
        return UpstreamError(message, url=url, status=status)
    if isinstance(exc, FileNotFoundError):
        return SourceNotFoundError(f"not found: {exc}", url=url)
    if isinstance(exc, PermissionError):
        return AccessDeniedError(f"access denied: {exc}", url=url)
    if isinstance(exc, TimeoutError | ConnectionError):
        return TransientError(describe_client_error(exc), url=url)
    return UpstreamError(f"storage error: {exc!r}", url=url)


def _is_s3(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return bool({"s3", "s3a"} & set(protocol)) and hasattr(fs, "_call_s3")


def _etag_of(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash", "generation", "mtime", "LastModified", "last_modified"):
        value = info.get(key)
        if value is not None:
            return str(value)
    return None


class FsspecSource:
    """Ranges of one object of an fsspec filesystem (``fs`` borrowed, not owned)."""

    def __init__(self, url: str, fs: Any, path: str) -> None:
        self.url = url
        self._fs = fs
        self._path = path
        self._s3 = _is_s3(fs)
        self.meta: ObjectMeta | None = None

    # -- S3: one GET returns bytes, size and ETag; later GETs carry IfMatch ---------------------
    async def _s3_get(self, rng: ByteRange) -> tuple[bytes, str | None, str | None]:
        bucket, key, version = self._fs.split_path(self._path)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": rng.http_header()}
        if version:
            kwargs["VersionId"] = version
        if self.meta is not None and self.meta.etag:
            kwargs["IfMatch"] = self.meta.etag
        resp = await self._fs._call_s3("get_object", **kwargs)
        body = resp["Body"]
        try:
            data = await body.read()
        finally:
            body.close()
        return bytes(data), resp.get("ContentRange"), resp.get("ETag")

    async def _open_s3(self, length: int) -> tuple[ObjectMeta, bytes]:
        rng = ByteRange(0, length)
        try:
            data, content_range, etag = await self._s3_get(rng)
        except Exception as exc:
            err = _client_error_of(exc)
            if err is not None and err.response.get("Error", {}).get("Code") == "InvalidRange":
                # Only an empty object cannot satisfy a range starting at byte 0.
                return ObjectMeta(size=0), b""
            raise
        if content_range is None:
            # The whole (small) object came back.
            return ObjectMeta(size=len(data), etag=etag), data
        cr = check_content_range(content_range, rng, size=None, url=self.url)
        if cr.total is None or len(data) != (cr.last or 0) + 1:
            raise RangeNotSupportedError("S3 range answer does not match its body", url=self.url)
        return ObjectMeta(size=cr.total, etag=etag), data

    async def _read_s3(self, rng: ByteRange) -> bytes:
        assert self.meta is not None
        data, content_range, etag = await self._s3_get(rng)
        if self.meta.etag and etag and etag != self.meta.etag:
            raise ObjectChangedError(f"ETag changed from {self.meta.etag} to {etag}", url=self.url)
        if content_range is not None:
            check_content_range(content_range, rng, size=self.meta.size, url=self.url)
        return data

    # -- any other fsspec filesystem --------------------------------------------------------
    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._fs, "async_impl", False):
            return await getattr(self._fs, "_" + name)(*args, **kwargs)
        return await asyncio.to_thread(getattr(self._fs, name), *args, **kwargs)

    async def _open_generic(self, length: int) -> tuple[ObjectMeta, bytes]:
        info, data = await asyncio.gather(
            self._call("info", self._path), self._call("cat_file", self._path, start=0, end=length)
        )
        if info.get("type", "file") != "file":
            raise SourceNotFoundError("not a file", url=self.url)
        size = int(info["size"])
        return ObjectMeta(size=size, etag=_etag_of(info)), bytes(data)

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        length = max(1, length)
        try:
            meta, data = await (self._open_s3(length) if self._s3 else self._open_generic(length))
        except SourceError:
            raise
        except Exception as exc:
            raise _translate(exc, self.url) from exc
        if len(data) != min(length, meta.size):
            raise RangeNotSupportedError(
                f"asked for {min(length, meta.size)} bytes, got {len(data)}", url=self.url
            )
        self.meta = meta
        return meta, data

    async def read(self, rng: ByteRange) -> bytes:
        assert self.meta is not None, "read before open"
        try:
            if self._s3:
                data = await self._read_s3(rng)
            else:
                data = bytes(await self._call("cat_file", self._path, start=rng.start, end=rng.end))
        except SourceError:
            raise
        except Exception as exc:
            raise _translate(exc, self.url) from exc
        if len(data) != rng.length:
            raise RangeNotSupportedError(
                f"asked for {rng.length} bytes, got {len(data)}", url=self.url
            )
        return data

    async def close(self) -> None:
        return None
