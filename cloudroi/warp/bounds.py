"""A box transformed between CRSs as GDAL's ``OGRCoordinateTransformation::TransformBounds``
does it for a projected target (GDALSuggestedWarpOutput2 unites its box with this).

The box's edges are densified (``densify`` points between corners) and transformed, then, as
GDAL does for a projected target, widened by:

* the pole (at the projection's central meridian; at 85.0511287798066 degrees for a Mercator
  centred on 0, where Web Mercator's square ends) when it lies inside the source box;
* the points 180 degrees from the central meridian on the latitude of origin (when the central
  meridian is not 0) and on that pole's latitude (when the pole is inside).

A geographic target goes through PROJ's own bounds transform (``proj_trans_bounds``, the same
antimeridian and pole handling).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .transform import crs_of, is_geographic, transformer

__all__ = ["transform_bounds"]

Bounds = tuple[float, float, float, float]
_MAX_LAT_MERCATOR = 85.0511287798066
_EPS = 1e-8


@lru_cache(maxsize=64)
def _projection(crs: str) -> tuple[str, float, float, str]:
    """Method name, central meridian, latitude of origin and base geographic CRS (as WKT)."""
    c = crs_of(crs)
    conv = c.to_json_dict().get("conversion", {})
    params = {p["name"]: float(p.get("value", 0.0)) for p in conv.get("parameters", [])}
    lon0 = next((v for k, v in params.items() if k.startswith("Longitude of")), 0.0)
    lat0 = next(
        (v for k, v in params.items() if k.startswith("Latitude of") and "origin" in k),
        params.get("Latitude of standard parallel", 0.0),
    )
    base = c.geodetic_crs
    return str(conv.get("method", {}).get("name", "")), lon0, lat0, base.to_wkt() if base else ""


def _densified(b: Bounds, densify: int) -> tuple[np.ndarray, np.ndarray]:
    xmin, ymin, xmax, ymax = b
    side = densify + 1
    dx, dy = (xmax - xmin) / side, (ymax - ymin) / side
    i = np.arange(side)
    xs = np.concatenate([np.full(side, xmin), xmin + i * dx, np.full(side, xmax), xmax - i * dx])
    ys = np.concatenate([ymax - i * dy, np.full(side, ymin), ymin + i * dy, np.full(side, ymax)])
    return xs, ys


class _Widen:
    """Adds geographic points of the target's base CRS that fall inside the source box."""

    def __init__(self, src: str, dst: str, b: Bounds, out: list[float]) -> None:
        self.src, self.dst, self.b, self.out = src, dst, b, out
        self.base = transformer(_projection(dst)[3], src)

    def add(self, lon: float, lat: float) -> bool:
        x, y = self.base.transform(lon, lat, errcheck=False)
        xmin, ymin, xmax, ymax = self.b
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        if not (xmin <= x <= xmax and ymin <= y <= ymax):
            return False
        tx, ty = transformer(self.src, self.dst).transform(x, y, errcheck=False)
        if not (math.isfinite(tx) and math.isfinite(ty)):
            return False
        o = self.out
        o[:] = [min(o[0], tx), min(o[1], ty), max(o[2], tx), max(o[3], ty)]
        return True

    def around(self, lon0: float, lat: float) -> None:
        for sign in (-1, 1):
            self.add(math.fmod(lon0 + sign * (180 - _EPS) + 180, 360) - 180, lat)


def transform_bounds(src: str, dst: str, b: Bounds, densify: int = 2) -> Bounds | None:
    """``b`` = ``(xmin, ymin, xmax, ymax)`` in ``src`` as a box in ``dst``; None if it does
    not transform."""
    if is_geographic(dst):
        r = transformer(src, dst).transform_bounds(*b, densify_pts=densify, errcheck=False)
        return tuple(r) if all(math.isfinite(v) for v in r) else None  # type: ignore[return-value]
    xs, ys = _densified(b, densify)
    tx, ty = transformer(src, dst).transform(xs, ys, errcheck=False)
    tx, ty = np.asarray(tx, np.float64), np.asarray(ty, np.float64)
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        return None
    out = [float(tx[ok].min()), float(ty[ok].min()), float(tx[ok].max()), float(ty[ok].max())]
    method, lon0, lat0, base = _projection(dst)
    if not base:
        return out[0], out[1], out[2], out[3]
    widen = _Widen(src, dst, b, out)
    mercator = method in ("Popular Visualisation Pseudo Mercator", "Mercator (variant A)")
    pole_lat = _MAX_LAT_MERCATOR if mercator and lon0 == 0 else 90.0
    signed_pole, has_pole = 0.0, False
    for sign in (-1, 1):
        if widen.add(lon0, sign * (pole_lat - _EPS)):
            signed_pole, has_pole = sign * pole_lat, True
    if lon0 != 0:
        widen.around(lon0, lat0)
    if has_pole and lat0 != signed_pole:
        widen.around(lon0, signed_pole)
    return out[0], out[1], out[2], out[3]
