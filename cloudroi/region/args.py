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

from ..crs import CRS
from ..errors import CRSError
from ..outputs import FORMATS

__all__ = [
    "MAX_BANDS",
    "MAX_SIDE",
    "ArgumentError",
    "MAX_CRS_TEXT",
    "MAX_TILESIZE",
    "WARP_RESAMPLINGS",
    "bands",
    "bbox",
    "boolean",
    "crs",
    "integer",
    "number",
    "output_format",
    "quality",
    "resampling",
    "rescale",
    "resolution",
    "size",
    "tile",
    "tile_matrix_set",
    "tilesize",
    "window",
]

#: Largest output side and largest window coordinate magnitude accepted anywhere.
MAX_SIDE = 1 << 20
MAX_COORD = MAX_SIDE * 64
#: Most band numbers one request may list (the source's band count bounds it further).
MAX_BANDS = 256
_INT = re.compile(r"^[+-]?\d{1,12}$")
_FLOAT = re.compile(r"^[+-]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})([eE][+-]?\d{1,3})?$")
#: Longest CRS text accepted (a WKT2 definition with a long history runs to a few KiB).
MAX_CRS_TEXT = 16384
#: Largest web-map tile side.
MAX_TILESIZE = 4096
#: The warp kernels ``cloudroi.warp`` has (its RESAMPLINGS; kept here so that parsing an
#: argument does not import pyproj).
WARP_RESAMPLINGS = ("nearest", "bilinear", "cubic", "average")
_FORMAT_ALIASES = {"jpg": "jpeg", "tiff": "tif", "geotiff": "tif"}


class ArgumentError(ValueError):
    """An argument that does not parse or is out of range; ``name`` says which."""

    def __init__(self, name: str, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.name = name
        self.code = code


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
# georeferenced requests: CRSs, resolutions, warp kernels, tiles (need the geo extra)
# --------------------------------------------------------------------------------------------


def crs(text: str, name: str = "crs") -> CRS:
    """A horizontal CRS: "EPSG:n" (or just n), a WKT, PROJ or PROJJSON text that pyproj can
    build. A geocentric or purely vertical CRS has no x/y to place a region or a point on."""
    text = text.strip()
    if not text:
        raise ArgumentError(name, f"{name} is empty", code="invalid_crs")
    if len(text) > MAX_CRS_TEXT:
        raise ArgumentError(
            name, f"{name} is longer than {MAX_CRS_TEXT} characters", code="invalid_crs"
        )
    if text.isascii() and text.isdigit() and len(text) <= 9:
        text = f"EPSG:{text}"
    try:
        value = CRS.from_user_input(text)
        definition = value.to_pyproj()  # an EPSG code pyproj knows, a complete definition
    except CRSError as exc:
        why = " ".join(str(exc).split())  # pyproj's messages may span lines
        raise ArgumentError(name, f"{name} {text[:60]!r}: {why}", code="invalid_crs") from exc
    if not (definition.is_geographic or definition.is_projected):
        raise ArgumentError(
            name,
            f"{name} must be a geographic or projected CRS, got a {definition.type_name}",
            code="invalid_crs",
        )
    return value


def resolution(text: str, name: str = "resolution") -> tuple[float, float]:
    """Pixel size in CRS units: one positive number, or ``x,y``."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise ArgumentError(name, f"{name} is one number or x,y")
    values = [number(name, p) for p in parts]
    if any(v <= 0 for v in values):
        raise ArgumentError(name, f"{name} must be positive")
    return (values[0], values[-1])


def resampling(text: str, name: str = "resampling") -> str:
    """A warp kernel: nearest, bilinear, cubic or average."""
    kernel = text.strip().lower()
    if kernel not in WARP_RESAMPLINGS:
        raise ArgumentError(
            name, f"{name} must be one of {', '.join(WARP_RESAMPLINGS)}, got {kernel[:20]!r}"
        )
    return kernel


def tilesize(text: str, name: str = "tilesize") -> int:
    """The side of a square web-map tile in pixels, 1 to MAX_TILESIZE."""
    return integer(name, text, 1, MAX_TILESIZE)


def tile_matrix_set(text: str, name: str = "tms") -> str:
    """The identifier of a tile matrix set morecantile has (WebMercatorQuad, WorldCRS84Quad...),
    any case; returned as morecantile spells it."""
    known = _tile_matrix_sets(name)
    wanted = text.strip().lower()
    for identifier in known:
        if identifier.lower() == wanted:
            return identifier
    raise ArgumentError(
        name,
        f"{name} must be one of {', '.join(known)}, got {text.strip()[:40]!r}",
        code="invalid_tms",
    )


def tile(
    z: str, x: str, y: str, tms: str = "WebMercatorQuad", name: str = "tile"
) -> tuple[int, int, int]:
    """``z``, ``x``, ``y`` of a tile of the tile matrix set ``tms``, as integers: ``z`` one of
    its zoom levels, ``x`` and ``y`` inside the matrix of that zoom. Whether the tile touches
    an image is the image's question (``Image.tile_exists``)."""
    identifier = tile_matrix_set(tms)
    import morecantile

    matrices = morecantile.tms.get(identifier)
    try:
        zoom = integer(f"{name} z", z, matrices.minzoom, matrices.maxzoom)
    except ArgumentError as exc:
        raise ArgumentError(exc.name, f"{exc} ({identifier})", code="invalid_tile") from exc
    matrix = matrices.matrix(zoom)
    col = _tile_index(f"{name} x", x, int(matrix.matrixWidth), zoom, identifier)
    row = _tile_index(f"{name} y", y, int(matrix.matrixHeight), zoom, identifier)
    return zoom, col, row


def _tile_index(name: str, text: str, size: int, zoom: int, tms: str) -> int:
    text = text.strip()
    if not _INT.match(text):
        raise ArgumentError(
            name, f"{name} must be an integer, got {text[:40]!r}", code="invalid_tile"
        )
    value = int(text)
    if not 0 <= value < size:
        raise ArgumentError(
            name,
            f"{name} must be in 0..{size - 1} at zoom {zoom} of {tms}, got {value}",
            code="invalid_tile",
        )
    return value


def _tile_matrix_sets(name: str) -> list[str]:
    try:
        import morecantile
    except ImportError as exc:
        raise ArgumentError(
            name,
            f"{name}: tiles need morecantile: install cloudroi's geo extra "
            "(pip install 'cloudroi[geo]')",
            code="geo_unavailable",
        ) from exc
    return list(morecantile.tms.list())
