"""``Image``: one opened TIFF/COG, and the verbs that read just the part of it you ask for.

A thin facade: it checks arguments and describes the file; the reading is ``cloudroi.read``'s
pipeline (plan -> blocks -> fetch -> decode -> assemble, masks beside). ``cloudroi.opening``
makes Images: one prefix GET and a header parse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .context import Context
from .crs import CRS, crs_info
from .errors import BandError, LevelError, LimitExceededError, ReadTimeoutError, WindowError
from .read.assemble import ReadTarget, SampledTarget, WindowTarget
from .read.header import (
    DEFAULT_LAZY_INDEX_BYTES,
    DEFAULT_PREFIX_BYTES,
)
from .read.jpeg_ijg import JpegDecoder
from .read.masks import read_mask
from .read.plan import ReadPlan, check_shape, check_window, resample_source
from .read.reader import BlockReader, Budgets, LevelReader
from .read.resample_plan import ResamplePlan, plan_read
from .read.resampled import check_resampling, read_resampled, read_resampled_mask
from .region.geometry import grid_bounds
from .region.verbs import GeoVerbs
from .source.base import RangeSource
from .source.memory import MemorySource
from .spec import ImageSpec
from .tiff.palette import json_number, palette_json
from .tiff.parse import ParseLimits
from .tiff.structure import ImageIFD, TiffStructure
from .tiff.tags import COMPRESSION_KEYS, PHOTOMETRIC_NAMES
from .types import ObjectMeta, Stats, Tile, Window

__all__ = ["Image", "ImageOptions"]

#: A URL's remembered header size is used as the next open's prefix only up to this size.
_MAX_REMEMBERED_HEADER = 4 << 20

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """Per-Image knobs (all optional keyword arguments of ``cloudroi.open``)."""

    prefix_bytes: int = DEFAULT_PREFIX_BYTES
    lazy_index_bytes: int = DEFAULT_LAZY_INDEX_BYTES
    #: Merge block ranges separated by at most this many bytes into one GET ...
    coalesce_gap: int = 8 * 1024
    #: ... while the merged GET stays under this size.
    coalesce_max: int = 2 << 20
    max_preload_bytes: int = 512 << 20
    #: Refuse reads whose output array would exceed this many bytes (0: no limit).
    max_output_bytes: int = 4 << 30
    remember_header_size: bool = True
    use_block_leader: bool = True
    #: Ask HTTP servers for a read's disjoint ranges in one multi-range GET (multipart/
    #: byteranges): fewer requests where the server supports it (nginx, Apache); one wasted round
    #: trip per origin where it does not (S3, GCS: cloudroi then asks range by range).
    multirange: bool = False
    headers: dict[str, str] | None = None
    #: Caps on the work a header may cause (IFDs, entries, tag bytes...): TiffFormatError past.
    parse_limits: ParseLimits = ParseLimits()
    #: Decoder of YCbCr JPEG blocks: "turbo" (libjpeg-turbo, as GDAL linked to it: Debian,
    #: Ubuntu, conda-forge) or "ijg9" (IJG libjpeg 9, as rasterio's PyPI wheels; the
    #: ``jpeg-ijg9`` extra). None: the Context's (``ContextOptions.jpeg_decoder``).
    jpeg_decoder: JpegDecoder | None = None


class Image(GeoVerbs):
    """An opened TIFF/COG. Use ``cloudroi.open(url)``; close with ``await img.close()`` or
    ``async with``. Properties describe level 0 (full resolution) unless they say otherwise."""

    def __init__(
        self,
        context: Context,
        source: RangeSource,
        structure: TiffStructure,
        meta: ObjectMeta,
        reader: BlockReader,
        options: ImageOptions,
        *,
        owns_context: bool,
    ) -> None:
        self.context = context
        self.source = source
        self.structure = structure
        self.meta = meta
        self.options = options
        self._reader = reader
        self._owns_context = owns_context
        self._closed = False

    # -- description ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def stats(self) -> Stats:
        return self._reader.stats

    @property
    def _base(self) -> ImageIFD:
        return self.structure.levels[0]

    @property
    def width(self) -> int:
        return self._base.width

    @property
    def height(self) -> int:
        return self._base.height

    @property
    def count(self) -> int:
        return self._base.samples

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._base.dtype

    @property
    def levels(self) -> list[tuple[int, int]]:
        """(width, height) of level 0 and then of each overview, largest first."""
        return [(lv.width, lv.height) for lv in self.structure.levels]

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, cols) of one block of level 0; strips are (RowsPerStrip, width)."""
        return (self._base.block_height, self._base.block_width)

    @property
    def largest_block_bytes(self) -> int:
        """The most bytes one block of any level or mask decodes to (what a read of a single
        pixel may cost in memory)."""
        ifds = [*self.structure.levels, *(m for m in self.structure.masks if m is not None)]
        return max(ifd.decoded_block_bytes() for ifd in ifds)

    @property
    def compression(self) -> str:
        code = self._base.compression
        return COMPRESSION_KEYS.get(code, str(code))

    @property
    def photometric(self) -> str:
        return PHOTOMETRIC_NAMES.get(self._base.photometric, str(self._base.photometric))

    @property
    def colormap(self) -> npt.NDArray[np.uint8] | None:
        """The internal palette of a paletted 1-band uint8/uint16 image as a (2**bits, 4) uint8
        RGBA table (rows are the pixel values), as GDAL presents it; None for other images."""
        return self.structure.colormap

    @property
    def interleave(self) -> str:
        return "band" if self._base.planar == 2 else "pixel"

    @property
    def nodata(self) -> float | int | None:
        return self.structure.nodata

    @property
    def crs(self) -> CRS | None:
        """The image's CRS: an EPSG code where the file names one, else the user-defined system
        its GeoTIFF keys describe; None without one. Equals its EPSG code as an int."""
        return self.structure.geo.crs

    @property
    def transform(self) -> Transform | None:
        """GDAL-order geotransform (x0, dx, rx, y0, ry, dy) of level 0, or None."""
        return self.structure.geo.transform

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """(minx, miny, maxx, maxy) of the image in its CRS, or None without georeferencing."""
        gt = self.transform
        return None if gt is None else grid_bounds(gt, self.width, self.height)

    @property
    def has_mask(self) -> bool:
        return self.structure.masks[0] is not None

    @property
    def alpha_band(self) -> int | None:
        """1-based number of the alpha band (ExtraSamples 1 or 2), or None."""
        extra = self._base.extra_samples
        return self._base.samples if extra and extra[-1] in (1, 2) else None

    def info(self) -> dict[str, Any]:
        """Everything above as plain JSON-able values."""
        return {
            "url": self.url,
            "size": self.meta.size,
            "etag": self.meta.etag,
            "last_modified": self.meta.last_modified,
            "version_pinned": self.meta.pinned_by,
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": str(self.dtype),
            "block_shape": list(self.block_shape),
            "tiled": self._base.tiled,
            "compression": self.compression,
            "predictor": self._base.predictor,
            "photometric": self.photometric,
            "interleave": self.interleave,
            "colormap": None if self.colormap is None else palette_json(self.colormap),
            "levels": [list(lv) for lv in self.levels],
            "nodata": json_number(self.nodata),
            **crs_info(self.crs),
            "transform": list(self.transform) if self.transform else None,
            "bounds": list(self.bounds) if self.bounds else None,
            "has_mask": self.has_mask,
            "alpha_band": self.alpha_band,
            "bigtiff": self.structure.header.bigtiff,
            "cog_layout": self.structure.ghost.get("LAYOUT"),
        }

    def __repr__(self) -> str:
        return (
            f"<cloudroi.Image {self.url!r} {self.width}x{self.height}x{self.count} "
            f"{self.dtype} {self.compression} levels={len(self.levels)}>"
        )

    def spec(self) -> ImageSpec:
        """A picklable ``ImageSpec`` that opens this file again in another thread or process
        (``cloudroi.xarray.runtime.open_spec``): URL, non-default options, the Context's options
        and the header size, so that the other side's open is a single GET."""
        if isinstance(self.source, MemorySource):
            raise TypeError("an Image opened from bytes has no URL to open again")
        default = ImageOptions()
        changed = {
            name: getattr(self.options, name)
            for name in ImageOptions.__dataclass_fields__
            if getattr(self.options, name) != getattr(default, name)
        }
        return ImageSpec.create(
            self.url,
            context_options=self.context.options,
            header_bytes=self.structure.header_bytes,
            **changed,
        )

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError(
            "a cloudroi Image holds live connections and does not pickle: send image.spec() "
            "and open it with cloudroi.xarray.runtime.open_spec"
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Image:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.store.pinned.clear()
        await self.source.close()
        if self._owns_context:
            await self.context.close()

    # -- argument checking ------------------------------------------------------------------

    def _level(self, level: int) -> LevelReader:
        if not isinstance(level, int | np.integer) or not 0 <= level < len(self.structure.levels):
            raise LevelError(f"level must be 0..{len(self.structure.levels) - 1}, got {level!r}")
        return self._reader.at(int(level), self.nodata)

    def _samples(self, bands: int | Sequence[int] | None) -> list[int]:
        if bands is None:
            return list(range(self.count))
        seq = [bands] if isinstance(bands, int | np.integer) else list(bands)
        if not seq:
            raise BandError("bands must name at least one band")
        for b in seq:
            if not isinstance(b, int | np.integer) or not 1 <= b <= self.count:
                raise BandError(f"bands are numbered 1..{self.count}, got {b!r}")
        return [int(b) - 1 for b in seq]

    def _target(
        self,
        lr: LevelReader,
        window: Sequence[int] | None,
        boundless: bool,
        out_shape: tuple[int, int] | None,
    ) -> tuple[LevelReader, ReadTarget, Window]:
        """What a read asks for: the level actually read, the target on it, and the window
        (of the level asked for) it covers."""
        ifd = lr.ifd
        win = Window(0, 0, ifd.width, ifd.height) if window is None else check_window(window)
        if not boundless and not win.within(ifd.width, ifd.height):
            raise WindowError(
                f"window {tuple(win)} is outside the {ifd.width}x{ifd.height} image "
                "(pass boundless=True to fill outside pixels)"
            )
        if out_shape is None:
            return lr, WindowTarget(win), win
        level, rows, cols = resample_source(
            self.levels, lr.level, win, check_shape(out_shape), boundless
        )
        return self._reader.at(level, self.nodata), SampledTarget(rows, cols), win

    def _resampled(
        self,
        lr: LevelReader,
        window: Sequence[int] | None,
        boundless: bool,
        out_shape: tuple[int, int] | None,
        resampling: str,
    ) -> tuple[LevelReader, Window, ResamplePlan | None] | None:
        """A read with a kernel other than nearest: the level, its window to read (the
        footprint padded by the kernel's reach) and the plan; None when nearest applies."""
        kind = check_resampling(resampling, self.colormap is not None)
        if kind == "nearest" or out_shape is None:
            return None
        _, _, win = self._target(lr, window, boundless, None)
        widths = [ifd.block_width for ifd in self.structure.levels]
        level, src, plan = plan_read(
            self.levels, lr.level, win, check_shape(out_shape), kind, widths
        )
        return self._reader.at(level, self.nodata), src, plan

    # -- reading ----------------------------------------------------------------------------

    def plan(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        boundless: bool = False,
        out_shape: tuple[int, int] | None = None,
        resampling: str = "nearest",
    ) -> ReadPlan:
        """The requests ``read`` (with the same arguments) would make, computed by the same
        planner without fetching anything. With ``out_shape``, the plan is of the overview and
        the blocks the resampled read would use (its ``level`` and ``window`` say which).

        For a file whose block index is loaded lazily and not yet in memory, the plan lists the
        index slices to fetch first and leaves ``requests`` as None.
        """
        resampled = self._resampled(self._level(level), window, boundless, out_shape, resampling)
        if resampled is not None:
            rlr, src, _ = resampled
            refs = self._reader.refs(rlr.ifd, WindowTarget(src), self._samples(bands))
            return self._reader.plan(rlr.level, src, rlr.ifd, refs)
        lr, target, win = self._target(self._level(level), window, boundless, out_shape)
        if isinstance(target, SampledTarget):
            win = target.covering(lr.ifd)
        refs = self._reader.refs(lr.ifd, target, self._samples(bands))
        return self._reader.plan(lr.level, win, lr.ifd, refs)

    async def read(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        out_shape: tuple[int, int] | None = None,
        boundless: bool = False,
        fill_value: float | int | None = None,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - maps the overrun to ReadTimeoutError
        resampling: str = "nearest",
    ) -> npt.NDArray[Any]:
        """Pixels of ``window`` = (col_off, row_off, width, height) of ``level`` as an array shaped
        (bands, height, width) in the file's dtype. ``bands`` are 1-based (None: all).

        With ``out_shape=(h, w)`` the window (in pixels of ``level``; of level 0 when level is 0)
        is resampled by nearest neighbour from the overview GDAL would choose. Outside pixels
        raise ``WindowError`` unless ``boundless``, which fills them with ``fill_value``, the
        nodata value or 0 (blocks a sparse file lacks hold nodata or 0, as in GDAL).
        ``max_bytes``/``max_tiles`` refuse a read before any block is fetched.
        ``timeout`` (seconds) bounds the whole read, retries included: ``ReadTimeoutError``.
        ``resampling`` (with ``out_shape``): "nearest", or "bilinear", "cubic", "average",
        "mode" as GDAL's RasterIO resamples (its overview choice and kernels; blending ones are
        refused on paletted images with ``ResamplingError``).
        """
        samples = self._samples(bands)
        budgets = Budgets(max_bytes, max_tiles)
        resampled = self._resampled(self._level(level), window, boundless, out_shape, resampling)
        if resampled is not None:
            rlr, src, plan = resampled
            async with _deadline(timeout, self.url):
                return await read_resampled(rlr, src, plan, samples, rlr.fill(fill_value), budgets)
        lr, target, _ = self._target(self._level(level), window, boundless, out_shape)
        fill = lr.fill(fill_value)
        async with _deadline(timeout, self.url):
            return await lr.read(target, samples, fill, budgets)

    async def read_mask(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        *,
        out_shape: tuple[int, int] | None = None,
        boundless: bool = False,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - maps the overrun to ReadTimeoutError
        resampling: str = "nearest",
    ) -> npt.NDArray[np.uint8]:
        """The validity mask of a window as uint8 0 (invalid) / 255 (valid), shaped (h, w).

        From the GDAL internal mask when there is one; else the alpha band; else where any band
        differs from nodata; else all valid. Pixels outside the image are 0. A resampled mask
        samples the same pixels as the resampled read (nearest sampling commutes with it); with
        another ``resampling``, a pixel is valid where its kernel saw a valid source pixel.
        """
        resampled = self._resampled(self._level(level), window, boundless, out_shape, resampling)
        if resampled is not None:
            rlr, src, plan = resampled
            async with _deadline(timeout, self.url):
                return await read_resampled_mask(rlr, src, plan, Budgets(max_bytes, max_tiles))
        lr, target, _ = self._target(self._level(level), window, boundless, out_shape)
        async with _deadline(timeout, self.url):
            return await read_mask(lr, target, Budgets(max_bytes, max_tiles))

    # -- loading strategies -----------------------------------------------------------------

    async def preload(self, level: int = 0, *, masks: bool = True) -> int:
        """Fetch every block of ``level`` (and its mask) now and keep them for this Image's
        lifetime, so later reads of the level send no request. Returns the bytes loaded.

        Raises ``LimitExceededError`` before fetching when the level's compressed size exceeds
        ``max_preload_bytes``.
        """
        lr = self._level(level)
        ifds = [lr.ifd] if lr.mask_ifd is None or not masks else [lr.ifd, lr.mask_ifd]
        total = 0
        for ifd in ifds:
            pinned = sum(len(v) for v in self._reader.store.pinned.values())
            budget = self.options.max_preload_bytes - pinned
            try:
                blocks, nbytes = await self._reader.fetch_all(ifd, budget)
            except LimitExceededError as exc:
                raise LimitExceededError(
                    "preload bytes", exc.value, self.options.max_preload_bytes
                ) from None
            self.stats.preloaded_tiles += blocks
            self.stats.preloaded_bytes += nbytes
            total += nbytes
        return total

    async def iter_tiles(
        self,
        window: Sequence[int] | None = None,
        level: int = 0,
        bands: int | Sequence[int] | None = None,
        *,
        max_bytes: int | None = None,
        max_tiles: int | None = None,
    ) -> AsyncIterator[Tile]:
        """Yield the blocks of ``window`` as ``Tile``s, decoded, in the order they arrive.

        Each tile's ``window`` is its part of the requested window (level pixels); fetches run
        concurrently and stop when the iteration is abandoned.
        """
        samples = self._samples(bands)
        lr, _, win = self._target(self._level(level), window, False, None)
        tiles = self._reader.tiles(
            lr.level, lr.ifd, win, samples, lr.fill(None), Budgets(max_bytes, max_tiles)
        )
        async for tile in tiles:
            yield tile


@contextlib.asynccontextmanager
async def _deadline(timeout: float | None, url: str) -> AsyncIterator[None]:  # noqa: ASYNC109
    """Bound the body's run time; the overrun becomes ``ReadTimeoutError``."""
    if timeout is None:
        yield
        return
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        raise ReadTimeoutError(f"read did not finish within {timeout} s", url=url) from exc
