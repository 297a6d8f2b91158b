"""Shared pieces of the reliability suites: test images with their true pixels, and a tally of
read outcomes (exact, wrong, typed failure by class, untyped failure, hang)."""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

import cloudroi
from cloudroi.cog import write_cog

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class Sample:
    """A file's bytes and its true pixels per level ((bands, h, w) arrays), mask per level."""

    name: str
    data: bytes
    levels: tuple[Array, ...]
    masks: tuple[Array | None, ...]

    def window(
        self, level: int, win: tuple[int, int, int, int], bands: list[int] | None = None
    ) -> Array:
        col, row, w, h = win
        arr = self.levels[level][:, row : row + h, col : col + w]
        return arr if bands is None else arr[[b - 1 for b in bands]]

    def mask_window(self, level: int, win: tuple[int, int, int, int]) -> Array | None:
        mask = self.masks[level]
        if mask is None:
            return None
        col, row, w, h = win
        return mask[row : row + h, col : col + w]


def _cog_image(name: str, data: Array, mask: Array | None = None, **kw: Any) -> Sample:
    arr = data if data.ndim == 3 else data[np.newaxis]
    blob = write_cog(arr, mask=mask, **kw)
    tile = kw.get("tile", 256)
    h, w = arr.shape[1:]
    n = 0
    while max(h, w) >> n > tile:
        n += 1
    levels = tuple(arr[:, :: 1 << i, :: 1 << i] for i in range(n + 1))
    masks: tuple[Array | None, ...]
    if mask is None:
        masks = (None,) * len(levels)
    else:
        masks = tuple(
            np.where(mask[:: 1 << i, :: 1 << i] != 0, 255, 0).astype(np.uint8) for i in range(n + 1)
        )
    return Sample(name, blob, levels, masks)


def make_images() -> dict[str, Sample]:
    """Four files covering dtypes, codecs, predictors, masks, overviews, strips and planar."""
    rng = np.random.default_rng(20261126)
    yy, xx = np.mgrid[0:900, 0:1100]
    u16 = ((xx * 7 + yy * 3) % 60000 + rng.integers(0, 64, xx.shape)).astype(np.uint16)
    mask = np.ones(u16.shape, np.uint8)
    mask[100:300, 200:500] = 0
    yy, xx = np.mgrid[0:650, 0:700]
    f32 = (np.sin(xx / 40.0) * np.cos(yy / 30.0) * 1000).astype(np.float32)
    f32[50:90, 600:690] = -9999.0
    yy, xx = np.mgrid[0:500, 0:600]
    rgb = np.stack([xx % 251, yy % 241, (xx + 2 * yy) % 239]).astype(np.uint8)
    images = [
        _cog_image("u16.tif", u16, mask=mask, tile=128, compression="deflate", predictor=2),
        _cog_image("f32.tif", f32, tile=256, compression="zstd", predictor=3, nodata=-9999.0),
        _cog_image("rgb.tif", rgb, tile=128, compression="lzw", leader=False),
    ]
    planar = np.stack([u16[:300, :400], u16[300:600, 400:800] // 3]).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        planar,
        planarconfig="separate",
        rowsperstrip=23,
        compression="zlib",
        predictor=2,
        photometric="minisblack",
        metadata=None,
    )
    images.append(Sample("strips.tif", buf.getvalue(), (planar,), (None,)))
    return {img.name: img for img in images}


def random_window(
    rnd: random.Random, img: Sample, level: int, max_side: int = 300
) -> tuple[int, int, int, int]:
    _, h, w = img.levels[level].shape
    ww = rnd.randint(1, min(w, max_side))
    wh = rnd.randint(1, min(h, max_side))
    return (rnd.randint(0, w - ww), rnd.randint(0, h - wh), ww, wh)


@dataclass
class Tally:
    """What a batch of reads came to. ``wrong`` and ``untyped`` and ``hangs`` must stay 0."""

    exact: int = 0
    wrong: int = 0
    hangs: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)
    #: Reads that raised CancelledError although nothing cancelled them (a reader once inherited
    #: the cancellation of a fetch it had joined; test_faults.py pins the fix). Must stay 0.
    spurious_cancels: int = 0

    @property
    def reads(self) -> int:
        return (
            self.exact
            + self.wrong
            + self.hangs
            + sum(self.typed.values())
            + len(self.untyped)
            + self.spurious_cancels
        )

    async def check(self, work: Awaitable[Array], expected: Array, *, hang_after: float) -> None:
        """Run one read; count it as exact, wrong, a typed/untyped failure or a hang."""
        try:
            async with asyncio.timeout(hang_after):
                got = await work
        except TimeoutError:
            self.hangs += 1
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a real cancellation of the soak itself
            self.spurious_cancels += 1
            return
        except cloudroi.CloudROIError as exc:
            self.typed[type(exc).__name__] += 1
            return
        except Exception as exc:  # what must never happen: counted, reported, asserted 0
            self.untyped.append(f"{type(exc).__name__}: {exc}")
            return
        if (
            got.shape == expected.shape
            and got.dtype == expected.dtype
            and np.array_equal(got, expected, equal_nan=got.dtype.kind == "f")
        ):
            self.exact += 1
        else:
            self.wrong += 1

    def summary(self) -> str:
        typed = ", ".join(f"{k} {v}" for k, v in sorted(self.typed.items()))
        return (
            f"reads {self.reads}: exact {self.exact}, wrong {self.wrong}, hangs {self.hangs}, "
            f"typed failures {sum(self.typed.values())} ({typed}), untyped {len(self.untyped)}"
            + (
                f", spurious CancelledError {self.spurious_cancels}"
                if self.spurious_cancels
                else ""
            )
        )
