"""Query parameters of every endpoint: declared once, parsed strictly, described to OpenAPI.

Each endpoint's parameters are a tuple of ``Param``; ``openapi.py`` renders the same tuples, so the
document and the parser cannot drift apart. Parsing turns the raw query into frozen dataclasses or
raises a 400 ``Problem`` naming the parameter; numbers are bounded before they are converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..outputs import FORMATS
from .problems import Problem, bad_request

__all__ = [
    "ENDPOINT_PARAMS",
    "InfoQuery",
    "Param",
    "PointQuery",
    "PreviewQuery",
    "RegionQuery",
    "parse_info",
    "parse_point",
    "parse_preview",
    "parse_region",
]

_INT = re.compile(r"^-?\d{1,12}$")
_FLOAT = re.compile(r"^[+-]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})([eE][+-]?\d{1,3})?$")
MAX_BANDS = 256
MAX_LEVEL = 64
MAX_SIDE = 1 << 20


@dataclass(frozen=True, slots=True)
class Param:
    """One query parameter: name, OpenAPI schema, description, whether it is required."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False
    example: str | None = None


_INT_LIST = r"^[1-9]\d{0,4}(,[1-9]\d{0,4}){0,255}$"
_NUM = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"

URL_PARAM = Param(
    "url", {"type": "string", "minLength": 1, "maxLength": 4096},
    "The source image: http(s)://, s3://, file:// URL or absolute path, under an allowed prefix.",
    required=True,
)
_BANDS = Param(
    "bands", {"type": "string", "pattern": _INT_LIST},
    "1-based band numbers, comma separated (default: all bands; for png/jpeg/webp the first "
    "three colour bands, or band 1).", example="1,2,3",
)
_FORMAT = Param(
    "format", {"type": "string", "enum": list(FORMATS), "default": "png"},
    "Output encoding: npy and tif keep every band in the source dtype (tif is a GeoTIFF); png, "
    "jpeg and webp are 8-bit renderings of 1 or 3 bands with the validity mask as alpha.",
)
_RESCALE = Param(
    "rescale", {"type": "string", "pattern": f"^{_NUM},{_NUM}$"},
    "min,max of source values mapped onto 0..255 in 8-bit renderings (default: uint8 as is, "
    "other dtypes their valid range in the response).", example="0,4000",
)
_QUALITY = Param(
    "quality", {"type": "integer", "minimum": 1, "maximum": 100},
    "JPEG/WebP quality (default: the service's setting).",
)

REGION_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param("window", {"type": "string", "pattern": r"^\d{1,9},\d{1,9},\d{1,9},\d{1,9}$"},
          "col_off,row_off,width,height in pixels of `level` (level 0 when width/height are "
          "given). Exactly one of window and bbox.", example="0,0,256,256"),
    Param("bbox", {"type": "string", "pattern": f"^{_NUM},{_NUM},{_NUM},{_NUM}$"},
          "minx,miny,maxx,maxy in the image's CRS. Parts outside the image are filled with "
          "nodata and transparent.", example="500000,4100000,510000,4110000"),
    Param("level", {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
          "Resolution level: 0 is full resolution, 1.. the overviews. Not with width/height."),
    Param("width", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
          "Output width; the best overview is read and resampled (nearest)."),
    Param("height", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
          "Output height; with only one of width/height the aspect ratio is kept."),
    _BANDS, _FORMAT, _RESCALE, _QUALITY,
)
PREVIEW_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param("max_size", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE, "default": 1024},
          "Longest side of the preview, in pixels."),
    _BANDS, _FORMAT, _RESCALE, _QUALITY,
)
POINT_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param("x", {"type": "number"}, "X in the image's CRS (with y)."),
    Param("y", {"type": "number"}, "Y in the image's CRS (with x)."),
    Param("col", {"type": "integer", "minimum": 0}, "Pixel column of level 0 (with row)."),
    Param("row", {"type": "integer", "minimum": 0}, "Pixel row of level 0 (with col)."),
)
INFO_PARAMS: tuple[Param, ...] = (URL_PARAM,)

ENDPOINT_PARAMS: dict[str, tuple[Param, ...]] = {
    "/info": INFO_PARAMS,
    "/region": REGION_PARAMS,
    "/preview": PREVIEW_PARAMS,
    "/point": POINT_PARAMS,
}


# --------------------------------------------------------------------------------------------
# parsed queries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendering:
    bands: tuple[int, ...] | None = None
    format: str = "png"
    rescale: tuple[float, float] | None = None
    quality: int | None = None


@dataclass(frozen=True, slots=True)
class InfoQuery:
    url: str


@dataclass(frozen=True, slots=True)
class RegionQuery:
    url: str
    window: tuple[int, int, int, int] | None = None
    bbox: tuple[float, float, float, float] | None = None
    level: int | None = None
    width: int | None = None
    height: int | None = None
    rendering: Rendering = field(default_factory=Rendering)


@dataclass(frozen=True, slots=True)
class PreviewQuery:
    url: str
    max_size: int = 1024
    rendering: Rendering = field(default_factory=Rendering)


@dataclass(frozen=True, slots=True)
class PointQuery:
    url: str
    xy: tuple[float, float] | None = None
    colrow: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


