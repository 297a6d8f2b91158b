"""GeoTIFF keys to a CRS and a GDAL-order geotransform; GDAL's structural metadata block.

Facts (GeoTIFF 1.1, OGC 19-008r4; GDAL's GTiff driver): ModelPixelScale + ModelTiepoint or
ModelTransformation give the affine transform; the GeoKey directory the CRS (``geokeys``: an EPSG
code, or a user-defined system); GTRasterTypeGeoKey (1025) = 2 (PixelIsPoint) makes GDAL shift
the transform by half a pixel so that it still describes pixel corners.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..crs import CRS
from .geokeys import crs_from_geokeys, read_directory

__all__ = ["GeoInfo", "nodata_value", "parse_geokeys", "parse_ghost", "parse_nodata"]

GT_RASTER_TYPE = 1025
PIXEL_IS_POINT = 2

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class GeoInfo:
    crs: CRS | None = None
    transform: Transform | None = None
    pixel_is_point: bool = False

    @property
    def epsg(self) -> int | None:
        return None if self.crs is None else self.crs.epsg


def parse_geokeys(
    directory: Sequence[int] | None,
    pixel_scale: Sequence[float] | None,
    tiepoint: Sequence[float] | None,
    transformation: Sequence[float] | None,
    doubles: Sequence[float] | None = None,
    ascii_params: bytes | None = None,
) -> GeoInfo:
    keys = read_directory(directory, doubles, ascii_params)
    point = keys.get(GT_RASTER_TYPE) == PIXEL_IS_POINT

    gt: Transform | None = None
    if transformation is not None and len(transformation) >= 16:
        m = transformation
        gt = (float(m[3]), float(m[0]), float(m[1]), float(m[7]), float(m[4]), float(m[5]))
    elif (
        pixel_scale is not None
        and len(pixel_scale) >= 2
        and tiepoint is not None
        and len(tiepoint) >= 6
    ):
        sx, sy = float(pixel_scale[0]), float(pixel_scale[1])
        i, j, x, y = (float(v) for v in (tiepoint[0], tiepoint[1], tiepoint[3], tiepoint[4]))
        gt = (x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy)
    if gt is not None and not all(math.isfinite(v) for v in gt):
        gt = None  # NaN or infinite numbers describe no grid: the image is not georeferenced
    if gt is not None and point:
        # GDAL reports pixel-corner georeferencing; a PixelIsPoint tiepoint names a pixel centre.
        a, b, c, d, e, f = gt
        gt = (a - 0.5 * b - 0.5 * c, b, c, d - 0.5 * e - 0.5 * f, e, f)
    return GeoInfo(crs=crs_from_geokeys(keys), transform=gt, pixel_is_point=point)


_GHOST_HEAD = re.compile(rb"GDAL_STRUCTURAL_METADATA_SIZE=(\d{1,8}) bytes\n")


def parse_ghost(data: bytes) -> tuple[dict[str, str], int]:
    """GDAL's structural metadata block at the start of ``data`` -> (keys, bytes it spans).

    ``data`` starts right after the TIFF header. Returns ({}, 0) when there is none.
    """
    m = _GHOST_HEAD.match(data)
    if m is None:
        return {}, 0
    size = int(m.group(1))
    body = data[m.end() : m.end() + size]
    items: dict[str, str] = {}
    for line in body.decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            items[key.strip()] = value.strip()
    return items, m.end() + size


def parse_nodata(text: str | None) -> float | None:
    """GDAL_NODATA is ASCII ("-9999", "nan", "1e+20"); None when absent or unreadable."""
    if text is None:
        return None
    text = text.strip().rstrip("\x00").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value


_FLOAT_PREFIX = re.compile(
    r"\s*[+-]?(?:nan|inf(?:inity)?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)", re.IGNORECASE
)
_INT_PREFIX = re.compile(r"\s*[+-]?\d+")


def nodata_value(text: str | None, dtype: np.dtype[Any]) -> float | int | None:
    """GDAL_NODATA as GDAL applies it to a band of ``dtype``; None when GDAL would mask nothing.

    GDAL reads the text with ``atof`` (its leading number), except for 64-bit integer bands,
    where it takes the leading integer (so "-9.2e+18" means -9). Integer bands truncate a
    fractional value toward zero (0.5 masks 0) and ignore values outside their range; Float32
    bands (and half floats, which GDAL reads as Float32) round it to single precision.
    """
    if text is None:
        return None
    text = text.rstrip("\x00")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if dtype.itemsize == 8:
            m = _INT_PREFIX.match(text)
            value = int(m.group()) if m else None
        else:
            m = _FLOAT_PREFIX.match(text)
            number = float(m.group()) if m else math.nan
            value = None if not math.isfinite(number) else math.trunc(number)
            if m and math.isfinite(number) and not info.min <= number <= info.max:
                value = None
        if value is None or not int(info.min) <= value <= int(info.max):
            return None
        return value
    m = _FLOAT_PREFIX.match(text)
    if m is None:
        return None
    number = float(m.group())
    return float(np.float32(number)) if dtype.itemsize <= 4 else number


def nodata_for_dtype(value: float | None, kind: str, lo: float, hi: float) -> float | int | None:
    """The nodata value as the image's dtype sees it, or None when it cannot be represented."""
    if value is None:
        return None
    if kind == "f":
        return value
    if math.isnan(value) or math.isinf(value) or value != math.floor(value):
        return None
    if not lo <= value <= hi:
        return None
    return int(value)
