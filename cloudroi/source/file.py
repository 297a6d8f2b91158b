"""Local files as a RangeSource; every system call runs in a worker thread, off the event loop.
Only regular files are read: a FIFO, socket, device or directory is ``SourceNotFoundError``."""

from __future__ import annotations

import asyncio
import os
import stat
from urllib.parse import unquote, urlsplit

from ..errors import (
    AccessDeniedError,
    ObjectChangedError,
    SourceError,
    SourceNotFoundError,
    UpstreamError,
)
from ..types import ByteRange, ObjectMeta

__all__ = ["FileSource", "local_path"]


def local_path(url: str) -> str:
    """The filesystem path of a ``file://`` URL or a plain path."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise SourceError("file:// URLs with a host are not local", url=url)
        return unquote(parts.path)
    return url


def _etag(st: os.stat_result) -> str:
    # Same idea as a web server's ETag for a static file: identity plus size plus mtime.
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _translate(exc: OSError, url: str) -> SourceError:
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return SourceNotFoundError(f"no such file: {exc.strerror}", url=url)
    if isinstance(exc, PermissionError):
        return AccessDeniedError(f"permission denied: {exc.strerror}", url=url)
    return UpstreamError(f"file read failed: {exc}", url=url)


class FileSource:
    """Reads with ``os.pread`` on one descriptor held open; a changed size/mtime is detected."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = local_path(url)
        self._fd: int | None = None
        self.meta: ObjectMeta | None = None

    def _not_regular(self) -> SourceNotFoundError:
        return SourceNotFoundError("not a regular file", url=self.url)

    def _open_sync(self, length: int) -> tuple[ObjectMeta, bytes]:
        # Only regular files: opening a FIFO for reading waits for a writer (forever, holding
        # this worker thread), and a device may never stop answering. stat() first, so that
        # nothing else is even opened; then O_NONBLOCK, so that a FIFO put at the path in
        # between cannot block the open either, and fstat() of the descriptor decides.
        if not stat.S_ISREG(os.stat(self.path).st_mode):
            raise self._not_regular()
        nonblock = getattr(os, "O_NONBLOCK", 0)
        fd = os.open(self.path, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._not_regular()
            if nonblock:
                os.set_blocking(fd, True)  # no meaning for a regular file; restored anyway
            data = os.pread(fd, min(length, st.st_size), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return ObjectMeta(size=st.st_size, etag=_etag(st)), data

    async def open(self, length: int) -> tuple[ObjectMeta, bytes]:
        try:
            meta, data = await asyncio.to_thread(self._open_sync, length)
        except OSError as exc:
            raise _translate(exc, self.url) from exc
        self.meta = meta
        return meta, data

    def _read_sync(self, rng: ByteRange) -> bytes:
        assert self._fd is not None, "read before open"
        assert self.meta is not None
        # In place (fstat of our descriptor) or replaced by a new file at the path (stat):
        # either way the version pinned at open is gone.
        pinned = self.meta.etag
        if _etag(os.fstat(self._fd)) != pinned or _etag(os.stat(self.path)) != pinned:
            raise ObjectChangedError("file changed since open", url=self.url)
        return os.pread(self._fd, rng.length, rng.start)

    async def read(self, rng: ByteRange) -> bytes:
        try:
            return await asyncio.to_thread(self._read_sync, rng)
        except OSError as exc:
            raise _translate(exc, self.url) from exc

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
