"""Output encoders: band arrays to NPY, PNG, JPEG, WebP and GeoTIFF bytes, plus 8-bit rendering.

Arrays come in as cloudroi reads them, shaped (bands, height, width). NPY and GeoTIFF keep the
file's dtype and every band (GeoTIFF with its georeferencing and nodata); PNG, JPEG and WebP are
renderings: one band (grey) or three (RGB), scaled to 8 bits, with the validity mask as alpha
where the format has one. Encoding is CPU work: ``encode_async`` runs it on an executor, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt

from .cog import write_cog
from .colormaps import Colormap
from .crs import CRS
from .errors import LimitExceededError
from .tiff.geokeys import encode_directory, geotiff_keys

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_PNG_LEVEL",
    "EXTENSIONS",
    "FORMATS",
    "GeoRef",
    "Rendered",
    "encode",
    "encode_async",
    "encode_geotiff",
    "encode_npy",
    "format_for_path",
    "render",
    "render_bands",
]

#: Output formats and their media types.
CONTENT_TYPES: dict[str, str] = {
    "npy": "application/x-npy",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "tif": "image/tiff; application=geotiff",
}
FORMATS = tuple(CONTENT_TYPES)
#: File extensions the CLI recognises, mapped to formats.
EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".webp": "webp",
    ".tif": "tif",
    ".tiff": "tif",
}
#: zlib level of PNG output: on a 512 x 512 grey+alpha rendering, level 4 encodes in half the
#: time of zlib's default 6 for about a quarter more bytes (measured on the sample DEM).
DEFAULT_PNG_LEVEL = 4
#: PNG row filter: Paeth on every row (libpng's PNG_FILTER_PAETH) instead of libpng's adaptive
#: choice among all five, which tries each on every row. On the tile benchmark's RGBA tiles and
#: the sample DEM's grey+alpha tiles it gives the same size (95, 85 and 9 KiB) in 25-40% less
#: time (8.5 -> 6.3, 9.8 -> 5.9, 1.6 -> 1.1 ms a 256 x 256 tile at level 4).
PNG_FILTER = 128
#: Formats that are 8-bit renderings rather than the data itself.
RENDERED = frozenset({"png", "jpeg", "webp"})
ALPHA_FORMATS = frozenset({"png", "webp"})

Transform = tuple[float, float, float, float, float, float]

# GeoTIFF tags and keys (GeoTIFF 1.1, OGC 19-008r4) and GDAL's nodata tag.
_MODEL_PIXEL_SCALE = 33550
_MODEL_TIEPOINT = 33922
_MODEL_TRANSFORMATION = 34264
_GEO_KEY_DIRECTORY = 34735
_GEO_DOUBLE_PARAMS = 34736
_GEO_ASCII_PARAMS = 34737
_GDAL_NODATA = 42113
_GDAL_METADATA = 42112
#: Block side of GeoTIFF answers: GDAL's COG default; overviews are made down to one block.
_COG_BLOCK = 512
_GT_RASTER_TYPE = 1025
_RASTER_PIXEL_IS_AREA = 1


def format_for_path(path: str) -> str:
    """The output format an output file name asks for, by its extension."""
    lower = path.lower()
    for ext, fmt in EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt
    known = ", ".join(EXTENSIONS)
    raise ValueError(f"cannot tell the output format of {path!r}: use one of {known}")


# --------------------------------------------------------------------------------------------
# georeferencing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoRef:
    """Where an output array sits: GDAL-order geotransform of its pixel grid, CRS (a
    ``cloudroi.CRS`` or an EPSG code), nodata."""

    transform: Transform | None = None
    crs: CRS | int | None = None
    nodata: float | int | None = None


def _geotiff_tags(geo: GeoRef) -> list[tuple[int, str, int, Any, bool]]:
    tags: list[tuple[int, str, int, Any, bool]] = []
    gt = geo.transform
    if gt is not None:
        x0, dx, rx, y0, ry, dy = gt
        if rx == 0 and ry == 0:
            tags.append((_MODEL_PIXEL_SCALE, "d", 3, (dx, -dy, 0.0), True))
            tags.append((_MODEL_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True))
        else:
            matrix = (dx, rx, 0.0, x0, ry, dy, 0.0, y0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
            tags.append((_MODEL_TRANSFORMATION, "d", 16, matrix, True))
    if gt is not None or geo.crs is not None:
        crs = None if geo.crs is None else geotiff_keys(CRS.from_user_input(geo.crs))
        # the CRS's keys (EPSG codes, or the parameters of a user-defined system), and always
        # PixelIsArea: the transform describes pixel corners
        keys = dict(crs or ())
        keys[_GT_RASTER_TYPE] = _RASTER_PIXEL_IS_AREA
        directory, doubles, text = encode_directory(keys.items())
        tags.append((_GEO_KEY_DIRECTORY, "H", len(directory), directory, True))
        if doubles:
            tags.append((_GEO_DOUBLE_PARAMS, "d", len(doubles), doubles, True))
        if text:
            tags.append((_GEO_ASCII_PARAMS, "s", 0, text, True))
    if geo.nodata is not None:
        tags.append((_GDAL_NODATA, "s", 0, _nodata_text(geo.nodata), True))
    return tags


def _nodata_text(value: float | int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# data formats: every band, the file's dtype
# --------------------------------------------------------------------------------------------


def encode_npy(data: npt.NDArray[Any]) -> bytes:
    """The array as a ``.npy`` file (no pickles)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(data), allow_pickle=False)
    return buf.getvalue()


