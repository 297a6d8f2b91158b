"""A request and a response as every transport sees them, and the two kinds of body the core
writes itself: JSON documents and problem details.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .problems import PROBLEM_TYPE, Problem

__all__ = ["JSON_TYPE", "CoreRequest", "CoreResponse", "json_response", "problem_response"]

JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class CoreRequest:
    """A request as any transport sees it. ``headers`` are keyed by lower-case name."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Named parts of the path, filled in by the router (``{"z": "12", ...}``).
    path_params: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> CoreRequest:
        items = tuple(query.items()) if isinstance(query, Mapping) else tuple(query)
        return cls(
            method.upper(),
            path,
            items,
            {k.lower(): v for k, v in (headers or {}).items()},
        )


@dataclass(slots=True)
class CoreResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)


def json_value(value: Any) -> Any:
    """``value`` with non-finite floats (which JSON cannot carry) as null, lists and
    dictionaries included."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def json_response(doc: Any, headers: Mapping[str, str] | None = None) -> CoreResponse:
    body = json.dumps(json_value(doc), allow_nan=False, separators=(",", ":")).encode()
    return CoreResponse(200, {"Content-Type": JSON_TYPE, **(headers or {})}, body)


def problem_response(problem: Problem, req: CoreRequest) -> CoreResponse:
    headers = {"Content-Type": PROBLEM_TYPE, "Cache-Control": "no-store"}
    headers.update(problem.headers)
    return CoreResponse(problem.status, headers, problem.body(req.path))
