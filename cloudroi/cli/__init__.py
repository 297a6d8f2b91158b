"""The ``cloudroi`` command: info, read, serve, compare and demo, thin over the library.

    cloudroi info URL [--json]
    cloudroi read URL (--window C,R,W,H | --bbox MINX,MINY,MAXX,MAXY) [--level N | --size W,H]
                  [--boundless] [--bands 1,2,3 | --expression EXPR] [--rescale MIN,MAX]
                  [--quality 1..100] [--colormap NAME|JSON|none]
                  [--bbox-crs CRS] [--dst-crs CRS] [--resolution R | --width W --height H]
                  [--resampling KERNEL] -o OUT.{npy,png,jpg,webp,tif}
    cloudroi tile URL Z X Y [--tms NAME] [--tilesize N] [--resampling KERNEL]
                  [--io-resampling NAME] [--bands 1,2,3 | --expression EXPR] [--format F]
                  [--rescale MIN,MAX] [--quality 1..100] [--colormap NAME|JSON|none] [-o OUT]
    cloudroi point URL X Y [--crs CRS]
    cloudroi stats URL [--bands 1,2] [--max-size N | --level N] [--percentiles 2,98]
                   [--histogram-bins N] [--histogram-range MIN,MAX] [--categorical]
    cloudroi serve [--host H] [--port P] [--allow PREFIX ...] [--allow-network CIDR ...]
    cloudroi compare URL (--window ... | --bbox ...) [--level N] [--json]
    cloudroi demo [-o demo.png]

Option values are parsed by ``cloudroi.region.args``, the rules the service uses, and regions are
planned, read and rendered by the region layer, as the service does; ``tile``, ``point --crs``
and ``read`` with ``--bbox-crs``/``--dst-crs``/``--resolution``/``--width``/``--height``/
``--resampling`` go through the
georeferenced verbs of ``Image`` (the ``geo`` extra). Errors print one line on stderr and exit
with status 1 (2 for usage errors, 3 for a tile that does not touch the image: a tile server's
404, which a script walking a tile pyramid skips). When the reader of stdout goes away
(``cloudroi info URL | head -1``) the command stops quietly with status 141, 128 + SIGPIPE, as a
Unix tool killed by SIGPIPE reports. The progress bar is drawn only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import CloudROIError, TileOutsideBoundsError
from ..region import args as region_args
from ..region.args import ArgumentError
from .commands import info, read, serve
from .common import StdoutClosed, UsageError, stdout_closed
from .compare import compare, demo
from .geo import point, tile
from .stats import add_stats, stats

__all__ = ["EXIT_TILE_OUTSIDE", "build_parser", "main"]

#: Exit status of ``cloudroi tile`` for a tile that does not touch the image.
EXIT_TILE_OUTSIDE = 3
#: Largest tile side (``Image.tile``'s limit).
MAX_TILESIZE = 4096


def _option(parse: Callable[[str, str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` applying the shared rule ``parse`` to an option's text."""

    def convert(text: str) -> Any:
        try:
            return parse(text, name)
        except ArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _add_region_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--window",
        type=_option(region_args.window, "--window"),
        metavar="C,R,W,H",
        help="col_off,row_off,width,height in pixels of --level",
    )
    where.add_argument(
        "--bbox",
        type=_option(region_args.bbox, "--bbox"),
        metavar="MINX,MINY,MAXX,MAXY",
        help="bounding box in the image's CRS",
    )
    p.add_argument(
        "--level",
        type=int,
        help="0 = full resolution (default), 1.. overviews; for a read onto another grid, "
        "the overview to warp from (default: the one gdalwarp -ovr AUTO picks)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="S3-compatible endpoint for s3:// URLs (default: $CLOUDROI_S3_ENDPOINT_URL or AWS's)",
    )
    p.add_argument(
        "--jpeg-decoder",
        choices=("turbo", "ijg9"),
        help="decoder of YCbCr JPEG: turbo (libjpeg-turbo, as most GDAL builds) or ijg9 (IJG "
        "libjpeg 9, as rasterio's wheels; the jpeg-ijg9 extra); default: "
        "$CLOUDROI_JPEG_DECODER or turbo",
    )


