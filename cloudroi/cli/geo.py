"""The georeferenced side of the ``cloudroi`` command: ``tile``, ``point``, ``read`` onto another
grid (``--bbox-crs``, ``--dst-crs``, ``--resolution``, ``--width``/``--height``,
``--resampling``) and what ``info`` adds (the WebMercatorQuad zoom range, the bounds in
longitude/latitude). Each is a few lines over the ``Image`` verbs of ``cloudroi.region.verbs``,
which need the ``geo`` extra (pyproj, morecantile).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    BandError,
    CRSError,
    MissingExtraError,
    NotGeoreferencedError,
    WindowError,
)
from ..image import Image
from ..opening import open_image
from ..outputs import RENDERED, format_for_path, render_bands
from ..region import ArgumentError, Encoded, ImageData, plan_point, read_point
from ..region import args as region_args
from ..region.stretch import colours_raw_values
from .common import UsageError, context, empty_note, mib, out, rendering_note

__all__ = [
    "WARP_OPTIONS",
    "geo_info",
    "point",
    "read_reprojected",
    "render_output",
    "tile",
    "wants_warp",
]

#: The ``read`` options that put a --bbox on a grid of its own (a warp) instead of reading the
#: image's pixels as they are.
WARP_OPTIONS = ("bbox_crs", "dst_crs", "resolution", "width", "height")
Bounds = tuple[float, float, float, float]
T = TypeVar("T")


def _bands_for(
    img: Image, bands: tuple[int, ...] | None, fmt: str, expression: Any = None
) -> tuple[int, ...] | None:
    """The bands read: those asked for, or for an 8-bit rendering the 1 or 3 it shows; None
    with an ``expression`` (checked here: the bands it names, its outputs' count)."""
    if expression is not None:
        from ..region.plan import expression_bands

        try:
            expression_bands(img, expression, fmt in RENDERED)
        except BandError as exc:
            raise UsageError(str(exc)) from exc
        return None
    if bands is not None:
        for b in bands:
            if not 1 <= b <= img.count:
                raise UsageError(f"bands are numbered 1..{img.count} in this source, got {b}")
    if fmt not in RENDERED:
        return bands
    try:
        return tuple(render_bands(img.count, bands, img.alpha_band))
    except ValueError as exc:
        raise UsageError(f"{exc}; use a .npy or .tif output for other band counts") from exc


async def render_output(img: Image, data: ImageData, fmt: str, args: argparse.Namespace) -> Encoded:
    """``data`` encoded as ``fmt``; a rendering without --rescale of other than uint8 data
    uses the image's default stretch (``Image.default_rescale``), as the service does."""
    rescale: Any = tuple(args.rescale) if args.rescale else None
    expr = data.extra.get("expression")
    raw = colours_raw_values(img, data.bands, args.colormap, expr)
    if rescale is None and fmt in RENDERED and not raw:
        bands = None if expr else data.bands
        rescale = await img.default_rescale(bands, expression=expr)
    return await asyncio.get_running_loop().run_in_executor(
        img.context.executor,
        lambda: data.render(fmt, rescale=rescale, quality=args.quality, colormap=args.colormap),
    )


# --------------------------------------------------------------------------------------------
# tile
# --------------------------------------------------------------------------------------------


def tile_format(args: argparse.Namespace) -> str:
    """--format, else the -o file's extension, else png (stdout, or a name without one)."""
    named = None
    if args.output and args.output != "-" and Path(args.output).suffix:
        try:
            named = format_for_path(args.output)
        except ValueError as exc:
            if args.format is None:
                raise UsageError(f"{exc}, or give --format") from exc
    if args.format is not None and named is not None and named != args.format:
        raise UsageError(f"--format {args.format} contradicts the extension of {args.output}")
    return args.format or named or "png"


def _tile_address(args: argparse.Namespace) -> tuple[int, int, int]:
    """Z, X, Y as integers (``region_args.tile_index``, as the service) inside the tile
    matrix set's zoom levels and matrix (``georef.check_tile``), before anything is read."""
    from ..region import georef

    try:
        z, x, y = region_args.tile_index(args.z, args.x, args.y)
        georef.check_tile(georef.tile_matrix_set(args.tms), x, y, z)
    except (ArgumentError, WindowError) as exc:
        raise UsageError(str(exc)) from exc
    return z, x, y


async def tile(args: argparse.Namespace) -> int:
    """``cloudroi tile URL Z X Y``: one web-map tile (``Image.tile``), to -o or stdout."""
    fmt = tile_format(args)
    to_stdout = args.output in (None, "-")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("the tile is binary: give -o FILE or redirect stdout")
    z, x, y = _tile_address(args)
    async with context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            bands = _bands_for(img, args.bands, fmt, args.expression)
            data = await _geo(
                img.tile(
                    x,
                    y,
                    z,
                    args.tms,
                    args.tilesize,
                    resampling=args.resampling,
                    io_resampling=args.io_resampling,
                    bands=bands,
                    expression=args.expression,
                )
            )
            encoded = await render_output(img, data, fmt, args)
            stats = img.stats
        finally:
            await img.close()
    if to_stdout:
        _write_stdout(encoded.body)
    else:
        await asyncio.to_thread(Path(args.output).write_bytes, encoded.body)
    print(
        f"wrote {'<stdout>' if to_stdout else args.output}: tile {z}/{x}/{y} of {args.tms}, "
        f"{data.width}x{data.height}, {len(data.bands)} band(s) {data.data.dtype}"
        f"{rendering_note(encoded)}; {stats.requests} request(s), {mib(stats.bytes_fetched)}"
        f"{empty_note(encoded, fmt)}",
        file=sys.stderr,
    )
    return 0


def _write_stdout(body: bytes) -> None:
    from .common import StdoutClosed

    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    except BrokenPipeError as exc:
        raise StdoutClosed from exc


async def _geo(verb: Awaitable[T]) -> T:
    """Await a georeferenced verb; a missing geo extra, an image without georeferencing, a
    CRS pyproj cannot build or a band the image lacks is a usage error (the options asked for
    something this image or install cannot do)."""
    try:
        return await verb
    except ImportError as exc:
        raise UsageError(
            f"this needs the geo extra ({exc.name or 'pyproj'} is missing): "
            "pip install 'cloudroi[geo]'"
        ) from exc
    except (NotGeoreferencedError, BandError, MissingExtraError, CRSError) as exc:
        raise UsageError(str(exc)) from exc


# --------------------------------------------------------------------------------------------
# read onto another grid
# --------------------------------------------------------------------------------------------


def wants_warp(args: argparse.Namespace) -> bool:
    """Whether ``read`` is asked for a region on a grid of its own (any of WARP_OPTIONS;
    ``--resampling`` alone is the kernel of a native read to ``--size``)."""
    return any(getattr(args, name, None) is not None for name in WARP_OPTIONS)


def check_warp_args(args: argparse.Namespace) -> None:
    """Options that cannot go with a read onto another grid, refused before anything is read."""
    if args.window is not None:
        raise UsageError(
            "--bbox-crs, --dst-crs, --resolution, --width, --height and --resampling place a "
            "--bbox on a grid: give --bbox, not --window"
        )
    if (args.width is None) != (args.height is None):
        raise UsageError("give --width and --height together")
    if args.resampling is not None and args.resampling not in region_args.KERNELS:
        raise UsageError(
            f"--resampling must be one of {', '.join(region_args.KERNELS)} for a read onto "
            f"another grid, got {args.resampling!r}"
        )
    sizes = [args.size is not None, args.width is not None, args.resolution is not None]
    if sum(sizes) > 1:
        raise UsageError("give one of --size, --width/--height or --resolution, not both")


def _shape(args: argparse.Namespace) -> tuple[int, int] | None:
    """(width, height) asked for by --size or --width/--height."""
    if args.size is not None:
        return args.size[0], args.size[1]
    if args.width is not None:
        return args.width, args.height
    return None


def _grid_size(
    img: Image, bounds: Bounds, dst: str, args: argparse.Namespace
) -> tuple[int, int, tuple[float, float] | None]:
    """(width, height, resolution) of the output grid: --size or --width/--height, else
    --resolution, else the resolution GDAL suggests for the whole image in ``dst`` (as
    ``Image.read_region`` does); blocking (pyproj)."""
    from ..region.georef import source_grid
    from ..warp import Grid, suggested_warp_output

    shape = _shape(args)
    if shape is not None:
        return shape[0], shape[1], None
    res = args.resolution
    if res is None:
        native = suggested_warp_output(source_grid(img), dst)
        res = (abs(native.transform[1]), abs(native.transform[5]))
    grid = Grid.from_resolution(dst, bounds, res)
    return grid.width, grid.height, res


def _plan_grid(
    img: Image, args: argparse.Namespace, dst: str
) -> tuple[Bounds, int, int, tuple[float, float] | None]:
    """The --bbox carried from --bbox-crs into ``dst`` (``georef.carry_bounds``: edges
    densified with 21 points, as GDAL's transform_bounds) and the grid's size there."""
    from pyproj.exceptions import ProjError

    from ..region.georef import carry_bounds

    src = args.bbox_crs or dst
    try:
        bounds = carry_bounds(args.bbox, src, dst)
        return (bounds, *_grid_size(img, bounds, dst, args))
    except (WindowError, CRSError, ProjError) as exc:  # a CRS or box the options name
        raise UsageError(str(exc)) from exc


def _check_output_size(img: Image, width: int, height: int, bands: int) -> None:
    nbytes = width * height * bands * img.dtype.itemsize
    limit = img.options.max_output_bytes
    too_wide = max(width, height) > region_args.MAX_SIDE
    if too_wide or (limit and nbytes > limit):
        raise UsageError(
            f"the output would be {width}x{height} pixels, {bands} band(s) ({mib(nbytes)}; "
            f"the limit is {mib(limit)} and {region_args.MAX_SIDE} pixels a side): "
            "give --size, --width/--height or a coarser --resolution"
        )


async def read_reprojected(img: Image, args: argparse.Namespace, fmt: str) -> ImageData:
    """``read --bbox`` with any of WARP_OPTIONS: the bbox (in --bbox-crs, default --dst-crs)
    carried into --dst-crs (default: the image's CRS) and read onto a grid there of --size or
    --width/--height, --resolution or GDAL's suggested resolution, by ``Image.read_region``."""
    from ..region.georef import crs_text

    if img.crs is None or img.transform is None:
        raise UsageError(
            "the image has no georeferencing: --bbox-crs, --dst-crs, --resolution, --width, "
            "--height and --resampling need a CRS and a geotransform"
        )
    bands = _bands_for(img, args.bands, fmt, args.expression)
    loop = asyncio.get_running_loop()

    def plan() -> tuple[Bounds, int, int, tuple[float, float] | None]:
        return _plan_grid(img, args, args.dst_crs or crs_text(img.crs))

    bounds, width, height, res = await _geo(loop.run_in_executor(img.context.executor, plan))
    count = args.expression.count if args.expression else len(bands) if bands else img.count
    _check_output_size(img, width, height, count)
    return await _geo(
        img.read_region(
            bounds,
            args.dst_crs or img.crs,
            shape=None if res is not None else (height, width),
            resolution=res,
            resampling=args.resampling or "nearest",
            bands=bands,
            level=args.level,
            expression=args.expression,
        )
    )


# --------------------------------------------------------------------------------------------
# point
# --------------------------------------------------------------------------------------------


async def point(args: argparse.Namespace) -> int:
    """``cloudroi point URL X Y [--crs CRS]``: every band's value at one map coordinate as
    JSON, in --crs (``Image.point``) or in the image's CRS (as the service's /point)."""
    import json

    async with context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            if args.crs is None:
                try:
                    plan = plan_point(img, (args.x, args.y))
                except NotGeoreferencedError as exc:
                    raise UsageError(f"{exc}; give --crs to place x, y") from exc
                data = await read_point(img, plan)
            else:
                data = await _geo(img.point(args.x, args.y, crs=args.crs))
        finally:
            await img.close()
    out(json.dumps(data.as_dict()))
    return 0


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def geo_info(img: Image) -> dict[str, Any]:
    """What ``info`` adds for a georeferenced image when the geo extra is installed: the
    bounds in longitude/latitude and the WebMercatorQuad zoom range (None where unknown).
    Blocking (pyproj): run it in a thread."""
    doc: dict[str, Any] = {"wgs84_bounds": None, "minzoom": None, "maxzoom": None}
    if img.crs is None or img.transform is None:
        return doc
    try:
        doc["wgs84_bounds"] = list(img.bounds_in(4326))
        doc["minzoom"], doc["maxzoom"] = img.zoom_range()
    except (ImportError, MissingExtraError, CRSError, ValueError, RuntimeError):
        # no geo extra, or a CRS pyproj cannot use (pyproj's errors are RuntimeErrors): the
        # rest of info stands without these
        pass
    return doc
