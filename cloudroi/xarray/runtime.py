"""One event loop, one Context and one Image per file, per process, for synchronous callers.

Dask tasks, xarray's lazy arrays and cloudroi's synchronous helpers run in plain threads, or in
worker processes. Each call would otherwise start an event loop, an HTTP session and an open of
the file (a header GET). The runtime keeps, per process:

- a daemon thread running one event loop, on which every coroutine of the runtime runs;
- one ``Context`` per distinct ``ContextOptions`` (a single one in the usual case), so one HTTP
  session, connection pool and set of s3fs clients serve every task;
- the Images opened from ``ImageSpec``s (at most ``MAX_IMAGES``, least recently used dropped),
  so N tasks reading one file open it once; concurrent first opens share one.

``run(coro)`` submits a coroutine to the loop from any thread (a thread of Dask's threaded
scheduler, a worker process's task thread, a thread that runs its own event loop) and waits for
its result. Called on the runtime's own loop it raises ``RuntimeError`` instead of deadlocking.

Everything is created on first use, and afresh in a forked child (the parent's loop thread does
not exist there; ``os.getpid()`` tells). At interpreter exit the Images and Contexts are closed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy.typing as npt

from ..context import Context
from ..errors import ObjectChangedError
from ..image import Image
from ..opening import open_image
from ..spec import ImageSpec

__all__ = [
    "MAX_IMAGES",
    "RuntimeCounters",
    "arun",
    "counters",
    "evict",
    "open_spec",
    "read",
    "read_sync",
    "run",
    "shared_context",
    "shutdown",
]

T = TypeVar("T")

#: Opened Images kept per process; the least recently used beyond are closed when idle.
MAX_IMAGES = 64
#: Seconds ``shutdown`` waits for the Images and Contexts to close.
_CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class RuntimeCounters:
    """What this process's runtime has done: ``opens`` counts Images opened (header GETs, one
    each when the header size is known), ``images`` those cached now."""

    pid: int
    opens: int
    images: int
    contexts: int


class _Entry:
    """A cached Image and how many reads use it now (it is closed only when none does)."""

    __slots__ = ("image", "retired", "users")

    def __init__(self, image: Image) -> None:
        self.image = image
        self.users = 0
        self.retired = False


class _Runtime:
    """The loop thread and what lives on its loop. Methods other than ``start``/``stop`` run on
    the loop."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="cloudroi-runtime", daemon=True)
        self.contexts: dict[str, Context] = {}
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.opening: dict[str, asyncio.Task[_Entry]] = {}
        self.opens = 0

    def start(self) -> _Runtime:
        self.thread.start()
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def context(self, spec: ImageSpec | None) -> Context:
        key = "" if spec is None else spec.context_key
        ctx = self.contexts.get(key)
        if ctx is None:
            options = None if spec is None else spec.context_options
            ctx = self.contexts[key] = Context(options)
        return ctx

    async def entry(self, spec: ImageSpec) -> _Entry:
        key = spec.key
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
            return found
        task = self.opening.get(key)
        if task is None:
            task = self.opening[key] = asyncio.create_task(self._open(spec))
            task.add_done_callback(lambda t: self._opened(key, t))
        return await asyncio.shield(task)

    def _opened(self, key: str, task: asyncio.Task[_Entry]) -> None:
        self.opening.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: the waiters got it (or none was left to)

    async def _open(self, spec: ImageSpec) -> _Entry:
        ctx = self.context(spec)
        if spec.header_bytes > 0 and ctx.header_sizes.get(spec.url) is None:
            ctx.header_sizes.put(spec.url, spec.header_bytes)
        image = await open_image(spec.url, context=ctx, **spec.open_options)
        self.opens += 1
        entry = self.entries[spec.key] = _Entry(image)
        while len(self.entries) > MAX_IMAGES:
            _, old = self.entries.popitem(last=False)
            await self.retire(old)
        return entry

    async def retire(self, entry: _Entry) -> None:
        entry.retired = True
        if entry.users == 0:
            await entry.image.close()

    async def drop(self, spec: ImageSpec) -> bool:
        entry = self.entries.pop(spec.key, None)
        if entry is not None:
            await self.retire(entry)
        return entry is not None

    async def close(self) -> None:
        entries, self.entries = list(self.entries.values()), OrderedDict()
        for entry in entries:
            await entry.image.close()
        contexts, self.contexts = list(self.contexts.values()), {}
        for ctx in contexts:
            await ctx.close()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(_CLOSE_TIMEOUT)
        if not self.thread.is_alive():
            self.loop.close()


