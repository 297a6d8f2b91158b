"""Reducing a stack over time where its pixels are read: a composite (mean, median, min, max,
sum or count of the valid pixels of every item) of one piece of the grid, from the items'
(data, valid) pairs in the files' own dtype.

The results are those of the same reduction over ``time`` of the float64, NaN-filled stack
(xarray's ``skipna`` reductions, which stackstac and ``cloudroi.stac.lazy.stack`` users call):
invalid pixels and NaNs are skipped; where no item is valid, ``count`` and ``sum`` give 0 and the
others NaN. Integers of up to 32 bits sum exactly in float64 (below 2**53 for up to 2**21
items), so their mean equals xarray's bit for bit whatever the order of the items; float data
and 64-bit integers are summed in item order, and may differ from a tree reduction's sum in
the last bits. No (time, y, x) float64 array is made except for the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BatchRequestError

__all__ = ["HOW", "Reduction", "check_how", "reduce_planes", "result_dtype"]

#: The reductions a composite computes.
HOW = ("mean", "median", "min", "max", "sum", "count")

Plane = tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]


def check_how(how: Any) -> str:
    """``how`` if it names a reduction, else ``BatchRequestError``."""
    if not isinstance(how, str) or how not in HOW:
        raise BatchRequestError(f"how must be one of {', '.join(HOW)}; got {how!r}")
    return how


def result_dtype(how: str) -> np.dtype[Any]:
    """The composite's dtype: int64 for ``count``, float64 for the others."""
    return np.dtype("int64" if how == "count" else "float64")


def _valid(data: npt.NDArray[Any], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``valid`` less the NaNs of float data (the NaN-filled stack skips them too)."""
    if data.dtype.kind in "fc":
        out: npt.NDArray[np.bool_] = valid & ~np.isnan(data)
        return out
    return valid


def _median(planes: Sequence[Plane], shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    if not planes:
        return np.full(shape, np.nan)
    cube = np.empty((len(planes), *shape))
    seen = np.zeros(shape, bool)
    for i, (data, valid) in enumerate(planes):
        np.copyto(cube[i], data, casting="unsafe")
        np.copyto(cube[i], np.nan, where=~valid)
        seen |= valid
    # pixels no item has are NaN, as xarray gives them, without numpy's all-NaN warning (a
    # warnings filter is process-wide: not something a task thread may change)
    cube[:, ~seen] = 0
    median = np.nanmedian(cube, axis=0)
    median[~seen] = np.nan
    return median


class Reduction:
    """``how`` over time of one piece of ``shape``, fed the items' planes a few at a time
    (``add``): a float64 accumulator and a count, so a piece of any number of items holds one
    group of planes at once; the median keeps every plane (it needs them all)."""

    def __init__(self, how: str, shape: tuple[int, int]) -> None:
        self.how = check_how(how)
        self.shape = shape
        self.count = np.zeros(shape, np.int64)
        self.kept: list[Plane] = []
        start = {"min": np.inf, "max": -np.inf}.get(how, 0.0)
        self.acc = np.full(shape, start)

    def add(self, planes: Sequence[Plane]) -> None:
        for data, given in planes:
            valid = _valid(data, given)
            if self.how == "median":
                self.kept.append((data, valid))
                continue
            self.count += valid
            if self.how in ("min", "max"):
                pick = np.minimum if self.how == "min" else np.maximum
                pick(self.acc, data, out=self.acc, where=valid, casting="unsafe")
            elif self.how != "count":
                np.add(self.acc, data, out=self.acc, where=valid, casting="unsafe")

    def result(self) -> npt.NDArray[Any]:
        if self.how == "median":
            return _median(self.kept, self.shape)
        if self.how == "count":
            return self.count
        if self.how == "sum":
            return self.acc
        if self.how == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                self.acc /= self.count
        self.acc[self.count == 0] = np.nan
        return self.acc


def reduce_planes(how: str, planes: Sequence[Plane], shape: tuple[int, int]) -> npt.NDArray[Any]:
    """``how`` over the items' ``(data, valid)`` planes of one piece of ``shape``."""
    reduction = Reduction(how, shape)
    reduction.add(planes)
    return reduction.result()
