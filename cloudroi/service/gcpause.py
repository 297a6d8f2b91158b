"""The cyclic garbage collector paused for a Lambda cold start, until the first answer.

A cold start allocates hundreds of thousands of objects that all live on (modules, classes,
functions), and the collector walks them again and again while they are made: 127 collections,
about 65 ms of a cold ``/info`` on the development machine (timed with ``gc.callbacks``), none
of which finds garbage worth the walk. ``cloudroi.serverless`` pauses the collector when it is
imported by a Lambda runtime (``AWS_LAMBDA_RUNTIME_API`` set) and the handler resumes it once
its first invocation has answered, whatever the outcome. Only cyclic garbage waits meanwhile
(reference counting frees everything else), for one request at most. Imported anywhere else
(tests, the aiohttp service, the library) nothing changes.
"""

from __future__ import annotations

import gc
import os

__all__ = ["pause", "paused", "resume"]

_paused = False


def pause() -> bool:
    """Disable the collector for the cold start, under a Lambda runtime only; True if it did."""
    global _paused
    if _paused or not gc.isenabled() or "AWS_LAMBDA_RUNTIME_API" not in os.environ:
        return False
    gc.disable()
    _paused = True
    return True


def resume() -> None:
    """Enable the collector again if ``pause`` disabled it (once; later calls do nothing)."""
    global _paused
    if _paused:
        _paused = False
        gc.enable()


def paused() -> bool:
    return _paused
