"""cloudroi: read just the region of a TIFF/COG you need, from HTTP(S), S3, fsspec stores or disk.

    async def main() -> None:
        async with cloudroi.open("https://example.com/scene.tif") as img:
            arr = await img.read(window=(1024, 2048, 512, 512))

    asyncio.run(main())

``cloudroi.read`` and ``cloudroi.info`` are synchronous helpers over the same machinery.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

# The subpackage cloudroi.read (a namespace package: nothing runs) is imported before the
# function ``read`` below is defined, which then takes its name; imported later, on first use,
# it would replace the function with the module.
from . import read as _read_package  # noqa: F401
from ._lazy import lazy_getattr
from .errors import (
    AccessDeniedError,
    BandError,
    BatchRequestError,
    CloudROIError,
    CRSError,
    ExpressionError,
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

if TYPE_CHECKING:
    import numpy.typing as npt

    from .batch import ChipRequest, read_many
    from .context import Context, ContextOptions
    from .crs import CRS
    from .image import Image, ImageOptions
    from .read.fetch import RetryPolicy
    from .read.hedge import HedgePolicy
    from .read.plan import ReadPlan
    from .region.expression import Expression
    from .source.base import RangeSource
    from .source.memory import MemorySource
    from .spec import ImageSpec
    from .types import ByteRange, ObjectMeta, Stats, Tile, Window

#: The public names that live in submodules, imported on first use (PEP 562): ``import cloudroi``
#: (and so the Lambda handler's import) does not pay for numpy, aiohttp and the reader until a
#: name needs them.
_LAZY = {
    "ChipRequest": "batch",
    "read_many": "batch",
    "HedgePolicy": "read.hedge",
    "Expression": "region.expression",
    "ImageSpec": "spec",
    "Context": "context",
    "ContextOptions": "context",
    "CRS": "crs",
    "Image": "image",
    "ImageOptions": "image",
    "RetryPolicy": "read.fetch",
    "ReadPlan": "read.plan",
    "RangeSource": "source.base",
    "MemorySource": "source.memory",
    "ByteRange": "types",
    "ObjectMeta": "types",
    "Stats": "types",
    "Tile": "types",
    "Window": "types",
}


_lazy = lazy_getattr(__name__, _LAZY, globals())


def __getattr__(name: str) -> Any:
    """A public name from its submodule, or a submodule (``cloudroi.image``) not yet imported."""
    if name == "__version__":
        globals()[name] = version = _version()
        return version
    return _lazy(name)


def _version() -> str:
    """The installed distribution's version: pyproject.toml is the one place it is written."""
    found = _sibling_version()
    if found is not None:
        return found
    import importlib.metadata as _metadata

    try:
        return _metadata.version("cloudroi")
    except _metadata.PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"


def _sibling_version(parent: str | None = None) -> str | None:
    """The ``Version`` of the one ``cloudroi-*.dist-info`` in ``parent`` (default: beside this
    package, as in a wheel install or the Lambda zip), read directly: importlib.metadata and the
    email parser it loads cost a cold start about 25 ms. None when there is not exactly one (an
    editable install: then importlib.metadata finds it)."""
    import builtins
    import os

    if parent is None:
        parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        infos = [n for n in os.listdir(parent) if n.startswith("cloudroi-")]
        infos = [n for n in infos if n.endswith(".dist-info")]
        if len(infos) != 1:
            return None
        with builtins.open(os.path.join(parent, infos[0], "METADATA"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end: the description follows
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


if TYPE_CHECKING:
    __version__: str

__all__ = [
    "AccessDeniedError",
    "BandError",
    "BatchRequestError",
    "ByteRange",
    "CRS",
    "CRSError",
    "ChipRequest",
    "CloudROIError",
    "Context",
    "ContextOptions",
    "Expression",
    "ExpressionError",
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
    from .opening import open_image

    return _Opening(open_image(url, context=context, stats=stats, **options))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code (any thread, even one running an event
    loop) on the process's cloudroi loop (``cloudroi.xarray.runtime``)."""
    from .xarray import runtime

    return runtime.run(coro)


async def _open_shared(url: str, options: dict[str, Any]) -> Image:
    """Open ``url`` on the runtime's shared Context unless the caller passes a Context."""
    from .opening import open_image
    from .xarray import runtime

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
