"""The cyclic garbage collector paused for a Lambda cold start, until the first answer.

A cold start allocates hundreds of thousands of objects that all live on (modules, classes,
functions), and the collector walks them again and again while they are made: 127 collections,
about 65 ms of a cold ``/info`` on the development machine (timed with ``gc.callbacks``), none
of which finds garbage worth the walk. ``cloudroi.serverless`` pauses the collector when it is
imported by a Lambda runtime (``AWS_LAMBDA_RUNTIME_API`` set) and the handler resumes it once
its first invocation has answered, whatever the outcome. Imported anywhere else (tests, the
aiohttp service, the library) nothing changes.

Resuming first freezes what is alive (``gc.freeze``: the objects move to a generation the
collector never walks). Without that, the first collection after ``gc.enable`` walks every
object the cold start made, all still in the youngest generation: 43-60 ms, measured, landing on
the runtime client's posting of the first response. The price: cyclic garbage made before that
point is never collected (reference counting frees everything else). Measured after a first
``/info``, ``/region`` or ``/tiles``: 1,684-1,819 unreachable objects among 83,000-107,000
tracked ones, once per execution environment. With SnapStart, ``before_snapshot`` collects
before the snapshot, so the restored heap starts clean.
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
    """Enable the collector again if ``pause`` disabled it (once; later calls do nothing),
    first moving every object alive now to the permanent generation (``gc.freeze``)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def paused() -> bool:
    return _paused
