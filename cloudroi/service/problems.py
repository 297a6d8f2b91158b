"""Errors as RFC 9457 problem details: every refusal the service makes, with its HTTP status.

``Problem`` is raised by the request core for what it decides itself (bad parameters, overload);
``problem_for`` maps the library's errors onto statuses in one table. Details name what was wrong
with the request; they never carry upstream response bodies or internal tracebacks.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import (
    AccessDeniedError,
    BandError,
    CloudROIError,
    LevelError,
    LimitExceededError,
    NotGeoreferencedError,
    ObjectChangedError,
    RangeNotSupportedError,
    ReadTimeoutError,
    SourceError,
    SourceNotFoundError,
    TiffFormatError,
    UnsupportedTiffError,
    UpstreamError,
    WindowError,
)
from .security import SourceNotAllowedError

__all__ = ["PROBLEM_TYPE", "Problem", "problem_for"]

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    417: "Expectation Failed",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(Exception):
    """An error response: ``status``, a short machine-readable ``code`` and a ``detail``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def title(self) -> str:
        return _TITLES.get(self.status, "Error")

    def document(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc

    def body(self, instance: str | None = None) -> bytes:
        return json.dumps(self.document(instance), separators=(",", ":")).encode()


def bad_request(detail: str, code: str = "invalid_parameter", **extra: Any) -> Problem:
    return Problem(400, code, detail, **extra)


def problem_for(exc: CloudROIError) -> Problem:
    """The problem a library error becomes (the order matters: subclasses first)."""
    text = str(exc)
    if isinstance(exc, SourceNotAllowedError):
        return Problem(403, "source_not_allowed", text)
    if isinstance(exc, AccessDeniedError):
        return Problem(403, "upstream_access_denied", "storage refused access to the source")
    if isinstance(exc, SourceNotFoundError):
        return Problem(404, "source_not_found", "the source does not exist")
    if isinstance(exc, LimitExceededError):
        return Problem(413, "limit_exceeded", text, limit=exc.limit, value=exc.value)
    if isinstance(exc, UnsupportedTiffError):
        return Problem(422, "unsupported_tiff", text, feature=exc.feature)
    if isinstance(exc, TiffFormatError):
        return Problem(422, "invalid_tiff", f"the source is not a readable TIFF: {text}")
    if isinstance(exc, BandError):
        return Problem(400, "invalid_bands", text)
    if isinstance(exc, LevelError):
        return Problem(400, "invalid_level", text)
    if isinstance(exc, NotGeoreferencedError):
        return Problem(400, "no_georeference", text)
    if isinstance(exc, WindowError):
        return Problem(400, "invalid_window", text)
    if isinstance(exc, ReadTimeoutError):
        return Problem(504, "upstream_timeout", "storage did not answer in time")
    if isinstance(exc, ObjectChangedError):
        return Problem(502, "source_changed", "the source changed while it was being read")
    if isinstance(exc, RangeNotSupportedError):
        return Problem(502, "range_not_supported", "storage does not serve byte ranges properly")
    if isinstance(exc, UpstreamError):
        status = f" (HTTP {exc.status})" if exc.status else ""
        return Problem(502, "upstream_error", f"storage failed{status}")
    if isinstance(exc, SourceError):
        return Problem(502, "upstream_error", "storage failed")
    return Problem(500, "internal_error", "internal error")
