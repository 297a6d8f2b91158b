"""The pyproj side of ``cloudroi.CRS``: imported only when a CRS is turned into WKT, PROJJSON or a
pyproj CRS, or made from one. Needs pyproj (the ``geo`` extra).

- ``to_pyproj``: an EPSG code through pyproj's database; a user-defined GeoTIFF definition
  (``tiff.geokeys.definition``) through the PROJJSON it amounts to, built as GDAL's GTiff driver
  reads the same keys (names from the citations, EPSG datums, ellipsoids, prime meridians and
  units from the database, GDAL's axes for polar stereographic and south-oriented projections,
  GeogTOWGS84GeoKey as a bound CRS);
- ``from_user_input``: a pyproj CRS (or anything pyproj reads), as its EPSG code where it has one,
  else as its WKT together with the GeoTIFF keys that express it (``geokeys.py`` documents the
  mapping; ``geokeys_out`` in this module writes it).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from .crs import CRS, PYPROJ_MISSING, GeoKeyItems
from .errors import CRSError
from .tiff import geokeys as gk
from .tiff.projections import (
    POLAR_STEREOGRAPHIC_A,
    POLAR_STEREOGRAPHIC_B,
    Method,
    Param,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyproj

__all__ = ["from_user_input", "to_projjson", "to_pyproj", "to_wkt"]

Json = dict[str, Any]


def _require() -> None:
    try:
        import pyproj  # noqa: F401
    except ImportError as exc:
        raise CRSError(PYPROJ_MISSING) from exc


# --------------------------------------------------------------------------------------------
# CRS -> pyproj
# --------------------------------------------------------------------------------------------


def to_pyproj(crs: CRS) -> pyproj.CRS:
    _require()
    import pyproj

    try:
        if crs.epsg is not None:
            return pyproj.CRS.from_epsg(crs.epsg)
        if crs.wkt is not None:
            return pyproj.CRS.from_user_input(crs.wkt)
        return pyproj.CRS.from_json(_geokeys_projjson(crs.geokeys, crs.note))
    except (pyproj.exceptions.ProjError, ValueError, TypeError, KeyError, OverflowError) as exc:
        # a code pyproj's database does not have, or keys whose values make no CRS
        raise CRSError(f"pyproj cannot build {crs!r}: {exc}") from exc


def to_wkt(crs: CRS, version: str, pretty: bool) -> str:
    text = to_pyproj(crs).to_wkt(version, pretty=pretty)
    if text is None:
        raise CRSError(f"{crs!r} has no {version} form")
    return text


def to_projjson(crs: CRS, pretty: bool) -> str:
    return to_pyproj(crs).to_json(pretty=pretty)


@functools.lru_cache(maxsize=256)
def _geokeys_projjson(items: GeoKeyItems, note: str | None) -> str:
    if note is not None:
        raise CRSError(f"cannot build the CRS of these GeoTIFF keys: {note}")
    return json.dumps(_definition_json(gk.definition(dict(items))))


def _definition_json(d: gk.Definition) -> Json:
    base = _geographic_json(d.geodetic)
    out = base if d.projected is None else _projected_json(d.projected, base, d.geodetic)
    if d.geodetic.towgs84:
        out = _bound(out, d.geodetic.towgs84)
    return out


def _strip(doc: Json) -> Json:
    doc.pop("$schema", None)
    return doc


@functools.lru_cache(maxsize=64)
def _units() -> dict[int, Any]:
    from pyproj.database import get_units_map

    out: dict[int, Any] = {}
    for unit in get_units_map(auth_name="EPSG").values():
        if unit.code.isdigit():
            out[int(unit.code)] = unit
    return out


def _unit_json(unit: gk.UnitDef, kind: str) -> Json:
    name, factor = unit.name, unit.factor
    if unit.code is not None and (factor is None or name == "unknown"):
        known = _units().get(unit.code)
        if known is None:
            raise CRSError(f"unknown EPSG unit code {unit.code}")
        name, factor = known.name, known.conv_factor
    doc: Json = {"type": kind, "name": name, "conversion_factor": factor}
    if unit.code is not None:
        doc["id"] = {"authority": "EPSG", "code": unit.code}
    return doc


def _ellipsoid_json(g: gk.GeodeticDef, fallback: Json | None) -> Json | None:
    """The ellipsoid the keys give, or None to keep the datum's (``fallback``)."""
    from pyproj.crs import Ellipsoid

    a, b, rf, name = g.semi_major, g.semi_minor, g.inv_flattening, g.ellipsoid_name
    if g.ellipsoid_code is not None:
        e = Ellipsoid.from_epsg(g.ellipsoid_code)
        name = name or e.name
        if a is None:
            a = e.semi_major_metre
        if rf is None and b is None:
            rf = e.inverse_flattening
    if a is None:
        if fallback is not None:
            return None
        return {"name": "unretrievable - using WGS84", "semi_major_axis": 6378137.0}
    doc: Json = {"name": name or "unknown"}
    if (rf is not None and rf == 0) or (rf is None and (b is None or b == a)):
        doc["radius"] = a
    elif rf is not None:
        doc.update(semi_major_axis=a, inverse_flattening=rf)
    else:
        doc.update(semi_major_axis=a, semi_minor_axis=b)
    return doc


