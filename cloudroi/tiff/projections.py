"""The projection methods cloudroi reads from and writes to GeoTIFF keys, and their parameters.

Each method ties a GeoTIFF coordinate transformation code (ProjCoordTransGeoKey, GeoTIFF 1.1,
OGC 19-008r4, plus GDAL's 9815 for Hotine variant B) to its EPSG method and parameter codes. A
parameter is read from the first of its keys present in the file, in the order libgeotiff
normalises them (natural origin, then false origin, then centre), and written to the one key
GDAL writes for it. Angles are in the file's GeogAngularUnits, except the azimuth, which GDAL
always reads in degrees; lengths are in ProjLinearUnits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["METHODS", "Method", "Param", "method_for_keys", "method_named"]

# GeoKeys of projection parameters (GeoTIFF 1.1, section 7.5.3.3)
STD_PARALLEL1 = 3078
STD_PARALLEL2 = 3079
NAT_ORIGIN_LONG = 3080
NAT_ORIGIN_LAT = 3081
FALSE_EASTING = 3082
FALSE_NORTHING = 3083
FALSE_ORIGIN_LONG = 3084
FALSE_ORIGIN_LAT = 3085
FALSE_ORIGIN_EASTING = 3086
FALSE_ORIGIN_NORTHING = 3087
CENTER_LONG = 3088
CENTER_LAT = 3089
CENTER_EASTING = 3090
CENTER_NORTHING = 3091
SCALE_AT_NAT_ORIGIN = 3092
SCALE_AT_CENTER = 3093
AZIMUTH_ANGLE = 3094
STRAIGHT_VERT_POLE_LONG = 3095
RECTIFIED_GRID_ANGLE = 3096

_LAT = (NAT_ORIGIN_LAT, FALSE_ORIGIN_LAT, CENTER_LAT)
_LONG = (NAT_ORIGIN_LONG, FALSE_ORIGIN_LONG, CENTER_LONG)
_EAST = (FALSE_EASTING, CENTER_EASTING, FALSE_ORIGIN_EASTING)
_NORTH = (FALSE_NORTHING, CENTER_NORTHING, FALSE_ORIGIN_NORTHING)
_SCALE = (SCALE_AT_NAT_ORIGIN, SCALE_AT_CENTER)
_POLE_LONG = (STRAIGHT_VERT_POLE_LONG, *_LONG)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: its EPSG code and name, its kind ("angle", "azimuth", "length", "scale"),
    the keys it is read from (first present wins), the key it is written to, its default."""

    code: int
    name: str
    kind: str
    keys: tuple[int, ...]
    write: int
    default: float = 0.0


@dataclass(frozen=True, slots=True)
class Method:
    """A projection method: its name and EPSG code (None for methods EPSG does not list), the
    GeoTIFF transformation code, its parameters and the constant keys GDAL writes with it."""

    name: str
    code: int | None
    ct: int
    params: tuple[Param, ...]
    constants: tuple[tuple[int, float], ...] = ()


def _lat(write: int, code: int = 8801, name: str = "Latitude of natural origin") -> Param:
    return Param(code, name, "angle", _LAT, write)


def _long(write: int, code: int = 8802, name: str = "Longitude of natural origin") -> Param:
    return Param(code, name, "angle", _LONG, write)


def _scale(write: int, code: int = 8805, name: str = "Scale factor at natural origin") -> Param:
    return Param(code, name, "scale", _SCALE, write, 1.0)


def _sp(key: int, code: int, name: str) -> Param:
    return Param(code, name, "angle", (key,), key)


