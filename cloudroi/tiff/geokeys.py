"""GeoTIFF GeoKeys (GeoTIFF 1.1, OGC 19-008r4): the whole key directory, and the CRS it names.

Pure: no pyproj. ``read_directory`` decodes GeoKeyDirectory with its GeoDoubleParams and
GeoAsciiParams values; ``crs_from_geokeys`` reads a CRS from them as GDAL's GTiff driver does:

- GTModelTypeGeoKey 1 (projected) with an EPSG ProjectedCSTypeGeoKey, or 2 (geographic) with an
  EPSG GeographicTypeGeoKey: that EPSG code (a ProjectedCSType without a model type counts as
  projected, as in GDAL);
- a user-defined (32767) projected or geographic system: a CRS holding its keys, interpreted by
  ``definition``: the projection from ProjectionGeoKey (an EPSG conversion) or ProjCoordTransGeoKey
  and the Proj* parameters (``projections.METHODS``); the geographic system from an EPSG
  GeographicTypeGeoKey or from its datum, ellipsoid (EPSG code, or semi-major axis with inverse
  flattening or semi-minor axis), prime meridian and angular unit keys, with the names GDAL
  writes into GeogCitationGeoKey ("GCS Name = ...|Datum = ...|Ellipsoid = ...|Primem = ...|");
  GeogTOWGS84GeoKey (GDAL's) for a user-defined datum;
- no model type, or a user-defined one, with "ESRI PE String = <WKT>" in PCSCitationGeoKey (GDAL's
  GEOTIFF_KEYS_FLAVOR=ESRI_PE): that WKT.

Vertical keys (4096-4099) are ignored: the CRS is the horizontal one. A projection method or model
type cloudroi cannot express gives a CRS without EPSG code whose ``note`` says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..crs import CRS, GeoKeyItems, KeyValue
from .projections import Method, Param, method_for_keys, param_value

__all__ = [
    "Definition",
    "GeodeticDef",
    "ProjectedDef",
    "UnitDef",
    "crs_from_geokeys",
    "definition",
    "describe",
    "encode_directory",
    "geotiff_keys",
    "read_directory",
]

GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737
USER_DEFINED = 32767

GT_MODEL_TYPE = 1024
GT_RASTER_TYPE = 1025
GT_CITATION = 1026
GEOGRAPHIC_TYPE = 2048
GEOG_CITATION = 2049
GEOG_DATUM = 2050
GEOG_PRIME_MERIDIAN = 2051
GEOG_ANGULAR_UNITS = 2054
GEOG_ANGULAR_UNIT_SIZE = 2055
GEOG_ELLIPSOID = 2056
GEOG_SEMI_MAJOR = 2057
GEOG_SEMI_MINOR = 2058
GEOG_INV_FLATTENING = 2059
GEOG_PM_LONG = 2061
GEOG_TOWGS84 = 2062
PROJECTED_CS_TYPE = 3072
PCS_CITATION = 3073
PROJECTION = 3074
PROJ_COORD_TRANS = 3075
PROJ_LINEAR_UNITS = 3076
PROJ_LINEAR_UNIT_SIZE = 3077
MODEL_PROJECTED = 1
MODEL_GEOGRAPHIC = 2
MODEL_GEOCENTRIC = 3

#: Keys that describe the horizontal CRS (kept with a user-defined CRS and written back).
_CRS_KEYS = frozenset({GT_MODEL_TYPE, GT_CITATION, *range(2048, 2063), 3059, *range(3072, 3097)})
ESRI_PE = "ESRI PE String = "
_MAX_KEYS = 4096

#: EPSG units cloudroi knows without a database: code -> (name, metres or radians per unit).
UNITS: dict[int, tuple[str, float]] = {
    9001: ("metre", 1.0),
    9002: ("foot", 0.3048),
    9003: ("US survey foot", 1200 / 3937),
    9036: ("kilometre", 1000.0),
    9101: ("radian", 1.0),
    9102: ("degree", math.pi / 180),
    9105: ("grad", math.pi / 200),
    9122: ("degree", math.pi / 180),
}


# --------------------------------------------------------------------------------------------
# the key directory
# --------------------------------------------------------------------------------------------


def _ascii(data: bytes, offset: int, count: int) -> str | None:
    if count < 1 or offset < 0 or offset + count > len(data):
        return None
    raw = data[offset : offset + count]
    if raw.endswith((b"|", b"\x00")):
        raw = raw[:-1]  # the terminator libgeotiff writes and strips
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _value(
    directory: Sequence[int],
    loc: int,
    count: int,
    offset: int,
    doubles: Sequence[float],
    text: bytes,
) -> KeyValue | None:
    if loc == 0:
        return offset if 0 <= offset <= 0xFFFF else None
    if loc == GEO_DOUBLE_PARAMS:
        if count < 1 or offset < 0 or offset + count > len(doubles):
            return None
        values = tuple(float(v) for v in doubles[offset : offset + count])
        return values[0] if count == 1 else values
    if loc == GEO_ASCII_PARAMS:
        return _ascii(text, offset, count)
    if loc == GEO_KEY_DIRECTORY and count == 1 and 0 <= offset < len(directory):
        value = int(directory[offset])
        return value if 0 <= value <= 0xFFFF else None
    return None


def read_directory(
    directory: Sequence[int] | None,
    doubles: Sequence[float] | None = None,
    ascii_params: bytes | None = None,
) -> dict[int, KeyValue]:
    """GeoKey id -> value (int for SHORT keys, float or tuple of floats for DOUBLE keys, str for
    ASCII keys). Entries pointing outside their value tags are skipped."""
    if not directory or len(directory) < 4:
        return {}
    count = min(int(directory[3]), (len(directory) - 4) // 4, _MAX_KEYS)
    keys: dict[int, KeyValue] = {}
    for i in range(count):
        key, loc, n, offset = (int(v) for v in directory[4 + 4 * i : 8 + 4 * i])
        value = _value(directory, loc, n, offset, doubles or (), ascii_params or b"")
        if value is not None and 0 <= key <= 0xFFFF:
            keys.setdefault(key, value)
    return keys


def encode_directory(
    items: Iterable[tuple[int, KeyValue]],
) -> tuple[tuple[int, ...], tuple[float, ...], bytes]:
    """GeoKeyDirectory, GeoDoubleParams and GeoAsciiParams values for ``items`` (GeoTIFF 1.0
    directory header, keys in ascending order, each ASCII value terminated by "|")."""
    entries: list[int] = []
    doubles: list[float] = []
    text = bytearray()
    ordered = sorted(dict(items).items())
    for key, value in ordered:
        if isinstance(value, str):
            raw = value.encode("utf-8").replace(b"\x00", b"") + b"|"
            entries += [key, GEO_ASCII_PARAMS, len(raw), len(text)]
            text += raw
        elif isinstance(value, float | tuple):
            values = value if isinstance(value, tuple) else (value,)
            entries += [key, GEO_DOUBLE_PARAMS, len(values), len(doubles)]
            doubles += [float(v) for v in values]
        else:
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"GeoKey {key} value {value} does not fit a SHORT")
            entries += [key, 0, 1, value]
    return (1, 1, 0, len(ordered), *entries), tuple(doubles), bytes(text)


# --------------------------------------------------------------------------------------------
# interpretation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitDef:
    """A unit: EPSG code (None when user-defined), name, size in metres or radians (None: look
    the code up)."""

    code: int | None
    name: str
    factor: float | None


@dataclass(frozen=True, slots=True)
class GeodeticDef:
    """The geographic part of a user-defined CRS. ``None`` fields come from the EPSG codes."""

    name: str | None
    code: int | None
    datum_code: int | None
    datum_name: str | None
    ellipsoid_code: int | None
    ellipsoid_name: str | None
    semi_major: float | None
    semi_minor: float | None
    inv_flattening: float | None
    pm_code: int | None
    pm_name: str | None
    pm_longitude: float | None
    angular: UnitDef
    towgs84: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ProjectedDef:
    """The projection of a user-defined projected CRS: a method of ``projections.METHODS`` with
    its parameter values (in the file's units), or an EPSG conversion code."""

    name: str
    method: Method | None
    conversion_code: int | None
    params: tuple[tuple[Param, float], ...]
    linear: UnitDef


@dataclass(frozen=True, slots=True)
class Definition:
    geodetic: GeodeticDef
    projected: ProjectedDef | None


def _code(keys: Mapping[int, KeyValue], key: int) -> int | None:
    value = keys.get(key)
    if isinstance(value, int) and 0 < value < USER_DEFINED:
        return value
    return None


def _float(keys: Mapping[int, KeyValue], key: int) -> float | None:
    value = keys.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _text(keys: Mapping[int, KeyValue], key: int) -> str | None:
    value = keys.get(key)
    return value.strip() or None if isinstance(value, str) else None


_CITATION_FIELDS = frozenset(
    {"PCS Name", "PRJ Name", "LUnits", "GCS Name", "Datum", "Ellipsoid", "Primem", "AUnits"}
)


def citation_fields(text: str | None) -> dict[str, str]:
    """GDAL's structured citation ("GCS Name = x|Datum = y|...") as a dict; {} when it has none
    of those fields."""
    fields: dict[str, str] = {}
    for part in (text or "").split("|"):
        name, sep, value = part.partition(" = ")
        name = name.strip()
        if sep and name in _CITATION_FIELDS and name not in fields:
            fields[name] = value.strip()
    return fields


_WKT_NAME = re.compile(r'^\s*[A-Za-z_]+\s*\[\s*"([^"]*)"')


def wkt_name(wkt: str) -> str | None:
    m = _WKT_NAME.match(wkt)
    return m.group(1) if m else None


def _esri_pe(keys: Mapping[int, KeyValue]) -> str | None:
    text = _text(keys, PCS_CITATION)
    if text is None or ESRI_PE not in text:
        return None
    wkt = text.split(ESRI_PE, 1)[1].strip()
    return wkt or None


def _projected_name(keys: Mapping[int, KeyValue]) -> str:
    """The name GDAL gives a user-defined projected CRS: from PCSCitationGeoKey, else from
    GTCitationGeoKey, else "unnamed"."""
    for key in (PCS_CITATION, GT_CITATION):
        text = _text(keys, key)
        if text is None or (key == PCS_CITATION and text.startswith("LUnits = ")):
            continue
        if ESRI_PE in text:
            return wkt_name(text.split(ESRI_PE, 1)[1]) or "unnamed"
        return citation_fields(text).get("PCS Name", text)
    return "unnamed"


def _angular(keys: Mapping[int, KeyValue], name: str | None) -> UnitDef:
    code = keys.get(GEOG_ANGULAR_UNITS)
    if isinstance(code, int) and 0 < code < USER_DEFINED:
        known = UNITS.get(code)
        return UnitDef(code, name or (known[0] if known else "unknown"), known and known[1])
    if code == USER_DEFINED:
        size = _float(keys, GEOG_ANGULAR_UNIT_SIZE)
        return UnitDef(None, name or "unknown", size if size else math.pi / 180)
    return UnitDef(9102, "degree", math.pi / 180)


def _linear(keys: Mapping[int, KeyValue]) -> UnitDef:
    code = keys.get(PROJ_LINEAR_UNITS)
    lunits = citation_fields(_text(keys, PCS_CITATION)).get("LUnits")
    if isinstance(code, int) and 0 < code < USER_DEFINED:
        known = UNITS.get(code)
        return UnitDef(code, known[0] if known else "unknown", known and known[1])
    if code == USER_DEFINED:
        size = _float(keys, PROJ_LINEAR_UNIT_SIZE)
        return UnitDef(None, lunits or "unknown", size if size else 1.0)
    return UnitDef(9001, "metre", 1.0)


def _towgs84(keys: Mapping[int, KeyValue]) -> tuple[float, ...]:
    value = keys.get(GEOG_TOWGS84)
    if isinstance(value, tuple) and len(value) in (3, 7) and all(map(math.isfinite, value)):
        return tuple(float(v) for v in value)
    return ()


def _geodetic(keys: Mapping[int, KeyValue]) -> GeodeticDef:
    citation = _text(keys, GEOG_CITATION)
    fields = citation_fields(citation)
    if citation and not fields:
        fields = {"GCS Name": citation}
    datum_code = _code(keys, GEOG_DATUM)
    code = _code(keys, GEOGRAPHIC_TYPE)
    return GeodeticDef(
        name=fields.get("GCS Name"),
        code=code,
        datum_code=datum_code,
        datum_name=fields.get("Datum"),
        ellipsoid_code=_code(keys, GEOG_ELLIPSOID),
        ellipsoid_name=fields.get("Ellipsoid"),
        semi_major=_float(keys, GEOG_SEMI_MAJOR),
        semi_minor=_float(keys, GEOG_SEMI_MINOR),
        inv_flattening=_float(keys, GEOG_INV_FLATTENING),
        pm_code=_code(keys, GEOG_PRIME_MERIDIAN),
        pm_name=fields.get("Primem"),
        pm_longitude=_float(keys, GEOG_PM_LONG),
        angular=_angular(keys, fields.get("AUnits")),
        # GDAL drops TOWGS84 from a datum it knows (an EPSG datum or geographic CRS)
        towgs84=_towgs84(keys) if datum_code is None and code is None else (),
    )


def _projected(keys: Mapping[int, KeyValue]) -> ProjectedDef:
    conversion = _code(keys, PROJECTION)
    ct = keys.get(PROJ_COORD_TRANS)
    method = method_for_keys(ct, keys) if isinstance(ct, int) and conversion is None else None
    params = tuple((p, param_value(keys, p)) for p in method.params) if method else ()
    return ProjectedDef(_projected_name(keys), method, conversion, params, _linear(keys))


def _model(keys: Mapping[int, KeyValue]) -> int | None:
    model = keys.get(GT_MODEL_TYPE)
    if model in (MODEL_PROJECTED, MODEL_GEOGRAPHIC, MODEL_GEOCENTRIC):
        return int(model)
    if _code(keys, PROJECTED_CS_TYPE) is not None:
        return MODEL_PROJECTED  # as GDAL: a PCS code without a model type is projected
    return None


def definition(keys: Mapping[int, KeyValue]) -> Definition:
    """The user-defined CRS ``keys`` describe (see the module's docstring)."""
    projected = _projected(keys) if _model(keys) == MODEL_PROJECTED else None
    return Definition(_geodetic(keys), projected)


def _note(keys: Mapping[int, KeyValue], model: int) -> str | None:
    if model == MODEL_GEOCENTRIC:
        return "geocentric coordinate systems (GTModelTypeGeoKey 3) are not supported"
    if model != MODEL_PROJECTED or _code(keys, PROJECTION) is not None:
        return None
    ct = keys.get(PROJ_COORD_TRANS)
    if ct is None:
        return "user-defined projected CRS without a projection (no ProjCoordTransGeoKey)"
    if not isinstance(ct, int) or method_for_keys(ct, keys) is None:
        return f"unsupported GeoTIFF projection method {ct} (ProjCoordTransGeoKey)"
    return None


def crs_items(keys: Mapping[int, KeyValue]) -> GeoKeyItems:
    """The keys of ``keys`` that describe the horizontal CRS, in ascending order."""
    return tuple(sorted((k, v) for k, v in keys.items() if k in _CRS_KEYS))


def crs_from_geokeys(keys: Mapping[int, KeyValue]) -> CRS | None:
    """The CRS of a GeoKey directory (see the module's docstring); None when it names none."""
    model = _model(keys)
    if model is None:
        esri = _esri_pe(keys)
        if esri is not None:
            return CRS(wkt=esri, name=wkt_name(esri), geokeys=crs_items(keys))
        code = _code(keys, GEOGRAPHIC_TYPE)
        projection = PROJECTION in keys or PROJ_COORD_TRANS in keys
        return CRS(code) if code is not None and not projection else None
    code = _code(keys, PROJECTED_CS_TYPE if model == MODEL_PROJECTED else GEOGRAPHIC_TYPE)
    if code is not None and model != MODEL_GEOCENTRIC:
        return CRS(code)
    if model == MODEL_PROJECTED:
        name = _projected_name(keys)
    else:
        name = _geodetic(keys).name or _text(keys, GT_CITATION) or "unknown"
    return CRS(name=name, geokeys=crs_items(keys), note=_note(keys, model))


def geotiff_keys(crs: CRS) -> GeoKeyItems:
    """The GeoKeys that write ``crs`` into a GeoTIFF (GTRasterTypeGeoKey aside): its EPSG code
    as ProjectedCSTypeGeoKey, or GeographicTypeGeoKey for EPSG's 2D geographic range 4000-4999;
    else the keys that define it. A CRS made from a text alone needs pyproj to find those."""
    if crs.epsg is not None:
        if 4000 <= crs.epsg <= 4999:
            return ((GT_MODEL_TYPE, MODEL_GEOGRAPHIC), (GEOGRAPHIC_TYPE, crs.epsg))
        return ((GT_MODEL_TYPE, MODEL_PROJECTED), (PROJECTED_CS_TYPE, crs.epsg))
    if crs.geokeys:
        return crs.geokeys
    made = CRS.from_user_input(crs.wkt)
    return geotiff_keys(made) if made.epsg is not None else made.geokeys


# --------------------------------------------------------------------------------------------
# description (no pyproj)
# --------------------------------------------------------------------------------------------


def _g(value: float) -> str:
    return f"{value:.12g}"


def _describe_geodetic(g: GeodeticDef) -> str:
    if g.code is not None:
        return f"geographic CRS EPSG:{g.code}"
    parts = [f"datum {g.datum_name or (f'EPSG:{g.datum_code}' if g.datum_code else 'unknown')}"]
    if g.semi_major is not None:
        shape = (
            f"1/f={_g(g.inv_flattening)}"
            if g.inv_flattening is not None
            else (f"b={_g(g.semi_minor)}" if g.semi_minor is not None else "")
        )
        parts.append(f"ellipsoid a={_g(g.semi_major)} {shape}".rstrip())
    elif g.ellipsoid_code is not None:
        parts.append(f"ellipsoid EPSG:{g.ellipsoid_code}")
    if g.pm_code is not None:
        parts.append(f"prime meridian EPSG:{g.pm_code}")
    elif g.pm_longitude:
        parts.append(f"prime meridian {_g(g.pm_longitude)} {g.angular.name}")
    if g.towgs84:
        parts.append("towgs84=" + ",".join(map(_g, g.towgs84)))
    return ", ".join(parts)


def describe(keys: Mapping[int, KeyValue]) -> str:
    """A one-line description of the user-defined CRS of ``keys``, made without pyproj."""
    esri = _esri_pe(keys) if _model(keys) is None else None
    if esri is not None:
        return esri
    d = definition(keys)
    geodetic = _describe_geodetic(d.geodetic)
    p = d.projected
    if p is None:
        return f"{d.geodetic.name or 'unknown'}: {geodetic}"
    if p.conversion_code is not None:
        what = f"EPSG conversion {p.conversion_code}"
    elif p.method is not None:
        args = ", ".join(f"{param.name.lower()} {_g(v)}" for param, v in p.params)
        what = f"{p.method.name} ({args})"
    else:
        what = _note(keys, MODEL_PROJECTED) or "no projection"
    return f"{p.name}: {what}, unit {p.linear.name}; {geodetic}"