def _add_warp_args(p: argparse.ArgumentParser) -> None:
    crs_help = "EPSG:n, an OGC CRS URI or URN, OGC:CRS84 or WKT"
    p.add_argument(
        "--bbox-crs",
        type=_option(region_args.crs, "--bbox-crs"),
        metavar="CRS",
        help=f"CRS of --bbox ({crs_help}; default: --dst-crs), x/y in longitude/latitude "
        "order for geographic CRSs",
    )
    p.add_argument(
        "--dst-crs",
        type=_option(region_args.crs, "--dst-crs"),
        metavar="CRS",
        help=f"CRS of the output grid ({crs_help}; default: the image's)",
    )
    p.add_argument(
        "--resolution",
        type=_option(region_args.resolution, "--resolution"),
        metavar="R|X,Y",
        help="output pixel size in --dst-crs units (default: GDAL's suggested resolution)",
    )
    for side in ("width", "height"):
        p.add_argument(
            f"--{side}",
            type=_option(_side, f"--{side}"),
            metavar="N",
            help=f"output {side} in pixels (with --{'height' if side == 'width' else 'width'})",
        )
    p.add_argument(
        "--resampling",
        type=_option(region_args.resampling, "--resampling"),
        metavar="KERNEL",
        help=f"kernel of a read to --size: {', '.join(region_args.RESAMPLINGS)} (default "
        "nearest), as GDAL's RasterIO. With another of these options, the warp kernel: "
        f"{', '.join(region_args.KERNELS)}. Any other of these options reads the --bbox onto "
        "a grid of its own, as gdalwarp",
    )


def _side(text: str, name: str) -> int:
    return region_args.integer(name, text, 1, region_args.MAX_SIDE)


def _tms(text: str, name: str) -> str:
    """A tile matrix set the library knows (``georef.tile_matrix_set``, as the service)."""
    from ..region import georef

    try:
        return georef.tile_matrix_set(text.strip()).id or text.strip()
    except CloudROIError as exc:  # unknown set, or no geo extra
        raise ArgumentError(name, f"{name}: {exc}") from exc


def _colormap(text: str, name: str) -> Any:
    """--colormap: a colormap name (viridis...), a JSON colormap ({...} or [...]) or none."""
    text = text.strip()
    if text[:1] in ("{", "[") or text.lower() == "none":
        return region_args.colormap(text)
    return region_args.colormap(None, text)


def _tilesize(text: str, name: str) -> int:
    return region_args.integer(name, text, 1, MAX_TILESIZE)


def _add_rendering_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--bands",
        type=_option(region_args.bands, "--bands"),
        metavar="1,2,3",
        help="1-based bands (default: all)",
    )
    which.add_argument(
        "--expression",
        type=_option(region_args.expression, "--expression"),
        metavar="EXPR",
        help="band math instead of --bands, e.g. '(b4-b3)/(b4+b3)'; ';' separates outputs, "
        "each one float32 band; only the bands it names are read",
    )
    p.add_argument(
        "--rescale",
        type=_option(region_args.rescale, "--rescale"),
        metavar="MIN,MAX",
        help="values mapped onto 0..255 for png/jpg/webp",
    )
    p.add_argument(
        "--quality",
        type=_option(region_args.quality, "--quality"),
        default=85,
        metavar="1..100",
        help="JPEG/WebP quality (default 85)",
    )
    p.add_argument(
        "--colormap",
        type=_option(_colormap, "--colormap"),
        default=True,
        metavar="NAME|JSON|none",
        help="colours for a 1-band png/jpg/webp: a named colormap (viridis, terrain...) on the "
        "0..255 rendering, a JSON colormap ({value: [r,g,b,a]} or [[[min,max],[r,g,b,a]]]), "
        "or none to show a paletted file's indices (default: its palette)",
    )


def _add_read(sub: Any, url_help: str) -> None:
    p = sub.add_parser("read", help="read a region into a file")
    p.add_argument("url", help=url_help)
    _add_region_args(p)
    p.add_argument(
        "--boundless",
        action="store_true",
        help="allow a --window reaching outside the image: outside pixels are filled "
        "with nodata (else 0) and masked (--bbox does this by itself)",
    )
    p.add_argument(
        "--size",
        type=_option(region_args.size, "--size"),
        metavar="W,H",
        help="output size: reads the best overview and resamples (see --resampling)",
    )
    _add_rendering_args(p)
    _add_warp_args(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file: .npy, .png, .jpg, .webp or .tif (GeoTIFF)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar (it is drawn only when stderr is a terminal)",
    )
    _common(p)