_FE = Param(8806, "False easting", "length", _EAST, FALSE_EASTING)
_FN = Param(8807, "False northing", "length", _NORTH, FALSE_NORTHING)
_SP1 = _sp(STD_PARALLEL1, 8823, "Latitude of 1st standard parallel")
_SP2 = _sp(STD_PARALLEL2, 8824, "Latitude of 2nd standard parallel")
_NATURAL = (_lat(NAT_ORIGIN_LAT), _long(NAT_ORIGIN_LONG), _scale(SCALE_AT_NAT_ORIGIN), _FE, _FN)
_CENTRED = (_lat(CENTER_LAT), _long(CENTER_LONG), _FE, _FN)
_ORIGIN = (_lat(NAT_ORIGIN_LAT), _long(NAT_ORIGIN_LONG), _FE, _FN)
_CONIC = (
    _lat(FALSE_ORIGIN_LAT, 8821, "Latitude of false origin"),
    _long(FALSE_ORIGIN_LONG, 8822, "Longitude of false origin"),
    _SP1,
    _SP2,
    Param(8826, "Easting at false origin", "length", _EAST, FALSE_ORIGIN_EASTING),
    Param(8827, "Northing at false origin", "length", _NORTH, FALSE_ORIGIN_NORTHING),
)
_ALBERS = (
    _lat(NAT_ORIGIN_LAT, 8821, "Latitude of false origin"),
    _long(NAT_ORIGIN_LONG, 8822, "Longitude of false origin"),
    _SP1,
    _SP2,
    Param(8826, "Easting at false origin", "length", _EAST, FALSE_EASTING),
    Param(8827, "Northing at false origin", "length", _NORTH, FALSE_NORTHING),
)


def _hotine(name: str, code: int, ct: int, scale: str, east: Param, north: Param) -> Method:
    return Method(
        name,
        code,
        ct,
        (
            _lat(CENTER_LAT, 8811, "Latitude of projection centre"),
            _long(CENTER_LONG, 8812, "Longitude of projection centre"),
            Param(8813, "Azimuth of initial line", "azimuth", (AZIMUTH_ANGLE,), AZIMUTH_ANGLE),
            Param(
                8814,
                "Angle from Rectified to Skew Grid",
                "angle",
                (RECTIFIED_GRID_ANGLE,),
                RECTIFIED_GRID_ANGLE,
                90.0,
            ),
            _scale(SCALE_AT_CENTER, 8815, scale),
            east,
            north,
        ),
    )


TRANSVERSE_MERCATOR = Method("Transverse Mercator", 9807, 1, _NATURAL)
MERCATOR_1SP = Method("Mercator (variant A)", 9804, 7, _NATURAL)
MERCATOR_2SP = Method(
    "Mercator (variant B)",
    9805,
    7,
    (_SP1, _long(NAT_ORIGIN_LONG), _FE, _FN),
    ((NAT_ORIGIN_LAT, 0),),
)
POLAR_STEREOGRAPHIC_A = Method(
    "Polar Stereographic (variant A)",
    9810,
    15,
    (
        _lat(NAT_ORIGIN_LAT),
        Param(8802, "Longitude of natural origin", "angle", _POLE_LONG, STRAIGHT_VERT_POLE_LONG),
        _scale(SCALE_AT_NAT_ORIGIN),
        _FE,
        _FN,
    ),
)
POLAR_STEREOGRAPHIC_B = Method(
    "Polar Stereographic (variant B)",
    9829,
    15,
    (
        _lat(NAT_ORIGIN_LAT, 8832, "Latitude of standard parallel"),
        Param(8833, "Longitude of origin", "angle", _POLE_LONG, STRAIGHT_VERT_POLE_LONG),
        _FE,
        _FN,
    ),
    ((SCALE_AT_NAT_ORIGIN, 1.0),),
)