def _datum_json(g: gk.GeodeticDef) -> Json:
    from pyproj.crs import Datum

    doc: Json = {"type": "GeodeticReferenceFrame", "name": g.datum_name or "unknown"}
    fallback = None
    if g.datum_code is not None:
        epsg = _strip(Datum.from_epsg(g.datum_code).to_json_dict())
        doc["name"] = g.datum_name or epsg["name"].removesuffix(" ensemble")
        fallback = epsg.get("ellipsoid")
        doc["id"] = {"authority": "EPSG", "code": g.datum_code}
    ellipsoid = _ellipsoid_json(g, fallback)
    doc["ellipsoid"] = ellipsoid if ellipsoid is not None else fallback
    if ellipsoid is not None and ellipsoid["name"].startswith("unretrievable"):
        doc["ellipsoid"]["inverse_flattening"] = 298.257223563
    doc["prime_meridian"] = _prime_meridian_json(g)
    return doc


def _prime_meridian_json(g: gk.GeodeticDef) -> Json:
    from pyproj.crs import PrimeMeridian

    if g.pm_code is not None:
        pm = _strip(PrimeMeridian.from_epsg(g.pm_code).to_json_dict())
        if g.pm_name:
            pm["name"] = g.pm_name
        return pm
    longitude = g.pm_longitude or 0.0
    name = g.pm_name or ("Greenwich" if longitude == 0 else "unknown")
    return {
        "name": name,
        "longitude": {"value": longitude, "unit": _unit_json(g.angular, "AngularUnit")},
    }


def _geographic_json(g: gk.GeodeticDef) -> Json:
    import pyproj

    if g.code is not None:
        return _strip(pyproj.CRS.from_epsg(g.code).to_json_dict())
    datum = _datum_json(g)
    unit = _unit_json(g.angular, "AngularUnit")
    axes = [
        {"name": "Latitude", "abbreviation": "lat", "direction": "north", "unit": unit},
        {"name": "Longitude", "abbreviation": "lon", "direction": "east", "unit": unit},
    ]
    return {
        "type": "GeographicCRS",
        "name": g.name or datum["name"],
        "datum": datum,
        "coordinate_system": {"subtype": "ellipsoidal", "axis": axes},
    }


def _directions(p: gk.ProjectedDef) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    east = ("Easting", "E", "east")
    north = ("Northing", "N", "north")
    if p.method in (POLAR_STEREOGRAPHIC_A, POLAR_STEREOGRAPHIC_B) and p.params[0][1] != 0:
        # GDAL's axes: towards the pole's opposite meridians, as EPSG's polar CRSs have them
        way = "south" if p.params[0][1] > 0 else "north"
        return ("Easting", "E", way), ("Northing", "N", way)
    if p.method is not None and p.method.code == 9808:
        return ("Westing", "W", "west"), ("Southing", "S", "south")
    return east, north


