"""Fault injection for the test range server: seeded random faults at a rate, counted by kind.

``RandomFaults`` is a ``RangeServer.fault`` hook. Each request draws from a seeded generator; with
probability ``rate`` it gets one fault, picked by weight from ``mix``, and every injection is
counted, so a soak test can report exactly what it survived. The hook runs in the server's thread;
its state is guarded by a lock.

The kinds (see ``FAULTS``) cover what object stores and HTTP servers are seen to do: 5xx and 429
with and without ``Retry-After``, resets and truncated bodies, stalls longer than the client's
read timeout, a ranged GET answered 200 with the whole object, a wrong ``Content-Range``,
multipart answers, an encoded range, the object replaced (412, or other bytes under another ETag
from a server that ignores If-Match) and the object shrunk (416).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from .rangeserver import Fault

__all__ = ["FAULTS", "TRANSIENT", "RandomFaults", "eventually", "fail_first"]


def _make(kind: str, stall: float) -> Fault:
    if kind == "stall":
        return Fault("stall", delay=stall)
    return FAULTS[kind]


#: Every fault kind by name. ``stall`` gets its delay from ``RandomFaults.stall``.
FAULTS: dict[str, Fault] = {
    "500": Fault("status", status=500),
    "502": Fault("status", status=502),
    "503": Fault("status", status=503),
    "503-retry-after": Fault("status", status=503, headers={"Retry-After": "1"}),
    "429": Fault("status", status=429),
    "429-retry-after": Fault("status", status=429, headers={"Retry-After": "0"}),
    "429-retry-after-date": Fault(
        "status", status=429, headers={"Retry-After": email.utils.formatdate(0, usegmt=True)}
    ),
    "reset": Fault("reset", after=7),
    "reset-at-start": Fault("reset", after=0),
    "truncate": Fault("truncate", after=100),
    "stall": Fault("stall"),
    "ignore_range": Fault("ignore_range"),
    "wrong_range": Fault("wrong_range", shift=16),
    "multipart": Fault("multipart"),
    "encoded": Fault("encoded"),
    "412": Fault("status", status=412),
    "changed": Fault("changed"),
    "shrunk": Fault("shrunk", size=1000),
}

#: Retryable kinds (a read survives them unless they repeat on every attempt).
TRANSIENT = frozenset(
    {
        "500",
        "502",
        "503",
        "503-retry-after",
        "429",
        "429-retry-after",
        "429-retry-after-date",
        "reset",
        "reset-at-start",
        "truncate",
        "stall",
    }
)


class RandomFaults:
    """A seeded ``RangeServer`` fault hook: a fault with probability ``rate`` per request.

    ``mix`` weighs the kinds (default: all of ``FAULTS`` equally); ``paths`` limits injection to
    requests whose path starts with one of them. ``injected`` counts faults by kind, ``requests``
    every request seen.
    """

    def __init__(
        self,
        rate: float = 0.1,
        *,
        seed: int = 0,
        mix: Mapping[str, float] | None = None,
        stall: float = 1.0,
        paths: tuple[str, ...] = ("/",),
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate is a probability")
        weights = dict(mix) if mix is not None else dict.fromkeys(FAULTS, 1.0)
        unknown = set(weights) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.rate = rate
        self.stall = stall
        self.paths = paths
        self._kinds = list(weights)
        self._weights = [weights[k] for k in self._kinds]
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.enabled = True

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def __call__(self, request: Any, etag: str) -> Fault | None:
        if not request.path.startswith(self.paths):
            return None
        with self._lock:
            self.requests += 1
            if not self.enabled or self._rng.random() >= self.rate:
                return None
            kind = self._rng.choices(self._kinds, self._weights)[0]
            self.injected[kind] += 1
        return _make(kind, self.stall)


def fail_first(
    n: int, fault: Fault, *, match: Callable[[Any], bool] | None = None
) -> Callable[[Any, str], Fault | None]:
    """A hook failing the first ``n`` requests that ``match`` (default: all), then behaving."""
    lock = threading.Lock()
    seen = [0]

    def hook(request: Any, etag: str) -> Fault | None:
        if match is not None and not match(request):
            return None
        with lock:
            seen[0] += 1
            return fault if seen[0] <= n else None

    return hook


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    """Poll ``predicate`` (e.g. a record from the server's thread having landed) for up to
    ``within`` seconds without blocking the event loop."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
