"""The entries of a batch read: ``ChipRequest``, and turning lists of dicts, tuples or a
DataFrame's rows into them. Pure: nothing here opens a file.

A request names one file and one of

- ``window`` = (col_off, row_off, width, height) in pixels of ``level`` (``Image.read``), or
- ``bounds`` = (minx, miny, maxx, maxy) in ``crs`` (the file's own when None), read on that CRS's
  grid with ``resampling`` (``Image.read_region``),

and optionally ``out_shape`` = (height, width) and 1-based ``bands``. A window read to an
``out_shape`` is resampled with ``resampling`` too (``Image.read``'s kernels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BatchRequestError
from ..types import Window

__all__ = ["ChipRequest", "as_requests"]

Bounds = tuple[float, float, float, float]

_KEYS = {
    "url",
    "window",
    "bounds",
    "bbox",
    "crs",
    "out_shape",
    "level",
    "bands",
    "boundless",
    "resampling",
}


@dataclass(frozen=True, slots=True)
class ChipRequest:
    """One read of a batch: a window (pixels) or bounds (map units) of one file."""

    url: str
    window: Window | None = None
    bounds: Bounds | None = None
    crs: Any = None
    out_shape: tuple[int, int] | None = None
    level: int = 0
    bands: tuple[int, ...] | None = None
    boundless: bool = False
    resampling: str = "nearest"

    @property
    def georeferenced(self) -> bool:
        return self.bounds is not None


def _absent(value: Any) -> bool:
    """None, or the NaN a DataFrame puts in a column a row does not use."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ints(value: Any, n: int, what: str, index: int) -> tuple[int, ...]:
    try:
        seq = [value] if n == 1 and not isinstance(value, Iterable) else list(value)
    except TypeError:
        raise BatchRequestError(f"{what} must be {n} integers, got {value!r}", index) from None
    if len(seq) != n or not all(_integral(v) for v in seq):
        raise BatchRequestError(f"{what} must be {n} integers, got {value!r}", index)
    return tuple(int(v) for v in seq)


def _integral(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f.is_integer()


def _bands(value: Any, index: int) -> tuple[int, ...]:
    seq = [value] if _integral(value) else value
    if isinstance(seq, str) or not isinstance(seq, Iterable) or not (seq := list(seq)):
        raise BatchRequestError(f"bands must name at least one band, got {value!r}", index)
    return _ints(seq, len(seq), "bands", index)


def _floats(value: Any, what: str, index: int) -> Bounds:
    try:
        seq = [float(v) for v in value]
    except (TypeError, ValueError):
        raise BatchRequestError(f"{what} must be 4 numbers, got {value!r}", index) from None
    if len(seq) != 4 or not all(math.isfinite(v) for v in seq):
        raise BatchRequestError(f"{what} must be 4 finite numbers, got {value!r}", index)
    return (seq[0], seq[1], seq[2], seq[3])


def _opt(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if _absent(value) else value


def _where(row: Mapping[str, Any], index: int) -> tuple[Window | None, Bounds | None, Any]:
    """(window, bounds, crs): exactly one of the first two."""
    window = _opt(row, "window")
    bounds = _opt(row, "bounds")
    bounds = _opt(row, "bbox") if bounds is None else bounds
    if (window is None) == (bounds is None):
        raise BatchRequestError("give exactly one of window and bounds", index)
    crs = _opt(row, "crs")
    if window is not None:
        if crs is not None:
            raise BatchRequestError("crs goes with bounds, not with a pixel window", index)
        return Window(*_ints(window, 4, "window", index)), None, None
    return None, _floats(bounds, "bounds", index), crs


def _shape(value: Any, index: int) -> tuple[int, int] | None:
    if value is None:
        return None
    shape = _ints(value, 2, "out_shape", index)
    if min(shape) < 1:
        raise BatchRequestError(f"out_shape must be positive, got {shape}", index)
    return (shape[0], shape[1])


def _from_mapping(row: Mapping[str, Any], index: int) -> ChipRequest:
    unknown = sorted(str(k) for k in row if k not in _KEYS and not _absent(row[k]))
    if unknown:
        raise BatchRequestError(f"unknown keys {unknown}", index)
    url = row.get("url")
    if not isinstance(url, str) or not url:
        raise BatchRequestError(f"url must be a non-empty string, got {url!r}", index)
    window, bounds, crs = _where(row, index)
    bands = _opt(row, "bands")
    level = _opt(row, "level")
    resampling = _opt(row, "resampling") or "nearest"
    if not isinstance(resampling, str):
        raise BatchRequestError(f"resampling must be a name, got {resampling!r}", index)
    return ChipRequest(
        url=url,
        window=window,
        bounds=bounds,
        crs=crs,
        out_shape=_shape(_opt(row, "out_shape"), index),
        level=0 if level is None else _ints(level, 1, "level", index)[0],
        bands=None if bands is None else _bands(bands, index),
        boundless=bool(_opt(row, "boundless")),
        resampling=resampling,
    )


def _one(item: Any, index: int) -> ChipRequest:
    if isinstance(item, ChipRequest):
        return item
    if isinstance(item, Mapping):
        return _from_mapping(item, index)
    if isinstance(item, tuple | list) and len(item) in (2, 3):
        keys = ("url", "window", "out_shape")
        return _from_mapping(dict(zip(keys, item, strict=False)), index)
    raise BatchRequestError(
        "a request is a ChipRequest, a mapping or a (url, window[, out_shape]) tuple, "
        f"got {type(item).__name__}",
        index,
    )


def as_requests(requests: Any) -> list[ChipRequest]:
    """``requests`` as ChipRequests: a sequence of ChipRequest / mappings / (url, window[,
    out_shape]) tuples, or a pandas DataFrame whose columns are ChipRequest's fields (``bbox``
    for ``bounds``; NaN or None where a row does not use a column). BatchRequestError names the
    first malformed entry."""
    if hasattr(requests, "to_dict") and hasattr(requests, "columns"):
        requests = requests.to_dict("records")
    if isinstance(requests, str | bytes) or not isinstance(requests, Sequence | Iterable):
        raise BatchRequestError(f"requests must be a sequence, got {type(requests).__name__}")
    return [_one(item, i) for i, item in enumerate(requests)]
