"""Answers in TiTiler's shapes: ``/cog/info`` (rio-tiler's Info document), lon/lat points
(``/point/{lon},{lat}`` and ``/cog/point/{lon},{lat}``) and ``/cog/preview``, so a front end
written for TiTiler's ``/cog`` router works against cloudroi unchanged. Tiles, TileJSON, WMTS
and bbox are ``service.tiles``' handlers on both path families.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from ..image import Image
from ..region import PointData, RegionRequest, args, georef
from ..region.describe import parse_gdal_metadata, rio_tiler_info
from .answers import cached_or, check_blocks, with_image
from .mapparams import PREVIEW_PARAMS, PointQuery, parse_map, parse_point
from .messages import CoreRequest, CoreResponse, json_response
from .params import INFO_PARAMS, as_problem, query_dict
from .problems import bad_request
from .regions import regional_answer
from .state import ServiceState
from .tiles import native_rendering, planned_region, warped_answer

__all__ = ["info", "lonlat_point", "preview"]


async def info(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """rio-tiler's ``Info`` of the source (bounds in its CRS, CRS as an OGC URI...)."""
    q = query_dict([(k, v) for k, v in req.query if k == "url"], INFO_PARAMS)

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            doc = await asyncio.to_thread(rio_tiler_info, img)
            return json_response(doc)

        return await cached_or(state, req, img, make)

    return await with_image(state, q["url"], work)


def _value(v: Any, valid: bool) -> Any:
    if not valid or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v


def _expression_point(
    img: Image, data: PointData, q: PointQuery, coordinates: list[float]
) -> dict[str, Any]:
    """The point document of ``q.expression``'s outputs at the pixel: valid where the pixel is
    and no band the expression names holds the nodata value (``q.nodata``, else the image's)."""
    expr = q.expression
    assert expr is not None
    expr.check_bands(img.count)
    picked = np.array([data.values[b - 1] for b in expr.bands], img.dtype)
    nodata = q.nodata if q.nodata is not None else img.nodata
    valid = data.valid
    if nodata is not None:
        same = np.isnan(picked) if math.isnan(nodata) else picked == nodata
        valid = valid and not bool(same.any())
    out = expr.evaluate(picked[:, np.newaxis, np.newaxis])[:, 0, 0]
    return {
        "coordinates": coordinates,
        "values": [_value(float(v), valid) for v in out],
        "band_names": [f"b{i + 1}" for i in range(expr.count)],
        "band_descriptions": list(expr.outputs),
        **{k: v for k, v in data.as_dict().items() if k not in ("values", "valid")},
        "dtype": str(out.dtype),
        "nodata": None,
        "valid": valid,
    }


async def lonlat_point(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """The values at (lon, lat), or at (x, y) in ``coord_crs``: TiTiler's document (values of
    an invalid pixel are null) with cloudroi's pixel address, validity and dtype."""
    q = parse_point(req.query)
    with as_problem():
        lon = args.number("lon", req.path_params["lon"])
        lat = args.number("lat", req.path_params["lat"])
    cfg = state.config

    async def work(img: Image) -> CoreResponse:
        async def make() -> CoreResponse:
            check_blocks(state, img)
            data = await georef.point_at(
                img, lon, lat, q.coord_crs, max_tiles=cfg.max_tiles, max_bytes=cfg.max_fetch_bytes
            )
            if q.expression is not None:
                return json_response(_expression_point(img, data, q, [lon, lat]))
            bands = q.bands or tuple(range(1, img.count + 1))
            for b in bands:
                if not 1 <= b <= img.count:
                    raise bad_request(f"bands are 1..{img.count}, got {b}", code="invalid_bands")
            values = [data.values[b - 1] for b in bands]
            valid = data.valid
            if q.nodata is not None:
                valid = valid and any(v != q.nodata for v in values)
            meta = await asyncio.to_thread(parse_gdal_metadata, img.structure.gdal_metadata)
            doc = {
                "coordinates": [lon, lat],
                "values": [_value(v, valid) for v in values],
                "band_names": [f"b{b}" for b in bands],
                "band_descriptions": [meta.role(b - 1, "description") or f"b{b}" for b in bands],
                **{k: v for k, v in data.as_dict().items() if k not in ("values", "valid")},
                "valid": valid,
            }
            return json_response(doc)

        return await cached_or(state, req, img, make, key=q.canonical)

    return await with_image(state, q.url, work)


async def preview(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """``/cog/preview[.{format}]`` and ``/cog/preview/{width}x{height}.{format}``: the whole
    image at most ``max_size`` (1024) pixels on its longest side, or in ``dst_crs``."""
    q = parse_map(req.query, PREVIEW_PARAMS, req.path_params.get("format"))
    v, p = q.values, req.path_params
    with as_problem():
        width = p.get("width") or v.get("width")
        height = p.get("height") or v.get("height")
        w = args.integer("width", width, 1, args.MAX_SIDE) if width else None
        h = args.integer("height", height, 1, args.MAX_SIDE) if height else None
        size = v.get("max_size")
        max_size = (
            args.integer("max_size", size, 1, state.config.max_preview_size) if size else None
        )
        dst_crs = args.crs(v["dst_crs"], "dst_crs") if "dst_crs" in v else None
    if max_size is None and w is None and h is None:
        max_size = min(1024, state.config.max_preview_size)

    async def work(img: Image) -> CoreResponse:
        if dst_crs is None or georef.same_crs(img, dst_crs):
            region = RegionRequest(
                width=w,
                height=h,
                max_size=max_size,
                bands=q.style.bands,
                expression=q.style.expression,
                resampling=q.style.native_resampling(),
            )
            return await regional_answer(req, state, img, region, native_rendering(q.style))
        bounds = await asyncio.to_thread(georef.bounds_in, img, dst_crs)
        longest = max_size or max(w or 0, h or 0)
        shape = (h, w) if h and w else georef.max_size_shape(img, bounds, dst_crs, longest)
        plan = await planned_region(state, img, bounds, dst_crs, shape, q.style)
        return await cached_or(
            state, req, img, lambda: warped_answer(state, img, plan, q.style), key=q.canonical
        )

    return await with_image(state, q.url, work)
