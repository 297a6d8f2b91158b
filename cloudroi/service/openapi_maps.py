"""The map endpoints in the OpenAPI document: tiles, TileJSON, WMTS, bbox, lon/lat points and
TiTiler's ``/cog`` routes, from the parameter declarations ``service.mapparams`` parses with.

OpenAPI has no optional path segments, so each route is listed in its concrete forms (a tile
with and without its format, ``@{scale}x``; TileJSON with and without a matrix set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import mapparams as mp
from .params import INFO_PARAMS, Param
from .statsparams import STATISTICS_PARAMS

__all__ = ["map_paths"]

Operation = Callable[[str, str, Sequence[Param], Sequence[dict[str, Any]], dict[str, Any]], Any]

_NUMBER = {"type": "string", "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_TMS = _path(
    "tileMatrixSetId",
    {"type": "string", "enum": ["WebMercatorQuad", "WorldCRS84Quad", "WGS1984Quad"]},
    "An OGC tile matrix set.",
)
_ZXY = [
    _path("z", {"type": "integer", "minimum": 0, "maximum": 24}, "Zoom (tile matrix)."),
    _path("x", {"type": "integer", "minimum": 0, "maximum": 1 << 24}, "Column."),
    _path("y", {"type": "integer", "minimum": 0, "maximum": 1 << 24}, "Row."),
]
_FORMAT = _path(
    "format", {"type": "string", "enum": ["png", "jpeg", "jpg", "webp", "npy", "tif"]}, "Format."
)
_SCALE = _path("scale", {"type": "integer", "minimum": 1, "maximum": 4}, "Tile scale: 256 x N.")
_BOX = [_path(n, _NUMBER, f"Bounding box {n}.") for n in ("minx", "miny", "maxx", "maxy")]
_SIZE = [
    _path("width", {"type": "integer", "minimum": 1, "maximum": 100000}, "Output width."),
    _path("height", {"type": "integer", "minimum": 1, "maximum": 100000}, "Output height."),
]
_LONLAT = [
    _path("lon", _NUMBER, "Longitude (or x in coord_crs)."),
    _path("lat", _NUMBER, "Latitude (or y in coord_crs)."),
]

_JSON = {"type": "object"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_BAND_STATISTICS = {
    "type": "object",
    "required": ["min", "max", "mean", "count", "sum", "std", "median", "histogram"],
    "properties": {
        **dict.fromkeys(
            (
                "min",
                "max",
                "mean",
                "count",
                "sum",
                "std",
                "median",
                "majority",
                "minority",
                "unique",
                "valid_percent",
                "masked_pixels",
                "valid_pixels",
            ),
            _NUMBER_OR_NULL,
        ),
        "histogram": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {"type": "array", "items": {"type": "number"}},
        },
        "description": {"type": "string"},
    },
    "additionalProperties": _NUMBER_OR_NULL,
}
_STATISTICS = {
    "description": "Statistics of each band, keyed b1, b2... (rio-tiler's BandStatistics).",
    "content": {
        "application/json": {"schema": {"type": "object", "additionalProperties": _BAND_STATISTICS}}
    },
}


def _image(description: str) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    types = ["image/png", "image/jpeg", "image/webp", "application/x-npy"]
    return {
        "description": description,
        "content": {**dict.fromkeys(types, binary), "image/tiff; application=geotiff": binary},
    }


def _json(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _JSON}}}


def _tiles(op: Operation, prefix: str) -> dict[str, Any]:
    ok = _image("The tile.")
    base = f"{prefix}/tiles/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}"
    summary = "A web-map tile of the image in a tile matrix set (204: off the image)."
    forms = {
        base: [_TMS, *_ZXY],
        base + ".{format}": [_TMS, *_ZXY, _FORMAT],
        base + "@{scale}x.{format}": [_TMS, *_ZXY, _SCALE, _FORMAT],
    }
    return {p: op(p, summary, mp.TILE_PARAMS, pp, ok) for p, pp in forms.items()}


def _tilesets(op: Operation, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tj = _json("TileJSON 3.0.0: tile URL template, bounds (degrees), zoom range.")
    wm = {
        "description": "OGC WMTS 1.0.0 capabilities (RESTful).",
        "content": {"application/xml": {"schema": {"type": "string"}}},
    }
    for name, ok, summary in (
        ("tilejson.json", tj, "The image as a tile layer for web maps (TileJSON)."),
        ("WMTSCapabilities.xml", wm, "The image as a WMTS layer (QGIS, ArcGIS, OpenLayers)."),
    ):
        if not prefix:
            out[f"/{name}"] = op(f"/{name}", summary, mp.TILEJSON_PARAMS, [], ok)
        path = f"{prefix}/{{tileMatrixSetId}}/{name}"
        out[path] = op(path, summary, mp.TILEJSON_PARAMS, [_TMS], ok)
    return out


def _parts(op: Operation, prefix: str) -> dict[str, Any]:
    ok = _image("The bounding box on the output grid.")
    box = f"{prefix}/bbox/{{minx}},{{miny}},{{maxx}},{{maxy}}"
    summary = "A bounding box (in coord_crs) on the grid of dst_crs."
    point = f"{prefix}/point/{{lon}},{{lat}}"
    return {
        box + ".{format}": op(box + ".{format}", summary, mp.BBOX_PARAMS, [*_BOX, _FORMAT], ok),
        box + "/{width}x{height}.{format}": op(
            box + "/{width}x{height}.{format}",
            summary,
            mp.BBOX_PARAMS,
            [*_BOX, *_SIZE, _FORMAT],
            ok,
        ),
        point: op(point, "Values at a lon/lat point.", mp.POINT_PARAMS, _LONLAT, _json("Values.")),
    }


def map_paths(op: Operation) -> dict[str, Any]:
    """The map endpoints, each built by ``op(path, summary, query params, path params, ok)``."""
    paths: dict[str, Any] = {}
    for prefix in ("", "/cog"):
        paths.update(_tiles(op, prefix))
        paths.update(_tilesets(op, prefix))
        paths.update(_parts(op, prefix))
    preview = "The whole image, at most max_size pixels on a side, or in dst_crs."
    paths["/cog/info"] = op(
        "/cog/info", "rio-tiler's Info document of the image.", INFO_PARAMS, [], _json("Info.")
    )
    summary = "Statistics of each band (as rio-tiler's Reader.statistics), on the preview read."
    for path in ("/statistics", "/cog/statistics"):
        paths[path] = op(path, summary, STATISTICS_PARAMS, [], _STATISTICS)
    for path, pp in (
        ("/cog/preview", []),
        ("/cog/preview.{format}", [_FORMAT]),
        ("/cog/preview/{width}x{height}.{format}", [*_SIZE, _FORMAT]),
    ):
        paths[path] = op(path, preview, mp.PREVIEW_PARAMS, pp, _image("The preview."))
    return paths
