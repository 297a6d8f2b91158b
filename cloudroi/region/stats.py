"""Per-band statistics of an array with a validity mask, by the rules rio-tiler's statistics
follow (and so TiTiler's ``/statistics``), computed here with numpy:

- valid pixels: the mask's valid ones that are also finite (NaN and infinities never count);
- ``min``/``max`` in the data's own type; ``mean`` and ``sum`` over the valid pixels in float64;
  ``std`` the population standard deviation;
- percentiles and ``median`` are not interpolated: the ``q``-quantile of ``n`` sorted values is
  the value at position ``ceil(q * n) - 1`` (at least 0);
- ``majority``/``minority``: the most/least frequent value, the smallest on ties; ``unique``
  the number of distinct values;
- ``histogram``: ``numpy.histogram`` of the valid values (``bins``, ``range``), or for
  categorical data the count of each distinct value (or of each of ``categories``);
- with no valid pixel every statistic is NaN but ``count`` and ``sum`` (0).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import CloudROIError

__all__ = [
    "BandStatistics",
    "StatisticsError",
    "StatisticsOptions",
    "band_statistics",
    "check_options",
]

Bins = int | tuple[float, ...]
#: Most histogram bins one request may ask for.
MAX_BINS = 10_000
#: Integer data spanning at most this many values (or at most as many as it has pixels) is
#: counted with one ``np.bincount`` instead of sorted (``np.unique``): 5x faster on 1024 x 1024
#: uint16, the read behind every default stretch.
BINCOUNT_SPAN = 1 << 16


class StatisticsError(CloudROIError, ValueError):
    """Statistics options that cannot be honoured (a percentile outside 0..100, no bins...)."""


@dataclass(frozen=True, slots=True)
class StatisticsOptions:
    """What the statistics of each band report besides the fixed ones."""

    percentiles: tuple[int, ...] = (2, 98)
    bins: Bins = 10
    range: tuple[float, float] | None = None
    categorical: bool = False
    categories: tuple[float, ...] | None = None
    #: False: ``mean``, ``sum`` and ``std`` are not measured (NaN), for a caller that only reads
    #: the percentiles, minimum and maximum (the default stretch): they are the float64 passes.
    moments: bool = True


def _bins(histogram_bins: int | Sequence[float]) -> Bins:
    if isinstance(histogram_bins, int | np.integer) and not isinstance(histogram_bins, bool):
        if not 1 <= histogram_bins <= MAX_BINS:
            raise StatisticsError(f"histogram_bins must be in 1..{MAX_BINS}, got {histogram_bins}")
        return int(histogram_bins)
    try:
        edges = tuple(float(e) for e in histogram_bins)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise StatisticsError("histogram_bins is a count or a list of bin edges") from exc
    if not 2 <= len(edges) <= MAX_BINS + 1 or not all(math.isfinite(e) for e in edges):
        raise StatisticsError(f"histogram bin edges are 2 to {MAX_BINS + 1} finite numbers")
    if any(b < a for a, b in itertools.pairwise(edges)):
        raise StatisticsError("histogram bin edges must increase monotonically")
    return edges


def check_options(
    percentiles: Sequence[int] | None,
    histogram_bins: int | Sequence[float],
    histogram_range: Sequence[float] | None,
    categorical: bool,
    categories: Sequence[float] | None,
) -> StatisticsOptions:
    """The options, checked: ``StatisticsError`` for what the computation would refuse."""
    pcts = tuple(percentiles) if percentiles else (2, 98)
    if len(pcts) > 101:
        raise StatisticsError(f"at most 101 percentiles, got {len(pcts)}")
    for p in pcts:
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 0 <= p <= 100:
            raise StatisticsError(f"percentiles are integers in 0..100, got {p!r}")
    bins = _bins(histogram_bins)
    rng = None
    if histogram_range is not None:
        if len(histogram_range) != 2:
            raise StatisticsError("histogram_range is two numbers: min, max")
        lo, hi = (float(v) for v in histogram_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi and math.isfinite(hi - lo)):
            raise StatisticsError(f"histogram_range needs finite min <= max, got {lo}, {hi}")
        rng = (lo, hi)
    cats = None
    if categories:
        cats = tuple(float(c) for c in categories)
        if len(cats) > MAX_BINS or not all(math.isfinite(c) for c in cats):
            raise StatisticsError(f"categories are at most {MAX_BINS} finite numbers")
    return StatisticsOptions(pcts, bins, rng, bool(categorical), cats)


@dataclass(frozen=True, slots=True)
class BandStatistics:
    """One band's statistics, named as rio-tiler names them; ``percentiles`` pairs each
    requested percentile with its value (also readable as ``percentile_N``)."""

    min: float
    max: float
    mean: float
    count: float
    sum: float
    std: float
    median: float
    majority: float
    minority: float
    unique: float
    histogram: list[list[Any]]
    valid_percent: float
    masked_pixels: float
    valid_pixels: float
    description: str
    percentiles: tuple[tuple[int, float], ...]

    def __getattr__(self, name: str) -> float:
        if name.startswith("percentile_"):
            for p, value in self.percentiles:
                if name == f"percentile_{p}":
                    return value
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        """rio-tiler's ``BandStatistics`` as TiTiler answers it (NaN stays NaN: a JSON
        encoder for TiTiler's answer writes it as null)."""
        doc: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "min",
                "max",
                "mean",
                "count",
                "sum",
                "std",
                "median",
                "majority",
                "minority",
                "unique",
            )
        }
        doc["histogram"] = [list(self.histogram[0]), list(self.histogram[1])]
        doc["valid_percent"] = self.valid_percent
        doc["masked_pixels"] = self.masked_pixels
        doc["valid_pixels"] = self.valid_pixels
        doc["description"] = self.description
        for p, value in self.percentiles:
            doc[f"percentile_{p}"] = value
        return doc


