"""cloudroi's tile path without the service around it: a bare aiohttp app answering
``/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url=`` with ``cloudroi.open`` + ``Image.tile`` +
``ImageData.render("png")`` (in the decode pool), one shared ``Context`` (the process-wide caches,
as the service uses them), an open per request (header cache and ETag check as the service's).

The tile benchmark's ``cloudroi-lib`` reader: beside the ``cloudroi`` row (``cloudroi serve``) it
shows what the service layer (allowlist, limits, ETags, problem answers) adds to a tile.

    python -m benchmarks.tile_standin --port 8081
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

import cloudroi
from cloudroi import Context, TileOutsideBoundsError
from cloudroi.outputs import DEFAULT_PNG_LEVEL

CONTEXT = web.AppKey("context", Context)


async def tile(request: web.Request) -> web.Response:
    z, x, y = (int(request.match_info[k]) for k in ("z", "x", "y"))
    url = request.query["url"]
    ctx = request.app[CONTEXT]
    async with cloudroi.open(url, context=ctx) as img:
        try:
            data = await img.tile(x, y, z)
        except TileOutsideBoundsError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
    loop = asyncio.get_running_loop()
    encoded = await loop.run_in_executor(
        ctx.executor, lambda: data.render("png", png_level=DEFAULT_PNG_LEVEL)
    )
    return web.Response(body=encoded.body, content_type=encoded.media_type)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app[CONTEXT] = Context()

    async def close(app: web.Application) -> None:
        await app[CONTEXT].close()

    app.on_cleanup.append(close)
    app.router.add_get("/tiles/WebMercatorQuad/{z}/{x}/{y}.png", tile)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
