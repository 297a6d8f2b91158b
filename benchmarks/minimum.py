"""The fewest bytes a reader could transfer for a workload, from the file's own block index.

minimum = header bytes needed + compressed bytes of the blocks the reads intersect (each block
counted once per run, however many reads touch it). The header bytes needed are everything before
the first block's data (TIFF header, GDAL's ghost area, every IFD and its tag values) less the
TileOffsets/TileByteCounts arrays, plus the two index entries of every block read: a reader that
loads whole index arrays of a large file pays for them, one that loads only the slices it needs
does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.tilegrid import tiles_for_window

__all__ = ["FileIndex", "LevelIndex", "minimum_bytes"]


@dataclass
class LevelIndex:
    width: int
    height: int
    tile_w: int
    tile_h: int
    bands: int
    planar: bool
    offsets: np.ndarray
    counts: np.ndarray

    def block_indices(self, window: list[int]) -> list[int]:
        ntx = -(-self.width // self.tile_w)
        nty = -(-self.height // self.tile_h)
        per_plane = ntx * nty
        xy = tiles_for_window(window, self.tile_w, self.tile_h, self.width, self.height)
        planes = range(self.bands) if self.planar else range(1)
        return [p * per_plane + r * ntx + c for p in planes for c, r in xy]


@dataclass
class FileIndex:
    path: Path
    size: int
    levels: list[LevelIndex]
    header_end: int
    index_array_bytes: int
    #: bytes of one block's TileOffsets + TileByteCounts entries
    entry_bytes: int

    @classmethod
    def load(cls, path: Path) -> FileIndex:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            inline = 8 if tif.is_bigtiff else 4
            levels = []
            for lv in tif.series[0].levels:
                p = lv.keyframe
                levels.append(
                    LevelIndex(
                        p.imagewidth,
                        p.imagelength,
                        p.tilewidth,
                        p.tilelength,
                        p.samplesperpixel,
                        p.planarconfig == 2,
                        np.asarray(p.dataoffsets, dtype=np.uint64),
                        np.asarray(p.databytecounts, dtype=np.uint64),
                    )
                )
            first = min(int(o) for page in tif.pages for o in page.dataoffsets if o)
            arrays = 0
            entry = 0
            for page in tif.pages:
                per_block = 0
                for name in ("TileOffsets", "TileByteCounts"):
                    tag = page.tags[name]
                    per_block += tag.valuebytecount // max(tag.count, 1)
                    if tag.valuebytecount > inline:  # stored outside the IFD entry
                        arrays += tag.valuebytecount
                entry = max(entry, per_block)
        # GDAL's block leader: the 4 bytes before the first block are part of the data.
        return cls(path, path.stat().st_size, levels, first - 4, arrays, entry)


def minimum_bytes(index: FileIndex, reads: list[tuple[int, list[int]]]) -> tuple[int, int, int]:
    """(header bytes needed, block bytes, blocks) for ``reads`` = [(level, window), ...]."""
    blocks: set[tuple[int, int]] = set()
    for level, window in reads:
        for i in index.levels[level].block_indices(window):
            blocks.add((level, i))
    block_bytes = 0
    present = 0
    for level, i in blocks:
        lv = index.levels[level]
        if lv.offsets[i] and lv.counts[i]:
            block_bytes += int(lv.counts[i])
            present += 1
    header = index.header_end - index.index_array_bytes + index.entry_bytes * len(blocks)
    return header, block_bytes, present
