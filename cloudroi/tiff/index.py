"""TileOffsets / TileByteCounts as arrays that may be loaded whole or block by block on demand.

A 200000 x 200000 COG with 512-pixel tiles has about 150 000 tiles: its offset and byte-count arrays
are megabytes. They are not read at open; a read asks ``missing`` which blocks of entries it needs,
fetches just those, and ``insert``s them. Pure data structure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import ByteRange

__all__ = ["IndexArray"]


class IndexArray:
    """``count`` unsigned integers stored at ``offset`` in the file, in the file's byte order."""

    #: Entries per lazily-loaded block: 1-2 KiB per request slice, small next to a tile.
    BLOCK = 256

    def __init__(
        self,
        offset: int,
        count: int,
        dtype: np.dtype[Any],
        values: npt.NDArray[np.uint64] | None = None,
    ) -> None:
        self.offset = offset
        self.count = count
        self.dtype = dtype
        self._values = values
        self._blocks: dict[int, npt.NDArray[np.uint64]] = {}

    @classmethod
    def from_values(cls, values: Iterable[int]) -> IndexArray:
        arr = np.asarray(list(values), dtype=np.uint64)
        return cls(0, len(arr), np.dtype("<u8"), arr)

    @classmethod
    def from_bytes(cls, offset: int, count: int, dtype: np.dtype[Any], data: bytes) -> IndexArray:
        values = np.frombuffer(data, dtype=dtype, count=count).astype(np.uint64)
        return cls(offset, count, dtype, values)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    @property
    def byte_range(self) -> ByteRange:
        return ByteRange.sized(self.offset, self.nbytes)

    @property
    def resident(self) -> bool:
        return self._values is not None

    def _block_range(self, block: int) -> ByteRange:
        itemsize = self.dtype.itemsize
        first = block * self.BLOCK
        last = min(first + self.BLOCK, self.count)
        return ByteRange(self.offset + first * itemsize, self.offset + last * itemsize)

    def missing(self, indices: Iterable[int]) -> list[ByteRange]:
        """Byte ranges of the blocks holding ``indices`` that are not loaded yet, in order."""
        if self._values is not None:
            return []
        blocks = sorted({int(i) // self.BLOCK for i in indices} - self._blocks.keys())
        return [self._block_range(b) for b in blocks]

    def insert(self, rng: ByteRange, data: bytes) -> None:
        """Keep every whole block that ``data`` (the bytes of ``rng``) covers."""
        if self._values is not None:
            return
        itemsize = self.dtype.itemsize
        first = max(0, -(-(rng.start - self.offset) // (itemsize * self.BLOCK)))
        for block in range(first, -(-self.count // self.BLOCK)):
            br = self._block_range(block)
            if br.start < rng.start:
                continue
            if br.end > rng.end:
                break
            chunk = data[br.start - rng.start : br.end - rng.start]
            self._blocks[block] = np.frombuffer(chunk, dtype=self.dtype).astype(np.uint64)

    def get(self, indices: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Values at ``indices``; every needed block must have been inserted."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._values is not None:
            return self._values[idx]
        out = np.empty(idx.shape, dtype=np.uint64)
        flat_idx, flat_out = idx.reshape(-1), out.reshape(-1)
        for n, i in enumerate(flat_idx):
            block, pos = divmod(int(i), self.BLOCK)
            flat_out[n] = self._blocks[block][pos]
        return out

    def known(self) -> npt.NDArray[np.uint64]:
        """Every value loaded so far (all of them when resident), in no particular order."""
        if self._values is not None:
            return self._values
        if not self._blocks:
            return np.empty(0, dtype=np.uint64)
        return np.concatenate(list(self._blocks.values()))

    def loaded_bytes(self) -> int:
        if self._values is not None:
            return self.nbytes
        return sum(b.size * self.dtype.itemsize for b in self._blocks.values())
