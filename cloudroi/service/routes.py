"""Paths to endpoints: patterns with named parts, matched in order, one name per endpoint.

A path like ``/tiles/WebMercatorQuad/12/2200/1343@2x.png`` matches the pattern
``/tiles/{tms}/{z}/{x}/{y}`` with its optional scale and format; the parts go to the handler as
``CoreRequest.path_params``. Metrics label requests by the route's name, never by the raw path
(whose count a client controls).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .messages import CoreRequest, CoreResponse

if TYPE_CHECKING:
    from .state import ServiceState

__all__ = ["Handler", "Route", "Router", "path"]

Handler = Callable[[CoreRequest, "ServiceState"], Awaitable[CoreResponse]]

#: What a ``{name}`` stands for in a pattern, unless the pattern says otherwise.
_PARTS = {
    "tms": r"[A-Za-z][A-Za-z0-9_.-]{0,63}",
    "z": r"\d{1,2}",
    "x": r"\d{1,10}",
    "y": r"\d{1,10}",
    "scale": r"[1-4]",
    "format": r"[A-Za-z]{3,5}",
    "number": r"[^/,]{1,40}",
    "size": r"\d{1,6}",
    "file": r"[A-Za-z0-9_.-]{1,64}(?:/[A-Za-z0-9_.-]{1,64}){0,3}",
}


def path(pattern: str) -> re.Pattern[str]:
    """A compiled path pattern: ``{name}`` for a part (``{name:kind}`` to say which kind of
    text it is, from ``_PARTS``), ``[...]`` around an optional piece."""
    out = re.escape(pattern).replace(r"\[", "(?:").replace(r"\]", ")?")

    def part(m: re.Match[str]) -> str:
        name, _, kind = m.group(1).partition(":")
        return f"(?P<{name}>{_PARTS[kind or name]})"

    out = re.sub(r"\\\{([a-z_]+(?::[a-z_]+)?)\\\}", part, out)
    return re.compile(f"^{out}$")


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: its name (the metrics label), its pattern, whether it reads storage (so it
    is admitted, bounded in time and counted as a storage request)."""

    name: str
    pattern: re.Pattern[str]
    handler: Handler
    storage: bool = True


class Router:
    """Routes tried in order; the first whose pattern matches the path answers."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, req: CoreRequest) -> tuple[Route, CoreRequest] | None:
        for route in self.routes:
            m = route.pattern.match(req.path)
            if m is not None:
                params = {k: v for k, v in m.groupdict().items() if v is not None}
                return route, replace(req, path_params=params)
        return None

    def names(self) -> list[str]:
        return [r.name for r in self.routes]
