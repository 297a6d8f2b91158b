"""``cloudroi info``, ``read`` and ``serve``: each a few lines over the library, the region layer
and the service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..errors import CloudROIError
from ..image import Image
from ..opening import open_image
from ..outputs import RENDERED, format_for_path
from ..region import ImageData, RegionPlan, read_region
from ..types import Stats
from .common import (
    UsageError,
    context,
    coordinate,
    empty_note,
    mib,
    out,
    plan_from_args,
    rendering_note,
)
from .geo import check_warp_args, geo_info, read_reprojected, render_output, wants_warp

__all__ = ["info", "read", "serve"]

#: Reads of at least this many blocks show a progress bar.
PROGRESS_MIN_TILES = 16


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def describe(info: dict[str, Any], stats: Stats) -> str:
    lines = [
        ("URL", info["url"]),
        ("Size", f"{info['width']} x {info['height']}, {info['count']} band(s), {info['dtype']}"),
        (
            "Blocks",
            f"{info['block_shape'][1]} x {info['block_shape'][0]} "
            f"({'tiled' if info['tiled'] else 'strips'}), {info['compression']}, "
            f"predictor {info['predictor']}, {info['interleave']}-interleaved",
        ),
        ("Levels", ", ".join(f"{i}: {w}x{h}" for i, (w, h) in enumerate(info["levels"]))),
        ("Nodata", "none" if info["nodata"] is None else str(info["nodata"])),
        (
            "Mask",
            "internal mask"
            if info["has_mask"]
            else (f"alpha band {info['alpha_band']}" if info["alpha_band"] else "none"),
        ),
        ("CRS", f"EPSG:{info['crs']}" if info["crs"] else (info["crs_description"] or "none")),
        # Exact: the bounds pasted into --bbox select the whole image.
        (
            "Transform",
            ", ".join(map(coordinate, info["transform"])) if info["transform"] else "none",
        ),
        ("Bounds", ", ".join(map(coordinate, info["bounds"])) if info["bounds"] else "none"),
        *_geo_lines(info),
        (
            "File",
            f"{mib(info['size'])}, {'BigTIFF' if info['bigtiff'] else 'classic TIFF'}"
            f"{', COG layout' if info['cog_layout'] else ''}",
        ),
        ("Opened with", f"{stats.requests} request(s), {mib(stats.bytes_fetched)}"),
    ]
    return "\n".join(f"{k:<12} {v}" for k, v in lines)


def _geo_lines(info: dict[str, Any]) -> list[tuple[str, str]]:
    """Bounds in longitude/latitude and the web-map zoom range, where ``info`` has them."""
    lines = []
    if info.get("wgs84_bounds"):
        lines.append(("WGS84 bounds", ", ".join(repr(v) for v in info["wgs84_bounds"])))
    if info.get("minzoom") is not None:
        lines.append(("Zoom range", f"{info['minzoom']}..{info['maxzoom']} (WebMercatorQuad)"))
    return lines


async def info(args: argparse.Namespace) -> int:
    async with context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            doc = img.info()
            doc.update(await asyncio.to_thread(geo_info, img))
            out(json.dumps(doc, indent=2) if args.json else describe(doc, img.stats))
        finally:
            await img.close()
    return 0


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, redrawn from an Image's decode counter."""

    def __init__(self, stats: Stats, total: int, stream: TextIO) -> None:
        self.stats = stats
        self.total = total
        self.stream = stream
        self.start = stats.tiles_decoded
        self.began = time.perf_counter()

    def draw(self, final: bool = False) -> None:
        done = min(self.total, self.stats.tiles_decoded - self.start)
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.perf_counter() - self.began
        line = (
            f"\r[{bar}] {done}/{self.total} tiles  {mib(self.stats.bytes_fetched)}  {elapsed:.1f} s"
        )
        self.stream.write(line + ("\n" if final else ""))
        self.stream.flush()

    async def follow(self, interval: float = 0.1) -> None:
        while True:
            self.draw()
            await asyncio.sleep(interval)


def _blocks_to_read(img: Image, plan: RegionPlan) -> int:
    """How many blocks the read will decode (the progress bar's total)."""
    try:
        return len(
            img.plan(
                plan.window,
                plan.level,
                plan.bands,
                boundless=plan.boundless,
                out_shape=plan.out_shape,
                resampling=plan.resampling,
            ).blocks
        )
    except CloudROIError:
        return 0


async def _read_with_progress(
    img: Image, plan: RegionPlan, args: argparse.Namespace, fmt: str
) -> ImageData:
    total = _blocks_to_read(img, plan)
    progress = None
    follower = None
    if total >= PROGRESS_MIN_TILES and not args.quiet and sys.stderr.isatty():
        progress = Progress(img.stats, total, sys.stderr)
        follower = asyncio.create_task(progress.follow())
    try:
        data = await read_region(
            img, plan, with_mask=fmt in RENDERED or fmt == "tif", executor=img.context.executor
        )
    finally:
        if follower is not None:
            follower.cancel()
    if progress is not None:
        progress.draw(final=True)
    return data


async def read(args: argparse.Namespace) -> int:
    try:
        fmt = format_for_path(args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    warp = wants_warp(args)
    if warp:
        check_warp_args(args)
    started = time.perf_counter()
    async with context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            if warp:
                data = await read_reprojected(img, args, fmt)
            else:
                plan = plan_from_args(img, args, rendered=fmt in RENDERED)
                data = await _read_with_progress(img, plan, args, fmt)
            encoded = await render_output(img, data, fmt, args)
            await asyncio.to_thread(Path(args.output).write_bytes, encoded.body)
            stats = img.stats
        finally:
            await img.close()
    took = time.perf_counter() - started
    print(
        f"wrote {args.output}: {data.width}x{data.height}, {data.data.shape[0]} band(s) "
        f"{data.data.dtype}{rendering_note(encoded)}; {stats.requests} request(s), "
        f"{mib(stats.bytes_fetched)} in {took:.2f} s{empty_note(encoded, fmt)}",
        file=sys.stderr,
    )
    return 0


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from ..service import ServiceConfig, run

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.allow:
        overrides["allowed_sources"] = tuple(args.allow)
    if args.allow_network:
        overrides["allowed_networks"] = tuple(args.allow_network)
    if args.s3_endpoint:
        overrides["s3_endpoint_url"] = args.s3_endpoint
    try:
        config = ServiceConfig.from_env(**overrides)
        allowed = config.describe_allowlist()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(f"cloudroi {__version__} serving on http://{config.host}:{config.port}", flush=True)
    print("allowed sources: " + ", ".join(allowed), flush=True)
    if not config.allowed_sources:  # only the sample: say where to look at it
        from urllib.parse import quote

        sample = quote(config.effective_sources()[0], safe="/")
        print(
            f"web map of the sample: http://{config.host}:{config.port}/map?url={sample}"
            "&rescale=0,2200",
            flush=True,
        )
    run(config, print_fn=None)
    return 0
