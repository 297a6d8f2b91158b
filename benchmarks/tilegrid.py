"""Tile-grid arithmetic shared by the benchmark workers: which tiles a window touches, and pasting
decoded tiles into a window array.

Readers that only hand out whole tiles (async-tiff, aiocogeo, tifffile) use this to answer a window
read the way rasterio does. Kept free of anything but numpy, and of newer syntax, so that the
aiocogeo worker (which runs on an older Python in its own venv) can import it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["paste_tiles", "tiles_for_window"]


def tiles_for_window(
    window: Sequence[int], tile_w: int, tile_h: int, width: int, height: int
) -> list[tuple[int, int]]:
    """(tile_col, tile_row) of every tile that ``window`` = (col, row, w, h) intersects, row-major;
    the window must lie inside the ``width`` x ``height`` image."""
    col, row, w, h = (int(v) for v in window)
    if w <= 0 or h <= 0:
        return []
    if col < 0 or row < 0 or col + w > width or row + h > height:
        raise ValueError(f"window {tuple(window)} outside the {width}x{height} image")
    c0, c1 = col // tile_w, (col + w - 1) // tile_w
    r0, r1 = row // tile_h, (row + h - 1) // tile_h
    return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def paste_tiles(
    window: Sequence[int],
    tile_w: int,
    tile_h: int,
    tiles: dict[tuple[int, int], np.ndarray | None],
    bands: int,
    dtype: np.dtype | str,
    fill: float = 0,
) -> np.ndarray:
    """The (bands, h, w) array of ``window`` from decoded ``tiles`` shaped (bands, tile_h, tile_w)
    (edge tiles may be smaller); a tile given as None (sparse) leaves ``fill``."""
    col, row, w, h = (int(v) for v in window)
    out = np.full((bands, h, w), fill, dtype=dtype)
    for (tc, tr), tile in tiles.items():
        if tile is None:
            continue
        x0, y0 = tc * tile_w, tr * tile_h
        # The overlap of this tile with the window, in image pixels.
        ix0, iy0 = max(x0, col), max(y0, row)
        ix1 = min(x0 + tile.shape[2], col + w)
        iy1 = min(y0 + tile.shape[1], row + h)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        out[:, iy0 - row : iy1 - row, ix0 - col : ix1 - col] = tile[
            :, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0
        ]
    return out
