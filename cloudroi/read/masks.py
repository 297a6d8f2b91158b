"""Validity masks as GDAL computes them: which source a mask comes from, and reading it.

A mask is uint8 0 (invalid) / 255 (valid), shaped like the read it belongs to, as rasterio's
``dataset_mask()``: GDAL's internal mask when the file has one, else the alpha band, else "any
band differs from nodata", else all valid. Pixels outside the image are never valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .assemble import ReadTarget

if TYPE_CHECKING:
    from .reader import Budgets, LevelReader

__all__ = ["alpha_mask", "mask_source", "read_mask", "valid_mask"]


def valid_mask(data: npt.NDArray[Any], nodata: float | int) -> npt.NDArray[np.uint8]:
    """255 where any band differs from ``nodata`` (NaN-aware), else 0: GDAL's per-dataset rule.

    Floats compare as GDAL does: half and single precision in single precision (GDAL reads half
    floats as Float32), doubles in double precision.
    """
    if data.dtype.kind == "f":
        wide = np.dtype(np.float32 if data.dtype.itemsize <= 4 else np.float64)
        value = np.asarray(nodata, dtype=wide)
        valid = ~np.isnan(data) if np.isnan(value) else data.astype(wide, copy=False) != value
    else:
        valid = data != np.asarray(nodata).astype(data.dtype)
    return np.where(valid.any(axis=0), 255, 0).astype(np.uint8)


def mask_source(
    count: int,
    extra_samples: Sequence[int],
    dtype: np.dtype[Any],
    has_mask_ifd: bool,
    has_nodata: bool,
) -> tuple[str, int | None]:
    """Where rasterio's ``dataset_mask()`` takes an image's validity mask from, in its order:

    ``("mask", None)``: GDAL's internal mask IFD. ``("alpha", band)``: the alpha band, which GDAL
    only uses as a mask when it is the last of 2 or 4 bands (ExtraSamples 1 or 2) and 8- or
    16-bit unsigned, and only when no nodata is set. ``("alpha_nodata", band)``: a 4-band RGBA
    whose nodata shadows the alpha: valid where the alpha band differs from nodata.
    ``("nodata", None)``: valid where any band differs from nodata. ``("none", None)``: all valid.
    """
    if has_mask_ifd:
        return "mask", None
    alpha = (
        count in (2, 4)
        and len(extra_samples) > 0
        and extra_samples[-1] in (1, 2)
        and dtype in (np.dtype(np.uint8), np.dtype(np.uint16))
    )
    if alpha and not has_nodata:
        return "alpha", count
    if alpha and count == 4:
        return "alpha_nodata", count
    if has_nodata:
        return "nodata", None
    return "none", None


def alpha_mask(alpha: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """An alpha band as GDAL's 0..255 mask: 8-bit as it is; 16-bit divided by 257, except that
    a non-zero alpha never becomes 0 (GDAL's rescaled alpha band)."""
    if alpha.dtype == np.uint8:
        return alpha
    scaled = alpha.astype(np.uint32) // 257
    return np.where((alpha > 0) & (scaled == 0), 1, scaled).astype(np.uint8)


async def read_mask(
    reader: LevelReader, target: ReadTarget, budgets: Budgets
) -> npt.NDArray[np.uint8]:
    """The mask of ``target`` on the level ``reader`` reads."""
    base = reader.base
    source, band = mask_source(
        base.samples,
        base.extra_samples,
        base.dtype,
        reader.mask_ifd is not None,
        reader.nodata is not None,
    )
    if reader.mask_ifd is not None:
        raw = await reader.read(target, [0], 0, budgets, ifd=reader.mask_ifd)
        return np.where(raw[0] != 0, 255, 0).astype(np.uint8)
    if source == "alpha" and band is not None:
        return alpha_mask((await reader.read(target, [band - 1], 0, budgets))[0])
    fill = reader.fill(None)
    if source == "alpha_nodata" and band is not None and reader.nodata is not None:
        mask = valid_mask(await reader.read(target, [band - 1], fill, budgets), reader.nodata)
    elif reader.nodata is not None:
        data = await reader.read(target, list(range(base.samples)), fill, budgets)
        mask = valid_mask(data, reader.nodata)
    else:
        mask = np.full(target.shape, 255, dtype=np.uint8)
    # Outside the image nothing is valid, whatever the fill value looks like.
    target.zero_outside(mask, reader.ifd)
    return mask
