"""What the ``cloudroi`` commands share: stdout that may go away, usage errors, the Context,
sizes and coordinates as text, and the region a command's options ask for."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from ..cache import LRUCache
from ..context import Context, ContextOptions
from ..errors import BandError, LevelError, NotGeoreferencedError, ResamplingError, WindowError
from ..image import Image
from ..outputs import ALPHA_FORMATS, RENDERED
from ..region import ArgumentError, Encoded, RegionPlan, RegionRequest, plan_region

__all__ = [
    "StdoutClosed",
    "UsageError",
    "context",
    "coordinate",
    "empty_note",
    "mib",
    "out",
    "plan_from_args",
    "rendering_note",
    "stdout_closed",
]


class UsageError(Exception):
    """A command-line value that does not make sense (exit status 2)."""


class StdoutClosed(Exception):
    """Whoever read our standard output has gone (``cloudroi info URL | head -1``)."""


def out(text: str = "", *, flush: bool = False) -> None:
    """``print`` to stdout; a reader that has gone becomes ``StdoutClosed``, which is told apart
    from a broken pipe to a server."""
    try:
        print(text, flush=flush)
    except BrokenPipeError as exc:
        raise StdoutClosed from exc


def stdout_closed() -> int:
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


def context(args: argparse.Namespace, *, fresh_caches: bool = False) -> Context:
    storage: dict[str, dict[str, Any]] = {}
    endpoint = getattr(args, "s3_endpoint", None) or os.environ.get("CLOUDROI_S3_ENDPOINT_URL")
    if endpoint:
        storage["s3"] = {"endpoint_url": endpoint}
    decoder = getattr(args, "jpeg_decoder", None)
    extra = {"jpeg_decoder": decoder} if decoder else {}
    options = ContextOptions(storage_options=storage, **extra)
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


def coordinate(v: float) -> str:
    """A coordinate as text that reads back as the same float: whole numbers without a decimal
    point (``6100000``), others as Python's shortest round-trip form (``6100690.987654321``)."""
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def mib(n: float) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{int(n)} B"


def plan_from_args(img: Image, args: argparse.Namespace, *, rendered: bool = False) -> RegionPlan:
    """The region ``--window``/``--bbox``, ``--level``/``--size``, ``--bands`` and
    ``--boundless`` ask for, planned by the region layer. Arguments that do not fit the image
    are usage errors, but for a window reaching outside it (status 1, with the hint)."""
    size = getattr(args, "size", None)
    try:
        request = RegionRequest(
            window=args.window,
            bbox=args.bbox,
            level=args.level if args.level else None,
            width=size[0] if size else None,
            height=size[1] if size else None,
            bands=tuple(args.bands) if getattr(args, "bands", None) else None,
            boundless=bool(getattr(args, "boundless", False)),
            expression=getattr(args, "expression", None),
            resampling=getattr(args, "resampling", None) or "nearest",
        )
        return plan_region(img, request, rendered=rendered)
    except (ArgumentError, BandError, LevelError, NotGeoreferencedError, ResamplingError) as exc:
        raise UsageError(str(exc)) from exc
    except WindowError as exc:
        if args.window is None:
            raise UsageError(str(exc)) from exc  # a bbox that misses the image
        # compare has no --boundless (its strategies read inside the image)
        hint = "; --boundless fills outside pixels" if hasattr(args, "boundless") else ""
        raise WindowError(f"{exc}{hint}") from exc


def rendering_note(encoded: Encoded) -> str:
    used = encoded.rescale
    return f", values {used[0]:g}..{used[1]:g} shown as 0..255" if used else ""


def empty_note(encoded: Encoded, fmt: str) -> str:
    """Without a valid pixel there is no value range to show, and the image shows nothing."""
    if fmt not in RENDERED or encoded.any_valid:
        return ""
    looks = "fully transparent" if fmt in ALPHA_FORMATS else "black"
    return f"; the window holds no valid pixel (all nodata or masked): the image is {looks}"
