"""``band_statistics`` counts integer data instead of sorting it: the same answer as sorting
(np.unique, np.sort, np.histogram of every valid value, as the module's rules state), faster."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cloudroi.region.stats import BandStatistics, StatisticsOptions, band_statistics


def sorted_reference(
    values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None, opts: StatisticsOptions
) -> dict[str, Any]:
    """The statistics by sorting every valid value (what band_statistics did before)."""
    ok = np.ones(values.shape, bool) if valid is None else valid.copy()
    if values.dtype.kind == "f":
        ok &= np.isfinite(values)
    picked = values[ok]
    keys, counts = np.unique(picked, return_counts=True)
    ordered = np.sort(picked)
    n = picked.size

    def quantile(q: float) -> float:
        return float(ordered[min(max(math.ceil(q * float(n)) - 1, 0), n - 1)])

    if opts.categorical:
        histogram = [counts.tolist(), keys.tolist()]
    else:
        bins: Any = list(opts.bins) if isinstance(opts.bins, tuple) else opts.bins
        h, edges = np.histogram(picked, bins=bins, range=opts.range)
        histogram = [h.tolist(), edges.tolist()]
    return {
        "min": float(picked.min()),
        "max": float(picked.max()),
        "median": quantile(0.5),
        "percentiles": tuple((p, quantile(p / 100)) for p in opts.percentiles),
        "majority": float(keys[counts.argmax()]),
        "minority": float(keys[counts.argmin()]),
        "unique": float(keys.size),
        "histogram": histogram,
        "count": float(n),
    }


def same(stats: BandStatistics, ref: dict[str, Any]) -> None:
    got = {name: getattr(stats, name) for name in ref}
    assert got == ref
    # the types JSON answers show: ints stay ints in the counts
    assert all(type(c) is int for c in stats.histogram[0])


def cases() -> list[tuple[str, npt.NDArray[Any]]]:
    rng = np.random.default_rng(15)
    shape = (64, 96)
    return [
        ("uint8", rng.integers(0, 256, shape).astype(np.uint8)),
        ("int8 full span", rng.integers(-128, 128, shape).astype(np.int8)),
        ("uint16", rng.integers(0, 4096, shape).astype(np.uint16)),
        ("int16 negative", rng.integers(-30000, -29000, shape).astype(np.int16)),
        ("int32 wide span (sorted)", rng.integers(-(2**31), 2**31 - 1, shape).astype(np.int32)),
        ("int64 near the minimum", (np.iinfo(np.int64).min + rng.integers(0, 50, shape))),
        (
            "uint64 near the maximum",
            (np.iinfo(np.uint64).max - rng.integers(0, 50, shape, dtype=np.uint64)),
        ),
        ("uint32 one value", np.full(shape, 7, np.uint32)),
        ("float32 with NaN and inf", _floats(rng, shape)),
        ("bool", rng.integers(0, 2, shape).astype(bool)),
    ]


def _floats(rng: np.random.Generator, shape: tuple[int, int]) -> npt.NDArray[Any]:
    data = rng.normal(100, 30, shape).round(1).astype(np.float32)
    data[0, :5] = np.nan
    data[1, :3] = np.inf
    return data


OPTIONS = [
    StatisticsOptions(),
    StatisticsOptions(percentiles=(0, 2, 50, 98, 100), bins=7),
    StatisticsOptions(bins=(0.0, 10.0, 100.0, 1000.0, 5000.0)),
    StatisticsOptions(bins=5, range=(-10.0, 300.0)),
    StatisticsOptions(categorical=True),
]


@pytest.mark.parametrize("opts", OPTIONS, ids=range(len(OPTIONS)))
@pytest.mark.parametrize(("name", "values"), cases(), ids=[c[0] for c in cases()])
def test_counting_gives_what_sorting_gives(
    name: str, values: npt.NDArray[Any], opts: StatisticsOptions
) -> None:
    if values.dtype == bool and not opts.categorical:
        values = values.astype(np.uint8)
    valid = np.ones(values.shape, bool)
    valid[::7, ::5] = False
    for mask in (None, valid):
        try:
            ref = sorted_reference(values, mask, opts)
        except ValueError:
            # numpy cannot bin int64 extremes in float edges; we bin their exact offsets
            got = band_statistics(values, mask, opts, "b1")
            picked = values if mask is None else values[mask]
            assert sum(got.histogram[0]) == picked.size
            assert got.min == float(picked.min())
            assert got.max == float(picked.max())
            continue
        same(band_statistics(values, mask, opts, "b1"), ref)


@pytest.mark.parametrize(
    "values",
    [
        np.array([[-(2**63), -(2**63) + 5, -(2**63) + 5]], np.int64),
        np.array([[2**63 - 4, 2**63 - 1]], np.int64),
        np.array([[2**64 - 10, 2**64 - 1]], np.uint64),
    ],
)
def test_integers_numpy_cannot_bin_are_binned_by_offset(values: npt.NDArray[Any]) -> None:
    # Found by review: a narrow span near +-2**63 was a bare numpy ValueError ("Too many bins
    # for data range"), a 500 from /statistics.
    got = band_statistics(values, None, StatisticsOptions(), "b1")
    counts, edges = got.histogram
    assert sum(counts) == values.size
    assert counts[0] == int((values == values.min()).sum())
    assert counts[-1] == int((values == values.max()).sum())
    assert len(edges) == 11


def test_integer_statistics_do_not_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default stretch's statistics of a 1024 x 1024 uint16 band are counted, not sorted
    (sorting took 4x as long; the time itself is measured in benchmarks, not here)."""
    yy, xx = np.mgrid[0:1024, 0:1024]
    data = ((xx * 7 + yy * 3) % 4096).astype(np.uint16)
    opts = StatisticsOptions(percentiles=(2, 98), bins=1)
    want = sorted_reference(data, None, opts)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("integer statistics sorted their values")

    monkeypatch.setattr(np, "unique", refuse)
    monkeypatch.setattr(np, "sort", refuse)
    same(band_statistics(data, None, opts, "b1"), want)