def _valid(
    values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None
) -> npt.NDArray[np.bool_] | None:
    """Where a pixel counts: the mask's valid and finite ones; None when every pixel does (an
    integer band without a mask: no mask array made, no copy of the values picked)."""
    if valid is not None and valid.dtype != np.bool_:
        valid = np.asarray(valid != 0)  # a 0/255 mask: nonzero is valid
    if values.dtype.kind not in "fc":
        return valid
    finite: npt.NDArray[np.bool_] = np.isfinite(values)
    return finite if valid is None else finite & valid


def _distinct(picked: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[np.intp]]:
    """``np.unique(picked, return_counts=True)``: for integers spanning at most
    ``max(BINCOUNT_SPAN, n)`` values counted in one pass (``np.bincount``), else sorted."""
    if picked.size and picked.dtype.kind in "iu":
        lo, hi = int(picked.min()), int(picked.max())
        # offsets from the minimum, in a type that holds them (int8's 255 does not fit int8):
        # int32 for 8 and 16 bits (one pass), else through 64 bits when the span is small
        offsets = None
        if picked.dtype.itemsize <= 2:
            offsets = np.subtract(picked, lo, dtype=np.int32)
        elif hi - lo <= max(BINCOUNT_SPAN, picked.size):
            wide = np.uint64 if picked.dtype.kind == "u" else np.int64
            offsets = (picked.astype(wide) - wide(lo)).astype(np.intp)
        if offsets is not None:
            tally = np.bincount(offsets.reshape(-1), minlength=hi - lo + 1)
            present = np.flatnonzero(tally)
            return picked.dtype.type(lo) + present.astype(picked.dtype), tally[present]
    keys, counts = np.unique(picked, return_counts=True)
    return keys, counts


def _quantiles(
    keys: npt.NDArray[Any], counts: npt.NDArray[Any], fractions: Sequence[float]
) -> list[float]:
    """The unweighted quantiles without interpolation: the first sorted value whose rank
    (1-based) reaches ``q * n``, read from the distinct values and their counts."""
    ends = np.cumsum(counts)  # ends[k]: how many values are <= keys[k]
    n = int(ends[-1])
    out = []
    for q in fractions:
        reach = q * float(n)
        index = min(max(math.ceil(reach) - 1, 0), n - 1)
        out.append(float(keys[np.searchsorted(ends, index + 1)]))
    return out