def _add_tile(sub: Any, url_help: str) -> None:
    p = sub.add_parser("tile", help="one web-map tile (z/x/y of a tile matrix set)")
    p.add_argument("url", help=url_help)
    # integers here (region_args.tile_index); the tile matrix set checks its own limits
    p.add_argument("z", metavar="Z", help="zoom level")
    p.add_argument("x", metavar="X", help="tile column")
    p.add_argument("y", metavar="Y", help="tile row")
    p.add_argument(
        "--tms",
        type=_option(_tms, "--tms"),
        default="WebMercatorQuad",
        metavar="NAME",
        help="tile matrix set (default WebMercatorQuad; WorldCRS84Quad, ...)",
    )
    p.add_argument(
        "--tilesize",
        type=_option(_tilesize, "--tilesize"),
        default=256,
        metavar="N",
        help=f"tile side in pixels, 1..{MAX_TILESIZE} (default 256)",
    )
    p.add_argument(
        "--resampling",
        type=_option(region_args.kernel, "--resampling"),
        default="nearest",
        metavar="KERNEL",
        help=f"warp kernel: {', '.join(region_args.KERNELS)} (default nearest)",
    )
    p.add_argument(
        "--io-resampling",
        type=_option(region_args.io_resampling, "--io-resampling"),
        default="nearest",
        metavar="NAME",
        help="how the overview is picked, as rio-tiler's resampling_method (default nearest)",
    )
    _add_rendering_args(p)
    p.add_argument(
        "--format",
        type=_option(region_args.output_format, "--format"),
        help="png, jpeg, webp, npy or tif (default: from -o's extension, else png)",
    )
    p.add_argument("-o", "--output", help="output file (default, or -: stdout)")
    _common(p)


def _coordinate(text: str, name: str) -> float:
    return region_args.number(name, text)


def _add_point(sub: Any, url_help: str) -> None:
    p = sub.add_parser("point", help="the values of every band at one coordinate")
    p.add_argument("url", help=url_help)
    p.add_argument("x", type=_option(_coordinate, "X"), metavar="X")
    p.add_argument("y", type=_option(_coordinate, "Y"), metavar="Y")
    p.add_argument(
        "--crs",
        type=_option(region_args.crs, "--crs"),
        metavar="CRS",
        help="CRS of X, Y (EPSG:n, an OGC CRS URI or URN, OGC:CRS84 or WKT; default: the "
        "image's CRS); longitude, latitude order for geographic CRSs",
    )
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudroi", description="Read just the region of a TIFF/COG you need."
    )
    parser.add_argument("--version", action="version", version=f"cloudroi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    url_help = "http(s)://, s3://, file:// URL or a local path"

    p = sub.add_parser("info", help="describe an image")
    p.add_argument("url", help=url_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    _add_read(sub, url_help)
    _add_tile(sub, url_help)
    _add_point(sub, url_help)
    _common(add_stats(sub, url_help))

    p = sub.add_parser("serve", help="run the region service")
    p.add_argument("--host", help="address to listen on (default $CLOUDROI_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default $CLOUDROI_PORT or 8080)")
    p.add_argument(
        "--allow",
        action="append",
        metavar="PREFIX",
        help="allowed source prefix (repeatable; replaces $CLOUDROI_ALLOWED_SOURCES)",
    )
    p.add_argument(
        "--allow-network",
        action="append",
        metavar="CIDR",
        help="private network upstream connections may reach (repeatable)",
    )
    _common(p)

    p = sub.add_parser("compare", help="lazy vs preloaded vs streamed reads, cold and warm")
    p.add_argument("url", help=url_help)
    _add_region_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    p = sub.add_parser("demo", help="serve the sample COG over HTTP locally and read from it")
    p.add_argument("-o", "--output", default="cloudroi-demo.png", help="PNG to write")
    p.add_argument(
        "--latency",
        type=float,
        default=0.02,
        help="seconds added to each HTTP request (object-store-like)",
    )
    _common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            status = _main(argv)
        except SystemExit:  # argparse's --help, --version and usage errors
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # here, where a reader gone away can still be answered quietly
        return status
    except (StdoutClosed, BrokenPipeError):
        # A BrokenPipeError here comes from the flushes of stdout above; one from elsewhere
        # (a server's socket) is an OSError that _main reports.
        return stdout_closed()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        command = {
            "info": info,
            "read": read,
            "tile": tile,
            "point": point,
            "stats": stats,
            "compare": compare,
            "demo": demo,
        }[args.command]
        return asyncio.run(command(args))
    except UsageError as exc:
        parser.exit(2, f"cloudroi {args.command}: error: {exc}\n")
    except TileOutsideBoundsError as exc:
        print(f"cloudroi {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_TILE_OUTSIDE
    except CloudROIError as exc:
        print(f"cloudroi {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cloudroi {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
