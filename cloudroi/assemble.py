"""Placing decoded blocks into one preallocated window array, and deriving masks. Pure numpy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .plan import BlockRef
from .tiff.structure import ImageIFD
from .types import Window

__all__ = [
    "alpha_mask",
    "block_window",
    "fill_block",
    "intersect",
    "mask_source",
    "paste",
    "valid_mask",
]


def intersect(a: Window, b: Window) -> Window | None:
    col, row = max(a.col_off, b.col_off), max(a.row_off, b.row_off)
    col_end, row_end = min(a.col_end, b.col_end), min(a.row_end, b.row_end)
    if col_end <= col or row_end <= row:
        return None
    return Window(col, row, col_end - col, row_end - row)


def block_window(ifd: ImageIFD, row: int, col: int) -> Window:
    """The pixels a block covers in its level's grid (clipped at the image's edge)."""
    return Window(
        col * ifd.block_width, row * ifd.block_height, ifd.block_cols(col), ifd.block_rows(row)
    )


def paste(
    out: npt.NDArray[Any],
    block: npt.NDArray[Any],
    ref: BlockRef,
    ifd: ImageIFD,
    out_window: Window,
    samples: Sequence[int],
) -> None:
    """Copy the part of ``block`` (rows, cols, block_samples) inside ``out_window`` into ``out``
    (len(samples), out_window.height, out_window.width); ``samples`` are 0-based sample indices.
    """
    bw = block_window(ifd, ref.row, ref.col)
    part = intersect(bw, out_window)
    if part is None:
        return
    src = block[
        part.row_off - bw.row_off : part.row_end - bw.row_off,
        part.col_off - bw.col_off : part.col_end - bw.col_off,
    ]
    dst_rows = slice(part.row_off - out_window.row_off, part.row_end - out_window.row_off)
    dst_cols = slice(part.col_off - out_window.col_off, part.col_end - out_window.col_off)
    if ifd.planar == 2:
        for i, s in enumerate(samples):
            if s == ref.plane:
                out[i, dst_rows, dst_cols] = src[:, :, 0]
        return
    if len(samples) == 1:
        out[0, dst_rows, dst_cols] = src[:, :, samples[0]]
        return
    for i, s in enumerate(samples):
        out[i, dst_rows, dst_cols] = src[:, :, s]


def fill_block(
    out: npt.NDArray[Any],
    value: Any,
    ref: BlockRef,
    ifd: ImageIFD,
    out_window: Window,
    samples: Sequence[int],
) -> None:
    """Set the part of ``out`` a block with no data (sparse) covers to ``value``."""
    part = intersect(block_window(ifd, ref.row, ref.col), out_window)
    if part is None:
        return
    rows = slice(part.row_off - out_window.row_off, part.row_end - out_window.row_off)
    cols = slice(part.col_off - out_window.col_off, part.col_end - out_window.col_off)
    for i, s in enumerate(samples):
        if ifd.planar != 2 or s == ref.plane:
            out[i, rows, cols] = value


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
