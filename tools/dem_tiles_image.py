"""Make docs/images/dem-tiles.png: four neighbouring web-map tiles of the sample DEM, rendered
without ``rescale`` and pasted side by side (dev).

    .venv/bin/python tools/dem_tiles_image.py

Each tile is made by ``cloudroi tile`` on its own, as a map client asks for them; they share the
image's default stretch (percentiles 2-98 of its statistics), so the mosaic has no seams, and
the terrain colormap colours that stretch.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

import imagecodecs
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "dem-tiles.png"
Z, X, Y = 12, 2221, 1297  # the top-left tile: the sample's middle at zoom 12


def main() -> None:
    from cloudroi.sample import ensure_sample

    sample = str(ensure_sample())
    cli = str(pathlib.Path(sys.executable).with_name("cloudroi"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dy in (0, 1):
            row = []
            for dx in (0, 1):
                out = pathlib.Path(tmp) / f"{dx}{dy}.png"
                args = [cli, "tile", sample, str(Z), str(X + dx), str(Y + dy)]
                subprocess.run([*args, "--colormap", "terrain", "-o", str(out)], check=True)
                row.append(np.asarray(imagecodecs.png_decode(out.read_bytes())))
            rows.append(np.concatenate(row, axis=1))
    OUT.write_bytes(imagecodecs.png_encode(np.concatenate(rows, axis=0), level=9))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
