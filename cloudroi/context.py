"""Shared resources of many Images: one HTTP session, fsspec filesystems, caches, a decode pool.

A ``Context`` is bound to the event loop it is first used on. Images opened without one get a
private Context that closes with them; a service opens one Context for its lifetime and shares it,
so connections, the header cache, the block cache and in-flight fetches are shared by every request.
The caches themselves are process-wide by default (thread-safe, keyed by URL and ETag), so even the
synchronous helpers, each on a fresh event loop, reuse what earlier calls learned.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .cache import LRUCache
from .errors import SourceError
from .read.blocks import Inflight
from .read.fetch import RetryPolicy
from .source.base import RangeSource
from .source.file import FileSource
from .source.fsspec import FsspecSource
from .source.http import HTTPSource, RedirectCheck
from .tiff.structure import TiffStructure

__all__ = [
    "Context",
    "ContextOptions",
    "default_block_cache",
    "default_decoded_cache",
    "default_header_cache",
    "default_stretch_cache",
]

_lock = threading.Lock()
_block_cache: LRUCache[bytes] | None = None
_header_cache: LRUCache[TiffStructure] | None = None
_header_sizes: LRUCache[int] | None = None
_decoded_cache: LRUCache[Any] | None = None
_stretch_cache: LRUCache[Any] | None = None
_executor: ThreadPoolExecutor | None = None


def default_block_cache() -> LRUCache[bytes]:
    """The process-wide block cache (256 MiB of compressed blocks unless configured)."""
    global _block_cache
    with _lock:
        if _block_cache is None:
            mib = int(os.environ.get("CLOUDROI_BLOCK_CACHE_MB", "256"))
            _block_cache = LRUCache(mib << 20, sizeof=len)
        return _block_cache


def default_decoded_cache() -> LRUCache[Any]:
    """Decoded blocks (numpy arrays, read-only), 128 MiB unless configured: a block read again
    is neither fetched nor decoded again, as GDAL's block cache does."""
    global _decoded_cache
    with _lock:
        if _decoded_cache is None:
            mib = int(os.environ.get("CLOUDROI_DECODED_CACHE_MB", "128"))
            _decoded_cache = LRUCache(mib << 20, sizeof=lambda a: int(a.nbytes))
        return _decoded_cache


def default_header_cache() -> LRUCache[TiffStructure]:
    """Parsed headers keyed by (url, ETag): 64 MiB of them (``TiffStructure.footprint``, index
    arrays counted fully loaded) and at most 512, unless configured."""
    global _header_cache
    with _lock:
        if _header_cache is None:
            mib = int(os.environ.get("CLOUDROI_HEADER_CACHE_MB", "64"))
            entries = int(os.environ.get("CLOUDROI_HEADER_CACHE_ENTRIES", "512"))
            _header_cache = LRUCache(mib << 20, sizeof=TiffStructure.footprint, max_entries=entries)
        return _header_cache


def default_header_sizes() -> LRUCache[int]:
    """How many bytes each URL's header took, so that its next open is a single GET."""
    global _header_sizes
    with _lock:
        if _header_sizes is None:
            _header_sizes = LRUCache(4096)
        return _header_sizes


def default_stretch_cache() -> LRUCache[Any]:
    """Default stretches (``cloudroi.region.stretch``) keyed by (url, version, bands, nodata):
    4096 of them unless configured (a few hundred bytes each)."""
    global _stretch_cache
    with _lock:
        if _stretch_cache is None:
            entries = int(os.environ.get("CLOUDROI_STRETCH_CACHE_ENTRIES", "4096"))
            _stretch_cache = LRUCache(entries)
        return _stretch_cache


def default_executor() -> ThreadPoolExecutor:
    """The decode pool: one thread per core (imagecodecs releases the GIL while decoding)."""
    global _executor
    with _lock:
        if _executor is None:
            workers = int(os.environ.get("CLOUDROI_DECODE_THREADS", "0")) or (os.cpu_count() or 2)
            _executor = ThreadPoolExecutor(workers, thread_name_prefix="cloudroi-decode")
        return _executor


def _after_fork_in_child() -> None:
    """A forked child inherits the decode pool without its threads (work sent to it would
    never run) and, maybe, ``_lock`` held: both are made afresh there."""
    global _executor, _lock
    _lock = threading.Lock()
    _executor = None


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True, slots=True)
class ContextOptions:
    max_connections: int = 64
    #: Concurrent GETs per Image (per source object).
    max_concurrency: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    http_headers: Mapping[str, str] = field(default_factory=dict)
    #: fsspec ``storage_options`` per protocol, e.g. {"s3": {"endpoint_url": ...}}.
    storage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    #: Read proxy settings and ~/.netrc from the environment. Off by default: aiohttp then
    #: looks up .netrc in a worker thread on every request (0.12-0.5 s of executor time in the
    #: 200-chip benchmark, in the threads that decode).
    trust_env: bool = False


