"""Text arguments of a region request, parsed with one set of rules for every front end.

The service's query parameters, the Lambda handler (through the service core) and the CLI's
options all go through these functions, so ``window=-5,0,10,10`` means the same thing everywhere.
Each raises ``ArgumentError`` naming the argument, with a machine-readable ``code``; front ends
turn it into their own refusal (a 400 problem, an argparse usage error). Numbers are checked as
text before they are converted, so no argument can make a huge integer or a NaN.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from ..colormaps import Colormap, ColormapError, choose
from ..errors import ArgumentError
from ..outputs import FORMATS
from ..read.resample_plan import RESAMPLINGS

if TYPE_CHECKING:
    from .expression import Expression

__all__ = [
    "MAX_BANDS",
    "MAX_SIDE",
    "RESAMPLINGS",
    "ArgumentError",
    "bands",
    "bbox",
    "boolean",
    "colormap",
    "expression",
    "integer",
    "number",
    "output_format",
    "quality",
    "rescale",
    "resampling",
    "resolution",
    "size",
    "window",
]

#: Largest output side and largest window coordinate magnitude accepted anywhere.
MAX_SIDE = 1 << 20
MAX_COORD = MAX_SIDE * 64
#: Most band numbers one request may list (the source's band count bounds it further).
MAX_BANDS = 256
#: Largest rescale bound: min and max and their difference stay finite in float32.
MAX_RESCALE = 1e38
_INT = re.compile(r"^[+-]?\d{1,12}$")
_FLOAT = re.compile(r"^[+-]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})([eE][+-]?\d{1,3})?$")
_FORMAT_ALIASES = {"jpg": "jpeg", "tiff": "tif", "geotiff": "tif"}


def integer(name: str, text: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not _INT.match(text):
        raise ArgumentError(name, f"{name} must be an integer, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ArgumentError(name, f"{name} must be in {lo}..{hi}, got {value}")
    return value


def number(name: str, text: str) -> float:
    text = text.strip()
    if not _FLOAT.match(text):
        raise ArgumentError(name, f"{name} must be a number, got {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ArgumentError(name, f"{name} must be finite")
    return value


def boolean(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ArgumentError(name, f"{name} is true or false, got {text[:20]!r}")


def _parts(name: str, text: str, n: int | None) -> list[str]:
    parts = text.split(",")
    if n is not None and len(parts) != n:
        raise ArgumentError(name, f"{name} takes {n} comma-separated values, got {len(parts)}")
    return parts


def window(text: str, name: str = "window") -> tuple[int, int, int, int]:
    """``col_off,row_off,width,height``; offsets may be negative (a boundless read fills what
    lies outside the image), sizes are positive."""
    c, r, w, h = (integer(name, p, -MAX_COORD, MAX_COORD) for p in _parts(name, text, 4))
    if w < 1 or h < 1:
        raise ArgumentError(name, f"{name} width and height must be positive")
    return c, r, w, h


def bbox(text: str, name: str = "bbox") -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` with minx < maxx and miny < maxy."""
    x0, y0, x1, y1 = (number(name, p) for p in _parts(name, text, 4))
    if not (x0 < x1 and y0 < y1):
        raise ArgumentError(name, f"{name} is minx,miny,maxx,maxy with minx < maxx and miny < maxy")
    return x0, y0, x1, y1


def bands(text: str, name: str = "bands") -> tuple[int, ...]:
    """1-based band numbers, comma separated."""
    parts = _parts(name, text, None)
    if len(parts) > MAX_BANDS:
        raise ArgumentError(name, f"at most {MAX_BANDS} bands", code="invalid_bands")
    return tuple(integer(name, p, 1, 65535) for p in parts)


def size(text: str, name: str = "size") -> tuple[int, int]:
    """``width,height`` of an output, both positive."""
    w, h = (integer(name, p, 1, MAX_SIDE) for p in _parts(name, text, 2))
    return w, h


def rescale(text: str, name: str = "rescale") -> tuple[float, float]:
    """``min,max`` of source values mapped onto 0..255, min < max."""
    lo, hi = (number(name, p) for p in _parts(name, text, 2))
    if not lo < hi:
        raise ArgumentError(name, f"{name} is min,max with min < max")
    if not (lo >= -MAX_RESCALE and hi <= MAX_RESCALE):  # renderings scale in float32
        raise ArgumentError(name, f"{name} values must be within +-{MAX_RESCALE:g}")
    return lo, hi


def quality(text: str, name: str = "quality") -> int:
    """JPEG/WebP quality, 1 to 100."""
    text = text.strip()
    if not _INT.match(text) or not 1 <= int(text) <= 100:
        raise ArgumentError(name, f"{name} must be an integer from 1 to 100, got {text[:20]!r}")
    return int(text)


