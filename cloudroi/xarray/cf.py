"""An Image level in xarray's terms, as rioxarray's ``open_rasterio`` presents a GeoTIFF.

- ``band``, ``y``, ``x`` coordinates: band numbers from 1, pixel centres from the level's
  geotransform (north-up grids; a rotated grid gets no 1-D ``x``/``y``);
- a scalar ``spatial_ref`` coordinate holding the CRS (``crs_wkt`` and ``spatial_ref`` as WKT,
  pyproj's CF grid-mapping attributes) and the ``GeoTransform`` (GDAL order, space-separated),
  named by the variable's ``grid_mapping``, so that rioxarray's ``.rio`` accessor reads both;
- attributes ``_FillValue`` (the nodata value), ``scale_factor``/``add_offset`` where the file's
  GDAL_METADATA has them (per-band values that differ go to ``scales``/``offsets``),
  ``long_name`` from band descriptions, ``AREA_OR_POINT``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from ..crs import CRS
from ..image import Image, Transform
from ..region.describe import band_meta
from ..region.geometry import window_transform
from ..types import Window

__all__ = ["GRID_MAPPING", "level_attrs", "level_coords", "level_transform"]

#: The grid-mapping coordinate's name (rioxarray's default).
GRID_MAPPING = "spatial_ref"


def level_transform(img: Image, level: int) -> Transform | None:
    """The geotransform of overview ``level`` (level 0: the file's), or None."""
    gt = img.transform
    if gt is None:
        return None
    w, h = img.levels[level]
    return window_transform(img.levels, gt, level, Window(0, 0, w, h), w, h)


def level_coords(img: Image, level: int) -> dict[str, xr.Variable]:
    """``band``, ``x``, ``y`` and ``spatial_ref`` of ``level``."""
    w, h = img.levels[level]
    gt = level_transform(img, level)
    coords = {"band": xr.Variable(("band",), np.arange(1, img.count + 1))}
    x0, dx, rx, y0, ry, dy = gt if gt is not None else (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if rx == 0 and ry == 0:
        coords["x"] = xr.Variable(("x",), x0 + (np.arange(w) + 0.5) * dx)
        coords["y"] = xr.Variable(("y",), y0 + (np.arange(h) + 0.5) * dy)
    ref = grid_mapping(img.crs, gt)
    if ref is not None:
        coords[GRID_MAPPING] = ref
    return coords


def grid_mapping(crs: CRS | None, gt: Transform | None) -> xr.Variable | None:
    """The scalar grid-mapping variable for ``crs`` and ``gt`` (None without either)."""
    if crs is None and gt is None:
        return None
    attrs: dict[str, Any] = {}
    if crs is not None:
        proj = crs.to_pyproj()
        attrs.update(proj.to_cf())
        wkt = proj.to_wkt()
        attrs["spatial_ref"] = wkt
        attrs["crs_wkt"] = wkt
    if gt is not None:
        attrs["GeoTransform"] = " ".join(str(float(v)) for v in gt)
    return xr.Variable((), 0, attrs)


def level_attrs(img: Image) -> dict[str, Any]:
    """The band variable's attributes (CF-encoded: xarray's decoding applies them)."""
    attrs: dict[str, Any] = {
        "AREA_OR_POINT": "Point" if img.structure.geo.pixel_is_point else "Area"
    }
    fill = _fill_value(img.nodata, img.dtype)
    if fill is not None:
        attrs["_FillValue"] = fill
    meta = band_meta(img, range(1, img.count + 1))
    for key, many, default in (("scale", "scales", 1.0), ("offset", "offsets", 0.0)):
        values = [float(m[key]) for m in meta]
        if len(set(values)) > 1:
            attrs[many] = values
        elif values[0] != default:
            attrs["scale_factor" if key == "scale" else "add_offset"] = values[0]
    names = [m["description"] for m in meta]
    if any(names):
        attrs["long_name"] = names[0] if len(set(names)) == 1 else [n or "" for n in names]
    if img.crs is not None or img.transform is not None:
        attrs["grid_mapping"] = GRID_MAPPING
    return attrs


def _fill_value(nodata: float | int | None, dtype: np.dtype[Any]) -> Any:
    """``nodata`` as a value of ``dtype``, or None when the type cannot hold it (GDAL then
    never matches it either)."""
    if nodata is None:
        return None
    if dtype.kind == "f":
        return dtype.type(nodata)
    if isinstance(nodata, float) and (not math.isfinite(nodata) or not nodata.is_integer()):
        return None
    info = np.iinfo(dtype)
    return dtype.type(int(nodata)) if info.min <= nodata <= info.max else None