def encode_geotiff(
    data: npt.NDArray[Any],
    geo: GeoRef | None = None,
    *,
    mask: npt.NDArray[np.uint8] | None = None,
    alpha: bool = False,
    band_meta: Sequence[dict[str, Any]] | None = None,
    palette: npt.NDArray[np.uint8] | None = None,
) -> bytes:
    """A Cloud-Optimized GeoTIFF of ``data`` (bands, height, width), as GDAL's COG driver lays
    one out (512-pixel Deflate tiles, overviews down to one tile, IFDs first): the
    georeferencing with the CRS in full (user-defined ones too), nodata, ``mask`` (0 invalid)
    as a GDAL internal mask with its overviews, the last band as alpha with ``alpha``, and each
    band's description, scale and offset (``band_meta``) in GDAL_METADATA; ``palette``
    ((2**bits, 4) RGBA) as the ColorMap of 1-band uint8/uint16 data."""
    if data.ndim != 3:
        raise ValueError(f"expected (bands, height, width), got shape {data.shape}")
    tags: dict[int, tuple[int, Any]] = {}
    for code, kind, _, value, _ in _geotiff_tags(geo or GeoRef()):
        tags[code] = _tiff_value(kind, value)
    text = _gdal_metadata(band_meta or ())
    if text:
        tags[_GDAL_METADATA] = _tiff_value("s", text)
    keep = None if mask is None or bool(mask.all()) else mask
    return write_cog(
        data,
        tile=_COG_BLOCK,
        compression="deflate",
        predictor=2 if data.dtype.kind in "iu" else 1,
        mask=keep,
        alpha=alpha,
        extra_tags=tags,
        palette=palette if _palette_fits(palette, data) else None,
    )


def _tiff_value(kind: str, value: Any) -> tuple[int, Any]:
    """A tifffile-style (dtype code, value) as write_cog's (TIFF type, values)."""
    if kind == "s":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return 2, raw if raw.endswith(b"\x00") else raw + b"\x00"
    return {"d": 12, "H": 3}[kind], list(value)


