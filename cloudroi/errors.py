"""The exceptions cloudroi raises: every error a caller can see derives from CloudROIError.

The whole tree::

    CloudROIError
    ├── TiffFormatError            the bytes are not a readable TIFF (truncated, loops, bad offsets)
    │   └── UnsupportedTiffError   a valid TIFF using a feature not read here (names it)
    ├── WindowError                a window, level, band or output shape outside what the image has
    │   ├── LevelError             a resolution level the image does not have
    │   ├── BandError              a band the image does not have, or a band list it cannot serve
    │   ├── NotGeoreferencedError  map coordinates asked of an image without georeferencing
    │   ├── ResamplingError        a resampling name not known, or one a paletted image refuses
    │   └── TileOutsideBoundsError a web-map tile that does not touch the image
    ├── ExpressionError            an expression= that does not parse or leaves the whitelist
    ├── CRSError                   a CRS that cannot be read, built or converted (or pyproj missing)
    ├── BatchRequestError          an entry of a batch (read_many, STAC items) that is malformed
    ├── LimitExceededError         a configured budget (bytes, tiles, output size) would be passed
    ├── OptionError                an option value (keyword or CLOUDROI_* variable) not known here
    └── SourceError                the storage layer failed; ``url`` names the object
        ├── SourceNotFoundError    404 / NoSuchKey / missing file
        ├── AccessDeniedError      401 / 403 / permission denied
        ├── RangeNotSupportedError the server ignored or mangled a Range request
        ├── ObjectChangedError     the object's ETag/size changed after open (412, new ETag, 416)
        └── UpstreamError          any other failure talking to storage
            ├── TransientError     retryable: 5xx, 429, resets, truncated bodies (``retry_after``)
            └── ReadTimeoutError   the read did not finish within its deadline

Foreign exceptions (aiohttp, botocore, OSError) are translated into this tree in the source layer
only; nothing above ``cloudroi.source`` catches them.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ArgumentError",
    "BandError",
    "BatchRequestError",
    "CRSError",
    "CloudROIError",
    "ExpressionError",
    "LevelError",
    "LimitExceededError",
    "MissingExtraError",
    "NotGeoreferencedError",
    "OptionError",
    "TileOutsideBoundsError",
    "ObjectChangedError",
    "RangeNotSupportedError",
    "ReadTimeoutError",
    "ResamplingError",
    "SourceError",
    "SourceNotFoundError",
    "TiffFormatError",
    "TransientError",
    "UnsupportedTiffError",
    "UpstreamError",
    "WindowError",
]


class CloudROIError(Exception):
    """Base class of every error cloudroi raises on purpose."""


class TiffFormatError(CloudROIError):
    """The data is not a well-formed TIFF, or its header asks for something impossible."""


class UnsupportedTiffError(TiffFormatError):
    """A well-formed TIFF that uses a feature cloudroi does not read; the message names it."""

    def __init__(self, feature: str) -> None:
        super().__init__(f"unsupported TIFF feature: {feature}")
        self.feature = feature


class WindowError(CloudROIError, ValueError):
    """A requested window, level, band list or output shape does not fit the image."""


class LevelError(WindowError):
    """A resolution level the image does not have."""


class BandError(WindowError):
    """A band the image does not have, or a list of bands it cannot serve (too many, or not one
    or three for an 8-bit rendering)."""


class NotGeoreferencedError(WindowError):
    """Map coordinates (a bbox, a point) asked of an image without georeferencing."""


class ResamplingError(WindowError):
    """An unknown resampling, or a blending one (bilinear, cubic, average) asked of a paletted
    image, whose values are palette indices that must not be mixed."""


class CRSError(CloudROIError, ValueError):
    """A coordinate reference system that cannot be read, built or converted, or a conversion
    that needs pyproj when it is not installed (the ``geo`` extra)."""


class OptionError(CloudROIError, ValueError):
    """An option given a value cloudroi does not know, as a keyword argument or through a
    CLOUDROI_* variable; the message lists the values it takes."""


class BatchRequestError(CloudROIError, ValueError):
    """An entry of a batch (a ``read_many`` request, a STAC item) that is malformed: no URL,
    both or neither of window and bounds, a value of the wrong kind. ``index`` is its position
    in the batch (None when the batch itself is malformed)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"request {index}: {message}")
        self.index = index


class MissingExtraError(CloudROIError):
    """A feature that needs an optional dependency which is not installed: ``extra`` names
    the pip extra that brings it (``pip install "cloudroi[geo]"``)."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs the {extra!r} extra: pip install 'cloudroi[{extra}]'")
        self.feature = feature
        self.extra = extra


class TileOutsideBoundsError(WindowError):
    """A tile (of a tile matrix set, at a zoom) that does not touch the image."""


class LimitExceededError(CloudROIError):
    """A read would exceed a configured budget; raised before the costly work starts."""

    def __init__(self, what: str, value: int, limit: int) -> None:
        super().__init__(f"{what} {value} exceeds the limit of {limit}")
        self.what = what
        self.value = value
        self.limit = limit


class SourceError(CloudROIError):
    """Reading bytes from storage failed."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(f"{message} ({url})" if url else message)
        self.url = url


class SourceNotFoundError(SourceError):
    """The object does not exist."""


class AccessDeniedError(SourceError):
    """Storage refused access to the object."""


class RangeNotSupportedError(SourceError):
    """The server did not honour a byte-range request (200 with a full body, wrong Content-Range,
    an encoded range); cloudroi stops reading rather than download a whole object."""


class ObjectChangedError(SourceError):
    """The object changed between open and a later read; two versions are never mixed."""


class UpstreamError(SourceError):
    """Any other storage failure; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message, url=url)
        self.status = status


class TransientError(UpstreamError):
    """A failure worth retrying (5xx, 429, connection reset, truncated body)."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, status=status)
        self.retry_after = retry_after


class ReadTimeoutError(UpstreamError):
    """A request or a whole read took longer than its deadline."""


class ArgumentError(ValueError):
    """An argument that does not parse or is out of range; ``name`` says which (the front
    ends' shared validators, ``cloudroi.region.args``, raise it)."""

    def __init__(self, name: str, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message)
        self.name = name
        self.code = code


class ExpressionError(CloudROIError, ArgumentError):
    """An expression that does not parse, uses something outside the whitelist, or is too
    large. Also an ``ArgumentError`` of the argument ``expression`` (code
    ``invalid_expression``), so front ends refuse it like any other argument."""

    def __init__(self, message: str) -> None:
        ArgumentError.__init__(self, "expression", message, "invalid_expression")