@pytest.mark.parametrize(("name", "values"), cases(), ids=[c[0] for c in cases()])
def test_without_moments_the_rest_is_unchanged(name: str, values: npt.NDArray[Any]) -> None:
    """``moments=False`` (the default stretch) leaves out mean, sum and std, the float64 passes;
    every other statistic is what the full measure gives."""
    if values.dtype == bool:
        values = values.astype(np.uint8)  # numpy bins no bools (as above)
    valid = np.ones(values.shape, bool)
    valid[::7, ::5] = False
    for mask in (None, valid):
        full = band_statistics(values, mask, StatisticsOptions(), "b1")
        lean = band_statistics(values, mask, StatisticsOptions(moments=False), "b1")
        assert [math.isnan(v) for v in (lean.mean, lean.sum, lean.std)] == [True] * 3
        for field in ("min", "max", "median", "percentiles", "majority", "minority", "unique"):
            assert getattr(lean, field) == getattr(full, field), field
        assert (lean.count, lean.histogram) == (full.count, full.histogram)
        # and the full measure's moments are numpy's, in float64
        ok = np.ones(values.shape, bool) if mask is None else mask.copy()
        if values.dtype.kind == "f":
            ok &= np.isfinite(values)
        picked = values[ok].astype(np.float64)
        assert full.sum == float(np.where(ok, values, 0).astype(np.float64).sum())
        assert full.std == pytest.approx(float(picked.std()), rel=1e-12)


def test_the_default_stretch_measures_no_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stretch's statistics never take the float64 passes (they would raise here), and give
    the percentiles the full measure gives; a band with no valid pixel has none either way."""
    from cloudroi.region import stats, stretch

    yy, xx = np.mgrid[0:256, 0:256]
    data = ((xx * 7 + yy * 3) % 4096).astype(np.uint16)
    full = band_statistics(data, None, stretch._OPTIONS.__class__(percentiles=(2, 98)), "b1")

    def refuse(*args: Any) -> Any:
        raise AssertionError("the stretch measured mean, sum and std")

    monkeypatch.setattr(stats, "_moments", refuse)
    lean = band_statistics(data, None, stretch._OPTIONS, "b1")
    assert lean.percentiles == full.percentiles == ((2, 230.0), (98, 2320.0))
    nothing = band_statistics(data, np.zeros(data.shape, bool), stretch._OPTIONS, "b1")
    assert (nothing.count, nothing.sum) == (0.0, 0.0)
    assert [math.isnan(v) for _, v in nothing.percentiles] == [True, True]


def test_a_zero_or_255_mask_counts_as_a_boolean_one() -> None:
    """A GDAL-style 0/255 mask (uint8) selects the same pixels as the boolean mask."""
    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    mask = np.zeros((3, 4), np.uint8)
    mask[1] = 255
    byte_mask = band_statistics(data, mask, StatisticsOptions(), "b1")
    bool_mask = band_statistics(data, mask > 0, StatisticsOptions(), "b1")
    assert byte_mask == bool_mask
    assert (byte_mask.count, byte_mask.min, byte_mask.max) == (4.0, 4.0, 7.0)