def _gdal_metadata(bands: Sequence[dict[str, Any]]) -> str:
    """GDAL_METADATA holding each band's description, scale and offset (where set)."""
    from xml.sax.saxutils import escape  # urllib.request with it: only for GeoTIFF answers

    items = []
    roles = (("description", "DESCRIPTION"), ("scale", "SCALE"), ("offset", "OFFSET"))
    for i, meta in enumerate(bands):
        for role, name in roles:
            value = meta.get(role)
            if value is None or value == "" or (role, value) in (("scale", 1.0), ("offset", 0.0)):
                continue
            text = escape(repr(float(value)) if role != "description" else str(value))
            items.append(f'<Item name="{name}" sample="{i}" role="{role}">{text}</Item>')
    return f"<GDALMetadata>{''.join(items)}</GDALMetadata>" if items else ""


def _palette_fits(palette: npt.NDArray[np.uint8] | None, data: npt.NDArray[Any]) -> bool:
    if palette is None or data.shape[0] != 1 or data.dtype not in (np.uint8, np.uint16):
        return False
    return bool(palette.shape == (1 << (8 * data.dtype.itemsize), 4))


# --------------------------------------------------------------------------------------------
# renderings: 8 bits, grey or RGB, mask as alpha
# --------------------------------------------------------------------------------------------


def render_bands(
    count: int, bands: Sequence[int] | None, alpha_band: int | None = None
) -> list[int]:
    """The 1-based bands an 8-bit rendering shows: those asked for (one or three), else the first
    three colour bands (the alpha band excluded, shown as alpha instead), else band 1."""
    if bands is not None:
        chosen = list(bands)
        if len(chosen) not in (1, 3):
            raise ValueError(f"an image rendering shows 1 or 3 bands, got {len(chosen)}")
        return chosen
    colour = [b for b in range(1, count + 1) if b != alpha_band]
    return colour[:3] if len(colour) >= 3 else colour[:1]


@dataclass(frozen=True, slots=True)
class Rendered:
    """An 8-bit image shaped (height, width, channels) and the value range mapped onto 0..255."""

    pixels: npt.NDArray[np.uint8]
    rescale: tuple[float, float] | None


#: Rows converted at a time by ``render``: its working copies are strips, not the whole image.
RENDER_ROWS = 256


def _valid_range(
    data: npt.NDArray[Any], mask: npt.NDArray[np.uint8] | None, nodata: float | int | None
) -> tuple[float, float] | None:
    """(min, max) of the valid values (masked, non-finite and nodata values left out), strip by
    strip; None when there is none."""
    lo, hi = math.inf, -math.inf
    skip_nodata = nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata))
    for r0 in range(0, data.shape[1], RENDER_ROWS):
        strip = data[:, r0 : r0 + RENDER_ROWS]
        values = strip if mask is None else strip[:, mask[r0 : r0 + RENDER_ROWS] > 0]
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if skip_nodata:
            values = values[values != nodata]
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    return (lo, hi) if lo <= hi else None


Range = tuple[float, float]


def _ranges(
    data: npt.NDArray[Any],
    mask: npt.NDArray[np.uint8] | None,
    rescale: Range | Sequence[Range] | None,
    nodata: float | int | None,
) -> list[Range]:
    """One (min, max) per band: the one range given for all, one per band (the last repeated
    for bands past the list), or the valid pixels' own range."""
    bands = data.shape[0]
    if rescale is None:
        return [_valid_range(data, mask, nodata) or (0.0, 1.0)] * bands
    if len(rescale) == 2 and not isinstance(rescale[0], Sequence):
        return [(float(rescale[0]), float(rescale[1]))] * bands  # type: ignore[arg-type]
    ranges = [(float(lo), float(hi)) for lo, hi in rescale]  # type: ignore[misc]
    return [ranges[min(b, len(ranges) - 1)] for b in range(bands)]


