"""``cloudroi stats URL``: each band's statistics (``Image.statistics``, rio-tiler's numbers) as
TiTiler's JSON answer on stdout, NaN written as null.

    cloudroi stats URL [--bands 1,2] [--max-size N | --level N] [--percentiles 2,98]
                   [--histogram-bins N | --histogram-bins E0,E1,...] [--histogram-range MIN,MAX]
                   [--categorical [--categories 1,2,3]] [--nodata V]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any

from ..errors import BandError, LevelError
from ..opening import open_image
from ..region import args as region_args
from ..region.args import ArgumentError
from ..region.stats import MAX_BINS, StatisticsError
from .common import UsageError, context, out

__all__ = ["add_stats", "stats"]


def _option(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return convert


def _numbers(name: str) -> Callable[[str], list[float]]:
    return _option(lambda text: [region_args.number(name, v) for v in text.split(",")])


def _percentiles(text: str) -> list[int]:
    return [region_args.integer("--percentiles", v, 0, 100) for v in text.split(",")]


def _bins(text: str) -> int | list[float]:
    parts = text.split(",")
    if len(parts) == 1:
        return region_args.integer("--histogram-bins", text, 1, MAX_BINS)
    return [region_args.number("--histogram-bins", v) for v in parts]


def _nodata(text: str) -> float:
    lowered = text.strip().lower()
    if lowered in ("nan", "inf", "-inf"):
        return float(lowered)
    return region_args.number("--nodata", text)


def add_stats(sub: Any, url_help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "stats", help="each band's statistics (rio-tiler's), as JSON"
    )
    p.add_argument("url", help=url_help)
    p.add_argument(
        "--bands",
        type=_option(lambda t: region_args.bands(t, "--bands")),
        help="1-based bands, comma separated (default: all but alpha)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--max-size",
        type=_option(lambda t: region_args.integer("--max-size", t, 1, region_args.MAX_SIDE)),
        default=1024,
        help="longest side of the image measured (default 1024)",
    )
    size.add_argument(
        "--level",
        type=_option(lambda t: region_args.integer("--level", t, 0, 64)),
        help="measure this level at full size (0: full resolution) instead of --max-size",
    )
    p.add_argument("--percentiles", type=_option(_percentiles), help="e.g. 2,98 (the default)")
    p.add_argument(
        "--histogram-bins",
        type=_option(_bins),
        default=10,
        help="number of bins (default 10), or the bin edges comma separated",
    )
    p.add_argument("--histogram-range", type=_numbers("--histogram-range"), help="MIN,MAX")
    p.add_argument("--categorical", action="store_true", help="count each distinct value")
    p.add_argument("--categories", type=_numbers("--categories"), help="values to count")
    p.add_argument("--nodata", type=_option(_nodata), help="nodata overriding the image's")
    return p


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


async def stats(args: argparse.Namespace) -> int:
    """Print the statistics of ``args.url`` as JSON."""
    async with context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            result = await img.statistics(
                list(args.bands) if args.bands else None,
                max_size=None if args.level is not None else args.max_size,
                level=args.level,
                percentiles=args.percentiles,
                histogram_bins=args.histogram_bins,
                histogram_range=args.histogram_range,
                categorical=args.categorical,
                categories=args.categories,
                nodata=args.nodata,
            )
        except (BandError, LevelError, StatisticsError) as exc:
            raise UsageError(str(exc)) from exc
        finally:
            await img.close()
    doc = {name: s.as_dict() for name, s in result.items()}
    out(json.dumps(_json_value(doc), allow_nan=False))
    return 0
