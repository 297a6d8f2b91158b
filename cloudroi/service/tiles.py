"""Map endpoints: web-map tiles, TileJSON, WMTS capabilities, bounding boxes in any CRS and
lon/lat points, over the region layer's georeferenced reads (``cloudroi.region.georef``).

The same handlers answer the native paths (``/tiles/...``, ``/tilejson.json``, ``/bbox/...``)
and TiTiler's ``/cog/...`` paths; ``service.cog`` adds the answers whose JSON shape is
TiTiler's own. Tiles carry strong ETags derived from the source's version and the parameters
understood (a map client's cache busters and tokens change neither), and a long
Cache-Control, so a CDN in front of the service answers repeats. A tile off the image is 204
No Content, or a transparent tile when the service is configured so.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import imagecodecs
import numpy as np

from ..errors import TileOutsideBoundsError
from ..image import Image
from ..outputs import CONTENT_TYPES, RENDERED, render_bands
from ..region import ImageData, RegionRequest, RequestBytes, args, georef
from ..region.args import ArgumentError
from ..region.plan import expression_bands
from .answers import (
    cached_or,
    check_blocks,
    check_pixels,
    encoded_response,
    holding,
    with_image,
)
from .mapparams import (
    BBOX_PARAMS,
    TILE_PARAMS,
    MapQuery,
    Style,
    TileSetQuery,
    parse_map,
    parse_tileset,
)
from .messages import CoreRequest, CoreResponse, json_response
from .params import Rendering, as_problem
from .problems import bad_request
from .regions import regional_answer
from .state import ServiceState
from .stretch import Stretch, default_stretch, report_stretch

__all__ = ["base_url", "bbox", "native_rendering", "tile", "tilejson", "warped_answer", "wmts"]

DEFAULT_TMS = "WebMercatorQuad"
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")


# --------------------------------------------------------------------------------------------
# rendering a warped result
# --------------------------------------------------------------------------------------------


def _shown_bands(img: Image, style: Style, fmt: str | None) -> tuple[int, ...] | None:
    """The bands read: for an 8-bit rendering the 1 or 3 it shows, else those asked for (with
    an expression, those it refers to)."""
    if style.expression is not None:
        return expression_bands(img, style.expression, fmt is None or fmt in RENDERED)
    if fmt is not None and fmt not in RENDERED:
        return style.bands
    try:
        return tuple(render_bands(img.count, style.bands, img.alpha_band))
    except ValueError as exc:
        raise bad_request(f"{exc}; use format=npy or tif for other band counts") from exc


def _auto_format(data: ImageData, style: Style) -> str:
    """png where some pixel is invalid (it needs alpha), jpeg where every pixel is valid."""
    if style.format is not None:
        return style.format
    if data.colormap_for(style.colormap) is not None:
        return "png"  # a colormap's colours may be transparent
    return "png" if data.mask is not None and not data.mask.all() else "jpeg"


async def _render(
    state: ServiceState, data: ImageData, style: Style, stretch: Stretch | None = None
) -> CoreResponse:
    cfg = state.config
    fmt = _auto_format(data, style)
    quality = style.quality or (cfg.jpeg_quality if fmt == "jpeg" else cfg.webp_quality)
    rescale = style.rescale or stretch
    render = functools.partial(
        data.render,
        fmt,
        rescale=rescale,
        quality=quality,
        png_level=cfg.png_level,
        alpha=style.return_mask,
        mask_band=style.return_mask,
        colormap=style.colormap,
    )
    try:
        encoded = await asyncio.get_running_loop().run_in_executor(state.context.executor, render)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    resp = report_stretch(encoded_response(cfg.max_response_bytes, encoded), encoded, stretch)
    bounds = data.bounds
    if bounds is not None:
        resp.headers["Content-Bbox"] = ",".join(repr(float(v)) for v in bounds)
    if data.crs is not None and data.crs.epsg is not None:
        resp.headers["Content-Crs"] = f"<http://www.opengis.net/def/crs/EPSG/0/{data.crs.epsg}>"
    return resp


async def warped_answer(state: ServiceState, img: Image, plan: Any, style: Style) -> CoreResponse:
    """Check the limits on a warp plan, then read, warp and render it within the budget."""
    cfg = state.config
    check_pixels(state, plan.dst.width, plan.dst.height, style.format or "png")
    check_blocks(state, img)
    bands = _shown_bands(img, style, style.format)
    expr = style.expression
    count = len(bands) if bands else img.count - (img.alpha_band is not None)
    if expr is not None:
        count = expr.count
    fmt = style.format or "png"
    need = georef.estimate_warp(img, plan, fmt, count + style.return_mask, expr)
    stretch = None
    if style.format is None or style.format in RENDERED:
        stretch = await default_stretch(
            state,
            img,
            bands,
            nodata=style.nodata,
            rescale=style.rescale,
            colormap=style.colormap,
            expression=expr,
        )

    async def work() -> CoreResponse:
        data = await georef.read_warped(
            img,
            plan,
            bands=None if expr is not None else bands,
            max_tiles=cfg.max_tiles,
            max_bytes=cfg.max_fetch_bytes,
            executor=state.context.executor,
            src_nodata=style.nodata,
            expression=expr,
        )
        return await _render(state, data, style, stretch)

    return await holding(state, need, work)


# --------------------------------------------------------------------------------------------
# tiles
# --------------------------------------------------------------------------------------------


@functools.cache
def _transparent(size: int, fmt: str) -> bytes:
    pixels = np.zeros((size, size, 4), np.uint8)
    if fmt == "webp":
        return bytes(imagecodecs.webp_encode(pixels, lossless=True))
    return bytes(imagecodecs.png_encode(pixels, level=9))


def _outside(state: ServiceState, style: Style, tilesize: int) -> CoreResponse:
    """A tile off the image: 204, or a transparent PNG/WebP tile when configured so."""
    fmt = style.format or "png"
    if state.config.tile_outside == "transparent" and fmt in ("png", "webp"):
        body = _transparent(tilesize, fmt)
        return CoreResponse(200, {"Content-Type": CONTENT_TYPES[fmt]}, body)
    return CoreResponse(204)


def _tile_address(req: CoreRequest, q: MapQuery) -> tuple[str, int, int, int, int]:
    p = req.path_params
    with as_problem():
        z, x, y = args.tile_index(p["z"], p["x"], p["y"])
        scale = int(p.get("scale", "1"))
        size = q.values.get("tilesize")
        tilesize = args.integer("tilesize", size, 1, 2048) if size else 256 * scale
    return p.get("tms", DEFAULT_TMS), z, x, y, tilesize


async def tile(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """``/tiles/{tms}/{z}/{x}/{y}[@{scale}x][.{format}]``."""
    q = parse_map(req.query, TILE_PARAMS, req.path_params.get("format"))
    tms, z, x, y, tilesize = _tile_address(req, q)
    georef.tile_matrix_set(tms)  # an unknown set is a 400 before storage is touched
    style = q.style
    cfg = state.config

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            try:
                plan = await georef.plan_tile_async(
                    img, tms, x, y, z, tilesize, style.kernel, style.io_resampling, style.nodata
                )
            except TileOutsideBoundsError:
                return _outside(state, style, tilesize)
            return await warped_answer(state, img, plan, style)

        key = f"{tilesize}|{q.canonical}"
        return await cached_or(state, req, img, make, max_age=cfg.tile_max_age, key=key)

    return await with_image(state, q.url, work)


# --------------------------------------------------------------------------------------------
# tile sets: TileJSON and WMTS
# --------------------------------------------------------------------------------------------


def base_url(req: CoreRequest, state: ServiceState) -> str:
    """The service's URL as the client reached it: the configured public URL, else the
    request's Host (and X-Forwarded-Proto), checked."""
    if state.config.public_url:
        return state.config.public_url.rstrip("/")
    host = req.headers.get("host", "")
    if not _HOST.match(host):
        raise bad_request("the request has no usable Host header to build tile URLs from")
    proto = req.headers.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    return f"{'https' if proto == 'https' else 'http'}://{host}"