def render(
    data: npt.NDArray[Any],
    *,
    mask: npt.NDArray[np.uint8] | None = None,
    rescale: Range | Sequence[Range] | None = None,
    nodata: float | int | None = None,
    alpha: bool = True,
    colormap: Colormap | None = None,
) -> Rendered:
    """``data`` (1 or 3 bands) as 8-bit (height, width, channels) pixels.

    uint8 data is shown as it is unless ``rescale`` is given; other dtypes map ``rescale`` =
    (min, max) onto 0..255 (or one (min, max) per band), or without it the valid pixels' own
    range, truncating as TiTiler does (``_index8``). With a ``mask`` and ``alpha`` an alpha
    channel is added; without ``alpha`` invalid pixels are black. A ``colormap`` (1 band
    only) gives RGB(A): see ``_render_colormap``.
    """
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise ValueError(f"render takes 1 or 3 bands shaped (bands, h, w), got {data.shape}")
    if colormap is not None:
        return _render_colormap(data, mask, rescale, nodata, alpha, colormap)
    bands, height, width = data.shape
    with_alpha = mask is not None and alpha
    out = np.empty((height, width, bands + int(with_alpha)), dtype=np.uint8)
    used: Range | None = None
    if data.dtype == np.uint8 and rescale is None:
        for b in range(bands):
            out[:, :, b] = data[b]
    else:
        ranges = _ranges(data, mask, rescale, nodata)
        used = ranges[0] if len(set(ranges)) == 1 else None
        for r0 in range(0, height, RENDER_ROWS):
            for b, (lo, hi) in enumerate(ranges):
                out[r0 : r0 + RENDER_ROWS, :, b] = _index8(data[b, r0 : r0 + RENDER_ROWS], lo, hi)
    if mask is not None:
        if with_alpha:
            out[:, :, bands] = mask
        else:
            out[mask == 0] = 0
    return Rendered(out, used)


