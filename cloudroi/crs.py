"""``cloudroi.CRS``: the coordinate reference system of an image, as a small immutable value.

A CRS is an EPSG code where one names it (``CRS(32633)``), else a definition cloudroi can carry
without any geodesy library: the GeoTIFF keys of a user-defined system (a projection given by its
parameters, a datum given by its ellipsoid...) or a WKT/PROJ text. ``to_wkt``, ``to_projjson`` and
``to_pyproj`` turn any of them into a full definition with pyproj (the ``geo`` extra:
``pip install 'cloudroi[geo]'``), which is imported only then: ``import cloudroi`` does not.

For compatibility with the EPSG integers ``Image.crs`` used to be, a CRS equals its EPSG code as
an int and as an "EPSG:n" string: ``img.crs == 32633`` and ``img.crs == "EPSG:32633"`` hold.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import CRSError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyproj

__all__ = ["CRS", "GeoKeyItems", "KeyValue", "crs_info"]

#: A GeoKey value: SHORT keys are ints, DOUBLE keys floats (tuples when several), ASCII keys str.
KeyValue = int | float | str | tuple[float, ...]
#: GeoKeys as (key id, value) pairs in ascending key order.
GeoKeyItems = tuple[tuple[int, KeyValue], ...]

#: The message of the CRSError raised when a conversion needs pyproj and it is not installed.
PYPROJ_MISSING = "this needs pyproj: install cloudroi's geo extra (pip install 'cloudroi[geo]')"

_EPSG_TEXT = re.compile(r"\s*epsg:\s*(\d{1,9})\s*", re.IGNORECASE)
_MAX_EPSG = 2**31 - 1


@dataclass(frozen=True, eq=False, slots=True)
class CRS:
    """A coordinate reference system.

    ``epsg``: its EPSG code, or None for a user-defined system, which is then given by
    ``geokeys`` (the GeoTIFF keys that define it: cloudroi writes them back into GeoTIFF output)
    and/or ``wkt`` (a WKT or PROJ text). ``name`` is its name where known; ``note`` says what
    cloudroi could not interpret (an unsupported projection method...), else None.
    """

    epsg: int | None = None
    name: str | None = None
    wkt: str | None = None
    geokeys: GeoKeyItems = ()
    note: str | None = None

    def __post_init__(self) -> None:
        if self.epsg is not None:
            if isinstance(self.epsg, bool) or not isinstance(self.epsg, int):
                raise CRSError(f"an EPSG code is an integer, got {self.epsg!r}")
            if not 0 < self.epsg <= _MAX_EPSG:
                raise CRSError(f"EPSG code out of range: {self.epsg}")
        elif self.wkt is None and not self.geokeys:
            raise CRSError("a CRS needs an EPSG code, a WKT or PROJ text, or GeoTIFF keys")

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_epsg(cls, code: int) -> CRS:
        return cls(code)

    @classmethod
    def from_user_input(cls, value: object) -> CRS:
        """A CRS from an EPSG code (int or "EPSG:n"), a CRS, a pyproj (or rasterio) CRS, a
        WKT/PROJ/PROJJSON text or a PROJJSON dict (those last ones need pyproj). A definition
        that carries an EPSG identifier becomes that code (no database search: a PROJ string
        stays a definition, even where it matches an EPSG CRS); anything else keeps its
        definition, with the GeoTIFF keys that express it."""
        if isinstance(value, CRS):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            m = _EPSG_TEXT.fullmatch(value)
            if m is not None:
                return cls(int(m.group(1)))
            if not value.strip():
                raise CRSError("an empty string names no CRS")
        elif not isinstance(value, dict) and not hasattr(value, "to_wkt"):
            raise CRSError(f"cannot make a CRS of {type(value).__name__}")
        from . import _proj

        return _proj.from_user_input(value)

    # -- what it is -------------------------------------------------------------------------

    @property
    def description(self) -> str:
        """The CRS in words, made without pyproj: "EPSG:n", the WKT/PROJ text, or a one-line
        summary of the GeoTIFF keys (with the ``note``, if any)."""
        if self.epsg is not None:
            return f"EPSG:{self.epsg}"
        if self.wkt is not None:
            return self.wkt
        from .tiff.geokeys import describe

        text = describe(dict(self.geokeys))
        return f"{text} ({self.note})" if self.note and self.note not in text else text

    def to_string(self) -> str:
        """The CRS as one string: "EPSG:n"; else the WKT or PROJ text it was given; else its WKT
        when pyproj is installed and the definition is complete, its ``description`` otherwise."""
        if self.epsg is not None:
            return f"EPSG:{self.epsg}"
        if self.wkt is not None:
            return self.wkt
        try:
            return self.to_wkt()
        except CRSError:
            return self.description

    def to_pyproj(self) -> pyproj.CRS:
        """The pyproj CRS (needs pyproj); CRSError when the definition is incomplete."""
        from . import _proj

        return _proj.to_pyproj(self)

    def to_wkt(self, version: str = "WKT2_2019", pretty: bool = False) -> str:
        """WKT of the CRS (needs pyproj): ``version`` is one of pyproj's WKT versions
        ("WKT2_2019", "WKT1_GDAL", "WKT1_ESRI"...)."""
        from . import _proj

        return _proj.to_wkt(self, version, pretty)

    def to_projjson(self, pretty: bool = False) -> str:
        """PROJJSON text of the CRS (needs pyproj)."""
        from . import _proj

        return _proj.to_projjson(self, pretty)

    def equals(self, other: object, ignore_axis_order: bool = False) -> bool:
        """Whether ``other`` (anything ``from_user_input`` takes) is the same CRS by definition,
        not by representation (needs pyproj unless both are EPSG codes)."""
        that = CRS.from_user_input(other)
        if self.epsg is not None and that.epsg is not None:
            return self.epsg == that.epsg
        return bool(self.to_pyproj().equals(that.to_pyproj(), ignore_axis_order=ignore_axis_order))

    # -- value semantics --------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CRS):
            if self.epsg is not None or other.epsg is not None:
                return self.epsg == other.epsg
            return (self.wkt, self.geokeys) == (other.wkt, other.geokeys)
        if isinstance(other, bool):
            return False
        if isinstance(other, int):
            return self.epsg is not None and self.epsg == other
        if isinstance(other, str):
            m = _EPSG_TEXT.fullmatch(other)
            return m is not None and self.epsg == int(m.group(1))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.epsg) if self.epsg is not None else hash((self.wkt, self.geokeys))

    def __repr__(self) -> str:
        if self.epsg is not None:
            return f"CRS({self.epsg})"
        kind = "WKT" if self.wkt is not None else "GeoKeys"
        return f"<CRS {self.name or 'unnamed'!r} ({kind})>"

    def __str__(self) -> str:
        return f"EPSG:{self.epsg}" if self.epsg is not None else (self.name or self.description)


_NO_CRS: dict[str, Any] = {
    "crs": None,
    "crs_name": None,
    "crs_description": None,
    "crs_wkt": None,
    "crs_projjson": None,
    "crs_note": None,
}


def crs_info(crs: CRS | None) -> dict[str, Any]:
    """The CRS entries of ``Image.info()``, as plain JSON values: ``crs`` the EPSG code or None,
    ``crs_name``, ``crs_description`` (made without pyproj: "EPSG:n", a summary of the GeoTIFF
    keys, or the WKT), ``crs_wkt`` (WKT2 with pyproj, else the description),
    ``crs_projjson`` (a PROJJSON object with pyproj, else None) and ``crs_note`` (what could not
    be interpreted, else None)."""
    if crs is None:
        return dict(_NO_CRS)
    name, wkt, projjson, note = _described(crs)
    return {
        "crs": crs.epsg,
        "crs_name": name,
        "crs_description": crs.description,
        "crs_wkt": wkt,
        "crs_projjson": None if projjson is None else json.loads(projjson),
        "crs_note": note,
    }


@functools.lru_cache(maxsize=128)
def _described(crs: CRS) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        p = crs.to_pyproj()
    except CRSError as exc:
        note = crs.note or (None if str(exc) == PYPROJ_MISSING else str(exc))
        return crs.name or str(crs), crs.description, None, note
    return crs.name or p.name, p.to_wkt(), p.to_json(), crs.note