def _prefix(req: CoreRequest) -> str:
    return "/cog" if req.path.startswith("/cog/") else ""


def _tiles_url(
    req: CoreRequest,
    state: ServiceState,
    tms: str,
    coords: str,
    scale: int,
    fmt: str | None,
    query: Sequence[tuple[str, str]],
) -> str:
    suffix = (f"@{scale}x" if scale != 1 else "") + (f".{fmt}" if fmt else "")
    path = f"{base_url(req, state)}{_prefix(req)}/tiles/{tms}/{coords}{suffix}"
    return f"{path}?{urlencode(list(query))}" if query else path


def _name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or url


async def tilejson(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """``/tilejson.json`` and ``/{tms}/tilejson.json``: the layer for map clients."""
    tq = parse_tileset(req.query, req.path_params.get("tms"))
    georef.tile_matrix_set(tq.tms)
    cog = _prefix(req) == "/cog"
    tilesize = tq.tilesize or (512 if cog else None)  # TiTiler's default for its TileJSON

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            from ..region.tilesets import tilejson as document

            lo, hi = await asyncio.to_thread(img.zoom_range, tq.tms)
            bounds = await asyncio.to_thread(img.bounds_in, 4326)
            query = list(tq.passed_on) + ([("tilesize", str(tilesize))] if tilesize else [])
            url = _tiles_url(
                req, state, tq.tms, "{z}/{x}/{y}", tq.tile_scale, tq.tile_format, query
            )
            minzoom, maxzoom = _zoom_range(tq, georef.tile_matrix_set(tq.tms), lo, hi)
            doc = document(
                name=_name(img.url), tiles_url=url, bounds=bounds, minzoom=minzoom, maxzoom=maxzoom
            )
            doc["data_type"] = str(img.dtype)
            return json_response(doc, _vary(state))

        return await cached_or(state, req, img, make)

    return await with_image(state, tq.map.url, work)


def _zoom_range(tq: TileSetQuery, tms: Any, lo: int, hi: int) -> tuple[int, int]:
    """The zooms a tile set document lists: the image's (clamped to the matrix set's) unless
    minzoom/maxzoom say otherwise, which must lie in the matrix set's and be in order."""
    first, last = tms.minzoom, tms.maxzoom
    for name, value in (("minzoom", tq.minzoom), ("maxzoom", tq.maxzoom)):
        if value is not None and not first <= value <= last:
            raise bad_request(f"{name} must be in {tq.tms}'s {first}..{last}, got {value}")
    if tq.minzoom is not None and tq.maxzoom is not None and tq.minzoom > tq.maxzoom:
        raise bad_request(f"minzoom {tq.minzoom} is above maxzoom {tq.maxzoom}")
    minzoom = min(max(lo, first), last) if tq.minzoom is None else tq.minzoom
    maxzoom = min(max(hi, first), last) if tq.maxzoom is None else tq.maxzoom
    if tq.minzoom is not None:  # one zoom given: the other follows it
        return minzoom, max(minzoom, maxzoom)
    return min(minzoom, maxzoom), maxzoom


def _vary(state: ServiceState) -> dict[str, str]:
    """Documents holding URLs built from the Host header vary with it."""
    return {} if state.config.public_url else {"Vary": "Host, X-Forwarded-Proto"}


async def wmts(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """``/WMTSCapabilities.xml`` and ``/{tms}/WMTSCapabilities.xml`` (OGC WMTS 1.0.0 RESTful)."""
    tq = parse_tileset(req.query, req.path_params.get("tms"))
    matrix_set = georef.tile_matrix_set(tq.tms)
    fmt = tq.tile_format or "png"
    if fmt not in RENDERED:
        raise bad_request("tile_format of a WMTS layer is png, jpeg or webp")

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            from ..region.tilesets import wmts_capabilities

            lo, hi = await asyncio.to_thread(img.zoom_range, tq.tms)
            minzoom, maxzoom = _zoom_range(tq, matrix_set, lo, hi)
            bounds = await asyncio.to_thread(img.bounds_in, 4326)
            template = _tiles_url(
                req,
                state,
                tq.tms,
                "{TileMatrix}/{TileCol}/{TileRow}",
                tq.tile_scale,
                fmt,
                tq.passed_on,
            )
            epsg = matrix_set.crs.to_epsg()
            xml = wmts_capabilities(
                title="cloudroi",
                layer=_name(img.url),
                tms=matrix_set,
                bounds=bounds,
                minzoom=minzoom,
                maxzoom=maxzoom,
                tile_template=template,
                media_type=CONTENT_TYPES[fmt],
                supported_crs=f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else str(matrix_set.crs),
            )
            headers = {"Content-Type": "application/xml", **_vary(state)}
            return CoreResponse(200, headers, xml.encode())

        return await cached_or(state, req, img, make)

    return await with_image(state, tq.map.url, work)


# --------------------------------------------------------------------------------------------
# bounding boxes in any CRS
# --------------------------------------------------------------------------------------------


def _bbox_geometry(
    req: CoreRequest, q: MapQuery
) -> tuple[tuple[float, float, float, float], str, str | None, tuple[int, int] | None, int | None]:
    """The box, its CRS, the output CRS, the output (height, width) and max_size."""
    p, v = req.path_params, q.values
    with as_problem():
        box = georef.checked_bounds(
            [args.number(k, p[k]) for k in ("minx", "miny", "maxx", "maxy")]
        )
        coord_crs = args.crs(v["coord_crs"], "coord_crs") if "coord_crs" in v else "EPSG:4326"
        dst_crs = args.crs(v["dst_crs"], "dst_crs") if "dst_crs" in v else None
        width = p.get("width") or v.get("width")
        height = p.get("height") or v.get("height")
        shape = None
        if width or height:
            if not (width and height):
                raise ArgumentError("width", "give width and height together", "missing_parameter")
            shape = (
                args.integer("height", height, 1, args.MAX_SIDE),
                args.integer("width", width, 1, args.MAX_SIDE),
            )
        max_size = (
            args.integer("max_size", v["max_size"], 1, args.MAX_SIDE) if "max_size" in v else None
        )
    if shape is not None and max_size is not None:
        raise bad_request("give max_size or width/height, not both", code="conflicting_parameters")
    return box, coord_crs, dst_crs, shape, max_size


async def planned_region(
    state: ServiceState,
    img: Image,
    bounds: tuple[float, float, float, float],
    crs: Any,
    shape: tuple[int, int] | None,
    style: Style,
) -> Any:
    """The warp plan of ``bounds`` onto a ``shape`` grid of ``crs`` (None: at the resolution
    GDAL suggests), planned holding what planning holds (``georef.WARP_PLAN_BYTES`` an output
    pixel) of the memory budget: a grid the service could never answer is refused before any
    planning, not after seconds of it."""
    if shape is None:  # the resolution GDAL suggests
        grid = await asyncio.to_thread(georef.region_grid, img, bounds, crs)
        height, width = grid.height, grid.width
    else:
        height, width = shape
    check_pixels(state, width, height, style.format or "png")
    pixels = width * height
    need = RequestBytes(data=pixels * georef.WARP_PLAN_BYTES, mask=0, rendering=0, body=0)
    return await holding(
        state,
        need,
        lambda: georef.plan_region_async(
            img,
            bounds,
            crs,
            shape=shape,
            resampling=style.kernel,
            max_pixels=state.config.max_output_pixels,
        ),
    )


async def bbox(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """``/bbox/{minx},{miny},{maxx},{maxy}[/{width}x{height}].{format}``: the box (in
    ``coord_crs``, default lon/lat) on the grid of ``dst_crs`` (default: the image's)."""
    q = parse_map(req.query, BBOX_PARAMS, req.path_params.get("format"))
    box, coord_crs, dst_crs, shape, max_size = _bbox_geometry(req, q)

    async def work(img: Image) -> CoreResponse:
        target = dst_crs or georef.crs_text(georef.image_crs(img))
        dst_box = await asyncio.to_thread(georef.carry_bounds, box, coord_crs, target)
        native = georef.same_crs(img, target) and q.style.nodata is None
        if native:
            region = RegionRequest(
                bbox=dst_box,
                width=shape[1] if shape else None,
                height=shape[0] if shape else None,
                max_size=max_size,
                bands=q.style.bands,
                expression=q.style.expression,
                resampling=q.style.native_resampling(),
            )
            return await regional_answer(req, state, img, region, native_rendering(q.style))
        plan = await planned_region(
            state,
            img,
            dst_box,
            target,
            shape or georef.max_size_shape(img, dst_box, target, max_size),
            q.style,
        )
        return await cached_or(
            state, req, img, lambda: warped_answer(state, img, plan, q.style), key=q.canonical
        )

    return await with_image(state, q.url, work)


def native_rendering(style: Style) -> Rendering:
    rescale: Any = None
    if len(style.rescale) == 1:
        rescale = style.rescale[0]
    elif style.rescale:
        rescale = style.rescale
    return Rendering(
        format=style.format or "png",
        rescale=rescale,
        quality=style.quality,
        alpha=style.return_mask,
        mask_band=style.return_mask,
        colormap=style.colormap,
    )
