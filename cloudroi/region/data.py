"""The result of a region read: pixels, validity mask and georeferencing in one value, which
renders itself to the output formats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..colormaps import Colormap, ColormapError
from ..crs import CRS
from ..errors import ArgumentError
from ..outputs import CONTENT_TYPES, DEFAULT_PNG_LEVEL, RENDERED, GeoRef, encode, encode_geotiff
from ..types import Window
from .geometry import Transform, grid_bounds

__all__ = [
    "Encoded",
    "ImageData",
    "PointData",
    "RequestBytes",
    "estimate_region",
    "fill_for_dtype",
    "refill",
]


@dataclass(frozen=True, slots=True)
class Encoded:
    """An encoded region: the bytes, their media type, the value range an 8-bit rendering
    mapped onto 0..255 (None for data formats and uint8 shown as is), and whether any pixel is
    valid (a rendering of no valid pixel is fully transparent, or black without alpha)."""

    body: bytes
    media_type: str
    rescale: tuple[float, float] | None
    any_valid: bool

    @property
    def transparent(self) -> bool:
        return not self.any_valid


@dataclass(slots=True)
class ImageData:
    """Pixels of a region, shaped (bands, height, width) in the source's dtype, with their mask
    (uint8 0 invalid / 255 valid; None when every pixel is valid or the mask was not asked for)
    and where they sit: the output grid's geotransform and CRS, the source's nodata, the 1-based
    bands read, and the level and window they were read from."""

    data: npt.NDArray[Any]
    mask: npt.NDArray[np.uint8] | None
    transform: Transform | None
    crs: CRS | None
    nodata: float | int | None
    bands: tuple[int, ...]
    level: int
    window: Window
    extra: dict[str, Any] = field(default_factory=dict)
    #: the source's internal palette ((2**bits, 4) uint8 RGBA), for paletted images
    palette: npt.NDArray[np.uint8] | None = None

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """(minx, miny, maxx, maxy) of the output grid, or None without georeferencing."""
        gt = self.transform
        return None if gt is None else grid_bounds(gt, self.width, self.height)

    @property
    def any_valid(self) -> bool:
        return self.mask is None or bool(self.mask.any())

    def render(
        self,
        fmt: str,
        *,
        rescale: tuple[float, float] | Sequence[tuple[float, float]] | None = None,
        quality: int = 85,
        png_level: int = DEFAULT_PNG_LEVEL,
        alpha: bool = True,
        mask_band: bool = False,
        colormap: Colormap | bool = True,
    ) -> Encoded:
        """Encode as ``fmt`` (npy, tif, png, jpeg, webp): CPU work, run it in a thread. The mask
        is the alpha of PNG/WebP (unless ``alpha`` is False); with ``mask_band`` an npy answer
        holds it as its last band (0/255 in the data's dtype), after the data bands, as
        rio-tiler lays out its npy tiles. A 1-band rendering goes through ``colormap``: a
        ``Colormap``, True for the source's palette if it has one, False for none."""
        geo = GeoRef(transform=self.transform, crs=self.crs, nodata=self.nodata)
        if fmt == "tif":
            palette = self.palette if colormap is True else None  # a paletted region stays so
            return Encoded(self._geotiff(geo, palette), CONTENT_TYPES[fmt], None, self.any_valid)
        mask = self.mask if fmt in RENDERED else None
        data = self.data
        if fmt == "npy" and mask_band:
            full = self.mask if self.mask is not None else np.full(data.shape[1:], 255, np.uint8)
            data = np.concatenate([data, full[np.newaxis].astype(data.dtype)])
        body, used = encode(
            fmt,
            data,
            mask=mask,
            geo=geo,
            rescale=rescale,
            quality=quality,
            png_level=png_level,
            alpha=alpha,
            colormap=self.colormap_for(colormap) if fmt in RENDERED else None,
        )
        valid = self.any_valid
        return Encoded(body, CONTENT_TYPES[fmt], used if valid else None, valid)

    def _geotiff(self, geo: GeoRef, palette: npt.NDArray[np.uint8] | None) -> bytes:
        """A COG of the region keeping what the source has: its alpha band as alpha (when it
        is the last band read), else the mask as an internal mask; band descriptions, scales
        and offsets (``extra["band_meta"]``, set by the region read)."""
        alpha_band = self.extra.get("alpha_band")
        alpha = alpha_band is not None and len(self.bands) > 1 and self.bands[-1] == alpha_band
        return encode_geotiff(
            self.data,
            geo,
            mask=None if alpha else self.mask,
            alpha=alpha,
            band_meta=self.extra.get("band_meta"),
            palette=palette,
        )

    def colormap_for(self, colormap: Colormap | bool) -> Colormap | None:
        """The colormap a rendering uses: ``colormap`` itself, or with True the palette of a
        paletted source shown as its one band; None for none."""
        if isinstance(colormap, Colormap):
            if self.data.shape[0] != 1:
                raise ColormapError(
                    f"a colormap colours one band, got {self.data.shape[0]}: pick one (bands)"
                )
            return colormap
        if colormap and self.palette is not None and self.data.shape[0] == 1:
            return Colormap.table(self.palette)
        return None


@dataclass(frozen=True, slots=True)
class PointData:
    """The values of every band at one pixel, and whether the pixel is valid."""

    col: int
    row: int
    values: list[Any]
    valid: bool
    x: float | None
    y: float | None
    dtype: str
    nodata: float | int | None
    crs: CRS | None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "col": self.col,
            "row": self.row,
            "values": self.values,
            "dtype": self.dtype,
            "nodata": self.nodata,
            "valid": self.valid,
            "crs": None if self.crs is None else self.crs.epsg,
        }
        if self.x is not None and self.y is not None:
            doc["x"], doc["y"] = self.x, self.y
        return doc


