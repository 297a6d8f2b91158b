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
    CRSError,
    ExpressionError,
    LevelError,
    LimitExceededError,
    MissingExtraError,
    NotGeoreferencedError,
    ObjectChangedError,
    RangeNotSupportedError,
    ReadTimeoutError,
    ResamplingError,
    SourceError,
    SourceNotFoundError,
    TiffFormatError,
    TileOutsideBoundsError,
    UnsupportedTiffError,
    UpstreamError,
    WindowError,
)
from .refusals import SourceNotAllowedError

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
    501: "Not Implemented",
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


#: Library errors as statuses and codes, subclasses before their bases; ``None`` as the detail
#: means the error's own message, else a fixed sentence (storage errors are never echoed).
_MAPPING: tuple[tuple[type[CloudROIError], int, str, str | None], ...] = (
    (CRSError, 400, "invalid_crs", None),
    (ExpressionError, 400, "invalid_expression", None),
    (MissingExtraError, 501, "not_installed", None),
    (SourceNotAllowedError, 403, "source_not_allowed", None),
    (AccessDeniedError, 403, "upstream_access_denied", "storage refused access to the source"),
    (SourceNotFoundError, 404, "source_not_found", "the source does not exist"),
    (BandError, 400, "invalid_bands", None),
    (LevelError, 400, "invalid_level", None),
    (NotGeoreferencedError, 400, "no_georeference", None),
    (TileOutsideBoundsError, 404, "tile_outside_bounds", None),
    (ResamplingError, 400, "invalid_resampling", None),
    (WindowError, 400, "invalid_window", None),
    (ReadTimeoutError, 504, "upstream_timeout", "storage did not answer in time"),
    (ObjectChangedError, 502, "source_changed", "the source changed while it was being read"),
    (
        RangeNotSupportedError,
        502,
        "range_not_supported",
        "storage does not serve byte ranges properly",
    ),
    (SourceError, 502, "upstream_error", "storage failed"),
)


def problem_for(exc: CloudROIError) -> Problem:
    """The problem a library error becomes."""
    text = str(exc)
    if isinstance(exc, LimitExceededError):
        return Problem(413, "limit_exceeded", text, limit=exc.limit, value=exc.value)
    if isinstance(exc, UnsupportedTiffError):
        return Problem(422, "unsupported_tiff", text, feature=exc.feature)
    if isinstance(exc, TiffFormatError):
        return Problem(422, "invalid_tiff", f"the source is not a readable TIFF: {text}")
    if isinstance(exc, UpstreamError) and not isinstance(exc, ReadTimeoutError):
        status = f" (HTTP {exc.status})" if exc.status else ""
        return Problem(502, "upstream_error", f"storage failed{status}")
    for kind, code_status, code, detail in _MAPPING:
        if isinstance(exc, kind):
            return Problem(code_status, code, text if detail is None else detail)
    return Problem(500, "internal_error", "internal error")
