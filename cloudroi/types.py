"""Value types shared by every layer: byte ranges, object metadata, windows and read statistics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["ByteRange", "ObjectMeta", "Stats", "Tile", "Window"]


@dataclass(frozen=True, slots=True, order=True)
class ByteRange:
    """Half-open byte interval ``[start, end)`` of an object."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")

    @classmethod
    def sized(cls, start: int, length: int) -> ByteRange:
        return cls(start, start + length)

    @property
    def length(self) -> int:
        return self.end - self.start

    def contains(self, other: ByteRange) -> bool:
        return self.start <= other.start and other.end <= self.end

    def http_header(self) -> str:
        """The value of an HTTP ``Range`` header asking for exactly this interval."""
        return f"bytes={self.start}-{self.end - 1}"

    def __repr__(self) -> str:
        return f"ByteRange({self.start}, {self.end})"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a source learned about an object on its first read.

    ``etag`` is an opaque validator (an HTTP/S3 ETag, or a synthesized one for files); ``None``
    when the store gives none. ``last_modified`` is the HTTP ``Last-Modified`` value as sent,
    the validator of an object without an ETag (one-second resolution). With neither, only the
    size guards against changes.
    """

    size: int
    etag: str | None = None
    last_modified: str | None = None

    @property
    def pinned_by(self) -> str:
        """What pins reads to one version: ``"etag"``, ``"last-modified"`` or ``"size-only"``
        (nothing identifies the version: a same-size replacement cannot be seen)."""
        if self.etag:
            return "etag"
        if self.last_modified:
            return "last-modified"
        return "size-only"


class Window(NamedTuple):
    """A pixel window ``(col_off, row_off, width, height)`` in the grid of one level."""

    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    def intersect(self, other: Window) -> Window | None:
        """The pixels both windows cover, or None when they do not overlap."""
        col, row = max(self.col_off, other.col_off), max(self.row_off, other.row_off)
        col_end, row_end = min(self.col_end, other.col_end), min(self.row_end, other.row_end)
        if col_end <= col or row_end <= row:
            return None
        return Window(col, row, col_end - col, row_end - row)

    def clip(self, width: int, height: int) -> Window | None:
        """The part of the window inside a ``width`` x ``height`` grid, or None."""
        return self.intersect(Window(0, 0, width, height))

    def within(self, width: int, height: int) -> bool:
        """Whether every pixel of the window lies inside a ``width`` x ``height`` grid."""
        return (
            self.col_off >= 0
            and self.row_off >= 0
            and self.col_end <= width
            and self.row_end <= height
        )


@dataclass(slots=True)
class Stats:
    """Counters of one Image: what it asked of storage and what the caches saved.

    ``requests``/``bytes_fetched`` count every GET sent (header, index and tile reads together);
    the ``header_*``, ``index_*`` and ``tile_*`` fields split them by purpose.
    """

    requests: int = 0
    bytes_fetched: int = 0
    header_requests: int = 0
    header_bytes: int = 0
    index_requests: int = 0
    index_bytes: int = 0
    tile_requests: int = 0
    tile_bytes: int = 0
    tiles_read: int = 0
    tiles_decoded: int = 0
    sparse_tiles: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    decoded_cache_hits: int = 0
    header_cache_hits: int = 0
    inflight_shared: int = 0
    preloaded_tiles: int = 0
    preloaded_bytes: int = 0
    retries: int = 0
    #: GETs sent a second time because their first byte was late (``cloudroi.read.hedge``;
    #: counted in ``requests`` too), and how many of those duplicates answered first.
    hedged: int = 0
    hedge_wins: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def copy(self) -> Stats:
        return dataclasses.replace(self)

    def __sub__(self, other: Stats) -> Stats:
        a, b = self.as_dict(), other.as_dict()
        return Stats(**{k: a[k] - b[k] for k in a})


@dataclass(frozen=True, slots=True)
class Tile:
    """One decoded tile as yielded by ``Image.iter_tiles``.

    ``window`` is where the tile's valid pixels sit in the level's grid (clipped at the image edge);
    ``data`` is shaped ``(bands, window.height, window.width)``.
    """

    level: int
    row: int
    col: int
    window: Window
    data: npt.NDArray[Any] = field(repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)
