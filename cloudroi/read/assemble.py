"""Placing decoded blocks into one preallocated output array. Pure numpy.

A read's output is described by a target: ``WindowTarget`` (a window of a level, pixel for pixel)
or ``SampledTarget`` (nearest-neighbour samples of a level, for resampled reads); both say which
blocks they need, how many rows of each, and paste a decoded block into the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..tiff.structure import ImageIFD
from ..types import Window
from .plan import BlockRef, blocks_for_window

__all__ = [
    "ReadTarget",
    "SampledTarget",
    "WindowTarget",
    "block_window",
    "fill_block",
    "paste",
]


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
    part = bw.intersect(out_window)
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
    part = block_window(ifd, ref.row, ref.col).intersect(out_window)
    if part is None:
        return
    rows = slice(part.row_off - out_window.row_off, part.row_end - out_window.row_off)
    cols = slice(part.col_off - out_window.col_off, part.col_end - out_window.col_off)
    for i, s in enumerate(samples):
        if ifd.planar != 2 or s == ref.plane:
            out[i, rows, cols] = value


# --------------------------------------------------------------------------------------------
# read targets: where a read's output pixels come from in one level's grid
# --------------------------------------------------------------------------------------------


class WindowTarget:
    """Output pixels = a window of the level, pixel for pixel (it may reach outside the image)."""

    __slots__ = ("window",)

    def __init__(self, window: Window) -> None:
        self.window = window

    @property
    def shape(self) -> tuple[int, int]:
        return self.window.height, self.window.width

    def blocks(self, ifd: ImageIFD, planes: Sequence[int]) -> list[BlockRef]:
        inner = self.window.clip(ifd.width, ifd.height)
        if inner is None:
            return []
        return blocks_for_window(ifd, inner, planes)

    def inside(self, ifd: ImageIFD) -> bool:
        return self.window.within(ifd.width, ifd.height)

    def rows_needed(self, ifd: ImageIFD, ref: BlockRef) -> int:
        top = ref.row * ifd.block_height
        return max(1, min(ifd.block_rows(ref.row), self.window.row_end - top))

    def paste(
        self,
        out: npt.NDArray[Any],
        block: npt.NDArray[Any],
        ref: BlockRef,
        ifd: ImageIFD,
        samples: Sequence[int],
    ) -> None:
        paste(out, block, ref, ifd, self.window, samples)

    def fill(
        self,
        out: npt.NDArray[Any],
        value: Any,
        ref: BlockRef,
        ifd: ImageIFD,
        samples: Sequence[int],
    ) -> None:
        fill_block(out, value, ref, ifd, self.window, samples)

    def zero_outside(self, mask: npt.NDArray[np.uint8], ifd: ImageIFD) -> None:
        """Set the pixels of ``mask`` (h, w) that lie outside the image to 0."""
        win = self.window
        inner = win.clip(ifd.width, ifd.height)
        if inner is None:
            mask[:] = 0
            return
        if inner == win:
            return
        rs = slice(inner.row_off - win.row_off, inner.row_end - win.row_off)
        cs = slice(inner.col_off - win.col_off, inner.col_end - win.col_off)
        keep = mask[rs, cs].copy()
        mask[:] = 0
        mask[rs, cs] = keep


class SampledTarget:
    """Output pixels = the level's pixels at ``rows`` x ``cols`` (nearest-neighbour sampling).

    ``rows``/``cols`` are non-decreasing absolute indices into the level's grid, one per output
    row/column; those outside the image give fill. Only blocks holding at least one sampled pixel
    are read, and each block is pasted as it is decoded, so a resampled read holds the output
    plus the blocks in flight, never the whole source window.
    """

    __slots__ = ("_groups", "cols", "rows")

    def __init__(self, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]) -> None:
        self.rows = np.asarray(rows, dtype=np.intp)
        self.cols = np.asarray(cols, dtype=np.intp)
        self._groups: dict[tuple[str, int, int], dict[int, tuple[slice, npt.NDArray[np.intp]]]]
        self._groups = {}

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def _by_block(
        self, axis: str, block: int, limit: int
    ) -> dict[int, tuple[slice, npt.NDArray[np.intp]]]:
        """Block index -> (output positions as a slice, indices inside that block)."""
        key = (axis, block, limit)
        groups = self._groups.get(key)
        if groups is None:
            idx = self.rows if axis == "r" else self.cols
            groups = {}
            valid = np.flatnonzero((idx >= 0) & (idx < limit))
            if valid.size:
                which = idx[valid] // block
                starts = np.flatnonzero(np.diff(which, prepend=which[0] - 1))
                ends = [*starts[1:].tolist(), valid.size]
                for s, e in zip(starts.tolist(), ends, strict=True):
                    pos = valid[s:e]
                    b = int(which[s])
                    groups[b] = (slice(int(pos[0]), int(pos[-1]) + 1), idx[pos] - b * block)
            self._groups[key] = groups
        return groups

    def _rows(self, ifd: ImageIFD) -> dict[int, tuple[slice, npt.NDArray[np.intp]]]:
        return self._by_block("r", ifd.block_height, ifd.height)

    def _cols(self, ifd: ImageIFD) -> dict[int, tuple[slice, npt.NDArray[np.intp]]]:
        return self._by_block("c", ifd.block_width, ifd.width)

    def blocks(self, ifd: ImageIFD, planes: Sequence[int]) -> list[BlockRef]:
        rows, cols = sorted(self._rows(ifd)), sorted(self._cols(ifd))
        return [
            BlockRef(p, r, c, ifd.block_index(p, r, c)) for p in planes for r in rows for c in cols
        ]

    def inside(self, ifd: ImageIFD) -> bool:
        return bool(
            self.rows.size
            and self.cols.size
            and self.rows.min() >= 0
            and self.rows.max() < ifd.height
            and self.cols.min() >= 0
            and self.cols.max() < ifd.width
        )

    def rows_needed(self, ifd: ImageIFD, ref: BlockRef) -> int:
        group = self._rows(ifd).get(ref.row)
        return 1 if group is None else int(group[1][-1]) + 1

    def paste(
        self,
        out: npt.NDArray[Any],
        block: npt.NDArray[Any],
        ref: BlockRef,
        ifd: ImageIFD,
        samples: Sequence[int],
    ) -> None:
        rgroup, cgroup = self._rows(ifd).get(ref.row), self._cols(ifd).get(ref.col)
        if rgroup is None or cgroup is None:
            return
        (rs, ri), (cs, ci) = rgroup, cgroup
        sub = block[ri][:, ci]
        for i, s in enumerate(samples):
            if ifd.planar == 2:
                if s == ref.plane:
                    out[i, rs, cs] = sub[:, :, 0]
            else:
                out[i, rs, cs] = sub[:, :, s]

    def fill(
        self,
        out: npt.NDArray[Any],
        value: Any,
        ref: BlockRef,
        ifd: ImageIFD,
        samples: Sequence[int],
    ) -> None:
        rgroup, cgroup = self._rows(ifd).get(ref.row), self._cols(ifd).get(ref.col)
        if rgroup is None or cgroup is None:
            return
        for i, s in enumerate(samples):
            if ifd.planar != 2 or s == ref.plane:
                out[i, rgroup[0], cgroup[0]] = value

    def covering(self, ifd: ImageIFD) -> Window:
        """The smallest window of ``ifd``'s grid holding every sampled pixel inside the image."""
        rows = self.rows[(self.rows >= 0) & (self.rows < ifd.height)]
        cols = self.cols[(self.cols >= 0) & (self.cols < ifd.width)]
        if not rows.size or not cols.size:
            return Window(0, 0, 0, 0)
        r0, c0 = int(rows.min()), int(cols.min())
        return Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)

    def zero_outside(self, mask: npt.NDArray[np.uint8], ifd: ImageIFD) -> None:
        mask[(self.rows < 0) | (self.rows >= ifd.height), :] = 0
        mask[:, (self.cols < 0) | (self.cols >= ifd.width)] = 0


ReadTarget = WindowTarget | SampledTarget
