"""The two ways the service turns a source down: not a source at all (400), not allowed (403)."""

from __future__ import annotations

from ..errors import AccessDeniedError

__all__ = ["BadSourceError", "SourceNotAllowedError"]


class SourceNotAllowedError(AccessDeniedError):
    """The service's configuration does not allow this source or upstream address."""


class BadSourceError(ValueError):
    """The ``url`` parameter is not a source at all (a 400): empty, overlong, spaces or control
    characters, a NUL byte (also percent-encoded), no scheme, no host. Anything that parses but
    hides structure (credentials, fragments, backslashes, dot or empty segments, double encoding,
    odd ports) is a refusal instead: ``SourceNotAllowedError``, a 403, like any other source
    outside the allowlist."""