def _halved_histogram(
    picked: npt.NDArray[Any], bins: int, rng: tuple[float, float] | None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """The histogram of float values numpy cannot bin as they are (a range wider than the
    largest float, or a single value so large that +-0.5 does not move it): binned at half
    scale in float64 (exact), the edges scaled back."""
    half = picked.astype(np.float64) / 2
    if rng is not None:
        lo, hi = rng[0] / 2, rng[1] / 2
    elif half.size:
        lo, hi = float(half.min()), float(half.max())
    else:
        lo, hi = 0.0, 0.5
    if lo == hi:
        pad = max(0.25, float(np.spacing(abs(lo))) * bins)
        lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(half, bins=bins, range=(lo, hi))
    return counts, edges * 2


def _offset_histogram(
    keys: npt.NDArray[Any],
    counts: npt.NDArray[Any],
    bins: int,
    bounds: tuple[float, float] | None,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
    """Integers whose float64 values cannot be told apart (a narrow span near +-2**63): binned
    by their exact distance from the smallest (uint64 arithmetic), the edges then carried back
    (as float64, as near as it holds them)."""
    lo = keys.min()
    offsets = (keys.astype(np.uint64) - np.uint64(lo.astype(np.uint64))).astype(np.float64)
    shifted = None if bounds is None else (bounds[0] - float(lo), bounds[1] - float(lo))
    h_counts, edges = np.histogram(offsets, bins=bins, range=shifted, weights=counts)
    return h_counts, edges + float(lo)


def _histogram(
    picked: npt.NDArray[Any],
    keys: npt.NDArray[Any],
    counts: npt.NDArray[Any],
    opts: StatisticsOptions,
) -> list[list[Any]]:
    if not opts.categorical:
        bins: Any = list(opts.bins) if isinstance(opts.bins, tuple) else opts.bins
        try:
            with np.errstate(over="raise", invalid="raise"):
                # each distinct value weighted by its count: the bins of ``picked`` itself
                # (same minimum and maximum, each value binned alike), integer counts
                h_counts, edges = np.histogram(keys, bins=bins, range=opts.range, weights=counts)
        except (ValueError, FloatingPointError, IndexError):
            if not isinstance(bins, int) or picked.dtype.kind not in "fiu":
                raise
            if picked.dtype.kind == "f":
                h_counts, edges = _halved_histogram(picked, bins, opts.range)
            else:
                h_counts, edges = _offset_histogram(keys, counts, bins, opts.range)
        return [h_counts.tolist(), edges.tolist()]
    wanted = np.array(opts.categories).astype(keys.dtype) if opts.categories else keys
    found = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    return [[found.get(k, 0) for k in wanted.tolist()], wanted.tolist()]


def _moments(
    values: npt.NDArray[Any], ok: npt.NDArray[np.bool_] | None, picked: npt.NDArray[Any]
) -> tuple[float, float]:
    """The sum (over the band, invalid pixels as 0) and the population standard deviation of
    the valid values, in float64."""
    widened = picked.astype(np.float64)
    average = widened.sum() / picked.size
    whole = values if ok is None else np.where(ok, values, 0)
    total = float(whole.astype(np.float64).sum())
    return total, math.sqrt(float(((widened - average) ** 2).sum() / picked.size))


def band_statistics(
    values: npt.NDArray[Any],
    valid: npt.NDArray[np.bool_] | None,
    opts: StatisticsOptions,
    description: str,
) -> BandStatistics:
    """The statistics of one band ``values`` (h, w) where ``valid`` (None: everywhere)."""
    ok = _valid(values, valid)
    picked = values.reshape(-1) if ok is None else values[ok]
    n = picked.size
    keys, counts = _distinct(picked)
    histogram = _histogram(picked, keys, counts, opts)
    fractions = [p / 100.0 for p in opts.percentiles] + [0.5]
    nan = float("nan")
    if n:
        total, std = _moments(values, ok, picked) if opts.moments else (nan, nan)
        *pcts, median = _quantiles(keys, counts, fractions)
        exact = picked.dtype.kind in "iu"  # sorted distinct integers: their ends are min, max
        lo = float(keys[0]) if exact else float(picked.min())
        hi = float(keys[-1]) if exact else float(picked.max())
        mean, majority = total / n, float(keys[counts.argmax()])
        minority = float(keys[counts.argmin()])
    else:
        lo = hi = mean = std = median = majority = minority = nan
        pcts, total = [nan] * len(opts.percentiles), 0.0
    return BandStatistics(
        min=lo,
        max=hi,
        mean=mean,
        count=float(n),
        sum=total,
        std=std,
        median=median,
        majority=majority,
        minority=minority,
        unique=float(counts.size),
        histogram=histogram,
        valid_percent=round(min(n / values.size, 1) * 100, 2),
        masked_pixels=float(values.size - n),
        valid_pixels=float(n),
        description=description,
        percentiles=tuple(zip(opts.percentiles, pcts, strict=True)),
    )