# --------------------------------------------------------------------------------------------
# what an answer holds, estimated before anything is fetched
# --------------------------------------------------------------------------------------------

#: Rows an 8-bit rendering converts at a time (outputs.render): its float32 working copy is this
#: many rows of every band, not the whole image.
RENDER_ROWS = 256


@dataclass(frozen=True, slots=True)
class RequestBytes:
    """The bytes one region answer would hold, by part."""

    data: int
    mask: int
    rendering: int
    body: int

    @property
    def total(self) -> int:
        return self.data + self.mask + self.rendering + self.body

    def describe(self) -> str:
        return (
            f"{self.total} bytes (data {self.data}, mask {self.mask}, rendering "
            f"{self.rendering}, encoded body {self.body})"
        )


def estimate_region(
    *,
    height: int,
    width: int,
    bands: int,
    itemsize: int,
    rendered: bool,
    mask_bytes: int,
) -> RequestBytes:
    """What a region answer of ``bands`` x ``height`` x ``width`` samples of ``itemsize`` bytes
    holds at its peak: the array read, its mask's inputs (``mask_bytes``), the 8-bit rendering
    (``rendered``: png/jpeg/webp) and the encoded body twice (the encoder's buffer and the
    bytes handed on; for npy and GeoTIFF the body is the data itself). A nearest read holds
    its output and the blocks being decoded, so this counts the output (a kernel's source
    window is added by ``estimate_bytes``); decoded blocks in flight are bounded process-wide
    by the decode pool and cache."""
    pixels = height * width
    data = bands * pixels * itemsize
    if rendered:
        channels = 4  # RGB + alpha at most
        # the 8-bit pixels, one format-specific copy (grey to RGB, alpha dropped), a float32
        # working strip of every band
        rendering = 2 * pixels * channels + bands * min(height, RENDER_ROWS) * width * 4
        body = 2 * (pixels * channels + 4096)
    else:
        rendering = 0
        body = 2 * (data + 4096)
    return RequestBytes(data, mask_bytes, rendering, body)


def fill_for_dtype(nodata: float | int | None, dtype: np.dtype[Any]) -> float | int:
    """``nodata`` where ``dtype`` can hold it, else 0."""
    if nodata is None:
        return 0
    if dtype.kind == "f":
        return nodata
    if math.isfinite(nodata) and float(nodata).is_integer():
        info = np.iinfo(dtype)
        if info.min <= nodata <= info.max:
            return int(nodata)
    return 0


def _as_float(nodata: float | int, dtype: np.dtype[Any]) -> float | None:
    """``nodata`` as a float ``dtype`` holds it (rounded to its precision), or None when the
    cast overflows to infinity or underflows to zero."""
    with np.errstate(over="ignore", under="ignore"):
        cast = float(dtype.type(nodata))
    if math.isnan(float(nodata)):
        return cast
    if math.isinf(cast) != math.isinf(float(nodata)) or (cast == 0) != (nodata == 0):
        return None
    return cast


def refill(data: ImageData, nodata: float | int | None, *, strict: bool = True) -> ImageData:
    """``data`` with its invalid pixels set to ``nodata`` (and the value they hold recorded),
    when given. A value the dtype cannot hold (NaN or a fraction in an integer dtype, out of
    its range, or beyond a float dtype's range) is an ``ArgumentError``; with ``strict=False``
    (a file's own nodata) the pixels take 0 and no nodata is recorded: a recorded value must
    be the one the pixels hold (a float nodata as the dtype rounds it)."""
    if nodata is None:
        return data
    dtype = data.data.dtype
    held: float | int | None
    if dtype.kind == "f":
        held = _as_float(nodata, dtype)
        fill: float | int = 0 if held is None else held
    else:
        fill = fill_for_dtype(nodata, dtype)
        held = fill if fill == nodata else None
    if held is None and strict:
        raise ArgumentError("nodata", f"nodata {nodata!r} cannot be held by the image's {dtype}")
    if data.mask is not None:
        data.data[:, data.mask == 0] = fill
    data.nodata = held
    return data