def _index8(values: npt.NDArray[Any], lo: float, hi: float) -> npt.NDArray[np.uint8]:
    """Values mapped from (lo, hi) onto 0..255 as TiTiler's rescale maps them, so renderings
    (grey, RGB and colormapped) match its pixels: in float64, stored back into the band's own
    float type (float16/32 round there), then truncated."""
    with np.errstate(over="ignore", invalid="ignore"):  # values near their type's limits
        x = np.clip(values, lo, hi, dtype=np.float64)
        x -= lo
        x /= np.float64(hi - lo or 1.0)
        x *= 255.0
        if values.dtype.kind == "f" and values.dtype.itemsize < 8:
            x = x.astype(values.dtype).astype(np.float64)
    np.nan_to_num(x, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(x, 0.0, 255.0, out=x)
    index: npt.NDArray[np.uint8] = x.astype(np.uint8)
    return index


def _render_colormap(
    data: npt.NDArray[Any],
    mask: npt.NDArray[np.uint8] | None,
    rescale: Range | Sequence[Range] | None,
    nodata: float | int | None,
    alpha: bool,
    colormap: Colormap,
) -> Rendered:
    """One band through ``colormap``: RGBA with ``alpha`` (the colour's alpha where the mask is
    valid, 0 where not), else RGB with invalid pixels black. The colormap colours the values
    themselves, or their 0..255 rendering when ``rescale`` is given or the colormap is a
    ``scaled`` one (named colormaps) on non-uint8 data; invalid pixels then take row 0."""
    if data.shape[0] != 1:
        raise ValueError(f"a colormap colours one band, got {data.shape[0]}")
    height, width = data.shape[1:]
    out = np.empty((height, width, 4 if alpha else 3), dtype=np.uint8)
    stretch = rescale is not None or (colormap.scaled and data.dtype != np.uint8)
    lo, hi = _ranges(data, mask, rescale, nodata)[0] if stretch else (0.0, 255.0)
    for r0 in range(0, height, RENDER_ROWS):
        values = data[0, r0 : r0 + RENDER_ROWS]
        valid = None if mask is None else mask[r0 : r0 + RENDER_ROWS] != 0
        if stretch:
            values = _index8(values, lo, hi)
            if valid is not None:
                values[~valid] = 0
        rgba = colormap.apply(values)
        if valid is not None and alpha:
            rgba[~valid, 3] = 0
        elif valid is not None:
            rgba[~valid] = 0
        out[r0 : r0 + RENDER_ROWS] = rgba if alpha else rgba[:, :, :3]
    return Rendered(out, (lo, hi) if stretch else None)


#: The longest side each rendered format holds (JPEG's 16-bit sizes, WebP's 14-bit ones).
MAX_SIDE: dict[str, int] = {"jpeg": 65535, "webp": 16383}


def check_side(fmt: str, width: int, height: int) -> None:
    """``LimitExceededError`` for an image ``fmt`` cannot hold (before anything is read)."""
    limit = MAX_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise LimitExceededError(f"a {fmt.upper()} image side of", max(width, height), limit)


def _encode_image(fmt: str, pixels: npt.NDArray[np.uint8], quality: int, png_level: int) -> bytes:
    check_side(fmt, pixels.shape[1], pixels.shape[0])
    if fmt == "png":
        if pixels.shape[2] == 1:  # the PNG encoder takes grey as (h, w)
            pixels = np.ascontiguousarray(pixels[:, :, 0])
        return bytes(imagecodecs.png_encode(pixels, level=png_level, filter=PNG_FILTER))
    if fmt == "jpeg":
        if pixels.shape[2] in (2, 4):  # JPEG has no alpha
            pixels = np.ascontiguousarray(pixels[:, :, :-1])
        if pixels.shape[2] == 1:
            pixels = np.ascontiguousarray(pixels[:, :, 0])
        return bytes(imagecodecs.jpeg8_encode(pixels, level=quality))
    if fmt == "webp":
        channels = pixels.shape[2]
        if channels in (1, 2):  # WebP stores RGB(A): repeat the grey channel
            grey = np.repeat(pixels[:, :, :1], 3, axis=2)
            pixels = np.concatenate([grey, pixels[:, :, 1:]], axis=2) if channels == 2 else grey
        return bytes(
            imagecodecs.webp_encode(np.ascontiguousarray(pixels), level=quality, lossless=False)
        )
    raise ValueError(f"not an image format: {fmt!r}")


def encode(
    fmt: str,
    data: npt.NDArray[Any],
    *,
    mask: npt.NDArray[np.uint8] | None = None,
    geo: GeoRef | None = None,
    rescale: Range | Sequence[Range] | None = None,
    quality: int = 85,
    png_level: int = DEFAULT_PNG_LEVEL,
    alpha: bool = True,
    colormap: Colormap | None = None,
) -> tuple[bytes, tuple[float, float] | None]:
    """Encode ``data`` (bands, h, w) as ``fmt``; returns the bytes and the rescale range used
    (None for data formats and uint8 shown unscaled). Renderings take 1 or 3 bands (1 with a
    ``colormap``); ``quality`` (1..100) is JPEG's and WebP's, ``png_level`` (1..9) PNG's."""
    if fmt == "npy":
        return encode_npy(data), None
    if fmt == "tif":
        return encode_geotiff(data, geo), None
    if fmt not in RENDERED:
        raise ValueError(f"unknown output format {fmt!r}; one of {', '.join(FORMATS)}")
    nodata = geo.nodata if geo is not None else None
    with_alpha = alpha and fmt in ALPHA_FORMATS
    rendered = render(
        data, mask=mask, rescale=rescale, nodata=nodata, alpha=with_alpha, colormap=colormap
    )
    return _encode_image(fmt, rendered.pixels, quality, png_level), rendered.rescale


async def encode_async(
    fmt: str,
    data: npt.NDArray[Any],
    *,
    executor: Executor | None = None,
    **kwargs: Any,
) -> tuple[bytes, tuple[float, float] | None]:
    """``encode`` on ``executor`` (or the default one), off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, lambda: encode(fmt, data, **kwargs))
