"""The ``cloudroi`` command: info, read, serve, compare and demo, thin over the library.

    cloudroi info URL [--json]
    cloudroi read URL (--window C,R,W,H | --bbox MINX,MINY,MAXX,MAXY) [--level N | --size W,H]
                  [--boundless] [--bands 1,2,3] [--rescale MIN,MAX] [--quality 1..100]
                  -o OUT.{npy,png,jpg,webp,tif}
    cloudroi serve [--host H] [--port P] [--allow PREFIX ...] [--allow-network CIDR ...]
    cloudroi compare URL (--window ... | --bbox ...) [--level N] [--json]
    cloudroi demo [-o demo.png]

Errors print one line on stderr and exit with status 1 (2 for usage errors). When the reader of
stdout goes away (``cloudroi info URL | head -1``) the command stops quietly with status 141,
128 + SIGPIPE, as a Unix tool killed by SIGPIPE reports. The progress bar is drawn only when
stderr is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from . import __version__
from .cache import LRUCache
from .context import Context, ContextOptions
from .errors import CloudROIError, LimitExceededError, WindowError
from .image import Image, open_image
from .outputs import ALPHA_FORMATS, RENDERED, encode, format_for_path, render_bands
from .types import Stats, Window

__all__ = ["main"]

#: Reads of at least this many blocks show a progress bar.
PROGRESS_MIN_TILES = 16


class UsageError(Exception):
    """A command-line value that does not make sense (exit status 2)."""


class StdoutClosed(Exception):
    """Whoever read our standard output has gone (``cloudroi info URL | head -1``)."""


def _out(text: str = "", *, flush: bool = False) -> None:
    """``print`` to stdout; a reader that has gone becomes ``StdoutClosed``, which is told apart
    from a broken pipe to a server."""
    try:
        print(text, flush=flush)
    except BrokenPipeError as exc:
        raise StdoutClosed from exc


def _stdout_closed() -> int:
    """Stop quietly once stdout's reader has gone: point stdout at /dev/null, so the flush at
    interpreter exit has nowhere to fail (Python's signal docs, "Note on SIGPIPE"), and return
    128 + SIGPIPE. SIGPIPE itself stays ignored: with its default action a peer closing one of
    asyncio's sockets would kill the process."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 128 + signal.SIGPIPE


# --------------------------------------------------------------------------------------------
# argument values
# --------------------------------------------------------------------------------------------


def _numbers(text: str, n: int, kind: type, what: str) -> tuple[Any, ...]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != n:
        raise argparse.ArgumentTypeError(f"{what} takes {n} comma-separated numbers")
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{what}: {exc}") from exc
    if kind is float and not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be finite")
    return values


def _window(text: str) -> tuple[int, ...]:
    values = _numbers(text, 4, int, "--window C,R,W,H")
    if values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError("--window width and height must be positive")
    return values


def _bbox(text: str) -> tuple[float, ...]:
    values = _numbers(text, 4, float, "--bbox MINX,MINY,MAXX,MAXY")
    if not (values[0] < values[2] and values[1] < values[3]):
        raise argparse.ArgumentTypeError("--bbox needs MINX < MAXX and MINY < MAXY")
    return values


def _size(text: str) -> tuple[int, ...]:
    values = _numbers(text, 2, int, "--size W,H")
    if min(values) <= 0:
        raise argparse.ArgumentTypeError("--size must be positive")
    return values


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 100, got {text!r}")
    return value


def _rescale(text: str) -> tuple[float, ...]:
    values = _numbers(text, 2, float, "--rescale MIN,MAX")
    if not values[0] < values[1]:
        raise argparse.ArgumentTypeError("--rescale needs MIN < MAX")
    return values


def _bands(text: str) -> list[int]:
    try:
        bands = [int(p) for p in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--bands: {exc}") from exc
    if not bands or min(bands) < 1:
        raise argparse.ArgumentTypeError("--bands are 1-based band numbers")
    return bands


def _context(args: argparse.Namespace, *, fresh_caches: bool = False) -> Context:
    storage: dict[str, dict[str, Any]] = {}
    endpoint = getattr(args, "s3_endpoint", None) or os.environ.get("CLOUDROI_S3_ENDPOINT_URL")
    if endpoint:
        storage["s3"] = {"endpoint_url": endpoint}
    options = ContextOptions(storage_options=storage)
    if fresh_caches:
        # Every cache of its own, so that a "cold" run owes nothing to the runs before it.
        return Context(
            options,
            block_cache=LRUCache(256 << 20, sizeof=len),
            decoded_cache=LRUCache(256 << 20, sizeof=lambda a: int(a.nbytes)),
            header_cache=LRUCache(64 << 20, sizeof=lambda s: s.footprint(), max_entries=64),
            header_sizes=LRUCache(64),
        )
    return Context(options)


def _coordinate(v: float) -> str:
    """A coordinate as text that reads back as the same float: whole numbers without a decimal
    point (``6100000``), others as Python's shortest round-trip form (``6100690.987654321``)."""
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def _mib(n: float) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{int(n)} B"


# --------------------------------------------------------------------------------------------
# where a read goes: window + level (+ output shape), from --window/--bbox/--level/--size
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    level: int
    window: Window
    out_shape: tuple[int, int] | None
    boundless: bool

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the output."""
        if self.out_shape is not None:
            return self.out_shape[1], self.out_shape[0]
        return self.window.width, self.window.height


def _target(img: Image, args: argparse.Namespace) -> Target:
    from .service import geometry

    level = args.level or 0
    if level >= len(img.levels):
        raise UsageError(f"--level must be 0..{len(img.levels) - 1}")
    size = getattr(args, "size", None)
    if size is not None and level:
        raise UsageError("give --level or --size, not both")
    wl, hl = img.levels[level]
    if args.window is not None:
        win = Window(*args.window)
        # compare has no --boundless (its strategies read inside the image).
        allowed = getattr(args, "boundless", None)
        boundless = not geometry.inside(win, wl, hl)
        if boundless and not allowed:
            level_text = f" (level {level})" if level else ""
            hint = "; --boundless fills outside pixels" if allowed is not None else ""
            raise WindowError(
                f"window {tuple(win)} is outside the {wl}x{hl} image{level_text}{hint}"
            )
    else:
        try:
            win = geometry.bbox_window(img.levels, img.transform, tuple(args.bbox), level)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        boundless = not geometry.inside(win, wl, hl)
    out_shape = (size[1], size[0]) if size is not None else None
    return Target(level, win, out_shape, boundless)


def _blocks_to_read(img: Image, t: Target, bands: Sequence[int] | None) -> int:
    """How many blocks the read will decode (the progress bar's total)."""
    try:
        plan = img.plan(t.window, t.level, bands, boundless=t.boundless, out_shape=t.out_shape)
        return len(plan.blocks)
    except CloudROIError:
        return 0


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
            f"\r[{bar}] {done}/{self.total} tiles  {_mib(self.stats.bytes_fetched)}  "
            f"{elapsed:.1f} s"
        )
        self.stream.write(line + ("\n" if final else ""))
        self.stream.flush()

    async def follow(self, interval: float = 0.1) -> None:
        while True:
            self.draw()
            await asyncio.sleep(interval)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def _describe(info: dict[str, Any], stats: Stats) -> str:
    lines = [
        ("URL", info["url"]),
        ("Size", f"{info['width']} x {info['height']}, {info['count']} band(s), {info['dtype']}"),
        ("Blocks", f"{info['block_shape'][1]} x {info['block_shape'][0]} "
                   f"({'tiled' if info['tiled'] else 'strips'}), {info['compression']}, "
                   f"predictor {info['predictor']}, {info['interleave']}-interleaved"),
        ("Levels", ", ".join(f"{i}: {w}x{h}" for i, (w, h) in enumerate(info["levels"]))),
        ("Nodata", "none" if info["nodata"] is None else str(info["nodata"])),
        ("Mask", "internal mask" if info["has_mask"] else (
            f"alpha band {info['alpha_band']}" if info["alpha_band"] else "none")),
        ("CRS", f"EPSG:{info['crs']}" if info["crs"] else "none"),
        # Exact: the bounds pasted into --bbox select the whole image.
        ("Transform", ", ".join(map(_coordinate, info["transform"]))
         if info["transform"] else "none"),
        ("Bounds", ", ".join(map(_coordinate, info["bounds"])) if info["bounds"] else "none"),
        ("File", f"{_mib(info['size'])}, {'BigTIFF' if info['bigtiff'] else 'classic TIFF'}"
                 f"{', COG layout' if info['cog_layout'] else ''}"),
        ("Opened with", f"{stats.requests} request(s), {_mib(stats.bytes_fetched)}"),
    ]
    return "\n".join(f"{k:<12} {v}" for k, v in lines)


async def _info(args: argparse.Namespace) -> int:
    async with _context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            info = img.info()
            if args.json:
                _out(json.dumps(info, indent=2))
            else:
                _out(_describe(info, img.stats))
        finally:
            await img.close()
    return 0


# --------------------------------------------------------------------------------------------
# read
# --------------------------------------------------------------------------------------------


async def _read(args: argparse.Namespace) -> int:
    try:
        fmt = format_for_path(args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    started = time.perf_counter()
    async with _context(args) as ctx:
        img = await open_image(args.url, context=ctx)
        try:
            data, mask, t = await _read_target(img, args, fmt)
            from .service import geometry

            out_w, out_h = t.out_size
            geo = geometry.out_geo(
                img.levels, img.transform, img.crs, img.nodata, t.level, t.window, out_w, out_h
            )
            rescale = tuple(args.rescale) if args.rescale else None

            def encode_it() -> tuple[bytes, tuple[float, float] | None, bool]:
                body, used = encode(fmt, data, mask=mask, geo=geo, rescale=rescale,
                                    quality=args.quality)
                return body, used, mask is not None and not mask.any()

            loop = asyncio.get_running_loop()
            body, used, no_valid = await loop.run_in_executor(ctx.executor, encode_it)
            await asyncio.to_thread(Path(args.output).write_bytes, body)
            stats = img.stats
        finally:
            await img.close()
    took = time.perf_counter() - started
    # Without a valid pixel there is no value range to show: the rescale is a placeholder.
    scaled = f", values {used[0]:g}..{used[1]:g} shown as 0..255" if used and not no_valid else ""
    empty = ""
    if no_valid:
        looks = "fully transparent" if fmt in ALPHA_FORMATS else "black"
        empty = f"; the window holds no valid pixel (all nodata or masked): the image is {looks}"
    print(
        f"wrote {args.output}: {out_w}x{out_h}, {data.shape[0]} band(s) {data.dtype}{scaled}; "
        f"{stats.requests} request(s), {_mib(stats.bytes_fetched)} in {took:.2f} s{empty}",
        file=sys.stderr,
    )
    return 0


async def _read_target(
    img: Image, args: argparse.Namespace, fmt: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8] | None, Target]:
    t = _target(img, args)
    if fmt in RENDERED:
        try:
            bands: list[int] | None = render_bands(img.count, args.bands, img.alpha_band)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    else:
        bands = args.bands
    total = _blocks_to_read(img, t, bands)
    progress = None
    follower = None
    if total >= PROGRESS_MIN_TILES and not args.quiet and sys.stderr.isatty():
        progress = Progress(img.stats, total, sys.stderr)
        follower = asyncio.create_task(progress.follow())
    try:
        kwargs: dict[str, Any] = {"out_shape": t.out_shape, "boundless": t.boundless}
        data = await img.read(t.window, t.level, bands, **kwargs)
        mask = None
        needs_mask = (
            img.has_mask or img.alpha_band is not None or img.nodata is not None or t.boundless
        )
        if fmt in RENDERED and needs_mask:
            mask = await img.read_mask(t.window, t.level, **kwargs)
    finally:
        if follower is not None:
            follower.cancel()
    if progress is not None:
        progress.draw(final=True)
    return data, mask, t


# --------------------------------------------------------------------------------------------
# compare: lazy / preloaded level / streamed tiles, cold and warm
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    strategy: str
    cache: str
    requests: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    peak_bytes: int | None = None
    note: str = ""
    pixels: npt.NDArray[Any] | None = None

    def row(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "cache": self.cache, "requests": self.requests,
            "bytes": self.bytes, "seconds": self.seconds, "peak_bytes": self.peak_bytes,
            "note": self.note,
        }


async def _strategy_lazy(img: Image, t: Target) -> npt.NDArray[Any]:
    return await img.read(t.window, t.level)


async def _strategy_preload(img: Image, t: Target) -> npt.NDArray[Any]:
    await img.preload(t.level)
    return await img.read(t.window, t.level)


async def _strategy_stream(img: Image, t: Target) -> npt.NDArray[Any]:
    win = t.window
    out = np.zeros((img.count, win.height, win.width), dtype=img.dtype)
    async for tile in img.iter_tiles(win, t.level):
        tw = tile.window
        out[:, tw.row_off - win.row_off : tw.row_end - win.row_off,
            tw.col_off - win.col_off : tw.col_end - win.col_off] = tile.data
    return out


_STRATEGIES = {
    "lazy": _strategy_lazy,
    "preload": _strategy_preload,
    "stream": _strategy_stream,
}


async def _measure(
    ctx: Context, url: str, args: argparse.Namespace, run: Run, *, traced: bool
) -> None:
    """One read with ``run.strategy``: timed, or (``traced``) with its peak heap measured."""
    if traced:
        tracemalloc.start()
    began = time.perf_counter()
    img = await open_image(url, context=ctx)
    try:
        t = _target(img, args)
        if t.boundless:
            raise UsageError("compare reads windows inside the image")
        pixels = await _STRATEGIES[run.strategy](img, t)
        if traced:
            run.peak_bytes = tracemalloc.get_traced_memory()[1]
        else:
            run.seconds = time.perf_counter() - began
            run.requests, run.bytes = img.stats.requests, img.stats.bytes_fetched
            run.pixels = pixels
    except LimitExceededError as exc:
        run.note = f"skipped: {exc}"
    finally:
        if traced:
            tracemalloc.stop()
        await img.close()


async def compare(url: str, args: argparse.Namespace) -> list[Run]:
    """Each strategy on a fresh Context (cold), then again on the same Context (warm); then the
    same sequence again with tracemalloc on for the peak heap (tracing slows reads down, so it
    stays out of the timed sequence)."""
    # One unmeasured open first, so that one-time costs (imports, thread start-up, the header
    # size learned for the URL) do not land on whichever strategy happens to run first.
    async with _context(args, fresh_caches=True) as ctx:
        img = await open_image(url, context=ctx)
        await img.read((0, 0, 1, 1))
        await img.close()
    runs: list[Run] = []
    for strategy in _STRATEGIES:
        pair = [Run(strategy, "cold"), Run(strategy, "warm")]
        for traced in (False, True):
            async with _context(args, fresh_caches=True) as ctx:
                for run in pair:
                    await _measure(ctx, url, args, run, traced=traced)
        runs += pair
    return runs


def _table(runs: list[Run]) -> str:
    head = (
        f"{'strategy':<9} {'cache':<5} {'requests':>8} {'bytes':>11} {'time':>9} "
        f"{'peak mem':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        if r.seconds is None:
            lines.append(f"{r.strategy:<9} {r.cache:<5} {r.note}")
            continue
        lines.append(
            f"{r.strategy:<9} {r.cache:<5} {r.requests:>8} {_mib(r.bytes or 0):>11} "
            f"{r.seconds * 1000:>7.1f}ms {_mib(r.peak_bytes or 0):>10}"
        )
    return "\n".join(lines)


def _same_pixels(runs: list[Run]) -> bool:
    arrays = [r.pixels for r in runs if r.pixels is not None]
    return all(np.array_equal(arrays[0], a, equal_nan=arrays[0].dtype.kind == "f")
               for a in arrays[1:])


async def _compare(args: argparse.Namespace) -> int:
    runs = await compare(args.url, args)
    same = _same_pixels(runs)
    if args.json:
        _out(json.dumps({"runs": [r.row() for r in runs], "identical_pixels": same}, indent=2))
    else:
        _out(_table(runs))
        _out(
            "\nlazy: only the window's tiles; preload: the whole level first, then the read from "
            "memory;\nstream: tiles yielded as they arrive (iter_tiles). Peak mem: traced Python "
            "and NumPy heap."
        )
        _out(f"All strategies returned identical pixels: {'yes' if same else 'NO'}")
    return 0 if same else 1


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    from .sample import SAMPLE_NAME, default_sample_path, ensure_sample
    from .testing import RangeServer

    path = default_sample_path()
    if not path.exists():
        _out(f"Generating the sample COG at {path} (once; a few seconds)...", flush=True)
    path = await asyncio.to_thread(ensure_sample, path)
    data = await asyncio.to_thread(path.read_bytes)
    with RangeServer({SAMPLE_NAME: data}, latency=args.latency) as server:
        url = server.url(SAMPLE_NAME)
        _out(f"Serving {path.name} ({_mib(len(data))}) at {url} "
              f"with {args.latency * 1000:.0f} ms per request\n")
        async with _context(args, fresh_caches=True) as ctx:
            img = await open_image(url, context=ctx)
            try:
                _out(_describe(img.info(), img.stats) + "\n")
                # A window across the sample's coastline, so the PNG shows nodata as transparent.
                size = min(1024, img.width, img.height)
                col = row = min(size // 2, img.width - size, img.height - size)
                window = (col, row, size, size)
                server.reset()
                began = time.perf_counter()
                arr = await img.read(window)
                mask = await img.read_mask(window)
                took = time.perf_counter() - began
                _out(
                    f"Read window {window} over HTTP: {server.request_count} range request(s), "
                    f"{_mib(server.bytes_sent)} of the {_mib(len(data))} file "
                    f"({100 * server.bytes_sent / len(data):.1f}%), {took * 1000:.0f} ms\n"
                )
            finally:
                await img.close()
        args.window, args.bbox, args.level = window, None, 0
        runs = await compare(url, args)
        _out(_table(runs))
        same = "yes" if _same_pixels(runs) else "NO"
        _out(f"All strategies returned identical pixels: {same}\n")
    loop = asyncio.get_running_loop()
    body, used = await loop.run_in_executor(None, lambda: encode("png", arr, mask=mask))
    await asyncio.to_thread(Path(args.output).write_bytes, body)
    _out(f"Wrote {args.output} ({size}x{size}; heights {used[0]:g}..{used[1]:g} m as grey, "
          "nodata transparent)" if used else f"Wrote {args.output}")
    _out(
        "\nNext: `cloudroi serve` (allows only the sample by default), then e.g.\n"
        f"  curl -o region.png 'http://127.0.0.1:8080/region?url={path}&window=1024,1024,512,512'"
    )
    return 0


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .service import ServiceConfig, run

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
        from .service.security import SourcePolicy

        policy = SourcePolicy(config.effective_sources(), config.allowed_networks)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    _out(f"cloudroi {__version__} serving on http://{config.host}:{config.port}", flush=True)
    _out("allowed sources: " + ", ".join(policy.describe()), flush=True)
    run(config, print_fn=None)
    return 0


# --------------------------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------------------------


def _add_region_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--window", type=_window, metavar="C,R,W,H",
                       help="col_off,row_off,width,height in pixels of --level")
    where.add_argument("--bbox", type=_bbox, metavar="MINX,MINY,MAXX,MAXY",
                       help="bounding box in the image's CRS")
    p.add_argument("--level", type=int, default=0, help="0 = full resolution, 1.. overviews")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudroi", description="Read just the region of a TIFF/COG you need."
    )
    parser.add_argument("--version", action="version", version=f"cloudroi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--s3-endpoint", metavar="URL",
                       help="S3-compatible endpoint for s3:// URLs "
                            "(default: $CLOUDROI_S3_ENDPOINT_URL or AWS's)")

    url_help = "http(s)://, s3://, file:// URL or a local path"
    p = sub.add_parser("info", help="describe an image")
    p.add_argument("url", help=url_help)
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)

    p = sub.add_parser("read", help="read a region into a file")
    p.add_argument("url", help=url_help)
    _add_region_args(p)
    p.add_argument("--boundless", action="store_true",
                   help="allow a --window reaching outside the image: outside pixels are filled "
                        "with nodata (else 0) and masked (--bbox does this by itself)")
    p.add_argument("--size", type=_size, metavar="W,H",
                   help="output size: reads the best overview and resamples (nearest)")
    p.add_argument("--bands", type=_bands, metavar="1,2,3", help="1-based bands (default: all)")
    p.add_argument("--rescale", type=_rescale, metavar="MIN,MAX",
                   help="values mapped onto 0..255 for png/jpg/webp")
    p.add_argument("--quality", type=_quality, default=85, metavar="1..100",
                   help="JPEG/WebP quality (default 85)")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .npy, .png, .jpg, .webp or .tif (GeoTIFF)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (it is drawn only when stderr is a terminal)")
    common(p)

    p = sub.add_parser("serve", help="run the region service")
    p.add_argument("--host", help="address to listen on (default $CLOUDROI_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default $CLOUDROI_PORT or 8080)")
    p.add_argument("--allow", action="append", metavar="PREFIX",
                   help="allowed source prefix (repeatable; replaces $CLOUDROI_ALLOWED_SOURCES)")
    p.add_argument("--allow-network", action="append", metavar="CIDR",
                   help="private network upstream connections may reach (repeatable)")
    common(p)

    p = sub.add_parser("compare", help="lazy vs preloaded vs streamed reads, cold and warm")
    p.add_argument("url", help=url_help)
    _add_region_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)

    p = sub.add_parser("demo", help="serve the sample COG over HTTP locally and read from it")
    p.add_argument("-o", "--output", default="cloudroi-demo.png", help="PNG to write")
    p.add_argument("--latency", type=float, default=0.02,
                   help="seconds added to each HTTP request (object-store-like)")
    common(p)
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
        return _stdout_closed()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        command = {"info": _info, "read": _read, "compare": _compare, "demo": _demo}[args.command]
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


if __name__ == "__main__":
    sys.exit(main())
