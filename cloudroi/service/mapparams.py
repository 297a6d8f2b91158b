"""Query parameters of the map endpoints (tiles, TileJSON, WMTS, bbox, lon/lat points) and of
the TiTiler-compatible ``/cog`` routes: declared once (``Param``, rendered by OpenAPI), parsed
with the shared rules of ``cloudroi.region.args``.

Map clients add parameters of their own to tile URLs (cache busters, access tokens): those are
ignored here, never an error, and never part of a tile's ETag. Parameters TiTiler defines that
would change the pixels and that cloudroi does not implement yet (``algorithm``...), or not on
that endpoint (``expression`` where an endpoint does not declare it), are refused with 400
rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..colormaps import Colormap
from ..region import Expression, args
from ..region.args import MAX_SIDE, ArgumentError
from .params import (
    COLORMAP_NAME_PARAM,
    COLORMAP_PARAM,
    EXPRESSION_PARAM,
    URL_PARAM,
    Param,
    as_problem,
)
from .problems import bad_request

__all__ = [
    "BBOX_PARAMS",
    "MapQuery",
    "PointQuery",
    "TILEJSON_PARAMS",
    "TILE_PARAMS",
    "Style",
    "TileSetQuery",
    "parse_map",
    "parse_point",
    "parse_tileset",
]

#: Largest tile side (tilesize, or 256 x scale).
MAX_TILESIZE = 2048
#: TiTiler parameters that change the pixels and are not implemented here yet.
UNSUPPORTED = (
    "color_formula",
    "algorithm",
    "algorithm_params",
    "post_process",
)
#: TiTiler parameters that change the pixels and that only some endpoints implement: refused
#: where the endpoint does not declare them.
DECLARED_ONLY = ("expression",)
#: TiTiler parameters that change pixels unless they hold their neutral value: accepted at
#: that value, refused (not silently dropped) otherwise.
NEUTRAL = {
    "buffer": ("0", "0.0"),
    "padding": ("0",),
    "unscale": ("false", "False", "0"),
}
_NUM = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"

_BIDX = Param(
    "bidx",
    {"type": "string", "pattern": r"^[1-9]\d{0,4}(,[1-9]\d{0,4}){0,255}$"},
    "1-based band numbers; repeat it (bidx=1&bidx=2) or list them (bidx=1,2). `bands` is an alias.",
    example="1",
)
_BANDS = Param(
    "bands", {"type": "string", "pattern": r"^[1-9]\d{0,4}(,[1-9]\d{0,4}){0,255}$"}, "As bidx."
)
_RESCALE = Param(
    "rescale",
    {"type": "string", "pattern": f"^{_NUM},{_NUM}$"},
    "min,max of source values mapped onto 0..255 in 8-bit renderings; repeat it for one range "
    "per band (default: uint8 as is, other dtypes each band's 2nd..98th percentile of the "
    "image's statistics, shared by every tile; sent in X-Cloudroi-Rescale).",
    example="0,4000",
)
_NODATA = Param(
    "nodata",
    {"type": "string"},
    "Nodata value overriding the source's (a number, nan, inf or -inf).",
)
_RESAMPLING = Param(
    "resampling",
    {"type": "string", "enum": list(args.IO_RESAMPLINGS), "default": "nearest"},
    "RasterIO resampling: decides which overview a tile is read from (GDAL's rule); on the "
    "image's own grid (preview, bbox) also the kernel of the read (nearest, bilinear, cubic, "
    "average or mode there).",
)
_REPROJECT = Param(
    "reproject",
    {"type": "string", "enum": list(args.KERNELS), "default": "nearest"},
    "Warp kernel from the source overview to the output grid.",
)
_RETURN_MASK = Param(
    "return_mask",
    {"type": "boolean", "default": True},
    "Add the validity mask: alpha in PNG/WebP, the last band in npy.",
)
_FORMAT = Param(
    "format",
    {"type": "string", "enum": ["png", "jpeg", "jpg", "webp", "npy", "tif"]},
    "Output format when the path has no extension (default: png where a pixel is invalid, "
    "jpeg where none is, for uint8 data).",
)
_QUALITY = Param("quality", {"type": "integer", "minimum": 1, "maximum": 100}, "JPEG/WebP quality.")
_TILESIZE = Param(
    "tilesize",
    {"type": "integer", "minimum": 1, "maximum": MAX_TILESIZE},
    "Tile side in pixels (default 256, times the path's @2x scale).",
)
_COORD_CRS = Param(
    "coord_crs",
    {"type": "string"},
    "CRS of the coordinates in the path (default: EPSG:4326, longitude/latitude): EPSG:n, an "
    "OGC URI or URN, OGC:CRS84 or WKT.",
    example="EPSG:4326",
)
_DST_CRS = Param(
    "dst_crs",
    {"type": "string"},
    "CRS of the output grid (default: the image's). Another CRS reprojects with `reproject`.",
    example="EPSG:3857",
)
_MAX_SIZE = Param(
    "max_size",
    {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
    "Longest output side (default: the image's resolution in the output CRS).",
)
_WIDTH = Param("width", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}, "Output width.")
_HEIGHT = Param("height", {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}, "Output height.")
_TMS = Param(
    "tms",
    {"type": "string", "default": "WebMercatorQuad"},
    "Tile matrix set (when the path does not name one); `TileMatrixSetId` is an alias.",
)

STYLE_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    _BIDX,
    _BANDS,
    EXPRESSION_PARAM,
    _NODATA,
    _RESAMPLING,
    _REPROJECT,
    _RESCALE,
    _RETURN_MASK,
    _FORMAT,
    _QUALITY,
    COLORMAP_PARAM,
    COLORMAP_NAME_PARAM,
)
TILE_PARAMS: tuple[Param, ...] = (*STYLE_PARAMS, _TILESIZE)
TILEJSON_PARAMS: tuple[Param, ...] = (
    *STYLE_PARAMS,
    _TILESIZE,
    _TMS,
    Param("tile_format", {"type": "string"}, "Format of the tiles the document points to."),
    Param("tile_scale", {"type": "integer", "minimum": 1, "maximum": 4}, "Tile scale (@Nx)."),
    Param("minzoom", {"type": "integer", "minimum": 0, "maximum": 30}, "Overrides minzoom."),
    Param("maxzoom", {"type": "integer", "minimum": 0, "maximum": 30}, "Overrides maxzoom."),
)
BBOX_PARAMS: tuple[Param, ...] = (
    *STYLE_PARAMS,
    _COORD_CRS,
    _DST_CRS,
    _MAX_SIZE,
    _WIDTH,
    _HEIGHT,
)
POINT_PARAMS: tuple[Param, ...] = (
    URL_PARAM,
    _BIDX,
    _BANDS,
    EXPRESSION_PARAM,
    _NODATA,
    _COORD_CRS,
)
PREVIEW_PARAMS: tuple[Param, ...] = (*STYLE_PARAMS, _DST_CRS, _MAX_SIZE, _WIDTH, _HEIGHT)

#: names accepted as another parameter's
_ALIASES = {"TileMatrixSetId": "tms", "tileMatrixSetId": "tms"}
_REPEATABLE = frozenset({"bidx", "bands", "rescale", "p", "c"})


# --------------------------------------------------------------------------------------------
# parsed values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Style:
    """Which bands, how they are resampled, and how the answer is encoded."""

    bands: tuple[int, ...] | None = None
    nodata: float | None = None
    io_resampling: str = "nearest"
    #: band math (not with bands): its outputs are the bands shown
    expression: Expression | None = None
    kernel: str = "nearest"
    rescale: tuple[tuple[float, float], ...] = ()
    return_mask: bool = True
    format: str | None = None
    quality: int | None = None
    #: a Colormap, True for the source's palette (if any), False for none
    colormap: Colormap | bool = True

    def native_resampling(self) -> str:
        """The kernel of a read on the image's own grid: ``io_resampling`` when it is one the
        native read does, else a 400."""
        with as_problem():
            return args.resampling(self.io_resampling)


@dataclass(frozen=True, slots=True)
class MapQuery:
    """A map endpoint's query: the source, the style, the grid options, and the canonical text
    of what was understood (the ETag's input: unknown parameters are not in it)."""

    url: str
    style: Style
    values: dict[str, str]
    canonical: str


@dataclass(frozen=True, slots=True)
class TileSetQuery:
    map: MapQuery
    tms: str
    tilesize: int | None
    tile_format: str | None
    tile_scale: int
    minzoom: int | None
    maxzoom: int | None
    passed_on: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class PointQuery:
    url: str
    bands: tuple[int, ...] | None
    nodata: float | None
    coord_crs: str
    canonical: str
    expression: Expression | None = None


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


def lenient(
    items: Sequence[tuple[str, str]], params: Sequence[Param]
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The known parameters (values listed, repeats kept where a parameter repeats) and the
    (name, value) pairs of the known ones in order. Unknown parameters are dropped; a known one
    that changes pixels but is not implemented is a 400."""
    known = {p.name for p in params}
    out: dict[str, list[str]] = {}
    kept: list[tuple[str, str]] = []
    for raw, value in items:
        name = _ALIASES.get(raw, raw)
        unsupported = name in UNSUPPORTED or (name in DECLARED_ONLY and name not in known)
        if (unsupported and value) or value.strip() not in NEUTRAL.get(name, (value.strip(),)):
            raise bad_request(
                f"parameter {name!r} is not supported by this service yet",
                code="unsupported_parameter",
            )
        if name not in known:
            continue
        if name in out and name not in _REPEATABLE:
            raise bad_request(f"parameter {name!r} given more than once")
        out.setdefault(name, []).append(value)
        kept.append((name, value))
    for p in params:
        if p.required and not out.get(p.name):
            raise bad_request(f"parameter {p.name!r} is required", code="missing_parameter")
    return out, kept


def _nodata(text: str) -> float:
    lowered = text.strip().lower()
    if lowered in ("nan", "inf", "-inf"):
        return float(lowered)
    return args.number("nodata", text)


def _bands(q: dict[str, list[str]]) -> tuple[int, ...] | None:
    values = q.get("bidx", []) + q.get("bands", [])
    if not values:
        return None
    picked: list[int] = []
    for v in values:
        picked.extend(args.bands(v, "bidx"))
    if len(picked) > args.MAX_BANDS:
        raise ArgumentError("bidx", f"at most {args.MAX_BANDS} bands", "invalid_bands")
    return tuple(picked)


def _one(q: dict[str, list[str]], name: str) -> str | None:
    values = q.get(name)
    return values[-1] if values else None


def _expression(q: dict[str, list[str]]) -> Expression | None:
    text = _one(q, "expression")
    return args.expression(text) if text and text.strip() else None  # TiTiler: "" is none


def style(q: dict[str, list[str]], fmt: str | None = None) -> Style:
    """The style of a parsed query; ``fmt`` is the format the path names (it wins)."""
    text_fmt = fmt or _one(q, "format")
    nodata, quality = _one(q, "nodata"), _one(q, "quality")
    mask = _one(q, "return_mask")
    expression, bands = _expression(q), _bands(q)
    if expression is not None and bands is not None:
        raise ArgumentError(
            "expression", "give bidx or expression, not both", "conflicting_parameters"
        )
    return Style(
        bands=bands,
        expression=expression,
        nodata=_nodata(nodata) if nodata is not None else None,
        io_resampling=args.io_resampling(_one(q, "resampling") or "nearest"),
        kernel=args.kernel(_one(q, "reproject") or "nearest"),
        rescale=tuple(args.rescale(r) for r in q.get("rescale", [])),
        return_mask=args.boolean("return_mask", mask) if mask is not None else True,
        format=args.output_format(text_fmt) if text_fmt else None,
        quality=args.quality(quality) if quality is not None else None,
        colormap=args.colormap(_one(q, "colormap"), _one(q, "colormap_name")),
    )


def _canonical(kept: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(kept) if k != "url")


def parse_map(
    items: Sequence[tuple[str, str]], params: Sequence[Param], fmt: str | None = None
) -> MapQuery:
    q, kept = lenient(items, params)
    with as_problem():
        values = {k: v[-1] for k, v in q.items()}
        return MapQuery(values["url"], style(q, fmt), values, _canonical(kept))


def parse_tileset(items: Sequence[tuple[str, str]], tms: str | None) -> TileSetQuery:
    """A TileJSON or WMTS query; the style parameters are passed on to the tile URLs."""
    q, kept = lenient(items, TILEJSON_PARAMS)
    with as_problem():
        values = {k: v[-1] for k, v in q.items()}
        mq = MapQuery(values["url"], style(q), values, _canonical(kept))
        tile_format = values.get("tile_format")
        ints = {
            k: args.integer(k, values[k], lo, hi)
            for k, lo, hi in (
                ("tilesize", 1, MAX_TILESIZE),
                ("tile_scale", 1, 4),
                ("minzoom", 0, 30),
                ("maxzoom", 0, 30),
            )
            if k in values
        }
        skip = {"tms", "tile_format", "tile_scale", "minzoom", "maxzoom", "tilesize"}
        return TileSetQuery(
            map=mq,
            tms=tms or values.get("tms", "WebMercatorQuad"),
            tilesize=ints.get("tilesize"),
            tile_format=args.output_format(tile_format) if tile_format else None,
            tile_scale=ints.get("tile_scale", 1),
            minzoom=ints.get("minzoom"),
            maxzoom=ints.get("maxzoom"),
            passed_on=[(k, v) for k, v in kept if k not in skip],
        )


def parse_point(items: Sequence[tuple[str, str]]) -> PointQuery:
    q, kept = lenient(items, POINT_PARAMS)
    with as_problem():
        nodata = _one(q, "nodata")
        coord = _one(q, "coord_crs")
        bands, expression = _bands(q), _expression(q)
        if expression is not None and bands is not None:
            raise ArgumentError(
                "expression", "give bidx or expression, not both", "conflicting_parameters"
            )
        return PointQuery(
            url=q["url"][-1],
            bands=bands,
            nodata=_nodata(nodata) if nodata is not None else None,
            coord_crs=args.crs(coord, "coord_crs") if coord else "EPSG:4326",
            canonical=_canonical(kept),
            expression=expression,
        )
