"""Regenerate cloudroi/colormaps/named.npz, the named colormaps, from matplotlib (dev only).

    .venv/bin/python tools/make_colormaps.py

Every colormap matplotlib registers, under its lower-case name (the names TiTiler uses), as a
256 x 4 uint8 RGBA table: ``(cmap(np.linspace(0, 1, 256)) * 255)`` truncated to uint8, the
rule rio-tiler's shipped tables follow. tests/test_colormaps.py checks the shipped file against
matplotlib and rio-tiler.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import numpy.typing as npt

OUT = pathlib.Path(__file__).resolve().parent.parent / "cloudroi" / "colormaps" / "named.npz"


def tables() -> dict[str, npt.NDArray[np.uint8]]:
    """Lower-case name -> 256 x 4 uint8 table of every matplotlib colormap whose lower-case
    name is unique."""
    import matplotlib

    names = sorted(matplotlib.colormaps)
    lower = [n.lower() for n in names]
    out: dict[str, npt.NDArray[np.uint8]] = {}
    for name, key in zip(names, lower, strict=True):
        if lower.count(key) != 1:
            continue
        rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
        out[key] = (rgba * 255).astype(np.uint8)
    return out


def main() -> int:
    found = tables()
    np.savez_compressed(OUT, **found)  # type: ignore[arg-type]
    print(f"{len(found)} colormaps -> {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
