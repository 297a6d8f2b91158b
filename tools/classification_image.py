"""Make docs/images/classification.png: a classified raster rendered through its palette (dev).

    .venv/bin/python tools/classification_image.py

Writes a 256 x 256 uint8 land-cover-like classification with an internal palette (GDAL, via
rasterio: needs the test extra) to a temporary directory, then renders it with
``cloudroi read FILE --window 0,0,256,256 -o docs/images/classification.png``: the palette is
applied by default, class 0 (nodata) is transparent.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import numpy.typing as npt

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images" / "classification.png"
SIDE = 256
PALETTE = {
    0: (0, 0, 0, 0),  # nodata
    1: (31, 120, 180, 255),  # water
    2: (178, 223, 138, 255),  # grassland
    3: (51, 160, 44, 255),  # forest
    4: (253, 191, 111, 255),  # cropland
    5: (227, 26, 28, 255),  # built-up
    6: (240, 240, 240, 255),  # bare / snow
}


def classes() -> npt.NDArray[np.uint8]:
    """Smooth random 'elevation' thresholded into classes, a built-up patch, a nodata corner."""
    rng = np.random.default_rng(7)
    field = rng.normal(size=(SIDE // 16 + 1, SIDE // 16 + 1))
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / 16.0
    y0, x0 = yy.astype(int), xx.astype(int)
    fy, fx = yy - y0, xx - x0
    smooth = (
        field[y0, x0] * (1 - fy) * (1 - fx)
        + field[y0 + 1, x0] * fy * (1 - fx)
        + field[y0, x0 + 1] * (1 - fy) * fx
        + field[y0 + 1, x0 + 1] * fy * fx
    )
    out = np.digitize(smooth, [-0.8, -0.2, 0.4, 1.1]).astype(np.uint8) + 1
    out[smooth > 1.1] = 6
    out[150:190, 60:110][rng.random((40, 50)) > 0.3] = 5
    out[:24, :40] = 0
    return out


def main() -> int:
    import rasterio

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "classification.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=SIDE, height=SIDE, count=1, dtype="uint8",
            nodata=0, photometric="palette", crs="EPSG:3857",
            transform=rasterio.Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 6000000.0),
        ) as dst:  # fmt: skip
            dst.write(classes(), 1)
            dst.write_colormap(1, PALETTE)
        cmd = [sys.executable, "-m", "cloudroi.cli", "read", str(path)]
        cmd += ["--window", f"0,0,{SIDE},{SIDE}", "-o", str(OUT)]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