def query_dict(items: Sequence[tuple[str, str]], params: Sequence[Param]) -> dict[str, str]:
    """The query as a dict: unknown or repeated parameters and missing required ones are 400s."""
    known = {p.name for p in params}
    out: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            raise bad_request(
                f"unknown parameter {name!r}; this endpoint takes {', '.join(sorted(known))}",
                code="unknown_parameter",
            )
        if name in out:
            raise bad_request(f"parameter {name!r} given more than once")
        out[name] = value
    for p in params:
        if p.required and not out.get(p.name):
            raise bad_request(f"parameter {p.name!r} is required", code="missing_parameter")
    return out


def _int(name: str, text: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not _INT.match(text):
        raise bad_request(f"{name} must be an integer, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise bad_request(f"{name} must be in {lo}..{hi}, got {value}")
    return value


def _float(name: str, text: str) -> float:
    text = text.strip()
    if not _FLOAT.match(text):
        raise bad_request(f"{name} must be a number, got {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise bad_request(f"{name} must be finite")
    return value


def _parts(name: str, text: str, n: int | None) -> list[str]:
    parts = text.split(",")
    if n is not None and len(parts) != n:
        raise bad_request(f"{name} takes {n} comma-separated values, got {len(parts)}")
    return parts


def _window(text: str) -> tuple[int, int, int, int]:
    c, r, w, h = (_int("window", p, 0, MAX_SIDE * 64) for p in _parts("window", text, 4))
    if w < 1 or h < 1:
        raise bad_request("window width and height must be positive")
    return c, r, w, h


def _bbox(text: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (_float("bbox", p) for p in _parts("bbox", text, 4))
    if not (x0 < x1 and y0 < y1):
        raise bad_request("bbox is minx,miny,maxx,maxy with minx < maxx and miny < maxy")
    return x0, y0, x1, y1


def _bands(text: str) -> tuple[int, ...]:
    parts = _parts("bands", text, None)
    if len(parts) > MAX_BANDS:
        raise bad_request(f"at most {MAX_BANDS} bands")
    return tuple(_int("bands", p, 1, 65535) for p in parts)


def _rescale(text: str) -> tuple[float, float]:
    lo, hi = (_float("rescale", p) for p in _parts("rescale", text, 2))
    if not lo < hi:
        raise bad_request("rescale is min,max with min < max")
    return lo, hi


def _rendering(q: dict[str, str]) -> Rendering:
    fmt = q.get("format", "png").lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt in ("tiff", "geotiff"):
        fmt = "tif"
    if fmt not in FORMATS:
        raise bad_request(f"format must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    return Rendering(
        bands=_bands(q["bands"]) if "bands" in q else None,
        format=fmt,
        rescale=_rescale(q["rescale"]) if "rescale" in q else None,
        quality=_int("quality", q["quality"], 1, 100) if "quality" in q else None,
    )


def parse_info(items: Sequence[tuple[str, str]]) -> InfoQuery:
    q = query_dict(items, INFO_PARAMS)
    return InfoQuery(q["url"])


def parse_region(items: Sequence[tuple[str, str]]) -> RegionQuery:
    q = query_dict(items, REGION_PARAMS)
    if "window" in q and "bbox" in q:
        raise bad_request("give window or bbox, not both", code="conflicting_parameters")
    if "window" not in q and "bbox" not in q:
        raise bad_request("give one of window and bbox", code="missing_parameter")
    level = _int("level", q["level"], 0, MAX_LEVEL) if "level" in q else None
    width = _int("width", q["width"], 1, MAX_SIDE) if "width" in q else None
    height = _int("height", q["height"], 1, MAX_SIDE) if "height" in q else None
    if level is not None and (width is not None or height is not None):
        raise bad_request("give level or width/height, not both", code="conflicting_parameters")
    return RegionQuery(
        url=q["url"],
        window=_window(q["window"]) if "window" in q else None,
        bbox=_bbox(q["bbox"]) if "bbox" in q else None,
        level=level,
        width=width,
        height=height,
        rendering=_rendering(q),
    )


def parse_preview(items: Sequence[tuple[str, str]], max_size_limit: int) -> PreviewQuery:
    q = query_dict(items, PREVIEW_PARAMS)
    size = _int("max_size", q["max_size"], 1, max_size_limit) if "max_size" in q else None
    return PreviewQuery(
        url=q["url"],
        max_size=size if size is not None else min(1024, max_size_limit),
        rendering=_rendering(q),
    )


def parse_point(items: Sequence[tuple[str, str]]) -> PointQuery:
    q = query_dict(items, POINT_PARAMS)
    has_xy = "x" in q or "y" in q
    has_cr = "col" in q or "row" in q
    if has_xy and has_cr:
        raise bad_request("give x and y, or col and row, not both", code="conflicting_parameters")
    if not has_xy and not has_cr:
        raise bad_request("give x and y, or col and row", code="missing_parameter")
    if has_xy:
        if "x" not in q or "y" not in q:
            raise bad_request("x and y go together", code="missing_parameter")
        return PointQuery(q["url"], xy=(_float("x", q["x"]), _float("y", q["y"])))
    if "col" not in q or "row" not in q:
        raise bad_request("col and row go together", code="missing_parameter")
    return PointQuery(
        q["url"],
        colrow=(_int("col", q["col"], 0, MAX_SIDE * 64), _int("row", q["row"], 0, MAX_SIDE * 64)),
    )


def canonical(items: Sequence[tuple[str, str]]) -> str:
    """A stable rendering of a query, for ETags: sorted, url last."""
    return "&".join(f"{k}={v}" for k, v in sorted(items) if k != "url")


def ensure(condition: bool, detail: str, code: str = "invalid_parameter") -> None:
    if not condition:
        raise Problem(400, code, detail)
