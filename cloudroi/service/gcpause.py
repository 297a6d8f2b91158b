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
point is never collected (reference counting frees everything else). After a first ``/info``,
``/region`` or ``/tiles`` that answered, that is 1,684-1,819 small unreachable objects among
83,000-107,000 tracked ones, once per execution environment. A first request that failed can
leave its buffers in cycles (an exception's traceback holding a frame that holds the output
array: 16 MB in a reviewer's reproduction), so after an error answer (status 400 or more, or
an exception) the handler has a full collection run before the freeze (about 40 ms, on that
answer only). With SnapStart, ``before_snapshot`` collects and resumes the collector in init:
a restored environment never runs paused.
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


def resume(collect: bool = False) -> None:
    """Enable the collector again if ``pause`` disabled it (once; later calls do nothing),
    first moving every object alive now to the permanent generation (``gc.freeze``). With
    ``collect`` a full collection runs before the freeze: after a first request that failed,
    whose exception's traceback cycles can hold its buffers."""
    global _paused
    if _paused:
        _paused = False
        if collect:
            gc.collect()
        gc.freeze()
        gc.enable()


def paused() -> bool:
    return _paused
