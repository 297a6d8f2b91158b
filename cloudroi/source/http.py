"""HTTP(S) byte ranges with aiohttp: one range per GET (or, asked for, several in one
``multipart/byteranges`` GET), every answer checked, ETag pinned.

Facts this relies on (HTTP semantics, RFC 9110): a server may ignore ``Range`` and answer 200 with
the whole body, so a 200 is only accepted when the whole object is what was asked for; a 206 must
carry a ``Content-Range`` that matches the request; ``If-Match`` compares strong validators only, so
a weak ETag is compared by hand instead; ``Accept-Encoding: identity`` keeps ranges meaningful.
A multi-range GET is answered by servers that support it (nginx, Apache, Go's file server) with
206 ``multipart/byteranges`` (RFC 9110 14.6), whose parts may be merged or reordered; S3, GCS and
many others answer 200 with the whole object, some serve only the first range.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

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
from .base import (
    Hedgeable,
    MultiRangeSource,
    RangeSource,
    RequestCounter,
    check_content_range,
    notify_first_byte,
    parse_content_range,
)
from .client_errors import describe_client_error
from .multipart import MAX_LINE, ByterangesParser, NotByteranges, byteranges_boundary

__all__ = ["MAX_REDIRECTS", "HTTPSource", "RedirectCheck", "parse_retry_after"]

log = logging.getLogger("cloudroi.http")

_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 30.0
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
#: Statuses after which a GET to the remembered end of a redirect chain is sent through the
#: original URL again (a presigned target may have expired, a moved object moved on).
_REFOLLOW_STATUS = frozenset({401, 403, 404, 410})
#: Redirects followed per GET; one more is an UpstreamError.
MAX_REDIRECTS = 5
#: Request headers that do not follow a redirect to another origin (as browsers and aiohttp do).
_CREDENTIALS = ("Authorization", "Proxy-Authorization", "Cookie")
#: Bytes of a redirect's body read (and dropped) to keep its connection; a longer one is closed.
_REDIRECT_BODY = 64 << 10
#: Largest read of a multipart/byteranges body at a time.
_MULTIPART_CHUNK = 256 << 10

#: Called with each redirect target before it is requested; raises to refuse it.
RedirectCheck = Callable[[URL], None]


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
        return ObjectChangedError(f"{what}: the object changed since it was opened", url=url)
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


def _meta(resp: aiohttp.ClientResponse, size: int) -> ObjectMeta:
    return ObjectMeta(
        size=size,
        etag=resp.headers.get("ETag") or None,
        last_modified=resp.headers.get("Last-Modified") or None,
    )


def _same_date(a: str, b: str) -> bool:
    """Whether two HTTP dates name the same second (compared as text when unparseable)."""
    if a.strip() == b.strip():
        return True
    try:
        return email.utils.parsedate_to_datetime(a) == email.utils.parsedate_to_datetime(b)
    except (TypeError, ValueError):
        return False


class HTTPSource:
    """Ranges of one HTTP(S) object through a shared ``aiohttp.ClientSession``.

    A ``RangeSource``, a ``MultiRangeSource``, a ``RequestCounter`` and ``Hedgeable`` (see
    ``.base``). The
    session is borrowed, not owned: the caller (a ``cloudroi.Context``) closes it.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        multirange_refused: MutableMapping[str, str] | None = None,
        check_redirect: RedirectCheck | None = None,
    ) -> None:
        self.url = url
        self._session = session
        self._headers = dict(headers or {})
        self._timeout = timeout
        self.meta: ObjectMeta | None = None
        try:
            self._start: URL | None = URL(url)
        except ValueError:
            self._start = None  # reported as an invalid URL by the first request
        #: Where GETs go: the end of the last redirect chain followed from ``url``.
        self._target = self._start
        self._check_redirect = check_redirect
        #: Origins whose servers did not answer a multi-range GET with usable
        #: multipart/byteranges, and how they answered (shared through the Context, so each
        #: origin is asked once).
        self._refused = multirange_refused if multirange_refused is not None else {}
        self._requests_sent = 0

    @property
    def requests_sent(self) -> int:
        """GETs started so far: redirect hops, multi-range GETs (refused ones too) and
        attempts that failed on the wire included (``RequestCounter``)."""
        return self._requests_sent

    @property
    def origin(self) -> str:
        """The origin that serves the object's bytes (after redirects), as Context keys it
        (``Hedgeable``)."""
        target = self._target
        if target is None or not target.absolute:
            return self.url
        return str(target.origin())

    def _request_headers(self, rng: ByteRange) -> dict[str, str]:
        headers = dict(self._headers)
        headers["Range"] = rng.http_header()
        headers["Accept-Encoding"] = "identity"
        meta = self.meta
        if meta is not None:
            if meta.etag:
                if not _is_weak(meta.etag):
                    headers["If-Match"] = meta.etag
            elif meta.last_modified:
                # No ETag: the date is the validator (RFC 9110 13.1.4; a 412 if it changed).
                headers["If-Unmodified-Since"] = meta.last_modified
        return headers

    async def _send(self, rng: ByteRange) -> aiohttp.ClientResponse:
        return await self._send_headers(self._request_headers(rng))

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

    def _check_version(self, resp: aiohttp.ClientResponse) -> None:
        """The answer comes from the version seen at open: same ETag, or without an ETag the
        same Last-Modified (servers that ignore the preconditions are caught here)."""
        meta = self.meta
        assert meta is not None
        got = resp.headers.get("ETag")
        if meta.etag:
            if got and got != meta.etag:
                raise ObjectChangedError(f"ETag changed from {meta.etag} to {got}", url=self.url)
            return
        modified = resp.headers.get("Last-Modified")
        if meta.last_modified and modified and not _same_date(modified, meta.last_modified):
            raise ObjectChangedError(
                f"Last-Modified changed from {meta.last_modified} to {modified}", url=self.url
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
                meta = _meta(resp, cr.total)
                data = await self._body(resp, (cr.last or 0) + 1)
            elif resp.status == 200:
                # Only acceptable when the whole object is no larger than what was asked.
                self._check_encoding(resp)
                size = resp.content_length
                if size is None or size > length:
                    raise RangeNotSupportedError(
                        "server ignored the Range header (200 for a ranged GET)", url=self.url
                    )
                meta = _meta(resp, size)
                data = await self._body(resp, size)
            elif resp.status == 416:
                unsatisfied = parse_content_range(resp.headers.get("Content-Range"))
                if unsatisfied is None or unsatisfied.total != 0:
                    raise RangeNotSupportedError("416 for the first bytes", url=self.url)
                meta, data = _meta(resp, 0), b""
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
                self._check_version(resp)
                check_content_range(
                    resp.headers.get("Content-Range"), rng, size=self.meta.size, url=self.url
                )
                data = await self._body(resp, rng.length)
            elif resp.status == 200:
                self._check_version(resp)
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

    @property
    def multirange(self) -> bool:
        """Whether a multi-range GET is worth trying: not refused by this origin before."""
        return self.origin not in self._refused

    async def read_many(self, ranges: Sequence[ByteRange]) -> list[bytes] | None:
        """Several ranges (sorted, disjoint, at least two) in one GET, each exactly; None when
        the server answers otherwise (200, a single range, a malformed multipart body): the
        caller then asks range by range, and ``multirange`` is False for this origin from then
        on. Always sends the GET: callers check ``multirange`` first."""
        assert self.meta is not None, "read before open"
        assert len(ranges) >= 2, "a multi-range GET needs several ranges"
        headers = self._request_headers(ranges[0])
        headers["Range"] = "bytes=" + ",".join(f"{r.start}-{r.end - 1}" for r in ranges)
        resp = await self._send_headers(headers)
        try:
            parts = await self._many(resp, ranges)
        except BaseException:
            resp.close()
            raise
        if parts is None:
            resp.close()  # an unwanted body (maybe the whole object): drop the connection
        else:
            resp.release()
        return parts

    async def _many(
        self, resp: aiohttp.ClientResponse, ranges: Sequence[ByteRange]
    ) -> list[bytes] | None:
        """The answer to a multi-range GET as the ranges asked, or None (refused)."""
        assert self.meta is not None
        if resp.status == 416:
            # Every range asked lies inside the object seen at open: a 416 that names the
            # same size (or none) means "no multi-range GETs here" (aiohttp's static file
            # handler answers so), another size that the object changed.
            cr = parse_content_range(resp.headers.get("Content-Range"))
            total = cr.total if cr else None
            if total is not None and total != self.meta.size:
                raise ObjectChangedError(
                    f"ranges not satisfiable (object is now {total} bytes, was {self.meta.size})",
                    url=self.url,
                )
            self._refuse("HTTP 416 for a multi-range GET")
            return None
        if resp.status not in (200, 206):
            raise _status_error(resp, self.url)
        self._check_version(resp)
        ctype = resp.headers.get("Content-Type", "")
        boundary = byteranges_boundary(ctype) if resp.status == 206 else None
        if boundary is None:
            # 200 (the whole object is on its way) or one range only: stop reading.
            self._refuse(f"HTTP {resp.status} {ctype!r}")
            return None
        self._check_encoding(resp)
        parser = ByterangesParser(boundary, ranges, self.meta.size, url=self.url)
        try:
            await self._feed(resp, parser)
            return parser.result()
        except NotByteranges as exc:
            self._refuse(str(exc))
            return None

    async def _feed(self, resp: aiohttp.ClientResponse, parser: ByterangesParser) -> None:
        """Feed ``parser`` the body until it is done, refuses, or the body ends; reads never
        pass what the parser can take (the rest of a part, or one line)."""
        content = resp.content
        try:
            while not parser.done:
                chunk = await content.read(min(parser.wants, _MULTIPART_CHUNK))
                if not chunk:
                    return  # the end: ``result`` tells whether all is there
                parser.feed(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"body read failed: {exc!r}", url=self.url) from exc
        # All is there: the epilogue's CRLF is taken if already here (the connection is then
        # reused), never waited for; a failure past the closing delimiter changes nothing.
        with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
            content.read_nowait(MAX_LINE)

    def _refuse(self, why: str) -> None:
        self._refused[self.origin] = why
        log.info("%s: no multi-range GETs from now on (%s)", self.origin, why)

    async def _send_headers(self, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET with ``headers``, redirects followed here (not by aiohttp): straight to the end
        of the chain followed before, and from ``url`` again, once, if that end is gone."""
        if self._start is None or not self._start.absolute or not self._start.host:
            raise SourceNotFoundError("invalid URL", url=self.url)
        target = self._target or self._start
        resp = await self._follow(target, headers)
        if target != self._start and resp.status in _REFOLLOW_STATUS:
            log.info(
                "%s: HTTP %d from its redirect target, following it again", self.url, resp.status
            )
            resp.close()
            resp = await self._follow(self._start, headers)
        notify_first_byte()
        return resp

    async def _follow(self, url: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET ``url``, following at most ``MAX_REDIRECTS`` redirects by their ``Location``
        alone (never ``URI``); every target is checked before it is requested."""
        assert self._start is not None
        if url.origin() != self._start.origin():
            headers = _without_credentials(headers)
        for hop in range(MAX_REDIRECTS + 1):
            resp = await self._get(url, headers)
            if resp.status not in _REDIRECT_STATUS:
                self._target = url
                return resp
            status = resp.status
            location = resp.headers.get("Location", "").strip()
            await self._discard(resp)
            if not location:
                raise UpstreamError(
                    f"HTTP {status} without a Location (not followed)", url=self.url, status=status
                )
            if hop == MAX_REDIRECTS:
                raise UpstreamError(f"more than {MAX_REDIRECTS} redirects", url=self.url)
            try:
                target = url.join(URL(location)).with_fragment(None)
            except ValueError as exc:
                raise UpstreamError(
                    f"HTTP {status} redirect to an unusable Location", url=self.url, status=status
                ) from exc
            if self._check_redirect is not None:
                self._check_redirect(target)
            if target.scheme not in ("http", "https") or not target.host:
                raise UpstreamError(
                    f"HTTP {status} redirect to a non-HTTP URL (not followed)", url=self.url
                )
            if target.origin() != url.origin():
                headers = _without_credentials(headers)
            url = target
        raise AssertionError("unreachable")

    async def _get(self, url: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        self._requests_sent += 1
        try:
            kwargs: dict[str, object] = {"headers": headers, "allow_redirects": False}
            if self._timeout is not None:
                kwargs["timeout"] = self._timeout
            return await self._session.get(url, **kwargs)  # type: ignore[arg-type]
        except aiohttp.InvalidURL as exc:
            raise SourceNotFoundError(f"invalid URL: {exc}", url=self.url) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(describe_client_error(exc), url=self.url) from exc

    @staticmethod
    async def _discard(resp: aiohttp.ClientResponse) -> None:
        """Drop a redirect's body: read when short (the connection is reused), else close."""
        length = resp.content_length
        if length is not None and length <= _REDIRECT_BODY:
            try:
                await resp.content.readexactly(length)
            except (asyncio.IncompleteReadError, aiohttp.ClientError, TimeoutError, OSError):
                resp.close()
                return
            resp.release()
        else:
            resp.close()

    async def close(self) -> None:
        return None


def _without_credentials(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.title() not in _CREDENTIALS}


if TYPE_CHECKING:  # the capabilities HTTPSource declares, checked by mypy

    def _declared(
        s: HTTPSource,
    ) -> tuple[RangeSource, MultiRangeSource, RequestCounter, Hedgeable]:
        return s, s, s, s