def output_format(text: str, name: str = "format") -> str:
    """One of the output formats (``jpg``, ``tiff`` and ``geotiff`` are accepted aliases)."""
    fmt = text.strip().lower()
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ArgumentError(name, f"{name} must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    return fmt


# --------------------------------------------------------------------------------------------
# georeferenced requests: CRSs, tiles, kernels
# --------------------------------------------------------------------------------------------

_CRS_CODE = re.compile(
    r"^(?:EPSG:|epsg:|"
    r"https?://www\.opengis\.net/def/crs/EPSG/0/|"
    r"urn:ogc:def:crs:EPSG:[0-9.]*:)?(\d{1,6})$"
)
_CRS84 = re.compile(
    r"^(?:OGC:CRS84|CRS:84|https?://www\.opengis\.net/def/crs/OGC/1\.3/CRS84|"
    r"urn:ogc:def:crs:OGC:1\.3:CRS84)$"
)
_WKT_START = re.compile(
    r"^\s*(?:PROJCS|GEOGCS|GEOCCS|COMPD_CM|PROJCRS|GEOGCRS|GEODCRS|BOUNDCRS|COMPOUNDCRS|"
    r"PROJECTEDCRS|GEODETICCRS|GEOGRAPHICCRS|ENGCRS|VERTCRS)\s*\["
)
#: Longest CRS text (a WKT) an argument may hold.
MAX_CRS_TEXT = 8192
#: Warp kernels the reprojecting reads implement.
KERNELS = ("nearest", "bilinear", "cubic", "average")
#: GDAL RasterIO resampling names, which only decide the overview a tile is read from.
IO_RESAMPLINGS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "gauss",
    "rms",
)


def crs(text: str, name: str = "crs") -> str:
    """A CRS named by an EPSG code ("EPSG:32633", "32633", the OGC URI or URN), OGC:CRS84
    (which is EPSG:4326 in longitude/latitude order, the order cloudroi always uses) or WKT.
    PROJ strings and JSON are refused: a PROJ string can name files on the server."""
    text = text.strip()
    if len(text) > MAX_CRS_TEXT:
        raise ArgumentError(name, f"{name} is longer than {MAX_CRS_TEXT} characters", "invalid_crs")
    m = _CRS_CODE.match(text)
    if m is not None:
        return f"EPSG:{int(m.group(1))}"
    if _CRS84.match(text):
        return "EPSG:4326"
    if _WKT_START.match(text):
        return text
    raise ArgumentError(
        name,
        f"{name} must be an EPSG code (EPSG:4326, an OGC URI or URN), OGC:CRS84 or WKT, got "
        f"{text[:40]!r}",
        "invalid_crs",
    )


def kernel(text: str, name: str = "reproject") -> str:
    """A warp kernel: nearest, bilinear, cubic or average."""
    value = text.strip().lower()
    if value not in KERNELS:
        raise ArgumentError(name, f"{name} must be one of {', '.join(KERNELS)}, got {value[:20]!r}")
    return value


def io_resampling(text: str, name: str = "resampling") -> str:
    """A RasterIO resampling name (it picks the overview a tile is read from)."""
    value = text.strip().lower()
    if value not in IO_RESAMPLINGS:
        raise ArgumentError(
            name, f"{name} must be one of {', '.join(IO_RESAMPLINGS)}, got {value[:20]!r}"
        )
    return value


def resampling(text: str, name: str = "resampling") -> str:
    """The kernel of a native read to an output size: nearest, bilinear, cubic, average or
    mode (GDAL's RasterIO resampling)."""
    value = text.strip().lower()
    if value not in RESAMPLINGS:
        raise ArgumentError(
            name, f"{name} must be one of {', '.join(RESAMPLINGS)}, got {value[:20]!r}"
        )
    return value


def tile_index(z: str, x: str, y: str) -> tuple[int, int, int]:
    """``z``, ``x``, ``y`` of a tile as integers (the tile matrix set checks its own limits)."""
    return integer("z", z, 0, 30), integer("x", x, 0, 1 << 31), integer("y", y, 0, 1 << 31)


def resolution(text: str, name: str = "resolution") -> tuple[float, float]:
    """Pixel size in CRS units: one positive number (square pixels), or ``x,y``."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise ArgumentError(name, f"{name} is one number or x,y")
    values = [number(name, p) for p in parts]
    if any(v <= 0 for v in values):
        raise ArgumentError(name, f"{name} must be positive")
    return (values[0], values[-1])


def colormap(text: str | None, name: str | None = None) -> Colormap | bool:
    """The ``colormap`` (JSON or ``none``) and ``colormap_name`` parameters: a ``Colormap``,
    True for the source's own palette (neither given), False for none."""
    try:
        return choose(text, name)
    except ColormapError as exc:
        raise ArgumentError("colormap", str(exc), "invalid_colormap") from exc


def expression(text: str, name: str = "expression") -> Expression:
    """Band math (``(b4-b3)/(b4+b3)``, outputs separated by ``;``), parsed and checked against
    a whitelist (``cloudroi.region.expression``); ``ExpressionError`` (an ArgumentError with
    code ``invalid_expression``) otherwise."""
    from .expression import ExpressionError, parse_expression

    try:
        return parse_expression(text)
    except ExpressionError as exc:
        exc.name = name
        raise
