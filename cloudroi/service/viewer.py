"""The map viewer: ``/map?url=...`` is a page showing the source on a web map, built from the
service's own TileJSON; its script (Leaflet, vendored with its license under ``static/``) is served
by the service too, so nothing is fetched from anywhere else at run time.
"""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
from functools import cache
from importlib import resources
from urllib.parse import urlencode

from .messages import CoreRequest, CoreResponse
from .problems import Problem
from .state import ServiceState

__all__ = ["map_page", "static_file"]

STATIC = "/static"
#: Files under static/ the service serves (the vendored map library and its license).
_SERVED = frozenset(
    {
        "leaflet/leaflet.js",
        "leaflet/leaflet.css",
        "leaflet/LICENSE",
        "leaflet/VENDORED.md",
        "leaflet/images/layers.png",
        "leaflet/images/layers-2x.png",
        "leaflet/images/marker-icon.png",
        "leaflet/images/marker-icon-2x.png",
        "leaflet/images/marker-shadow.png",
    }
)


@cache
def _read(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


async def static_file(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """One of the vendored files: long-cached (they change only with the package)."""
    name = req.path_params["name"]
    if name not in _SERVED:
        raise Problem(404, "not_found", f"no static file {name[:80]!r}")
    body = await asyncio.to_thread(_read, name)
    media = mimetypes.guess_type(name)[0] or "text/plain; charset=utf-8"
    if media.startswith("text/") and "charset" not in media:
        media += "; charset=utf-8"
    return CoreResponse(
        200, {"Content-Type": media, "Cache-Control": "public, max-age=86400"}, body
    )


async def map_page(req: CoreRequest, state: ServiceState) -> CoreResponse:
    """The viewer for the source and rendering options in the query (passed on to TileJSON)."""
    query = [(k, v) for k, v in req.query if k != "tms"]
    if not any(k == "url" for k, _ in query):
        raise Problem(400, "missing_parameter", "parameter 'url' is required")
    prefix = ""
    if req.path.startswith("/cog/"):
        prefix = "/cog/" + req.path_params.get("tms", "WebMercatorQuad")
        if not any(k == "tilesize" for k, _ in query):
            query.append(("tilesize", "256"))  # the page's tiles; TiTiler's TileJSON says 512
    tilejson = f"{prefix}/tilejson.json?{urlencode(query)}"
    template = (await asyncio.to_thread(_read, "map.html")).decode()
    page = template.replace("{static}", html.escape(STATIC)).replace(
        "{tilejson_url}", json.dumps(tilejson).replace("<", "\\u003c")
    )
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-cache",
        # the page runs only its own script, and fetches only from this service
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'",
    }
    return CoreResponse(200, headers, page.encode())
