"""Bounded caches: byte-budgeted LRUs for blocks and for parsed headers (also bounded in count).

Both are thread-safe (the synchronous wrappers may use them from several threads) and keyed so that
an overwritten object can never be served from a stale entry: every key includes the object's ETag.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "LRUCache"]

V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    size: int = 0
    capacity: int = 0


class LRUCache(Generic[V]):
    """Least-recently-used mapping bounded by the summed ``sizeof`` of its values, and by
    ``max_entries`` values when given.

    A value larger than the whole capacity is not stored. ``capacity=0`` disables the cache.
    """

    def __init__(
        self,
        capacity: int,
        sizeof: Callable[[V], int] = lambda v: 1,
        *,
        max_entries: int | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_entries = max_entries
        self._sizeof = sizeof
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self._misses += 1
                return None
            self._data.move_to_end(key)
            self._hits += 1
            return item[0]

    def peek(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def put(self, key: Hashable, value: V) -> bool:
        size = self._sizeof(value)
        if size > self.capacity or self.max_entries == 0:
            return False
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._data[key] = (value, size)
            self._size += size
            while self._size > self.capacity or (
                self.max_entries is not None and len(self._data) > self.max_entries
            ):
                _, (_, evicted) = self._data.popitem(last=False)
                self._size -= evicted
                self._evictions += 1
        return True

    def pop(self, key: Hashable) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._size = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size(self) -> int:
        return self._size

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                len(self._data),
                self._size,
                self.capacity,
            )