_lock = threading.Lock()
_runtime: _Runtime | None = None
#: Runtimes inherited through fork: kept referenced so that their objects (sessions bound to a
#: loop no thread runs) are never finalized with warnings in the child.
_orphans: list[_Runtime] = []


def _current() -> _Runtime:
    global _runtime
    rt = _runtime
    if rt is not None and rt.pid == os.getpid():
        return rt
    with _lock:
        rt = _runtime
        if rt is None or rt.pid != os.getpid():
            if rt is not None:
                _orphans.append(rt)
            rt = _runtime = _Runtime().start()
        return rt


def _after_fork_in_child() -> None:
    global _lock, _runtime
    _lock = threading.Lock()
    if _runtime is not None:
        _orphans.append(_runtime)
        _runtime = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on this process's cloudroi loop and return its result; callable from any
    thread but the loop's own. ``timeout`` (seconds) cancels it and raises ``TimeoutError``."""
    rt = _current()
    if threading.get_ident() == rt.thread.ident:
        coro.close()
        raise RuntimeError(
            "cloudroi's synchronous API was called on cloudroi's own event loop thread; "
            "await the coroutine (e.g. Image.read) there instead"
        )
    future = asyncio.run_coroutine_threadsafe(coro, rt.loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


async def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the runtime's loop from a coroutine on any loop (xarray's
    ``load_async``, an application's own loop): awaited directly when already on it."""
    rt = _current()
    if threading.get_ident() == rt.thread.ident:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, rt.loop))


async def shared_context(spec: ImageSpec | None = None) -> Context:
    """The runtime's Context (for ``spec``'s ContextOptions); call on the runtime's loop."""
    return _on_loop().context(spec)


async def open_spec(spec: ImageSpec) -> Image:
    """The process's Image for ``spec``, opened on first use; call on the runtime's loop.
    Do not close it: the runtime does."""
    return (await _on_loop().entry(spec)).image


async def read(
    spec: ImageSpec,
    window: Sequence[int] | None = None,
    level: int = 0,
    bands: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> npt.NDArray[Any]:
    """``Image.read`` on the process's Image for ``spec``; call on the runtime's loop.

    When the object changed since it was opened (``ObjectChangedError``), the Image is dropped
    so that the next read (a retried task, a re-run graph) opens the new version; the error is
    raised, never pixels of two versions mixed.
    """
    rt = _on_loop()
    entry = await rt.entry(spec)
    entry.users += 1
    try:
        return await entry.image.read(window, level, bands, **kwargs)
    except ObjectChangedError:
        await rt.drop(spec)
        raise
    finally:
        entry.users -= 1
        if entry.retired and entry.users == 0:
            await entry.image.close()


def read_sync(
    spec: ImageSpec,
    window: Sequence[int] | None = None,
    level: int = 0,
    bands: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> npt.NDArray[Any]:
    """``read`` from synchronous code (any thread): what a Dask task calls."""
    return run(read(spec, window, level, bands, **kwargs))


async def evict(spec: ImageSpec) -> bool:
    """Forget the process's Image for ``spec`` (closed once idle); whether there was one."""
    return await _on_loop().drop(spec)


def counters() -> RuntimeCounters:
    """This process's runtime counters (zeros before first use)."""
    rt = _runtime
    if rt is None or rt.pid != os.getpid():
        return RuntimeCounters(os.getpid(), 0, 0, 0)
    return RuntimeCounters(rt.pid, rt.opens, len(rt.entries), len(rt.contexts))


def shutdown() -> None:
    """Close the process's Images and Contexts and stop its loop thread; the next call starts
    afresh. Registered to run at interpreter exit."""
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    if rt is None or rt.pid != os.getpid() or not rt.thread.is_alive():
        return
    # best effort (at exit too): the loop is stopped whatever closing raised
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(rt.close(), rt.loop).result(_CLOSE_TIMEOUT)
    rt.stop()


def _on_loop() -> _Runtime:
    rt = _runtime
    if rt is None or rt.pid != os.getpid() or threading.get_ident() != rt.thread.ident:
        raise RuntimeError("call this coroutine through cloudroi.xarray.runtime.run()")
    return rt


atexit.register(shutdown)
