"""The georeferenced verbs of ``Image``: bounds in any CRS, reprojected regions, web-map tiles,
zoom ranges and points. Each is a thin call into ``cloudroi.region.georef`` (which plans with
``cloudroi.warp`` and reads with the Image's own pipeline); they need the ``geo`` extra (pyproj,
morecantile), imported on first use.

    async with cloudroi.open(url) as img:
        west, south, east, north = img.bounds_in(4326)
        tile = await img.tile(x, y, z)                       # WebMercatorQuad, 256 x 256
        box = await img.read_region((w, s, e, n), crs=4326, shape=(512, 512))
        value = await img.point(lon, lat)                    # crs=4326
        stats = await img.statistics()                       # {"b1": BandStatistics, ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ..errors import TileOutsideBoundsError, WindowError
from . import georef
from .data import ImageData, PointData

if TYPE_CHECKING:
    from ..image import Image
    from .expression import Expression
    from .stats import BandStatistics

__all__ = ["GeoVerbs"]

Bounds = tuple[float, float, float, float]
DEFAULT_TMS = "WebMercatorQuad"


def _bands(bands: int | Sequence[int] | None, count: int) -> tuple[int, ...] | None:
    if bands is None:
        return None
    picked = (bands,) if isinstance(bands, int) else tuple(bands)
    if not picked or any(not 1 <= b <= count for b in picked):
        from ..errors import BandError

        raise BandError(f"bands {list(picked)} are not all in 1..{count}")
    return picked


def _expression(value: str | Expression | None, bands: object = None) -> Expression | None:
    """``value`` parsed (``ExpressionError`` when it does not parse or comes with bands)."""
    if value is None:
        return None
    from .expression import ExpressionError, parse_expression

    if bands is not None:
        raise ExpressionError("give bands or expression, not both")
    return value if not isinstance(value, str) else parse_expression(value)


class GeoVerbs:
    """Mixed into ``Image``."""

    @property
    def _image(self) -> Image:
        return cast("Image", self)

    def bounds_in(self, crs: Any = 4326) -> Bounds:
        """(minx, miny, maxx, maxy) of the image in ``crs`` (EPSG code, "EPSG:n", WKT, PROJJSON
        or a ``cloudroi.CRS``), its edges densified as GDAL's transform_bounds does."""
        return georef.bounds_in(self._image, crs)

    def zoom_range(self, tms: str = DEFAULT_TMS) -> tuple[int, int]:
        """(minzoom, maxzoom) of the image in the tile matrix set ``tms``, from its resolution
        and overviews, as rio-tiler derives them."""
        from ..warp import zoom_range

        return zoom_range(georef.tile_matrix_set(tms), georef.source_grid(self._image))

    @property
    def minzoom(self) -> int:
        """The lowest WebMercatorQuad zoom worth asking for (see ``zoom_range``)."""
        return self._image.zoom_range()[0]

    @property
    def maxzoom(self) -> int:
        """The WebMercatorQuad zoom of the image's full resolution (see ``zoom_range``)."""
        return self._image.zoom_range()[1]

    def tile_exists(self, x: int, y: int, z: int, tms: str = DEFAULT_TMS) -> bool:
        """Whether tile ``z/x/y`` of ``tms`` touches the image."""
        from ..warp import tile_exists

        matrix_set = georef.tile_matrix_set(tms)
        try:
            georef.check_tile(matrix_set, x, y, z)
        except (WindowError, TileOutsideBoundsError):
            return False
        return tile_exists(matrix_set, georef.source_grid(self._image), x, y, z)

    async def tile(
        self,
        x: int,
        y: int,
        z: int,
        tms: str = DEFAULT_TMS,
        tilesize: int = 256,
        *,
        resampling: str = "nearest",
        io_resampling: str = "nearest",
        bands: int | Sequence[int] | None = None,
        max_tiles: int | None = None,
        max_bytes: int | None = None,
        expression: str | Expression | None = None,
    ) -> ImageData:
        """Tile ``z/x/y`` of ``tms`` as ``tilesize`` x ``tilesize`` pixels, as rio-tiler's
        ``Reader.tile()`` makes it with GDAL (``resampling``: the warp kernel, rio-tiler's
        ``reproject_method``; ``io_resampling``: how the overview is chosen, its
        ``resampling_method``). Only the blocks the tile's footprint touches are read. Pixels
        no valid source pixel reaches have mask 0. A tile off the image raises
        ``TileOutsideBoundsError``. ``expression`` (band math, ``"(b4-b3)/(b4+b3)"``; not with
        ``bands``) makes each of its outputs one float band, valid where all bands it refers
        to are."""
        expr = _expression(expression, bands)
        if not 1 <= tilesize <= 4096:
            raise WindowError(f"tilesize must be in 1..4096, got {tilesize}")
        plan = await georef.plan_tile_async(
            self._image, tms, x, y, z, tilesize, resampling, io_resampling
        )
        return await georef.read_warped(
            self._image,
            plan,
            bands=_bands(bands, self._image.count),
            max_tiles=max_tiles,
            max_bytes=max_bytes,
            executor=self._image.context.executor,
            expression=expr,
        )

    async def read_region(
        self,
        bounds: Sequence[float],
        crs: Any = None,
        *,
        shape: tuple[int, int] | None = None,
        resolution: float | tuple[float, float] | None = None,
        resampling: str = "nearest",
        bands: int | Sequence[int] | None = None,
        level: int | None = None,
        nodata: float | int | None = None,
        max_tiles: int | None = None,
        max_bytes: int | None = None,
        expression: str | Expression | None = None,
    ) -> ImageData:
        """``bounds`` (minx, miny, maxx, maxy) in ``crs`` (the image's when None) as an
        ImageData on that CRS's grid: ``shape=(height, width)`` or ``resolution`` (CRS units
        per pixel; default: the resolution GDAL suggests for the image in ``crs``). The source
        overview is the one ``gdalwarp -ovr AUTO`` picks (or ``level``). Pixels outside the
        image or invalid in it have mask 0 and hold ``nodata`` (default: the image's nodata,
        else 0). ``expression``: band math, as in ``tile``."""
        expr = _expression(expression, bands)
        box = georef.checked_bounds(bounds)
        plan = await georef.plan_region_async(
            self._image,
            box,
            crs,
            shape=shape,
            resolution=resolution,
            resampling=resampling,
            level=level,
        )
        data = await georef.read_warped(
            self._image,
            plan,
            bands=_bands(bands, self._image.count),
            max_tiles=max_tiles,
            max_bytes=max_bytes,
            executor=self._image.context.executor,
            expression=expr,
        )
        return georef.refill(data, nodata)

    async def point(self, x: float, y: float, crs: Any = 4326) -> PointData:
        """The values of every band at (x, y) in ``crs`` (longitude, latitude by default; None
        for the image's CRS), with GDAL's pixel-edge convention: a point on an edge belongs to
        the pixel right of and below it. Outside the image: ``WindowError``."""
        return await georef.point_at(self._image, x, y, crs)

    async def statistics(
        self,
        bands: int | Sequence[int] | None = None,
        *,
        max_size: int | None = 1024,
        level: int | None = None,
        percentiles: Sequence[int] | None = (2, 98),
        histogram_bins: int | Sequence[float] = 10,
        histogram_range: Sequence[float] | None = None,
        categorical: bool = False,
        categories: Sequence[float] | None = None,
        nodata: float | int | None = None,
        max_tiles: int | None = None,
        max_bytes: int | None = None,
        expression: str | Expression | None = None,
    ) -> dict[str, BandStatistics]:
        """Statistics of each band (default: all but alpha) as rio-tiler's
        ``Reader.statistics()`` computes them: {"b1": BandStatistics, ...}, on the image (or
        ``level``) read to fit ``max_size`` (None: full size) from the overview GDAL picks,
        nearest neighbour. Invalid pixels (``nodata``, default the image's; else alpha or
        the internal mask; NaN) are left out. ``histogram_bins``: a count or the bin edges;
        ``categorical`` counts each distinct value (or each of ``categories``) instead. With
        ``expression`` (not with ``bands``): each output's, keyed "b1", "b2"... in output order
        and described by its expression, over the pixels where every band it names is valid."""
        from dataclasses import replace

        from .stats import check_options
        from .summary import measure, plan_statistics

        expr = _expression(expression, bands)
        opts = check_options(percentiles, histogram_bins, histogram_range, categorical, categories)
        if expr is not None:
            expr.check_bands(self._image.count)
            bands = expr.bands
        plan = replace(plan_statistics(self._image, bands, max_size, level), expression=expr)
        return await measure(
            self._image, plan, opts, nodata=nodata, max_tiles=max_tiles, max_bytes=max_bytes
        )

    async def default_rescale(
        self,
        bands: int | Sequence[int] | None = None,
        *,
        nodata: float | int | None = None,
        max_tiles: int | None = None,
        max_bytes: int | None = None,
        expression: str | Expression | None = None,
    ) -> tuple[tuple[float, float], ...] | None:
        """The stretch a rendering without ``rescale`` uses: one (low, high) per band (default:
        all but alpha; or per output of ``expression``), each band's 2nd..98th percentile of
        ``statistics()``, computed once per object version and shared by every request in the
        Context (``cloudroi.region.stretch``). None for uint8 data (but for an expression's
        outputs) and when a band has no valid pixel."""
        from .stretch import default_rescale

        expr = _expression(expression, bands)
        picked = (bands,) if isinstance(bands, int) else bands
        return await default_rescale(
            self._image,
            picked,
            nodata=nodata,
            max_tiles=max_tiles,
            max_bytes=max_bytes,
            expression=expr,
        )
