"""Query parameters of every endpoint: declared once, parsed strictly, described to OpenAPI.

Each endpoint's parameters are a tuple of ``Param``; ``openapi.py`` renders the same tuples, so the
document and the parser cannot drift apart. Values are parsed by ``cloudroi.region.args`` (the
rules the CLI uses too) into a ``RegionRequest``; an ``ArgumentError`` becomes a 400 ``Problem``
naming the parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..colormaps import Colormap
from ..outputs import FORMATS
from ..region import args
from ..region.args import MAX_SIDE, ArgumentError
from ..region.plan import RegionRequest
from .problems import Problem, bad_request

__all__ = [
    "as_problem",
    "COLORMAP_NAME_PARAM",
    "COLORMAP_PARAM",
    "EXPRESSION_PARAM",
    "ENDPOINT_PARAMS",
    "InfoQuery",
    "Param",
    "PointQuery",
    "RegionQuery",
    "parse_info",
    "parse_point",
    "parse_preview",
    "parse_region",
]

MAX_LEVEL = 64


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
    "url",
    {"type": "string", "minLength": 1, "maxLength": 4096},
    "The source image: http(s)://, s3://, file:// URL or absolute path, under an allowed prefix.",
    required=True,
)
_BANDS = Param(
    "bands",
    {"type": "string", "pattern": _INT_LIST},
    "1-based band numbers, comma separated (default: all bands; for png/jpeg/webp the first "
    "three colour bands, or band 1).",
    example="1,2,3",
)
_FORMAT = Param(
    "format",
    {"type": "string", "enum": list(FORMATS), "default": "png"},
    "Output encoding: npy and tif keep every band in the source dtype (tif is a GeoTIFF); png, "
    "jpeg and webp are 8-bit renderings of 1 or 3 bands with the validity mask as alpha.",
)
_RESCALE = Param(
    "rescale",
    {"type": "string", "pattern": f"^{_NUM},{_NUM}$"},
    "min,max of source values mapped onto 0..255 in 8-bit renderings (default: uint8 as is, "
    "other dtypes each band's 2nd..98th percentile of the image's statistics, the same for "
    "every answer of the image; the range used is sent in X-Cloudroi-Rescale).",
    example="0,4000",
)
_QUALITY = Param(
    "quality",
    {"type": "integer", "minimum": 1, "maximum": 100},
    "JPEG/WebP quality (default: the service's setting).",
)

COLORMAP_PARAM = Param(
    "colormap",
    {"type": "string", "maxLength": 65536},
    'JSON colormap for a 1-band rendering: {"value": [r, g, b, a], ...} (at most 256 '
    "integer values) or intervals [[[min, max], [r, g, b, a]], ...] (at most 1024, min <= "
    "value < max); `none` shows a paletted file's indices instead of its palette.",
)
COLORMAP_NAME_PARAM = Param(
    "colormap_name",
    {"type": "string", "pattern": "^[A-Za-z0-9_]{1,40}$"},
    "Named colormap (matplotlib's: viridis, magma, terrain...; `_r` reversed) applied to the "
    "0..255 rendering of one band, after rescale.",
    example="viridis",
)
EXPRESSION_PARAM = Param(
    "expression",
    {"type": "string", "minLength": 1, "maxLength": 2048},
    "Band math, rio-tiler's syntax: `(b4-b3)/(b4+b3)`; several outputs separated by `;` "
    "(each one band of the answer). Bands are b1..bN (1-based); numbers, + - * / // % **, "
    "comparisons, & | ~ on conditions and the functions abs, sqrt, exp, log, log10, sin, cos, "
    "where(c, a, b), minimum, maximum, clip(x, lo, hi)... (at most 512 terms). Only the bands "
    "it names are read; the answer is float32 (float64 for float64 sources), valid where every "
    "band it names is valid; NaN becomes 0 and +-inf the largest float. Not with bands/bidx.",
    example="(b4-b3)/(b4+b3)",
)
RESAMPLING_PARAM = Param(
    "resampling",
    {"type": "string", "enum": list(args.RESAMPLINGS), "default": "nearest"},
    "Kernel of a read to an output size (width/height, max_size), as GDAL's RasterIO "
    "resamples: nearest, bilinear, cubic, average or mode. Paletted images take nearest or "
    "mode only.",
    example="average",
)
_COORD_CRS = Param(
    "coord_crs",
    {"type": "string"},
    "CRS of the coordinates given (bbox, x/y), when not the image's: EPSG:n, an OGC URI or "
    "URN, OGC:CRS84 or WKT. The answer stays on the image's own grid.",
    example="EPSG:4326",
)

REGION_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param(
        "window",
        {"type": "string", "pattern": r"^-?\d{1,9},-?\d{1,9},\d{1,9},\d{1,9}$"},
        "col_off,row_off,width,height in pixels of `level` (level 0 when width/height are "
        "given). Exactly one of window and bbox. Outside the image only with boundless.",
        example="0,0,256,256",
    ),
    Param(
        "boundless",
        {"type": "boolean", "default": False},
        "Let a window reach outside the image: outside pixels are nodata (else 0) and "
        "invalid (transparent in renderings).",
    ),
    Param(
        "bbox",
        {"type": "string", "pattern": f"^{_NUM},{_NUM},{_NUM},{_NUM}$"},
        "minx,miny,maxx,maxy in the image's CRS. Parts outside the image are filled with "
        "nodata and transparent.",
        example="500000,4100000,510000,4110000",
    ),
    Param(
        "level",
        {"type": "integer", "minimum": 0, "maximum": MAX_LEVEL},
        "Resolution level: 0 is full resolution, 1.. the overviews. Not with width/height.",
    ),
    Param(
        "width",
        {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "Output width; the best overview is read and resampled (see resampling).",
    ),
    Param(
        "height",
        {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "Output height; with only one of width/height the aspect ratio is kept.",
    ),
    RESAMPLING_PARAM,
    _BANDS,
    EXPRESSION_PARAM,
    _FORMAT,
    _RESCALE,
    _QUALITY,
    _COORD_CRS,
    COLORMAP_PARAM,
    COLORMAP_NAME_PARAM,
)
PREVIEW_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param(
        "max_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_SIDE, "default": 1024},
        "Longest side of the preview, in pixels.",
    ),
    RESAMPLING_PARAM,
    _BANDS,
    EXPRESSION_PARAM,
    _FORMAT,
    _RESCALE,
    _QUALITY,
    COLORMAP_PARAM,
    COLORMAP_NAME_PARAM,
)
POINT_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    Param("x", {"type": "number"}, "X in the image's CRS (with y)."),
    Param("y", {"type": "number"}, "Y in the image's CRS (with x)."),
    Param("col", {"type": "integer", "minimum": 0}, "Pixel column of level 0 (with row)."),
    Param("row", {"type": "integer", "minimum": 0}, "Pixel row of level 0 (with col)."),
    _COORD_CRS,
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
    """How an answer is encoded: the format, the value range(s) mapped onto 8 bits (one, or
    one per band), the JPEG/WebP quality, whether the mask is PNG/WebP alpha (``alpha``) and
    the last band of an npy answer (``mask_band``, rio-tiler's layout)."""

    format: str = "png"
    rescale: tuple[float, float] | tuple[tuple[float, float], ...] | None = None
    quality: int | None = None
    alpha: bool = True
    mask_band: bool = False
    #: a Colormap, True for the source's palette (if any), False for none
    colormap: Colormap | bool = True


@dataclass(frozen=True, slots=True)
class InfoQuery:
    url: str


@dataclass(frozen=True, slots=True)
class RegionQuery:
    """A region endpoint's query: the source, the region asked for, how to render it."""

    url: str
    request: RegionRequest = field(default_factory=RegionRequest)
    rendering: Rendering = field(default_factory=Rendering)
    coord_crs: str | None = None


@dataclass(frozen=True, slots=True)
class PointQuery:
    url: str
    xy: tuple[float, float] | None = None
    colrow: tuple[int, int] | None = None
    coord_crs: str | None = None


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def as_problem() -> Iterator[None]:
    """An argument the shared rules refuse is a 400 with the rule's code."""
    try:
        yield
    except ArgumentError as exc:
        raise bad_request(str(exc), code=exc.code) from exc


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


def _optional(q: dict[str, str], name: str, parse: Any, *extra: Any) -> Any:
    return parse(name, q[name], *extra) if name in q else None


def _rendering(q: dict[str, str]) -> Rendering:
    return Rendering(
        format=args.output_format(q.get("format", "png")),
        rescale=args.rescale(q["rescale"]) if "rescale" in q else None,
        quality=args.quality(q["quality"]) if "quality" in q else None,
        colormap=args.colormap(q.get("colormap"), q.get("colormap_name")),
    )


def parse_info(items: Sequence[tuple[str, str]]) -> InfoQuery:
    q = query_dict(items, INFO_PARAMS)
    return InfoQuery(q["url"])


def parse_region(items: Sequence[tuple[str, str]]) -> RegionQuery:
    q = query_dict(items, REGION_PARAMS)
    with as_problem():
        if "window" not in q and "bbox" not in q:
            raise ArgumentError("window", "give one of window and bbox", "missing_parameter")
        request = RegionRequest(
            window=args.window(q["window"]) if "window" in q else None,
            bbox=args.bbox(q["bbox"]) if "bbox" in q else None,
            level=_optional(q, "level", args.integer, 0, MAX_LEVEL),
            width=_optional(q, "width", args.integer, 1, MAX_SIDE),
            height=_optional(q, "height", args.integer, 1, MAX_SIDE),
            bands=args.bands(q["bands"]) if "bands" in q else None,
            boundless=args.boolean("boundless", q["boundless"]) if "boundless" in q else False,
            expression=args.expression(q["expression"]) if "expression" in q else None,
            resampling=args.resampling(q.get("resampling", "nearest")),
        )
        coord = args.crs(q["coord_crs"], "coord_crs") if "coord_crs" in q else None
        if coord is not None and request.bbox is None:
            raise ArgumentError("coord_crs", "coord_crs goes with bbox", "conflicting_parameters")
        return RegionQuery(q["url"], request, _rendering(q), coord)


def parse_preview(items: Sequence[tuple[str, str]], max_size_limit: int) -> RegionQuery:
    q = query_dict(items, PREVIEW_PARAMS)
    with as_problem():
        size = _optional(q, "max_size", args.integer, 1, max_size_limit)
        request = RegionRequest(
            max_size=size if size is not None else min(1024, max_size_limit),
            bands=args.bands(q["bands"]) if "bands" in q else None,
            expression=args.expression(q["expression"]) if "expression" in q else None,
            resampling=args.resampling(q.get("resampling", "nearest")),
        )
        return RegionQuery(q["url"], request, _rendering(q))


def parse_point(items: Sequence[tuple[str, str]]) -> PointQuery:
    q = query_dict(items, POINT_PARAMS)
    has_xy = "x" in q or "y" in q
    has_cr = "col" in q or "row" in q
    if has_xy and has_cr:
        raise bad_request("give x and y, or col and row, not both", code="conflicting_parameters")
    if not has_xy and not has_cr:
        raise bad_request("give x and y, or col and row", code="missing_parameter")
    with as_problem():
        if has_xy:
            if "x" not in q or "y" not in q:
                raise ArgumentError("x", "x and y go together", "missing_parameter")
            coord = args.crs(q["coord_crs"], "coord_crs") if "coord_crs" in q else None
            xy = (args.number("x", q["x"]), args.number("y", q["y"]))
            return PointQuery(q["url"], xy=xy, coord_crs=coord)
        if "col" not in q or "row" not in q:
            raise ArgumentError("col", "col and row go together", "missing_parameter")
        if "coord_crs" in q:
            raise ArgumentError(
                "coord_crs", "coord_crs goes with x and y", "conflicting_parameters"
            )
        limit = MAX_SIDE * 64
        return PointQuery(
            q["url"],
            colrow=(
                args.integer("col", q["col"], 0, limit),
                args.integer("row", q["row"], 0, limit),
            ),
        )


def canonical(items: Sequence[tuple[str, str]]) -> str:
    """A stable rendering of a query, for ETags: sorted, url last."""
    return "&".join(f"{k}={v}" for k, v in sorted(items) if k != "url")


def ensure(condition: bool, detail: str, code: str = "invalid_parameter") -> None:
    if not condition:
        raise Problem(400, code, detail)
