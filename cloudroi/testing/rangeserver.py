"""A real HTTP range server on 127.0.0.1 for tests, benchmarks and the demo.

It serves named byte strings with single-range GETs (206 + Content-Range), multi-range GETs (206
``multipart/byteranges``, as nginx and Apache answer them; with ``multirange=False`` a 200 with the
whole object, as S3 answers them), HEAD, strong ETags (or none, ``etags=False``), Last-Modified
(``last_modified=True``; every version of a path gets a later second than the one before),
``If-Match`` and ``If-Unmodified-Since`` (412 on mismatch) and 416 past the end, counts every
request and body byte (multipart framing included), and can add a latency per request (fixed or
drawn per request by ``LongTail``: an object store's first-byte time). ``alternate`` serves versions
of one path in turn, one per request, as an object rewritten between requests would be. It runs its
own event loop in a background thread, so synchronous code (rasterio/GDAL, fsspec) can use it too.
``fault`` is a hook for fault-injection: a callable that sees each request and may return a
``Fault`` describing how to misbehave (see ``cloudroi.testing.faults``). With ``ssl_context`` (a
server-side context) it serves HTTPS.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The writer lives with the parser; re-exported here, where the server used to define it.
from ..source.multipart import multipart_byteranges
from .ranges import parse_range, parse_ranges

__all__ = [
    "Fault",
    "RangeServer",
    "RequestLog",
    "multipart_byteranges",
    "parse_range",
    "parse_ranges",
]


@dataclass(frozen=True, slots=True)
class RequestLog:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    at: float


@dataclass(slots=True)
class Fault:
    """How to misbehave for one request. ``kind`` is one of:

    ``status`` (answer ``status`` with ``headers``), ``reset`` (close the connection after
    ``after`` body bytes), ``truncate`` (send ``after`` bytes of a body whose Content-Length
    promised more), ``stall`` (sleep ``delay`` seconds before the body), ``ignore_range`` (200 with
    the whole object), ``wrong_range`` (206 whose Content-Range is shifted by ``shift``),
    ``multipart`` (multipart/byteranges answer), ``encoded`` (Content-Encoding: gzip on a range),
    ``changed`` (206 with other bytes and another ETag, as a server that ignores If-Match answers
    after an overwrite), ``shrunk`` (416 with ``Content-Range: bytes */size``, the object now
    ``size`` bytes long).

    ``ignore_range`` streams the whole object in 64 KiB writes and records only the bytes the
    socket accepted, so a test can check that a client stopped reading.
    """

    kind: str
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    after: int = 0
    delay: float = 0.0
    shift: int = 1
    size: int = 0
    #: Body of a ``status`` answer (default: the text "injected fault").
    body: bytes = b""


FaultHook = Callable[["web.Request", str], Fault | None]


@dataclass(frozen=True, slots=True)
class _Version:
    """One version of a served object: its bytes, ETag and Last-Modified (epoch seconds)."""

    data: bytes
    etag: str
    modified: int

    @property
    def http_date(self) -> str:
        return email.utils.formatdate(self.modified, usegmt=True)


def etag_of(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=10).hexdigest() + '"'


class RangeServer:
    """Serve ``files`` (path -> bytes) on 127.0.0.1 with HTTP range support, in a thread."""

    def __init__(
        self,
        files: Mapping[str, bytes] | None = None,
        *,
        latency: float | Callable[[web.Request], float] = 0.0,
        fault: FaultHook | None = None,
        etags: bool = True,
        last_modified: bool = False,
        honour_if_match: bool = True,
        multirange: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.ssl_context = ssl_context
        self._files: dict[str, list[_Version]] = {}
        self._turns: dict[str, int] = {}
        for path, data in (files or {}).items():
            self.add(path, data)
        self.latency = latency
        self.fault = fault
        self.send_etags = etags
        self.send_last_modified = last_modified
        #: False: behave like a server that ignores If-Match and If-Unmodified-Since (the client
        #: must compare ETags and dates itself).
        self.honour_if_match = honour_if_match
        #: False: answer multi-range GETs with 200 and the whole object, as S3 does.
        self.multirange = multirange
        self.log: list[RequestLog] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- content ---------------------------------------------------------------------------

    def add(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``path`` (replacing what was there: a new version)."""
        self.alternate(path, [data])

    def alternate(self, path: str, versions: Sequence[bytes]) -> None:
        """Serve ``versions`` at ``path`` in turn, one per request (GET or HEAD), starting with
        the first: an object rewritten between requests. Each version has its own ETag and its
        own Last-Modified, one second after the previous version's."""
        if not versions:
            raise ValueError("at least one version")
        path = "/" + path.lstrip("/")
        with self._lock:
            before = self._files.get(path)
            first = int(time.time())
            if before:
                first = max(first, max(v.modified for v in before) + 1)
            self._files[path] = [
                _Version(bytes(d), etag_of(d), first + i) for i, d in enumerate(versions)
            ]
            self._turns[path] = 0

    def remove(self, path: str) -> None:
        path = "/" + path.lstrip("/")
        with self._lock:
            self._files.pop(path, None)
            self._turns.pop(path, None)

    def _version(self, path: str) -> _Version | None:
        """The version answering this request (the next in turn when several alternate)."""
        with self._lock:
            versions = self._files.get(path)
            if not versions:
                return None
            turn = self._turns.get(path, 0)
            self._turns[path] = turn + 1
            return versions[turn % len(versions)]

    def url(self, path: str) -> str:
        return f"http{'s' * bool(self.ssl_context)}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    # -- accounting ------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.log.clear()

    def requests_for(self, path: str | None = None, method: str = "GET") -> list[RequestLog]:
        with self._lock:
            entries = list(self.log)
        want = None if path is None else "/" + path.lstrip("/")
        return [e for e in entries if e.method == method and (want is None or e.path == want)]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.log)

    @property
    def bytes_sent(self) -> int:
        with self._lock:
            return sum(e.body_bytes for e in self.log)

    @property
    def open_connections(self) -> int:
        """Client connections open now (not those closed whose handler still runs)."""
        handlers = self._runner.server.connections if self._runner and self._runner.server else []
        return sum(1 for h in handlers if h.transport is not None and not h.transport.is_closing())

    def _record(self, request: web.Request, status: int, nbytes: int) -> None:
        headers, now = request.headers, time.monotonic()
        entry = RequestLog(request.method, request.path, headers.get("Range"), status, nbytes, now)
        with self._lock:
            self.log.append(entry)

    # -- serving ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if delay := self.latency(request) if callable(self.latency) else self.latency:
            await asyncio.sleep(delay)
        version = self._version(request.path)
        if version is None:
            self._record(request, 404, 0)
            return web.Response(status=404, text="not found")
        fault = self.fault(request, version.etag) if self.fault is not None else None
        if fault is not None:
            return await self._misbehave(request, version, fault)
        headers = {"Accept-Ranges": "bytes"}
        if self.send_etags:
            headers["ETag"] = version.etag
        if self.send_last_modified:
            headers["Last-Modified"] = version.http_date
        if self.honour_if_match and not self._preconditions_hold(request, version):
            self._record(request, 412, 0)
            return web.Response(status=412, headers=headers)
        rng_header = request.headers.get("Range")
        if rng_header is not None and "," in rng_header and request.method == "GET":
            return await self._many(request, version, rng_header, headers)
        return self._one(request, version, rng_header, headers)

    def _one(
        self,
        request: web.Request,
        version: _Version,
        rng_header: str | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """The whole object (no Range), one range (206) or 416."""
        data, size = version.data, len(version.data)
        body, status = data, 200
        if rng_header is not None:
            rng = parse_range(rng_header, size)
            if rng is None:
                headers["Content-Range"] = f"bytes */{size}"
                self._record(request, 416, 0)
                return web.Response(status=416, headers=headers)
            first, last = rng
            body, status = data[first : last + 1], 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            self._record(request, status, 0)
            return web.Response(status=status, headers=headers)
        self._record(request, status, len(body))
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/octet-stream"
        )

    async def _many(
        self, request: web.Request, version: _Version, rng_header: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A multi-range GET: multipart/byteranges, or (``multirange`` off, as S3) the whole
        object with 200."""
        data, size = version.data, len(version.data)
        ranges = parse_ranges(rng_header, size)
        if ranges is None:
            headers["Content-Range"] = f"bytes */{size}"
            self._record(request, 416, 0)
            return web.Response(status=416, headers=headers)
        if not self.multirange:
            return await self._stream_whole(request, data, headers)
        boundary = "cloudroi-" + version.etag.strip('"')[:16]
        body = multipart_byteranges(data, ranges, boundary)
        headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        self._record(request, 206, len(body))
        return web.Response(status=206, body=body, headers=headers)

    def _preconditions_hold(self, request: web.Request, version: _Version) -> bool:
        """RFC 9110 13.2.2: If-Match when sent, else If-Unmodified-Since (each only where this
        server sends the validator it compares)."""
        if_match = request.headers.get("If-Match")
        if if_match is not None:
            return not self.send_etags or if_match in (version.etag, "*")
        since = request.headers.get("If-Unmodified-Since")
        if since is not None and self.send_last_modified:
            try:
                limit = email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return True  # an invalid date is ignored
            return version.modified <= limit
        return True

    async def _misbehave(
        self, request: web.Request, version: _Version, fault: Fault
    ) -> web.StreamResponse:
        size = len(version.data)
        first, last = parse_range(request.headers.get("Range", "bytes=0-"), size) or (0, size - 1)
        headers: dict[str, str] = {"ETag": version.etag, "Accept-Ranges": "bytes"}
        if self.send_last_modified:
            headers["Last-Modified"] = version.http_date
        if fault.kind == "ignore_range":
            return await self._stream_whole(request, version.data, headers)
        answer = _ANSWERS.get(fault.kind)
        if answer is not None:
            status, body, extra = answer(self, version, fault, first, last)
            headers.update(extra)
            self._record(request, status, 0 if fault.kind == "status" else len(body))
            return web.Response(status=status, headers=headers, body=body)
        # Streaming faults: the status line and headers go out, then the body misbehaves.
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return await self._stream_fault(request, version.data[first : last + 1], headers, fault)

    async def _stream_fault(
        self, request: web.Request, body: bytes, headers: dict[str, str], fault: Fault
    ) -> web.StreamResponse:
        """``stall`` (wait, then the body), ``reset`` and ``truncate`` (part of the body, then
        the connection aborted or closed cleanly)."""
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        if fault.kind == "stall":
            await asyncio.sleep(fault.delay)
            try:
                await resp.write(body)
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                self._record(request, 206, 0)  # the client gave up waiting
                return resp
            self._record(request, 206, len(body))
            return resp
        sent = body[: fault.after]
        if sent:
            await resp.write(sent)
        self._record(request, 206, len(sent))
        transport = request.transport
        if transport is not None:
            if fault.kind == "reset":
                transport.abort()
            else:  # truncate: end the connection cleanly but early
                transport.close()
        return resp

    async def _stream_whole(
        self, request: web.Request, data: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """200 with the whole object, written in chunks until the client stops reading."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_length = len(data)
        written = 0
        try:
            await resp.prepare(request)
            view = memoryview(data)
            for start in range(0, len(data), 1 << 16):
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await resp.write(view[start : start + (1 << 16)])
                written = start + len(view[start : start + (1 << 16)])
            else:
                await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what it was sent is what gets recorded
        transport = request.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        self._record(request, 200, max(0, written - unsent))
        return resp

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> RangeServer:
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                app = web.Application()
                app.router.add_route("GET", "/{tail:.*}", self._handle)
                app.router.add_route("HEAD", "/{tail:.*}", self._handle)
                runner = web.AppRunner(app, access_log=None, handle_signals=False)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
                loop.run_until_complete(site.start())
                server: Any = site._server
                self.port = server.sockets[0].getsockname()[1]
                self._runner = runner
            except BaseException as exc:  # surfaced to start()'s caller
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="cloudroi-rangeserver", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# answers of the faults that are one complete response: (status, body, extra headers)
# --------------------------------------------------------------------------------------------

_Answer = tuple[int, bytes, dict[str, str]]


def _status(server: RangeServer, version: _Version, fault: Fault, first: int, last: int) -> _Answer:
    headers = dict(fault.headers)
    if fault.status == 416:
        headers["Content-Range"] = f"bytes */{len(version.data)}"
    return fault.status, fault.body or b"injected fault", headers


def _shrunk(server: RangeServer, version: _Version, fault: Fault, first: int, last: int) -> _Answer:
    return 416, b"", {"Content-Range": f"bytes */{fault.size}"}


def _changed(
    server: RangeServer, version: _Version, fault: Fault, first: int, last: int
) -> _Answer:
    """Other bytes under another ETag, as a server ignoring If-Match answers after an
    overwrite."""
    other = bytes(b ^ 0x5A for b in version.data[first : last + 1])
    headers = {
        "ETag": etag_of(version.etag.encode() + b"-changed"),
        "Content-Range": f"bytes {first}-{last}/{len(version.data)}",
    }
    if server.send_last_modified:
        headers["Last-Modified"] = email.utils.formatdate(version.modified + 1, usegmt=True)
    return 206, other, headers


def _wrong_range(
    server: RangeServer, version: _Version, fault: Fault, first: int, last: int
) -> _Answer:
    shifted = f"bytes {first + fault.shift}-{last + fault.shift}/{len(version.data)}"
    return 206, version.data[first : last + 1], {"Content-Range": shifted}


def _encoded(
    server: RangeServer, version: _Version, fault: Fault, first: int, last: int
) -> _Answer:
    return (
        206,
        version.data[first : last + 1],
        {
            "Content-Encoding": "gzip",
            "Content-Range": f"bytes {first}-{last}/{len(version.data)}",
        },
    )


def _multipart(
    server: RangeServer, version: _Version, fault: Fault, first: int, last: int
) -> _Answer:
    boundary = "cloudroi-boundary"
    part = multipart_byteranges(version.data, [(first, last)], boundary)
    return 206, part, {"Content-Type": f"multipart/byteranges; boundary={boundary}"}


_ANSWERS: dict[str, Callable[[RangeServer, _Version, Fault, int, int], _Answer]] = {
    "status": _status,
    "shrunk": _shrunk,
    "changed": _changed,
    "wrong_range": _wrong_range,
    "encoded": _encoded,
    "multipart": _multipart,
}