#: Every method, in the order a CRS is matched against them.
METHODS: tuple[Method, ...] = (
    TRANSVERSE_MERCATOR,
    Method("Transverse Mercator (South Orientated)", 9808, 27, _NATURAL),
    MERCATOR_1SP,
    MERCATOR_2SP,
    Method("Lambert Conic Conformal (1SP)", 9801, 9, _NATURAL),
    Method("Lambert Conic Conformal (2SP)", 9802, 8, _CONIC),
    Method("Albers Equal Area", 9822, 11, _ALBERS),
    Method("Lambert Azimuthal Equal Area", 9820, 10, _CENTRED),
    POLAR_STEREOGRAPHIC_A,
    POLAR_STEREOGRAPHIC_B,
    Method("Oblique Stereographic", 9809, 16, _NATURAL),
    Method(
        "Equidistant Cylindrical",
        1028,
        17,
        (_lat(CENTER_LAT), _long(CENTER_LONG), _SP1, _FE, _FN),
    ),
    Method("Sinusoidal", None, 24, (_long(CENTER_LONG), _FE, _FN)),
    Method("Orthographic", 9840, 21, _CENTRED),
    _hotine(
        "Hotine Oblique Mercator (variant A)", 9812, 3, "Scale factor on initial line", _FE, _FN
    ),
    _hotine(
        "Hotine Oblique Mercator (variant B)",
        9815,
        9815,
        "Scale factor at projection centre",
        Param(8816, "Easting at projection centre", "length", _EAST, FALSE_EASTING),
        Param(8817, "Northing at projection centre", "length", _NORTH, FALSE_NORTHING),
    ),
    Method("Lambert Cylindrical Equal Area", 9835, 28, (_SP1, _long(NAT_ORIGIN_LONG), _FE, _FN)),
    Method("Cassini-Soldner", 9806, 18, _ORIGIN),
    Method("American Polyconic", 9818, 22, _ORIGIN),
    Method("New Zealand Map Grid", 9811, 26, _ORIGIN),
    Method("Equidistant Conic", 1119, 13, _ALBERS),
    Method("Azimuthal Equidistant", 1125, 12, _CENTRED),
    Method("Miller Cylindrical", None, 20, (_long(CENTER_LONG), _FE, _FN)),
    Method("Robinson", None, 23, (_long(CENTER_LONG), _FE, _FN)),
    Method("Van Der Grinten", None, 25, (_long(CENTER_LONG), _FE, _FN)),
    Method("Gnomonic", None, 19, _CENTRED),
    Method("Stereographic", None, 14, (*_CENTRED[:2], _scale(SCALE_AT_NAT_ORIGIN), _FE, _FN)),
)

_BY_CT: dict[int, Method] = {}
for _m in METHODS:
    _BY_CT.setdefault(_m.ct, _m)


def _number(keys: Mapping[int, object], key: int) -> float | None:
    value = keys.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def param_value(keys: Mapping[int, object], param: Param) -> float:
    """A parameter's value as libgeotiff reads it: the first of its keys present, else its
    default."""
    for key in param.keys:
        value = _number(keys, key)
        if value is not None:
            return value
    return param.default


def method_for_keys(ct: int, keys: Mapping[int, object]) -> Method | None:
    """The method a ProjCoordTransGeoKey value names, picking Mercator's and Polar
    Stereographic's variant as GDAL does: Mercator with a standard parallel is variant B; a Polar
    Stereographic whose scale is 1 is variant B (standard parallel), else variant A."""
    if ct == MERCATOR_1SP.ct:
        return MERCATOR_2SP if _number(keys, STD_PARALLEL1) is not None else MERCATOR_1SP
    if ct == POLAR_STEREOGRAPHIC_A.ct:
        scale = param_value(keys, POLAR_STEREOGRAPHIC_A.params[2])
        return POLAR_STEREOGRAPHIC_B if scale == 1.0 else POLAR_STEREOGRAPHIC_A
    return _BY_CT.get(ct)


def method_named(code: int | None, name: str) -> Method | None:
    """The method of an EPSG method code, or (for methods EPSG does not list) of a name."""
    for m in METHODS:
        if code is not None and m.code == code:
            return m
    folded = name.casefold()
    for m in METHODS:
        if m.code is None and m.name.casefold() == folded:
            return m
    return None
