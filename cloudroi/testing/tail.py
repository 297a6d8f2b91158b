"""A long-tail latency for ``RangeServer``: most GETs answer after ``base`` seconds, a seeded share
of them after ``delay`` (as an object store's slowest percent or two do)."""

from __future__ import annotations

import random
import threading
from collections.abc import Collection

from aiohttp import web

__all__ = ["LongTail"]


class LongTail:
    """``RangeServer(latency=LongTail(share=0.02, delay=1.0))``: each request draws from a
    ``random.Random(seed)``, so a run sees the same number of slow requests in the same order
    of arrival. ``slow`` and ``fast`` count what was drawn; HEAD and other methods outside
    ``methods`` get ``base`` and draw nothing."""

    def __init__(
        self,
        share: float = 0.02,
        delay: float = 1.0,
        *,
        base: float = 0.0,
        seed: int = 0,
        methods: Collection[str] = ("GET",),
    ) -> None:
        if not 0.0 <= share <= 1.0 or delay < 0 or base < 0:
            raise ValueError("share in [0, 1], delay and base >= 0")
        self.share = share
        self.delay = delay
        self.base = base
        self.methods = frozenset(methods)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.slow = 0
        self.fast = 0

    def __call__(self, request: web.Request) -> float:
        if request.method not in self.methods:
            return self.base
        with self._lock:
            tail = self._rng.random() < self.share
            if tail:
                self.slow += 1
            else:
                self.fast += 1
        return self.delay if tail else self.base
