"""Structured concurrency that raises the first real error rather than an ExceptionGroup.

Callers catch ``cloudroi.ObjectChangedError`` and friends; an ``ExceptionGroup`` wrapping them would
break that contract. The first failure cancels the sibling tasks (TaskGroup semantics) and is
re-raised on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

__all__ = ["gather_all"]

T = TypeVar("T")


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    cancelled: BaseException | None = None
    for exc in group.exceptions:
        leaf = _first_leaf(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
        cancelled = cancelled or leaf
    return cancelled or group


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await all concurrently; on the first failure cancel the rest and raise that failure."""
    items = list(aws)
    if len(items) == 1:
        return [await items[0]]
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_as_coro(a)) for a in items]
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None
    return [t.result() for t in tasks]


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw
