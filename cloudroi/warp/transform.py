"""The exact pixel transformer: destination pixel -> destination CRS -> source CRS -> source pixel.

What GDAL's ``GDALGenImgProjTransform`` does for a warp (and what the approximation in
:mod:`cloudroi.warp.approx` samples):

* the destination geotransform, then PROJ from the destination CRS to the source CRS, then the
  inverse source geotransform (:meth:`Grid.to_pixel`); no PROJ at all when both CRSs are the
  same (GDAL then warps through the geotransforms only);
* EPSG:3857 <-> EPSG:4326 through closed formulas instead of PROJ, as GDAL's OGRProjCT does
  (its web-mercator shortcuts). At the antimeridian it matters: x = 20037508.34 is longitude +180
  for GDAL, -180 for PROJ, which moves the source window of tiles that touch 180;
* ``CENTER_LONG``: for a geographic source whose corners go past +/-180, longitudes computed for
  it are wrapped into ``[c - 180, c + 180]`` around its centre ``c`` (formatted ``%g``), as
  GDAL's InsertCenterLong arranges. That is how a 170..190 E file is read from destinations PROJ
  answers in -180..180. A file spanning exactly -180..180 gets no wrap.

pyproj ``CRS`` and ``Transformer`` objects are costly to build (tens of ms for some pairs), so
both are cached: 64 CRSs and 128 ``(source CRS, destination CRS)`` transformers, least recently
used first out. pyproj >= 3.1 makes them safe to share between threads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from .grid import FloatArray, Grid, WarpError

__all__ = [
    "PixelTransform",
    "center_long",
    "crs_of",
    "horizontal",
    "is_geographic",
    "reproject_xy",
    "same_crs",
    "transformer",
]

#: WGS 84 semi-major axis, the sphere radius of GDAL's web-mercator formulas.
_WGS84_A = 6378137.0


@functools.lru_cache(maxsize=64)
def crs_of(crs: str) -> CRS:
    """The pyproj CRS of a CRS string (cached); an unknown one raises :class:`WarpError`."""
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise WarpError(f"unknown CRS {crs!r}: {exc}") from None


#: Axis units accepted, in metres (radians) per unit: a micrometre (microradian) to 10^7.
_UNIT_FACTORS = (1e-6, 1e7)


def horizontal(crs: str) -> str:
    """``crs``, or WarpError unless it is a geographic or projected CRS with sane axis units: a
    vertical, geocentric or engineering CRS has no map plane to put a box or a grid on, and a
    unit of 1e300 degrees puts every point at 0."""
    value = crs_of(crs)
    if value.is_geocentric or not (value.is_projected or value.is_geographic):
        raise WarpError(f"{crs[:40]!r} is a {value.type_name}, not a horizontal CRS")
    for axis in value.axis_info[:2]:  # metres (radians) per unit
        if not _UNIT_FACTORS[0] <= axis.unit_conversion_factor <= _UNIT_FACTORS[1]:
            raise WarpError(f"{crs[:40]!r} has an axis unit of {axis.unit_conversion_factor:g}")
    return crs


@functools.lru_cache(maxsize=128)
def transformer(src: str, dst: str) -> Transformer:
    """The pyproj transformer from ``src`` to ``dst`` in x/y (lon/lat) order, cached."""
    try:
        return Transformer.from_crs(crs_of(src), crs_of(dst), always_xy=True)
    except ProjError as exc:
        raise WarpError(f"no transformation from {src!r} to {dst!r}: {exc}") from None


@functools.lru_cache(maxsize=128)
def same_crs(a: str, b: str) -> bool:
    """Whether two CRS strings name the same CRS (axis order aside): GDAL then skips PROJ."""
    return a == b or crs_of(a).equals(crs_of(b), ignore_axis_order=True)


@functools.lru_cache(maxsize=64)
def is_geographic(crs: str) -> bool:
    """Whether the CRS is geographic (longitude/latitude)."""
    return bool(crs_of(crs).is_geographic)


@functools.lru_cache(maxsize=64)
def _epsg(crs: str) -> int | None:
    code = crs_of(crs).to_epsg()
    return None if code is None else int(code)


def center_long(grid: Grid) -> float | None:
    """The CENTER_LONG GDAL sets for a geographic source whose corners go past +/-180 (and span
    at most 360 degrees), formatted with ``%g`` as GDAL writes it; None otherwise.

    Measured, not read: GDAL's InsertCenterLong also sets one for a file spanning exactly
    -180..180, but wrapping there moves the tiles that end on 180 to full-width source windows,
    which GDAL 3.10's output does not show; so such a file is not wrapped here."""
    if not is_geographic(grid.crs):
        return None
    lo, _, hi, _ = grid.bounds
    if (lo >= -180.0 and hi <= 180.0) or hi - lo > 360:
        return None
    return float(f"{(lo + hi) / 2:g}")


def _finite_or_nan(a: FloatArray) -> FloatArray:
    return np.where(np.isfinite(a), a, np.nan)


def _merc_to_lonlat(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    lon = x * (1.0 / _WGS84_A) * (180.0 / math.pi)
    lat = (math.pi / 2.0 - 2.0 * np.arctan(np.exp(-y * (1.0 / _WGS84_A)))) * (180.0 / math.pi)
    return _finite_or_nan(lon), _finite_or_nan(lat)


def _lonlat_to_merc(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    ok = np.abs(y) < 90.0
    mx = x * (math.pi / 180.0) * _WGS84_A
    lat = np.where(ok, y, 0.0) * (math.pi / 180.0)
    my = _WGS84_A * np.log(np.tan(math.pi / 4.0 + 0.5 * lat))
    return _finite_or_nan(np.where(ok, mx, np.nan)), _finite_or_nan(np.where(ok, my, np.nan))


def reproject_xy(src: str, dst: str, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Coordinates from CRS ``src`` to CRS ``dst`` (lon/lat order for geographic CRSs), NaN
    where the transformation fails; EPSG:3857 <-> EPSG:4326 by GDAL's closed formulas."""
    pair = (_epsg(src), _epsg(dst))
    with np.errstate(all="ignore"):
        if pair == (3857, 4326):
            return _merc_to_lonlat(x, y)
    tx, ty = transformer(src, dst).transform(x, y, errcheck=False)
    return _finite_or_nan(np.asarray(tx, np.float64)), _finite_or_nan(np.asarray(ty, np.float64))


@dataclass(frozen=True)
class PixelTransform:
    """Destination pixel coordinates -> source pixel coordinates, exactly (no approximation):
    GDALGenImgProjTransform in its destination-to-source direction. NaN where PROJ fails."""

    dst: Grid
    src: Grid

    @functools.cached_property
    def _reprojects(self) -> bool:
        return not same_crs(self.dst.crs, self.src.crs)

    @functools.cached_property
    def _wrap(self) -> float | None:
        return center_long(self.src) if self._reprojects else None

    def __call__(self, cols: FloatArray, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        gx, gy = self.dst.to_xy(cols, rows)
        if self._reprojects:
            gx, gy = reproject_xy(self.dst.crs, self.src.crs, gx, gy)
            c = self._wrap
            if c is not None:
                gx = np.where(gx < c - 180.0, gx + 360.0, np.where(gx > c + 180.0, gx - 360.0, gx))
        return self.src.to_pixel(gx, gy)

    def forward(self, cols: FloatArray, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Source pixel -> destination pixel (the transformer's other direction)."""
        gx, gy = self.src.to_xy(cols, rows)
        if self._reprojects:
            gx, gy = reproject_xy(self.src.crs, self.dst.crs, gx, gy)
        return self.dst.to_pixel(gx, gy)
