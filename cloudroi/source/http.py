"""HTTP(S) byte ranges with aiohttp: one range per GET, every answer checked, ETag pinned.

Facts this relies on (HTTP semantics, RFC 9110): a server may ignore ``Range`` and answer 200 with
the whole body, so a 200 is only accepted when the whole object is what was asked for; a 206 must
carry a ``Content-Range`` that matches the request; ``If-Match`` compares strong validators only, so
a weak ETag is compared by hand instead; ``Accept-Encoding: identity`` keeps ranges meaningful.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import aiohttp

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
from .base import check_content_range, parse_content_range

__all__ = ["HTTPSource", "parse_retry_after"]

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), _MAX_RETRY_AFTER)


def _status_error(resp: aiohttp.ClientResponse, url: str) -> SourceError:
    status = resp.status
    what = f"HTTP {status} {resp.reason or ''}".strip()
    if status in (404, 410):
        return SourceNotFoundError(what, url=url)
    if status in (401, 403):
        return AccessDeniedError(what, url=url)
    if status == 412:
        return ObjectChangedError(f"{what}: ETag no longer matches", url=url)
    if status in _RETRYABLE_STATUS:
        return TransientError(
            what,
            url=url,
            status=status,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )
    return UpstreamError(what, url=url, status=status)


def _is_weak(etag: str) -> bool:
    return etag.startswith(("W/", "w/"))


class HTTPSource:
    """Ranges of one HTTP(S) object through a shared ``aiohttp.ClientSession``.

    The session is borrowed, not owned: the caller (a ``cloudroi.Context``) closes it.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self.url = url
        self._session = session
        self._headers = dict(headers or {})
        self._timeout = timeout
        self.meta: ObjectMeta | None = None

    def _request_headers(self, rng: ByteRange) -> dict[str, str]:
        headers = dict(self._headers)
        headers["Range"] = rng.http_header()
        headers["Accept-Encoding"] = "identity"
        etag = self.meta.etag if self.meta else None
        if etag and not _is_weak(etag):
            headers["If-Match"] = etag
        return headers

    async def _send(self, rng: ByteRange) -> aiohttp.ClientResponse:
        try:
            kwargs: dict[str, object] = {"headers": self._request_headers(rng)}
            if self._timeout is not None:
                kwargs["timeout"] = self._timeout
            return await self._session.get(self.url, **kwargs)  # type: ignore[arg-type]
        except aiohttp.InvalidURL as exc:
            raise SourceNotFoundError(f"invalid URL: {exc}", url=self.url) from exc
        except aiohttp.TooManyRedirects as exc:
            raise UpstreamError("too many redirects", url=self.url) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"request failed: {exc!r}", url=self.url) from exc

    async def _body(self, resp: aiohttp.ClientResponse, expected: int) -> bytes:
        """Exactly ``expected`` bytes of body, or an error; never reads more than that."""
        length = resp.content_length
        if length is not None and length != expected:
            raise RangeNotSupportedError(
                f"Content-Length {length} for a range of {expected} bytes", url=self.url
            )
        try:
            data = await resp.content.readexactly(expected)
            if not resp.content.at_eof():
                extra = await resp.content.read(1)
                if extra:
                    raise RangeNotSupportedError("body longer than the range asked", url=self.url)
        except asyncio.IncompleteReadError as exc:
            raise TransientError(
                f"truncated body: {len(exc.partial)} of {expected} bytes", url=self.url
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"body read failed: {exc!r}", url=self.url) from exc
        return data

    def _check_encoding(self, resp: aiohttp.ClientResponse) -> None:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise RangeNotSupportedError(
                f"range answered with Content-Encoding {encoding!r}", url=self.url
            )

    def _check_etag(self, resp: aiohttp.ClientResponse) -> None:
        assert self.meta is not None
        got = resp.headers.get("ETag")
        if self.meta.etag and got and got != self.meta.etag:
            raise ObjectChangedError(
                f"ETag changed from {self.meta.etag} to {got}", url=self.url
            )

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        length = max(1, length)
        rng = ByteRange(0, length)
        resp = await self._send(rng)
        try:
            if resp.status == 206:
                self._check_encoding(resp)
                cr = check_content_range(
                    resp.headers.get("Content-Range"), rng, size=None, url=self.url
                )
                if cr.total is None:
                    raise RangeNotSupportedError(
                        "Content-Range without the object size", url=self.url
                    )
                meta = ObjectMeta(size=cr.total, etag=resp.headers.get("ETag"))
                data = await self._body(resp, (cr.last or 0) + 1)
            elif resp.status == 200:
                # Only acceptable when the whole object is no larger than what was asked.
                self._check_encoding(resp)
                size = resp.content_length
                if size is None or size > length:
                    raise RangeNotSupportedError(
                        "server ignored the Range header (200 for a ranged GET)", url=self.url
                    )
                meta = ObjectMeta(size=size, etag=resp.headers.get("ETag"))
                data = await self._body(resp, size)
            elif resp.status == 416:
                unsatisfied = parse_content_range(resp.headers.get("Content-Range"))
                if unsatisfied is None or unsatisfied.total != 0:
                    raise RangeNotSupportedError("416 for the first bytes", url=self.url)
                meta, data = ObjectMeta(size=0, etag=resp.headers.get("ETag")), b""
            else:
                raise _status_error(resp, self.url)
        except BaseException:
            resp.close()  # drop the connection rather than drain an unwanted body
            raise
        resp.release()
        self.meta = meta
        return meta, data

    async def read(self, rng: ByteRange) -> bytes:
        assert self.meta is not None, "read before open"
        resp = await self._send(rng)
        try:
            if resp.status == 206:
                self._check_encoding(resp)
                self._check_etag(resp)
                check_content_range(
                    resp.headers.get("Content-Range"), rng, size=self.meta.size, url=self.url
                )
                data = await self._body(resp, rng.length)
            elif resp.status == 200:
                self._check_etag(resp)
                if resp.content_length is not None and resp.content_length != self.meta.size:
                    raise ObjectChangedError("object size changed", url=self.url)
                if rng.start != 0 or rng.length != self.meta.size:
                    raise RangeNotSupportedError(
                        "server ignored the Range header (200 for a ranged GET)", url=self.url
                    )
                data = await self._body(resp, self.meta.size)
            elif resp.status == 416:
                cr = parse_content_range(resp.headers.get("Content-Range"))
                total = cr.total if cr else None
                raise ObjectChangedError(
                    f"range not satisfiable (object is now {total} bytes, was {self.meta.size})",
                    url=self.url,
                )
            else:
                raise _status_error(resp, self.url)
        except BaseException:
            resp.close()
            raise
        resp.release()
        return data

    async def close(self) -> None:
        return None
