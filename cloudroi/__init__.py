"""cloudroi: read just the region of a TIFF/COG you need, from HTTP(S), S3, fsspec stores or disk.

    async def main() -> None:
        async with cloudroi.open("https://example.com/scene.tif") as img:
            arr = await img.read(window=(1024, 2048, 512, 512))

    asyncio.run(main())

``cloudroi.read`` and ``cloudroi.info`` are synchronous helpers over the same machinery.
"""

from __future__ import annotations

import importlib.metadata as _metadata
from collections.abc import Coroutine, Generator, Sequence
from typing import Any, TypeVar

import numpy.typing as npt

from .batch import ChipRequest, read_many
from .context import Context, ContextOptions
from .crs import CRS
from .errors import (
    AccessDeniedError,
    BandError,
    BatchRequestError,
    CloudROIError,
    CRSError,
    LevelError,
    LimitExceededError,
    NotGeoreferencedError,
    ObjectChangedError,
    RangeNotSupportedError,
    ReadTimeoutError,
    ResamplingError,
    SourceError,
    SourceNotFoundError,
    TiffFormatError,
    TileOutsideBoundsError,
    TransientError,
    UnsupportedTiffError,
    UpstreamError,
    WindowError,
)
from .image import Image, ImageOptions
from .opening import open_image
from .read.fetch import RetryPolicy
from .read.hedge import HedgePolicy
from .read.plan import ReadPlan
from .region.expression import Expression, ExpressionError
from .source.base import RangeSource
from .source.memory import MemorySource
from .spec import ImageSpec
from .types import ByteRange, ObjectMeta, Stats, Tile, Window
from .xarray import runtime


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written."""
    try:
        return _metadata.version("cloudroi")
    except _metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


__version__ = _version()

__all__ = [
    "AccessDeniedError",
    "BandError",
    "BatchRequestError",
    "ByteRange",
    "CRS",
    "CRSError",
    "ChipRequest",
    "Expression",
    "ExpressionError",
    "CloudROIError",
    "Context",
    "ContextOptions",
    "HedgePolicy",
    "Image",
    "ImageOptions",
    "ImageSpec",
    "LevelError",
    "LimitExceededError",
    "MemorySource",
    "NotGeoreferencedError",
    "ObjectChangedError",
    "ObjectMeta",
    "RangeNotSupportedError",
    "RangeSource",
    "ReadPlan",
    "ReadTimeoutError",
    "ResamplingError",
    "RetryPolicy",
    "SourceError",
    "SourceNotFoundError",
    "Stats",
    "Tile",
    "TiffFormatError",
    "TileOutsideBoundsError",
    "TransientError",
    "UnsupportedTiffError",
    "UpstreamError",
    "Window",
    "WindowError",
    "__version__",
    "info",
    "open",
    "read",
    "read_many",
]

T = TypeVar("T")


class _Opening:
    """What ``cloudroi.open`` returns: await it for an Image, or use it with ``async with``."""

    def __init__(self, coro: Coroutine[Any, Any, Image]) -> None:
        self._coro = coro
        self._image: Image | None = None

    def __await__(self) -> Generator[Any, None, Image]:
        return self._coro.__await__()

    async def __aenter__(self) -> Image:
        self._image = await self._coro
        return self._image

    async def __aexit__(self, *exc: object) -> None:
        if self._image is not None:
            await self._image.close()


def open(
    url: str | RangeSource | bytes,
    *,
    context: Context | None = None,
    stats: Stats | None = None,
    **options: Any,
) -> _Opening:
    """Open a TIFF/COG by URL (``http(s)://``, ``s3://``, ``file://``, a local path, any async
    fsspec URL), a ``RangeSource``, or bytes. Costs one ranged GET when the header fits the prefix.

    ``options`` are the fields of ``ImageOptions`` (prefix_bytes, coalesce_gap, headers, ...).
    ``stats``: a ``Stats`` to count into (it also records the requests of an open that fails).
    Without ``context`` the Image gets a private ``Context`` that it closes on ``close()``.
    """
    return _Opening(open_image(url, context=context, stats=stats, **options))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code (any thread, even one running an event
    loop) on the process's cloudroi loop (``cloudroi.xarray.runtime``)."""
    return runtime.run(coro)


async def _open_shared(url: str, options: dict[str, Any]) -> Image:
    """Open ``url`` on the runtime's shared Context unless the caller passes a Context."""
    if options.get("context") is None:
        options = {**options, "context": await runtime.shared_context()}
    return await open_image(url, **options)


def read(
    url: str,
    window: Sequence[int] | None = None,
    level: int = 0,
    bands: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> npt.NDArray[Any]:
    """Synchronous ``open`` + ``read``; keyword arguments go to ``Image.read`` (out_shape,
    boundless, fill_value, max_bytes, max_tiles, resampling) or, otherwise, to ``open``."""
    read_keys = {"out_shape", "boundless", "fill_value", "max_bytes", "max_tiles", "resampling"}
    read_kwargs = {k: v for k, v in kwargs.items() if k in read_keys}
    open_kwargs = {k: v for k, v in kwargs.items() if k not in read_keys}

    async def go() -> npt.NDArray[Any]:
        async with await _open_shared(url, open_kwargs) as img:
            return await img.read(window, level, bands, **read_kwargs)

    return _run(go())


def info(url: str, **options: Any) -> dict[str, Any]:
    """Synchronous ``open`` + ``Image.info()``: size, bands, dtype, levels, CRS, transform..."""

    async def go() -> dict[str, Any]:
        async with await _open_shared(url, options) as img:
            return img.info()

    return _run(go())
