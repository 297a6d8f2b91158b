"""TiTiler for the tile benchmark: ``titiler.core``'s TilerFactory mounted at ``/cog``, as
TiTiler's own documentation builds an application from it, with its exception handlers (a tile
outside the image is a 404, as TiTiler answers it).

    python -m uvicorn benchmarks.titiler_app:app --workers 1 --port 8000

The GDAL settings come from the environment (``benchmarks.tiles.TITILER_GDAL_ENV``).
"""

from __future__ import annotations

from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

app = FastAPI(title="TiTiler (tile benchmark)")
app.include_router(TilerFactory().router, prefix="/cog")
add_exception_handlers(app, DEFAULT_STATUS_CODES)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
