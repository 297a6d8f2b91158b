"""Colormaps: 1-band values to RGBA, for 8-bit renderings.

Three kinds, one type (``Colormap``):

- a table (``Colormap.table``): row ``v`` is the colour of value ``v``. A paletted TIFF's
  internal palette (``Image.colormap``) and the named colormaps (``named("viridis")``, 256 rows,
  shipped as ``named.npz``, generated from matplotlib by ``tools/make_colormaps.py``) are tables.
  A named colormap is ``scaled``: it colours the 0..255 rendering of the values (after rescale),
  not the values themselves.
- discrete: a JSON object ``{"value": [r, g, b, a], ...}`` (integer values; 3 components mean
  alpha 255); values not listed are transparent.
- intervals: a JSON array ``[[[min, max], [r, g, b, a]], ...]``; a value in ``[min, max)`` takes
  the colour, a later interval wins over an earlier one, values in none are transparent.

``parse(text)`` reads the JSON forms as TiTiler's ``colormap`` parameter takes them, with caps
on size; a bad colormap is a ``ColormapError`` saying why.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import CloudROIError

__all__ = [
    "MAX_DISCRETE",
    "MAX_INTERVALS",
    "MAX_JSON_BYTES",
    "Colormap",
    "ColormapError",
    "choose",
    "colormap_names",
    "named",
    "parse",
]

#: Caps on a JSON colormap: its text, its discrete entries, its intervals.
MAX_JSON_BYTES = 64 << 10
MAX_DISCRETE = 256
MAX_INTERVALS = 1024
_TABLES = pathlib.Path(__file__).with_name("named.npz")

RGBA = npt.NDArray[np.uint8]


class ColormapError(CloudROIError, ValueError):
    """A colormap that does not parse, is too large, or names no known colormap."""


@dataclass(frozen=True, slots=True, eq=False)
class Colormap:
    """A colormap: ``colors`` (n, 4) uint8 and what selects them (see the module's doc)."""

    kind: str  # "table", "discrete" or "intervals"
    colors: RGBA
    keys: npt.NDArray[np.float64] | None = None  # discrete: sorted values
    bounds: npt.NDArray[np.float64] | None = None  # intervals: (n, 2) min, max
    scaled: bool = False  # colours the 0..255 rendering (named colormaps)
    name: str | None = None

    @classmethod
    def table(cls, colors: npt.ArrayLike, *, scaled: bool = False) -> Colormap:
        """A table colormap: row ``v`` of ``colors`` ((n, 4) uint8) colours value ``v``."""
        array = np.ascontiguousarray(colors, dtype=np.uint8)
        if array.ndim != 2 or array.shape[1] != 4 or not 0 < array.shape[0] <= 1 << 16:
            raise ColormapError(f"a colormap table is (n, 4) with n <= 65536, got {array.shape}")
        return cls("table", array, scaled=scaled)

    def apply(self, values: npt.NDArray[Any]) -> RGBA:
        """RGBA (h, w, 4) of a (h, w) array of values."""
        if self.kind == "table":
            return _apply_table(self.colors, values)
        if self.kind == "discrete":
            assert self.keys is not None
            return _apply_discrete(self.keys, self.colors, values)
        assert self.bounds is not None
        return _apply_intervals(self.bounds, self.colors, values)


def _lookup(colors: RGBA, index: npt.NDArray[Any]) -> RGBA:
    """``colors[index]``, each RGBA row moved as one uint32 (4-5x faster than 4 bytes)."""
    packed = np.ascontiguousarray(colors).view(np.uint32)[:, 0]
    out: RGBA = packed[index].view(np.uint8).reshape(*index.shape, 4)
    return out


def _apply_table(colors: RGBA, values: npt.NDArray[Any]) -> RGBA:
    n = colors.shape[0]
    if values.dtype.kind == "u" and np.iinfo(values.dtype).max < n:
        return _lookup(colors, values)
    if values.dtype.kind == "b":
        return _lookup(colors, values.astype(np.uint8))
    inside = (values >= 0) & (values < n)
    if values.dtype.kind == "f":
        inside &= values == np.floor(values)
    index = np.where(inside, values, 0).astype(np.intp)
    out = _lookup(colors, index)
    out[~inside] = 0
    return out


def _apply_intervals(
    bounds: npt.NDArray[np.float64], colors: RGBA, values: npt.NDArray[Any]
) -> RGBA:
    """Each value in [min, max) of an interval takes its colour, the last such interval's."""
    order = np.argsort(bounds[:, 0], kind="stable")
    lo, hi = bounds[order, 0], bounds[order, 1]
    if np.all(hi[:-1] <= lo[1:]):  # disjoint: one search finds a value's only interval
        index = np.searchsorted(lo, values, side="right") - 1
        inside = (index >= 0) & (values < hi[index.clip(0)])
        out = _lookup(colors[order], index.clip(0))
        out[~inside] = 0
        return out
    # overlapping: between consecutive endpoints every value is inside the same intervals, so
    # the last interval covering each such segment decides it, found once for the segments
    points = np.unique(bounds)
    covers = (bounds[:, 0][None, :] <= points[:-1, None]) & (
        bounds[:, 1][None, :] >= points[1:, None]
    )
    n = len(bounds)
    last = np.where(covers.any(axis=1), n - 1 - np.argmax(covers[:, ::-1], axis=1), -1)
    segment = np.searchsorted(points, values, side="right") - 1
    inside = (segment >= 0) & (segment < len(points) - 1)
    winner = np.where(inside, last[segment.clip(0, max(len(points) - 2, 0))], -1)
    out = _lookup(colors, winner.clip(0))
    out[winner < 0] = 0
    return out


def _apply_discrete(keys: npt.NDArray[np.float64], colors: RGBA, values: npt.NDArray[Any]) -> RGBA:
    index = np.searchsorted(keys, values).clip(0, len(keys) - 1)
    found = keys[index] == values
    out: RGBA = colors[index]
    out[~found] = 0
    return out


@functools.cache
def _named_tables() -> dict[str, RGBA]:
    with np.load(_TABLES) as npz:
        return {name: npz[name] for name in npz.files}


def colormap_names() -> list[str]:
    """The names ``named`` knows (matplotlib's colormaps, lower case; ``_r`` reversed)."""
    return sorted(_named_tables())


def named(name: str) -> Colormap:
    """The named colormap ``name`` (case-insensitive), a 256-row table of the 0..255 rendering."""
    table = _named_tables().get(name.strip().lower())
    if table is None:
        raise ColormapError(f"unknown colormap name {name[:40]!r}; see colormap_names()")
    return Colormap("table", table, scaled=True, name=name.strip().lower())


def _color(value: Any, where: str) -> tuple[int, int, int, int]:
    if not isinstance(value, list) or len(value) not in (3, 4):
        raise ColormapError(f"{where}: a colour is [r, g, b] or [r, g, b, a]")
    for c in value:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255:
            raise ColormapError(f"{where}: colour components are integers 0..255, got {c!r}")
    r, g, b, *a = value
    return (r, g, b, a[0] if a else 255)


def _discrete(doc: dict[str, Any]) -> Colormap:
    if not 0 < len(doc) <= MAX_DISCRETE:
        raise ColormapError(f"a discrete colormap has 1 to {MAX_DISCRETE} entries, got {len(doc)}")
    entries: dict[int, tuple[int, int, int, int]] = {}
    for key, value in doc.items():
        try:
            number = int(key.strip())
        except ValueError:
            raise ColormapError(f"colormap keys are integer values, got {key[:40]!r}") from None
        if abs(number) > 1 << 53:
            raise ColormapError(f"colormap key {key[:40]!r} is out of range")
        entries[number] = _color(value, f"value {number}")
    keys = sorted(entries)
    if keys[0] >= 0 and keys[-1] < 1 << 16:  # a table: one lookup, unlisted rows transparent
        table = np.zeros((keys[-1] + 1, 4), dtype=np.uint8)
        for k in keys:
            table[k] = entries[k]
        return Colormap("table", table)
    colors = np.array([entries[k] for k in keys], dtype=np.uint8)
    return Colormap("discrete", colors, keys=np.array(keys, dtype=np.float64))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ColormapError(f"{where}: interval bounds are finite numbers, got {value!r}")
    return float(value)


def _intervals(doc: list[Any]) -> Colormap:
    if not 0 < len(doc) <= MAX_INTERVALS:
        raise ColormapError(f"an interval colormap has 1 to {MAX_INTERVALS} intervals")
    bounds, colors = [], []
    for i, item in enumerate(doc):
        where = f"interval {i}"
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], list):
            raise ColormapError(f"{where}: an interval is [[min, max], [r, g, b, a]]")
        if len(item[0]) != 2:
            raise ColormapError(f"{where}: an interval is [[min, max], [r, g, b, a]]")
        lo, hi = (_number(v, where) for v in item[0])
        if not lo < hi:
            raise ColormapError(f"{where}: min < max needed, got [{lo}, {hi}]")
        bounds.append((lo, hi))
        colors.append(_color(item[1], where))
    return Colormap(
        "intervals",
        np.array(colors, dtype=np.uint8),
        bounds=np.array(bounds, dtype=np.float64),
    )


def parse(text: str) -> Colormap:
    """A JSON colormap (discrete object or interval array), checked against the caps."""
    if len(text.encode()) > MAX_JSON_BYTES:
        raise ColormapError(f"a colormap is at most {MAX_JSON_BYTES} bytes of JSON")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ColormapError(f"colormap is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        return _discrete(doc)
    if isinstance(doc, list):
        return _intervals(doc)
    raise ColormapError("a colormap is a JSON object (value -> colour) or array (intervals)")


def choose(colormap: str | None, colormap_name: str | None) -> Colormap | bool:
    """The colormap the ``colormap`` / ``colormap_name`` parameters ask for: a ``Colormap``,
    True (neither given: the source's palette, if any) or False (``colormap=none``)."""
    if colormap is not None and colormap_name is not None:
        raise ColormapError("give one of colormap and colormap_name, not both")
    if colormap_name is not None:
        return named(colormap_name)
    if colormap is None:
        return True
    if colormap.strip().lower() == "none":
        return False
    return parse(colormap)
