"""A pyproj CRS as GeoTIFF keys, so that GDAL reads back an equivalent CRS (needs pyproj).

A projected CRS whose method is one of ``tiff.projections.METHODS``, or a 2D geographic CRS, on a
geodetic datum (possibly bound to WGS 84 by a Helmert transformation) becomes user-defined keys as
GDAL writes them: ProjCoordTransGeoKey and its parameters in the CRS's units, the datum, ellipsoid
and angular unit as EPSG codes where they have one, else as values named in GeogCitationGeoKey,
GeogTOWGS84GeoKey for the Helmert parameters. Anything else becomes GDAL's "ESRI PE String"
citation (a user-defined model type and the WKT in PCSCitationGeoKey), in the first of ESRI WKT1,
GDAL WKT1 and WKT2 that pyproj reads back as an equivalent CRS and that fits GDAL's 2400 bytes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .crs import GeoKeyItems, KeyValue
from .tiff import geokeys as gk
from .tiff.projections import Method, method_named

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyproj

__all__ = ["geokeys_for"]

Json = dict[str, Any]

_DEGREE = math.pi / 180
_PE_LIMIT = 2399  # GDAL reads at most this many characters of PCSCitationGeoKey
_HELMERT_METHODS = {9603: 3, 9606: 7, 9607: 7}


class _Unmappable(Exception):
    """The CRS has no GeoKey form other than the ESRI PE string."""


def geokeys_for(crs: pyproj.CRS) -> GeoKeyItems:
    try:
        keys = _mapped(crs.to_json_dict())
    except (_Unmappable, KeyError, TypeError, ValueError):
        keys = _esri(crs)
    return tuple(sorted(keys.items()))


# -- units --------------------------------------------------------------------------------------


def _factor(unit: Any, kind: str) -> float:
    """Metres, radians or unity per ``unit`` (a PROJJSON unit: a name or an object)."""
    if isinstance(unit, dict):
        return float(unit["conversion_factor"])
    named = {"metre": 1.0, "degree": _DEGREE, "radian": 1.0, "unity": 1.0}
    if unit in named:
        return named[unit]
    raise _Unmappable(f"unknown {kind} unit {unit!r}")


def _unit_code(unit: Any, known: dict[int, tuple[str, float]]) -> int | None:
    factor = _factor(unit, "")
    if isinstance(unit, dict) and unit.get("id", {}).get("authority") == "EPSG":
        return int(unit["id"]["code"])
    for code, (_name, size) in known.items():
        if math.isclose(size, factor, rel_tol=1e-12):
            return code
    return None


def _linear_keys(unit: Any) -> dict[int, KeyValue]:
    code = _unit_code(unit, {k: v for k, v in gk.UNITS.items() if k < 9100})
    if code is not None:
        return {gk.PROJ_LINEAR_UNITS: code}
    return {gk.PROJ_LINEAR_UNITS: gk.USER_DEFINED, gk.PROJ_LINEAR_UNIT_SIZE: _factor(unit, "")}


def _angular_keys(unit: Any) -> dict[int, KeyValue]:
    if math.isclose(_factor(unit, "angular"), _DEGREE, rel_tol=1e-12):
        return {gk.GEOG_ANGULAR_UNITS: 9102}
    code = _unit_code(unit, {k: v for k, v in gk.UNITS.items() if k > 9100})
    if code is not None:
        return {gk.GEOG_ANGULAR_UNITS: code}
    return {
        gk.GEOG_ANGULAR_UNITS: gk.USER_DEFINED,
        gk.GEOG_ANGULAR_UNIT_SIZE: _factor(unit, "angular"),
    }


def _value(item: Any, kind: str) -> float:
    """A PROJJSON value (a number, or {"value", "unit"}) in SI units."""
    if isinstance(item, dict):
        return float(item["value"]) * _factor(item.get("unit", "degree"), kind)
    return float(item) * (_DEGREE if kind == "angular" else 1.0)


def _epsg_id(obj: Json) -> int | None:
    ident = obj.get("id")
    if isinstance(ident, dict) and ident.get("authority") == "EPSG":
        return int(ident["code"])
    return None


# -- geographic part --------------------------------------------------------------------------


def _geographic_keys(g: Json, towgs84: tuple[float, ...]) -> dict[int, KeyValue]:
    axes = g["coordinate_system"]["axis"]
    if len(axes) != 2:
        raise _Unmappable("not a 2D geographic CRS")
    unit = axes[0].get("unit", "degree")
    code = _epsg_id(g)
    if code is not None and not towgs84:
        return {gk.GEOGRAPHIC_TYPE: code, gk.GEOG_CITATION: g["name"], **_angular_keys(unit)}
    datum = g.get("datum") or g.get("datum_ensemble")
    if datum is None:
        raise _Unmappable("no datum")
    ellipsoid, pm = datum["ellipsoid"], datum.get("prime_meridian", {"name": "Greenwich"})
    angular = _factor(unit, "angular")
    keys: dict[int, KeyValue] = {gk.GEOGRAPHIC_TYPE: gk.USER_DEFINED, **_angular_keys(unit)}
    citation = f"GCS Name = {g['name']}|"
    datum_code = _epsg_id(datum)
    keys[gk.GEOG_DATUM] = datum_code or gk.USER_DEFINED
    if datum_code is None:
        citation += f"Datum = {datum['name']}|"
    ellipsoid_code = _epsg_id(ellipsoid)
    keys[gk.GEOG_ELLIPSOID] = ellipsoid_code or gk.USER_DEFINED
    if ellipsoid_code is None:
        citation += f"Ellipsoid = {ellipsoid['name']}|"
    keys.update(_axes_keys(ellipsoid))
    citation += f"Primem = {pm['name']}|"
    keys[gk.GEOG_PM_LONG] = _value(pm.get("longitude", 0.0), "angular") / angular
    if keys[gk.GEOG_ANGULAR_UNITS] != 9102:
        citation += f"AUnits = {axes[0]['unit'].get('name', 'unknown')}|"
    keys[gk.GEOG_CITATION] = citation
    if towgs84:
        keys[gk.GEOG_TOWGS84] = towgs84
    return keys


def _axes_keys(ellipsoid: Json) -> dict[int, KeyValue]:
    if "radius" in ellipsoid:
        r = _value(ellipsoid["radius"], "length")
        return {gk.GEOG_SEMI_MAJOR: r, gk.GEOG_SEMI_MINOR: r}
    a = _value(ellipsoid["semi_major_axis"], "length")
    if "inverse_flattening" in ellipsoid:
        return {
            gk.GEOG_SEMI_MAJOR: a,
            gk.GEOG_INV_FLATTENING: float(ellipsoid["inverse_flattening"]),
        }
    return {
        gk.GEOG_SEMI_MAJOR: a,
        gk.GEOG_SEMI_MINOR: _value(ellipsoid["semi_minor_axis"], "length"),
    }


def _towgs84(bound: Json) -> tuple[float, ...]:
    target = bound["target_crs"]
    t = bound["transformation"]
    n = _HELMERT_METHODS.get(_epsg_id(t["method"]) or 0)
    if _epsg_id(target) != 4326 or n is None:
        raise _Unmappable("not a Helmert transformation to WGS 84")
    by_code = {_epsg_id(p): p for p in t["parameters"]}
    scales = (1.0,) * 3 + (4.84813681109536e-06,) * 3 + (1e-06,)
    values = []
    for i, code in enumerate(range(8605, 8605 + n)):
        p = by_code[code]
        values.append(float(p["value"]) * _factor(p.get("unit", "metre"), "") / scales[i])
    if _epsg_id(t["method"]) == 9607:  # coordinate frame rotation: the other sign convention
        values[3:6] = [-v for v in values[3:6]]
    return tuple(values)


# -- projected part ---------------------------------------------------------------------------


def _method(conversion: Json) -> Method:
    m = conversion["method"]
    method = method_named(_epsg_id(m), str(m.get("name", "")))
    if method is None:
        raise _Unmappable(f"projection method {m.get('name')!r}")
    return method


def _projection_keys(p: Json) -> dict[int, KeyValue]:
    conversion = p["conversion"]
    method = _method(conversion)
    axes = p["coordinate_system"]["axis"]
    linear_unit = axes[0].get("unit", "metre")
    linear = _factor(linear_unit, "linear")
    base_axes = p["base_crs"]["coordinate_system"]["axis"]
    angular = _factor(base_axes[0].get("unit", "degree"), "angular")
    given = {_epsg_id(q) or q.get("name"): q for q in conversion.get("parameters", [])}
    keys: dict[int, KeyValue] = {gk.PROJ_COORD_TRANS: method.ct, **_linear_keys(linear_unit)}
    for param in method.params:
        q = given.pop(param.code, None) or given.pop(param.name, None)
        if q is None:
            keys[param.write] = param.default
            continue
        unit = q.get("unit", "unity")
        si = float(q["value"]) * _factor(unit, param.kind)
        size = {"angle": angular, "azimuth": _DEGREE, "length": linear}.get(param.kind, 1.0)
        keys[param.write] = si / size
    if given:
        raise _Unmappable(f"parameters {sorted(map(str, given))} of {method.name}")
    keys.update(method.constants)
    return keys


def _mapped(doc: Json) -> dict[int, KeyValue]:
    towgs84: tuple[float, ...] = ()
    if doc.get("type") == "BoundCRS":
        towgs84 = _towgs84(doc)
        doc = doc["source_crs"]
    kind = doc.get("type")
    if kind == "GeographicCRS":
        return {gk.GT_MODEL_TYPE: gk.MODEL_GEOGRAPHIC, **_geographic_keys(doc, towgs84)}
    if kind != "ProjectedCRS":
        raise _Unmappable(f"a {kind}")
    return {
        gk.GT_MODEL_TYPE: gk.MODEL_PROJECTED,
        gk.GT_CITATION: doc["name"],
        gk.PROJECTED_CS_TYPE: gk.USER_DEFINED,
        gk.PROJECTION: gk.USER_DEFINED,
        **_geographic_keys(doc["base_crs"], towgs84),
        **_projection_keys(doc),
    }


# -- anything else: GDAL's ESRI PE string -------------------------------------------------------


def _esri(crs: pyproj.CRS) -> dict[int, KeyValue]:
    import pyproj

    candidates: list[str] = []
    for version in ("WKT1_ESRI", "WKT1_GDAL", "WKT2_2019"):
        try:
            text = crs.to_wkt(version)
            if text is not None and pyproj.CRS.from_user_input(text).equals(
                crs, ignore_axis_order=True
            ):
                candidates.append(text)
        except pyproj.exceptions.CRSError:
            continue
    fitting = [t for t in candidates if len(gk.ESRI_PE) + len(t) <= _PE_LIMIT]
    chosen = (fitting or candidates or [crs.to_wkt() or crs.srs])[0]
    return {gk.GT_MODEL_TYPE: gk.USER_DEFINED, gk.PCS_CITATION: gk.ESRI_PE + chosen}