def _param_json(param: Param, value: float, angular: Json, linear: Json) -> Json:
    unit: Any = {"angle": angular, "azimuth": "degree", "length": linear}.get(param.kind, "unity")
    return {
        "name": param.name,
        "value": value,
        "unit": unit,
        "id": {"authority": "EPSG", "code": param.code},
    }


def _conversion_json(p: gk.ProjectedDef, angular: Json, linear: Json) -> Json:
    from pyproj.crs import CoordinateOperation

    if p.conversion_code is not None:
        return _strip(CoordinateOperation.from_epsg(p.conversion_code).to_json_dict())
    method: Method | None = p.method
    if method is None:  # pragma: no cover - crs_from_geokeys notes these, _geokeys_projjson stops
        raise CRSError("no projection method")
    doc: Json = {"name": method.name}
    if method.code is not None:
        doc["id"] = {"authority": "EPSG", "code": method.code}
    params = [_param_json(param, value, angular, linear) for param, value in p.params]
    return {"name": "unnamed", "method": doc, "parameters": params}


def _projected_json(p: gk.ProjectedDef, base: Json, g: gk.GeodeticDef) -> Json:
    linear = _unit_json(p.linear, "LinearUnit")
    angular = _unit_json(g.angular, "AngularUnit")
    axes = [
        {"name": name, "abbreviation": abbr, "direction": way, "unit": linear}
        for name, abbr, way in _directions(p)
    ]
    return {
        "type": "ProjectedCRS",
        "name": p.name,
        "base_crs": base,
        "conversion": _conversion_json(p, angular, linear),
        "coordinate_system": {"subtype": "Cartesian", "axis": axes},
    }


_ARC_SECOND: Json = {
    "type": "AngularUnit",
    "name": "arc-second",
    "conversion_factor": 4.84813681109536e-06,
}
_PPM: Json = {"type": "ScaleUnit", "name": "parts per million", "conversion_factor": 1e-06}
_HELMERT = (
    (8605, "X-axis translation", "metre"),
    (8606, "Y-axis translation", "metre"),
    (8607, "Z-axis translation", "metre"),
    (8608, "X-axis rotation", _ARC_SECOND),
    (8609, "Y-axis rotation", _ARC_SECOND),
    (8610, "Z-axis rotation", _ARC_SECOND),
    (8611, "Scale difference", _PPM),
)


def _bound(source: Json, towgs84: tuple[float, ...]) -> Json:
    import pyproj

    if len(towgs84) == 3:
        method = {"name": "Geocentric translations (geog2D domain)", "code": 9603}
    else:
        method = {"name": "Position Vector transformation (geog2D domain)", "code": 9606}
    params = [
        {"name": name, "value": value, "unit": unit, "id": {"authority": "EPSG", "code": code}}
        for (code, name, unit), value in zip(_HELMERT, towgs84, strict=False)
    ]
    return {
        "type": "BoundCRS",
        "source_crs": source,
        "target_crs": _strip(pyproj.CRS.from_epsg(4326).to_json_dict()),
        "transformation": {
            "name": "Transformation from unknown to WGS84",
            "method": {
                "name": method["name"],
                "id": {"authority": "EPSG", "code": method["code"]},
            },
            "parameters": params,
        },
    }


# --------------------------------------------------------------------------------------------
# user input -> CRS
# --------------------------------------------------------------------------------------------


def from_user_input(value: object) -> CRS:
    _require()
    import pyproj

    try:
        crs = pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as exc:
        raise CRSError(f"not a CRS pyproj can read: {exc}") from exc
    ident = crs.to_json_dict().get("id")  # the CRS's own identifier; no database search
    if isinstance(ident, dict) and ident.get("authority") == "EPSG":
        return CRS(int(ident["code"]))
    from ._geokeys_out import geokeys_for

    wkt = crs.to_wkt() or crs.srs
    return CRS(name=crs.name, wkt=wkt, geokeys=geokeys_for(crs))
