"""Lambda SnapStart: what the function prepares before its snapshot, what it renews after a restore.

With SnapStart on, Lambda runs the function's init once, when a version is published, snapshots
the execution environment's memory and resumes every new environment from that snapshot. What is
worth having in the snapshot is everything a first request would otherwise load: the modules of
the request path, imagecodecs' codec modules, pyproj's CRS database and the web-map grids
(``warm_up``), s3fs/botocore. What must not be shared by environments restored from one snapshot
is renewed after each restore: the event loop, the aiohttp session and its connection pool, the S3
client, the decode threads (all owned by the handler's ``LambdaApp``, which is dropped, so the
next invocation builds a new one), and the seeds of the random generators (retry jitter).

The hooks are registered with ``snapshot_restore_py``, which Lambda's Python runtimes (3.12 and
later) and ``awslambdaric`` provide; elsewhere the import fails and nothing is registered. The
handler module registers them when it is imported, as Lambda requires.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import random
import sys
import time
from typing import Any

__all__ = ["after_restore", "before_snapshot", "prepare", "register"]

log = logging.getLogger("cloudroi.serverless")

#: The request path's modules: the service core and everything its endpoints import.
CORE_MODULES = (
    "cloudroi.service.core",
    "cloudroi.service.state",
    "cloudroi.read.decode",
    "cloudroi.outputs",
)
#: imagecodecs loads a codec's extension module when its function is first looked up.
CODECS = (
    "png_encode",
    "jpeg8_encode",
    "webp_encode",
    "zlib_encode",
    "deflate_decode",
    "zstd_decode",
    "lzw_decode",
    "jpeg8_decode",
    "webp_decode",
    "tiff_decode",
    "lerc_decode",
    "lzma_decode",
)


def _optional(name: str) -> bool:
    """Import ``name`` if its distribution is installed (an extra); False if it is not."""
    if importlib.util.find_spec(name) is None:
        return False
    importlib.import_module(name)
    return True


def prepare() -> dict[str, float]:
    """Load what every first request would: the core modules, the codecs, s3fs (the s3 extra)
    and the map path (``warm_up``: pyproj's database, the tile matrix sets; the geo extra).
    Returns the seconds each step took. Safe to call more than once."""
    steps: dict[str, float] = {}
    started = time.perf_counter()
    for name in CORE_MODULES:
        importlib.import_module(name)
    from .core import load_endpoints  # each endpoint's module: imported by its first request

    load_endpoints()
    steps["core"] = time.perf_counter() - started

    started = time.perf_counter()
    import imagecodecs
    import numpy as np

    for codec in CODECS:
        getattr(imagecodecs, codec, None)
    imagecodecs.png_encode(np.zeros((1, 1), np.uint8))  # the encoder's first call sets itself up
    steps["codecs"] = time.perf_counter() - started

    started = time.perf_counter()
    if _optional("s3fs"):
        steps["s3fs"] = time.perf_counter() - started

    from ..region.warmup import warm_up

    started = time.perf_counter()
    if warm_up():
        steps["geo"] = time.perf_counter() - started
    return steps


def _reseed() -> None:
    """New seeds from the OS: environments restored from one snapshot would otherwise draw the
    same "random" numbers (the retry jitter would retry in step)."""
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def before_snapshot() -> None:
    """The before-snapshot hook: prepare, and hold no loop, session or connection."""
    from . import gcpause
    from .lambda_handler import reset

    steps = prepare()
    reset()
    # the collector was paused for the cold start: collect, freeze and resume it here, in init,
    # so that a restored environment never runs paused
    gcpause.resume(collect=True)
    log.info("prepared for the snapshot: %s", {k: round(v, 3) for k, v in steps.items()})


def after_restore() -> None:
    """The after-restore hook: drop whatever the function holds (its next invocation opens a
    new loop, session and pools) and reseed the random generators."""
    from .lambda_handler import reset

    reset()
    _reseed()


def register() -> bool:
    """Register the hooks with the runtime's ``snapshot_restore_py``; False where it is absent."""
    try:
        import snapshot_restore_py  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return False
    hooks: Any = snapshot_restore_py
    hooks.register_before_snapshot(before_snapshot)
    hooks.register_after_restore(after_restore)
    return True
