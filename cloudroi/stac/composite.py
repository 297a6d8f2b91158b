"""Reducing a stack over time where its pixels are read: a composite (mean, median, min, max,
sum or count of the valid pixels of every item) of one piece of the grid, from the items'
(data, valid) pairs in the files' own dtype.

The results are those of the same reduction over ``time`` of the float64, NaN-filled stack
(xarray's ``skipna`` reductions, which stackstac and ``cloudroi.stac.lazy.stack`` users call):
invalid pixels and NaNs are skipped; where no item is valid, ``count`` and ``sum`` give 0 and the
others NaN. Integer data sums exactly in float64, so a mean equals xarray's bit for bit whatever
the order of the items. No (time, y, x) float64 array is made except for the median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BatchRequestError

__all__ = ["HOW", "check_how", "reduce_planes", "result_dtype"]

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


def _extreme(how: str, planes: Sequence[Plane], shape: tuple[int, int]) -> npt.NDArray[Any]:
    pick = np.minimum if how == "min" else np.maximum
    acc = np.full(shape, np.inf if how == "min" else -np.inf)
    seen = np.zeros(shape, bool)
    for data, valid in planes:
        pick(acc, data, out=acc, where=valid, casting="unsafe")
        seen |= valid
    acc[~seen] = np.nan
    return acc


def reduce_planes(how: str, planes: Sequence[Plane], shape: tuple[int, int]) -> npt.NDArray[Any]:
    """``how`` over the items' ``(data, valid)`` planes of one piece of ``shape``."""
    planes = [(d, _valid(d, v)) for d, v in planes]
    if how == "median":
        return _median(planes, shape)
    if how in ("min", "max"):
        return _extreme(how, planes, shape)
    count = np.zeros(shape, np.int64)
    for _, valid in planes:
        count += valid
    if how == "count":
        return count
    total = np.zeros(shape)
    for data, valid in planes:
        np.add(total, data, out=total, where=valid, casting="unsafe")
    if how == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean[count == 0] = np.nan
    return mean
