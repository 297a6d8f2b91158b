"""The ``cloudroi`` command: info, read, serve, compare and demo, thin over the library.

    cloudroi info URL [--json]
    cloudroi read URL (--window C,R,W,H | --bbox MINX,MINY,MAXX,MAXY) [--level N | --size W,H]
                  [--boundless] [--bands 1,2,3] [--rescale MIN,MAX] [--quality 1..100]
                  -o OUT.{npy,png,jpg,webp,tif}
    cloudroi serve [--host H] [--port P] [--allow PREFIX ...] [--allow-network CIDR ...]
    cloudroi compare URL (--window ... | --bbox ...) [--level N] [--json]
    cloudroi demo [-o demo.png]

Option values are parsed by ``cloudroi.region.args``, the rules the service uses, and regions are
planned, read and rendered by the region layer, as the service does. Errors print one line on
stderr and exit with status 1 (2 for usage errors). When the reader of stdout goes away
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
from ..errors import CloudROIError
from ..region import args as region_args
from ..region.args import ArgumentError
from .commands import info, read, serve
from .common import StdoutClosed, UsageError, stdout_closed
from .compare import compare, demo

__all__ = ["build_parser", "main"]


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
    p.add_argument("--level", type=int, default=0, help="0 = full resolution, 1.. overviews")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="S3-compatible endpoint for s3:// URLs (default: $CLOUDROI_S3_ENDPOINT_URL or AWS's)",
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
        help="output size: reads the best overview and resamples (nearest)",
    )
    p.add_argument(
        "--bands",
        type=_option(region_args.bands, "--bands"),
        metavar="1,2,3",
        help="1-based bands (default: all)",
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
        command = {"info": info, "read": read, "compare": compare, "demo": demo}[args.command]
        return asyncio.run(command(args))
    except UsageError as exc:
        parser.exit(2, f"cloudroi {args.command}: error: {exc}\n")
    except CloudROIError as exc:
        print(f"cloudroi {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cloudroi {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
