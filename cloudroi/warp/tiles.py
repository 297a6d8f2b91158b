"""Web-map tiles as rio-tiler 9 serves them from GDAL: tile grids, levels, zoom range, existence.

rio-tiler's ``Reader.tile()`` builds a WarpedVRT over the dataset and reads it into the tile:

* the VRT (``utils.get_vrt_transform``) covers the tile bounds at the dataset's native
  resolution in the TMS CRS (``calculate_default_transform``, with rio-tiler's +/-85.06 latitude
  clamp for EPSG:4326 files going to Web Mercator), or at the tile's resolution when that is
  finer (overzoom); sizes by Python's ``round``;
* GDAL picks the VRT's implicit overview for the read (:func:`~.overview.vrt_overview_level`,
  with rio-tiler's ``resampling_method`` as the RasterIO resampling: nearest by default) and
  warps that source level straight into the tile grid;
* the VRT has an alpha band added unless the dataset has nodata or an alpha band: a one-band VRT
  is warped in one chunk, otherwise block by block (see :func:`~.plan.plan_tile`).

The zoom range is rio-tiler's: maxzoom is ``tms.zoom_for_res`` of the native resolution in the
TMS CRS; minzoom that resolution times ``2 ** n`` for the theoretical overview count ``n`` that
brings the reprojected size down to the tile size (rasterio's ``get_maximum_overview_level``),
not the file's actual overviews. A tile exists when its bounds, densified (21 points per edge)
into the dataset CRS, intersect the dataset bounds; bounds that do not transform finitely count
as intersecting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from morecantile import Tile, TileMatrixSet

from .grid import Grid
from .overview import vrt_overview_level
from .suggest import suggested_warp_output
from .transform import crs_of, same_crs, transformer

__all__ = [
    "rio_tiler_vrt_bands",
    "rio_tiler_vrt_size",
    "tile_exists",
    "tile_grid",
    "tile_level",
    "zoom_range",
]

#: rio-tiler's latitude clamp for EPSG:4326 datasets reprojected to Web Mercator.
_MERCATOR_LAT = 85.06


def tms_crs(tms: TileMatrixSet) -> str:
    """The TMS CRS as a CRS string (``EPSG:n`` when it has a code, else WKT)."""
    epsg = tms.crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else tms.crs.to_wkt()


def tile_grid(tms: TileMatrixSet, x: int, y: int, z: int, tilesize: int | None = None) -> Grid:
    """The destination grid of tile ``z/x/y`` of ``tms``, ``tilesize`` pixels square (the
    matrix's tile width by default)."""
    b = tms.xy_bounds(Tile(x, y, z))
    size = tilesize or tms.matrix(z).tileWidth
    return Grid.from_bounds(tms_crs(tms), (b.left, b.bottom, b.right, b.top), size, size)


def _native_grid(src: Grid, dst_crs: str) -> Grid:
    """rio-tiler's native grid of the dataset in the TMS CRS, with its latitude clamp."""
    if crs_of(src.crs).to_epsg() == 4326 and crs_of(dst_crs).to_epsg() == 3857:
        minx, miny, maxx, maxy = src.bounds
        if miny < -_MERCATOR_LAT or maxy > _MERCATOR_LAT:
            miny, maxy = max(miny, -_MERCATOR_LAT), min(maxy, _MERCATOR_LAT)
            c, r = src.to_pixel(np.array([minx, maxx]), np.array([maxy, miny]))
            w, h = round(float(c[1] - c[0])), round(float(r[1] - r[0]))
            src = Grid.from_bounds(src.crs, (minx, miny, maxx, maxy), w, h)
    return suggested_warp_output(src, dst_crs)


def rio_tiler_vrt_size(src: Grid, tile: Grid) -> tuple[int, int]:
    """``(width, height)`` of the WarpedVRT rio-tiler builds to read ``tile`` from ``src``."""
    native = _native_grid(src, tile.crs)
    w_res, h_res = native.transform[1], native.transform[5]
    minx, miny, maxx, maxy = tile.bounds
    tw, th = tile.transform[1], tile.transform[5]
    if abs(w_res) > abs(tw):
        w_res = tw
    if abs(h_res) > abs(th):
        h_res = th
    return max(1, round((maxx - minx) / w_res)), max(1, round((miny - maxy) / h_res))


def rio_tiler_vrt_bands(bands: int, nodata: float | None, has_alpha: bool = False) -> int:
    """Bands of the WarpedVRT rio-tiler reads a tile from: the source bands, plus the alpha band
    it asks GDAL to add when the source has neither nodata nor an alpha band."""
    return bands + (0 if nodata is not None or has_alpha else 1)


def tile_level(
    src: Grid, levels: Sequence[tuple[int, int]], tile: Grid, io_resampling: str = "nearest"
) -> int:
    """The source level rio-tiler's ``Reader.tile()`` ends up warping ``tile`` from."""
    size = rio_tiler_vrt_size(src, tile)
    return vrt_overview_level(levels, size, (tile.width, tile.height), io_resampling)


def zoom_range(tms: TileMatrixSet, src: Grid) -> tuple[int, int]:
    """rio-tiler's ``(minzoom, maxzoom)`` of a dataset whose level 0 is ``src``."""
    crs = tms_crs(tms)
    native = src if same_crs(src.crs, crs) else suggested_warp_output(src, crs)
    res = max(abs(native.transform[1]), abs(native.transform[5]))
    tilesize = tms.tileMatrices[0].tileWidth
    level, factor = 0, 1
    while min(native.width // factor, native.height // factor) > tilesize:
        factor *= 2
        level += 1
    return int(tms.zoom_for_res(res * 2**level)), int(tms.zoom_for_res(res))


def tile_exists(tms: TileMatrixSet, src: Grid, x: int, y: int, z: int) -> bool:
    """Whether rio-tiler's ``tile_exists`` is true for tile ``z/x/y`` of a dataset on ``src``."""
    tile = tile_grid(tms, x, y, z)
    b = tile.bounds
    if not same_crs(tile.crs, src.crs):
        b = transformer(tile.crs, src.crs).transform_bounds(*b, densify_pts=21, errcheck=False)
    if not all(math.isfinite(v) for v in b):
        return True
    minx, miny, maxx, maxy = src.bounds
    return b[0] < maxx and b[2] > minx and b[3] > miny and b[1] < maxy
