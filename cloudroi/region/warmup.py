"""Warming the map path: what the first web-map request would otherwise load while its
client waits (``cloudroi serve`` and the Lambda handler run it before the first request)."""

from __future__ import annotations

from ..errors import MissingExtraError
from .georef import require_geo, tile_matrix_set

__all__ = ["warm_up"]


def warm_up() -> bool:
    """Load what the first map request would otherwise load while clients wait: cloudroi.warp,
    pyproj's database, morecantile's WebMercatorQuad, and one planned tile from a UTM and a
    lon/lat grid (pyproj transformers, numpy paths). CPU-bound: run it in a thread. False when
    the geo extra is missing (nothing to load)."""
    try:
        require_geo("web-map tiles")
    except MissingExtraError:
        return False
    from ..warp import Grid, plan_tile

    tms = tile_matrix_set("WebMercatorQuad")
    for crs, transform in (
        ("EPSG:32633", (500000.0, 10.0, 0.0, 6100000.0, 0.0, -10.0)),
        ("EPSG:4326", (15.0, 0.0001, 0.0, 55.0, 0.0, -0.0001)),
    ):
        src = Grid(crs, transform, 1024, 1024)
        plan_tile(src, [(1024, 1024)], tms, 8888, 5166, 14, "nearest", block_shape=(512, 512))
    return True