class Context:
    """Connections, filesystems, caches and the decode pool shared by Images."""

    def __init__(
        self,
        options: ContextOptions | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        connector_factory: Callable[[], aiohttp.BaseConnector] | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] = (),
        block_cache: LRUCache[bytes] | None = None,
        decoded_cache: LRUCache[Any] | None = None,
        header_cache: LRUCache[TiffStructure] | None = None,
        header_sizes: LRUCache[int] | None = None,
        stretch_cache: LRUCache[Any] | None = None,
        executor: Executor | None = None,
        check_redirect: RedirectCheck | None = None,
        **kwargs: Any,
    ) -> None:
        """The Context builds its one HTTP session on first use, from ``options``; a service
        plugs its own rules in through ``connector_factory`` (e.g. a connect-time address
        guard) and ``trace_configs``, or hands over a whole ``session`` (which the caller then
        closes). ``check_redirect`` is called with every HTTP redirect target before it is requested
        and raises to refuse it (a ``CloudROIError``, e.g. ``AccessDeniedError``); without one,
        any http(s) target is followed. Redirects are followed only by their ``Location``, at
        most ``cloudroi.source.http.MAX_REDIRECTS`` per GET."""
        if options is None:
            options = ContextOptions(**kwargs)
        elif kwargs:
            raise TypeError("pass either options or keyword arguments, not both")
        self.options = options
        self._session = session
        self._owns_session = session is None
        self._connector_factory = connector_factory
        self._trace_configs = list(trace_configs)
        self._check_redirect = check_redirect
        self.block_cache = block_cache if block_cache is not None else default_block_cache()
        self.decoded_cache = decoded_cache if decoded_cache is not None else default_decoded_cache()
        self.header_cache = header_cache if header_cache is not None else default_header_cache()
        self.header_sizes = header_sizes if header_sizes is not None else default_header_sizes()
        self.executor: Executor = executor if executor is not None else default_executor()
        self.inflight = Inflight()
        #: Default stretches computed (process-wide LRU), those being computed on this loop (so
        #: that concurrent requests share one computation), and how many were computed here.
        self.stretch_cache = stretch_cache if stretch_cache is not None else default_stretch_cache()
        self.stretch_inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self.stretch_computed = 0
        #: HTTP origins that answered a multi-range GET otherwise than with usable
        #: multipart/byteranges (origin -> how): asked range by range from then on.
        self.multirange_refused: dict[str, str] = {}
        self._filesystems: dict[str, Any] = {}
        self._fs_lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> Context:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def http_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this cloudroi Context is closed")
        if self._session is None:
            o = self.options
            connector = (
                self._connector_factory()
                if self._connector_factory is not None
                else aiohttp.TCPConnector(limit=o.max_connections, ttl_dns_cache=300)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=o.connect_timeout, sock_read=o.read_timeout
                ),
                auto_decompress=False,
                trust_env=o.trust_env,
                trace_configs=self._trace_configs or None,
            )
        return self._session

    async def _filesystem(self, protocol: str) -> Any:
        async with self._fs_lock:
            fs = self._filesystems.get(protocol)
            if fs is not None:
                return fs
            opts = dict(self.options.storage_options.get(protocol, {}))
            if protocol in ("s3", "s3a"):
                try:
                    import s3fs
                except ImportError as exc:  # pragma: no cover - depends on the install
                    raise SourceError("s3:// needs s3fs: pip install 'cloudroi[s3]'") from exc
                # cloudroi's RetryPolicy owns the count: botocore (up to 5 attempts in its
                # legacy mode) and s3fs (5 more around each) would otherwise multiply it, one
                # range costing up to 20 GETs and a stall no policy describes.
                config = dict(opts.pop("config_kwargs", None) or {})
                config["retries"] = {"total_max_attempts": 1, "mode": "standard"}
                fs = s3fs.S3FileSystem(
                    asynchronous=True, skip_instance_cache=True, config_kwargs=config, **opts
                )
                fs.retries = 1
                await fs.set_session()
            else:
                import fsspec

                cls = fsspec.get_filesystem_class(protocol)
                if getattr(cls, "async_impl", False):
                    fs = cls(asynchronous=True, skip_instance_cache=True, **opts)
                    if hasattr(fs, "set_session"):
                        await fs.set_session()
                else:
                    fs = cls(skip_instance_cache=True, **opts)
            self._filesystems[protocol] = fs
            return fs

    async def source(self, url: str, *, headers: Mapping[str, str] | None = None) -> RangeSource:
        """A RangeSource for ``url``: http(s), s3, file or a path, or any fsspec protocol."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            merged = {**self.options.http_headers, **(headers or {})}
            return HTTPSource(
                url,
                self.http_session(),
                headers=merged,
                multirange_refused=self.multirange_refused,
                check_redirect=self._check_redirect,
            )
        if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
            return FileSource(url)
        try:
            fs = await self._filesystem(scheme)
        except (ImportError, ValueError) as exc:
            raise SourceError(f"no storage backend for {scheme}://", url=url) from exc
        path = fs._strip_protocol(url)
        return FsspecSource(url, fs, path)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fs in self._filesystems.values():
            client = getattr(fs, "_s3", None)
            if client is not None:
                await client.close()
            session = getattr(fs, "_session", None)
            if (
                session is not None
                and hasattr(session, "close")
                and not getattr(session, "closed", True)
            ):
                await session.close()
        self._filesystems.clear()
        if self._session is not None and self._owns_session:
            await self._session.close()
